"""Pool scoring during ``Trainer.predict``: per-frame statistics by absolute index, combined across processes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from alcv.metrics.frame_errors import frame_truth
from alcv.models.detections import Detections
from alcv.strategies import SelectionRules, Strategy
from alcv.strategies.base import TRUTH_CALIBRATION_COLUMN, TRUTH_COLUMN


class ActiveLearningCallback(BasePredictionWriter):
    """Collects per-frame statistics during ``Trainer.predict``, for the acquisition that follows
    (:func:`alcv.acquisition.acquire`).

    ``write_on_batch_end`` turns each batch's :class:`Detections` into named per-frame columns with
    ``strategy.frame_stats``, adds each frame's ``drive_id`` and ``timestamp`` (from the batch) and, for a
    budget in boxes, its ``predicted_boxes`` (boxes scored at least ``rules.box_min_score``), with ``truth`` and
    a batch that holds the ground truth its errors and score reliability (the ``truth_`` columns of
    :mod:`alcv.strategies.base`, for the acquisition's diagnosis only; predictions scored at least
    ``rules.box_min_score`` count as detections), and writes
    them into preallocated arrays at the frames' absolute indices (no detection is kept: memory is
    bounded by the pool's columns, not by the number of detections). It also marks those frames in
    :attr:`scored`. The callback holds no decision logic: that is the strategy's.

    Under distributed prediction (``world_size > 1``) every rank has predicted its shard of the pool, and the
    shards may overlap where a distributed sampler padded them by repeating frames. ``on_predict_end`` then
    combines the ranks' columns by absolute index (:meth:`combine_ranks`): each frame's row comes from the lowest
    global rank that scored it, whole (a frame scored on two ranks counts once, and a row never mixes the values
    of two ranks); a frame that no rank scored stays NaN. Every rank then holds the same combined columns.

    Args:
        strategy: gives the per-frame columns. rules: whether the budget counts boxes, and from which score.
        dataset_size: number of absolute indices (the columns' length).
        truth: whether to measure each frame's errors against its ground truth (``loop.pool_truth``).

    Attributes:
        columns: name -> ``(dataset_size, ...)`` per-frame statistics by absolute index, NaN where not
            predicted: this rank's during prediction, the combined ones of all ranks after it.
        scored: ``(dataset_size,)`` bool, the frames this rank predicted.
    """

    def __init__(self, strategy: Strategy, rules: SelectionRules, dataset_size: int, truth: bool = False) -> None:
        super().__init__(write_interval="batch")
        self.strategy = strategy
        self.truth = truth
        self.rules = rules
        self.dataset_size = dataset_size
        self.columns: dict[str, np.ndarray] = {}
        self.scored = np.zeros(dataset_size, dtype=bool)

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.columns = {}
        self.scored = np.zeros(self.dataset_size, dtype=bool)

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
            if self.truth and "boxes" in batch and "labels" in batch:
                errors, calibration = frame_truth(prediction, batch["boxes"], batch["labels"], self.rules.box_min_score)
                self._write(TRUTH_COLUMN, indices, errors)
                self._write(TRUTH_CALIBRATION_COLUMN, indices, calibration)
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

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.world_size > 1:
            self.columns = self.combine_ranks(trainer)
