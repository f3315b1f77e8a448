"""Builders of torchvision's 2D detectors (Faster R-CNN, RetinaNet, FCOS, SSDlite) for alcv.

:func:`fasterrcnn`, :func:`retinanet`, :func:`fcos` and :func:`ssdlite` return plain torchvision models for
``num_classes`` = C object classes, randomly initialised unless pretrained weights are asked for. Faster R-CNN
and SSD reserve class 0 for the background, so their torchvision labels are alcv's ids + 1; RetinaNet and FCOS
have no background class and use alcv's ids as they are
(:func:`~alcv.models.torchvision_inference.detector_num_classes` tells which).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any

import torch
from torch import nn
from torchvision.models import MobileNet_V3_Large_Weights, ResNet50_Weights
from torchvision.models import detection as tvd
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.ssd import SSD

from alcv.safe_io import weights_only_loads

__all__ = ["fasterrcnn", "fcos", "retinanet", "ssdlite"]


#: Faster R-CNN variants: torchvision builder, its detector weights enum, its backbone weights enum.
_FASTERRCNN_VARIANTS: dict[str, tuple[Callable[..., nn.Module], type[Enum], type[Enum]]] = {
    "mobilenet_v3_large_fpn": (tvd.fasterrcnn_mobilenet_v3_large_fpn, tvd.FasterRCNN_MobileNet_V3_Large_FPN_Weights,
                               MobileNet_V3_Large_Weights),
    "mobilenet_v3_large_320_fpn": (tvd.fasterrcnn_mobilenet_v3_large_320_fpn,
                                   tvd.FasterRCNN_MobileNet_V3_Large_320_FPN_Weights, MobileNet_V3_Large_Weights),
    "resnet50_fpn": (tvd.fasterrcnn_resnet50_fpn, tvd.FasterRCNN_ResNet50_FPN_Weights, ResNet50_Weights),
    "resnet50_fpn_v2": (tvd.fasterrcnn_resnet50_fpn_v2, tvd.FasterRCNN_ResNet50_FPN_V2_Weights, ResNet50_Weights),
}


def _resolve(enum: type[Enum], name: str | None, what: str) -> Any:
    if name is None:
        return None
    try:
        return enum.verify(name)  # type: ignore[attr-defined]
    except (KeyError, TypeError, ValueError) as err:
        names = ["DEFAULT", *enum.__members__]
        raise ValueError(f"{what}: unknown {enum.__name__} {name!r}; expected one of {names} or null") from err


def _build(builder: Callable[..., nn.Module], weights_enum: type[Enum], backbone_enum: type[Enum], num_classes: int,
           background: bool, weights: str | None, weights_backbone: str | None, **kwargs: Any) -> nn.Module:
    """Call a torchvision builder for ``num_classes`` object classes, + 1 for the background if ``background``.

    With detector ``weights`` the model is built for COCO's classes, loaded, and its class-specific last layers
    are replaced by randomly initialised ones for ``num_classes`` (:func:`_replace_classifier`).
    """
    name = builder.__name__
    if num_classes < 1:
        raise ValueError(f"{name}: num_classes must be >= 1, got {num_classes}")
    detector_weights = _resolve(weights_enum, weights, name)
    backbone_weights = None if detector_weights is not None else _resolve(backbone_enum, weights_backbone, name)
    fetched = detector_weights if detector_weights is not None else backbone_weights
    try:
        with weights_only_loads():  # a weights file (downloaded or put in the cache by hand) never runs code
            model = builder(weights=detector_weights, weights_backbone=backbone_weights,
                            num_classes=None if detector_weights is not None else num_classes + int(background),
                            **kwargs)
    except Exception as err:
        if fetched is None:
            raise
        raise RuntimeError(
            f"{name}: could not fetch or load torchvision's pretrained weights {fetched!r} ({fetched.url}): {err!r}. "
            f"Without network access, copy that file into {torch.hub.get_dir()}/checkpoints/, or train from "
            "random initialisation: weights=None and weights_backbone=None (on the command line "
            "model.weights=null model.weights_backbone=null)."
        ) from err
    if detector_weights is not None:
        _replace_classifier(model, num_classes)
    return model


def _replace_classifier(model: nn.Module, num_classes: int) -> None:
    """Swap the class-specific last layer of a (COCO-pretrained) detector for a fresh one with C classes."""
    if isinstance(model, tvd.FasterRCNN):
        predictor = model.roi_heads.box_predictor
        model.roi_heads.box_predictor = FastRCNNPredictor(predictor.cls_score.in_features, num_classes + 1)
    elif isinstance(model, tvd.RetinaNet | tvd.FCOS):
        head = model.head.classification_head
        old = head.cls_logits
        head.cls_logits = nn.Conv2d(old.in_channels, head.num_anchors * num_classes, kernel_size=3, padding=1)
        nn.init.normal_(head.cls_logits.weight, std=0.01)  # torchvision's init, prior probability 0.01
        nn.init.constant_(head.cls_logits.bias, -math.log((1 - 0.01) / 0.01))
        head.num_classes = num_classes
    elif isinstance(model, SSD):
        head = model.head.classification_head
        anchors = model.anchor_generator.num_anchors_per_location()
        for block, num_anchors in zip(head.module_list, anchors, strict=True):
            last = block[-1]  # SSDlite prediction block: depthwise conv + 1x1 projection
            block[-1] = nn.Conv2d(last.in_channels, (num_classes + 1) * num_anchors, kernel_size=last.kernel_size,
                                  padding=last.padding)
            nn.init.normal_(block[-1].weight, std=0.03)  # torchvision's SSDlite init
            nn.init.zeros_(block[-1].bias)
        head.num_columns = num_classes + 1


def _sizes(min_size: int | None, max_size: int | None) -> dict[str, int]:
    return {key: value for key, value in (("min_size", min_size), ("max_size", max_size)) if value is not None}


def fasterrcnn(num_classes: int, variant: str = "mobilenet_v3_large_fpn", weights: str | None = None,
               weights_backbone: str | None = None, min_size: int | None = None, max_size: int | None = None,
               **kwargs: Any) -> tvd.FasterRCNN:
    """Torchvision Faster R-CNN for ``num_classes`` object classes (its predictor gets C + 1 with background).

    Args:
        num_classes: C, the number of object classes (alcv ids ``0..C-1``; torchvision ids ``1..C``).
        variant: ``"mobilenet_v3_large_fpn"``, ``"mobilenet_v3_large_320_fpn"``, ``"resnet50_fpn"`` or
            ``"resnet50_fpn_v2"`` (torchvision's ``fasterrcnn_<variant>``).
        weights: torchvision detector weights name (``"DEFAULT"``, ``"COCO_V1"``) or None for random init. The
            box predictor is then replaced by a randomly initialised one for C classes.
        weights_backbone: backbone weights name (e.g. ``"IMAGENET1K_V1"``), used only without ``weights``.
        min_size, max_size: the images' shorter side is resized to ``min_size`` unless the longer would then
            exceed ``max_size`` (aspect ratio kept); None = torchvision's default for the variant.
        **kwargs: forwarded to ``torchvision.models.detection.FasterRCNN`` (e.g. ``box_score_thresh``,
            ``box_detections_per_img``, ``rpn_post_nms_top_n_test``) or the builder (``trainable_backbone_layers``).

    Raises:
        RuntimeError: when pretrained weights were asked for and could not be fetched.
    """
    if variant not in _FASTERRCNN_VARIANTS:
        raise ValueError(f"fasterrcnn: unknown variant {variant!r}; expected one of {list(_FASTERRCNN_VARIANTS)}")
    builder, weights_enum, backbone_enum = _FASTERRCNN_VARIANTS[variant]
    return _build(builder, weights_enum, backbone_enum, num_classes, True, weights, weights_backbone,
                  **_sizes(min_size, max_size), **kwargs)


def retinanet(num_classes: int, weights: str | None = None, weights_backbone: str | None = None,
              min_size: int | None = None, max_size: int | None = None, **kwargs: Any) -> tvd.RetinaNet:
    """Torchvision ``retinanet_resnet50_fpn`` for ``num_classes`` object classes (sigmoid head, no background).

    Args and Raises: as :func:`fasterrcnn` (without ``variant``); ``**kwargs`` go to
    ``torchvision.models.detection.RetinaNet`` (e.g. ``score_thresh``, ``topk_candidates``, ``detections_per_img``).
    """
    return _build(tvd.retinanet_resnet50_fpn, tvd.RetinaNet_ResNet50_FPN_Weights, ResNet50_Weights, num_classes,
                  False, weights, weights_backbone, **_sizes(min_size, max_size), **kwargs)


def fcos(num_classes: int, weights: str | None = None, weights_backbone: str | None = None,
         min_size: int | None = None, max_size: int | None = None, backbone: nn.Module | None = None,
         regression_bias: float = 1.0, **kwargs: Any) -> tvd.FCOS:
    """Torchvision FCOS for ``num_classes`` object classes (sigmoid head, no background): ``fcos_resnet50_fpn``, or
    FCOS on ``backbone`` when one is given.

    Args and Raises: as :func:`fasterrcnn` (without ``variant``), plus:
        backbone: a feature-pyramid backbone with ``out_channels`` (e.g.
            :class:`~alcv.models.components.tiny_fpn.TinyFPNBackbone`), always randomly initialised: ``weights``
            and ``weights_backbone`` must then be None. Needs an ``anchor_generator`` in ``kwargs`` with one
            size per pyramid level.
        regression_bias: initial bias of the box-regression output (before its ReLU) of a randomly initialised
            head (torchvision: 0); 1 starts every location at a box of twice its level's anchor size.
        **kwargs: forwarded to ``torchvision.models.detection.FCOS``.
    """
    if backbone is None:
        model = _build(tvd.fcos_resnet50_fpn, tvd.FCOS_ResNet50_FPN_Weights, ResNet50_Weights, num_classes, False,
                       weights, weights_backbone, **_sizes(min_size, max_size), **kwargs)
    elif weights is not None or weights_backbone is not None:
        raise ValueError("fcos: pretrained weights are for the ResNet-50 backbone; with a custom backbone set "
                         "weights=None and weights_backbone=None")
    elif num_classes < 1:
        raise ValueError(f"fcos: num_classes must be >= 1, got {num_classes}")
    else:
        model = tvd.FCOS(backbone, num_classes, **_sizes(min_size, max_size), **kwargs)
    if weights is None:  # from a zero start the ReLU can die in the first steps: GIoU loss stuck at 1, no boxes
        nn.init.constant_(model.head.regression_head.bbox_reg.bias, regression_bias)
    return model


def ssdlite(num_classes: int, weights: str | None = None, weights_backbone: str | None = None,
            size: int | Sequence[int] = 320, **kwargs: Any) -> SSD:
    """Torchvision ``ssdlite320_mobilenet_v3_large`` for ``num_classes`` object classes (+1 background).

    SSD resizes every image to one fixed size (aspect ratio not kept); boxes are mapped back to the input
    image's pixels. Other args and Raises: as :func:`fasterrcnn`.

    Args:
        size: the fixed network input, ``(height, width)`` pixels, or one int for a square (torchvision: 320).
        **kwargs: forwarded to ``torchvision.models.detection.SSD`` (e.g. ``score_thresh``, ``topk_candidates``).
    """
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    model = _build(tvd.ssdlite320_mobilenet_v3_large, tvd.SSDLite320_MobileNet_V3_Large_Weights,
                   MobileNet_V3_Large_Weights, num_classes, True, weights, weights_backbone, **kwargs)
    model.transform.fixed_size = (width, height)  # torchvision's order is (width, height)
    model.transform.min_size = (min(height, width),)
    model.transform.max_size = max(height, width)
    return model

