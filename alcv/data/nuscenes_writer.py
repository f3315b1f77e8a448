"""Writing LiDAR frames in nuScenes layout (:func:`write_nuscenes`), which :class:`~alcv.data.nuscenes.NuScenesDataset`
and the nuScenes devkit both read (see :mod:`alcv.data.nuscenes` for the layout and the conversions), and detections
in the devkit's results format (:func:`nuscenes_results`), which its ``DetectionEval`` scores.

Scenes are named as the devkit's official scenes, so that its split and evaluation code accept the export: the
pool's and val's drives get the names of the official training split's scenes and the test split's drives those of
its validation split (``mini_train`` / ``mini_val`` of ``v1.0-mini`` when the drives fit, 8 and 2, else ``train`` /
``val`` of ``v1.0-trainval``). A ``splits.json`` in the version folder (the devkit's custom splits) names alcv's
three splits, ``alcv_pool``, ``alcv_val`` and ``alcv_test``, so that the export reads back exactly.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from alcv.data.nuscenes import (
    CUSTOM_SPLITS_FILE,
    DETECTION_CLASS_MAP,
    LIDAR_CHANNEL,
    NuScenesDataset,
    official_scene_splits,
    quaternion_matrix,
    rigid_transform,
    yaw_quaternion,
)
from alcv.data.splits import SPLITS
from alcv.models.detections import Detections
from alcv.safe_io import refuse_non_empty, write_text_atomically

__all__ = ["NUSCENES_CATEGORIES", "RESULTS_META", "SPLIT_PREFIX", "detection_names", "nuscenes_results",
           "write_nuscenes"]

#: the nuScenes category of each synthetic class (golf carts are not a nuScenes category: a custom one, which
#: the devkit's evaluation leaves out)
NUSCENES_CATEGORIES = {"vehicle": "vehicle.car", "pedestrian": "human.pedestrian.adult",
                       "golf_cart": "vehicle.golf_cart"}
#: the custom split of alcv split ``s`` in the written ``splits.json`` is ``SPLIT_PREFIX + s``
SPLIT_PREFIX = "alcv_"
#: a LiDAR mounted like nuScenes' LIDAR_TOP: 0.94 m ahead of the ego origin (the rear axle), 1.84 m up, its x axis
#: pointing to the ego's right (a yaw of -90 degrees)
DEFAULT_LIDAR_MOUNT = (tuple(yaw_quaternion(-math.pi / 2)), (0.943713, 0.0, 1.84023))
_SURFACE_MARGIN = 0.05  # metres
_SPEED = 5.0  # m/s of the ego poses the writer makes up
#: sample timestamps are microseconds since 1970, as nuScenes': drive d starts at 2026-01-01 plus d hours
_EPOCH_MICROSECONDS = 1_767_225_600_000_000
_DRIVE_MICROSECONDS = 3_600_000_000


def _token(*key: object) -> str:
    """A nuScenes-like token (32 hex digits) that is the same for the same ``key`` (export runs repeat exactly)."""
    return hashlib.md5("/".join(map(str, key)).encode()).hexdigest()


def _scene_names(drives: Mapping[str, int]) -> tuple[str, list[str], list[str]]:
    """The version, and the official scene names for the pool + val drives and for the test drives."""
    official = official_scene_splits()
    train_drives, test_drives = drives.get("pool", 0) + drives.get("val", 0), drives.get("test", 0)
    for version, train, test in (("v1.0-mini", "mini_train", "mini_val"), ("v1.0-trainval", "train", "val")):
        if train_drives <= len(official[train]) and test_drives <= len(official[test]):
            return version, official[train], official[test]
    raise ValueError(f"write_nuscenes: {train_drives} pool + val drives and {test_drives} test drives do not fit "
                     f"nuScenes' official scenes ({len(official['train'])} train, {len(official['val'])} val)")


def _ego_pose(drive: int, timestamp: float) -> tuple[list[float], list[float]]:
    """A made-up ego pose (``[w, x, y, z]``, translation metres): each drive on a straight road of its own."""
    heading = 0.3 * drive
    distance = _SPEED * timestamp
    return yaw_quaternion(heading), [1000.0 * drive + distance * math.cos(heading), distance * math.sin(heading), 0.0]


def _points_in_boxes(points: np.ndarray, boxes: np.ndarray) -> list[int]:
    """How many of the ``(N, >= 3)`` points lie inside each ``(M, 7)`` LiDAR box grown by :data:`_SURFACE_MARGIN` on
    every side (the annotation's ``num_lidar_pts``: a LiDAR's points lie on the objects' surfaces, the box's
    faces, where rounding puts half of them outside the box itself)."""
    counts = []
    for x, y, z, dx, dy, dz, yaw in boxes.tolist():
        local = points[:, :3].astype(np.float64) - (x, y, z)
        cos, sin = math.cos(yaw), math.sin(yaw)
        along, across = local[:, 0] * cos + local[:, 1] * sin, -local[:, 0] * sin + local[:, 1] * cos
        counts.append(int(((np.abs(along) <= dx / 2 + _SURFACE_MARGIN) & (np.abs(across) <= dy / 2 + _SURFACE_MARGIN)
                          & (np.abs(local[:, 2]) <= dz / 2 + _SURFACE_MARGIN))
                          .sum()))
    return counts


def _annotations(boxes: np.ndarray, labels: np.ndarray, points: np.ndarray, lidar_to_global: np.ndarray,
                 sample: str, instances: dict[str, list[dict[str, Any]]], categories: Sequence[str]
                 ) -> list[dict[str, Any]]:
    """The ``sample_annotation`` records of one frame's LiDAR boxes (each object an instance of its own)."""
    records = []
    rotation = lidar_to_global[:3, :3]
    for number, (box, label, count) in enumerate(zip(boxes.tolist(), labels.tolist(), _points_in_boxes(points, boxes),
                                                     strict=True)):
        x, y, z, dx, dy, dz, yaw = box
        orientation = rotation @ quaternion_matrix(yaw_quaternion(yaw))
        token = _token("sample_annotation", sample, number)
        instances.setdefault(categories[label], []).append({"token": _token("instance", token),
                                                            "first_annotation_token": token})
        records.append({
            "token": token, "sample_token": sample, "instance_token": instances[categories[label]][-1]["token"],
            "visibility_token": "4", "attribute_tokens": [],
            "translation": (rotation @ (x, y, z) + lidar_to_global[:3, 3]).tolist(), "size": [dy, dx, dz],
            "rotation": _matrix_quaternion(orientation), "prev": "", "next": "", "num_lidar_pts": count,
            "num_radar_pts": 0})
    return records


def _matrix_quaternion(matrix: np.ndarray) -> list[float]:
    """The unit quaternion ``[w, x, y, z]`` (``w >= 0``) of a ``(3, 3)`` rotation."""
    w = math.sqrt(max(0.0, 1 + matrix[0, 0] + matrix[1, 1] + matrix[2, 2])) / 2
    x = math.copysign(math.sqrt(max(0.0, 1 + matrix[0, 0] - matrix[1, 1] - matrix[2, 2])) / 2,
                      matrix[2, 1] - matrix[1, 2])
    y = math.copysign(math.sqrt(max(0.0, 1 - matrix[0, 0] + matrix[1, 1] - matrix[2, 2])) / 2,
                      matrix[0, 2] - matrix[2, 0])
    z = math.copysign(math.sqrt(max(0.0, 1 - matrix[0, 0] - matrix[1, 1] + matrix[2, 2])) / 2,
                      matrix[1, 0] - matrix[0, 1])
    return [w, x, y, z]


def write_nuscenes(dataset: Any, root: Path | str, categories: Sequence[str] | None = None,
                   lidar_mount: tuple[Sequence[float], Sequence[float]] = DEFAULT_LIDAR_MOUNT) -> dict[str, Any]:
    """Write the LiDAR ``dataset`` (pool, val and test) under ``root`` in nuScenes layout (module docstring).

    One scene per drive, one sample (with a ``LIDAR_TOP`` keyframe, no sweeps) per frame, at the frame's
    timestamp; ego poses are made up (each drive at 5 m/s on a straight road of its own); the LiDAR is mounted at
    ``lidar_mount`` (quaternion ``[w, x, y, z]``, translation metres, LiDAR -> ego). Point files hold the item's
    ``x, y, z, intensity`` and a ring index of 0. Each box is an annotation of an instance of its own, with its
    ``num_lidar_pts`` counted from the frame's points, no attribute and the highest visibility. The tables are
    written last, ``splits.json`` and ``scene.json`` last of all and atomically.

    Args:
        dataset: a LiDAR dataset of the alcv contract (``split_indices``, ``class_names``, items).
        root: a new or empty folder.
        categories: the nuScenes category of each class; default :data:`NUSCENES_CATEGORIES`, else the class name.

    Returns:
        The keyword arguments with which :class:`~alcv.data.nuscenes.NuScenesDataset` reads it back: ``root``,
        ``version``, ``splits`` (the custom ``alcv_*`` splits), ``class_map`` (each class -> its category) and
        ``class_names``. Raises ``ValueError`` for a dataset that is not LiDAR or has more drives than nuScenes
        has official scenes, ``ImportError`` without the devkit (the official scene names come from it) and
        ``FileExistsError`` for a ``root`` that holds something, before writing anything.
    """
    if getattr(dataset, "modality", None) != "lidar":
        raise ValueError(f"write_nuscenes: {type(dataset).__name__} holds {getattr(dataset, 'modality', '?')} "
                         f"frames; nuScenes export needs LiDAR point clouds (e.g. data=synthetic_lidar)")
    class_names = list(dataset.class_names)
    categories = [NUSCENES_CATEGORIES.get(name, name) for name in class_names] if categories is None \
        else list(categories)
    split_indices = {split: dataset.split_indices(split).tolist() for split in SPLITS}
    drives = {split: {int(dataset.drive_and_time(index)[0]) for index in indices}
              for split, indices in split_indices.items()}
    version, train_names, test_names = _scene_names({split: len(ids) for split, ids in drives.items()})
    root = Path(root)
    refuse_non_empty(root)
    scene_names = {**dict(zip(sorted(drives["pool"]) + sorted(drives["val"]), train_names, strict=False)),
                   **dict(zip(sorted(drives["test"]), test_names, strict=False))}
    tables = _write_frames(dataset, root, split_indices, categories, lidar_mount, scene_names)
    folder = root / version
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in tables.items():
        if name != "scene":
            (folder / f"{name}.json").write_text(json.dumps(rows), encoding="utf-8")
    write_text_atomically(folder / CUSTOM_SPLITS_FILE, json.dumps(
        {f"{SPLIT_PREFIX}{split}": sorted(scene_names[drive] for drive in drives[split])
         for split in SPLITS if drives[split]}))
    write_text_atomically(folder / "scene.json", json.dumps(tables["scene"]))
    return {"root": str(root), "version": version,
            "splits": {split: f"{SPLIT_PREFIX}{split}" for split in SPLITS if drives[split]},
            "class_map": {name: [category] for name, category in zip(class_names, categories, strict=True)},
            "class_names": class_names}


def _write_frames(dataset: Any, root: Path, split_indices: Mapping[str, list[int]], categories: Sequence[str],
                  lidar_mount: tuple[Sequence[float], Sequence[float]], scene_names: Mapping[int, str]
                  ) -> dict[str, list[dict[str, Any]]]:
    """Write every frame's point file and return the tables."""
    (root / "samples" / LIDAR_CHANNEL).mkdir(parents=True, exist_ok=True)
    (root / "maps").mkdir(parents=True, exist_ok=True)
    sensor, calibration, log, map_token = (_token(table) for table in ("sensor", "calibrated_sensor", "log", "map"))
    Image.new("L", (1, 1)).save(root / "maps" / f"{map_token}.png")
    tables: dict[str, list[dict[str, Any]]] = {
        "sensor": [{"token": sensor, "channel": LIDAR_CHANNEL, "modality": "lidar"}],
        "calibrated_sensor": [{"token": calibration, "sensor_token": sensor, "rotation": list(lidar_mount[0]),
                               "translation": list(lidar_mount[1]), "camera_intrinsic": []}],
        "log": [{"token": log, "logfile": "alcv-synthetic", "vehicle": "alcv", "date_captured": "2026-01-01",
                 "location": "singapore-onenorth"}],
        "map": [{"token": map_token, "log_tokens": [log], "category": "semantic_prior",
                 "filename": f"maps/{map_token}.png"}],
        "visibility": [{"token": str(level), "level": name, "description": f"visibility of {name} %"}
                       for level, name in enumerate(("v0-40", "v40-60", "v60-80", "v80-100"), start=1)],
        "attribute": [], "category": [], "instance": [], "scene": [], "sample": [], "sample_data": [],
        "ego_pose": [], "sample_annotation": []}
    mount = rigid_transform(*lidar_mount)
    instances: dict[str, list[dict[str, Any]]] = {}
    scenes: dict[int, dict[str, Any]] = {}
    previous: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
    for index in sorted(index for indices in split_indices.values() for index in indices):
        item = dataset[index]
        drive, timestamp = int(item["drive_id"]), float(item["timestamp"])
        rotation, translation = _ego_pose(drive, timestamp)
        microseconds = _EPOCH_MICROSECONDS + drive * _DRIVE_MICROSECONDS + round(timestamp * 1e6)
        sample, sample_data, pose = (_token(table, index) for table in ("sample", "sample_data", "ego_pose"))
        scene = scenes.setdefault(drive, {"token": _token("scene", drive), "log_token": log, "nbr_samples": 0,
                                          "first_sample_token": sample, "name": scene_names[drive],
                                          "description": f"alcv synthetic drive {drive}"})
        scene.update(nbr_samples=scene["nbr_samples"] + 1, last_sample_token=sample)
        sample_record = {"token": sample, "timestamp": microseconds, "prev": "", "next": "",
                         "scene_token": scene["token"]}
        data_record = {"token": sample_data, "sample_token": sample, "ego_pose_token": pose,
                       "calibrated_sensor_token": calibration, "timestamp": microseconds, "fileformat": "pcd",
                       "is_key_frame": True, "height": 0, "width": 0, "prev": "", "next": "",
                       "filename": f"samples/{LIDAR_CHANNEL}/{sample_data}.pcd.bin"}
        if drive in previous:
            for record, before in zip((sample_record, data_record), previous[drive], strict=True):
                record["prev"], before["next"] = before["token"], record["token"]
        previous[drive] = (sample_record, data_record)
        points = item["points"].numpy()
        np.column_stack([points[:, :4], np.zeros(len(points))]).astype("<f4").tofile(root / data_record["filename"])
        tables["sample"].append(sample_record)
        tables["sample_data"].append(data_record)
        tables["ego_pose"].append({"token": pose, "timestamp": microseconds, "rotation": rotation,
                                   "translation": translation})
        tables["sample_annotation"] += _annotations(item["boxes"].numpy(), item["labels"].numpy(), points,
                                                    rigid_transform(rotation, translation) @ mount, sample, instances,
                                                    categories)
    for category in dict.fromkeys(categories):
        category_token = _token("category", category)
        tables["category"].append({"token": category_token, "name": category, "description": category})
        for instance in instances.get(category, []):
            tables["instance"].append({"category_token": category_token, "nbr_annotations": 1,
                                       "last_annotation_token": instance["first_annotation_token"], **instance})
    tables["scene"] = list(scenes.values())
    return tables


#: what the results' ``meta`` says of the detections: LiDAR only
RESULTS_META = {"use_camera": False, "use_lidar": True, "use_radar": False, "use_map": False, "use_external": False}


def detection_names(class_map: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """The devkit's detection class of each alcv class whose categories (``class_map``) all belong to one (a class
    named as a detection class with the devkit's categories maps to itself); the others are in none and are left
    out of the results, since the devkit evaluates only its 10 classes."""
    detection_of = {category: name for name, categories in DETECTION_CLASS_MAP.items() for category in categories}
    names = {}
    for name, categories in class_map.items():
        found = {detection_of.get(category) for category in categories}
        if len(found) == 1 and None not in found:
            names[name] = found.pop()
    return names


def nuscenes_results(dataset: NuScenesDataset, detections: Sequence[Detections],
                     names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The devkit's detection results format of LiDAR ``detections`` of ``dataset``'s frames.

    Each box goes into the global frame through its frame's pose (:meth:`NuScenesDataset.lidar_to_global`):
    ``translation`` of the centre, ``size`` ``[width, length, height]`` (``[dy, dx, dz]``), ``rotation`` the unit
    quaternion ``[w, x, y, z]`` of the pose's rotation times the yaw; ``velocity`` ``[0, 0]`` (alcv's detectors do
    not estimate it), ``attribute_name`` empty, ``detection_score`` the box's score and ``detection_name`` its
    class's (``names``: alcv class -> devkit detection class, default :func:`detection_names` of the dataset's
    class map; boxes of other classes are left out). Every frame of ``detections`` has an entry, boxes or not,
    in the given order (the devkit evaluates exactly the samples of its split).

    Returns ``{"meta": RESULTS_META, "results": {sample_token: [box, ...]}}``, ready for ``json.dump``.
    """
    names = detection_names(dataset.class_map) if names is None else names
    results: dict[str, list[dict[str, Any]]] = {}
    for frame in detections:
        pose = dataset.lidar_to_global(frame.index)
        token = dataset.sample_token(frame.index)
        boxes = []
        for box, label, score in zip(frame.boxes.tolist(), frame.labels.tolist(), frame.scores.tolist(), strict=True):
            class_name = dataset.class_names[label]
            if class_name not in names:
                continue
            x, y, z, dx, dy, dz, yaw = box
            boxes.append({"sample_token": token, "translation": (pose[:3, :3] @ (x, y, z) + pose[:3, 3]).tolist(),
                          "size": [dy, dx, dz],
                          "rotation": _matrix_quaternion(pose[:3, :3] @ quaternion_matrix(yaw_quaternion(yaw))),
                          "velocity": [0.0, 0.0], "detection_name": names[class_name],
                          "detection_score": float(score), "attribute_name": ""})
        results[token] = boxes
    return {"meta": dict(RESULTS_META), "results": results}
