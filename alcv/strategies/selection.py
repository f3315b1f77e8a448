"""Ranking and top-k selection over absolute dataset indices; pure functions, no I/O."""

from __future__ import annotations

import numpy as np


def _splitmix64(values: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser: a bijective, well-mixing hash of ``uint64`` values."""
    with np.errstate(over="ignore"):
        z = values + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def tie_break_keys(indices: np.ndarray, seed: int) -> np.ndarray:
    """Seeded pseudo-random ``uint64`` key per absolute index: ``splitmix64(index ^ splitmix64(seed))``.

    The key of an index depends only on ``(index, seed)``, never on its position in the array, so
    rankings that use it are invariant to the order in which candidates are given; hashing the seed
    first makes seeds that differ in a few bits give unrelated orders.
    """
    seed_hash = _splitmix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))[0]
    return _splitmix64(np.asarray(indices, dtype=np.uint64) ^ seed_hash)


def top_k(candidates: np.ndarray, scores: np.ndarray, k: int, seed: int) -> np.ndarray:
    """The ``k`` candidates with the highest scores, best first.

    Args:
        candidates: ``(N,)`` distinct absolute indices.
        scores: ``(N,)`` float, higher = more worth labeling; ``+inf``/``-inf`` allowed, NaN not.
        k: how many to return; more than ``N`` returns all of them.
        seed: breaks ties in score with :func:`tie_break_keys`, so equal scores are ordered randomly
            but reproducibly.

    Returns:
        ``(min(k, N),)`` int64 absolute indices.
    """
    candidates = np.asarray(candidates, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    if candidates.shape != scores.shape or candidates.ndim != 1:
        raise ValueError(f"top_k: 'candidates' and 'scores' must be 1-D of equal length, got "
                         f"{candidates.shape} and {scores.shape}")
    if np.isnan(scores).any():
        raise ValueError("top_k: 'scores' contains NaN; every candidate needs a score")
    if k < 0:
        raise ValueError(f"top_k: 'k' must be >= 0, got {k}")
    order = np.lexsort((tie_break_keys(candidates, seed), -scores))
    return candidates[order[:k]]
