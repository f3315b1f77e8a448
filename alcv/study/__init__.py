"""Results files of runs, and the studies built from them."""
