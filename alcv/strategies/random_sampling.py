"""The random baseline: uniformly random frames, reproducible from the seed and the loop."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from alcv.models.detections import Detections
from alcv.strategies.base import PoolStats, select_by_score
from alcv.strategies.selection import Picker


class RandomStrategy:
    """Uniformly random frames, reproducible from ``seed`` and the loop (no pool inference needed)."""

    name = "random"
    request = None

    def frame_stats(self, detections: Sequence[Detections]) -> dict[str, np.ndarray]:
        return {}

    def select(self, pool: PoolStats, picker: Picker, seed: int) -> np.ndarray:
        """Candidates in a seeded random order, as far as the picker takes them."""
        return select_by_score(pool, picker, np.zeros(pool.candidates.size), seed)
