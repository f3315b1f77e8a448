"""The results files of a run: the contract between runs and reports.

``results.jsonl``: one JSON object per loop (see :data:`REQUIRED_FIELDS`); NaN is written as ``null``
(an AP that is undefined because its class has no ground truth). ``selections.jsonl``: one object per
acquisition, ``{"loop": k, "indices": [...], "scores": [...]}``, the absolute dataset indices labeled at
loop ``k`` in the strategy's order. Lines are appended and flushed to disk one at a time, so a run that
stops early leaves every finished loop readable.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

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


def append_jsonl(path: str | os.PathLike[str], record: Mapping[str, Any]) -> None:
    """Append ``record`` as one line and flush it to disk (earlier lines are never rewritten)."""
    line = json.dumps(_json_safe(record), allow_nan=False)
    with open(path, "a") as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_jsonl(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """The records of a JSON-lines file; a line that is not a JSON object raises a ValueError that names
    the file and the line number."""
    with open(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not valid JSON ({error.msg})") from error
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
            yield record


def read_results(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The per-loop records of the run in ``run_dir``, checked for :data:`REQUIRED_FIELDS`."""
    path = Path(run_dir) / RESULTS_FILE
    records = list(read_jsonl(path))
    for number, record in enumerate(records, start=1):
        missing = [field for field in REQUIRED_FIELDS if field not in record]
        if missing:
            raise ValueError(f"{path}: record {number} lacks fields {missing}")
    return records
