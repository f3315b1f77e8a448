"""The results files of a run: the contract between runs and reports.

``results.jsonl``: one JSON object per loop (see :data:`REQUIRED_FIELDS`); NaN is written as ``null``
(an AP that is undefined because its class has no ground truth). ``selections.jsonl``: one object per
acquisition, ``{"loop": k, "indices": [...], "scores": [...]}``, the absolute dataset indices labeled at
loop ``k`` in the strategy's order. Lines are appended and flushed to disk one at a time, so a run that
stops early leaves every finished loop readable; resuming it rewrites a file only to drop what an interrupted
loop had begun (:mod:`alcv.run_files`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from alcv.files import write_text_atomically

RESULTS_FILE = "results.jsonl"
SELECTIONS_FILE = "selections.jsonl"
REQUIRED_FIELDS = ("experiment", "dataset", "strategy", "seed", "loop", "n_labeled_frames", "n_labeled_boxes",
                   "fraction", "map", "ap_per_class", "timings")


def _json_safe(value: Any) -> Any:
    """NaN and infinities become None; numpy scalars become Python numbers; containers recurse."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _jsonl_line(record: Mapping[str, Any]) -> str:
    return json.dumps(_json_safe(record), allow_nan=False) + "\n"


def append_jsonl(path: str | os.PathLike[str], record: Mapping[str, Any]) -> None:
    """Append ``record`` as one line and flush it to disk; earlier lines are left as they are."""
    with open(path, "a") as handle:
        handle.write(_jsonl_line(record))
        handle.flush()
        os.fsync(handle.fileno())


def write_jsonl_atomically(path: str | os.PathLike[str], records: Sequence[Mapping[str, Any]]) -> None:
    """Replace ``path`` by ``records``, one line each, atomically (a resumed run drops the lines of a loop that
    did not complete this way)."""
    write_text_atomically(path, "".join(_jsonl_line(record) for record in records))


def read_jsonl(path: str | os.PathLike[str], required: Sequence[str] = (),
               skipped: list[str] | None = None, complete_lines_only: bool = False) -> Iterator[dict[str, Any]]:
    """The records of a JSON-lines file (blank lines ignored).

    A line that is not JSON, not a JSON object, or an object lacking one of the ``required`` fields raises a
    ValueError naming the file, the line number and the problem, or, when a ``skipped`` list is given, is
    skipped with that message appended to the list (so a reader can go on with the rest). With
    ``complete_lines_only`` a last line without its newline (one a killed process was appending) is ignored.
    """
    with open(path) as handle:
        for number, line in enumerate(handle, start=1):
            if complete_lines_only and not line.endswith("\n"):
                return
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                problem = f"not valid JSON ({error.msg})"
            else:
                missing = [name for name in required if name not in record] if isinstance(record, dict) else []
                if not isinstance(record, dict):
                    problem = f"expected a JSON object, got {type(record).__name__}"
                elif missing:
                    problem = f"the record lacks fields {missing}"
                else:
                    yield record
                    continue
            if skipped is None:
                raise ValueError(f"{path}:{number}: {problem}")
            skipped.append(f"{path}:{number}: skipped, {problem}")


def read_results(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The per-loop records of the run in ``run_dir``, each checked for :data:`REQUIRED_FIELDS`."""
    return list(read_jsonl(Path(run_dir) / RESULTS_FILE, required=REQUIRED_FIELDS))
