"""Geometry of alcv's 3D boxes: ``[x, y, z, dx, dy, dz, yaw]`` in the LiDAR frame (x forward, y left, z up),
metres, ``(x, y, z)`` the box centre, ``dx`` the length along the heading, ``dy`` the width, ``dz`` the height,
``yaw`` the heading around +z (radians, 0 = +x)."""

from __future__ import annotations

import numpy as np

#: the 8 corners of the unit box centred at the origin, in the box frame; corner ``4 a + 2 b + c`` has
#: x = (a - 1/2), y = (b - 1/2), z = (c - 1/2), so e.g. corners 0-3 are the rear face (x = -1/2)
UNIT_CORNERS = np.array([[sx, sy, sz] for sx in (-0.5, 0.5) for sy in (-0.5, 0.5) for sz in (-0.5, 0.5)])


def box_corners(boxes: np.ndarray) -> np.ndarray:
    """``(K, 8, 3)`` corners of ``(K, 7)`` boxes, in the boxes' frame, in :data:`UNIT_CORNERS` order."""
    local = UNIT_CORNERS[None] * boxes[:, None, 3:6]
    cos, sin = np.cos(boxes[:, 6])[:, None], np.sin(boxes[:, 6])[:, None]
    rotated = np.stack([local[..., 0] * cos - local[..., 1] * sin, local[..., 0] * sin + local[..., 1] * cos,
                        local[..., 2]], axis=-1)
    return rotated + boxes[:, None, :3]
