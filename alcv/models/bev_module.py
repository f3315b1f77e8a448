"""The LightningModule that trains a :class:`BEVDetector` and evaluates it with centre-distance mAP."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from alcv.metrics import CenterDistanceMAP, KittiMAP, KittiOfficialMAP
from alcv.models.components.bev import BEVDetector
from alcv.models.detection_module import DetectionModule, OptimizerFactory, SchedulerFactory
from alcv.models.detections import Detections


class BEVDetectionModule(DetectionModule):
    """Trains a BEV detector on batches from :func:`alcv.data.lidar_dataset.collate_lidar`.

    Args:
        detector: the injected :class:`BEVDetector` (encoder, backbone, head).
        class_names: names of the class ids, in order.
        optimizer: a partial that takes the parameters, e.g. ``AdamW(lr=...)`` with ``_partial_: true``.
        scheduler: optional partial that takes the optimizer and ``total_steps`` (the number of
            optimizer steps of this fit, from the Trainer); stepped every optimizer step.
        thresholds: centre-distance matching thresholds of the mAP, metres.
        kitti_iou_thresholds: optional KITTI-style AP on the test split beside the centre-distance mAP:
            ``{class name: [IoU threshold per level]}``, with a ``"default"`` entry for the classes not named,
            e.g. ``{"default": [0.7, 0.5], "pedestrian": [0.5, 0.25]}`` (KITTI's strict and loose levels). It
            adds the test metrics ``kitti_bev`` and ``kitti_3d`` (:class:`~alcv.metrics.kitti_ap.KittiMAP`, IoU in
            bird's-eye view and in 3D, 40 recall positions), kept in :attr:`extra_test_results`.
        kitti_official: also KITTI's official evaluation (:mod:`alcv.metrics.kitti_official`: easy / moderate /
            hard, R40 and R11, per IoU level) on the test split, as the test metrics ``kitti_official_bev`` and
            ``kitti_official_3d``; it reads the label files through the test datamodule's dataset, which must be a
            :class:`~alcv.data.kitti.KittiDataset` built with ``official_eval=True`` (bound at test start).
        kitti_official_iou_thresholds: the official metrics' IoU thresholds per level by KITTI type (with an
            optional ``"default"``), see :class:`~alcv.metrics.kitti_official.KittiOfficialMAP`; None: KITTI's.

    ``validation_step``/``test_step`` accumulate mAP; the result of the last test is kept in
    :attr:`test_result` (a :class:`DetectionAP`). ``predict_step`` returns a list with one
    :class:`Detections` per frame, on the CPU, carrying the frame's absolute index, and what
    :attr:`prediction_request` asks for (set by the loop before pool inference): the frame's embedding
    (the backbone features averaged over the BEV grid, ``(C',)``) and, for ``passes`` > 1, the class
    probabilities of every box under that many passes of the head with dropout (probability
    ``dropout``) on the backbone features. The boxes are decoded from the passes' mean heatmap, so every
    pass is read at the same cells: boxes are matched across passes by construction. Dropout is active
    in those passes only; training and evaluation never use it.
    """

    modality: ClassVar[str] = "lidar"

    def __init__(self, detector: BEVDetector, class_names: Sequence[str], optimizer: OptimizerFactory,
                 scheduler: SchedulerFactory | None = None,
                 thresholds: Sequence[float] = (0.5, 1.0, 2.0, 4.0),
                 kitti_iou_thresholds: Mapping[str, Sequence[float]] | None = None, kitti_official: bool = False,
                 kitti_official_iou_thresholds: Mapping[str, Sequence[float]] | None = None) -> None:
        extra_metrics: dict[str, KittiMAP | KittiOfficialMAP] = {}
        if kitti_iou_thresholds is not None:
            levels = _per_class_levels(kitti_iou_thresholds, class_names)
            extra_metrics = {f"kitti_{mode}": KittiMAP(tuple(class_names), levels, mode=mode) for mode in ("bev", "3d")}
        if kitti_official:
            extra_metrics.update({f"kitti_official_{mode}": KittiOfficialMAP(tuple(class_names), mode,
                                                                              kitti_official_iou_thresholds)
                                  for mode in ("bev", "3d")})
        super().__init__(class_names, optimizer, scheduler, CenterDistanceMAP(tuple(class_names), thresholds),
                         CenterDistanceMAP(tuple(class_names), thresholds), extra_metrics)
        if len(class_names) != detector.num_classes:
            raise ValueError(f"BEVDetectionModule: {len(class_names)} class names {list(class_names)} for a "
                             f"detector with {detector.num_classes} classes")
        self.save_hyperparameters(ignore=["detector"])
        self.detector = detector

    def on_test_start(self) -> None:
        """Bind the official KITTI metrics (if any) to the test datamodule's dataset."""
        official = [m for m in self.extra_test_metrics.values() if isinstance(m, KittiOfficialMAP)]
        if not official:
            return
        dataset = getattr(self.trainer.datamodule, "dataset", None)
        if not getattr(dataset, "official_eval", False):
            raise ValueError(f"BEVDetectionModule: kitti_official needs KITTI data with the label fields of the "
                             f"official evaluation (data=kitti with data.dataset.official_eval=true), got "
                             f"{type(dataset).__name__}")
        for metric in official:
            metric.bind(dataset)

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        return self.detector(batch["points"], batch["point_batch"], len(batch["index"]))

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        losses = self.detector.loss(self(batch), batch["boxes"], batch["labels"])
        batch_size = len(batch["index"])
        for name, value in losses.items():
            self.log(f"train/{name}", value, batch_size=batch_size, prog_bar=name == "loss")
        return losses["loss"]

    def _detect(self, batch: dict[str, Any]) -> list[Detections]:
        return self.detector.decode(self(batch), batch["index"].tolist())

    def _evaluate(self, batch: dict[str, Any], metrics: Sequence[CenterDistanceMAP]) -> None:
        detections = self._detect(batch)
        predictions = [{"boxes": d.boxes, "labels": d.labels, "scores": d.scores} for d in detections]
        targets = [{"boxes": b, "labels": lab} for b, lab in zip(batch["boxes"], batch["labels"], strict=True)]
        for metric in metrics:
            metric.update(predictions, targets, batch["index"])

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> list[Detections]:
        request = self.prediction_request
        features = self.detector.features(batch["points"], batch["point_batch"], len(batch["index"]))
        samples = None
        if request.passes > 1:
            passes = [self.detector.head(F.dropout(features, request.dropout, training=True))
                      for _ in range(request.passes)]
            samples = torch.stack([torch.sigmoid(p["heatmap"].float()) for p in passes])
            outputs = {"heatmap": torch.logit(samples.mean(dim=0), eps=1e-6),
                       "regression": torch.stack([p["regression"] for p in passes]).mean(dim=0)}
        else:
            outputs = self.detector.head(features)
        detections = self.detector.decode(outputs, batch["index"].tolist(), heatmap_samples=samples)
        if request.embeddings:
            for frame, embedding in zip(detections, features.float().mean(dim=(2, 3)), strict=True):
                frame.embedding = embedding
        return [frame.cpu() for frame in detections]


def _per_class_levels(iou_thresholds: Mapping[str, Sequence[float]], class_names: Sequence[str]) -> list[list[float]]:
    """``(C, L)`` IoU thresholds from ``{class name or "default": [threshold per level]}``."""
    if not isinstance(iou_thresholds, Mapping):
        raise ValueError(f"BEVDetectionModule: 'kitti_iou_thresholds' must map class names (or 'default') to lists "
                         f"of IoU thresholds, got {iou_thresholds!r}")
    unknown = [str(name) for name in iou_thresholds if name != "default" and name not in class_names]
    missing = [name for name in class_names if name not in iou_thresholds and "default" not in iou_thresholds]
    if unknown or missing:
        raise ValueError(f"BEVDetectionModule: kitti_iou_thresholds names unknown class(es) {unknown} and lacks "
                         f"{missing} (classes: {list(class_names)}; a 'default' entry covers the classes not named)")
    rows = [[float(t) for t in iou_thresholds.get(name, iou_thresholds.get("default", []))] for name in class_names]
    if len({len(row) for row in rows}) != 1:
        raise ValueError(f"BEVDetectionModule: kitti_iou_thresholds must give every class the same number of "
                         f"levels, got {dict(zip(class_names, rows, strict=True))}")
    return rows
