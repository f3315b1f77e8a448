"""Pool scoring during ``Trainer.predict`` and the acquisition step that labels the pool."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from alcv.models.detections import Detections
from alcv.pool import LabelPool
from alcv.seeding import SELECTION, derive_seed
from alcv.strategies import Strategy


@dataclass(frozen=True)
class Selection:
    """The frames labeled at one loop: absolute ``indices`` ``(k,)`` in the strategy's order (best first)
    and their ``scores`` ``(k,)`` (zeros for strategies that do not score)."""

    loop: int
    indices: np.ndarray
    scores: np.ndarray


def acquire(pool: LabelPool, strategy: Strategy, scores: np.ndarray | None, query_size: int, loop: int,
            seed: int) -> Selection:
    """Select up to ``query_size`` unlabeled frames with ``strategy`` and label them at ``loop``.

    Args:
        scores: dense per-frame scores indexed by absolute dataset index (NaN where not scored), or None
            for strategies that do not need predictions.

    Raises:
        RuntimeError: if an unlabeled frame has no score (pool inference missed it).
    """
    candidates = pool.unlabeled_indices
    if scores is None:
        candidate_scores = np.zeros(candidates.size)
    else:
        candidate_scores = scores[candidates]
        missing = np.isnan(candidate_scores)
        if missing.any():
            raise RuntimeError(f"acquire: pool inference produced no score for {int(missing.sum())} unlabeled "
                               f"frames, e.g. indices {candidates[missing][:5].tolist()}")
    chosen = strategy.select(candidates, candidate_scores, min(query_size, candidates.size),
                             derive_seed(seed, SELECTION, loop))
    pool.label(chosen, loop)
    position = np.searchsorted(candidates, chosen)
    return Selection(loop, chosen, candidate_scores[position])


class ActiveLearningCallback(BasePredictionWriter):
    """Scores the pool during ``Trainer.predict`` and, when prediction ends, labels the next frames.

    ``write_on_batch_end`` turns each batch's :class:`Detections` into per-frame scores with
    ``strategy.frame_scores`` and writes them into a preallocated array at the frames' absolute indices
    (no detection is kept). ``on_predict_end`` gathers the array across ranks and calls :func:`acquire`;
    every rank labels the same frames, since the gathered scores and the seed are the same. The callback
    holds no decision logic: that is the strategy's.

    Args:
        pool: the state to update. strategy: scores frames and selects. query_size: frames per loop.
        loop: the loop number the new labels get. seed: the run's seed.
        dataset_size: number of absolute indices (the scores array's length).
    """

    def __init__(self, pool: LabelPool, strategy: Strategy, query_size: int, loop: int, seed: int,
                 dataset_size: int) -> None:
        super().__init__(write_interval="batch")
        self.pool = pool
        self.strategy = strategy
        self.query_size = query_size
        self.loop = loop
        self.seed = seed
        self.scores = np.full(dataset_size, np.nan)
        self.selection: Selection | None = None
        self.selection_seconds = 0.0

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.scores[:] = np.nan
        self.selection = None

    def write_on_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           prediction: Sequence[Detections], batch_indices: Sequence[int] | None, batch: Any,
                           batch_idx: int, dataloader_idx: int) -> None:
        indices = np.fromiter((detections.index for detections in prediction), dtype=np.int64)
        self.scores[indices] = self.strategy.frame_scores(prediction)

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        started = time.perf_counter()
        scores = self.scores
        if trainer.world_size > 1:
            gathered = pl_module.all_gather(torch.from_numpy(scores)).cpu().numpy()
            scores = np.fmax.reduce(gathered, axis=0)
        self.selection = acquire(self.pool, self.strategy, scores, self.query_size, self.loop, self.seed)
        self.selection_seconds = time.perf_counter() - started
