"""The error oracle: an upper bound for strategies that look for the model's errors, not a strategy to deploy.

It reads the pool's ground truth, which only a simulated study has: each candidate frame's misses and false alarms
of the model that chooses (:data:`~alcv.strategies.base.TRUTH_COLUMN`, the errors that ``loop.pool_truth`` counts).
If labeling the frames where the model is most wrong does not beat random, no score that estimates those errors
will, and what limits active learning is the data (how evenly the errors spread over the pool), not the score.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from alcv.models.detections import Detections, PredictionRequest
from alcv.strategies.base import TRUTH_COLUMN, PoolStats, select_by_score
from alcv.strategies.selection import Picker

RANKINGS = ("errors", "error_rate")


class ErrorOracleStrategy:
    """The frames where the choosing model is most wrong, by the pool's ground truth (simulated studies only).

    Args:
        rank_by: ``errors``: misses plus false alarms per frame; ``error_rate``: the same per ground-truth box
            (a frame without boxes counts its false alarms).
    """

    name = "oracle"
    request = PredictionRequest()
    #: the acquisition shows this strategy the candidates' ground-truth errors, which it hides from all others
    needs_truth = True

    def __init__(self, rank_by: str = "errors") -> None:
        if rank_by not in RANKINGS:
            raise ValueError(f"strategy.rank_by: unknown '{rank_by}', expected one of {RANKINGS}")
        self.rank_by = rank_by

    def frame_stats(self, detections: Sequence[Detections]) -> dict[str, np.ndarray]:
        return {}

    def select(self, pool: PoolStats, picker: Picker, seed: int) -> np.ndarray:
        errors = pool.column(TRUTH_COLUMN).astype(np.float64)
        wrong = errors[:, 1] + errors[:, 2]
        scores = wrong if self.rank_by == "errors" else wrong / np.maximum(errors[:, 0], 1.0)
        return select_by_score(pool, picker, scores, seed)
