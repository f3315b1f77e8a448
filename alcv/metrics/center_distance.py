"""nuScenes-style 3D detection AP on centre distance in the ground plane.

The semantics are those of the nuScenes devkit's ``accumulate`` and ``calc_ap``
(``nuscenes/eval/detection/algo.py``) with ``dist_fcn=center_distance``, ``min_recall=0.1`` and
``min_precision=0.1``, with one deliberate difference: a class without any ground-truth box in the
evaluated frames gets AP = NaN (and a warning) and is left out of the mAP, where the devkit would count 0.

All coordinates are box centres ``x, y`` in metres in the LiDAR frame; ``z`` is ignored.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from alcv.metrics.average_precision import (
    DetectionAP,
    FrameBoxMetric,
    check_class_names,
    checked_detections,
    greedy_match,
    reliability,
)

__all__ = ["DEFAULT_THRESHOLDS", "CenterDistanceMAP", "center_distance_ap"]

DEFAULT_THRESHOLDS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
"""nuScenes centre-distance matching thresholds, metres."""
RELIABILITY_THRESHOLD = 2.0
"""The reliability table's matching threshold is the given threshold nearest to this (metres; nuScenes' middle)."""

_MIN_RECALL = 0.1
_MIN_PRECISION = 0.1
_RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def center_distance_ap(
    pred_frame: np.ndarray,
    pred_xy: np.ndarray,
    pred_label: np.ndarray,
    pred_score: np.ndarray,
    gt_frame: np.ndarray,
    gt_xy: np.ndarray,
    gt_label: np.ndarray,
    class_names: Sequence[str],
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
) -> DetectionAP:
    """nuScenes centre-distance AP per class and threshold, and mAP.

    For each class and threshold, the predictions of that class are processed by descending score; among
    equal scores the one that comes later in the input arrays goes first (the devkit's
    ``sorted((score, index))[::-1]``). Each is greedily matched to the nearest not yet matched ground-truth
    box of the same class in the same frame (lowest GT index among equally distant ones); it is a true
    positive iff that distance is strictly below the threshold, otherwise a false positive. Precision is
    interpolated at 101 recall points without a monotone envelope, and
    ``AP = mean(clip(prec[11:] - 0.1, 0)) / 0.9``. A class without ground truth gets AP = NaN and a warning.

    Args:
        pred_frame: ``(P,)`` int, frame id of each prediction (any integers, e.g. absolute dataset indices).
        pred_xy: ``(P, 2)`` float, predicted box centre ``x, y`` in the LiDAR frame, metres.
        pred_label: ``(P,)`` int, class id in ``[0, len(class_names))``.
        pred_score: ``(P,)`` float, confidence.
        gt_frame: ``(G,)`` int, frame id of each ground-truth box.
        gt_xy: ``(G, 2)`` float, ground-truth box centre ``x, y`` in the LiDAR frame, metres.
        gt_label: ``(G,)`` int, class id in ``[0, len(class_names))``.
        class_names: one name per class id.
        thresholds: matching thresholds on the x-y centre distance, metres, each finite and > 0.

    Returns:
        A :class:`DetectionAP` with ``ap`` of shape ``(len(class_names), len(thresholds))`` and the scores'
        :class:`~alcv.metrics.average_precision.Reliability` at the threshold nearest
        :data:`RELIABILITY_THRESHOLD`, over all classes.

    Raises:
        ValueError: on wrong shapes or dtypes, mismatched lengths, labels out of range, non-finite
            coordinates or scores, or invalid ``class_names`` / ``thresholds``.
    """
    names = check_class_names(class_names)
    thr = _check_thresholds(thresholds)
    num_classes = len(names)

    pred_frame, pred_xy, pred_label, pred_score, gt_frame, gt_xy, gt_label = checked_detections(
        (pred_frame, pred_xy, pred_label, pred_score, gt_frame, gt_xy, gt_label), num_classes, "xy", _xy_matrix)
    num_pred = len(pred_frame)

    # Devkit processing order: sorted((score, position))[::-1].
    order = np.lexsort((np.arange(num_pred), pred_score))[::-1]
    sorted_label = pred_label[order]
    pred_x, pred_y = pred_xy[order, 0], pred_xy[order, 1]
    gt_x, gt_y = np.ascontiguousarray(gt_xy[:, 0]), np.ascontiguousarray(gt_xy[:, 1])

    def negative_distance(pred_index: np.ndarray, gt_index: np.ndarray) -> np.ndarray:
        dx, dy = pred_x[pred_index] - gt_x[gt_index], pred_y[pred_index] - gt_y[gt_index]
        return -np.sqrt(dx * dx + dy * dy)

    # A match needs a distance strictly below the threshold: -distance > -threshold.
    is_tp = greedy_match(pred_frame[order], sorted_label, gt_frame, gt_label, negative_distance,
                         np.broadcast_to(-thr, (num_classes, len(thr))), strict=True)

    npos = np.bincount(gt_label, minlength=num_classes)
    ap = np.zeros((num_classes, len(thr)), dtype=np.float64)
    for c in range(num_classes):
        if npos[c] == 0:
            warnings.warn(
                f"center_distance_ap: class '{names[c]}' (id {c}) has no ground-truth box in the evaluated "
                "frames; its AP is NaN and it is left out of the mAP.",
                UserWarning,
                stacklevel=2,
            )
            ap[c] = np.nan
            continue
        class_tp = is_tp[:, sorted_label == c]
        if class_tp.shape[1] == 0:
            continue  # no predictions: precision curve all zeros, AP 0
        tp = np.cumsum(class_tp, axis=1).astype(float)
        fp = np.cumsum(~class_tp, axis=1).astype(float)
        prec = tp / (fp + tp)
        rec = tp / float(npos[c])
        for t in range(len(thr)):
            ap[c, t] = _calc_ap(np.interp(_RECALL_POINTS, rec[t], prec[t], right=0))
    level = int(np.argmin(np.abs(thr - RELIABILITY_THRESHOLD)))
    return DetectionAP(ap=ap, thresholds=tuple(thr.tolist()), class_names=names,
                       reliability=reliability(pred_score[order], is_tp[level], float(thr[level])))


def _calc_ap(precision: np.ndarray) -> float:
    """The devkit's ``calc_ap``: ``precision`` is the ``(101,)`` interpolated curve; returns AP in [0, 1]."""
    prec = precision[round(100 * _MIN_RECALL) + 1 :] - _MIN_PRECISION
    prec[prec < 0] = 0
    return float(np.mean(prec)) / (1.0 - _MIN_PRECISION)


def _check_thresholds(thresholds: Sequence[float]) -> np.ndarray:
    thr = np.asarray(thresholds, dtype=np.float64)
    if thr.ndim != 1 or thr.size == 0 or not np.all(np.isfinite(thr)) or np.any(thr <= 0):
        raise ValueError(
            "thresholds: expected a non-empty 1-D sequence of finite distances > 0 (metres), "
            f"got {thresholds!r}"
        )
    return thr


def _xy_matrix(name: str, value: Any, length: int, length_of: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.size == 0:
        arr = arr.reshape(0, 2)
    if arr.shape != (length, 2):
        raise ValueError(
            f"{name}: expected shape ({length}, 2) (length of {length_of}) of centre x, y in metres, "
            f"got {arr.shape}"
        )
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name}: expected a real-valued dtype, got {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: expected finite coordinates, got NaN or inf")
    return arr


class CenterDistanceMAP(FrameBoxMetric):
    """Accumulates detections over batches (and DDP ranks, see
    :class:`~alcv.metrics.average_precision.FrameBoxMetric`) and computes :func:`center_distance_ap`; the boxes'
    centre ``x, y`` (metres, LiDAR frame) is what is kept of them.

    Args:
        class_names: one name per class id.
        thresholds: centre-distance matching thresholds, metres.
        **kwargs: forwarded to :class:`torchmetrics.Metric`.
    """

    box_width = 2

    def __init__(
        self, class_names: Sequence[str], thresholds: Sequence[float] = DEFAULT_THRESHOLDS, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.class_names = check_class_names(class_names)
        self.thresholds = tuple(_check_thresholds(thresholds).tolist())

    def _box_columns(self, name: str, boxes: Tensor) -> Tensor:
        return _box_centres(name, boxes)

    def compute(self) -> DetectionAP:
        """AP of everything accumulated so far; all classes are NaN if no ground truth was seen."""
        state = self._accumulated()
        return center_distance_ap(
            pred_frame=state["pred_frame"],
            pred_xy=state["pred_boxes"],
            pred_label=state["pred_label"],
            pred_score=state["pred_score"],
            gt_frame=state["gt_frame"],
            gt_xy=state["gt_boxes"],
            gt_label=state["gt_label"],
            class_names=self.class_names,
            thresholds=self.thresholds,
        )


def _box_centres(name: str, boxes: Tensor) -> Tensor:
    """``(M, 2)`` centre ``x, y`` of ``(M, D>=2)`` boxes; an empty tensor of any shape means no boxes."""
    boxes = torch.as_tensor(boxes).detach()
    if boxes.numel() == 0:
        return boxes.reshape(0, 2)
    if boxes.ndim != 2 or boxes.shape[1] < 2:
        raise ValueError(
            f"{name}: expected shape (M, 7) [x, y, z, dx, dy, dz, yaw], got {tuple(boxes.shape)}"
        )
    return boxes[:, :2]
