"""KITTI-format LiDAR object detection data: :class:`KittiDataset` reads it and
:meth:`KittiDataset.write_pool_labels` writes finished labels of its pool frames into it;
:func:`kitti_calibration_text` and :func:`kitti_label_text` format it, for :func:`alcv.data.export.write_kitti`,
which writes any LiDAR dataset in it.

Layout (that of the KITTI 3D object detection benchmark's ``training`` folder)::

    root/velodyne/<frame>.bin   float32 little-endian x, y, z, reflectance, 16 bytes a point, LiDAR frame, metres
    root/label_2/<frame>.txt    one object a line (below); an empty file is a frame without objects; a pool
                                frame without one is unlabeled (to be labeled); val and test frames need one
    root/calib/<frame>.txt      the frame's calibration (below)
    root/ImageSets/<name>.txt   split files, frame ids one a line; also looked for in root/../ImageSets (OpenPCDet
                                keeps kitti/ImageSets beside kitti/training)
    root/drives.txt             optional, an alcv extension: the frames' drives and timestamps (below)

A **label line** is ``type truncated occluded alpha bbox_left bbox_top bbox_right bbox_bottom h w l x y z
rotation_y``, 15 fields, with an optional 16th, a detection score (ignored: labels are ground truth). ``h w l``
are the box's height, width and length in metres; ``x y z`` is the centre of its **bottom** face in the
rectified camera frame (x right, y down, z forward, metres); ``rotation_y`` is its heading around the camera's
y axis (radians, 0 = facing camera x). Only the type and these last seven fields are used; the others (and the
2D ``bbox``, in pixels of camera 2) need only be numbers, unless ``official_eval`` (below).

**Official evaluation** (``KittiDataset(official_eval=True)``, ``data.dataset.official_eval=true``): every line of
each label file, of any type (DontCare and the dropped types included) and wherever it lies (``point_range``
does not apply), is also kept as a :class:`KittiEvalFrame`, for KITTI's official AP
(:mod:`alcv.metrics.kitti_official`). Its fields are then checked, naming the file, the line and the field:
``bbox`` must have ``left <= right`` and ``top <= bottom``; except on DontCare lines, ``truncated`` must lie in
[0, 1], ``occluded`` be 0, 1, 2 or 3, and ``h w l`` be positive; every calib file needs ``P2`` (detections are
projected into camera 2 for their 2D height).

A **calib file** holds ``key: values`` lines of row-major matrices: ``R0_rect`` (9 values, the rectifying
rotation) and ``Tr_velo_to_cam`` (12 values, ``[R | t]`` from the LiDAR frame to the reference camera) are
required; ``P0`` to ``P3`` (12 values each, the projections of the rectified camera frame into the four
cameras' pixels) and ``Tr_imu_to_velo`` (12 values) are read when present; other keys are ignored.

**Conversion** of a label to alcv's LiDAR box ``[x, y, z, dx, dy, dz, yaw]`` (box centre, length along the
heading, width, height, heading around +z with 0 = +x; see :mod:`alcv.data.lidar_dataset`):
``centre_rect = (x, y - h/2, z)``; ``centre = inverse(Tr_velo_to_cam) · inverse(R0_rect) · centre_rect`` (both as
4 x 4 homogeneous transforms); ``dx, dy, dz = l, w, h``; the heading ``(cos ry, 0, -sin ry)`` (rectified frame) is
turned into the LiDAR frame by the rotation parts of the same transforms and ``yaw = atan2(heading_y,
heading_x)``, wrapped to (-pi, pi]. This holds for any calibration; for the ideal one (``Tr_velo_to_cam`` the
axis permutation, ``R0_rect`` the identity) ``yaw = -ry - pi/2``. :func:`lidar_to_kitti_boxes` inverts it
exactly, so a written dataset reads back with the boxes it was written with.

**Unlabeled frames**: a pool frame with its point and calib files but no label file has no annotations yet: it
is read with zero boxes and listed by :meth:`KittiDataset.unlabeled_indices`, to be labeled, never trained or
evaluated on. Once people have labeled it, :meth:`KittiDataset.write_pool_labels` checks the label text and
writes its ``label_2/<frame>.txt``.

**Drives and time**: KITTI object frames have neither. alcv reads them from ``root/drives.txt`` when it exists,
lines ``<frame_id> <drive> <timestamp_seconds>`` (``drive`` any name without spaces, e.g. a KITTI raw drive
``2011_09_26_drive_0001`` or a number), which must then list every frame the dataset reads. Without it each
frame is a drive of its own with timestamp 0.0.

Items follow the LiDAR item contract of :mod:`alcv.data.lidar_dataset`.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from alcv.data.splits import (
    PointCloudSplits,
    check_held_out,
    check_point_range,
    check_split_names,
    class_map_for,
    inside_range,
    listed,
    source_labels,
)
from alcv.geometry import box_corners
from alcv.metrics.kitti_official import DONT_CARE, KITTI_BENCHMARK_TYPES
from alcv.safe_io import write_text_atomically

__all__ = ["KITTI_IMAGE_SIZE", "KITTI_NAME", "KittiCalibration", "KittiDataset", "KittiEvalFrame",
           "kitti_calibration_text", "kitti_label_text", "kitti_like_calibration", "kitti_to_lidar_boxes",
           "lidar_to_kitti_boxes", "read_kitti_calibration"]

#: the fields of a label line, in order (a 16th, ``score``, may follow)
LABEL_FIELDS: tuple[str, ...] = ("type", "truncated", "occluded", "alpha", "bbox_left", "bbox_top", "bbox_right",
                                 "bbox_bottom", "h", "w", "l", "x", "y", "z", "rotation_y")
_NUMERIC_LABEL_FIELDS = (*LABEL_FIELDS[1:], "score")
#: the ImageSets file stem of each alcv split that :class:`KittiDataset` reads by default (KITTI's usual split)
DEFAULT_SPLITS: Mapping[str, str] = MappingProxyType({"pool": "train", "test": "val"})
#: (width, height) in pixels of the camera-2 image the written 2D boxes are clipped to
KITTI_IMAGE_SIZE: tuple[int, int] = (1242, 375)
#: the number of values of each calib key alcv reads
_CALIB_SIZES = {"P0": 12, "P1": 12, "P2": 12, "P3": 12, "R0_rect": 9, "Tr_velo_to_cam": 12, "Tr_imu_to_velo": 12}
#: frame ids, ImageSets stems and the type names alcv writes: letters, digits, '_' and '-'
KITTI_NAME = re.compile(r"[0-9A-Za-z_-]+")
_POINT_BYTES = 16
logger = logging.getLogger(__name__)


def _wrap_angle(angle: np.ndarray) -> np.ndarray:
    """Angles (radians) wrapped to (-pi, pi]."""
    return np.pi - np.mod(np.pi - angle, 2 * np.pi)


def _homogeneous(matrix: np.ndarray) -> np.ndarray:
    """The ``(4, 4)`` homogeneous form of a ``(3, 3)`` rotation or a ``(3, 4)`` ``[R | t]``."""
    matrix = np.asarray(matrix, dtype=np.float64)
    square = np.eye(4)
    square[:3, :matrix.shape[1]] = matrix
    return square


@dataclass(frozen=True, eq=False)
class KittiCalibration:
    """The calibration of one KITTI frame (see the module docstring).

    Attributes:
        r0_rect: ``(3, 3)`` the rectifying rotation, reference camera frame -> rectified camera frame.
        velo_to_cam: ``(3, 4)`` ``[R | t]``, LiDAR frame -> reference camera frame (x right, y down, z forward),
            metres.
        projections: ``"P0"`` .. ``"P3"`` -> ``(3, 4)`` projection of the rectified camera frame into that camera's
            pixels, for those the file has.
        imu_to_velo: ``(3, 4)`` ``[R | t]``, IMU frame -> LiDAR frame, or None.
    """

    r0_rect: np.ndarray
    velo_to_cam: np.ndarray
    projections: Mapping[str, np.ndarray] = field(default_factory=dict)
    imu_to_velo: np.ndarray | None = None

    def velo_to_rect(self) -> np.ndarray:
        """``(4, 4)`` homogeneous transform, LiDAR frame -> rectified camera frame: ``R0_rect · Tr_velo_to_cam``."""
        return _homogeneous(self.r0_rect) @ _homogeneous(self.velo_to_cam)

    def rect_to_velo(self) -> np.ndarray:
        """``(4, 4)`` homogeneous transform, rectified camera frame -> LiDAR frame (the inverse of
        :meth:`velo_to_rect`)."""
        return np.linalg.inv(self.velo_to_rect())


def _rotation(rotation_vector: Sequence[float]) -> np.ndarray:
    """The ``(3, 3)`` rotation by ``|v|`` radians around the axis ``v`` (Rodrigues' formula)."""
    vector = np.asarray(rotation_vector, dtype=np.float64)
    angle = float(np.linalg.norm(vector))
    x, y, z = vector / angle
    cross = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + math.sin(angle) * cross + (1 - math.cos(angle)) * cross @ cross


def kitti_like_calibration() -> KittiCalibration:
    """A calibration like those of the KITTI recordings, for frames that have none of their own.

    ``Tr_velo_to_cam`` is the axis permutation (LiDAR x forward -> camera z, y left -> -x, z up -> -y) turned by
    about 1 degree, with the camera 27 cm ahead of and 8 cm below the LiDAR; ``R0_rect`` a rotation of about 0.8
    degrees; ``P0`` .. ``P3`` KITTI's intrinsics (focal length 721.5 pixels) with its camera baselines;
    ``Tr_imu_to_velo`` KITTI's IMU mounting, roughly.
    """
    intrinsics = np.array([[721.5377, 0.0, 609.5593], [0.0, 721.5377, 172.854], [0.0, 0.0, 1.0]])
    camera_offsets = {"P0": (0.0, 0.0, 0.0), "P1": (-0.5372, 0.0, 0.0), "P2": (0.0599, -0.0003, 0.0027),
                      "P3": (-0.4731, 0.0024, 0.0050)}
    projections = {key: intrinsics @ np.column_stack([np.eye(3), offset]) for key, offset in camera_offsets.items()}
    axis_permutation = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
    velo_to_cam = np.column_stack([_rotation((-0.0148, 0.0075, -0.0006)) @ axis_permutation,
                                   (-0.0041, -0.0763, -0.2718)])
    imu_to_velo = np.column_stack([_rotation((0.0085, 0.0020, -0.0008)), (-0.8087, 0.3196, -0.7997)])
    return KittiCalibration(r0_rect=_rotation((0.0040, -0.0085, -0.0101)), velo_to_cam=velo_to_cam,
                            projections=projections, imu_to_velo=imu_to_velo)


def kitti_to_lidar_boxes(label_boxes: np.ndarray, calib: KittiCalibration) -> np.ndarray:
    """LiDAR boxes of KITTI label boxes (the conversion of the module docstring).

    Args:
        label_boxes: ``(M, 7)`` the last seven fields of label lines, ``[h, w, l, x, y, z, rotation_y]``: metres,
            the bottom-face centre in the rectified camera frame, radians.
        calib: the frame's calibration.

    Returns:
        ``(M, 7)`` float64 ``[x, y, z, dx, dy, dz, yaw]``, the box centre in the LiDAR frame (metres), yaw around
        +z in (-pi, pi].
    """
    label_boxes = np.asarray(label_boxes, dtype=np.float64).reshape(-1, 7)
    height, width, length = label_boxes[:, 0], label_boxes[:, 1], label_boxes[:, 2]
    rotation_y = label_boxes[:, 6]
    centres_rect = label_boxes[:, 3:6] - np.column_stack([np.zeros_like(height), height / 2, np.zeros_like(height)])
    rect_to_velo = calib.rect_to_velo()
    centres = centres_rect @ rect_to_velo[:3, :3].T + rect_to_velo[:3, 3]
    headings_rect = np.column_stack([np.cos(rotation_y), np.zeros_like(rotation_y), -np.sin(rotation_y)])
    headings = headings_rect @ rect_to_velo[:3, :3].T
    yaw = _wrap_angle(np.arctan2(headings[:, 1], headings[:, 0]))
    return np.column_stack([centres, length, width, height, yaw])


def lidar_to_kitti_boxes(boxes: np.ndarray, calib: KittiCalibration) -> np.ndarray:
    """KITTI label boxes of LiDAR boxes: the exact inverse of :func:`kitti_to_lidar_boxes`.

    ``rotation_y`` is the angle whose heading :func:`kitti_to_lidar_boxes` turns back into ``yaw`` (for the ideal
    calibration ``-yaw - pi/2``; in general the heading is solved for in the rectified x-z plane).

    Args:
        boxes: ``(M, 7)`` ``[x, y, z, dx, dy, dz, yaw]``, LiDAR frame, metres, radians.
        calib: the frame's calibration.

    Returns:
        ``(M, 7)`` float64 ``[h, w, l, x, y, z, rotation_y]``: metres, the bottom-face centre in the rectified
        camera frame, ``rotation_y`` in (-pi, pi].
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    velo_to_rect = calib.velo_to_rect()
    centres_rect = boxes[:, :3] @ velo_to_rect[:3, :3].T + velo_to_rect[:3, 3]
    height = boxes[:, 5]
    bottoms = centres_rect + np.column_stack([np.zeros_like(height), height / 2, np.zeros_like(height)])
    # the LiDAR (x, y) heading of the rectified heading (cos ry, 0, -sin ry) is this (2, 2) matrix times
    # (cos ry, -sin ry); solving for that vector gives a direction whose heading is exactly yaw
    rect_xz_to_velo_xy = calib.rect_to_velo()[:2][:, [0, 2]]
    cos_and_minus_sin = np.linalg.solve(rect_xz_to_velo_xy, np.stack([np.cos(boxes[:, 6]), np.sin(boxes[:, 6])]))
    rotation_y = _wrap_angle(np.arctan2(-cos_and_minus_sin[1], cos_and_minus_sin[0]))
    return np.column_stack([height, boxes[:, 4], boxes[:, 3], bottoms, rotation_y])


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not a UTF-8 text file ({error})") from None


def _parse_number(path: Path | str, line_number: int, name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{path}, line {line_number}: {name} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{path}, line {line_number}: {name} {text!r} is not a finite number")
    return value


def read_kitti_calibration(path: Path | str) -> KittiCalibration:
    """Parse a KITTI calib file (see the module docstring).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file and the key for a line
    that is not ``key: values``, a key given twice, a value that is not a finite number, a wrong number of
    values, a missing ``R0_rect`` or ``Tr_velo_to_cam``, or a rotation part of either (``R0_rect``, the left
    3 x 3 of ``Tr_velo_to_cam``) that is not a rotation (:data:`ROTATION_TOLERANCE`).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: calibration file not found")
    values: dict[str, np.ndarray] = {}
    for line_number, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        key, colon, text = line.partition(":")
        key = key.strip()
        if not colon or not key:
            raise ValueError(f"{path}, line {line_number}: expected 'key: values', got {line!r}")
        if key not in _CALIB_SIZES:
            continue
        if key in values:
            raise ValueError(f"{path}, line {line_number}: key {key} is given twice")
        numbers = [_parse_number(path, line_number, f"{key} value", token) for token in text.split()]
        if len(numbers) != _CALIB_SIZES[key]:
            raise ValueError(f"{path}, line {line_number}: {key} has {len(numbers)} values, expected "
                             f"{_CALIB_SIZES[key]}")
        values[key] = np.array(numbers).reshape(3, -1)
    for key in ("R0_rect", "Tr_velo_to_cam"):
        if key not in values:
            raise ValueError(f"{path}: calibration lacks {key} (a line '{key}: <{_CALIB_SIZES[key]} values>')")
    calib = KittiCalibration(r0_rect=values["R0_rect"], velo_to_cam=values["Tr_velo_to_cam"],
                             projections={key: values[key] for key in ("P0", "P1", "P2", "P3") if key in values},
                             imu_to_velo=values.get("Tr_imu_to_velo"))
    for key, rotation in (("R0_rect", calib.r0_rect), ("Tr_velo_to_cam", calib.velo_to_cam[:, :3])):
        if problem := _not_a_rotation(rotation):
            raise ValueError(f"{path}: the rotation of {key} is not a rotation ({problem}); expected an orthonormal "
                             f"3 x 3 matrix with determinant +1, within {ROTATION_TOLERANCE:g}")
    return calib


#: how far from a rotation a calibration's rotation may be (each entry of R·Rᵀ - I, and det R - 1): KITTI's files
#: print about 7 significant digits
ROTATION_TOLERANCE = 1e-4


def _not_a_rotation(matrix: np.ndarray) -> str:
    """Why a ``(3, 3)`` matrix is not a rotation within :data:`ROTATION_TOLERANCE` (``""`` if it is one)."""
    off = float(np.abs(matrix @ matrix.T - np.eye(3)).max())
    if off > ROTATION_TOLERANCE:
        return f"R·Rᵀ differs from the identity by up to {off:.3g}"
    determinant = float(np.linalg.det(matrix))
    if abs(determinant - 1) > ROTATION_TOLERANCE:
        return f"its determinant is {determinant:.6g}"
    return ""


#: a label line: its line number, type and numeric fields (``truncated`` .. ``rotation_y``, the score left out)
_LabelRow = tuple[int, str, list[float]]


def _label_rows(source: Path | str, lines: Sequence[str]) -> list[_LabelRow]:
    """The non-blank ``lines`` of a label file, with the field count and every number checked; errors name
    ``source`` (the file, or where the text comes from) and the line."""
    rows: list[_LabelRow] = []
    for line_number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) not in (len(LABEL_FIELDS), len(LABEL_FIELDS) + 1):
            raise ValueError(f"{source}, line {line_number}: {len(fields)} fields, expected {len(LABEL_FIELDS)} "
                             f"({' '.join(LABEL_FIELDS)}) or {len(LABEL_FIELDS) + 1} (with a score)")
        numbers = [_parse_number(source, line_number, name, text)
                   for name, text in zip(_NUMERIC_LABEL_FIELDS[:len(fields) - 1], fields[1:], strict=True)]
        rows.append((line_number, fields[0], numbers[:len(LABEL_FIELDS) - 1]))
    return rows


def _check_size(path: Path | str, line_number: int, numbers: list[float]) -> None:
    height, width, length = numbers[7:10]
    if min(height, width, length) <= 0:
        raise ValueError(f"{path}, line {line_number}: dimensions h={height:g} w={width:g} l={length:g}; "
                         "expected a box of positive size (metres > 0)")


def _parse_labels(path: Path | str, rows: Sequence[_LabelRow], calib: KittiCalibration,
                  type_labels: Mapping[str, int], drop_types: frozenset[str]) -> tuple[np.ndarray, np.ndarray]:
    """The kept objects of one label file: ``(M, 7)`` float32 LiDAR boxes and ``(M,)`` int64 labels."""
    label_boxes: list[list[float]] = []
    labels: list[int] = []
    for line_number, kitti_type, numbers in rows:
        if kitti_type in drop_types:
            continue
        if kitti_type not in type_labels:
            raise ValueError(f"{path}, line {line_number}: KITTI type {kitti_type!r} is in no class_map entry; add "
                             f"it to class_map or drop_types")
        _check_size(path, line_number, numbers)
        label_boxes.append(numbers[7:14])
        labels.append(type_labels[kitti_type])
    boxes = kitti_to_lidar_boxes(np.array(label_boxes).reshape(-1, 7), calib)
    return boxes.astype(np.float32), np.array(labels, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class KittiEvalFrame:
    """Every line of one frame's label file (all types, DontCare included, whatever ``point_range``), as KITTI's
    official evaluation (:mod:`alcv.metrics.kitti_official`) reads it, and the frame's calibration.

    Attributes:
        types: ``M`` KITTI types.
        truncation: ``(M,)`` float64, in [0, 1] (DontCare: as in the file).
        occlusion: ``(M,)`` int64, 0 (fully visible) to 3 (unknown) (DontCare: as in the file).
        image_boxes: ``(M, 4)`` float64 ``[left, top, right, bottom]``, camera-2 pixels.
        boxes: ``(M, 7)`` float64 label boxes ``[h, w, l, x, y, z, rotation_y]``, rectified camera frame (the
            bottom-face centre), metres / radians.
        calibration: the frame's calibration (with ``P2``).
    """

    types: tuple[str, ...]
    truncation: np.ndarray
    occlusion: np.ndarray
    image_boxes: np.ndarray
    boxes: np.ndarray
    calibration: KittiCalibration

    def project(self, lidar_boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(label boxes (N, 7), image boxes (N, 4))`` of ``(N, 7)`` LiDAR boxes ``[x, y, z, dx, dy, dz, yaw]``:
        :func:`lidar_to_kitti_boxes`, and the extent of the corners projected with ``P2`` clipped to
        :data:`KITTI_IMAGE_SIZE` (``-1`` x 4, so of height 0, for a box with a corner behind the camera or outside
        the image: the official evaluation then ignores it at every difficulty)."""
        lidar_boxes = np.asarray(lidar_boxes, dtype=np.float64).reshape(-1, 7)
        return lidar_to_kitti_boxes(lidar_boxes, self.calibration), _image_box(lidar_boxes, self.calibration)


def _eval_frame(path: Path | str, rows: Sequence[_LabelRow], calib: KittiCalibration) -> KittiEvalFrame:
    """The :class:`KittiEvalFrame` of one label file, its fields checked as the official evaluation needs them."""
    for line_number, kitti_type, numbers in rows:
        truncated, occluded, _, left, top, right, bottom = numbers[:7]
        where = f"{path}, line {line_number}"
        if not (left <= right and top <= bottom):
            raise ValueError(f"{where}: bbox {left:g} {top:g} {right:g} {bottom:g}: expected left <= right and top "
                             f"<= bottom (pixels of camera 2), as the official evaluation needs")
        if kitti_type == DONT_CARE:
            continue
        if not 0 <= truncated <= 1:
            raise ValueError(f"{where}: truncated {truncated:g}: expected a fraction in [0, 1], as the official "
                             f"evaluation needs")
        if occluded not in (0, 1, 2, 3):
            raise ValueError(f"{where}: occluded {occluded:g}: expected 0 (fully visible), 1, 2 or 3 (unknown), as "
                             f"the official evaluation needs")
        _check_size(path, line_number, numbers)
    table = np.array([numbers for _, _, numbers in rows], dtype=np.float64).reshape(-1, len(LABEL_FIELDS) - 1)
    return KittiEvalFrame(types=tuple(kitti_type for _, kitti_type, _ in rows), truncation=table[:, 0],
                          occlusion=table[:, 1].astype(np.int64), image_boxes=table[:, 3:7], boxes=table[:, 7:14],
                          calibration=calib)


def _read_frame_list(path: Path) -> list[str]:
    """The frame ids of a split file, one a line (blank lines skipped)."""
    frames: dict[str, int] = {}
    for line_number, line in enumerate(_read_lines(path), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 1 or not KITTI_NAME.fullmatch(fields[0]):
            raise ValueError(f"{path}, line {line_number}: expected one frame id (letters, digits, '_', '-') a "
                             f"line, got {line!r}")
        if fields[0] in frames:
            raise ValueError(f"{path}, line {line_number}: frame {fields[0]} is listed twice (first on line "
                             f"{frames[fields[0]]})")
        frames[fields[0]] = line_number
    return list(frames)


def _read_drives(path: Path) -> dict[str, tuple[str, float]]:
    """``{frame id: (drive name, timestamp seconds)}`` of a ``drives.txt``."""
    drives: dict[str, tuple[str, float]] = {}
    for line_number, line in enumerate(_read_lines(path), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 3:
            raise ValueError(f"{path}, line {line_number}: expected '<frame_id> <drive> <timestamp_seconds>', got "
                             f"{line!r}")
        frame, drive, timestamp = fields
        if frame in drives:
            raise ValueError(f"{path}, line {line_number}: frame {frame} is listed twice")
        drives[frame] = (drive, _parse_number(path, line_number, "timestamp", timestamp))
    return drives


def _frame_order(frame_id: str) -> tuple[int, int, str]:
    """Sort key: numeric ids in numeric order, then the others as text."""
    if frame_id.isascii() and frame_id.isdigit():
        return 0, int(frame_id), frame_id
    return 1, 0, frame_id


def _official_types(class_map: Mapping[str, Sequence[str]]) -> tuple[str, ...]:
    """The KITTI type each class is evaluated as by the official evaluation: the benchmark type
    (:data:`~alcv.metrics.kitti_official.KITTI_BENCHMARK_TYPES`) its ``class_map`` entry lists, else its first type."""
    types = []
    for name, kitti_types in class_map.items():
        listed = _type_names(kitti_types, f"class_map[{name!r}]")
        benchmark = [t for t in listed if t in KITTI_BENCHMARK_TYPES]
        if len(benchmark) > 1:
            raise ValueError(f"KittiDataset: class_map[{name!r}] lists the benchmark types {benchmark}; with "
                             f"official_eval each class is evaluated as one KITTI type")
        types.append(benchmark[0] if benchmark else listed[0])
    return tuple(types)


def _type_names(value: Any, what: str) -> list[str]:
    """A list of KITTI type names (a single name is a list of one)."""
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, Sequence) or not all(isinstance(name, str) and name for name in names):
        raise ValueError(f"KittiDataset: {what} must be a list of KITTI type names, got {value!r}")
    return list(names)


class KittiDataset(PointCloudSplits):
    """LiDAR frames in KITTI layout (see the module docstring), as one dataset indexed by absolute index.

    Absolute indices: the pool frames first, then val, then test, each split in ascending frame id (numeric ids
    in numeric order). ``split_indices(split)`` gives a split's absolute indices. Every listed frame's label and
    calib file is read and validated, and its point file's size checked, at construction (nothing is
    half-loaded: any problem raises before the dataset exists); boxes are converted to the LiDAR frame once,
    then; points are read lazily in ``__getitem__``, and :meth:`num_boxes` / :meth:`box_labels` never read a
    point file.

    Rules:

    - objects of ``drop_types`` are dropped (their values need only be numbers: KITTI's DontCare lines carry
      -1 dimensions); an object of a type that neither ``class_map`` nor ``drop_types`` names is an error;
    - with ``point_range``, points outside it are dropped when read, and boxes whose centre is outside it are
      dropped at construction (bounds inclusive);
    - a frame whose label file is empty (or keeps no object) stays in the dataset with zero boxes: confirming
      that a frame holds nothing to detect is information that active learning pays for too;
    - a pool frame without a label file is **unlabeled** (:meth:`unlabeled_indices`): zero boxes, to be labeled,
      never trained or evaluated on (nor has it a :meth:`eval_frame`); a val or test frame without one is an
      error. :meth:`write_pool_labels` writes the label files of labeled pool frames, checked first.

    :meth:`frame_name` (also :meth:`frame_id`) is a frame's KITTI frame id, the file stem.

    Splits: 'pool' comes from a split file or, with ``splits=None``, is every frame of ``root/velodyne``; 'val'
    and 'test' either have their own split file or are carved out of the pool by ``held_out``, whole drives at a
    time, exactly as in :class:`~alcv.data.coco.CocoDataset` (the drives, in the order of their first frame, are
    shuffled by ``split_seed``; the first ``round(fraction x drives)``, at least one for a fraction > 0, go to
    'test', the next ones to 'val'). Without ``drives.txt`` every frame is a drive, so the fractions are
    fractions of frames.

    Drives and time: see the module docstring. Drive ids are consecutive ints from 0 in the order of each
    drive's first absolute index, counted per split, so no drive id spans two splits.

    Bad input raises ``FileNotFoundError`` for missing files (a frame listed in a split file but without its
    ``.bin`` or calib file, or a val or test frame without its label file, names the split file and the frame id)
    and ``ValueError`` naming the file, the line and the problem for: a label line with a wrong number of fields,
    a value that is not a finite number, a dimension that is not positive or an unmapped type; a calib file that
    lacks ``R0_rect`` or ``Tr_velo_to_cam``, has a wrong number of values or a rotation part that is not a
    rotation; a ``.bin`` whose size is not a multiple of 16 bytes; a frame id listed twice or in two splits; a
    ``drives.txt`` that misses a frame; a 'pool' or 'test' split without frames; held-out drives that would put
    an unlabeled frame into val or test; and bad arguments.

    Args:
        root: the folder holding ``velodyne``, ``label_2`` and ``calib``.
        class_map: each alcv class name -> the KITTI types that become it, e.g. ``{"vehicle": ["Car", "Van"],
            "pedestrian": ["Pedestrian"]}``. A type may map to one class only. A class of ``class_names`` that the
            map does not name is the type of the same name.
        class_names: the alcv classes in label order (label ``i`` is ``class_names[i]``); None: the keys of
            ``class_map`` in order. At least one of the two must be given.
        splits: each alcv split ('pool', 'val', 'test') -> the stem of its ``ImageSets`` file (a None entry: no
            file), e.g. ``{"pool": "train", "test": "val"}``; None: every frame of ``velodyne`` is the pool.
        drop_types: KITTI types that are not objects to detect.
        point_range: ``[xmin, ymin, zmin, xmax, ymax, zmax]``, LiDAR frame, metres, or None (keep everything).
        held_out: ``{"test": fraction, "val": fraction}`` of the pool's drives that become those splits;
            fractions are in [0, 1) and sum to less than 1.
        split_seed: the seed of the held-out drives' shuffle.
        cache_size: point clouds kept in a per-process LRU cache (0: none). With DataLoader workers each worker
            keeps its own cache; a cached frame takes 16 bytes a point.
        official_eval: keep every label line for KITTI's official evaluation (module docstring): then
            :meth:`eval_frame` gives a frame's :class:`KittiEvalFrame` and :attr:`official_types` the KITTI type each
            class is evaluated as (the benchmark type, Car / Pedestrian / Cyclist, that its ``class_map`` entry
            lists, else its first type; an entry listing two benchmark types is an error).
    """

    def __init__(self, root: Path | str, class_map: Mapping[str, Sequence[str]] | None = None,
                 class_names: Sequence[str] | None = None, splits: Mapping[str, str | None] | None = DEFAULT_SPLITS,
                 drop_types: Sequence[str] = ("DontCare",), point_range: Sequence[float] | None = None,
                 held_out: Mapping[str, float] | None = None, split_seed: int = 0, cache_size: int = 0,
                 official_eval: bool = False) -> None:
        self.root = Path(root)
        self.official_eval = bool(official_eval)
        super().__init__(cache_size)
        self.point_range = check_point_range(point_range, "KittiDataset")
        self.drop_types = frozenset(_type_names(drop_types, "'drop_types'"))
        full_map = class_map_for(class_map, class_names, "KittiDataset")
        type_labels = source_labels(full_map, self.drop_types, "KittiDataset", "KITTI type", "drop_types")
        self.class_names: tuple[str, ...] = tuple(str(name) for name in full_map)
        #: the KITTI type each class is written as (a round's pre-annotations): the first type of its class_map entry
        self.class_types: tuple[str, ...] = tuple(next(kind for kind, label in type_labels.items() if label == number)
                                                  for number in range(len(self.class_names)))
        self.official_types = _official_types(full_map) if self.official_eval else ()
        self._type_labels = type_labels
        fractions = check_held_out(held_out, split_seed, "KittiDataset")
        split_frames = self._split_frames(splits, fractions)
        drives_file = self.root / "drives.txt"
        drives = _read_drives(drives_file) if drives_file.is_file() else None

        parsed_splits: dict[str, list[dict[str, Any]]] = {}
        for split, (source, frames) in split_frames.items():
            parsed_splits[split] = []
            for frame in frames:
                record = self._read_frame(frame, split, source)
                if drives is None:
                    record.update(drive=("frame", frame), timestamp=0.0)
                elif frame in drives:
                    record.update(drive=("drive", drives[frame][0]), timestamp=drives[frame][1])
                else:
                    raise ValueError(f"{drives_file}: frame {frame} (listed in {source}) has no line; list every "
                                     f"frame or remove the file")
                parsed_splits[split].append(record)
            unlabeled = sum(not record["labeled"] for record in parsed_splits[split])
            if unlabeled:
                logger.info("%s: %d of the %d %s frames have no label file: unlabeled, to be labeled", source,
                            unlabeled, len(frames), split)
        sources = {split: source for split, (source, _) in split_frames.items()}
        records = self._index_splits(parsed_splits, sources, fractions, split_seed, box_width=7, noun="frames")
        self._eval_frames: list[KittiEvalFrame | None] = [record["eval"] for record in records]

    def _split_file(self, stem: str) -> Path:
        """``ImageSets/<stem>.txt`` in ``root``, else beside it (the OpenPCDet layout)."""
        candidates = [self.root / "ImageSets" / f"{stem}.txt", self.root.parent / "ImageSets" / f"{stem}.txt"]
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(f"KittiDataset: split file {stem}.txt not found (looked for "
                                f"{' and '.join(str(c) for c in candidates)})")

    def _split_frames(self, splits: Mapping[str, str | None] | None, fractions: Mapping[str, float]
                      ) -> dict[str, tuple[Path, list[str]]]:
        """``{split: (where its frames are listed, frame ids in ascending order)}`` of the splits with a source."""
        if splits is None:
            check_split_names(["pool"], fractions, "KittiDataset", "<ImageSets stem>")
            velodyne = self.root / "velodyne"
            if not velodyne.is_dir():
                raise FileNotFoundError(f"KittiDataset: point folder {velodyne} not found")
            frames = [path.stem for path in velodyne.glob("*.bin")]
            odd = [frame for frame in frames if not KITTI_NAME.fullmatch(frame)]
            if odd:
                raise ValueError(f"{velodyne}: frame id(s) {sorted(odd)[:5]} are not made of letters, digits, '_' "
                                 f"and '-'")
            sources: dict[str, tuple[Path, list[str]]] = {"pool": (velodyne, frames)}
        else:
            if not isinstance(splits, Mapping):
                raise ValueError(f"KittiDataset: 'splits' must map split names to ImageSets file stems, got "
                                 f"{splits!r}")
            splits = {name: stem for name, stem in splits.items() if stem is not None}
            check_split_names(list(splits), fractions, "KittiDataset", "<ImageSets stem>")
            sources = {}
            for name, stem in splits.items():
                if not isinstance(stem, str) or not KITTI_NAME.fullmatch(stem):
                    raise ValueError(f"KittiDataset: splits[{name!r}] must be an ImageSets file stem, got {stem!r}")
                path = self._split_file(stem)
                sources[str(name)] = (path, _read_frame_list(path))
        owner: dict[str, str] = {}
        for name, (path, frames) in sources.items():
            for frame in frames:
                if frame in owner:
                    raise ValueError(f"{path}: frame {frame} of the '{name}' split is also in the '{owner[frame]}' "
                                     f"split ({sources[owner[frame]][0]})")
                owner[frame] = name
        return {name: (path, sorted(frames, key=_frame_order)) for name, (path, frames) in sources.items()}

    def _frame_files(self, frame: str) -> tuple[Path, Path, Path]:
        """The point, label and calib files of ``frame``."""
        return (self.root / "velodyne" / f"{frame}.bin", self.root / "label_2" / f"{frame}.txt",
                self.root / "calib" / f"{frame}.txt")

    def _read_frame(self, frame: str, split: str, source: Path) -> dict[str, Any]:
        """The checked files of ``frame`` (of ``split``, listed in ``source``): its kept LiDAR boxes and labels,
        none for a pool frame without a label file (unlabeled)."""
        points, label, calib = self._frame_files(frame)
        labeled = label.is_file()
        if not labeled and split != "pool":
            raise FileNotFoundError(f"{source}: frame {frame} of the '{split}' split: label file {label} not found; "
                                    f"val and test frames need labels (only pool frames may be unlabeled)")
        for kind, path in (("point", points), ("calib", calib)):
            if not path.is_file():
                raise FileNotFoundError(f"{source}: frame {frame}: {kind} file {path} not found")
        size = points.stat().st_size
        if size % _POINT_BYTES:
            raise ValueError(f"{points}: {size} bytes is not a multiple of {_POINT_BYTES} (float32 x, y, z, "
                             f"reflectance a point)")
        rows = _label_rows(label, _read_lines(label)) if labeled else []
        calibration = self._read_calibration(calib)
        boxes, labels, eval_frame = self._objects(label, rows, calibration)
        return {"name": frame, "labeled": labeled, "boxes": boxes, "labels": labels,
                "eval": eval_frame if labeled else None}

    def _objects(self, source: Path | str, rows: Sequence[_LabelRow], calibration: KittiCalibration
                 ) -> tuple[np.ndarray, np.ndarray, KittiEvalFrame | None]:
        """The kept ``(M, 7)`` float32 LiDAR boxes and ``(M,)`` int64 labels of a label file's ``rows`` (by the
        rules of the class) and, with ``official_eval``, its checked :class:`KittiEvalFrame`; errors name
        ``source``."""
        boxes, labels = _parse_labels(source, rows, calibration, self._type_labels, self.drop_types)
        if self.point_range is not None:
            inside = inside_range(boxes[:, :3], self.point_range)
            boxes, labels = boxes[inside], labels[inside]
        return boxes, labels, _eval_frame(source, rows, calibration) if self.official_eval else None

    def _read_calibration(self, calib: Path) -> KittiCalibration:
        """:func:`read_kitti_calibration` of ``calib``, which with ``official_eval`` must have ``P2``."""
        calibration = read_kitti_calibration(calib)
        if self.official_eval and "P2" not in calibration.projections:
            raise ValueError(f"{calib}: calibration lacks P2 (a line 'P2: <12 values>'), which the official "
                             f"evaluation (official_eval) needs to project detections into camera 2")
        return calibration

    def eval_frame(self, index: int) -> KittiEvalFrame:
        """The label file of absolute index ``index`` as the official evaluation reads it (``official_eval``);
        an unlabeled frame has none (``ValueError``)."""
        if not self.official_eval:
            raise ValueError("KittiDataset: eval_frame needs official_eval=True (data.dataset.official_eval=true), "
                             "which keeps the label fields of KITTI's official evaluation")
        eval_frame = self._eval_frames[self._check_index(index)]
        if eval_frame is None:
            raise ValueError(f"KittiDataset: frame {self.frame_name(index)} (index {index}) is unlabeled (no "
                             f"{self._frame_files(self.frame_name(index))[1]}): it has no eval frame, and an "
                             f"unlabeled pool frame is never evaluated")
        return eval_frame

    def frame_id(self, index: int) -> str:
        """The KITTI frame id (file stem) of absolute index ``index``: its :meth:`frame_name`."""
        return self.frame_name(index)

    def write_pool_labels(self, labels: Mapping[str, str], overwrite: bool = False) -> list[Path]:
        """Write the finished labels of pool frames as their ``root/label_2/<frame>.txt``.

        Args:
            labels: a pool frame id -> the text of its label file (label lines of the module docstring, in the
                rectified camera frame of the frame's own calib file; ``""``: a frame that holds nothing to
                detect).
            overwrite: replace the label files that frames already have (else such frames are refused).

        Every entry is checked before anything is written, so a refused call changes nothing: the frame id is a
        pool frame of the dataset; the text parses by the rules the dataset reads with (fields, finite numbers,
        positive sizes, each type in ``class_map`` or ``drop_types``; with ``official_eval`` also the official
        evaluation's field checks), with the frame's calib file; the frame has no label file yet, unless
        ``overwrite``. Then each file is written atomically (a temporary file renamed over it).

        The dataset itself is not changed: a :class:`KittiDataset` built anew reads the labels.

        Returns:
            The written label files, in absolute-index order.

        Raises:
            ValueError: naming the frame and the problem (for a bad label line, the frame, the line and the
                field); ``FileNotFoundError`` for a frame whose calib file is gone.
        """
        if not isinstance(labels, Mapping):
            raise ValueError(f"KittiDataset.write_pool_labels: 'labels' must map frame ids to label file texts, got "
                             f"{type(labels).__name__}")
        pool = {self.frame_name(index): index for index in self.split_indices("pool").tolist()}
        for frame, text in labels.items():
            if not isinstance(frame, str) or frame not in pool:
                raise ValueError(f"KittiDataset.write_pool_labels: frame {frame!r} is not a pool frame of "
                                 f"{self.root}")
            if not isinstance(text, str):
                raise ValueError(f"KittiDataset.write_pool_labels: frame {frame}: the labels must be the text of a "
                                 f"label file, got {type(text).__name__}")
            _, label, calib = self._frame_files(frame)
            source = f"labels of frame {frame} (for {label})"
            self._objects(source, _label_rows(source, text.splitlines()), self._read_calibration(calib))
        targets = {frame: self._frame_files(frame)[1] for frame in sorted(labels, key=pool.__getitem__)}
        existing = [frame for frame, label in targets.items() if label.exists()]
        if existing and not overwrite:
            raise ValueError(f"KittiDataset.write_pool_labels: {len(existing)} frame(s) already have a label file "
                             f"in {self.root / 'label_2'} ({listed(existing)}); pass overwrite=True to replace "
                             f"them")
        for frame, label in targets.items():
            write_text_atomically(label, labels[frame])
        return list(targets.values())

    def velodyne_path(self, index: int) -> Path:
        """The point file of absolute index ``index``."""
        return self.root / "velodyne" / f"{self.frame_id(index)}.bin"

    def _points(self, index: int) -> np.ndarray:
        """``(N, 4)`` float32 points of frame ``index`` inside ``point_range``, read from its file."""
        path = self.velodyne_path(index)
        values = np.fromfile(path, dtype="<f4")
        if values.size % 4:
            raise ValueError(f"{path}: {values.size * 4} bytes is not a multiple of {_POINT_BYTES} (changed since "
                             f"the dataset was built?)")
        points = values.reshape(-1, 4).astype(np.float32, copy=False)
        if self.point_range is not None:
            points = points[inside_range(points[:, :3], self.point_range)]
        return points


def kitti_calibration_text(calib: KittiCalibration) -> str:
    """The calib file of ``calib``, which :func:`read_kitti_calibration` reads back exactly: one ``key: values``
    line, row-major, ``%.12e``, for each of ``P0`` .. ``P3`` that it has, ``R0_rect``, ``Tr_velo_to_cam`` and
    ``Tr_imu_to_velo`` if set, in that order (KITTI's)."""
    matrices = {**calib.projections, "R0_rect": calib.r0_rect, "Tr_velo_to_cam": calib.velo_to_cam}
    if calib.imu_to_velo is not None:
        matrices["Tr_imu_to_velo"] = calib.imu_to_velo
    return "".join(f"{key}: {' '.join(f'{value:.12e}' for value in np.ravel(matrices[key]))}\n"
                   for key in _CALIB_SIZES if key in matrices)


def _image_box(boxes: np.ndarray, calib: KittiCalibration) -> np.ndarray:
    """``(M, 4)`` ``[left, top, right, bottom]`` camera-2 pixel boxes of ``(M, 7)`` LiDAR boxes: the projected
    corners' extent clipped to :data:`KITTI_IMAGE_SIZE`, or ``-1`` x 4 for a box with a corner behind the camera,
    outside the image, or without ``P2``."""
    image_boxes = np.full((len(boxes), 4), -1.0)
    projection = calib.projections.get("P2")
    if projection is None or not len(boxes):
        return image_boxes
    velo_to_rect = calib.velo_to_rect()
    corners = box_corners(boxes) @ velo_to_rect[:3, :3].T + velo_to_rect[:3, 3]  # (M, 8, 3) rectified
    pixels = corners @ projection[:, :3].T + projection[:, 3]
    in_front = (pixels[..., 2] > 0).all(axis=1)
    depth = np.where(pixels[..., 2] > 0, pixels[..., 2], 1.0)
    u, v = pixels[..., 0] / depth, pixels[..., 1] / depth
    width, height = KITTI_IMAGE_SIZE
    clipped = np.column_stack([np.clip(u.min(axis=1), 0, width), np.clip(v.min(axis=1), 0, height),
                               np.clip(u.max(axis=1), 0, width), np.clip(v.max(axis=1), 0, height)])
    visible = in_front & (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    image_boxes[visible] = clipped[visible]
    return image_boxes


def kitti_label_text(boxes: np.ndarray, labels: np.ndarray, calib: KittiCalibration, type_names: Sequence[str]
                     ) -> str:
    """The label file of one frame, which :class:`KittiDataset` reads back to ``boxes`` within 1e-5.

    Args:
        boxes: ``(M, 7)`` ``[x, y, z, dx, dy, dz, yaw]``, LiDAR frame, metres / radians.
        labels: ``(M,)`` int class ids into ``type_names``.
        calib: the frame's calibration.
        type_names: the KITTI type name of each class id.

    Returns:
        One line a box: ``type_names[label]``, truncation 0.00, occlusion 0, ``alpha = rotation_y - atan2(x, z)``
        (the observation angle), the 2D box (the extent of the corners projected with ``P2``, clipped to
        :data:`KITTI_IMAGE_SIZE`; ``-1 -1 -1 -1`` for a box with a corner behind the camera or outside the image,
        or without ``P2``), then ``h w l x y z rotation_y`` from :func:`lidar_to_kitti_boxes` with 6 decimals.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    label_boxes = lidar_to_kitti_boxes(boxes, calib)
    alphas = _wrap_angle(label_boxes[:, 6] - np.arctan2(label_boxes[:, 3], label_boxes[:, 5]))
    lines = []
    for label, alpha, image_box, label_box in zip(labels.tolist(), alphas, _image_box(boxes, calib), label_boxes,
                                                  strict=True):
        lines.append(f"{type_names[label]} 0.00 0 {alpha:.6f} {' '.join(f'{v:.2f}' for v in image_box)} "
                     f"{' '.join(f'{v:.6f}' for v in label_box)}\n")
    return "".join(lines)
