"""What each strategy picks, set beside the pool it picks from: the diagnosis section of a study report.

For every active-learning run of a :class:`~alcv.study.report.Study` that kept its ``label_pool.json`` and
``run.json``, the frames labeled at each acquisition (``labeled_at == k`` for loop ``k >= 1``) are described by
their ground truth, read from the run's own dataset (built from the data config in ``run.json``):

- ``boxes_per_frame``: mean ground-truth boxes per picked frame; ``empty``: share of picks without a box;
- ``share/<class>``: the class's share of the picked boxes (e.g. how many golf carts the picks bring);
- ``drives``: share of the pool's drives that the picks come from;
- ``near_duplicates``: share of picks within :data:`NEAR_DUPLICATE_SECONDS` of a frame of the same drive
  that was labeled before or picked in the same acquisition (a neighbouring frame of a 10 Hz drive);
- ``score_low`` / ``score_high``: the lowest and highest acquisition score of the picks, from the run's
  ``selections.jsonl`` (NaN for a run without the file, or loops whose scores are null; a strategy without a
  score of its own, such as random, saves zeros, so its range reads 0 to 0). A narrow range at a round value
  shows a saturated score, e.g. least confidence with ``max`` scoring every pick ``1 - min_score``:
  the picks were then told apart by noise, not by the model's uncertainty.

The pool row (``strategy`` = ``pool``) gives the same statistics of all pool frames where they have a meaning
(boxes per frame, empty share, class shares), so a strategy's bias shows as its distance from it, and random's
rows show what chance gives for the drive and near-duplicate statistics. Building a dataset generates or reads
every pool frame's labels once per distinct data config (about a minute for the default synthetic world).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from alcv.pool import LabelPool
from alcv.run_files import RUN_FILE, SelectionLine
from alcv.run_records import SELECTIONS_FILE, read_jsonl

#: picks of one drive closer in time than this count as near-duplicates (seconds: the next frame at 10 Hz)
NEAR_DUPLICATE_SECONDS = 0.15
POOL_ROW = "pool"
POOL_FILE = "label_pool.json"


@dataclass(frozen=True)
class PoolFacts:
    """Ground truth of a dataset's pool frames, by position in ``indices`` (ascending absolute indices):
    ``class_boxes`` ``(N, C)`` box counts per class, ``drives`` ``(N,)`` drive ids and ``times`` ``(N,)``
    seconds since each drive's start."""

    indices: np.ndarray
    class_boxes: np.ndarray
    drives: np.ndarray
    times: np.ndarray

    def positions(self, indices: np.ndarray) -> np.ndarray:
        """Positions of absolute ``indices`` (all in the pool)."""
        return np.searchsorted(self.indices, indices)


def pool_facts(dataset: Any) -> PoolFacts:
    """The :class:`PoolFacts` of ``dataset`` (a :class:`~alcv.data.datamodule.SplitDataset`)."""
    indices = np.asarray(dataset.split_indices("pool"), dtype=np.int64)
    num_classes = len(dataset.class_names)
    class_boxes = np.stack([np.bincount(dataset.box_labels(int(i)), minlength=num_classes) for i in indices]) \
        if indices.size else np.zeros((0, num_classes), dtype=np.int64)
    drive_times = [dataset.drive_and_time(int(i)) for i in indices]
    return PoolFacts(indices, class_boxes, np.array([d for d, _ in drive_times], dtype=np.int64),
                     np.array([t for _, t in drive_times], dtype=np.float64))


def _near_duplicates(facts: PoolFacts, picks: np.ndarray, earlier: np.ndarray) -> float:
    """Share of ``picks`` (positions) within :data:`NEAR_DUPLICATE_SECONDS` of another pick or an ``earlier``
    labeled position of the same drive."""
    if picks.size == 0:
        return float("nan")
    labeled = np.concatenate([picks, earlier])
    near = 0
    for position in picks:
        same = labeled[(facts.drives[labeled] == facts.drives[position]) & (labeled != position)]
        near += bool((np.abs(facts.times[same] - facts.times[position]) < NEAR_DUPLICATE_SECONDS).any())
    return near / picks.size


def describe_frames(facts: PoolFacts, picks: np.ndarray, class_names: Sequence[str],
                    earlier: np.ndarray | None = None) -> dict[str, float]:
    """The statistics of the module docstring for the frames at positions ``picks`` (``earlier``: positions
    labeled before them; None for the pool itself, which has no drive or near-duplicate statistics)."""
    boxes = facts.class_boxes[picks]
    per_frame = boxes.sum(axis=1)
    total = max(int(per_frame.sum()), 1)
    stats = {"frames": float(picks.size), "boxes_per_frame": float(per_frame.mean()) if picks.size else np.nan,
             "empty": float((per_frame == 0).mean()) if picks.size else np.nan}
    stats.update({f"share/{name}": float(boxes[:, c].sum() / total) for c, name in enumerate(class_names)})
    if earlier is None:
        stats.update(drives=np.nan, near_duplicates=np.nan)
    else:
        stats["drives"] = np.unique(facts.drives[picks]).size / np.unique(facts.drives).size
        stats["near_duplicates"] = _near_duplicates(facts, picks, earlier)
    return stats


def _run_dataset_config(run: Path) -> dict[str, Any]:
    try:
        config = json.loads((run / RUN_FILE).read_text())["config"]
        return config["data"]["dataset"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{run / RUN_FILE}: no data.dataset config to rebuild the run's dataset from "
                         f"({type(error).__name__}: {error})") from error


def _build_dataset(config: dict[str, Any]) -> Any:
    from hydra.utils import instantiate

    return instantiate(config)


def pick_score_range(run: Path, skipped: list[str]) -> dict[int, tuple[float, float]]:
    """Per loop of the run's ``selections.jsonl``: the lowest and highest score of the frames labeled for it
    (NaN where the scores are null or the loop has none); empty without the file. Lines that are not a
    :class:`~alcv.run_files.SelectionLine` are left out, each with a message in ``skipped``."""
    path = run / SELECTIONS_FILE
    if not path.is_file():
        return {}
    ranges = {}
    for line in read_jsonl(path, skipped=skipped, schema=SelectionLine):
        scores = np.array([np.nan if value is None else value for value in line.get("scores") or []], dtype=float)
        finite = scores[np.isfinite(scores)]
        ranges[int(line["loop"])] = (float(finite.min()), float(finite.max())) if finite.size else (np.nan, np.nan)
    return ranges


def selection_table(records: pd.DataFrame, class_names: Sequence[str],
                    build_dataset: Callable[[dict[str, Any]], Any] = _build_dataset,
                    notes: list[str] | None = None) -> pd.DataFrame:
    """Per (strategy, loop) of the active-learning ``records`` (a :class:`~alcv.study.report.Study`'s): the pick
    statistics of the acquisition that labeled loop ``loop``'s new frames, averaged over the seeds, then one
    ``pool`` row per dataset config. Only committed acquisitions count: those of the loops up to one after the
    run's last completed loop (a run stopped in a commit may have saved its pool with a later one). Runs without
    ``label_pool.json`` or ``run.json`` are skipped with a note.

    Args:
        build_dataset: the dataset from a run's ``data.dataset`` config (Hydra's ``instantiate``).
    """
    facts: dict[str, PoolFacts] = {}
    rows = []
    runs = records[records["study_type"] == "active_learning"]
    runs = runs.groupby(["run", "strategy", "seed"], as_index=False)["loop"].max()
    for run, strategy, seed, last_loop in runs[["run", "strategy", "seed", "loop"]].itertuples(index=False):
        folder = Path(run)
        if not (folder / POOL_FILE).is_file() or not (folder / RUN_FILE).is_file():
            if notes is not None:
                notes.append(f"{folder}: no {POOL_FILE} or {RUN_FILE}; its picks are not described")
            continue
        key = json.dumps(_run_dataset_config(folder), sort_keys=True)
        if key not in facts:
            facts[key] = pool_facts(build_dataset(json.loads(key)))
        pool_state, facts_of_run = LabelPool.load(folder / POOL_FILE), facts[key]
        labeled_at = np.full(facts_of_run.indices.size, -1, dtype=np.int64)
        labeled_at[facts_of_run.positions(pool_state.indices)] = pool_state.labeled_at
        score_ranges = pick_score_range(folder, notes if notes is not None else [])
        for loop in range(1, min(int(labeled_at.max()), int(last_loop) + 1) + 1):
            picks = np.flatnonzero(labeled_at == loop)
            earlier = np.flatnonzero((labeled_at >= 0) & (labeled_at < loop))
            score_low, score_high = score_ranges.get(loop, (np.nan, np.nan))
            rows.append({"strategy": strategy, "seed": seed, "loop": loop,
                         **describe_frames(facts_of_run, picks, class_names, earlier),
                         "score_low": score_low, "score_high": score_high})
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows).drop(columns="seed").groupby(["strategy", "loop"], as_index=False).mean()
    table.insert(2, "seeds", pd.DataFrame(rows).groupby(["strategy", "loop"])["seed"].nunique().to_numpy())
    pools = [{"strategy": POOL_ROW, "loop": np.nan, "seeds": np.nan,
              **describe_frames(pool, np.arange(pool.indices.size), class_names), "score_low": np.nan,
              "score_high": np.nan} for pool in facts.values()]
    return pd.concat([table, pd.DataFrame(pools)], ignore_index=True)


def plot_selection_stats(table: pd.DataFrame, class_names: Sequence[str]) -> Figure:
    """One panel per statistic of :func:`selection_table`, against the loop, a line per strategy and the pool's
    value (where it has one) dashed."""
    columns = ["boxes_per_frame", "empty", *(f"share/{name}" for name in class_names), "drives", "near_duplicates"]
    titles = {"boxes_per_frame": "ground-truth boxes per picked frame", "empty": "share of picks without a box",
              "drives": "share of the pool's drives picked from",
              "near_duplicates": "share of picks next to a labeled frame",
              **{f"share/{name}": f"{name}: share of the picked boxes" for name in class_names}}
    rows = (len(columns) + 3) // 4
    figure = Figure(figsize=(16, 3.6 * rows), layout="constrained")
    axes = np.atleast_1d(figure.subplots(rows, 4)).ravel()
    picks, pools = table[table["strategy"] != POOL_ROW], table[table["strategy"] == POOL_ROW]
    for ax, column in zip(axes, columns, strict=False):
        for strategy, curve in picks.groupby("strategy"):
            ax.plot(curve["loop"], curve[column], marker="o", label=str(strategy))
        for value in pools[column].dropna():
            ax.axhline(value, color="grey", linestyle="--", label=POOL_ROW)
        ax.set(title=titles[column], xlabel="acquisition (loop it labels)")
        ax.set_xticks(sorted(picks["loop"].unique()))
    for ax in axes[len(columns):]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 5))
    figure.suptitle("What each strategy picks (mean over seeds), against the pool")
    return figure
