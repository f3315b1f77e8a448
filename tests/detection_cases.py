"""Flat detection cases shared by the AP tests: ``(pred_frame, pred_boxes, pred_label, pred_score, gt_frame,
gt_boxes, gt_label)`` arrays, one row per box."""

from __future__ import annotations

import numpy as np


def grouped_by_frames(case: tuple[np.ndarray, ...], frames: np.ndarray) -> tuple[np.ndarray, ...]:
    """The case restricted to ``frames``, its boxes grouped by frame in that order (what a metric's ``update``
    stores when fed frame by frame)."""
    pred_frame, pred_boxes, pred_label, pred_score, gt_frame, gt_boxes, gt_label = case
    pred = np.concatenate([np.flatnonzero(pred_frame == frame) for frame in frames])
    gt = np.concatenate([np.flatnonzero(gt_frame == frame) for frame in frames])
    return (pred_frame[pred], pred_boxes[pred], pred_label[pred], pred_score[pred], gt_frame[gt], gt_boxes[gt],
            gt_label[gt])
