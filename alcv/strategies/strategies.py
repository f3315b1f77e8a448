"""Acquisition strategies: per-frame scores from detections, then the frames to label next.

A strategy is pure: :meth:`frame_scores` maps the detections of a batch of frames to one score per
frame (higher = more worth labeling), :meth:`select` maps candidate indices and their scores to the
indices to label. No I/O, no Trainer, no state between calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from alcv.models.detections import Detections
from alcv.strategies.selection import tie_break_keys, top_k
from alcv.strategies.uncertainty import AGGREGATIONS, EMPTY_FRAME_POLICIES, UNCERTAINTIES, aggregate


class RandomStrategy:
    """Uniformly random frames, reproducible from ``seed`` and the loop (no pool inference needed)."""

    name = "random"
    needs_predictions = False

    def frame_scores(self, detections: Sequence[Detections]) -> np.ndarray:
        return np.zeros(len(detections))

    def select(self, candidates: np.ndarray, scores: np.ndarray, k: int, seed: int) -> np.ndarray:
        """``k`` candidates drawn uniformly without replacement; ``scores`` are ignored."""
        if k < 0:
            raise ValueError(f"RandomStrategy.select: 'k' must be >= 0, got {k}")
        candidates = np.asarray(candidates, dtype=np.int64)
        return candidates[np.argsort(tie_break_keys(candidates, seed), kind="stable")[:k]]


class UncertaintyStrategy:
    """Per-box uncertainty, aggregated per frame, then the top-k frames.

    Args:
        uncertainty: per-box measure, a key of :data:`UNCERTAINTIES` (``least_confidence``:
            ``1 - max_c p(c)`` over the box's per-class probabilities).
        aggregation: how a frame's box uncertainties become its score: ``max`` (its most uncertain
            box), ``mean``, ``sum`` (favours crowded frames) or ``min``.
        empty_frames: policy for frames with no detection at all (after ``min_score``):
            ``least_uncertain`` ranks them below every frame with detections (the detector is sure
            the frame holds nothing); ``most_uncertain`` ranks them above all (a frame where it sees
            nothing may hold what it cannot detect yet). Ties among them are broken at random.
        min_score: boxes with a score below this do not count (0 keeps every decoded box).
    """

    needs_predictions = True

    def __init__(self, uncertainty: str = "least_confidence", aggregation: str = "max",
                 empty_frames: str = "least_uncertain", min_score: float = 0.0) -> None:
        if uncertainty not in UNCERTAINTIES:
            raise ValueError(f"strategy.uncertainty: unknown '{uncertainty}', expected one of "
                             f"{tuple(UNCERTAINTIES)}")
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"strategy.aggregation: unknown '{aggregation}', expected one of {AGGREGATIONS}")
        if empty_frames not in EMPTY_FRAME_POLICIES:
            raise ValueError(f"strategy.empty_frames: unknown '{empty_frames}', expected one of "
                             f"{EMPTY_FRAME_POLICIES}")
        if not 0.0 <= min_score <= 1.0:
            raise ValueError(f"strategy.min_score: must be in [0, 1], got {min_score}")
        self.name = uncertainty
        self.uncertainty = uncertainty
        self.aggregation = aggregation
        self.empty_frames = empty_frames
        self.min_score = min_score

    def frame_scores(self, detections: Sequence[Detections]) -> np.ndarray:
        """One score per frame of ``detections`` ``(B,)``; empty frames get ``-inf`` or ``+inf``."""
        probs = [d.class_probs.numpy() for d in detections]
        keep = [d.scores.numpy() >= self.min_score for d in detections]
        counts = np.array([int(k.sum()) for k in keep], dtype=np.int64)
        num_classes = max((p.shape[1] for p in probs), default=0)
        kept = [p[k] for p, k in zip(probs, keep, strict=True)]
        all_probs = np.concatenate(kept) if kept else np.zeros((0, num_classes))
        values = UNCERTAINTIES[self.uncertainty](all_probs)
        frame_of_box = np.repeat(np.arange(len(detections)), counts)
        scores = aggregate(values, frame_of_box, len(detections), self.aggregation)
        empty_score = -np.inf if self.empty_frames == "least_uncertain" else np.inf
        return np.where(counts == 0, empty_score, scores)

    def select(self, candidates: np.ndarray, scores: np.ndarray, k: int, seed: int) -> np.ndarray:
        return top_k(candidates, scores, k, seed)


class Strategy(Protocol):
    """What the loop and the callback need of a strategy."""

    name: str
    needs_predictions: bool

    def frame_scores(self, detections: Sequence[Detections]) -> np.ndarray: ...
    def select(self, candidates: np.ndarray, scores: np.ndarray, k: int, seed: int) -> np.ndarray: ...
