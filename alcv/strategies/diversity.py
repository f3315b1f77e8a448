"""Diversity: core-set k-centre greedy on per-frame embeddings, and :class:`CoresetStrategy`.

Memory is O(pool x dim): the embeddings plus one distance per candidate, never a pool x pool matrix;
distances are computed in blocks of bounded size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from alcv.models.detections import Detections, PredictionRequest
from alcv.strategies.base import PoolStats
from alcv.strategies.selection import Picker, tie_break_keys

#: candidate x centre distances computed at once (about 32 MiB of float64 per temporary)
BLOCK_ELEMENTS = 2**22
#: distances within this relative margin of the farthest count as equally far (ties go to the seeded keys)
TIE_TOLERANCE = 1e-9


def frame_embeddings(detections: Sequence[Detections]) -> np.ndarray:
    """``(B, D)`` float32: the embedding of each frame of ``detections``."""
    missing = [d.index for d in detections if d.embedding is None]
    if missing:
        raise ValueError(f"frames {missing[:5]}: the detections carry no embedding; the model must fill "
                         "Detections.embedding when PredictionRequest.embeddings is set")
    return np.stack([d.embedding.numpy() for d in detections]).astype(np.float32)  # type: ignore[union-attr]


def nearest_distances(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Euclidean distance from each of ``points`` ``(N, D)`` to its nearest of ``centres`` ``(L, D)``;
    ``+inf`` for every point when there is no centre. Computed in blocks of about :data:`BLOCK_ELEMENTS`
    point-centre pairs, so memory stays O(N + L x D + block) however large L is."""
    distances = np.full(len(points), np.inf)
    if len(centres) == 0:
        return distances
    centres = centres.astype(np.float64)
    centre_norms = (centres**2).sum(axis=1)
    rows = max(1, BLOCK_ELEMENTS // len(centres))
    columns = min(len(centres), BLOCK_ELEMENTS)
    for start in range(0, len(points), rows):
        block = points[start:start + rows].astype(np.float64)
        block_norms = (block**2).sum(axis=1)
        nearest = np.full(len(block), np.inf)
        for first in range(0, len(centres), columns):
            products = block @ centres[first:first + columns].T
            products *= -2.0
            products += block_norms[:, None]
            products += centre_norms[None, first:first + columns]
            np.minimum(nearest, products.min(axis=1), out=nearest)
        distances[start:start + rows] = np.sqrt(np.maximum(nearest, 0.0))
    return distances


def k_centre_greedy(embeddings: np.ndarray, centres: np.ndarray, picker: Picker, keys: np.ndarray,
                    positions: np.ndarray | None = None) -> np.ndarray:
    """Core-set selection (Sener and Savarese, 2018): repeatedly take the candidate farthest from every
    centre (the labeled frames and the picks so far), as long as ``picker`` accepts.

    Args:
        embeddings: ``(N, D)`` candidate embeddings.
        centres: ``(L, D)`` embeddings of the labeled frames.
        picker: enforces the budget and spreading; candidates it refuses are offered again only after it
            relaxes its spreading (a refusal cannot become an acceptance as picks are added).
        keys: ``(N,)`` tie-break keys (the smallest wins among equally far candidates: within
            :data:`TIE_TOLERANCE` of the farthest, relatively, which absorbs the rounding of the matrix
            products).
        positions: ``(N,)`` the picker's position of each row (default: the row number).

    Returns:
        the picker's positions taken, in pick order.
    """
    positions = np.arange(len(embeddings)) if positions is None else positions
    distances = nearest_distances(embeddings, centres)
    rows = max(1, BLOCK_ELEMENTS // max(embeddings.shape[1], 1))
    open_rows, picked_rows = np.ones(len(embeddings), dtype=bool), np.zeros(len(embeddings), dtype=bool)
    taken: list[int] = []
    while not picker.full:
        if not open_rows.any():
            if not picker.relax():
                break
            open_rows = ~picked_rows
        farthest = np.where(open_rows, distances, -np.inf)
        reach = farthest.max()
        best = np.flatnonzero(farthest >= reach - TIE_TOLERANCE * abs(reach)) if np.isfinite(reach) else \
            np.flatnonzero(farthest == reach)
        row = int(best[np.argmin(keys[best])])
        open_rows[row] = False
        if not picker.offer(int(positions[row])):
            continue
        taken.append(int(positions[row]))
        picked_rows[row] = True
        centre = embeddings[row].astype(np.float64)
        # exact differences, not matrix products, so that copies of the pick are at distance 0 wherever they are
        for start in range(0, len(embeddings), rows):
            step = np.sqrt(((embeddings[start:start + rows] - centre) ** 2).sum(axis=1))
            np.minimum(distances[start:start + rows], step, out=distances[start:start + rows])
    return np.asarray(taken, dtype=np.int64)


class CoresetStrategy:
    """Core-set k-centre greedy on per-frame embeddings (pooled backbone features): frames that cover
    the parts of the pool farthest from everything labeled. Seeded and deterministic."""

    name = "coreset"

    def __init__(self) -> None:
        self.request = PredictionRequest(embeddings=True, include_labeled=True)

    def frame_stats(self, detections: Sequence[Detections]) -> dict[str, np.ndarray]:
        return {"embedding": frame_embeddings(detections)}

    def select(self, pool: PoolStats, picker: Picker, seed: int) -> np.ndarray:
        return k_centre_greedy(pool.column("embedding"), pool.labeled_columns.get("embedding", np.zeros((0, 1))),
                               picker, tie_break_keys(pool.candidates, seed))
