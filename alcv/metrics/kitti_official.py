"""KITTI's official 3D object detection evaluation: AP at the easy / moderate / hard difficulty levels, in the image
(2D boxes), in bird's-eye view and in 3D, R40 and R11, as the KITTI devkit (``evaluate_object_3d_offline.cpp``)
and its Python ports (OpenPCDet's and mmdetection3d's ``kitti_object_eval_python/eval.py``) compute it.

Unlike :mod:`alcv.metrics.kitti_ap` (alcv's KITTI-*style* AP, for any data), this needs the label fields of the
KITTI format: every line of a frame's label file, with its type, truncation, occlusion and 2D box, and the
detections' 2D boxes (for a LiDAR detector, its 3D boxes projected into camera 2). The rules, as the official code
applies them, per evaluated class (a KITTI type, e.g. ``Car``) and difficulty ``d`` (easy 0, moderate 1, hard 2):

* **Ground truth**: a box of the class's type (compared case-insensitively) counts (``ignored_gt = 0``) unless its
  occlusion ``> MAX_OCCLUSION[d]`` (0 / 1 / 2), its truncation ``> MAX_TRUNCATION[d]`` (0.15 / 0.3 / 0.5) or its 2D
  height (``bottom - top``, pixels) ``<= MIN_HEIGHT[d]`` (40 / 25 / 25); then, like a box of the neighbouring type
  (:data:`NEIGHBOUR_TYPES`: Van for Car, Person_sitting for Pedestrian), it is *ignored* (``ignored_gt = 1``): it
  may take a detection, which then is neither a true nor a false positive. Boxes of other types take no part
  (``-1``). The levels are cumulative: moderate holds every easy box, hard every moderate one.
* **Detections**: one whose 2D height is ``< MIN_HEIGHT[d]`` is ignored (``1``) whatever its class; else one of
  the evaluated class counts (``0``) and the others take no part (``-1``).
* **DontCare regions** (lines of type ``DontCare``): in the image metric only (as in the official code, where the
  BEV and 3D overlaps of DontCare's placeholder boxes are never positive), a counted detection that no ground
  truth took and whose 2D box lies in a DontCare box by more than the IoU threshold (intersection over the
  detection's own area) is not a false positive.
* **Matching**, for each score threshold and frame: the ground-truth boxes are taken in input order; each takes,
  among the detections not yet taken, above the threshold and overlapping it by strictly more than the class's IoU
  threshold, the counted one of highest overlap (the first in input order among equal overlaps), else the first
  ignored one. A counted box that takes a counted detection is a true positive; one that takes none a false
  negative; a counted detection taken by no box a false positive.
* **Score thresholds**: a first pass (every box takes the detection of highest score among those overlapping it
  enough) collects the scores of its true positives; :func:`score_thresholds` samples up to 41 of them at recall
  steps of 1/40. Precision ``TP / (TP + FP)`` at each threshold (0 beyond the last one) is made non-increasing
  (the maximum over the lower thresholds) and AP is its mean over samples 1..40 (R40) or 0, 4, ..., 40 (R11).

Deliberate differences: a class without a counted ground-truth box at a difficulty gets AP = NaN there (the
official code reports 0), and AP is a fraction in [0, 1], not a percentage. Overlaps are alcv's exact float64
rotated-box IoU (:mod:`alcv.metrics.rotated_iou`; the ports compute it in float32), so an overlap within about
1e-7 of a threshold may be decided differently.

Boxes of this module are in KITTI's label format, **not** alcv's LiDAR boxes: ``(M, 7)`` ``[h, w, l, x, y, z,
rotation_y]``, metres, ``(x, y, z)`` the centre of the bottom face in the rectified camera frame (x right, y down, z
forward), ``rotation_y`` radians around the camera's y axis. 2D boxes are ``(M, 4)`` ``[left, top, right,
bottom]`` pixels of camera 2. :meth:`alcv.data.kitti.KittiEvalFrame.project` turns LiDAR detections into both.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import torch
from torch import Tensor

from alcv.metrics.average_precision import FrameBoxMetric, check_class_names, rank_in_group
from alcv.metrics.kitti_ap import box_tensor, check_iou_thresholds
from alcv.metrics.rotated_iou import index_pair_iou

__all__ = ["DIFFICULTIES", "KITTI_BENCHMARK_TYPES", "NEIGHBOUR_TYPES", "OFFICIAL_IOU_THRESHOLDS", "KittiOfficialAP",
           "KittiOfficialMAP", "OfficialDetections", "OfficialGroundTruth", "kitti_official_ap", "score_thresholds"]

OfficialMode = Literal["image", "bev", "3d"]
_MODES: tuple[OfficialMode, ...] = ("image", "bev", "3d")
#: the difficulty levels, in order
DIFFICULTIES: tuple[str, ...] = ("easy", "moderate", "hard")
_MIN_HEIGHT = np.array([40.0, 25.0, 25.0])
_MAX_OCCLUSION = np.array([0, 1, 2])
_MAX_TRUNCATION = np.array([0.15, 0.3, 0.5])
#: the classes of KITTI's benchmark
KITTI_BENCHMARK_TYPES: tuple[str, ...] = ("Car", "Pedestrian", "Cyclist")
#: the type whose boxes are ignored (neither missed nor false positives) when a class is evaluated
NEIGHBOUR_TYPES: Mapping[str, str] = {"car": "van", "pedestrian": "person_sitting"}
#: the type of the label lines that mark regions without labels
DONT_CARE = "DontCare"
#: KITTI's IoU thresholds per mode and type: (strict, loose), as the official evaluation prints them
OFFICIAL_IOU_THRESHOLDS: Mapping[str, Mapping[str, tuple[float, float]]] = {
    "image": {"Car": (0.7, 0.7), "Pedestrian": (0.5, 0.5), "Cyclist": (0.5, 0.5)},
    "bev": {"Car": (0.7, 0.5), "Pedestrian": (0.5, 0.25), "Cyclist": (0.5, 0.25)},
    "3d": {"Car": (0.7, 0.5), "Pedestrian": (0.5, 0.25), "Cyclist": (0.5, 0.25)},
}
_SAMPLES = 41


@dataclass(frozen=True, eq=False)
class OfficialGroundTruth:
    """Every line of the evaluated frames' label files, flat (DontCare and all other types included).

    Attributes:
        frame: ``(G,)`` int64 frame id of each line.
        types: ``(G,)`` str, the KITTI type (``Car``, ``Van``, ``DontCare``, ...).
        truncation: ``(G,)`` float64 in [0, 1] (any value for DontCare).
        occlusion: ``(G,)`` int64 in {0, 1, 2, 3} (any value for DontCare).
        image_boxes: ``(G, 4)`` float64 ``[left, top, right, bottom]``, camera-2 pixels.
        boxes: ``(G, 7)`` float64 label boxes ``[h, w, l, x, y, z, rotation_y]`` (module docstring); only the rows
            of evaluated types are read, and those need positive sizes.
    """

    frame: np.ndarray
    types: np.ndarray
    truncation: np.ndarray
    occlusion: np.ndarray
    image_boxes: np.ndarray
    boxes: np.ndarray

    def __post_init__(self) -> None:
        _as_arrays(self, {"frame": np.int64, "types": str, "truncation": np.float64, "occlusion": np.int64,
                          "image_boxes": np.float64, "boxes": np.float64})
        size = _check_rows("gt", self.frame, self.image_boxes, self.boxes)
        for name, length in (("types", len(self.types)), ("truncation", len(self.truncation)),
                             ("occlusion", len(self.occlusion))):
            if length != size:
                raise ValueError(f"gt.{name}: expected {size} values (one per line), got {length}")


@dataclass(frozen=True, eq=False)
class OfficialDetections:
    """The detections of the evaluated frames, flat.

    Attributes:
        frame: ``(P,)`` int64 frame id.
        label: ``(P,)`` int64 class id into the evaluated classes.
        score: ``(P,)`` float64 finite confidence.
        image_boxes: ``(P, 4)`` float64 ``[left, top, right, bottom]``, camera-2 pixels.
        boxes: ``(P, 7)`` float64 label boxes ``[h, w, l, x, y, z, rotation_y]`` of positive size.
    """

    frame: np.ndarray
    label: np.ndarray
    score: np.ndarray
    image_boxes: np.ndarray
    boxes: np.ndarray

    def __post_init__(self) -> None:
        _as_arrays(self, {"frame": np.int64, "label": np.int64, "score": np.float64, "image_boxes": np.float64,
                          "boxes": np.float64})
        size = _check_rows("pred", self.frame, self.image_boxes, self.boxes)
        if len(self.label) != size or len(self.score) != size:
            raise ValueError(f"pred.label / pred.score: expected {size} values, got {len(self.label)} / "
                             f"{len(self.score)}")
        if not np.all(np.isfinite(self.score)):
            raise ValueError("pred.score: expected finite values")


def _as_arrays(instance: Any, dtypes: Mapping[str, Any]) -> None:
    """Replace the fields of a frozen dataclass ``instance`` by numpy arrays of the given dtypes."""
    for name, dtype in dtypes.items():
        object.__setattr__(instance, name, np.asarray(getattr(instance, name), dtype=dtype))


def _check_rows(name: str, frame: np.ndarray, image_boxes: np.ndarray, boxes: np.ndarray) -> int:
    """The number of rows, after checking the shapes of ``frame`` ``(N,)``, ``image_boxes`` ``(N, 4)`` and ``boxes``
    ``(N, 7)`` (all finite)."""
    size = len(frame)
    for field, value, width in (("image_boxes", image_boxes, 4), ("boxes", boxes, 7)):
        if np.shape(value) != (size, width) or not np.all(np.isfinite(value)):
            raise ValueError(f"{name}.{field}: expected finite values of shape ({size}, {width}), got shape "
                             f"{np.shape(value)}")
    return size


# Not frozen, for the reason DetectionAP is not (alcv.metrics.average_precision).
@dataclass(eq=False)
class KittiOfficialAP:
    """KITTI's official AP of a detector.

    Attributes:
        ap_r40: ``(C, 3, L)`` float64 in [0, 1], AP (R40) of class ``c`` at difficulty ``d`` (:data:`DIFFICULTIES`)
            and IoU threshold ``iou_thresholds[c, l]``; NaN where the class has no counted ground truth.
        ap_r11: ``(C, 3, L)`` the same with R11.
        iou_thresholds: ``(C, L)`` float64.
        class_names: ``C`` alcv class names.
        class_types: ``C`` KITTI types the classes are evaluated as.
        mode: ``"image"``, ``"bev"`` or ``"3d"``.
    """

    ap_r40: np.ndarray
    ap_r11: np.ndarray
    iou_thresholds: np.ndarray
    class_names: tuple[str, ...]
    class_types: tuple[str, ...]
    mode: OfficialMode

    @property
    def map(self) -> float:
        """KITTI's headline number: AP (R40, moderate, first IoU level) averaged over the classes that have it."""
        moderate = self.ap_r40[:, 1, 0]
        valid = moderate[~np.isnan(moderate)]
        return float(valid.mean()) if valid.size else float("nan")

    def as_dict(self) -> dict[str, float]:
        """``{"map": ..., "ap/<class>": R40 moderate AP at the first level, "ap/<class>/<difficulty>/R40@<iou>":
        ..., "ap/<class>/<difficulty>/R11@<iou>": ...}`` as plain floats."""
        out = {"map": self.map}
        for c, name in enumerate(self.class_names):
            out[f"ap/{name}"] = float(self.ap_r40[c, 1, 0])
            for d, difficulty in enumerate(DIFFICULTIES):
                for level, threshold in enumerate(self.iou_thresholds[c]):
                    for recall, ap in (("R40", self.ap_r40), ("R11", self.ap_r11)):
                        out[f"ap/{name}/{difficulty}/{recall}@{threshold:g}"] = float(ap[c, d, level])
        return out


def kitti_official_ap(gt: OfficialGroundTruth, pred: OfficialDetections, class_names: Sequence[str],
                      class_types: Sequence[str], iou_thresholds: Any, mode: OfficialMode = "3d") -> KittiOfficialAP:
    """KITTI's official AP (module docstring) per class, difficulty and IoU level, R40 and R11.

    Args:
        gt: every label line of the evaluated frames.
        pred: the detections of those frames; ``pred.label`` indexes ``class_names``.
        class_names: the alcv class names, one per class id.
        class_types: the KITTI type each class is evaluated as (e.g. ``"Car"``), one per class id.
        iou_thresholds: ``(C, L)`` (or ``(C,)``) IoU thresholds in (0, 1], e.g. :data:`OFFICIAL_IOU_THRESHOLDS`.
        mode: ``"image"`` (2D box IoU), ``"bev"`` (rotated-rectangle IoU in the camera's x-z plane) or ``"3d"``
            (that intersection times the vertical overlap, over the union of the volumes).

    Returns:
        A :class:`KittiOfficialAP`; a warning names each class and difficulty without counted ground truth.

    Raises:
        ValueError: on mismatched lengths, class ids out of range, or invalid names, thresholds or mode.
    """
    names = check_class_names(class_names)
    types = tuple(str(t) for t in class_types)
    if len(types) != len(names):
        raise ValueError(f"class_types: expected {len(names)} KITTI types (one per class), got {types!r}")
    thresholds = check_iou_thresholds(iou_thresholds, len(names))
    if mode not in _MODES:
        raise ValueError(f"mode: expected one of {_MODES}, got {mode!r}")
    if len(pred.label) and (pred.label.min() < 0 or pred.label.max() >= len(names)):
        raise ValueError(f"pred.label: expected class ids in [0, {len(names)})")
    det_height = np.abs(pred.image_boxes[:, 3] - pred.image_boxes[:, 1])
    gt_height = gt.image_boxes[:, 3] - gt.image_boxes[:, 1]
    gt_types = np.char.lower(gt.types.astype(str))
    # the official code ignores detections in DontCare regions in the image metric only (module docstring)
    dont_care_share = (_dont_care_overlap(pred, gt, gt.types == DONT_CARE) if mode == "image"
                       else np.zeros(len(pred.frame)))
    ap = np.full((2, len(names), len(DIFFICULTIES), thresholds.shape[1]), np.nan)
    for c, kitti_type in enumerate(types):
        own = gt_types == kitti_type.lower()
        neighbour = NEIGHBOUR_TYPES.get(kitti_type.lower())
        taking_part = own | (gt_types == neighbour) if neighbour else own
        pair_det, pair_gt = _frame_pairs(pred.frame, gt.frame, taking_part)
        overlap = _overlap(mode, pred, gt, pair_det, pair_gt)
        for d, difficulty in enumerate(DIFFICULTIES):
            counted_gt = own & (gt.occlusion <= _MAX_OCCLUSION[d]) & (gt.truncation <= _MAX_TRUNCATION[d]) & (
                gt_height > _MIN_HEIGHT[d])
            det_ignored = det_height < _MIN_HEIGHT[d]
            counted_det = ~det_ignored & (pred.label == c)
            if not counted_gt.any():
                warnings.warn(f"kitti_official_ap: class '{names[c]}' ({kitti_type}) has no counted ground-truth "
                              f"box at difficulty {difficulty}; its AP there is NaN", UserWarning, stacklevel=2)
                continue
            kept = counted_det[pair_det] | det_ignored[pair_det]
            for level, threshold in enumerate(thresholds[c]):
                in_dont_care = dont_care_share > threshold
                close = kept & (overlap > threshold)
                ap[:, c, d, level] = _class_ap(_Problem(
                    gt.frame, counted_gt, pred.score, counted_det, counted_det & ~in_dont_care,
                    pair_gt[close], pair_det[close], overlap[close]))
    return KittiOfficialAP(ap_r40=ap[0], ap_r11=ap[1], iou_thresholds=thresholds, class_names=names,
                           class_types=types, mode=mode)


@dataclass(frozen=True)
class _Problem:
    """One (class, difficulty, IoU level) evaluation: ``counted_gt`` ``(G,)`` (ground truth not counted but in a
    pair is ignored), ``counted_det`` ``(P,)`` (detections not counted but in a pair are ignored),
    ``may_be_fp`` ``(P,)`` (counted and outside DontCare regions) and the pairs ``(pair_gt, pair_det)`` that
    overlap by more than the threshold, sorted by ground truth then detection, with their ``overlap``."""

    gt_frame: np.ndarray
    counted_gt: np.ndarray
    score: np.ndarray
    counted_det: np.ndarray
    may_be_fp: np.ndarray
    pair_gt: np.ndarray
    pair_det: np.ndarray
    overlap: np.ndarray


def _class_ap(problem: _Problem) -> tuple[float, float]:
    """``(R40 AP, R11 AP)`` of one :class:`_Problem` (module docstring)."""
    rounds = _Rounds(problem.gt_frame, problem.pair_gt, problem.pair_det)
    first = rounds.assign(problem.score[problem.pair_det], np.ones((1, len(problem.score)), dtype=bool))[0]
    true_positive = (first >= 0) & problem.counted_gt & problem.counted_det[np.maximum(first, 0)]
    thresholds = np.array(score_thresholds(problem.score[first[true_positive]], int(problem.counted_gt.sum())))
    if not len(thresholds):
        return 0.0, 0.0
    above = problem.score[None, :] >= thresholds[:, None]  # (T, P)
    # counted detections by overlap, before any ignored one (all overlaps are > the threshold > 0)
    chosen = rounds.assign(np.where(problem.counted_det[problem.pair_det], problem.overlap, -1.0), above.copy())
    has = chosen >= 0
    tp = (has & problem.counted_gt & problem.counted_det[np.maximum(chosen, 0)]).sum(axis=1)
    taken = np.zeros_like(above)
    rows, cols = np.nonzero(has)
    taken[rows, chosen[rows, cols]] = True
    fp = (above & ~taken & problem.may_be_fp).sum(axis=1)
    precision = np.zeros(_SAMPLES)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision[:len(thresholds)] = tp / (tp + fp)
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    return float(precision[1:].sum() / 40), float(precision[::4].sum() / 11)


class _Rounds:
    """The official per-ground-truth assignment, vectorised over frames and score thresholds: round ``r`` takes
    the ``r``-th ground-truth box (in input order, among those with pairs) of every frame at once, which never
    conflict (frames share no detections).

    Args:
        gt_frame: ``(G,)`` frame id of each ground-truth box.
        pair_gt, pair_det: ``(K,)`` the candidate pairs, sorted by ground truth then detection.
    """

    def __init__(self, gt_frame: np.ndarray, pair_gt: np.ndarray, pair_det: np.ndarray) -> None:
        self.num_gt = len(gt_frame)
        self.pair_det = pair_det
        gts, self.first_pair, self.pair_count = np.unique(pair_gt, return_index=True, return_counts=True)
        _, frame_group = np.unique(gt_frame[gts], return_inverse=True)
        rank = rank_in_group(frame_group.reshape(-1), int(frame_group.max(initial=-1)) + 1)
        self.order = np.argsort(rank, kind="stable")  # boxes with pairs, round by round
        self.gts = gts
        self.round_end = np.cumsum(np.bincount(rank))

    def assign(self, key: np.ndarray, available: np.ndarray) -> np.ndarray:
        """``(T, G)`` the detection each box takes (-1: none) at each of ``T`` thresholds: the available one of
        highest ``key`` ``(K,)`` among its pairs, the first among equal keys; ``available`` ``(T, P)`` bool is
        updated in place (taken detections become unavailable)."""
        chosen = np.full((len(available), self.num_gt), -1, dtype=np.int64)
        for start, stop in zip(self.round_end - np.diff(self.round_end, prepend=0), self.round_end, strict=True):
            boxes = self.order[start:stop]
            counts = self.pair_count[boxes]
            pairs = np.repeat(self.first_pair[boxes], counts) + np.arange(counts.sum()) - np.repeat(
                np.cumsum(counts) - counts, counts)
            dets = self.pair_det[pairs]
            segment = np.cumsum(counts) - counts
            scored = np.where(available[:, dets], key[pairs], -np.inf)  # (T, pairs)
            best = np.maximum.reduceat(scored, segment, axis=1)
            is_best = scored == np.repeat(best, counts, axis=1)
            first = np.minimum.reduceat(np.where(is_best, np.arange(len(pairs)), len(pairs)), segment, axis=1)
            row, column = np.nonzero(best > -np.inf)
            taken = dets[first[row, column]]
            available[row, taken] = False
            chosen[row, self.gts[boxes[column]]] = taken
        return chosen


def score_thresholds(scores: np.ndarray, num_gt: int) -> list[float]:
    """The official code's ``get_thresholds``: of the true positives' ``scores``, in descending order, the score
    ``i`` is kept when the recall ``(i + 1) / num_gt`` it reaches is at least as close to the next sample point
    (steps of 1/40 from 0) as the recall of score ``i + 1`` (always for the last one); at most 41 are kept."""
    ordered = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    current, kept = 0.0, []
    for i, score in enumerate(ordered.tolist()):
        left = (i + 1) / num_gt
        right = (i + 2) / num_gt if i < len(ordered) - 1 else left
        if right - current < current - left and i < len(ordered) - 1:
            continue
        kept.append(score)
        current += 1 / (_SAMPLES - 1.0)
    return kept


def _frame_pairs(pred_frame: np.ndarray, gt_frame: np.ndarray, gt_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(pair_det, pair_gt)``: every (detection, ground truth) pair of one frame with ``gt_mask`` ``(G,)`` set,
    sorted by ground truth then detection."""
    gts = np.flatnonzero(gt_mask)
    by_frame = np.argsort(pred_frame, kind="stable")
    frames = pred_frame[by_frame]
    low = np.searchsorted(frames, gt_frame[gts], side="left")
    counts = np.searchsorted(frames, gt_frame[gts], side="right") - low
    within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return by_frame[np.repeat(low, counts) + within], np.repeat(gts, counts)


def _overlap(mode: OfficialMode, pred: OfficialDetections, gt: OfficialGroundTruth, pair_det: np.ndarray,
             pair_gt: np.ndarray) -> np.ndarray:
    """``(K,)`` float64 IoU of the pairs in ``mode``."""
    if mode == "image":
        return _image_overlap(pred.image_boxes[pair_det], gt.image_boxes[pair_gt], over_first_area=False)
    return index_pair_iou(mode, _rotated_iou_boxes(pred.boxes), _rotated_iou_boxes(gt.boxes), pair_det, pair_gt)


def _rotated_iou_boxes(label_boxes: np.ndarray) -> np.ndarray:
    """Label boxes ``[h, w, l, x, y, z, ry]`` as :mod:`~alcv.metrics.rotated_iou` boxes in the right-handed frame
    (camera x, camera z, up = -camera y): ``[x, z, h/2 - y, l, w, h, -ry]``; the IoU does not depend on the
    frame."""
    h, w, length, x, y, z, ry = label_boxes.T
    return np.column_stack([x, z, h / 2 - y, length, w, h, -ry])


def _image_overlap(a: np.ndarray, b: np.ndarray, over_first_area: bool) -> np.ndarray:
    """``(K,)`` row-wise overlap of ``[left, top, right, bottom]`` boxes: intersection over union, or over the
    area of ``a`` (``over_first_area``); 0 without a positive intersection in both directions."""
    width = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0])
    height = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1])
    intersection = np.where((width > 0) & (height > 0), width * height, 0.0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a if over_first_area else area_a + area_b - intersection
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(intersection > 0, intersection / union, 0.0)


def _dont_care_overlap(pred: OfficialDetections, gt: OfficialGroundTruth, dont_care: np.ndarray) -> np.ndarray:
    """``(P,)`` the largest share of each detection's 2D box inside one of its frame's DontCare boxes."""
    pair_det, pair_gt = _frame_pairs(pred.frame, gt.frame, dont_care)
    share = np.zeros(len(pred.frame))
    np.maximum.at(share, pair_det, _image_overlap(pred.image_boxes[pair_det], gt.image_boxes[pair_gt],
                                                  over_first_area=True))
    return share


class EvalFrame(Protocol):
    """One frame's label file as the official evaluation reads it (:class:`alcv.data.kitti.KittiEvalFrame`):
    ``types`` ``(M,)`` str, ``truncation`` ``(M,)``, ``occlusion`` ``(M,)`` int, ``image_boxes`` ``(M, 4)``,
    ``boxes`` ``(M, 7)`` label boxes, and ``project(lidar_boxes (N, 7)) -> (label boxes (N, 7), image boxes (N, 4))``
    for the frame's detections."""

    types: tuple[str, ...]
    truncation: np.ndarray
    occlusion: np.ndarray
    image_boxes: np.ndarray
    boxes: np.ndarray

    def project(self, lidar_boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


class EvalSource(Protocol):
    """Where :class:`KittiOfficialMAP` finds the ground truth (:class:`alcv.data.kitti.KittiDataset` with
    ``official_eval=True``): ``official_types``, the KITTI type of each class id, and ``eval_frame(index)``."""

    official_types: tuple[str, ...]

    def eval_frame(self, index: int) -> EvalFrame: ...


class KittiOfficialMAP(FrameBoxMetric):
    """Accumulates LiDAR detections over batches (and DDP ranks, see
    :class:`~alcv.metrics.average_precision.FrameBoxMetric`) and computes :func:`kitti_official_ap` against the
    label files of the evaluated frames, which an :class:`EvalSource` (the dataset, :meth:`bind`) provides by
    absolute index; the targets given to ``update`` are not used for it (they lack DontCare regions, ignored types
    and boxes outside the model's range).

    Args:
        class_names: one name per class id.
        mode: ``"image"``, ``"bev"`` or ``"3d"``.
        iou_thresholds: IoU thresholds per level by the KITTI type a class is evaluated as, with an optional
            ``"default"`` entry for the other types, e.g. ``{"Car": [0.7, 0.5], "default": [0.5, 0.25]}``; None:
            KITTI's (:data:`OFFICIAL_IOU_THRESHOLDS`), and ``(0.7, 0.5)`` for types outside the benchmark.
        **kwargs: forwarded to :class:`torchmetrics.Metric`.
    """

    box_width = 7
    frames: list[Tensor]

    def __init__(self, class_names: Sequence[str], mode: OfficialMode = "3d",
                 iou_thresholds: Mapping[str, Sequence[float]] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.class_names = check_class_names(class_names)
        if mode not in _MODES:
            raise ValueError(f"mode: expected one of {_MODES}, got {mode!r}")
        self.mode = mode
        if iou_thresholds is None:
            iou_thresholds = {**OFFICIAL_IOU_THRESHOLDS[mode], "default": (0.7, 0.5)}
        if not isinstance(iou_thresholds, Mapping):
            raise ValueError(f"iou_thresholds: expected a mapping of KITTI type (or 'default') -> IoU thresholds "
                             f"per level, got {iou_thresholds!r}")
        self.type_thresholds = dict(iou_thresholds)
        self.source: EvalSource | None = None
        self.iou_thresholds = np.zeros((0, 0))
        self.add_state("frames", default=[], dist_reduce_fx="cat")

    def bind(self, source: EvalSource) -> None:
        """Read the ground truth from ``source`` (needed before :meth:`compute`) and take each class's IoU
        thresholds by the KITTI type it is evaluated as (``source.official_types``)."""
        types = tuple(source.official_types)
        if len(types) != len(self.class_names):
            raise ValueError(f"KittiOfficialMAP: the data has {len(types)} classes, the metric "
                             f"{len(self.class_names)} ({list(self.class_names)})")
        missing = [t for t in types if t not in self.type_thresholds and "default" not in self.type_thresholds]
        if missing:
            raise ValueError(f"KittiOfficialMAP: no IoU thresholds for the KITTI type(s) {missing} (given: "
                             f"{self.type_thresholds}); add them or a 'default' entry")
        rows = [self.type_thresholds.get(t, self.type_thresholds.get("default")) for t in types]
        if len({len(row) for row in rows}) != 1:
            raise ValueError(f"KittiOfficialMAP: every class needs the same number of IoU levels, got "
                             f"{dict(zip(types, rows, strict=True))}")
        self.iou_thresholds = check_iou_thresholds(rows, len(types))
        self.source = source

    def _box_columns(self, name: str, boxes: Tensor) -> Tensor:
        return box_tensor(name, boxes)

    def update(self, preds: Sequence[Mapping[str, Tensor]], targets: Sequence[Mapping[str, Tensor]],
               frame_ids: Tensor) -> None:
        """Add one batch (the arguments of :meth:`FrameBoxMetric.update`); every frame of ``frame_ids`` is
        evaluated, with or without detections."""
        super().update(preds, targets, frame_ids)
        self.frames.append(torch.as_tensor(frame_ids).to(device=self.device, dtype=torch.int64))

    def compute(self) -> KittiOfficialAP:
        """The official AP of everything accumulated so far."""
        if self.source is None:
            raise RuntimeError("KittiOfficialMAP: no ground truth; call bind(dataset) with a KittiDataset built "
                               "with official_eval=True before compute()")
        detections = self._accumulated()
        frames = self.frames if isinstance(self.frames, Tensor) else torch.cat(
            [*self.frames, torch.zeros(0, dtype=torch.int64, device=self.device)])
        gt, pred = _official_arrays(self.source, np.unique(frames.cpu().numpy().astype(np.int64)), detections)
        return kitti_official_ap(gt, pred, self.class_names, tuple(self.source.official_types), self.iou_thresholds,
                                 self.mode)


def _official_arrays(source: EvalSource, frames: np.ndarray, detections: Mapping[str, np.ndarray]
                     ) -> tuple[OfficialGroundTruth, OfficialDetections]:
    """The label lines of ``frames`` and the accumulated LiDAR ``detections`` (``pred_frame``, ``pred_boxes``,
    ``pred_label``, ``pred_score``) projected with each frame's calibration."""
    gt: dict[str, list[Any]] = {key: [] for key in ("frame", "types", "truncation", "occlusion", "image_boxes",
                                                     "boxes")}
    pred: dict[str, list[Any]] = {key: [] for key in ("frame", "label", "score", "image_boxes", "boxes")}
    by_frame = np.argsort(detections["pred_frame"], kind="stable")
    sorted_frames = detections["pred_frame"][by_frame]
    for frame in frames.tolist():
        labels = source.eval_frame(frame)
        gt["frame"].append(np.full(len(labels.types), frame, dtype=np.int64))
        gt["types"].append(np.array(labels.types, dtype=str))
        for key in ("truncation", "occlusion", "image_boxes", "boxes"):
            gt[key].append(getattr(labels, key))
        rows = by_frame[np.searchsorted(sorted_frames, frame):np.searchsorted(sorted_frames, frame, side="right")]
        boxes, image_boxes = labels.project(detections["pred_boxes"][rows])
        pred["frame"].append(np.full(len(rows), frame, dtype=np.int64))
        pred["label"].append(detections["pred_label"][rows])
        pred["score"].append(detections["pred_score"][rows])
        pred["image_boxes"].append(image_boxes)
        pred["boxes"].append(boxes)
    empty = {"frame": (0,), "types": (0,), "truncation": (0,), "occlusion": (0,), "label": (0,), "score": (0,),
             "image_boxes": (0, 4), "boxes": (0, 7)}

    def joined(parts: dict[str, list[Any]]) -> dict[str, np.ndarray]:
        return {key: np.concatenate(value) if value else np.zeros(empty[key]) for key, value in parts.items()}

    return OfficialGroundTruth(**joined(gt)), OfficialDetections(**joined(pred))
