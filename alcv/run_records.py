"""The records a run writes, one line per loop or acquisition: the contract between runs and reports.

``results.jsonl``: one JSON object per loop, the fields of a :class:`LoopRecord`; NaN is written as ``null``
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
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from alcv.safe_io import write_text_atomically
from alcv.value_types import describe, fits

RESULTS_FILE = "results.jsonl"
SELECTIONS_FILE = "selections.jsonl"


@dataclass(frozen=True, kw_only=True)
class LoopRecord:
    """One line of ``results.jsonl``: what loop ``loop`` trained on, how its model scored on the test split, and
    what it selected for the next loop. The fields are written in this order.

    Fields without a default are required of every results file a report reads; the others came later or are
    not needed by every report, and read as their default where a file lacks them.

    Attributes:
        experiment: ``experiment_name``. study_type: ``active_learning`` or ``subset``. dataset: the data's name.
        strategy: the strategy's name; strategy_config: its resolved config; selection_config: the loop settings
            that shape each acquisition (``query_size``, ``budget_unit``, ``cost``, ``spread``; those it has).
        seed: the run's seed. loop: 0-based loop number, of ``num_loops``.
        n_labeled_frames, n_labeled_boxes: what the model of this loop was trained on (ground-truth boxes).
        n_pool_frames: the pool's size; fraction: ``n_labeled_frames / n_pool_frames``; target_fraction:
            ``loop.initial_fraction`` of a subset study (None otherwise).
        map: test mAP; ap_per_class: class name -> AP (NaN for a class without ground truth); ap_per_threshold:
            the mAP at each matching threshold (its ``%g`` as the key).
        val_map: the last validation mAP (NaN when there is no val split).
        extra_metrics: further test metrics of the model, ``{name: {"map": ..., "ap/<class>": ...}}``.
        score_reliability: how often the model's test boxes of each score are right
            (:meth:`~alcv.metrics.average_precision.Reliability.as_dict`; None where the metric has no table).
        n_selected: frames selected for the next loop; budget_unit: ``frames`` or ``boxes``; selected_cost: their
            cost in that unit; budget_left: the budget not spent; spread_relaxations: how often the spreading
            rules were relaxed to spend it; budget_shortfall: why budget is left although a frame left would fit
            it (None when the budget was spent).
        pool_truth: whether the picks are the frames the model gets wrong, where the pool's labels are known
            (:func:`~alcv.acquisition.truth_summary`; None without pool inference or ``loop.pool_truth``).
        timings: seconds of ``train``, ``test``, ``pool_inference`` and ``selection``.
    """

    experiment: str
    study_type: str = "active_learning"
    dataset: str
    strategy: str
    strategy_config: dict[str, Any] | None = None
    selection_config: dict[str, Any] | None = None
    seed: int
    loop: int
    num_loops: int | None = None
    n_labeled_frames: int
    n_labeled_boxes: int
    n_pool_frames: int | None = None
    fraction: float
    target_fraction: float | None = None
    map: float
    ap_per_class: dict[str, float]
    ap_per_threshold: dict[str, float] = field(default_factory=dict)
    val_map: float = math.nan
    extra_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    score_reliability: dict[str, Any] | None = None
    n_selected: int = 0
    budget_unit: str = "frames"
    selected_cost: float = 0.0
    budget_left: float = 0.0
    spread_relaxations: int = 0
    budget_shortfall: str | None = None
    pool_truth: dict[str, float | None] | None = None
    timings: dict[str, float]


#: what a run can return to a Hydra sweeper that optimises (``loop.objective``); see :func:`objective`
OBJECTIVES = ("final_map", "learning_curve_area")


def check_objective(name: str) -> None:
    """Raise a ValueError naming ``loop.objective`` unless ``name`` is one of :data:`OBJECTIVES`."""
    if name not in OBJECTIVES:
        raise ValueError(f"loop.objective: unknown '{name}', expected one of {OBJECTIVES}")


def curve_average(x: np.ndarray, y: np.ndarray, low: float, high: float) -> float:
    """Average of the piecewise-linear curve ``y(x)`` (``x`` ascending) over ``[low, high]`` (its value there if
    the range is a point); exact, since the trapezoids run through the curve's own knots."""
    if high <= low:
        return float(np.interp(low, x, y))
    knots = np.unique(np.concatenate([[low, high], x[(x > low) & (x < high)]]))
    return float(np.trapezoid(np.interp(knots, x, y), knots) / (high - low))


def objective(records: Sequence[Mapping[str, Any]], name: str) -> float:
    """The number a run scores for an optimising sweeper, from its loops' ``records`` (in loop order).

    ``final_map``: the last loop's test mAP. ``learning_curve_area``: the area under test mAP against the labeled
    fraction of the pool, divided by the fraction it spans (:func:`curve_average`): the mean mAP over the labeling
    budget, weighted by how much each step labeled (a one-loop run gives its mAP). An undefined mAP (None or
    NaN) makes the result NaN.

    Raises:
        ValueError: for a name not in :data:`OBJECTIVES`, or no records.
    """
    check_objective(name)
    if not records:
        raise ValueError("objective: a run without any completed loop has no objective")
    maps = np.array([np.nan if record["map"] is None else record["map"] for record in records], dtype=np.float64)
    if name == "final_map" or len(records) == 1:
        return float(maps[-1])
    fractions = np.array([record["fraction"] for record in records], dtype=np.float64)
    if fractions[-1] == fractions[0]:  # nothing was labeled after loop 0 (a budget in boxes that fits no frame)
        return float(maps.mean())
    return curve_average(fractions, maps, fractions[0], fractions[-1])


#: the fields every line of ``results.jsonl`` must hold: those of :class:`LoopRecord` without a default
REQUIRED_FIELDS = tuple(f.name for f in fields(LoopRecord) if f.default is MISSING and f.default_factory is MISSING)


def json_safe(value: Any) -> Any:
    """NaN and infinities become None; numpy scalars become Python numbers; containers recurse."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _jsonl_line(record: Mapping[str, Any]) -> str:
    return json.dumps(json_safe(record), allow_nan=False) + "\n"


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
               skipped: list[str] | None = None, complete_lines_only: bool = False,
               schema: type | None = None) -> Iterator[dict[str, Any]]:
    """The records of a JSON-lines file (blank lines ignored).

    A line that is not JSON, not a JSON object, an object lacking one of the ``required`` fields, or (with a
    dataclass ``schema``, e.g. :class:`LoopRecord`) one whose field is not of its field's type (null standing for
    NaN) raises a ValueError naming the file, the line number and the problem (``FILE:LINE: field 'map' must be a
    number, got 'high'``), or, when a ``skipped`` list is given, is skipped with that message appended to the
    list (so a reader can go on with the rest). With ``complete_lines_only`` a last line without its newline (one
    a killed process was appending) is ignored.
    """
    hints = typing.get_type_hints(schema) if schema is not None else {}
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
                elif wrong := [f"field '{name}' must be {describe(hints[name])}, got {value!r}"
                               for name, value in record.items() if name in hints
                               and not fits(value, hints[name], null_numbers=True)]:
                    problem = wrong[0]
                else:
                    yield record
                    continue
            if skipped is None:
                raise ValueError(f"{path}:{number}: {problem}")
            skipped.append(f"{path}:{number}: skipped, {problem}")


def read_results(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The per-loop records of the run in ``run_dir``, each checked for :data:`REQUIRED_FIELDS` and the types of
    :class:`LoopRecord`."""
    return list(read_jsonl(Path(run_dir) / RESULTS_FILE, required=REQUIRED_FIELDS, schema=LoopRecord))
