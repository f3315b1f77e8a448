"""COCO box AP (pycocotools semantics) per class and IoU threshold, as a :class:`DetectionAP`.

A thin layer over :class:`torchmetrics.detection.MeanAveragePrecision` (``iou_type="bbox"``,
``backend="pycocotools"``, ``extended_summary=True``): COCOeval's precision tensor is read at area range
"all" and the largest ``maxDets`` (100) and averaged over the 101 recall thresholds, which gives the AP of
each class at each IoU threshold 0.50, 0.55, ..., 0.95. Averaged over thresholds and over the classes
that have ground truth, that is exactly COCOeval's (and torchmetrics') ``map``, mAP@[.5:.95].

Boxes are ``xyxy`` in pixels of the image they belong to; labels are class ids ``0..C-1``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics.detection import MeanAveragePrecision

from alcv.metrics.average_precision import DetectionAP

__all__ = ["CocoMAP"]


class CocoMAP(MeanAveragePrecision):
    """COCO mAP@[.5:.95] whose :meth:`compute` returns a :class:`DetectionAP`.

    ``compute().ap[c, t]`` is the COCO AP of class ``c`` at IoU threshold ``thresholds[t]`` (area "all",
    at most 100 detections per image and class, mean of the interpolated precision over the 101 recall
    thresholds). A class without ground truth in the evaluated images (whether or not it was predicted)
    gets a NaN row and is left out of ``map``, as COCOeval leaves it out (it marks it -1). States and DDP
    synchronisation are those of :class:`~torchmetrics.detection.MeanAveragePrecision`.

    Args:
        class_names: one name per class id; labels must lie in ``[0, len(class_names))``.
        **kwargs: forwarded to :class:`~torchmetrics.detection.MeanAveragePrecision` / ``Metric``
            (e.g. ``iou_thresholds``, ``max_detection_thresholds``, ``dist_sync_on_step``).
    """

    def __init__(self, class_names: Sequence[str], **kwargs: Any) -> None:
        for fixed in ("iou_type", "box_format", "extended_summary", "backend", "average"):
            if fixed in kwargs:
                raise ValueError(f"CocoMAP: '{fixed}' is fixed and cannot be passed")
        kwargs.setdefault("class_metrics", False)  # per-class AP comes from the precision tensor
        super().__init__(box_format="xyxy", iou_type="bbox", extended_summary=True, backend="pycocotools",
                         average="macro", **kwargs)
        if isinstance(class_names, str) or not class_names or len(set(class_names)) != len(class_names):
            raise ValueError(f"CocoMAP: expected a non-empty sequence of unique class names, got {class_names!r}")
        self.class_names = tuple(str(name) for name in class_names)
        # A detector may keep up to 300 boxes per image; COCOeval's maxDets cut is the intended semantics.
        self.warn_on_many_detections = False

    def update(self, preds: Sequence[Mapping[str, Tensor]], target: Sequence[Mapping[str, Tensor]]) -> None:
        """Add one batch of ``B`` images.

        Args:
            preds: ``B`` dicts with ``"boxes"`` ``(M_i, 4)`` ``xyxy`` pixels, ``"scores"`` ``(M_i,)`` and
                ``"labels"`` ``(M_i,)`` int64 class ids.
            target: ``B`` dicts with ``"boxes"`` ``(G_i, 4)`` ``xyxy`` pixels and ``"labels"`` ``(G_i,)``.
        """
        num_classes = len(self.class_names)
        for name, items in (("preds", preds), ("target", target)):
            for i, item in enumerate(items):
                labels = item["labels"]
                if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
                    raise ValueError(f"CocoMAP: {name}[{i}]['labels'] must lie in [0, {num_classes}), got values "
                                     f"in [{int(labels.min())}, {int(labels.max())}]")
        super().update([dict(p) for p in preds], [dict(t) for t in target])

    def compute(self) -> DetectionAP:  # type: ignore[override]
        """AP of everything accumulated so far; all NaN if nothing (or no ground truth) was seen."""
        result = super().compute()
        thresholds = tuple(round(float(t), 6) for t in self.iou_thresholds)
        ap = np.full((len(self.class_names), len(thresholds)), np.nan)
        precision = result.get("precision")
        if isinstance(precision, Tensor) and precision.ndim == 5:
            # (T, R, K, A, M): IoU thresholds, recall thresholds, classes seen, areas (0 = all), maxDets
            per_class = precision[:, :, :, 0, -1].to(torch.float64)
            for k, class_id in enumerate(result["classes"].tolist()):
                curve = per_class[:, :, k]  # (T, R); -1 everywhere when the class has no ground truth
                if bool((curve > -1).all()):
                    ap[class_id] = curve.mean(dim=1).cpu().numpy()
        return DetectionAP(ap=ap, thresholds=thresholds, class_names=self.class_names)
