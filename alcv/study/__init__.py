"""Studies built from the results files of runs (:mod:`alcv.run_records`): reports, tables and figures."""
