"""Evaluation metrics."""

from __future__ import annotations

from alcv.metrics.average_precision import DetectionAP
from alcv.metrics.center_distance import DEFAULT_THRESHOLDS, CenterDistanceMAP, center_distance_ap
from alcv.metrics.kitti_ap import KittiAP, KittiMAP, kitti_ap
from alcv.metrics.kitti_official import KittiOfficialAP, KittiOfficialMAP, kitti_official_ap
from alcv.metrics.rotated_iou import bev_iou, bev_iou_pairs, box_corners_bev, iou_3d, iou_3d_pairs

__all__ = [
    "DEFAULT_THRESHOLDS",
    "CenterDistanceMAP",
    "DetectionAP",
    "KittiAP",
    "KittiMAP",
    "KittiOfficialAP",
    "KittiOfficialMAP",
    "bev_iou",
    "bev_iou_pairs",
    "box_corners_bev",
    "center_distance_ap",
    "iou_3d",
    "iou_3d_pairs",
    "kitti_ap",
    "kitti_official_ap",
]
