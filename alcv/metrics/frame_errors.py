"""Per-frame errors of a detector against the ground truth: the boxes it missed, the boxes it made up, and how
often a box of each score is right.

Used where the pool's labels are known (a simulated study) to ask whether an acquisition picks the frames the
model gets wrong, and whether the scores it ranks by can be trusted there. Every prediction matches a
ground-truth box of its class greedily, from the highest score down
(:func:`~alcv.metrics.average_precision.greedy_match`): LiDAR boxes whose centres lie within
:data:`MATCH_DISTANCE` metres in bird's-eye view, image boxes whose IoU is at least :data:`MATCH_IOU`. Since the
greedy order is by score, the predictions scored at least ``min_score`` match exactly as they would alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import Tensor

from alcv.metrics.average_precision import RELIABILITY_BINS, greedy_match
from alcv.models.detections import Detections

#: metres between box centres in bird's-eye view for a LiDAR match (the middle of the mAP's thresholds)
MATCH_DISTANCE = 2.0
#: IoU for a match of image boxes (COCO's loosest threshold)
MATCH_IOU = 0.5


def pair_iou_xyxy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of the row pairs of ``xyxy`` boxes ``a`` and ``b`` ``(K, 4)``; returns ``(K,)``."""
    width = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    height = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    intersection = width * height
    area = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area - intersection
    return np.where(union > 0, intersection / np.where(union > 0, union, 1.0), 0.0)


def frame_truth(detections: Sequence[Detections], gt_boxes: Sequence[Tensor], gt_labels: Sequence[Tensor],
                min_score: float, bins: int = RELIABILITY_BINS) -> tuple[np.ndarray, np.ndarray]:
    """Each frame's errors and score reliability against its ground truth (see the module's docstring).

    Args:
        detections: ``B`` frames' detections, boxes ``(M, 7)`` LiDAR or ``(M, 4)`` ``xyxy``.
        gt_boxes: ``B`` ground-truth box tensors of the same kind, ``(G, 7)`` or ``(G, 4)``.
        gt_labels: ``B`` ``(G,)`` class ids.
        min_score: the predictions that count as detections for the errors.
        bins: equal score bins over [0, 1] of the reliability counts.

    Returns:
        ``errors`` ``(B, 3)`` float64: ground-truth boxes, those no prediction scored at least ``min_score``
        matched (misses), and predictions scored at least ``min_score`` that matched none (false alarms); and
        ``calibration`` ``(B, 3, bins)`` float64: per score bin (every prediction, whatever its score) the
        predictions, those that matched, and the sum of their scores.
    """
    if not len(detections) == len(gt_boxes) == len(gt_labels):
        raise ValueError(f"frame_truth: {len(detections)} frames of detections for {len(gt_boxes)} of ground truth")
    width = 7 if any(d.boxes.shape[-1] == 7 for d in detections) or any(b.shape[-1] == 7 for b in gt_boxes) else 4

    def joined(parts: list[np.ndarray], shape: tuple[int, ...], dtype: type) -> np.ndarray:
        return np.concatenate([np.asarray(part, dtype=dtype).reshape(-1, *shape) for part in parts] or
                              [np.zeros((0, *shape), dtype=dtype)])

    pred_boxes = joined([d.boxes.numpy() for d in detections], (width,), np.float64)
    pred_scores = joined([d.scores.numpy() for d in detections], (), np.float64)
    pred_label = joined([d.labels.numpy() for d in detections], (), np.int64)
    pred_frame = np.repeat(np.arange(len(detections)), [len(d) for d in detections])
    truth = joined([np.asarray(boxes) for boxes in gt_boxes], (width,), np.float64)
    truth_label = joined([np.asarray(labels) for labels in gt_labels], (), np.int64)
    truth_frame = np.repeat(np.arange(len(detections)), [len(labels) for labels in gt_labels])
    order = np.argsort(-pred_scores, kind="stable")
    pred_boxes, pred_label, pred_frame, pred_scores = (pred_boxes[order], pred_label[order], pred_frame[order],
                                                       pred_scores[order])

    def pair_score(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
        if width == 7:
            return -np.hypot(*(pred_boxes[pred, :2] - truth[gt, :2]).T)
        return pair_iou_xyxy(pred_boxes[pred], truth[gt])

    num_classes = int(max(pred_label.max(initial=-1), truth_label.max(initial=-1))) + 1
    needed = np.full((max(num_classes, 1), 1), -MATCH_DISTANCE if width == 7 else MATCH_IOU)
    matched = greedy_match(pred_frame, pred_label, truth_frame, truth_label, pair_score, needed)[0]
    counted = pred_scores >= min_score
    size = len(detections)
    hits = np.bincount(pred_frame[matched & counted], minlength=size)
    boxes = np.bincount(truth_frame, minlength=size)
    errors = np.stack([boxes, boxes - hits, np.bincount(pred_frame[counted], minlength=size) - hits], axis=1)
    which = np.clip((np.clip(pred_scores, 0.0, 1.0) * bins).astype(np.int64), 0, bins - 1)
    cell = pred_frame * bins + which
    calibration = np.stack([np.bincount(cell, weights=weights, minlength=size * bins).reshape(size, bins)
                            for weights in (np.ones(len(cell)), matched.astype(np.float64), pred_scores)], axis=1)
    return errors.astype(np.float64), calibration


def frame_errors(detections: Sequence[Detections], gt_boxes: Sequence[Tensor], gt_labels: Sequence[Tensor],
                 min_score: float) -> np.ndarray:
    """The ``errors`` ``(B, 3)`` of :func:`frame_truth`: per frame its ground-truth boxes, misses and false
    alarms."""
    return frame_truth(detections, gt_boxes, gt_labels, min_score)[0]
