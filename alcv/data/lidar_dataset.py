"""The LiDAR item contract, the synthetic LiDAR dataset, the point-cloud training augmentation and the batch
collation.

An item is a dict (the contract every LiDAR dataset in alcv follows):

- ``index``: int, the absolute dataset index (never a position inside a split or the pool);
- ``points``: ``(N, F)`` float32 ``[x, y, z, intensity, ...]`` in the LiDAR frame, metres: ``F = 4`` but for
  datasets that add channels (nuScenes: ``F = 5``, the time lag of the point's sweep, seconds);
- ``boxes``: ``(M, 7)`` float32 ``[x, y, z, dx, dy, dz, yaw]``, LiDAR frame, metres, yaw around +z;
- ``labels``: ``(M,)`` int64 class ids;
- ``drive_id``: int, and ``timestamp``: float seconds since the start of the drive.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch.utils.data import Dataset

from alcv.data.frames import CachedFrames
from alcv.data.synthetic_lidar import LidarFrame

Item = dict[str, Any]


class SyntheticLidarDataset(CachedFrames[LidarFrame], Dataset):
    """Items of a :class:`~alcv.data.synthetic_lidar.SyntheticLidarWorld`, indexed by absolute frame index
    (class selection and caching: see :class:`~alcv.data.frames.CachedFrames`)."""

    modality: ClassVar[str] = "lidar"

    def __getitem__(self, index: int) -> Item:
        frame = self.frame(int(index))
        return {
            "index": frame.index,
            "points": torch.from_numpy(frame.points),
            "boxes": torch.from_numpy(frame.boxes),
            "labels": torch.from_numpy(frame.labels),
            "drive_id": frame.drive_id,
            "timestamp": frame.timestamp,
        }


class LidarTrainAugmentation:
    """Training augmentation: random flip across the x axis, global rotation and scaling.

    Applied identically to points and boxes, in the LiDAR frame. Randomness comes from torch's global
    generator, which Lightning seeds per worker (``seed_everything(workers=True)``). Never used for the
    pool or the test split.

    Args:
        flip_probability: probability of mirroring ``y -> -y`` (yaw -> -yaw).
        max_rotation: rotations are uniform in ``[-max_rotation, max_rotation]`` radians around +z.
        scale_range: uniform global scale factor range.
    """

    def __init__(self, flip_probability: float = 0.5, max_rotation: float = math.pi / 8,
                 scale_range: tuple[float, float] = (0.95, 1.05)) -> None:
        if not 0.0 <= flip_probability <= 1.0:
            raise ValueError(f"LidarTrainAugmentation: 'flip_probability' must be in [0, 1], got {flip_probability}")
        if not (math.isfinite(max_rotation) and max_rotation >= 0):
            raise ValueError(f"LidarTrainAugmentation: 'max_rotation' must be a finite angle >= 0 (radians), got "
                             f"{max_rotation}")
        if len(scale_range) != 2 or not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"LidarTrainAugmentation: 'scale_range' must be [low, high] with 0 < low <= high, got "
                             f"{list(scale_range)}")
        self.flip_probability = flip_probability
        self.max_rotation = max_rotation
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))

    def __call__(self, item: Item) -> Item:
        points, boxes = item["points"].clone(), item["boxes"].clone()
        if torch.rand(()) < self.flip_probability:
            points[:, 1] = -points[:, 1]
            boxes[:, 1] = -boxes[:, 1]
            boxes[:, 6] = -boxes[:, 6]
        angle = (torch.rand(()) * 2 - 1) * self.max_rotation
        cos, sin = torch.cos(angle), torch.sin(angle)
        rotation = torch.stack([torch.stack([cos, -sin]), torch.stack([sin, cos])])
        points[:, :2] = points[:, :2] @ rotation.T
        boxes[:, :2] = boxes[:, :2] @ rotation.T
        boxes[:, 6] = torch.remainder(boxes[:, 6] + angle + math.pi, 2 * math.pi) - math.pi
        low, high = self.scale_range
        scale = low + torch.rand(()) * (high - low)
        points[:, :3] *= scale
        boxes[:, :6] *= scale
        return {**item, "points": points, "boxes": boxes}


def collate_lidar(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Collate variable-size point clouds and box sets into one batch.

    Returns a dict with ``points`` ``(sum N_i, F)`` (all frames concatenated), ``point_batch``
    ``(sum N_i,)`` int64 (the position of each point's frame in the batch), ``boxes`` and ``labels``
    (lists of per-frame tensors), and ``index``, ``drive_id`` ``(B,)`` int64 and ``timestamp`` ``(B,)``
    float64, where ``index`` holds the absolute dataset indices.
    """
    points = [item["points"] for item in items]
    return {
        "points": torch.cat(points) if points else torch.zeros(0, 4),
        "point_batch": torch.repeat_interleave(torch.arange(len(points)),
                                               torch.tensor([len(p) for p in points], dtype=torch.long)),
        "boxes": [item["boxes"] for item in items],
        "labels": [item["labels"] for item in items],
        "index": torch.tensor([item["index"] for item in items], dtype=torch.long),
        "drive_id": torch.tensor([item["drive_id"] for item in items], dtype=torch.long),
        "timestamp": torch.tensor([item["timestamp"] for item in items], dtype=torch.float64),
    }
