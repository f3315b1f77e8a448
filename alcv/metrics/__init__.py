"""Evaluation metrics."""

from __future__ import annotations

from alcv.metrics.center_distance import (
    DEFAULT_THRESHOLDS,
    CenterDistanceMAP,
    DetectionAP,
    center_distance_ap,
)

__all__ = ["DEFAULT_THRESHOLDS", "CenterDistanceMAP", "DetectionAP", "center_distance_ap"]
