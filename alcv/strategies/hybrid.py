"""Uncertainty, then diversity: an uncertainty pre-filter followed by core-set k-centre greedy."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from alcv.models.detections import Detections, PredictionRequest
from alcv.strategies.base import PoolStats
from alcv.strategies.diversity import frame_embeddings, k_centre_greedy
from alcv.strategies.selection import Picker, tie_break_keys, top_k
from alcv.strategies.uncertainty import UncertaintyStrategy


class HybridStrategy:
    """Uncertainty first, then diversity (cluster-margin style): keep the ``prefilter`` x (expected
    picks) most uncertain candidates, then pick among them with k-centre greedy, so that one acquisition
    does not spend its budget on near-duplicates of one uncertain scene.

    Args:
        uncertainty: an :class:`UncertaintyStrategy` that scores the frames (``least_confidence`` etc.).
        prefilter: how many candidates per expected pick survive the pre-filter (expected picks = the
            budget divided by the mean candidate cost), at least 1.
    """

    name = "hybrid"

    def __init__(self, uncertainty: UncertaintyStrategy, prefilter: float = 10.0) -> None:
        if prefilter < 1:
            raise ValueError(f"strategy.prefilter must be >= 1, got {prefilter}")
        if uncertainty.request.passes > 1 or uncertainty.request.members > 1:
            raise ValueError("strategy=hybrid: its uncertainty must come from one deterministic model "
                             f"(least_confidence, margin or entropy), got '{uncertainty.name}'")
        self.uncertainty = uncertainty
        self.prefilter = prefilter
        self.request = PredictionRequest(embeddings=True, include_labeled=True)

    def frame_stats(self, detections: Sequence[Detections]) -> dict[str, np.ndarray]:
        return {"score": self.uncertainty.frame_scores(detections), "embedding": frame_embeddings(detections)}

    def select(self, pool: PoolStats, picker: Picker, seed: int) -> np.ndarray:
        expected_picks = picker.rules.budget / max(float(picker.costs.mean()), 1e-9) if picker.costs.size else 0
        keep = max(int(np.ceil(self.prefilter * expected_picks)), 1)
        survivors = np.searchsorted(pool.candidates, top_k(pool.candidates, pool.column("score"), keep, seed))
        keys = tie_break_keys(pool.candidates[survivors], seed)
        return k_centre_greedy(pool.column("embedding")[survivors],
                               pool.labeled_columns.get("embedding", np.zeros((0, 1))), picker, keys, survivors)
