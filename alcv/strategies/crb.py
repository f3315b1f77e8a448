"""CRB: concise labels, representative features, balanced geometry (Luo et al., "Exploring Active 3D Object
Detection from a Generalization Perspective", ICLR 2023, arXiv:2301.09249), and :class:`CRBStrategy`.

Three filters in turn narrow the pool down to one acquisition:

1. **Conciseness**: the ``k1`` x (expected picks) candidates whose predicted boxes have the most even class mix,
   by the entropy of the predicted-label histogram (:func:`label_entropy`); a frame of one class (or none)
   scores 0.
2. **Representativeness**: ``k2`` x (expected picks) prototypes of those, seeded k-means++ on their embeddings
   (:func:`kmeans_plus_plus`).
3. **Balance**: greedily, the prototype whose predicted boxes bring the acquisition's distribution of a box
   geometry closest to the pool's, per class (:func:`geometry_balance`).

Where this differs from the paper, and why:

- Representativeness uses the frame embedding (pooled backbone features) that every alcv detector provides,
  not the gradient of the second-stage head's loss, which a one-stage heatmap detector does not have.
- Balance matches the distribution of the boxes' **range** from the sensor in bird's-eye view (metres), or of
  the square root of the box area (pixels) for 2D boxes, instead of the count of points inside each box: the
  detections carry boxes, not points, and a spinning LiDAR's point density falls with the square of the
  range, so range is the geometry that sets it. The target is, as in the paper, uniform per class between the
  pool's ``(1 - alpha)`` and ``alpha`` quantiles of that value, compared with a Gaussian kernel density of the
  picks' values by ``2/pi arctan(pi/2 KL)``; the kernel's bandwidth is a fraction of that span (the paper's is
  in points).
- When the prototypes run out with budget left (a box budget, spreading), the rest is filled in stage-1 order,
  so the budget is spent.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import entr, rel_entr

from alcv.models.detections import Detections, PredictionRequest
from alcv.strategies.base import BoxFilter, PoolStats
from alcv.strategies.diversity import frame_embeddings, nearest_distances
from alcv.strategies.selection import Picker, ranked_positions, tie_break_keys, top_k

#: points at which each class's target and kernel densities are compared
GRID_POINTS = 64


def box_geometry(boxes: np.ndarray) -> np.ndarray:
    """The geometry that stage 3 balances, per box: ``(M, 7)`` LiDAR boxes ``[x, y, z, dx, dy, dz, yaw]`` -> their
    range ``hypot(x, y)`` in metres from the sensor in bird's-eye view; ``(M, 4)`` ``xyxy`` image boxes -> the
    square root of their area in pixels. Returns ``(M,)`` float64."""
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] not in (4, 7):
        raise ValueError(f"box_geometry: expected (M, 7) LiDAR or (M, 4) xyxy boxes, got shape {boxes.shape}")
    if boxes.shape[1] == 7:
        return np.hypot(boxes[:, 0], boxes[:, 1])
    return np.sqrt(np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None))


def label_entropy(box_class: np.ndarray, num_classes: int) -> np.ndarray:
    """Entropy in nats of each frame's predicted-label histogram, from ``(N, K)`` class ids padded with -1;
    returns ``(N,)``, 0 for a frame whose boxes are all of one class or that has none, ``log C`` at most."""
    box_class = np.asarray(box_class)
    counts = np.stack([(box_class == c).sum(axis=1) for c in range(num_classes)], axis=1).astype(np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    return entr(counts / np.where(totals > 0, totals, 1.0)).sum(axis=1)


def kmeans_plus_plus(embeddings: np.ndarray, count: int, keys: np.ndarray, seed: int) -> np.ndarray:
    """``count`` prototypes of ``embeddings`` ``(N, D)`` by k-means++ seeding (Arthur and Vassilvitskii, 2007):
    the first is the row with the smallest tie-break key of ``keys`` ``(N,)``, each next one is drawn with
    probability proportional to its squared distance to the nearest prototype so far (the seed's generator).
    Returns ``(min(count, N),)`` distinct row numbers in the order they were chosen; once every row left
    coincides with a prototype, the rest follow by key."""
    count = min(int(count), len(embeddings))
    if count <= 0:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    chosen = [int(np.argmin(keys))]
    distances = nearest_distances(embeddings, embeddings[chosen])
    while len(chosen) < count:
        weights = distances**2
        weights[chosen] = 0.0
        if weights.sum() > 0:
            row = int(rng.choice(len(embeddings), p=weights / weights.sum()))
        else:
            left = np.setdiff1d(np.arange(len(embeddings)), chosen)
            row = int(left[np.argmin(keys[left])])
        chosen.append(row)
        np.minimum(distances, nearest_distances(embeddings, embeddings[[row]]), out=distances)
    return np.asarray(chosen, dtype=np.int64)


class GeometryTarget:
    """Per class, the uniform target density of the box geometry and the Gaussian kernels of boxes on a grid.

    Args:
        values: ``(B,)`` the geometry of every predicted box of the pool.
        classes: ``(B,)`` their predicted class ids.
        num_classes: C.
        alpha: the target spans the ``(1 - alpha)`` to ``alpha`` quantiles of each class's values.
        bandwidth_fraction: the kernel's standard deviation as a fraction of that span.
    """

    def __init__(self, values: np.ndarray, classes: np.ndarray, num_classes: int, alpha: float,
                 bandwidth_fraction: float) -> None:
        self.classes = [c for c in range(num_classes) if (classes == c).any()]
        self.grids, self.targets, self.bandwidths = [], [], []
        for c in self.classes:
            own = values[classes == c]
            low, high = np.quantile(own, [1.0 - alpha, alpha])
            bandwidth = max(bandwidth_fraction * (high - low), 1e-6 * max(abs(high), 1.0))
            grid = np.linspace(own.min() - 3 * bandwidth, own.max() + 3 * bandwidth, GRID_POINTS)
            target = ((grid >= low) & (grid <= high)).astype(np.float64)
            if not target.any():  # every value equal: the target is the grid point nearest to it
                target[np.argmin(np.abs(grid - low))] = 1.0
            self.grids.append(grid)
            self.targets.append(target / target.sum())
            self.bandwidths.append(bandwidth)

    def kernels(self, values: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """``(len(self.classes), GRID_POINTS)``: per target class, the summed Gaussian kernels of the boxes
        ``values`` ``(K,)`` of that class (``classes`` ``(K,)``) on its grid (unnormalised)."""
        result = np.zeros((len(self.classes), GRID_POINTS))
        for row, (c, grid, bandwidth) in enumerate(zip(self.classes, self.grids, self.bandwidths, strict=True)):
            own = values[classes == c]
            if own.size:
                result[row] = np.exp(-0.5 * ((grid[None, :] - own[:, None]) / bandwidth) ** 2).sum(axis=0)
        return result


def geometry_balance(target: GeometryTarget, picked: np.ndarray, candidates: np.ndarray,
                     candidate_counts: np.ndarray) -> np.ndarray:
    """Stage 3's score of adding each candidate to the picks: the mean over target classes of
    ``1 - 2/pi arctan(pi/2 KL(target || density))``, where density is the kernel density of the picks' boxes
    plus the candidate's (a class the candidate has no box of counts as 0, as in the paper); in [0, 1], higher
    is closer to the target.

    Args:
        target: the pool's :class:`GeometryTarget`.
        picked: ``(T, G)`` the summed kernels of the picks so far.
        candidates: ``(N, T, G)`` the summed kernels of each candidate's boxes.
        candidate_counts: ``(N, T)`` each candidate's boxes per target class.
    """
    mixture = picked[None] + candidates
    totals = mixture.sum(axis=2, keepdims=True)
    density = mixture / np.where(totals > 0, totals, 1.0)
    targets = np.stack(target.targets)[None]  # (1, T, G)
    divergence = rel_entr(targets, np.maximum(density, 1e-300)).sum(axis=2)
    closeness = 1.0 - 2.0 / np.pi * np.arctan(np.pi / 2.0 * divergence)
    return np.where(candidate_counts > 0, closeness, 0.0).mean(axis=1)


class CRBStrategy:
    """CRB active 3D detection (Luo et al., ICLR 2023): concise labels, then representative prototypes, then
    geometric balance; see the module's docstring for the stages and where alcv departs from the paper.

    Args:
        num_classes: C, the detector's classes.
        k1: stage-1 candidates per expected pick (expected picks = the budget over the mean candidate cost).
        k2: stage-2 prototypes per expected pick, at most ``k1``.
        alpha: the quantile that bounds each class's uniform geometry target (the paper's 0.95).
        bandwidth_fraction: the kernel's bandwidth as a fraction of the target's span.
        min_score: predicted boxes scored below this do not count (for labels and geometry).
        max_boxes: at most this many boxes per frame (the highest scored) are kept for stage 3.
    """

    name = "crb"

    def __init__(self, num_classes: int, k1: float = 5.0, k2: float = 3.0, alpha: float = 0.95,
                 bandwidth_fraction: float = 0.1, min_score: float = 0.3, max_boxes: int = 100) -> None:
        if num_classes < 1:
            raise ValueError(f"strategy.num_classes: must be >= 1, got {num_classes}")
        if not 1.0 <= k2 <= k1:
            raise ValueError(f"strategy.k1 and strategy.k2: need 1 <= k2 <= k1, got k1={k1}, k2={k2}")
        if not 0.5 < alpha <= 1.0:
            raise ValueError(f"strategy.alpha: must be in (0.5, 1], got {alpha}")
        if not bandwidth_fraction > 0:
            raise ValueError(f"strategy.bandwidth_fraction: must be > 0, got {bandwidth_fraction}")
        if max_boxes < 1:
            raise ValueError(f"strategy.max_boxes: must be >= 1, got {max_boxes}")
        self.num_classes = num_classes
        self.k1, self.k2, self.alpha, self.bandwidth_fraction = k1, k2, alpha, bandwidth_fraction
        self.filter = BoxFilter(min_score)
        self.max_boxes = max_boxes
        self.request = PredictionRequest(embeddings=True)

    def frame_stats(self, detections: Sequence[Detections]) -> dict[str, np.ndarray]:
        """``box_class`` and ``box_geometry`` ``(B, max_boxes)``: the class id and geometry (both -1 pads)
        of each frame's highest-scored boxes that count, and ``embedding`` ``(B, D)``."""
        box_class = np.full((len(detections), self.max_boxes), -1.0)
        geometry = np.full((len(detections), self.max_boxes), -1.0)
        for row, frame in enumerate(detections):
            kept = np.flatnonzero(self.filter.kept(frame))
            kept = kept[np.argsort(-frame.scores.numpy()[kept], kind="stable")][:self.max_boxes]
            box_class[row, :kept.size] = frame.labels.numpy()[kept]
            geometry[row, :kept.size] = box_geometry(frame.boxes.numpy()[kept])
        return {"box_class": box_class, "box_geometry": geometry, "embedding": frame_embeddings(detections)}

    def select(self, pool: PoolStats, picker: Picker, seed: int) -> np.ndarray:
        candidates = pool.candidates
        if candidates.size == 0:
            return np.zeros(0, dtype=np.int64)
        box_class = pool.column("box_class").astype(np.int64)
        entropies = label_entropy(box_class, self.num_classes)
        expected_picks = picker.rules.budget / max(float(picker.costs.mean()), 1e-9)
        concise = np.searchsorted(candidates, top_k(candidates, entropies, int(np.ceil(self.k1 * expected_picks)),
                                                    seed))
        prototypes = concise[kmeans_plus_plus(pool.column("embedding")[concise],
                                              int(np.ceil(self.k2 * expected_picks)),
                                              tie_break_keys(candidates[concise], seed), seed)]
        if prototypes.size:
            self._balance(pool, box_class, prototypes, picker, tie_break_keys(candidates, seed))
        picker.take_in_order(lambda: ranked_positions(candidates, entropies, seed))
        return np.asarray(picker.positions, dtype=np.int64)

    def _balance(self, pool: PoolStats, box_class: np.ndarray, prototypes: np.ndarray,
                 picker: Picker, keys: np.ndarray) -> None:
        """Stage 3: offer the ``prototypes`` (positions) to ``picker`` greedily, each time the one that brings
        the picks closest to the pool's geometry target (ties to the smallest of ``keys``)."""
        geometry = pool.column("box_geometry").astype(np.float64)
        boxes = box_class >= 0
        target = GeometryTarget(geometry[boxes], box_class[boxes], self.num_classes, self.alpha,
                                self.bandwidth_fraction)
        if not target.classes:  # no predicted box anywhere: nothing to balance, stage 1's order decides
            return
        kernels = np.stack([target.kernels(geometry[p][boxes[p]], box_class[p][boxes[p]]) for p in prototypes])
        counts = np.stack([[(box_class[p] == c).sum() for c in target.classes] for p in prototypes])
        picked = np.zeros_like(kernels[0])
        open_rows, picked_rows = np.ones(len(prototypes), dtype=bool), np.zeros(len(prototypes), dtype=bool)
        while not picker.full:
            if not open_rows.any():
                if not picker.relax():
                    return
                open_rows = ~picked_rows
            scores = np.where(open_rows, geometry_balance(target, picked, kernels, counts), -np.inf)
            best = np.flatnonzero(scores == scores.max())
            row = int(best[np.argmin(keys[prototypes[best]])])
            open_rows[row] = False
            if picker.offer(int(prototypes[row])):
                picked_rows[row] = True
                picked += kernels[row]
