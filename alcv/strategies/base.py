"""What every acquisition strategy shares: the :class:`Strategy` protocol, the pool statistics it selects
from, ranking by score and the filter of the boxes that count.

A strategy is pure. During pool inference :meth:`Strategy.frame_stats` maps the detections of a batch of
frames to named per-frame columns (``score``, ``class_mass``, ``embedding``, ...); the callback writes
them by absolute index. At the end :meth:`Strategy.select` gets those columns for the unlabeled
candidates (:class:`PoolStats`) and offers candidates to a :class:`~alcv.strategies.selection.Picker`,
which enforces the budget and the spreading rules. No I/O, no Trainer, no state between calls.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from alcv.models.detections import Detections, PredictionRequest
from alcv.strategies.selection import Picker, ranked_positions

#: pool-inference columns computed from the pool's ground truth (where it is known) start with this; the
#: acquisition keeps them from every strategy but one whose ``needs_truth`` is true (the error oracle)
TRUTH_PREFIX = "truth_"
#: each frame's ground-truth boxes, misses and false alarms ``(N, 3)`` (:func:`~alcv.metrics.frame_errors.frame_truth`)
TRUTH_COLUMN = f"{TRUTH_PREFIX}errors"
#: each frame's predictions, matched predictions and summed scores per score bin ``(N, 3, bins)``
#: (:func:`~alcv.metrics.frame_errors.frame_truth`)
TRUTH_CALIBRATION_COLUMN = f"{TRUTH_PREFIX}calibration"


@dataclass
class PoolStats:
    """Per-frame statistics gathered at pool inference, for the unlabeled candidates.

    Attributes:
        candidates: ``(N,)`` unlabeled absolute indices, ascending.
        columns: name -> ``(N, ...)`` rows aligned with ``candidates``: the strategy's own columns plus
            ``drive_id`` and ``timestamp`` (seconds) when pool inference ran, and ``predicted_boxes``.
        labeled: ``(L,)`` labeled absolute indices, ascending.
        labeled_columns: name -> ``(L, ...)`` rows for ``labeled`` (when the request included them).
        labeled_class_counts: ``(C,)`` ground-truth boxes per class in the labeled frames.
    """

    candidates: np.ndarray
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    labeled: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    labeled_columns: dict[str, np.ndarray] = field(default_factory=dict)
    labeled_class_counts: np.ndarray | None = None

    def column(self, name: str) -> np.ndarray:
        if name not in self.columns:
            raise KeyError(f"pool statistics lack the column '{name}' (have {sorted(self.columns)}); was the pool "
                           "predicted with this strategy's request?")
        return self.columns[name]


class Strategy(Protocol):
    """What the loop and the callback need of a strategy."""

    name: str
    #: what pool inference must produce, or None when the strategy needs no predictions
    request: PredictionRequest | None

    def frame_stats(self, detections: Sequence[Detections]) -> dict[str, np.ndarray]: ...
    def select(self, pool: PoolStats, picker: Picker, seed: int) -> np.ndarray: ...


def select_by_score(pool: PoolStats, picker: Picker, scores: np.ndarray, seed: int) -> np.ndarray:
    """Offer the candidates to ``picker`` from the highest score down (seeded tie-breaking, and again from the
    top each time the picker relaxes its spreading); returns the taken positions into ``pool.candidates``, in
    pick order."""
    return np.asarray(picker.take_in_order(lambda: ranked_positions(pool.candidates, scores, seed)),
                      dtype=np.int64)


@dataclass(frozen=True)
class BoxFilter:
    """Which boxes of a frame count, and how much: ``min_score`` and per-class weights.

    Args:
        min_score: boxes scored below this do not count (0 keeps every decoded box).
        class_weights: class name -> factor applied to the values of boxes predicted as that class
            (others 1); needs ``class_names``, the names of the class ids in order.
    """

    min_score: float = 0.0
    class_weights: Mapping[str, float] | None = None
    class_names: Sequence[str] | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_score <= 1.0:
            raise ValueError(f"strategy.min_score: must be in [0, 1], got {self.min_score}")
        if self.class_weights:
            names = list(self.class_names or [])
            unknown = [name for name in self.class_weights if name not in names]
            if unknown:
                raise ValueError(f"strategy.class_weights: unknown classes {unknown}, expected names from {names}")
            if any(weight < 0 for weight in self.class_weights.values()):
                raise ValueError(f"strategy.class_weights: weights must be >= 0, got {dict(self.class_weights)}")

    def weights(self, num_classes: int) -> np.ndarray:
        """``(num_classes,)`` factor per class id."""
        factors = np.ones(num_classes)
        for name, weight in (self.class_weights or {}).items():
            factors[list(self.class_names or []).index(name)] = weight
        return factors

    def kept(self, detections: Detections) -> np.ndarray:
        """``(M,)`` bool: the boxes of ``detections`` that count."""
        return detections.scores.numpy() >= self.min_score
