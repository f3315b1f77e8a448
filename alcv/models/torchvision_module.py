"""The LightningModule around a torchvision 2D detector: training on its loss dict, COCO mAP, pool inference.

Faster R-CNN and SSD reserve class 0 for the background, so their torchvision labels are alcv's ids + 1;
RetinaNet and FCOS use alcv's ids as they are. :class:`TorchvisionDetectionModule` does that mapping in both
directions; outside it labels are always alcv's ``0..C-1``. Training uses the torchvision model's own
``forward`` (its loss dict); inference uses :func:`~alcv.models.torchvision_inference.detect`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from alcv.metrics.average_precision import DetectionAP
from alcv.metrics.coco_map import CocoMAP
from alcv.models.detection_module import DetectionModule, OptimizerFactory, SchedulerFactory
from alcv.models.detections import Detections
from alcv.models.torchvision_inference import detect, detector_num_classes

__all__ = ["TorchvisionDetectionModule"]


class TorchvisionDetectionModule(DetectionModule):
    """Trains a torchvision 2D detector on batches from alcv's image collate function, evaluates it with COCO mAP.

    Batches: ``{"index": (B,), "images": B float (3, H, W) in [0, 1], "boxes": B float (M_i, 4) xyxy pixels,
    "labels": B int64 (M_i,) ids 0..C-1, ...}``.

    Args:
        detector: a torchvision FasterRCNN, RetinaNet, FCOS or SSD, e.g. from
            :func:`~alcv.models.torchvision_builders.fasterrcnn`.
        class_names: names of the class ids, in order (as many as the detector has object classes).
        optimizer: a partial that takes the trainable parameters, e.g. ``SGD(lr=...)`` with ``_partial_: true``.
        scheduler: optional partial that takes the optimizer and ``total_steps`` (the number of optimizer steps of
            this fit, from the Trainer); stepped every optimizer step.

    ``training_step`` returns the sum of torchvision's losses (each logged as ``train/<name>``).
    ``validation_step``/``test_step`` accumulate COCO mAP (:class:`CocoMAP`); the results of the last validation
    and test are kept in :attr:`val_result` and :attr:`test_result` (:class:`DetectionAP`, IoU thresholds
    0.50:0.95). ``predict_step`` returns one :class:`Detections` per image, on the CPU (see :func:`detect`),
    honouring :attr:`prediction_request`: ``embeddings`` adds the image's embedding; ``passes > 1`` runs the
    classification head that many times with dropout ``dropout`` and fills ``prob_samples`` ``(T, M, C)`` and
    ``found`` (all true). Dropout is active in those passes only; training and evaluation never use it.
    """

    modality: ClassVar[str] = "camera"

    def __init__(self, detector: nn.Module, class_names: Sequence[str], optimizer: OptimizerFactory,
                 scheduler: SchedulerFactory | None = None) -> None:
        super().__init__(class_names, optimizer, scheduler, CocoMAP(tuple(class_names)), CocoMAP(tuple(class_names)))
        num_classes, self.label_offset = detector_num_classes(detector)
        if len(class_names) != num_classes:
            raise ValueError(f"TorchvisionDetectionModule: {len(class_names)} class names {list(class_names)} for a "
                             f"detector with {num_classes} object classes")
        self.save_hyperparameters(ignore=["detector"])
        self.detector = detector

    def forward(self, images: Sequence[Tensor]) -> list[dict[str, Tensor]]:
        """Deterministic detections of ``images`` (see :func:`detect`); call in eval mode."""
        return detect(self.detector, images)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        targets = [{"boxes": boxes, "labels": labels + self.label_offset}
                   for boxes, labels in zip(batch["boxes"], batch["labels"], strict=True)]
        losses = self.detector(list(batch["images"]), targets)
        loss = torch.stack(list(losses.values())).sum()
        batch_size = len(batch["index"])
        for name, value in losses.items():
            self.log(f"train/{name}", value, batch_size=batch_size)
        self.log("train/loss", loss, batch_size=batch_size, prog_bar=True)
        return loss

    def _evaluate(self, batch: dict[str, Any], metrics: Sequence[CocoMAP]) -> None:
        predictions = [{key: result[key] for key in ("boxes", "scores", "labels")} for result in self(batch["images"])]
        targets = [{"boxes": boxes, "labels": labels} for boxes, labels in zip(batch["boxes"], batch["labels"],
                                                                                 strict=True)]
        for metric in metrics:
            metric.update(predictions, targets)

    def _logged_values(self, result: DetectionAP) -> dict[str, float]:
        """mAP and AP per class, plus COCO's AP at IoU 0.5 and 0.75 (``map_50``, ``map_75``)."""
        per_threshold = dict(zip(result.thresholds, result.ap_per_threshold.tolist(), strict=True))
        return {**result.as_dict(), "map_50": per_threshold.get(0.5, math.nan),
                "map_75": per_threshold.get(0.75, math.nan)}

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> list[Detections]:
        request = self.prediction_request
        results = detect(self.detector, batch["images"], passes=request.passes, dropout=request.dropout,
                          embeddings=request.embeddings)
        frames = []
        for index, result in zip(batch["index"].tolist(), results, strict=True):
            samples = result.get("prob_samples")
            found = None if samples is None else torch.ones(samples.shape[:2], dtype=torch.bool, device=samples.device)
            frames.append(Detections(int(index), result["boxes"], result["labels"], result["scores"],
                                     result["class_probs"], result.get("embedding"), samples, found).cpu())
        return frames
