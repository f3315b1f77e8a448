"""Pool scoring during ``Trainer.predict`` and the acquisition step that labels the pool."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from alcv.models.detections import Detections
from alcv.pool import LabelPool
from alcv.seeding import SELECTION, derive_seed
from alcv.strategies import Picker, PoolStats, SelectionRules, Strategy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Selection:
    """The frames labeled at one loop: absolute ``indices`` ``(k,)`` in pick order (best first), their
    ``scores`` ``(k,)`` (the strategy's ``score`` column; zeros for strategies without one) and ``costs``
    ``(k,)`` under the loop's budget (1 per frame, or box equivalents)."""

    loop: int
    indices: np.ndarray
    scores: np.ndarray
    costs: np.ndarray


def _unscored(column: np.ndarray) -> np.ndarray:
    """``(n,)`` bool: rows of a column that pool inference never wrote (all NaN)."""
    return np.isnan(column.reshape(len(column), -1)).all(axis=1)


def choose_frames(pool: LabelPool, strategy: Strategy, rules: SelectionRules, loop: int, seed: int,
                  columns: Mapping[str, np.ndarray] | None = None,
                  labeled_class_counts: np.ndarray | None = None) -> Selection:
    """The unlabeled frames that ``strategy`` selects under ``rules`` for ``loop``; ``pool`` is not changed.

    The choice depends only on the arguments (the strategy's randomness comes from ``seed`` and ``loop``).

    Args:
        columns: dense per-frame statistics from pool inference, name -> ``(dataset_size, ...)`` indexed by
            absolute index (NaN where not predicted); None when the pool was not predicted.
        labeled_class_counts: ``(C,)`` ground-truth boxes per class in the labeled frames.

    Raises:
        RuntimeError: if an unlabeled frame has no statistics (pool inference missed it).
    """
    candidates, labeled = pool.unlabeled_indices, pool.labeled_indices
    candidate_columns = {name: column[candidates] for name, column in (columns or {}).items()}
    for name, values in candidate_columns.items():
        missing = _unscored(values)
        if missing.any():
            raise RuntimeError(f"acquire: pool inference produced no '{name}' for {int(missing.sum())} unlabeled "
                               f"frames, e.g. indices {candidates[missing][:5].tolist()}")
    labeled_columns = {name: column[labeled] for name, column in (columns or {}).items()
                       if not _unscored(column[labeled]).any()}
    if rules.counts_boxes and "predicted_boxes" not in candidate_columns:
        raise ValueError("acquire: a budget in boxes needs each candidate's predicted box count from pool inference")
    costs = rules.costs(candidate_columns.get("predicted_boxes", np.zeros(candidates.size)))
    picker = Picker(rules, costs, candidate_columns.get("drive_id"), candidate_columns.get("timestamp"))
    stats = PoolStats(candidates, candidate_columns, labeled, labeled_columns, labeled_class_counts)
    positions = np.asarray(strategy.select(stats, picker, derive_seed(seed, SELECTION, loop)), dtype=np.int64)
    chosen = candidates[positions]
    if chosen.size == 0 and candidates.size:
        log.warning("loop %d: a budget of %g %s fits no frame (the cheapest candidate costs %g); nothing is labeled",
                    loop, rules.budget, rules.unit, float(costs.min()))
    scores = candidate_columns["score"][positions] if "score" in candidate_columns else np.zeros(chosen.size)
    return Selection(loop, chosen, scores, costs[positions])


def acquire(pool: LabelPool, strategy: Strategy, rules: SelectionRules, loop: int, seed: int,
            columns: Mapping[str, np.ndarray] | None = None,
            labeled_class_counts: np.ndarray | None = None) -> Selection:
    """Select unlabeled frames with ``strategy`` under ``rules`` (:func:`choose_frames`, same arguments and
    errors) and label them in ``pool`` at ``loop``; on an error ``pool`` is unchanged."""
    selection = choose_frames(pool, strategy, rules, loop, seed, columns, labeled_class_counts)
    pool.label(selection.indices, loop)
    return selection


class ActiveLearningCallback(BasePredictionWriter):
    """Collects per-frame statistics during ``Trainer.predict`` and, when prediction ends, labels the next
    frames.

    ``write_on_batch_end`` turns each batch's :class:`Detections` into named per-frame columns with
    ``strategy.frame_stats``, adds each frame's ``drive_id`` and ``timestamp`` (from the batch) and, for a
    budget in boxes, its ``predicted_boxes`` (boxes scored at least ``rules.box_min_score``), and writes
    them into preallocated arrays at the frames' absolute indices (no detection is kept: memory is
    bounded by the pool's columns, not by the number of detections). It also marks those frames in
    :attr:`scored`. The callback holds no decision logic: that is the strategy's.

    ``on_predict_end`` on one process calls :func:`acquire`. Under distributed prediction (``world_size > 1``)
    every rank has predicted its shard of the pool, and the shards may overlap where a distributed sampler
    padded them by repeating frames:

    1. the ranks combine their columns by absolute index (:meth:`combine_ranks`): each frame's row comes from
       the lowest global rank that scored it, whole (a frame scored on two ranks counts once, and a row never
       mixes the values of two ranks); a frame that no rank scored stays NaN. Every rank then holds the same
       combined columns in :attr:`columns`;
    2. global rank 0 alone runs the strategy (:func:`choose_frames`) and broadcasts the :class:`Selection`
       (or its error, which every rank then raises);
    3. every rank labels exactly those frames in its :class:`LabelPool`, so all ranks go on with the same
       labeled set.

    Args:
        pool: the state to update. strategy: scores frames and selects. rules: budget and spreading.
        loop: the loop number the new labels get. seed: the run's seed.
        dataset_size: number of absolute indices (the columns' length).
        labeled_class_counts: ``(C,)`` ground-truth boxes per class in the labeled frames (for strategies
            that balance classes).

    Attributes:
        columns: name -> ``(dataset_size, ...)`` per-frame statistics by absolute index, NaN where not
            predicted: this rank's during prediction, the combined ones of all ranks after it.
        scored: ``(dataset_size,)`` bool, the frames this rank predicted.
        selection: what ``on_predict_end`` labeled (None before). selection_seconds: the time it took,
            combining the ranks included.
    """

    def __init__(self, pool: LabelPool, strategy: Strategy, rules: SelectionRules, loop: int, seed: int,
                 dataset_size: int, labeled_class_counts: np.ndarray | None = None) -> None:
        super().__init__(write_interval="batch")
        self.pool = pool
        self.strategy = strategy
        self.rules = rules
        self.loop = loop
        self.seed = seed
        self.dataset_size = dataset_size
        self.labeled_class_counts = labeled_class_counts
        self.columns: dict[str, np.ndarray] = {}
        self.scored = np.zeros(dataset_size, dtype=bool)
        self.selection: Selection | None = None
        self.selection_seconds = 0.0

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.columns = {}
        self.scored = np.zeros(self.dataset_size, dtype=bool)
        self.selection = None

    def _write(self, name: str, indices: np.ndarray, values: np.ndarray) -> None:
        values = np.asarray(values)
        column = self.columns.get(name)
        if column is None:
            dtype = np.float32 if values.ndim > 1 else np.float64
            column = self.columns[name] = np.full((self.dataset_size, *values.shape[1:]), np.nan, dtype=dtype)
        column[indices] = values

    def write_on_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           prediction: Sequence[Detections], batch_indices: Sequence[int] | None, batch: Any,
                           batch_idx: int, dataloader_idx: int) -> None:
        indices = np.fromiter((detections.index for detections in prediction), dtype=np.int64)
        self.scored[indices] = True
        for name, values in self.strategy.frame_stats(prediction).items():
            self._write(name, indices, values)
        if isinstance(batch, Mapping):
            for name in ("drive_id", "timestamp"):
                if name in batch:
                    self._write(name, indices, np.asarray(batch[name], dtype=np.float64))
        if self.rules.counts_boxes:
            self._write("predicted_boxes", indices, [int((d.scores >= self.rules.box_min_score).sum())
                                                     for d in prediction])

    def combine_ranks(self, trainer: pl.Trainer) -> dict[str, np.ndarray]:
        """The columns of all ranks combined by absolute index; a collective call (every rank must make it).

        Row ``i`` of each combined ``(dataset_size, ...)`` column is row ``i`` of the lowest global rank whose
        :attr:`scored` holds frame ``i``, or NaN when no rank scored it. Every rank must have written the same
        column names, shapes and dtypes, as it does when it predicted at least one batch (a strategy's
        ``frame_stats`` always gives the same columns; Lightning calls no predict hook on a rank whose shard
        has no batch, so such a rank would leave the others waiting). Each column is summed across ranks once
        (``trainer.strategy.reduce``), every rank contributing only the rows it owns and zeros elsewhere, so the
        owner's values come through exactly and no rank holds more than its own columns plus one column's
        buffer on the device (gathering would hold a copy per rank). This rank's :attr:`columns` are
        overwritten in the process.
        """
        strategy, rank, world_size = trainer.strategy, trainer.global_rank, trainer.world_size
        claims = torch.from_numpy(np.where(self.scored, rank, world_size)).to(strategy.root_device)
        owner = strategy.reduce(claims, reduce_op="min").cpu().numpy()
        unscored, foreign = owner == world_size, owner != rank
        combined = {}
        for name, column in sorted(self.columns.items()):
            column[foreign] = 0
            column = strategy.reduce(torch.from_numpy(column).to(strategy.root_device), reduce_op="sum").cpu().numpy()
            column[unscored] = np.nan
            combined[name] = column
        return combined

    def _choose_on_rank_zero(self, trainer: pl.Trainer) -> Selection:
        """The selection of global rank 0 on every rank (a collective call): rank 0 runs :func:`choose_frames`
        on the combined :attr:`columns` and broadcasts the result, or its error, which every rank raises."""
        selection, error = None, None
        if trainer.is_global_zero:
            try:
                selection = choose_frames(self.pool, self.strategy, self.rules, self.loop, self.seed, self.columns,
                                          self.labeled_class_counts)
            except Exception as failure:
                error = failure
        selection, message = trainer.strategy.broadcast(
            (selection, None if error is None else f"{type(error).__name__}: {error}"), src=0)
        if error is not None:
            raise error
        if message is not None:
            raise RuntimeError(f"loop {self.loop}: global rank 0 could not select the frames to label: {message}")
        return selection

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        started = time.perf_counter()
        if trainer.world_size > 1:
            self.columns = self.combine_ranks(trainer)
            selection = self._choose_on_rank_zero(trainer)
            self.pool.label(selection.indices, self.loop)
            self.selection = selection
        else:
            self.selection = acquire(self.pool, self.strategy, self.rules, self.loop, self.seed, self.columns,
                                     self.labeled_class_counts)
        self.selection_seconds = time.perf_counter() - started
