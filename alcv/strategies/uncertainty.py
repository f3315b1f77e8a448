"""Per-box uncertainty and its aggregation into one score per frame; pure functions over arrays.

Every measure takes a box's per-class probabilities ``(M, C)`` (DESIGN.md's detection contract: softmax
rows sum to 1 over the C object classes plus a background that is left out; sigmoid rows hold C
independent probabilities). Least confidence and margin read the probabilities as given, so a sigmoid
box that is unsure whether it is an object at all scores as uncertain. Entropy and mutual information
need a distribution: they use the row normalised over the C classes (the class distribution given that
the box is an object), which leaves softmax rows that sum to 1 unchanged. On such rows every measure
equals its textbook definition.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

AGGREGATIONS = ("max", "mean", "sum", "min", "topk_mean")
EMPTY_FRAME_POLICIES = ("least_uncertain", "most_uncertain")


def least_confidence(class_probs: np.ndarray) -> np.ndarray:
    """``1 - max_c p(c)`` per box, from ``(M, C)`` per-class probabilities; returns ``(M,)`` in [0, 1]."""
    if class_probs.shape[0] == 0:
        return np.zeros(0)
    return 1.0 - class_probs.max(axis=1)


def margin(class_probs: np.ndarray) -> np.ndarray:
    """``1 - (p1 - p2)`` per box, with p1 >= p2 the two highest class probabilities (p2 = 0 with one
    class); returns ``(M,)`` in [0, 1] for softmax rows."""
    if class_probs.shape[0] == 0:
        return np.zeros(0)
    if class_probs.shape[1] == 1:
        return 1.0 - class_probs[:, 0]
    top_two = -np.partition(-class_probs, 1, axis=1)[:, :2]
    return 1.0 - (top_two[:, 0] - top_two[:, 1])


def class_distribution(class_probs: np.ndarray) -> np.ndarray:
    """Rows of ``(..., C)`` probabilities normalised to sum to 1 (a row of zeros becomes uniform)."""
    class_probs = np.clip(np.asarray(class_probs, dtype=np.float64), 0.0, None)
    totals = class_probs.sum(axis=-1, keepdims=True)
    uniform = np.full_like(class_probs, 1.0 / max(class_probs.shape[-1], 1))
    return np.where(totals > 0, class_probs / np.where(totals > 0, totals, 1.0), uniform)


def _entropy_nats(distribution: np.ndarray) -> np.ndarray:
    """``-sum_c p log p`` over the last axis, in nats, with ``0 log 0 = 0``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(distribution > 0, distribution * np.log(distribution), 0.0)
    return -terms.sum(axis=-1)


def entropy(class_probs: np.ndarray) -> np.ndarray:
    """Normalised entropy of each box's class distribution, ``H(p) / log C`` in [0, 1]; ``(M, C)`` ->
    ``(M,)``. With one class there is no class uncertainty and the entropy is 0."""
    if class_probs.shape[0] == 0 or class_probs.shape[1] < 2:
        return np.zeros(class_probs.shape[0])
    return _entropy_nats(class_distribution(class_probs)) / np.log(class_probs.shape[1])


def mutual_information(samples: np.ndarray) -> np.ndarray:
    """BALD: ``H(mean_t p_t) - mean_t H(p_t)`` per box, in nats, from ``(T, M, C)`` class probabilities of
    the same ``M`` boxes under ``T`` stochastic forward passes; returns ``(M,)``, >= 0.

    High when the passes disagree with each other (epistemic uncertainty), low when every pass gives the
    same distribution, however flat it is.
    """
    if samples.ndim != 3:
        raise ValueError(f"mutual_information: expected (T, M, C) samples, got shape {samples.shape}")
    distributions = class_distribution(samples)
    total = _entropy_nats(distributions.mean(axis=0))
    expected = _entropy_nats(distributions).mean(axis=0)
    return np.maximum(total - expected, 0.0)


def vote_entropy(samples: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Vote entropy of a committee per box, in nats: ``-sum_v (V(v) / T) log(V(v) / T)`` over the
    outcomes v = each class, plus "missed" for members that did not detect the box at all.

    Args:
        samples: ``(T, M, C)`` class probabilities of the ``M`` boxes from each of ``T`` members.
        found: ``(T, M)`` bool, whether member t detected box m (its vote is then its top class).

    Returns:
        ``(M,)``: 0 when all members agree, ``log T`` at most.
    """
    if samples.ndim != 3 or found.shape != samples.shape[:2]:
        raise ValueError(f"vote_entropy: expected (T, M, C) samples and (T, M) found, got {samples.shape} and "
                         f"{found.shape}")
    members, boxes, classes = samples.shape
    votes = np.where(found, samples.argmax(axis=2), classes)  # (T, M); class C means "missed"
    counts = np.zeros((boxes, classes + 1))
    np.add.at(counts, (np.broadcast_to(np.arange(boxes), votes.shape), votes), 1.0)
    return _entropy_nats(counts / max(members, 1))


UNCERTAINTIES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "least_confidence": least_confidence, "margin": margin, "entropy": entropy}


def aggregate(values: np.ndarray, frame_of_box: np.ndarray, num_frames: int, how: str, top_k: int = 3) -> np.ndarray:
    """Reduce per-box ``values`` ``(M,)`` to per-frame scores ``(num_frames,)``.

    ``frame_of_box`` ``(M,)`` gives each box's frame in ``[0, num_frames)``; ``how`` is one of
    :data:`AGGREGATIONS` (``topk_mean``: the mean of a frame's ``top_k`` highest values, or of all of
    them if it has fewer). Frames without boxes get NaN (the caller applies the empty-frame policy).
    """
    if how not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation '{how}', expected one of {AGGREGATIONS}")
    counts = np.bincount(frame_of_box, minlength=num_frames).astype(np.float64)
    if how == "topk_mean":
        order = np.lexsort((-values, frame_of_box))
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        rank = np.arange(order.size) - starts[frame_of_box[order]]
        kept = order[rank < top_k]
        result = np.bincount(frame_of_box[kept], weights=values[kept], minlength=num_frames)
        result = result / np.maximum(np.minimum(counts, top_k), 1)
    elif how in ("sum", "mean"):
        result = np.bincount(frame_of_box, weights=values, minlength=num_frames).astype(np.float64)
        if how == "mean":
            result = result / np.maximum(counts, 1)
    else:
        result = np.full(num_frames, -np.inf if how == "max" else np.inf)
        (np.maximum if how == "max" else np.minimum).at(result, frame_of_box, values)
    result[counts == 0] = np.nan
    return result
