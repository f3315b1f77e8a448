"""Class balance: frames predicted to hold the classes that the labeled set has fewest boxes of."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from alcv.models.detections import Detections, PredictionRequest
from alcv.strategies.base import BoxFilter, PoolStats, select_by_score
from alcv.strategies.selection import Picker


class ClassBalanceStrategy:
    """Frames predicted to contain the classes that the labeled set has fewest boxes of.

    A frame's score is ``sum_c mass_c * w_c``: ``mass_c`` sums the class-``c`` probability of its boxes
    that count (``min_score``), and ``w_c = (1 / (n_c + 1)) / sum_c' (1 / (n_c' + 1))`` with ``n_c`` the
    labeled set's ground-truth boxes of class ``c``. The weights are fixed for the acquisition.
    """

    name = "class_balance"

    def __init__(self, min_score: float = 0.3) -> None:
        self.filter = BoxFilter(min_score)
        self.request = PredictionRequest()

    def frame_stats(self, detections: Sequence[Detections]) -> dict[str, np.ndarray]:
        """``class_mass`` ``(B, C)``: per frame, the summed class probabilities of the boxes that count."""
        num_classes = max((d.class_probs.shape[1] for d in detections), default=1)
        mass = np.zeros((len(detections), num_classes))
        for row, frame in enumerate(detections):
            mass[row] = frame.class_probs.numpy()[self.filter.kept(frame)].sum(axis=0)
        return {"class_mass": mass}

    @staticmethod
    def class_weights(labeled_class_counts: np.ndarray) -> np.ndarray:
        """``(C,)`` weights ``w_c`` from the labeled set's ``(C,)`` box counts per class; they sum to 1."""
        inverse = 1.0 / (np.asarray(labeled_class_counts, dtype=np.float64) + 1.0)
        return inverse / inverse.sum()

    def select(self, pool: PoolStats, picker: Picker, seed: int) -> np.ndarray:
        mass = pool.column("class_mass")
        if pool.labeled_class_counts is None:
            raise ValueError("class_balance: the labeled set's class counts are missing from the pool statistics")
        return select_by_score(pool, picker, mass @ self.class_weights(pool.labeled_class_counts), seed)
