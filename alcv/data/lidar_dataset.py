"""Torch datasets over LiDAR frames, the point-cloud transforms and the batch collation.

An item is a dict (the contract every LiDAR dataset in alcv follows):

- ``index``: int, the absolute dataset index (never a position inside a split or the pool);
- ``points``: ``(N, 4)`` float32 ``[x, y, z, intensity]`` in the LiDAR frame, metres;
- ``boxes``: ``(M, 7)`` float32 ``[x, y, z, dx, dy, dz, yaw]``, LiDAR frame, metres, yaw around +z;
- ``labels``: ``(M,)`` int64 class ids;
- ``drive_id``: int, and ``timestamp``: float seconds since the start of the drive.
"""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from alcv.data.synthetic_lidar import LidarFrame, SyntheticLidarWorld

Item = dict[str, Any]
Transform = Callable[[Item], Item]


class SyntheticLidarDataset(Dataset):
    """Items of a :class:`SyntheticLidarWorld`, indexed by absolute frame index.

    ``class_names`` selects and orders the classes to detect (label ``i`` is ``class_names[i]``); boxes
    of other classes are dropped. ``None`` keeps all of the world's classes in its order.

    ``cache_size`` frames are kept in a per-process LRU cache: training revisits the few labeled frames
    hundreds of times and pool inference revisits the pool every loop, and generation costs a few ms a
    frame. With DataLoader workers each worker keeps its own cache.
    """

    def __init__(self, world: SyntheticLidarWorld, class_names: Sequence[str] | None = None,
                 cache_size: int = 4096) -> None:
        self.world = world
        self.class_names: tuple[str, ...] = tuple(class_names) if class_names is not None else world.class_names
        unknown = [name for name in self.class_names if name not in world.class_names]
        if unknown or len(set(self.class_names)) != len(self.class_names) or not self.class_names:
            raise ValueError(f"data.dataset.class_names: {list(self.class_names)} must be distinct names from "
                             f"{list(world.class_names)} (unknown: {unknown})")
        # world label -> dataset label, -1 for classes that are not detected
        self._label_map = np.array([self.class_names.index(name) if name in self.class_names else -1
                                    for name in world.class_names])
        self.cache_size = int(cache_size)
        self._cache: OrderedDict[int, LidarFrame] = OrderedDict()

    def __len__(self) -> int:
        return len(self.world)

    def split_indices(self, split: str) -> np.ndarray:
        """Absolute indices of 'pool', 'val' or 'test', fixed by the world's seed and split by drive."""
        return self.world.split_indices(split)

    def frame(self, index: int) -> LidarFrame:
        cached = self._cache.get(index)
        if cached is None:
            cached = self._relabel(self.world.frame(index))
            if self.cache_size > 0:
                self._cache[index] = cached
                if len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(index)
        return cached

    def _relabel(self, frame: LidarFrame) -> LidarFrame:
        labels = self._label_map[frame.labels]
        kept = labels >= 0
        return dataclasses.replace(frame, boxes=frame.boxes[kept], labels=labels[kept].astype(np.int64))

    def num_boxes(self, index: int) -> int:
        """Number of labeled boxes in frame ``index`` (the labeling cost of the frame)."""
        return len(self.frame(index).labels)

    def box_labels(self, index: int) -> np.ndarray:
        """``(M,)`` int64 class ids of the ground-truth boxes of frame ``index``."""
        return self.frame(index).labels

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


class TransformedSubset(Dataset):
    """The frames ``indices`` (absolute) of ``dataset`` with ``transform`` applied to each item."""

    def __init__(self, dataset: Dataset, indices: Sequence[int], transform: Transform | None = None) -> None:
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return int(self.indices.size)

    def __getitem__(self, position: int) -> Item:
        item = self.dataset[int(self.indices[position])]
        return self.transform(item) if self.transform is not None else item


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
        self.flip_probability = flip_probability
        self.max_rotation = max_rotation
        self.scale_range = tuple(scale_range)

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

    Returns a dict with ``points`` ``(sum N_i, 4)`` (all frames concatenated), ``point_batch``
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
