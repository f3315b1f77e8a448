"""Exact intersection over union of rotated 3D boxes, in bird's-eye view (BEV) and in 3D.

Boxes are alcv's ``(N, 7)`` float arrays ``[x, y, z, dx, dy, dz, yaw]`` in the LiDAR frame, metres and radians:
``(x, y, z)`` the box centre, ``dx`` the length along the heading, ``dy`` the width, ``dz`` the height and
``yaw`` the heading around +z (0 = +x axis, counter-clockwise). BEV is the x-y plane; the vertical extent of a
box is ``[z - dz/2, z + dz/2]``.

The BEV intersection is computed exactly (up to float64 rounding) by expressing box ``b`` in the frame of box
``a`` (so that ``a`` becomes the axis-aligned rectangle ``[-dx/2, dx/2] x [-dy/2, dy/2]`` centred at the
origin, which also keeps large absolute coordinates from costing precision), clipping ``b``'s rectangle
against ``a``'s four edges (Sutherland-Hodgman) and taking the shoelace area of the resulting convex
polygon. All pairs are processed at once with numpy, in blocks of at most :data:`PAIRS_PER_BLOCK` pairs.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

__all__ = ["PAIRS_PER_BLOCK", "IouMode", "as_boxes", "bev_iou", "bev_iou_pairs", "box_corners_bev", "index_pair_iou",
           "iou_3d", "iou_3d_pairs"]

PAIRS_PER_BLOCK = 1 << 15
"""Box pairs processed per vectorised block (bounds the temporary memory to a few tens of MB)."""

#: the IoU of the rotated rectangles in the x-y plane (``"bev"``) or of the boxes' volumes (``"3d"``)
IouMode = Literal["bev", "3d"]

# Box-frame corners of the unit rectangle, counter-clockwise seen from +z: rear-right, front-right,
# front-left, rear-left.
_UNIT_CORNERS_BEV = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])

# Vertices closer than this fraction of the pair's largest side to a clipping edge count as lying on it,
# so that shared or collinear edges produce neither spurious nor duplicate vertices.
_ON_EDGE_TOLERANCE = 1e-9


def box_corners_bev(boxes: np.ndarray) -> np.ndarray:
    """BEV corners of boxes.

    Args:
        boxes: ``(N, 7)`` ``[x, y, z, dx, dy, dz, yaw]`` in the LiDAR frame, metres / radians.

    Returns:
        ``(N, 4, 2)`` float64 corner ``x, y`` in the LiDAR frame, metres, counter-clockwise seen from +z,
        starting at the rear-right corner (``-dx/2, -dy/2`` in the box frame).
    """
    boxes = as_boxes("boxes", boxes)
    return _corners(boxes[:, 0], boxes[:, 1], boxes[:, 3], boxes[:, 4], boxes[:, 6])


def bev_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every pair of boxes in the x-y plane.

    Args:
        a: ``(N, 7)`` boxes ``[x, y, z, dx, dy, dz, yaw]``, LiDAR frame, metres / radians; sizes >= 0.
        b: ``(M, 7)`` boxes, same conventions.

    Returns:
        ``(N, M)`` float64 in ``[0, 1]``: area of the intersection of the rotated rectangles over the area of
        their union; 0 where the union has zero area.
    """
    return _all_pairs("bev", as_boxes("a", a), as_boxes("b", b))


def iou_3d(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """3D IoU of every pair of boxes (yaw-only rotation).

    The intersection volume is the BEV intersection area times the overlap of the height intervals
    ``[z - dz/2, z + dz/2]``; the union is ``vol(a) + vol(b) - intersection``.

    Args:
        a: ``(N, 7)`` boxes ``[x, y, z, dx, dy, dz, yaw]``, LiDAR frame, metres / radians; sizes >= 0.
        b: ``(M, 7)`` boxes, same conventions.

    Returns:
        ``(N, M)`` float64 in ``[0, 1]``; 0 where the union has zero volume.
    """
    return _all_pairs("3d", as_boxes("a", a), as_boxes("b", b))


def bev_iou_pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise :func:`bev_iou` of ``(K, 7)`` boxes ``a`` and ``b``: ``(K,)`` float64, ``out[k]`` the IoU of
    ``a[k]`` and ``b[k]``."""
    return _row_pairs("bev", a, b)


def iou_3d_pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise :func:`iou_3d` of ``(K, 7)`` boxes ``a`` and ``b``: ``(K,)`` float64, ``out[k]`` the IoU of
    ``a[k]`` and ``b[k]``."""
    return _row_pairs("3d", a, b)


def as_boxes(name: str, value: Any) -> np.ndarray:
    """``value`` as validated ``(N, 7)`` float64 boxes ``[x, y, z, dx, dy, dz, yaw]``; an empty array of any shape
    means no boxes. Raises ``ValueError`` naming ``name`` unless the boxes are real-valued, finite and of sizes
    ``>= 0``."""
    arr = np.asarray(value)
    if arr.size == 0:
        arr = arr.reshape(0, 7)
    if arr.ndim != 2 or arr.shape[1] != 7:
        raise ValueError(f"{name}: expected shape (N, 7) [x, y, z, dx, dy, dz, yaw], got {arr.shape}")
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name}: expected a real-valued dtype, got {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: expected finite values, got NaN or inf")
    if np.any(arr[:, 3:6] < 0):
        raise ValueError(f"{name}: expected box sizes dx, dy, dz >= 0, got a negative size")
    return arr


def index_pair_iou(
    mode: IouMode, a: np.ndarray, b: np.ndarray, a_index: np.ndarray, b_index: np.ndarray
) -> np.ndarray:
    """IoU of the pairs ``(a[a_index[k]], b[b_index[k]])``, without materialising the gathered boxes at once.

    Args:
        mode: ``"bev"`` for the x-y plane IoU, ``"3d"`` for the volume IoU.
        a: ``(N, 7)`` float64 boxes, validated by :func:`as_boxes`.
        b: ``(M, 7)`` float64 boxes, validated by :func:`as_boxes`.
        a_index: ``(K,)`` int indices into ``a``.
        b_index: ``(K,)`` int indices into ``b``.

    Returns:
        ``(K,)`` float64 in ``[0, 1]``.
    """
    out = np.empty(len(a_index), dtype=np.float64)
    for start in range(0, len(a_index), PAIRS_PER_BLOCK):
        block = slice(start, start + PAIRS_PER_BLOCK)
        out[block] = _pair_iou(mode, a[a_index[block]], b[b_index[block]])
    return out


def _row_pairs(mode: IouMode, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = _as_row_pairs(a, b)
    return index_pair_iou(mode, a, b, np.arange(len(a)), np.arange(len(b)))


def _all_pairs(mode: IouMode, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(N, M)`` IoU of all pairs, in blocks of whole rows of about :data:`PAIRS_PER_BLOCK` pairs."""
    out = np.empty((len(a), len(b)), dtype=np.float64)
    if out.size == 0:
        return out
    rows_per_block = max(1, PAIRS_PER_BLOCK // len(b))
    for start in range(0, len(a), rows_per_block):
        rows = np.arange(start, min(start + rows_per_block, len(a)))
        a_index = np.repeat(rows, len(b))
        b_index = np.tile(np.arange(len(b)), len(rows))
        out[rows] = _pair_iou(mode, a[a_index], b[b_index]).reshape(len(rows), len(b))
    return out


def _pair_iou(mode: IouMode, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(K,)`` IoU of the row-wise pairs of validated ``(K, 7)`` boxes."""
    size_a = a[:, 3] * a[:, 4]
    size_b = b[:, 3] * b[:, 4]
    # Only pairs whose circumscribed circles meet (and, in 3D, whose heights overlap) need the clipping.
    reach = 0.5 * (np.hypot(a[:, 3], a[:, 4]) + np.hypot(b[:, 3], b[:, 4]))
    may_touch = np.hypot(b[:, 0] - a[:, 0], b[:, 1] - a[:, 1]) <= reach
    if mode == "3d":
        top = np.minimum(a[:, 2] + 0.5 * a[:, 5], b[:, 2] + 0.5 * b[:, 5])
        bottom = np.maximum(a[:, 2] - 0.5 * a[:, 5], b[:, 2] - 0.5 * b[:, 5])
        height_overlap = np.maximum(top - bottom, 0.0)
        may_touch &= height_overlap > 0
        size_a = size_a * a[:, 5]
        size_b = size_b * b[:, 5]
    intersection = np.zeros(len(a), dtype=np.float64)
    intersection[may_touch] = _bev_intersection_area(a[may_touch], b[may_touch])
    if mode == "3d":
        intersection *= height_overlap
    # Rounding must not push the intersection above the smaller box (IoU > 1) or make it positive when a box
    # is degenerate.
    intersection = np.minimum(intersection, np.minimum(size_a, size_b))
    union = size_a + size_b - intersection
    return np.divide(intersection, union, out=np.zeros_like(union), where=union > 0)


def _bev_intersection_area(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(K,)`` area (m²) of the intersection of the BEV rectangles of row-wise pairs of ``(K, 7)`` boxes."""
    # b in a's frame: a becomes [-dx/2, dx/2] x [-dy/2, dy/2].
    cos_a, sin_a = np.cos(a[:, 6]), np.sin(a[:, 6])
    offset_x, offset_y = b[:, 0] - a[:, 0], b[:, 1] - a[:, 1]
    polygon = _corners(
        cos_a * offset_x + sin_a * offset_y,
        -sin_a * offset_x + cos_a * offset_y,
        b[:, 3],
        b[:, 4],
        b[:, 6] - a[:, 6],
    )
    count = np.full(len(a), 4, dtype=np.int64)
    half_length, half_width = 0.5 * a[:, 3], 0.5 * a[:, 4]
    tolerance = _ON_EDGE_TOLERANCE * np.maximum.reduce([a[:, 3], a[:, 4], b[:, 3], b[:, 4]])
    edges = ((0, 1.0, half_length), (0, -1.0, half_length), (1, 1.0, half_width), (1, -1.0, half_width))
    for axis, sign, half in edges:
        # Inside the half-plane sign * coordinate <= half  <=>  margin >= 0.
        margin = half[:, None] - sign * polygon[..., axis]
        margin[np.abs(margin) <= tolerance[:, None]] = 0.0
        polygon, count = _clip(polygon, count, margin)
    return _shoelace_area(polygon, count)


def _clip(polygon: np.ndarray, count: np.ndarray, margin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One Sutherland-Hodgman step: keep the part of each convex polygon where the margin is >= 0.

    Args:
        polygon: ``(K, V, 2)`` vertices, counter-clockwise; only the first ``count[k]`` of row ``k`` are used.
        count: ``(K,)`` number of vertices of each polygon, ``<= V``.
        margin: ``(K, V)`` signed distance (metres) of each vertex to the clipping line, >= 0 inside; exact
            zeros mark vertices on the line.

    Returns:
        ``(polygon (K, V + 1, 2), count (K,))`` of the clipped polygons. A vertex on the line is kept and
        an edge only yields an intersection point when it crosses the line strictly, so no duplicate
        vertices arise.
    """
    num_polygons, max_vertices = margin.shape
    position = np.arange(max_vertices)
    valid = position < count[:, None]
    following = np.where(position + 1 < count[:, None], position + 1, 0)
    next_margin = np.take_along_axis(margin, following, axis=1)
    next_vertex = np.take_along_axis(polygon, following[..., None], axis=1)
    keep = valid & (margin >= 0)
    crosses = valid & (((margin > 0) & (next_margin < 0)) | ((margin < 0) & (next_margin > 0)))
    fraction = margin / np.where(crosses, margin - next_margin, 1.0)
    crossing = polygon + fraction[..., None] * (next_vertex - polygon)
    # Per edge, in order: its start vertex if kept, then its crossing point if any.
    candidates = np.stack([polygon, crossing], axis=2).reshape(num_polygons, 2 * max_vertices, 2)
    emitted = np.stack([keep, crosses], axis=2).reshape(num_polygons, 2 * max_vertices)
    # Compact the emitted points to the front of each row. A convex polygon gains at most one vertex per
    # clip; dropping points beyond that capacity only guards against rounding.
    capacity = max_vertices + 1
    slot = np.cumsum(emitted, axis=1) - 1
    stored = emitted & (slot < capacity)
    clipped = np.zeros((num_polygons, capacity, 2), dtype=np.float64)
    rows = np.broadcast_to(np.arange(num_polygons)[:, None], emitted.shape)
    clipped[rows[stored], slot[stored]] = candidates[stored]
    return clipped, np.minimum(slot[:, -1] + 1, capacity)


def _shoelace_area(polygon: np.ndarray, count: np.ndarray) -> np.ndarray:
    """``(K,)`` area of ``(K, V, 2)`` polygons with ``count`` valid vertices each (0 for fewer than 3)."""
    # Padding with the first vertex adds only zero-area terms.
    padded = np.where(np.arange(polygon.shape[1])[None, :, None] < count[:, None, None], polygon, polygon[:, :1])
    x, y = padded[..., 0], padded[..., 1]
    twice_area = np.sum(x * np.roll(y, -1, axis=1) - np.roll(x, -1, axis=1) * y, axis=1)
    return np.where(count >= 3, 0.5 * np.abs(twice_area), 0.0)


def _corners(x: np.ndarray, y: np.ndarray, length: np.ndarray, width: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """``(K, 4, 2)`` counter-clockwise corners of rectangles centred at ``(x, y)`` with heading ``yaw``."""
    local = _UNIT_CORNERS_BEV[None] * np.stack([length, width], axis=-1)[:, None, :]
    cos, sin = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    corner_x = x[:, None] + local[..., 0] * cos - local[..., 1] * sin
    corner_y = y[:, None] + local[..., 0] * sin + local[..., 1] * cos
    return np.stack([corner_x, corner_y], axis=-1)


def _as_row_pairs(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    a, b = as_boxes("a", a), as_boxes("b", b)
    if len(a) != len(b):
        raise ValueError(f"b: expected as many boxes as a ({len(a)}) for row-wise pairs, got {len(b)}")
    return a, b
