"""nuScenes-format LiDAR detection data: :class:`NuScenesDataset` reads the keyframes of a nuScenes-layout dataset
(nuScenes itself, or a fleet format in its layout) with alcv's own code; the devkit is needed only for its official
scene splits.

Layout (that of nuScenes ``v1.0-*``)::

    root/<version>/<table>.json   the tables, each a JSON list of records with a ``token``
    root/samples/LIDAR_TOP/*.pcd.bin   keyframe point clouds; root/sweeps/LIDAR_TOP/*.pcd.bin the others

A ``.pcd.bin`` holds float32 little-endian ``x, y, z, intensity, ring`` (20 bytes a point) in the LiDAR frame,
metres. The tables alcv reads: ``scene`` (``name``, ``first_sample_token``), ``sample`` (``timestamp`` in
microseconds, ``next``, ``scene_token``), ``sample_data`` (``sample_token``, ``calibrated_sensor_token``,
``ego_pose_token``, ``timestamp``, ``is_key_frame``, ``filename``, ``prev``), ``calibrated_sensor`` and
``ego_pose`` (``translation`` in metres, ``rotation`` a unit quaternion ``[w, x, y, z]``), ``sensor``
(``channel``), ``sample_annotation`` (``sample_token``, ``instance_token``, ``translation`` of the box centre,
``size`` as ``[width, length, height]`` metres, ``rotation`` quaternion, all in the global frame,
``num_lidar_pts``), ``instance`` (``category_token``) and ``category`` (``name``). The devkit also needs
``attribute``, ``visibility``, ``log`` and ``map``.

**Frames and time.** One frame per sample (a keyframe), its points those of the sample's ``LIDAR_TOP`` keyframe.
**Drives are scenes**; a frame's timestamp is its sample's, in seconds since the scene's first sample.

**Conversion** of an annotation to alcv's LiDAR box ``[x, y, z, dx, dy, dz, yaw]`` in the keyframe's LiDAR frame:
with ``(R_e, t_e)`` the ego pose (ego -> global) and ``(R_s, t_s)`` the calibrated sensor (LiDAR -> ego), the
centre is ``R_sᵀ (R_eᵀ (t - t_e) - t_s)``, the orientation ``R = R_sᵀ R_eᵀ R_box``, ``yaw = atan2(R[1, 0],
R[0, 0])`` (the heading of the box's length axis, as the devkit's ``Box.orientation.yaw_pitch_roll[0]``), and
``dx, dy, dz`` are the length, width and height.

**Sweeps.** With ``sweeps = n > 1`` each frame's points are those of its keyframe and of the ``n - 1`` LiDAR
sweeps before it (fewer at the start of a scene), each moved into the keyframe's LiDAR frame through its own
ego pose and calibration. Every point has a fifth channel, its time lag: the keyframe's timestamp minus its own
sweep's, in seconds (0 for the keyframe's points).

Items follow the LiDAR item contract of :mod:`alcv.data.lidar_dataset`, with ``points`` ``(N, 5)`` float32
``[x, y, z, intensity, time_lag]``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

from alcv.data.splits import (
    PointCloudSplits,
    check_held_out,
    check_point_range,
    check_split_names,
    class_map_for,
    inside_range,
    is_integer,
    source_labels,
)

__all__ = ["DETECTION_CLASS_MAP", "DROPPED_CATEGORIES", "NuScenesDataset", "official_scene_splits",
           "quaternion_matrix", "rigid_transform", "yaw_quaternion"]

#: the nuScenes detection challenge's 10 classes, each with the general categories that become it
DETECTION_CLASS_MAP: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "car": ("vehicle.car",),
    "truck": ("vehicle.truck",),
    "bus": ("vehicle.bus.bendy", "vehicle.bus.rigid"),
    "trailer": ("vehicle.trailer",),
    "construction_vehicle": ("vehicle.construction",),
    "pedestrian": ("human.pedestrian.adult", "human.pedestrian.child", "human.pedestrian.construction_worker",
                   "human.pedestrian.police_officer"),
    "motorcycle": ("vehicle.motorcycle",),
    "bicycle": ("vehicle.bicycle",),
    "traffic_cone": ("movable_object.trafficcone",),
    "barrier": ("movable_object.barrier",),
})
#: the general categories of nuScenes that are in no detection class
DROPPED_CATEGORIES: tuple[str, ...] = (
    "animal", "human.pedestrian.personal_mobility", "human.pedestrian.stroller", "human.pedestrian.wheelchair",
    "movable_object.debris", "movable_object.pushable_pullable", "static_object.bicycle_rack",
    "vehicle.emergency.ambulance", "vehicle.emergency.police")
#: the tables alcv reads
TABLES: tuple[str, ...] = ("scene", "sample", "sample_data", "sample_annotation", "instance", "category",
                           "calibrated_sensor", "ego_pose", "sensor")
#: the devkit's official split of each split name is only for the versions ending so (``nuscenes.eval``'s rule)
_SPLIT_VERSIONS = {"train": "trainval", "val": "trainval", "train_detect": "trainval", "train_track": "trainval",
                   "mini_train": "mini", "mini_val": "mini", "test": "test"}
#: the alcv splits of each version by default: the devkit's official ones
OFFICIAL_SPLITS: Mapping[str, Mapping[str, str]] = MappingProxyType({
    "mini": MappingProxyType({"pool": "mini_train", "test": "mini_val"}),
    "trainval": MappingProxyType({"pool": "train", "test": "val"}),
})
LIDAR_CHANNEL = "LIDAR_TOP"
#: the devkit's file of custom splits in a version folder: ``{split name: [scene names]}``
CUSTOM_SPLITS_FILE = "splits.json"
_POINT_VALUES = 5  # float32 x, y, z, intensity, ring a point
_MICROSECONDS = 1e6


def quaternion_matrix(quaternion: Sequence[float]) -> np.ndarray:
    """The ``(3, 3)`` rotation of a unit quaternion ``[w, x, y, z]`` (normalised first, as the devkit's
    ``pyquaternion.Quaternion`` does)."""
    w, x, y, z = np.asarray(quaternion, dtype=np.float64) / np.linalg.norm(quaternion)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def yaw_quaternion(yaw: float) -> list[float]:
    """The unit quaternion ``[w, x, y, z]`` of a rotation by ``yaw`` radians around +z."""
    return [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]


def _read_custom_splits(path: Path) -> dict[str, list[str]]:
    """``{split name: scene names}`` of a custom ``splits.json``."""
    try:
        splits = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a JSON file ({error})") from None
    if not isinstance(splits, dict) or not all(isinstance(names, list) and all(isinstance(n, str) for n in names)
                                               for names in splits.values()):
        raise ValueError(f"{path}: expected a JSON object of split name -> list of scene names")
    return splits


def official_scene_splits() -> dict[str, list[str]]:
    """The devkit's official scene splits, ``{split name: scene names}`` (``nuscenes.utils.splits``). Raises
    ``ImportError`` with the way to install it when the devkit is not installed."""
    try:
        from nuscenes.utils.splits import create_splits_scenes
    except ImportError as error:
        raise ImportError("the official nuScenes splits come from nuscenes-devkit, which is not installed "
                          f"({error}); install it with `pip install --no-deps nuscenes-devkit==1.2.0` plus its "
                          "dependencies (README, 'nuScenes'), or give data.dataset.splits=null and hold out "
                          "scenes with data.dataset.held_out") from None
    return create_splits_scenes()


def rigid_transform(rotation: Sequence[float], translation: Sequence[float]) -> np.ndarray:
    """The ``(4, 4)`` homogeneous transform of a quaternion ``[w, x, y, z]`` and a translation (metres)."""
    matrix = np.eye(4)
    matrix[:3, :3] = quaternion_matrix(rotation)
    matrix[:3, 3] = translation
    return matrix


class _Tables:
    """The tables of ``root/version`` that alcv reads, by token, with the checks that name table and token."""

    def __init__(self, root: Path, version: str) -> None:
        self.folder = root / version
        if not self.folder.is_dir():
            found = sorted(path.name for path in root.glob("v*") if path.is_dir()) if root.is_dir() else []
            raise FileNotFoundError(f"NuScenesDataset: version folder {self.folder} not found (versions in {root}: "
                                    f"{found or 'none'})")
        self.records: dict[str, dict[str, dict[str, Any]]] = {name: self._load(name) for name in TABLES}
        #: sample token -> its ``LIDAR_TOP`` keyframe ``sample_data`` record
        self.lidar_keyframes: dict[str, dict[str, Any]] = {
            record["sample_token"]: record for record in self.records["sample_data"].values()
            if record.get("is_key_frame") and self._channel(record) == LIDAR_CHANNEL}
        #: sample token -> its ``sample_annotation`` records
        self.annotations: dict[str, list[dict[str, Any]]] = {}
        for record in self.records["sample_annotation"].values():
            self.annotations.setdefault(record.get("sample_token", ""), []).append(record)

    def _load(self, name: str) -> dict[str, dict[str, Any]]:
        path = self.folder / f"{name}.json"
        if not path.is_file():
            raise FileNotFoundError(f"NuScenesDataset: table {path} not found (a nuScenes version folder holds "
                                    f"{', '.join(f'{table}.json' for table in TABLES)} and more)")
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{path}: not a JSON file ({error})") from None
        if not isinstance(rows, list) or not all(isinstance(row, dict) and isinstance(row.get("token"), str)
                                                 for row in rows):
            raise ValueError(f"{path}: expected a JSON list of records, each with a 'token' string")
        return {row["token"]: row for row in rows}

    def get(self, table: str, token: str, field: str, referrer: str) -> Any:
        """``field`` of the record ``token`` of ``table`` (which ``referrer`` names, for the messages)."""
        record = self.records[table].get(token)
        if record is None:
            raise ValueError(f"{self.folder / (table + '.json')}: no record with token {token!r} (referred to by "
                             f"{referrer})")
        if field not in record:
            raise ValueError(f"{self.folder / (table + '.json')}: record {token}: lacks the field {field!r}")
        return record[field]

    def _channel(self, sample_data: Mapping[str, Any]) -> str:
        """The sensor channel of a ``sample_data`` record (e.g. ``LIDAR_TOP``)."""
        referrer = f"sample_data {sample_data['token']}"
        sensor = self.get("calibrated_sensor", sample_data.get("calibrated_sensor_token"), "sensor_token", referrer)
        return str(self.get("sensor", sensor, "channel", referrer))

    def pose(self, sample_data: Mapping[str, Any]) -> np.ndarray:
        """``(4, 4)`` LiDAR frame -> global frame of a ``sample_data`` record: ego pose · calibrated sensor."""
        referrer = f"sample_data {sample_data['token']}"
        poses = []
        for table in ("ego_pose", "calibrated_sensor"):
            token = sample_data.get(f"{table}_token")
            poses.append(rigid_transform(self.get(table, token, "rotation", referrer),
                                         self.get(table, token, "translation", referrer)))
        return poses[0] @ poses[1]


class NuScenesDataset(PointCloudSplits):
    """The keyframes of a nuScenes-layout dataset (see the module docstring), as one dataset indexed by absolute
    index: the pool frames first, then val, then test, each split scene by scene (scenes in the order of the
    ``scene`` table), samples in time order.

    Every table is read and every keyframe's annotations converted to the LiDAR frame at construction, and each
    point file's size checked (nothing is half-loaded); points are read lazily in ``__getitem__``, and
    :meth:`num_boxes` / :meth:`box_labels` never read a point file.

    Rules: annotations of ``drop_categories`` are dropped, as are those with fewer than ``min_lidar_points``
    LiDAR points (the devkit's evaluation drops boxes without points) and, with ``point_range``, those whose
    centre is outside it (whose points are dropped when read); an annotation of a category that neither
    ``class_map`` nor ``drop_categories`` names is an error. A keyframe left without boxes stays a frame.

    Splits: ``splits`` maps each alcv split to a split name of the devkit (``nuscenes.utils.splits``: ``train``,
    ``val``, ``mini_train``, ``mini_val``, ...) or a custom split of ``<version>/splits.json`` (the devkit's file of
    custom splits, ``{name: [scene names]}``), whose scenes it takes; ``"official"`` (the default) is the
    devkit's train / val split for ``v1.0-trainval`` and mini_train / mini_val for ``v1.0-mini``; None makes every
    scene the pool, and ``held_out`` carves 'val' and 'test' out of it by whole scenes (as the other readers
    carve drives).

    Bad input raises ``FileNotFoundError`` for a missing version folder, table or point file and ``ValueError``
    naming the table (or file) and the token for: a reference to a missing record or field, a ``.pcd.bin``
    whose size is not a multiple of 5 float32, a sample without a ``LIDAR_TOP`` keyframe, an annotation of an
    unmapped category, a split name the devkit does not know or that is not of this version, a scene in two
    splits, and bad arguments.

    Args:
        root: the folder holding ``<version>/`` and the point files it names.
        version: the version folder, e.g. ``v1.0-mini`` or ``v1.0-trainval``.
        class_map: each alcv class -> the nuScenes categories that become it (default: the 10 detection classes,
            :data:`DETECTION_CLASS_MAP`). A category may map to one class only.
        class_names: the alcv classes in label order; None: the keys of ``class_map``.
        splits: see above.
        drop_categories: categories that are not objects to detect (default :data:`DROPPED_CATEGORIES`).
        min_lidar_points: annotations with fewer ``num_lidar_pts`` are dropped (0 keeps them all).
        point_range: ``[xmin, ymin, zmin, xmax, ymax, zmax]``, LiDAR frame, metres, or None.
        sweeps: LiDAR sweeps a frame's points come from, its keyframe's included (>= 1).
        held_out: ``{"test": fraction, "val": fraction}`` of the pool's scenes, with ``splits=None``.
        split_seed: the seed of the held-out scenes' shuffle.
        cache_size: point clouds kept in a per-process LRU cache (0: none), 20 bytes a point.
    """

    def __init__(self, root: Path | str, version: str = "v1.0-mini",
                 class_map: Mapping[str, Sequence[str]] | None = None, class_names: Sequence[str] | None = None,
                 splits: Mapping[str, str | None] | Literal["official"] | None = "official",
                 drop_categories: Sequence[str] = DROPPED_CATEGORIES, min_lidar_points: int = 1,
                 point_range: Sequence[float] | None = None, sweeps: int = 1,
                 held_out: Mapping[str, float] | None = None, split_seed: int = 0, cache_size: int = 0) -> None:
        self.root = Path(root)
        self.version = str(version)
        super().__init__(cache_size)
        if not is_integer(sweeps) or sweeps < 1:
            raise ValueError(f"NuScenesDataset: 'sweeps' must be an int >= 1, got {sweeps!r}")
        if not is_integer(min_lidar_points) or min_lidar_points < 0:
            raise ValueError(f"NuScenesDataset: 'min_lidar_points' must be an int >= 0, got {min_lidar_points!r}")
        self.sweeps, self.min_lidar_points = int(sweeps), int(min_lidar_points)
        self.point_range = check_point_range(point_range, "NuScenesDataset")
        self.drop_categories = frozenset(drop_categories)
        if class_map is None:  # the detection classes, or those of them that class_names names
            class_map = {name: list(categories) for name, categories in DETECTION_CLASS_MAP.items()
                         if class_names is None or name in class_names}
        full_map = class_map_for(class_map, class_names, "NuScenesDataset")
        #: each class -> the nuScenes categories that become it
        self.class_map: dict[str, list[str]] = {str(name): [categories] if isinstance(categories, str)
                                                else list(categories) for name, categories in full_map.items()}
        self.category_labels = source_labels(full_map, self.drop_categories, "NuScenesDataset", "category",
                                             "drop_categories")
        self.class_names: tuple[str, ...] = tuple(str(name) for name in full_map)
        fractions = check_held_out(held_out, split_seed, "NuScenesDataset")
        self._tables = _Tables(self.root, self.version)
        scene_splits = self._scene_splits(splits, fractions)
        source = self._tables.folder / "scene.json"
        split_records = {split: [record for scene in scenes for record in self._scene_frames(scene)]
                         for split, scenes in scene_splits.items()}
        records = self._index_splits(split_records, dict.fromkeys(split_records, source), fractions, split_seed,
                                     box_width=7, noun="keyframes")
        self._lidar_tokens = [record["lidar"] for record in records]

    def _scene_splits(self, splits: Mapping[str, str | None] | str | None, fractions: Mapping[str, float]
                      ) -> dict[str, list[dict[str, Any]]]:
        """``{alcv split: its scene records in the scene table's order}``."""
        scenes = list(self._tables.records["scene"].values())
        if splits is None:
            check_split_names(["pool"], fractions, "NuScenesDataset", "<devkit split name>")
            return {"pool": scenes}
        if splits == "official":
            kind = self.version.rsplit("-", 1)[-1]
            if kind not in OFFICIAL_SPLITS:
                raise ValueError(f"NuScenesDataset: version {self.version!r} has no official split with labels "
                                 f"(those of {sorted(OFFICIAL_SPLITS)}); give 'splits' or splits=null with held_out")
            splits = OFFICIAL_SPLITS[kind]
        if not isinstance(splits, Mapping):
            raise ValueError(f"NuScenesDataset: 'splits' must map alcv splits to devkit split names, 'official' or "
                             f"null, got {splits!r}")
        splits = {str(name): value for name, value in splits.items() if value is not None}
        check_split_names(list(splits), fractions, "NuScenesDataset", "<devkit split name>")
        scene_lists = self._split_scene_names(splits)
        by_split: dict[str, list[dict[str, Any]]] = {}
        owner: dict[str, str] = {}
        for split, names in scene_lists.items():
            by_split[split] = [scene for scene in scenes if scene.get("name") in names]
            for scene in by_split[split]:
                if scene["name"] in owner:
                    raise ValueError(f"NuScenesDataset: scene {scene['name']} is in both the {owner[scene['name']]} "
                                     f"and the {split} split")
                owner[scene["name"]] = split
        return by_split

    def _split_scene_names(self, splits: Mapping[str, str]) -> dict[str, set[str]]:
        """The scene names of each alcv split's split name: the devkit's official splits (:data:`_SPLIT_VERSIONS`,
        which must be of this version), else the custom splits of ``<version>/splits.json`` (the devkit's)."""
        custom_file = self._tables.folder / CUSTOM_SPLITS_FILE
        custom = _read_custom_splits(custom_file) if custom_file.is_file() else {}
        official = official_scene_splits() if any(name in _SPLIT_VERSIONS for name in splits.values()) else {}
        scene_names: dict[str, set[str]] = {}
        for split, name in splits.items():
            if name in _SPLIT_VERSIONS:
                if not self.version.endswith(_SPLIT_VERSIONS[name]):
                    raise ValueError(f"NuScenesDataset: the devkit's split {name!r} is of the "
                                     f"{_SPLIT_VERSIONS[name]} version, not of {self.version!r}")
                scene_names[split] = set(official[name])
            elif name in custom:
                scene_names[split] = set(custom[name])
            else:
                raise ValueError(f"NuScenesDataset: splits.{split}={name!r} is neither a split of the devkit "
                                 f"({', '.join(_SPLIT_VERSIONS)}) nor one of {custom_file}"
                                 f"{f' ({sorted(custom)})' if custom else ' (no such file)'}")
        return scene_names

    def _scene_frames(self, scene: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The records of a scene's keyframes in time order: sample token (the frame's name) and LiDAR token,
        boxes, labels, drive, time."""
        tables = self._tables
        token = tables.get("scene", scene["token"], "first_sample_token", "scene.json")
        frames: list[dict[str, Any]] = []
        start = None
        while token:
            sample = tables.records["sample"].get(token)
            if sample is None:
                raise ValueError(f"{tables.folder / 'sample.json'}: no record with token {token!r} (referred to by "
                                 f"scene {scene['token']})")
            start = sample["timestamp"] if start is None else start
            lidar = self._keyframe_lidar(token)
            boxes, labels = self._annotations_of(token, tables.pose(lidar))
            frames.append({"name": token, "lidar": lidar["token"], "boxes": boxes, "labels": labels,
                           "drive": scene["token"], "timestamp": (sample["timestamp"] - start) / _MICROSECONDS})
            token = sample.get("next", "")
        return frames

    def _keyframe_lidar(self, sample_token: str) -> dict[str, Any]:
        """The ``LIDAR_TOP`` keyframe ``sample_data`` record of a sample, its point file checked."""
        record = self._tables.lidar_keyframes.get(sample_token)
        if record is None:
            raise ValueError(f"{self._tables.folder / 'sample_data.json'}: sample {sample_token} has no "
                             f"{LIDAR_CHANNEL} keyframe")
        self._check_point_file(record)
        return record

    def _check_point_file(self, sample_data: Mapping[str, Any]) -> Path:
        path = self.root / sample_data["filename"]
        if not path.is_file():
            raise FileNotFoundError(f"{self._tables.folder / 'sample_data.json'}: sample_data "
                                    f"{sample_data['token']}: point file {path} not found")
        size = path.stat().st_size
        if size % (4 * _POINT_VALUES):
            raise ValueError(f"{path}: {size} bytes is not a multiple of {4 * _POINT_VALUES} (float32 x, y, z, "
                             f"intensity, ring a point; sample_data {sample_data['token']})")
        return path

    def _annotations_of(self, sample_token: str, lidar_to_global: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The kept annotations of a sample: ``(M, 7)`` float64 LiDAR boxes and ``(M,)`` int64 labels."""
        tables = self._tables
        global_to_lidar = np.linalg.inv(lidar_to_global)
        boxes: list[list[float]] = []
        labels: list[int] = []
        for annotation in tables.annotations.get(sample_token, []):
            referrer = f"sample_annotation {annotation['token']}"
            category_token = tables.get("instance", annotation.get("instance_token"), "category_token", referrer)
            category = tables.get("category", category_token, "name", referrer)
            if category in self.drop_categories or (self.min_lidar_points and tables.get(
                    "sample_annotation", annotation["token"], "num_lidar_pts", referrer) < self.min_lidar_points):
                continue
            if category not in self.category_labels:
                raise ValueError(f"{tables.folder / 'sample_annotation.json'}: annotation {annotation['token']}: "
                                 f"category {category!r} is in no class_map entry; add it to class_map or "
                                 f"drop_categories")
            translation, rotation, size = (tables.get("sample_annotation", annotation["token"], field, referrer)
                                           for field in ("translation", "rotation", "size"))
            centre = global_to_lidar[:3, :3] @ np.asarray(translation, float) + global_to_lidar[:3, 3]
            orientation = global_to_lidar[:3, :3] @ quaternion_matrix(rotation)
            width, length, height = size
            boxes.append([*centre, length, width, height, math.atan2(orientation[1, 0], orientation[0, 0])])
            labels.append(self.category_labels[category])
        boxes_array = np.array(boxes, dtype=np.float64).reshape(-1, 7)
        labels_array = np.array(labels, dtype=np.int64)
        if self.point_range is not None:
            inside = inside_range(boxes_array[:, :3], self.point_range)
            boxes_array, labels_array = boxes_array[inside], labels_array[inside]
        return boxes_array, labels_array

    def sample_token(self, index: int) -> str:
        """The nuScenes sample token of absolute index ``index`` (its :meth:`frame_name`)."""
        return self.frame_name(index)

    def annotation_boxes(self, index: int) -> np.ndarray:
        """``(M, 7)`` float64 boxes of frame ``index``, converted again from the tables: the item's float32 boxes
        before rounding (at 20 m float32 rounds to 2e-6 m)."""
        index = self._check_index(index)
        return self._annotations_of(self.frame_name(index), self.lidar_to_global(index))[0]

    def lidar_to_global(self, index: int) -> np.ndarray:
        """``(4, 4)`` float64, the keyframe's LiDAR frame -> the global frame (metres) of absolute index ``index``."""
        return self._tables.pose(self._tables.records["sample_data"][self._lidar_tokens[self._check_index(index)]])

    def _points(self, index: int) -> np.ndarray:
        """``(N, 5)`` float32 ``[x, y, z, intensity, time_lag]`` of frame ``index`` (and its sweeps), LiDAR frame."""
        sample_data = self._tables.records["sample_data"]
        keyframe = sample_data[self._lidar_tokens[index]]
        global_to_key = np.linalg.inv(self._tables.pose(keyframe))
        clouds = []
        record: dict[str, Any] | None = keyframe
        for _ in range(self.sweeps):
            if record is None:
                break
            values = np.fromfile(self._check_point_file(record), dtype="<f4").reshape(-1, _POINT_VALUES)
            to_key = global_to_key @ self._tables.pose(record)
            xyz = values[:, :3].astype(np.float64) @ to_key[:3, :3].T + to_key[:3, 3]
            lag = np.full(len(values), (keyframe["timestamp"] - record["timestamp"]) / _MICROSECONDS)
            clouds.append(np.column_stack([xyz, values[:, 3], lag]).astype(np.float32))
            record = sample_data.get(record.get("prev", ""))
        points = np.concatenate(clouds)
        if self.point_range is not None:
            points = points[inside_range(points[:, :3], self.point_range)]
        return points
