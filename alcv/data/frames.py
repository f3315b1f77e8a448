"""Frames of a generated world by absolute index: class selection and an LRU cache, shared by the
synthetic LiDAR and camera datasets."""

from __future__ import annotations

import dataclasses
import operator
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Generic, Protocol, TypeVar

import numpy as np


class World(Protocol):
    """A generated world: frames (dataclasses with ``boxes`` and ``labels`` into ``class_names``) by
    absolute index, split by drive."""

    class_names: tuple[str, ...]

    def __len__(self) -> int: ...
    def split_indices(self, split: str) -> np.ndarray: ...
    def frame(self, index: int) -> Any: ...
    def drive_and_time(self, index: int) -> tuple[int, float]: ...


#: a world's frame type: a dataclass with ``boxes`` and ``labels``
FrameT = TypeVar("FrameT")


class CachedFrames(Generic[FrameT]):
    """The frames of ``world`` by absolute index, relabeled to ``class_names``, with an LRU cache.

    ``class_names`` selects and orders the classes to detect (label ``i`` is ``class_names[i]``); boxes
    of other classes are dropped. ``None`` keeps all of the world's classes in its order.

    ``cache_size`` frames are kept in a per-process LRU cache: training revisits the few labeled frames
    hundreds of times and pool inference revisits the pool every loop, and generation costs a few ms a
    frame. With DataLoader workers each worker keeps its own cache.
    """

    def __init__(self, world: World, class_names: Sequence[str] | None = None, cache_size: int = 4096) -> None:
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
        self._cache: OrderedDict[int, FrameT] = OrderedDict()

    def __len__(self) -> int:
        return len(self.world)

    def split_indices(self, split: str) -> np.ndarray:
        """Absolute indices of 'pool', 'val' or 'test', fixed by the world's seed and split by drive."""
        return self.world.split_indices(split)

    def frame(self, index: int) -> FrameT:
        """Frame ``index`` with its labels relabeled to ``class_names`` (cached)."""
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

    def _relabel(self, frame: FrameT) -> FrameT:
        labels = self._label_map[frame.labels]  # type: ignore[attr-defined]
        kept = labels >= 0
        return dataclasses.replace(frame, boxes=frame.boxes[kept],  # type: ignore[attr-defined, type-var]
                                   labels=labels[kept].astype(np.int64))

    def num_boxes(self, index: int) -> int:
        """Number of labeled boxes in frame ``index`` (the labeling cost of the frame)."""
        return len(self.frame(index).labels)  # type: ignore[attr-defined]

    def box_labels(self, index: int) -> np.ndarray:
        """``(M,)`` int64 class ids of the ground-truth boxes of frame ``index``."""
        return self.frame(index).labels  # type: ignore[attr-defined]

    def drive_and_time(self, index: int) -> tuple[int, float]:
        """Frame ``index``'s drive id and its time in seconds since the drive's start (no frame is generated)."""
        return self.world.drive_and_time(index)

    def unlabeled_indices(self) -> np.ndarray:
        """Empty int64: every frame of a generated world has its labels."""
        return np.zeros(0, dtype=np.int64)

    def frame_name(self, index: int) -> str:
        """``f"{index:06d}"``, the name an export gives frame ``index`` (no frame is generated)."""
        index = operator.index(index)
        if not 0 <= index < len(self):
            raise IndexError(f"{type(self).__name__}: index {index} out of range [0, {len(self)})")
        return f"{index:06d}"
