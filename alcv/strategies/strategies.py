"""Acquisition strategies: per-frame statistics from detections, then the frames to label next.

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
from alcv.strategies.uncertainty import (
    AGGREGATIONS,
    EMPTY_FRAME_POLICIES,
    UNCERTAINTIES,
    aggregate,
    mutual_information,
    vote_entropy,
)

#: per-box measures that need several predictions of each box: MC-dropout passes or committee members
SAMPLED_UNCERTAINTIES = ("bald", "vote_entropy")


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
    """Offer the candidates to ``picker`` from the highest score down (seeded tie-breaking); returns
    the taken positions into ``pool.candidates``, in pick order."""
    return np.asarray(picker.take_in_order(ranked_positions(pool.candidates, scores, seed)), dtype=np.int64)


class RandomStrategy:
    """Uniformly random frames, reproducible from ``seed`` and the loop (no pool inference needed)."""

    name = "random"
    request = None

    def frame_stats(self, detections: Sequence[Detections]) -> dict[str, np.ndarray]:
        return {}

    def select(self, pool: PoolStats, picker: Picker, seed: int) -> np.ndarray:
        """Candidates in a seeded random order, as far as the picker takes them."""
        return select_by_score(pool, picker, np.zeros(pool.candidates.size), seed)


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


class UncertaintyStrategy:
    """Per-box uncertainty, aggregated per frame, then the most uncertain frames.

    Args:
        uncertainty: per-box measure: ``least_confidence``, ``margin``, ``entropy`` (see
            :mod:`alcv.strategies.uncertainty`), ``bald`` (mutual information over ``passes`` MC-dropout
            passes) or ``vote_entropy`` (over a committee of ``members`` independently trained models).
        aggregation: how a frame's box values become its score: ``max`` (its most uncertain box),
            ``mean``, ``sum`` (favours crowded frames), ``min`` or ``topk_mean`` (mean of the ``top_k``
            highest).
        empty_frames: policy for frames with no box that counts: ``least_uncertain`` ranks them below
            every frame with detections (the detector is sure the frame holds nothing); ``most_uncertain``
            ranks them above all (a frame where it sees nothing may hold what it cannot detect yet). Ties
            among them are broken at random.
        min_score, class_weights, class_names: see :class:`BoxFilter`.
        passes, dropout: MC-dropout passes and their dropout probability (``bald``).
        members: committee size (``vote_entropy``).
        name: the strategy's name in results (default: ``uncertainty``).
    """

    def __init__(self, uncertainty: str = "least_confidence", aggregation: str = "max", top_k: int = 3,
                 empty_frames: str = "least_uncertain", min_score: float = 0.0,
                 class_weights: Mapping[str, float] | None = None, class_names: Sequence[str] | None = None,
                 passes: int = 1, dropout: float = 0.0, members: int = 1, name: str | None = None) -> None:
        known = (*UNCERTAINTIES, *SAMPLED_UNCERTAINTIES)
        if uncertainty not in known:
            raise ValueError(f"strategy.uncertainty: unknown '{uncertainty}', expected one of {known}")
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"strategy.aggregation: unknown '{aggregation}', expected one of {AGGREGATIONS}")
        if top_k < 1:
            raise ValueError(f"strategy.top_k: must be >= 1, got {top_k}")
        if empty_frames not in EMPTY_FRAME_POLICIES:
            raise ValueError(f"strategy.empty_frames: unknown '{empty_frames}', expected one of "
                             f"{EMPTY_FRAME_POLICIES}")
        if uncertainty == "bald" and not (passes >= 2 and 0.0 < dropout < 1.0):
            raise ValueError(f"strategy=bald needs strategy.passes >= 2 and strategy.dropout in (0, 1), got "
                             f"passes={passes}, dropout={dropout}")
        if uncertainty == "vote_entropy" and members < 2:
            raise ValueError(f"strategy=vote_entropy needs a committee: strategy.members >= 2, got {members}")
        self.name = name or uncertainty
        self.uncertainty = uncertainty
        self.aggregation = aggregation
        self.top_k = top_k
        self.empty_frames = empty_frames
        self.filter = BoxFilter(min_score, class_weights, class_names)
        self.request = PredictionRequest(passes=passes if uncertainty == "bald" else 1,
                                         dropout=dropout if uncertainty == "bald" else 0.0,
                                         members=members if uncertainty == "vote_entropy" else 1)

    def box_values(self, detections: Detections, kept: np.ndarray) -> np.ndarray:
        """The uncertainty ``(K,)`` of the ``kept`` boxes of one frame."""
        if self.uncertainty == "bald":
            return mutual_information(_samples(detections, "prob_samples")[:, kept])
        if self.uncertainty == "vote_entropy":
            return vote_entropy(_samples(detections, "prob_samples")[:, kept],
                                _samples(detections, "found")[:, kept])
        return UNCERTAINTIES[self.uncertainty](detections.class_probs.numpy()[kept])

    def frame_scores(self, detections: Sequence[Detections]) -> np.ndarray:
        """One score per frame ``(B,)``; frames with no box that counts get ``-inf`` or ``+inf``."""
        kept = [self.filter.kept(d) for d in detections]
        counts = np.array([int(k.sum()) for k in kept], dtype=np.int64)
        values = [self.box_values(d, k) for d, k in zip(detections, kept, strict=True)]
        num_classes = max((d.class_probs.shape[1] for d in detections), default=1)
        weights = self.filter.weights(num_classes)
        labels = [d.labels.numpy()[k] for d, k in zip(detections, kept, strict=True)]
        all_values = np.concatenate(values) * weights[np.concatenate(labels)] if values else np.zeros(0)
        frame_of_box = np.repeat(np.arange(len(detections)), counts)
        scores = aggregate(all_values, frame_of_box, len(detections), self.aggregation, self.top_k)
        return np.where(counts == 0, -np.inf if self.empty_frames == "least_uncertain" else np.inf, scores)

    def frame_stats(self, detections: Sequence[Detections]) -> dict[str, np.ndarray]:
        return {"score": self.frame_scores(detections)}

    def select(self, pool: PoolStats, picker: Picker, seed: int) -> np.ndarray:
        return select_by_score(pool, picker, pool.column("score"), seed)


def _samples(detections: Detections, name: str) -> np.ndarray:
    value = getattr(detections, name)
    if value is None:
        raise ValueError(f"frame {detections.index}: the detections carry no '{name}'; the strategy needs a model "
                         "that predicts several passes or a committee (see PredictionRequest)")
    return value.numpy()


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
        inverse = 1.0 / (np.asarray(labeled_class_counts, dtype=np.float64) + 1.0)
        return inverse / inverse.sum()

    def select(self, pool: PoolStats, picker: Picker, seed: int) -> np.ndarray:
        mass = pool.column("class_mass")
        if pool.labeled_class_counts is None:
            raise ValueError("class_balance: the labeled set's class counts are missing from the pool statistics")
        return select_by_score(pool, picker, mass @ self.class_weights(pool.labeled_class_counts), seed)
