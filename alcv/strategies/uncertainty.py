"""Per-box uncertainty and its aggregation into one score per frame; pure functions over arrays."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

AGGREGATIONS = ("max", "mean", "sum", "min")
EMPTY_FRAME_POLICIES = ("least_uncertain", "most_uncertain")


def least_confidence(class_probs: np.ndarray) -> np.ndarray:
    """``1 - max_c p(c)`` per box, from ``(M, C)`` per-class probabilities; returns ``(M,)``."""
    if class_probs.shape[0] == 0:
        return np.zeros(0)
    return 1.0 - class_probs.max(axis=1)


UNCERTAINTIES: dict[str, Callable[[np.ndarray], np.ndarray]] = {"least_confidence": least_confidence}


def aggregate(values: np.ndarray, frame_of_box: np.ndarray, num_frames: int, how: str) -> np.ndarray:
    """Reduce per-box ``values`` ``(M,)`` to per-frame scores ``(num_frames,)``.

    ``frame_of_box`` ``(M,)`` gives each box's frame in ``[0, num_frames)``; ``how`` is one of
    :data:`AGGREGATIONS`. Frames without boxes get NaN (the caller applies the empty-frame policy).
    """
    if how not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation '{how}', expected one of {AGGREGATIONS}")
    counts = np.bincount(frame_of_box, minlength=num_frames).astype(np.float64)
    if how in ("sum", "mean"):
        result = np.bincount(frame_of_box, weights=values, minlength=num_frames).astype(np.float64)
        if how == "mean":
            result = result / np.maximum(counts, 1)
    else:
        result = np.full(num_frames, -np.inf if how == "max" else np.inf)
        (np.maximum if how == "max" else np.minimum).at(result, frame_of_box, values)
    result[counts == 0] = np.nan
    return result
