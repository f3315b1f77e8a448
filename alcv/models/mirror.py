"""A second, mirrored pass of pool inference: each frame is predicted again mirrored, the boxes of that pass are
mirrored back and matched box by box to the first pass's, for strategies that measure how stable a detector's
boxes are (:class:`~alcv.strategies.localization.LocalizationStabilityStrategy`).

The mirror is the one the training augmentation uses, so a detector trained with it should give the same boxes
both ways where it is sure: LiDAR frames are mirrored across the x axis (``y -> -y``, box yaw ``-> -yaw``), images
left to right (``x -> width - x``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from alcv.models.committee import match_to_anchor
from alcv.models.detections import Detections, PredictionRequest


def mirror_batch(batch: dict[str, Any], modality: str) -> dict[str, Any]:
    """A copy of ``batch`` (of :func:`~alcv.data.lidar_dataset.collate_lidar` or
    :func:`~alcv.data.collate.collate_images`) with every frame mirrored; ground truth is left out."""
    mirrored = {key: value for key, value in batch.items() if key not in ("boxes", "labels")}
    if modality == "lidar":
        points = batch["points"].clone()
        points[:, 1] = -points[:, 1]
        mirrored["points"] = points
    elif modality == "camera":
        mirrored["images"] = [torch.flip(image, dims=[-1]) for image in batch["images"]]
    else:
        raise ValueError(f"mirror_batch: unknown modality '{modality}', expected 'lidar' or 'camera'")
    return mirrored


def mirror_boxes(boxes: Tensor, modality: str, width: float | None = None) -> Tensor:
    """Boxes of a mirrored frame in the original frame (the mirror is its own inverse): LiDAR ``(M, 7)`` get
    ``y -> -y`` and ``yaw -> -yaw``; image ``(M, 4)`` ``xyxy`` boxes ``x -> width - x`` (``width`` in pixels)."""
    mirrored = boxes.clone()
    if modality == "lidar":
        mirrored[:, 1] = -boxes[:, 1]
        mirrored[:, 6] = -boxes[:, 6]
    elif modality == "camera":
        if width is None:
            raise ValueError("mirror_boxes: mirroring image boxes needs the image width")
        mirrored[:, 0] = width - boxes[:, 2]
        mirrored[:, 2] = width - boxes[:, 0]
    else:
        raise ValueError(f"mirror_boxes: unknown modality '{modality}', expected 'lidar' or 'camera'")
    return mirrored


class MirroredPassModule(pl.LightningModule):
    """Pool inference with a mirrored second pass: ``model`` predicts the batch and its mirror
    (:func:`mirror_batch`); each box of the first pass gets ``mirror_boxes`` ``(M, 7 | 4)``, the box of the
    mirrored pass it matches (:func:`~alcv.models.committee.match_to_anchor`), mirrored back, and
    ``mirror_found`` ``(M,)``, whether there was one (the box's row is zeros otherwise).

    Args:
        model: a detection module with ``modality`` and ``prediction_request`` whose ``predict_step`` returns
            :class:`Detections`.
        match_radius: see :func:`~alcv.models.committee.match_to_anchor`.
    """

    def __init__(self, model: pl.LightningModule, match_radius: float = 0.5) -> None:
        super().__init__()
        self.model = nn.ModuleList([model])
        self.modality = str(model.modality)
        self.match_radius = match_radius
        self.prediction_request = PredictionRequest()

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> list[Detections]:
        model = self.model[0]
        model.prediction_request = dataclasses.replace(self.prediction_request, mirror=False)
        frames = model.predict_step(batch, batch_idx, dataloader_idx)
        model.prediction_request = dataclasses.replace(self.prediction_request, mirror=False, embeddings=False,
                                                       passes=1)
        mirrored = model.predict_step(mirror_batch(batch, self.modality), batch_idx, dataloader_idx)
        widths = [float(image.shape[-1]) for image in batch["images"]] if self.modality == "camera" else \
            [None] * len(frames)
        result = []
        for frame, other, width in zip(frames, mirrored, widths, strict=True):
            other = dataclasses.replace(other, boxes=mirror_boxes(other.boxes, self.modality, width))
            match = match_to_anchor(frame, other, self.match_radius)
            found = match >= 0
            boxes = torch.zeros_like(frame.boxes)
            boxes[found] = other.boxes[match[found]].to(boxes.dtype)
            result.append(dataclasses.replace(frame, mirror_boxes=boxes, mirror_found=found))
        return result
