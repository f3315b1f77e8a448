"""KITTI-style 3D detection average precision on rotated-box IoU, in bird's-eye view or in 3D.

Beside alcv's nuScenes-style centre-distance AP (:mod:`alcv.metrics.center_distance`), this scores
detections by the exact IoU of rotated boxes (:mod:`alcv.metrics.rotated_iou`) with per-class IoU thresholds
at one or more levels (e.g. KITTI's strict 0.7 for cars / 0.5 for pedestrians and cyclists, and its loose
0.5 / 0.25), and summarises precision at 40 recall positions (R40) or KITTI's original 11 (R11).

Differences from the KITTI devkit, all deliberate:

* Matching is the COCO-style greedy assignment by descending score (see :func:`kitti_ap`), not KITTI's
  per-ground-truth assignment over score thresholds.
* KITTI's difficulty levels (easy / moderate / hard by 2D box height, occlusion and truncation), its
  DontCare regions and its neighbouring-class ignores are not applied: alcv filters classes at load time and
  every ground-truth box counts. KITTI's official protocol, for data with KITTI's label fields, is
  :mod:`alcv.metrics.kitti_official`.
* A class without any ground-truth box in the evaluated frames gets AP = NaN (and a warning) and is left out
  of the mAP.

Boxes are ``[x, y, z, dx, dy, dz, yaw]`` in the LiDAR frame, metres / radians, ``(x, y, z)`` the centre.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from alcv.metrics.average_precision import (
    APSummary,
    FrameBoxMetric,
    check_class_names,
    checked_detections,
    greedy_match,
)
from alcv.metrics.rotated_iou import IouMode, as_boxes, index_pair_iou

__all__ = ["KittiAP", "KittiMAP", "kitti_ap"]

_MODES: tuple[IouMode, ...] = ("bev", "3d")
_RECALL_POSITIONS = (11, 40)


# Not frozen, for the reason DetectionAP is not (alcv.metrics.average_precision).
@dataclass(eq=False)
class KittiAP(APSummary):
    """KITTI-style average precision of a detector.

    Attributes:
        ap: ``(num_classes, num_levels)`` float64, AP of class ``c`` at IoU threshold ``iou_thresholds[c, l]``,
            in ``[0, 1]``; the whole row is NaN for a class without ground truth. Read-only.
        iou_thresholds: ``(num_classes, num_levels)`` float64 IoU thresholds in ``(0, 1]``. Read-only.
        class_names: ``num_classes`` names, index = class id.
        mode: ``"bev"`` (IoU of the rotated rectangles in the x-y plane) or ``"3d"`` (volume IoU).
        recall_positions: 40 (R40: recall 1/40, ..., 1) or 11 (R11: recall 0, 0.1, ..., 1).
    """

    ap: np.ndarray
    iou_thresholds: np.ndarray
    class_names: tuple[str, ...]
    mode: IouMode
    recall_positions: int

    def __post_init__(self) -> None:
        self.class_names = tuple(str(n) for n in self.class_names)
        thresholds = check_iou_thresholds(self.iou_thresholds, len(self.class_names))
        ap = np.array(self.ap, dtype=np.float64)
        if ap.shape != thresholds.shape:
            raise ValueError(f"ap: expected shape (num_classes, num_levels) = {thresholds.shape}, got {ap.shape}")
        ap.setflags(write=False)
        thresholds.setflags(write=False)
        self.ap = ap
        self.iou_thresholds = thresholds
        self.mode = _check_mode(self.mode)
        self.recall_positions = _check_recall_positions(self.recall_positions)

    @property
    def ap_per_level(self) -> np.ndarray:
        """``(num_levels,)`` AP averaged over the classes that have ground truth; NaN if none has."""
        return self._ap_per_column()


def kitti_ap(
    pred_frame: np.ndarray,
    pred_boxes: np.ndarray,
    pred_label: np.ndarray,
    pred_score: np.ndarray,
    gt_frame: np.ndarray,
    gt_boxes: np.ndarray,
    gt_label: np.ndarray,
    class_names: Sequence[str],
    iou_thresholds: Any,
    mode: IouMode = "bev",
    recall_positions: int = 40,
) -> KittiAP:
    """KITTI-style AP per class and IoU-threshold level, and mAP.

    Matching (COCO-style greedy assignment), independently per level: the predictions are processed by
    descending score, equal scores in input order. Each prediction is compared with the ground-truth boxes of
    its class in its frame that no earlier prediction has matched; it is a true positive, and takes that box,
    iff the highest IoU among them (lowest ground-truth input index among equal IoUs) is ``>=`` the class's
    threshold at that level, otherwise a false positive. IoUs are only computed within (frame, class) groups
    that have both predictions and ground truth.

    AP: after the ``k``-th prediction of a class (in processing order) precision is ``TP_k / k`` and recall
    ``TP_k / num_gt``. The interpolated precision at recall ``r`` is the largest precision over all
    ``k`` with recall ``>= r``, or 0 if recall ``r`` is never reached; AP is its mean over the recall positions:
    ``r = 1/40, 2/40, ..., 1`` for R40 (``recall_positions=40``), ``r = 0, 0.1, ..., 1`` for R11
    (``recall_positions=11``). Recalls are compared exactly, in integers. A class with ground truth and no
    predictions gets AP 0; a class without ground truth gets AP = NaN and a warning. KITTI's difficulty levels
    and DontCare regions are not applied (see the module docstring).

    Args:
        pred_frame: ``(P,)`` int, frame id of each prediction (any integers, e.g. absolute dataset indices).
        pred_boxes: ``(P, 7)`` predicted boxes ``[x, y, z, dx, dy, dz, yaw]``, LiDAR frame, metres / radians.
        pred_label: ``(P,)`` int, class id in ``[0, len(class_names))``.
        pred_score: ``(P,)`` float, confidence.
        gt_frame: ``(G,)`` int, frame id of each ground-truth box.
        gt_boxes: ``(G, 7)`` ground-truth boxes, same conventions as ``pred_boxes``.
        gt_label: ``(G,)`` int, class id in ``[0, len(class_names))``.
        class_names: one name per class id.
        iou_thresholds: ``(C, L)`` IoU thresholds in ``(0, 1]``, row ``c`` the ``L`` levels of class ``c``;
            ``(C,)`` means one level.
        mode: ``"bev"`` for the IoU of the rotated rectangles in the x-y plane, ``"3d"`` for the volume IoU.
        recall_positions: 40 (R40) or 11 (R11).

    Returns:
        A :class:`KittiAP` with ``ap`` of shape ``(C, L)``.

    Raises:
        ValueError: on wrong shapes or dtypes, mismatched lengths, labels out of range, non-finite or
            negative-size boxes, non-finite scores, or invalid ``class_names``, ``iou_thresholds``, ``mode``
            or ``recall_positions``.
    """
    names = check_class_names(class_names)
    num_classes = len(names)
    thresholds = check_iou_thresholds(iou_thresholds, num_classes)
    mode = _check_mode(mode)
    recall_positions = _check_recall_positions(recall_positions)

    pred_frame, pred_boxes, pred_label, pred_score, gt_frame, gt_boxes, gt_label = checked_detections(
        (pred_frame, pred_boxes, pred_label, pred_score, gt_frame, gt_boxes, gt_label), num_classes, "boxes",
        _box_matrix)

    order = np.argsort(-pred_score, kind="stable")
    pred_frame, pred_boxes, pred_label = pred_frame[order], pred_boxes[order], pred_label[order]

    def iou(pred_index: np.ndarray, gt_index: np.ndarray) -> np.ndarray:
        return index_pair_iou(mode, pred_boxes, gt_boxes, pred_index, gt_index)

    is_tp = greedy_match(pred_frame, pred_label, gt_frame, gt_label, iou, thresholds)

    num_gt_per_class = np.bincount(gt_label, minlength=num_classes)
    ap = np.zeros(thresholds.shape, dtype=np.float64)
    for c in range(num_classes):
        if num_gt_per_class[c] == 0:
            warnings.warn(
                f"kitti_ap: class '{names[c]}' (id {c}) has no ground-truth box in the evaluated frames; its AP "
                "is NaN and it is left out of the mAP.",
                UserWarning,
                stacklevel=2,
            )
            ap[c] = np.nan
            continue
        ap[c] = _average_precision(is_tp[:, pred_label == c], int(num_gt_per_class[c]), recall_positions)
    return KittiAP(ap=ap, iou_thresholds=thresholds, class_names=names, mode=mode, recall_positions=recall_positions)


def _average_precision(is_tp: np.ndarray, num_gt: int, recall_positions: int) -> np.ndarray:
    """Interpolated AP of one class at every level.

    Args:
        is_tp: ``(L, n)`` bool, whether each prediction of the class, in processing order, is a true positive.
        num_gt: number of ground-truth boxes of the class, > 0.
        recall_positions: 40 (recall k/40, k = 1..40) or 11 (recall k/10, k = 0..10).

    Returns:
        ``(L,)`` float64 AP in ``[0, 1]``.
    """
    num_levels, num_pred = is_tp.shape
    if num_pred == 0:
        return np.zeros(num_levels)
    # Recall positions k / steps: R11 is k = 0..10 over 10, R40 is k = 1..40 over 40.
    steps = recall_positions - 1 if recall_positions == 11 else recall_positions
    k = np.arange(steps + 1 - recall_positions, steps + 1)
    tp = np.cumsum(is_tp, axis=1)
    precision = tp / np.arange(1, num_pred + 1)
    best_from_here = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    ap = np.empty(num_levels, dtype=np.float64)
    for level in range(num_levels):
        # recall >= k / steps  <=>  tp * steps >= k * num_gt, exactly in integers.
        first = np.searchsorted(tp[level] * steps, k * num_gt, side="left")
        reached = first < num_pred
        ap[level] = np.where(reached, best_from_here[level, np.minimum(first, num_pred - 1)], 0.0).mean()
    return ap


def check_iou_thresholds(iou_thresholds: Any, num_classes: int) -> np.ndarray:
    """``(C, L)`` float64 copy of ``iou_thresholds``; a ``(C,)`` input becomes ``(C, 1)``."""
    try:
        thresholds = np.array(iou_thresholds, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"iou_thresholds: expected a (C, L) array of numbers, got {iou_thresholds!r}") from err
    if thresholds.ndim == 1:
        thresholds = thresholds[:, None]
    if thresholds.ndim != 2 or thresholds.shape[0] != num_classes or thresholds.shape[1] == 0:
        raise ValueError(
            f"iou_thresholds: expected shape (C, L) or (C,) with C = {num_classes} classes and L >= 1, "
            f"got {np.shape(iou_thresholds)}"
        )
    if not np.all((thresholds > 0) & (thresholds <= 1)):
        raise ValueError(f"iou_thresholds: expected values in (0, 1], got {thresholds.tolist()}")
    return thresholds


def _check_mode(mode: Any) -> IouMode:
    if mode not in _MODES:
        raise ValueError(f"mode: expected one of {_MODES}, got {mode!r}")
    return mode


def _check_recall_positions(recall_positions: Any) -> int:
    if isinstance(recall_positions, bool) or recall_positions not in _RECALL_POSITIONS:
        raise ValueError(f"recall_positions: expected 40 (R40) or 11 (R11), got {recall_positions!r}")
    return int(recall_positions)


def _box_matrix(name: str, value: Any, length: int, length_of: str) -> np.ndarray:
    boxes = as_boxes(name, value)
    if len(boxes) != length:
        raise ValueError(f"{name}: expected {length} boxes (length of {length_of}), got {len(boxes)}")
    return boxes


class KittiMAP(FrameBoxMetric):
    """Accumulates detections over batches (and DDP ranks, see
    :class:`~alcv.metrics.average_precision.FrameBoxMetric`) and computes :func:`kitti_ap`; whole boxes
    ``[x, y, z, dx, dy, dz, yaw]`` (LiDAR frame, metres / radians) are kept.

    Args:
        class_names: one name per class id.
        iou_thresholds: ``(C, L)`` IoU thresholds in ``(0, 1]`` (``(C,)`` for one level), see :func:`kitti_ap`.
        mode: ``"bev"`` or ``"3d"``.
        recall_positions: 40 (R40) or 11 (R11).
        **kwargs: forwarded to :class:`torchmetrics.Metric`.
    """

    box_width = 7

    def __init__(
        self,
        class_names: Sequence[str],
        iou_thresholds: Any,
        mode: IouMode = "bev",
        recall_positions: int = 40,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.class_names = check_class_names(class_names)
        self.iou_thresholds = check_iou_thresholds(iou_thresholds, len(self.class_names))
        self.mode = _check_mode(mode)
        self.recall_positions = _check_recall_positions(recall_positions)

    def _box_columns(self, name: str, boxes: Tensor) -> Tensor:
        return box_tensor(name, boxes)

    def compute(self) -> KittiAP:
        """AP of everything accumulated so far; all classes are NaN if no ground truth was seen."""
        return kitti_ap(
            **self._accumulated(),
            class_names=self.class_names,
            iou_thresholds=self.iou_thresholds,
            mode=self.mode,
            recall_positions=self.recall_positions,
        )


def box_tensor(name: str, boxes: Tensor) -> Tensor:
    """``(M, 7)`` boxes; an empty tensor of any shape means no boxes."""
    boxes = torch.as_tensor(boxes).detach()
    if boxes.numel() == 0:
        return boxes.reshape(0, 7)
    if boxes.ndim != 2 or boxes.shape[1] != 7:
        raise ValueError(f"{name}: expected shape (M, 7) [x, y, z, dx, dy, dz, yaw], got {tuple(boxes.shape)}")
    return boxes
