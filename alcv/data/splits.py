"""What alcv's file-based datasets share: the split names, carving held-out splits out of the pool by whole
drives, one absolute index over all splits (:class:`IndexedSplits`), which pool frames have no labels yet, and
the number checks of their validation."""

from __future__ import annotations

import math
import operator
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
import torch

#: what a dataset loads lazily per frame (an image tensor, a point array)
Loaded = TypeVar("Loaded")

#: the splits a dataset may have, in the order of their absolute indices; 'val' is optional
SPLITS: tuple[str, ...] = ("pool", "val", "test")
#: the splits every dataset must have
REQUIRED_SPLITS: tuple[str, ...] = ("pool", "test")


def is_number(value: Any) -> bool:
    """An int or float (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_integer(value: Any) -> bool:
    """An int (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool)


def listed(names: Sequence[Any], limit: int = 5) -> str:
    """The first ``limit`` of ``names`` joined by ``", "``, then ``", ..."`` when there are more (for errors)."""
    return ", ".join(str(name) for name in names[:limit]) + (", ..." if len(names) > limit else "")


def check_held_out(held_out: Mapping[str, float] | None, split_seed: int, owner: str) -> dict[str, float]:
    """The positive held-out fractions by split, checked with the seed of their shuffle; errors start with
    ``owner`` (the dataset's name)."""
    if not is_integer(split_seed):
        raise ValueError(f"{owner}: 'split_seed' must be an int, got {split_seed!r}")
    if held_out is None:
        return {}
    if not isinstance(held_out, Mapping):
        raise ValueError(f"{owner}: 'held_out' must map 'val' / 'test' to fractions, got {held_out!r}")
    unknown = [str(name) for name in held_out if name not in ("val", "test")]
    if unknown:
        raise ValueError(f"{owner}: held_out: unknown split(s) {unknown}; expected 'val' and/or 'test'")
    for name, fraction in held_out.items():
        if not is_number(fraction) or not 0 <= fraction < 1:
            raise ValueError(f"{owner}: held_out.{name} must be a fraction in [0, 1), got {fraction!r}")
    if sum(held_out.values()) >= 1:
        raise ValueError(f"{owner}: held_out fractions {dict(held_out)} sum to 1 or more: nothing would be "
                         f"left for the pool")
    return {str(name): float(fraction) for name, fraction in held_out.items() if fraction > 0}


def class_map_for(class_map: Mapping[str, Any] | None, class_names: Sequence[str] | None, owner: str
                  ) -> Mapping[str, Any]:
    """The class map of every class in ``class_names`` order: ``class_map``'s entry, else the class's own name (the
    source category or type of that name). Without ``class_names`` the classes are ``class_map``'s keys. Errors
    start with ``owner``."""
    if class_names is None:
        if class_map is None:
            raise ValueError(f"{owner}: give 'class_names', 'class_map' or both")
        return class_map
    if isinstance(class_names, str) or not isinstance(class_names, Sequence) or not class_names \
            or not all(isinstance(name, str) for name in class_names) or len(set(class_names)) != len(class_names):
        raise ValueError(f"{owner}: 'class_names' must be a non-empty list of distinct strings, got "
                         f"{class_names!r}")
    class_map = {} if class_map is None else class_map
    if not isinstance(class_map, Mapping):
        raise ValueError(f"{owner}: 'class_map' must be a mapping of class name -> the source's category or type "
                         f"names, got {class_map!r}")
    unknown = [str(name) for name in class_map if name not in class_names]
    if unknown:
        raise ValueError(f"{owner}: class_map names class(es) {unknown} that are not in class_names "
                         f"{list(class_names)}")
    return {name: class_map.get(name, [name]) for name in class_names}


def check_point_range(point_range: Sequence[float] | None, owner: str) -> np.ndarray | None:
    """``point_range`` ``[xmin, ymin, zmin, xmax, ymax, zmax]`` (LiDAR frame, metres; finite, min < max) as a
    float64 array, or None; errors start with ``owner``."""
    if point_range is None:
        return None
    bounds = list(point_range) if isinstance(point_range, Sequence) else []
    if len(bounds) != 6 or not all(is_number(v) and math.isfinite(v) for v in bounds) \
            or not all(low < high for low, high in zip(bounds[:3], bounds[3:], strict=True)):
        raise ValueError(f"{owner}: 'point_range' must be [xmin, ymin, zmin, xmax, ymax, zmax] (finite, min < max) "
                         f"or null, got {point_range!r}")
    return np.array(bounds, dtype=np.float64)


def inside_range(xyz: np.ndarray, point_range: np.ndarray) -> np.ndarray:
    """Mask of the ``(N, 3)`` positions inside ``point_range`` ``[xmin, ymin, zmin, xmax, ymax, zmax]`` (bounds
    inclusive)."""
    return ((xyz >= point_range[:3]) & (xyz <= point_range[3:])).all(axis=1)


def source_labels(class_map: Mapping[str, Any], dropped: Collection[str], owner: str, noun: str, dropped_setting: str
                  ) -> dict[str, int]:
    """``{source name: alcv label}`` of a ``class_map`` (each alcv class, in label order -> the source's ``noun``
    names that become it: KITTI types, nuScenes categories); a single name stands for a list of one. Refuses an
    empty map or entry, a name mapped to two classes and a name that is also ``dropped`` (the setting
    ``dropped_setting``); errors start with ``owner``."""
    if not isinstance(class_map, Mapping) or not class_map:
        raise ValueError(f"{owner}: 'class_map' must be a non-empty mapping of class name -> {noun} names, got "
                         f"{class_map!r}")
    labels: dict[str, int] = {}
    names = list(class_map)
    for label, (name, sources) in enumerate(class_map.items()):
        sources = [sources] if isinstance(sources, str) else sources
        if not isinstance(sources, Sequence) or not all(isinstance(source, str) and source for source in sources):
            raise ValueError(f"{owner}: class_map[{name!r}] must be a list of {noun} names, got {sources!r}")
        if not sources:
            raise ValueError(f"{owner}: class_map[{name!r}] names no {noun}")
        for source in sources:
            if source in labels:
                raise ValueError(f"{owner}: class_map: {noun} {source!r} is mapped to both {names[labels[source]]!r} "
                                 f"and {name!r}")
            if source in dropped:
                raise ValueError(f"{owner}: {noun} {source!r} is in both class_map[{name!r}] and {dropped_setting}")
            labels[source] = label
    return labels


def check_split_names(names: Collection[str], fractions: Mapping[str, float], owner: str, entry_form: str) -> None:
    """Refuse split ``names`` (those with a source of their own) that are unknown, lack 'pool', leave 'test' with
    neither a source nor a held-out fraction, or give a split both; ``entry_form`` describes a source in the
    messages, which start with ``owner``."""
    unknown = [str(name) for name in names if name not in SPLITS]
    if unknown:
        raise ValueError(f"{owner}: unknown split(s) {unknown} in 'splits'; expected {list(SPLITS)}")
    if "pool" not in names:
        raise ValueError(f"{owner}: 'splits' lacks the 'pool' split (got {list(names)})")
    if "test" not in names and "test" not in fractions:
        raise ValueError(f"{owner}: no 'test' split: give splits.test = {entry_form} or a held_out.test fraction "
                         f"of the pool's drives (got splits {list(names)})")
    both = [name for name in fractions if name in names]
    if both:
        raise ValueError(f"{owner}: split(s) {both} have both a source in 'splits' and a 'held_out' fraction; "
                         f"give one or the other")


def hold_out(records: list[dict[str, Any]], fractions: Mapping[str, float], seed: int, source: Path
             ) -> dict[str, list[dict[str, Any]]]:
    """Move whole drives of the pool's ``records`` into the held-out splits.

    ``records`` are the pool's frames in their order, each a dict with a hashable ``"drive"``; ``fractions`` come
    from :func:`check_held_out`. The drives, in the order of their first frame, are shuffled by ``seed`` and the
    first ``round(fraction x drives)`` (at least one) go to 'test', the next ones to 'val'. Returns every split's
    records, each in the pool's order. Raises ``ValueError`` naming ``source`` (the pool's file) when no drive
    would be left for the pool.
    """
    drives = list(dict.fromkeys(record["drive"] for record in records))
    shuffled = [drives[i] for i in np.random.default_rng(seed).permutation(len(drives))]
    owner: dict[Any, str] = {}
    start = 0
    for split in ("test", "val"):
        if split in fractions:
            count = max(1, round(fractions[split] * len(drives)))
            owner.update(dict.fromkeys(shuffled[start:start + count], split))
            start += count
    if start >= len(drives):
        raise ValueError(f"{source}: held_out {dict(fractions)} of its {len(drives)} drive(s) leaves none for the "
                         f"pool")
    split_records: dict[str, list[dict[str, Any]]] = {"pool": [], **{split: [] for split in fractions}}
    for record in records:
        split_records[owner.get(record["drive"], "pool")].append(record)
    return split_records


class IndexedSplits(Generic[Loaded]):
    """The part that file-based datasets share: frames of all splits under one absolute index, their kept boxes
    and labels in flat arrays, drives and timestamps, and an LRU cache of what is loaded lazily.

    A subclass parses its files into records and calls :meth:`_index_splits` once in its constructor; after that
    ``len``, :meth:`split_indices`, :meth:`unlabeled_indices`, :meth:`frame_name`, :meth:`num_boxes` and
    :meth:`box_labels` answer from the arrays alone (no frame is loaded), and :meth:`_cached` loads frames through
    the cache of ``cache_size`` entries.

    **Unlabeled frames**: a pool frame whose data holds no annotations yet (a record with ``"labeled": False``)
    has zero boxes, like a frame labeled as holding nothing, but :meth:`unlabeled_indices` lists it: it is to be
    labeled, never trained or evaluated on. Val and test frames must be labeled.
    """

    def __init__(self, cache_size: int) -> None:
        if not is_integer(cache_size) or cache_size < 0:
            raise ValueError(f"{type(self).__name__}: 'cache_size' must be an int >= 0, got {cache_size!r}")
        self.cache_size = int(cache_size)
        self._cache: OrderedDict[int, Loaded] = OrderedDict()

    def _index_splits(self, split_records: Mapping[str, list[dict[str, Any]]], sources: Mapping[str, Path],
                      held_out: Mapping[str, float], split_seed: int, box_width: int, noun: str
                      ) -> list[dict[str, Any]]:
        """Carve the ``held_out`` fractions (from :func:`check_held_out`) out of the pool's records by whole drives
        (:func:`hold_out`, shuffled by ``split_seed``), then number the records of every split (pool, then val,
        then test, each in its given order) and keep their ``name`` (:meth:`frame_name`), ``boxes``
        ``(M, box_width)``, ``labels`` ``(M,)``, ``drive`` (any hashable), ``timestamp`` and ``labeled`` (optional,
        default True; an unlabeled record has no boxes).

        Drive ids become consecutive ints from 0 in the order of each drive's first absolute index, counted per
        split, so no drive id spans two splits. Raises ``ValueError`` naming ``sources[split]`` (else the pool's)
        when 'pool' or 'test' has no ``noun``, or when a val or test record (one of their own source or carved out
        of the pool by ``held_out``) is unlabeled. Returns the records in absolute-index order.
        """
        if held_out:
            split_records = {**split_records, **hold_out(split_records["pool"], held_out, split_seed, sources["pool"])}
        records: list[dict[str, Any]] = []
        drive_keys: list[tuple[str, Any]] = []
        self._split_bounds: dict[str, tuple[int, int]] = {}
        for split in SPLITS:
            start = len(records)
            for record in split_records.get(split, []):
                records.append(record)
                drive_keys.append((split, record["drive"]))
            if start == len(records) and split in REQUIRED_SPLITS:
                raise ValueError(f"{sources.get(split, sources['pool'])}: the '{split}' split has no {noun}")
            self._split_bounds[split] = (start, len(records))
            unlabeled = [record["name"] for record in records[start:] if not record.get("labeled", True)]
            if unlabeled and split != "pool":
                how = "" if split in sources else " (carved out of the pool by held_out)"
                fix = "" if split in sources else (f"; with unlabeled pool frames give '{split}' a file of its own "
                                                   f"and set held_out.{split}=0")
                raise ValueError(f"{sources.get(split, sources['pool'])}: {len(unlabeled)} frame(s) of the "
                                 f"'{split}' split{how} have no labels ({listed(unlabeled)}); val and test frames "
                                 f"need labels{fix}")
        drive_numbers: dict[tuple[str, Any], int] = {}
        # flat arrays rather than lists of objects: DataLoader workers share them without copy-on-refcount
        self._drive_ids = np.array([drive_numbers.setdefault(key, len(drive_numbers)) for key in drive_keys],
                                   dtype=np.int64)
        self._timestamps = np.array([record["timestamp"] for record in records], dtype=np.float64)
        self._frame_names = np.array([record["name"] for record in records], dtype=str)
        self._labeled = np.array([record.get("labeled", True) for record in records], dtype=bool)
        if any(len(record["labels"]) for record in records if not record.get("labeled", True)):
            raise RuntimeError(f"{type(self).__name__}: an unlabeled record has boxes")
        self._box_offsets = np.concatenate([[0], np.cumsum([len(r["labels"]) for r in records], dtype=np.int64)])
        self._boxes = (np.concatenate([r["boxes"] for r in records]).astype(np.float32) if records
                       else np.zeros((0, box_width), np.float32))
        self._labels = (np.concatenate([r["labels"] for r in records]).astype(np.int64) if records
                        else np.zeros(0, np.int64))
        return records

    def __len__(self) -> int:
        return int(self._drive_ids.size)

    def split_indices(self, split: str) -> np.ndarray:
        """Ascending int64 absolute indices of 'pool', 'val' (empty when not given) or 'test'."""
        if split not in self._split_bounds:
            raise ValueError(f"{type(self).__name__}.split_indices: unknown split {split!r}; expected one of "
                             f"{list(SPLITS)}")
        start, stop = self._split_bounds[split]
        return np.arange(start, stop, dtype=np.int64)

    def unlabeled_indices(self) -> np.ndarray:
        """Ascending int64 absolute indices of the frames without annotations in the data (pool frames only)."""
        return np.flatnonzero(~self._labeled).astype(np.int64)

    def frame_name(self, index: int) -> str:
        """The stable name of frame ``index`` in its data (a KITTI frame id, a COCO ``file_name``, a nuScenes
        sample token)."""
        return str(self._frame_names[self._check_index(index)])

    def _check_index(self, index: int) -> int:
        index = operator.index(index)
        if not 0 <= index < len(self):
            raise IndexError(f"{type(self).__name__}: index {index} out of range [0, {len(self)})")
        return index

    def num_boxes(self, index: int) -> int:
        """Number of kept boxes of frame ``index`` (its labeling cost), from the annotations only; 0 for an
        unlabeled frame (:meth:`unlabeled_indices`), whose cost is not known until it is labeled."""
        index = self._check_index(index)
        return int(self._box_offsets[index + 1] - self._box_offsets[index])

    def box_labels(self, index: int) -> np.ndarray:
        """``(M,)`` int64 class ids of the kept boxes of frame ``index``, from the annotations only (empty for an
        unlabeled frame)."""
        index = self._check_index(index)
        return self._labels[self._box_offsets[index]:self._box_offsets[index + 1]].copy()

    def drive_and_time(self, index: int) -> tuple[int, float]:
        """Frame ``index``'s drive number (in order of first appearance over the splits) and timestamp in seconds."""
        index = self._check_index(index)
        return int(self._drive_ids[index]), float(self._timestamps[index])

    def _annotations(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The kept ``boxes`` and ``labels`` of frame ``index`` (views: copy before handing them out)."""
        start, stop = self._box_offsets[index], self._box_offsets[index + 1]
        return self._boxes[start:stop], self._labels[start:stop]

    def _cached(self, index: int, load: Callable[[int], Loaded]) -> Loaded:
        """``load(index)``, through the LRU cache (the cached object itself: callers must not modify it)."""
        cached = self._cache.get(index)
        if cached is not None:
            self._cache.move_to_end(index)
            return cached
        loaded = load(index)
        if self.cache_size > 0:
            self._cache[index] = loaded
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return loaded


class PointCloudSplits(IndexedSplits[np.ndarray]):
    """:class:`IndexedSplits` of LiDAR frames: items of the contract of :mod:`alcv.data.lidar_dataset`, whose
    points a subclass reads in ``_points(index)`` (an ``(N, F)`` float32 array, loaded through the cache)."""

    modality: ClassVar[str] = "lidar"

    def _points(self, index: int) -> np.ndarray:
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict[str, Any]:
        """The item at absolute ``index`` (the contract of :mod:`alcv.data.lidar_dataset`)."""
        index = self._check_index(index)
        points = self._cached(index, self._points).copy()  # a transform may write into its input, not the cache
        boxes, labels = self._annotations(index)
        return {"index": index, "points": torch.from_numpy(points), "boxes": torch.tensor(boxes),
                "labels": torch.tensor(labels), "drive_id": int(self._drive_ids[index]),
                "timestamp": float(self._timestamps[index])}
