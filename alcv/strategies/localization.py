"""Localization stability (Kao et al., "Localization-Aware Active Learning for Object Detection", ACCV 2018,
arXiv:1801.05124) with a mirrored pass as the perturbation, as in CALD (Yu et al., "Consistency-based Active
Learning for Object Detection", CVPR workshops 2022, arXiv:2103.10374), and :class:`LocalizationStabilityStrategy`.

A box's stability is the IoU of the box with the box that a pass over the mirrored frame gives at the same place,
mirrored back (bird's-eye-view IoU of the rotated boxes for LiDAR, IoU for image boxes; 0 where that pass gives no
box there). A frame's stability is the mean of its boxes' stabilities weighted by their scores (Kao et al.'s
``S_I``), and its score adds the classification uncertainty of its most uncertain box, ``U_c``:
``U_c + weight x (1 - S_I)``, which ranks frames as Kao et al.'s ``U_c - weight x S_I`` does.

Where this differs from the papers: Kao et al. perturb images with Gaussian noise at several levels; one mirrored
pass is deterministic, costs one extra forward pass, and needs nothing but the mirror that the training
augmentation already uses, so a detector that has learned a box predicts it both ways.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from alcv.metrics.frame_errors import pair_iou_xyxy
from alcv.metrics.rotated_iou import bev_iou_pairs
from alcv.models.detections import Detections, PredictionRequest
from alcv.strategies.base import BoxFilter, PoolStats, select_by_score
from alcv.strategies.selection import Picker
from alcv.strategies.uncertainty import least_confidence


def box_stability(detections: Detections) -> np.ndarray:
    """``(M,)`` in [0, 1]: each box's IoU with its match in the mirrored pass (0 where it has none); LiDAR boxes
    ``(M, 7)`` by their rotated bird's-eye-view IoU, image boxes ``(M, 4)`` by their IoU."""
    if detections.mirror_boxes is None or detections.mirror_found is None:
        raise ValueError(f"frame {detections.index}: the detections carry no mirrored pass; the strategy needs "
                         "PredictionRequest(mirror=True)")
    boxes = detections.boxes.numpy().astype(np.float64)
    mirrored = detections.mirror_boxes.numpy().astype(np.float64)
    found = detections.mirror_found.numpy().astype(bool)
    stability = np.zeros(len(boxes))
    if found.any():
        pairs = bev_iou_pairs if boxes.shape[1] == 7 else pair_iou_xyxy
        stability[found] = pairs(boxes[found], mirrored[found])
    return stability


def frame_stability(detections: Detections, kept: np.ndarray) -> float:
    """Kao et al.'s ``S_I``: the score-weighted mean stability of the ``kept`` boxes; NaN without any."""
    weights = detections.scores.numpy()[kept].astype(np.float64)
    if not kept.any() or weights.sum() <= 0:
        return float("nan")
    return float((box_stability(detections)[kept] * weights).sum() / weights.sum())


class LocalizationStabilityStrategy:
    """Frames whose boxes move when the frame is mirrored, or whose most uncertain box is unsure of its class:
    ``max_b (1 - max_c p_b(c)) + weight x (1 - S_I)`` over the boxes that count (see the module's docstring).
    Frames with no box that counts rank last.

    Args:
        weight: how much the instability counts against the classification uncertainty (Kao et al.'s lambda);
            0 gives least confidence.
        min_score: boxes scored below this do not count.
    """

    name = "localization"

    def __init__(self, weight: float = 1.0, min_score: float = 0.1) -> None:
        if not weight >= 0:
            raise ValueError(f"strategy.weight: must be >= 0, got {weight}")
        self.weight = weight
        self.filter = BoxFilter(min_score)
        self.request = PredictionRequest(mirror=True)

    def frame_stats(self, detections: Sequence[Detections]) -> dict[str, np.ndarray]:
        """``score`` ``(B,)``; ``-inf`` for a frame with no box that counts."""
        scores = np.full(len(detections), -np.inf)
        for row, frame in enumerate(detections):
            kept = self.filter.kept(frame)
            if kept.any():
                uncertainty = float(least_confidence(frame.class_probs.numpy()[kept]).max())
                scores[row] = uncertainty + self.weight * (1.0 - np.nan_to_num(frame_stability(frame, kept)))
        return {"score": scores}

    def select(self, pool: PoolStats, picker: Picker, seed: int) -> np.ndarray:
        return select_by_score(pool, picker, pool.column("score"), seed)
