"""Torchvision's 2D detectors (Faster R-CNN, RetinaNet, FCOS, SSDlite) for alcv, with per-box class probabilities.

Builders (:func:`fasterrcnn`, :func:`retinanet`, :func:`fcos`, :func:`ssdlite`) return plain torchvision models
for ``num_classes`` = C object classes, randomly initialised unless pretrained weights are asked for.
Faster R-CNN and SSD reserve class 0 for the background, so their torchvision labels are alcv's ids + 1;
RetinaNet and FCOS have no background class and use alcv's ids as they are. :class:`TorchvisionDetectionModule`
does that mapping in both directions; outside this file labels are always alcv's ``0..C-1``.

Training uses the torchvision model's own ``forward`` (its loss dict). Inference uses :func:`detect`, which runs
the same modules (transform, backbone, RPN / RoI heads or dense heads, anchor generator, box coder) and the same
selection as torchvision's ``postprocess_detections`` (score threshold, top-k candidates, class-wise NMS,
``detections_per_img``), but remembers which anchor or proposal each kept box came from. That gives, per box,
the full class-probability row the score was taken from, and lets the classification head be re-run several
times with dropout on the same features (MC dropout) and be read at the same anchors. With one pass its boxes,
scores and labels equal torchvision's own eval output.

What ``class_probs`` holds per detector (``C`` columns, background left out; ``scores = class_probs[m, label]``):

- Faster R-CNN: the softmax over background + C classes of the box's proposal (rows sum to ``1 - p(bg)``).
- SSD: the softmax over background + C classes of the box's default box (rows sum to ``1 - p(bg)``).
- RetinaNet: the per-class sigmoids (independent, one-vs-rest) of the box's anchor.
- FCOS: the per-class centerness-weighted scores ``sqrt(sigmoid(cls_c) * sigmoid(centerness))`` of the box's
  location, torchvision's FCOS score for every class (each in [0, 1], independent across classes).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import MobileNet_V3_Large_Weights, ResNet50_Weights
from torchvision.models import detection as tvd
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.ssd import SSD
from torchvision.models.detection.transform import resize_boxes
from torchvision.ops import boxes as box_ops

from alcv.metrics.center_distance import DetectionAP
from alcv.metrics.coco_map import CocoMAP
from alcv.models.detection_module import DetectionModule, OptimizerFactory, SchedulerFactory
from alcv.models.detections import Detections
from alcv.safe_io import weights_only_loads

__all__ = ["TorchvisionDetectionModule", "detect", "detector_num_classes", "fasterrcnn", "fcos", "retinanet",
           "ssdlite"]


#: Faster R-CNN variants: torchvision builder, its detector weights enum, its backbone weights enum.
_FASTERRCNN_VARIANTS: dict[str, tuple[Callable[..., nn.Module], type[Enum], type[Enum]]] = {
    "mobilenet_v3_large_fpn": (tvd.fasterrcnn_mobilenet_v3_large_fpn, tvd.FasterRCNN_MobileNet_V3_Large_FPN_Weights,
                               MobileNet_V3_Large_Weights),
    "mobilenet_v3_large_320_fpn": (tvd.fasterrcnn_mobilenet_v3_large_320_fpn,
                                   tvd.FasterRCNN_MobileNet_V3_Large_320_FPN_Weights, MobileNet_V3_Large_Weights),
    "resnet50_fpn": (tvd.fasterrcnn_resnet50_fpn, tvd.FasterRCNN_ResNet50_FPN_Weights, ResNet50_Weights),
    "resnet50_fpn_v2": (tvd.fasterrcnn_resnet50_fpn_v2, tvd.FasterRCNN_ResNet50_FPN_V2_Weights, ResNet50_Weights),
}


# --------------------------------------------------------------------------------------------------- builders


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
        regression_bias: initial bias of the box-regression output of a randomly initialised head (torchvision:
            0). That output goes through a ReLU, and with a zero start the ReLU can die within the first steps
            (the GIoU loss then stays at 1.0 and nothing is ever localised; seen on the synthetic camera data
            for some labeled sets). A bias of 1 starts every location at a box of twice its level's anchor size.
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
    if weights is None:
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


def detector_num_classes(detector: nn.Module) -> tuple[int, int]:
    """``(C, label_offset)``: the number of object classes of a torchvision detector and what is added to
    alcv's class ids to get its labels (1 for Faster R-CNN and SSD, whose class 0 is background; 0 else)."""
    if isinstance(detector, tvd.FasterRCNN):
        return detector.roi_heads.box_predictor.cls_score.out_features - 1, 1
    if isinstance(detector, tvd.RetinaNet | tvd.FCOS):
        return detector.head.classification_head.num_classes, 0
    if isinstance(detector, SSD):
        return detector.head.classification_head.num_columns - 1, 1
    raise TypeError(f"expected a torchvision FasterRCNN, RetinaNet, FCOS or SSD, got {type(detector).__name__}")


# -------------------------------------------------------------------------------------------------- inference


class _Kept(NamedTuple):
    """One image's kept detections in the network's (resized) image frame.

    ``boxes`` ``(M, 4)`` xyxy; ``labels`` ``(M,)`` alcv ids; ``samples`` ``(T, M, C)`` class probabilities of
    each kept box under each pass (background left out)."""

    boxes: Tensor
    labels: Tensor
    samples: Tensor


def _passes(head: Callable[[list[Tensor]], Any], inputs: list[Tensor], passes: int, dropout: float) -> list[Any]:
    """The head's outputs on ``inputs``: once as they are, or ``passes`` times with dropout on the inputs."""
    if passes <= 1:
        return [head(inputs)]
    return [head([F.dropout(x, dropout, training=True) for x in inputs]) for _ in range(passes)]


def _top_candidates(scores: Tensor, threshold: float, k: int) -> Tensor:
    """Indices into the 1-D ``scores`` above ``threshold``, the ``k`` best, by descending score (torchvision's
    ``scores > thresh`` then ``topk``)."""
    above = torch.where(scores > threshold)[0]
    order = scores[above].topk(min(k, len(above))).indices
    return above[order]


def _fasterrcnn(model: tvd.FasterRCNN, images: ImageList, features: OrderedDict[str, Tensor], passes: int,
                dropout: float) -> list[_Kept]:
    """RoIHeads.postprocess_detections keeping the proposal of each box; MC dropout on the pooled RoI features."""
    heads = model.roi_heads
    proposals, _ = model.rpn(images, features)
    pooled = heads.box_roi_pool(features, proposals, images.image_sizes)  # (P, channels, 7, 7)

    outputs = _passes(lambda x: heads.box_predictor(heads.box_head(x[0])), [pooled], passes, dropout)
    probs = torch.stack([logits.float().softmax(dim=-1) for logits, _ in outputs])  # (T, P, C+1)
    regression = torch.stack([deltas.float() for _, deltas in outputs]).mean(dim=0)  # (P, 4 (C+1))
    boxes = heads.box_coder.decode(regression, proposals)  # (P, C+1, 4), class-specific boxes
    num_labels = probs.shape[-1]  # C + 1
    kept, start = [], 0
    for image_proposals, image_size in zip(proposals, images.image_sizes, strict=True):
        rows = slice(start, start + len(image_proposals))
        start += len(image_proposals)
        samples = probs[:, rows, 1:]  # (T, N, C)
        image_boxes = box_ops.clip_boxes_to_image(boxes[rows], image_size)[:, 1:].reshape(-1, 4)
        scores = samples.mean(dim=0).reshape(-1)  # flat index = proposal * C + class
        labels = torch.arange(num_labels - 1, device=scores.device).repeat(len(image_proposals))
        candidates = torch.where(scores > heads.score_thresh)[0]
        candidates = candidates[box_ops.remove_small_boxes(image_boxes[candidates], min_size=1e-2)]
        keep = box_ops.batched_nms(image_boxes[candidates], scores[candidates], labels[candidates] + 1,
                                   heads.nms_thresh)
        keep = candidates[keep[: heads.detections_per_img]]
        kept.append(_Kept(image_boxes[keep], labels[keep], samples[:, keep // (num_labels - 1)]))
    return kept


def _dense(model: tvd.RetinaNet | tvd.FCOS, images: ImageList, features: list[Tensor], passes: int,
           dropout: float) -> list[_Kept]:
    """RetinaNet / FCOS ``postprocess_detections`` keeping the anchor of each box; MC dropout on the FPN features
    fed to the classification head (FCOS's centerness comes from the regression head and stays deterministic)."""
    is_fcos = isinstance(model, tvd.FCOS)
    regression = model.head.regression_head(features)
    if is_fcos:
        regression, centerness = regression
        centerness = centerness.float().sigmoid()  # (B, N, 1)

    def class_head(inputs: list[Tensor]) -> Tensor:
        probs = model.head.classification_head(inputs).float().sigmoid()
        return torch.sqrt(probs * centerness) if is_fcos else probs

    probs = torch.stack(_passes(class_head, features, passes, dropout))  # (T, B, N, C)
    anchors = model.anchor_generator(images, features)
    locations = [x.shape[-2] * x.shape[-1] for x in features]
    per_location = probs.shape[2] // sum(locations)  # anchors per location (RetinaNet 9, FCOS 1)
    num_classes = probs.shape[-1]
    kept = []
    for i, image_size in enumerate(images.image_sizes):
        mean = probs[:, i].mean(dim=0)  # (N, C)
        candidates, offset = [], 0
        for level in locations:  # torchvision keeps the top-k (anchor, class) pairs per level
            scores = mean[offset : offset + level * per_location].reshape(-1)
            candidates.append(_top_candidates(scores, model.score_thresh, model.topk_candidates)
                              + offset * num_classes)
            offset += level * per_location
        flat = torch.cat(candidates)
        anchor, labels = flat // num_classes, flat % num_classes
        decode = model.box_coder.decode if is_fcos else model.box_coder.decode_single
        boxes = box_ops.clip_boxes_to_image(decode(regression[i, anchor], anchors[i][anchor]), image_size)
        keep = box_ops.batched_nms(boxes, mean.reshape(-1)[flat], labels, model.nms_thresh)
        keep = keep[: model.detections_per_img]
        kept.append(_Kept(boxes[keep], labels[keep], probs[:, i, anchor[keep]]))
    return kept


def _ssd(model: SSD, images: ImageList, features: list[Tensor], passes: int, dropout: float) -> list[_Kept]:
    """SSD ``postprocess_detections`` keeping the default box of each detection; MC dropout on the feature maps
    fed to the classification head."""
    regression = model.head.regression_head(features)
    probs = torch.stack(_passes(lambda x: model.head.classification_head(x).float().softmax(dim=-1), features,
                                passes, dropout))  # (T, B, N, C+1)
    anchors = model.anchor_generator(images, features)
    kept = []
    for i, image_size in enumerate(images.image_sizes):
        mean = probs[:, i].mean(dim=0)
        boxes = box_ops.clip_boxes_to_image(model.box_coder.decode_single(regression[i], anchors[i]), image_size)
        anchor, labels = [], []
        for label in range(1, mean.shape[-1]):  # torchvision keeps the top-k anchors per class
            best = _top_candidates(mean[:, label], model.score_thresh, model.topk_candidates)
            anchor.append(best)
            labels.append(torch.full_like(best, label))
        anchor, labels = torch.cat(anchor), torch.cat(labels)
        keep = box_ops.batched_nms(boxes[anchor], mean[anchor, labels], labels, model.nms_thresh)
        keep = keep[: model.detections_per_img]
        kept.append(_Kept(boxes[anchor[keep]], labels[keep] - 1, probs[:, i, anchor[keep], 1:]))
    return kept


def detect(detector: nn.Module, images: Sequence[Tensor], passes: int = 1, dropout: float = 0.0,
           embeddings: bool = False) -> list[dict[str, Tensor]]:
    """Detections of a torchvision detector with per-box class probabilities, optionally MC-dropout samples.

    The detector must be in eval mode (as in Lightning's validate/test/predict loops). Dropout is applied
    only when ``passes > 1``, through ``F.dropout(..., training=True)`` on the classification head's inputs
    (Faster R-CNN: the pooled RoI features fed to box head + predictor; RetinaNet/FCOS: the FPN levels;
    SSD: the backbone feature maps); boxes and labels are decoded from the passes' mean probabilities (and, for
    Faster R-CNN, mean box regression), so every pass is read at the same anchors / proposals. The passes'
    probabilities of all candidates are held at once: ``T x B x anchors x C`` floats (e.g. RetinaNet at
    800 x 1333: ~120k anchors per image).

    Args:
        detector: a torchvision FasterRCNN, RetinaNet, FCOS or SSD.
        images: ``B`` float ``(3, H_i, W_i)`` images in [0, 1].
        passes: forward passes of the classification head; 1 = deterministic.
        dropout: dropout probability of those passes.
        embeddings: whether to add each image's embedding.

    Returns:
        One dict per image: ``boxes`` ``(M, 4)`` xyxy in the input image's pixels (inside the image);
        ``labels`` ``(M,)`` int64 alcv class ids ``0..C-1``; ``scores`` ``(M,)`` = ``class_probs[m, labels[m]]``;
        ``class_probs`` ``(M, C)`` (see the module docstring; the mean over passes);
        ``prob_samples`` ``(T, M, C)`` each pass's class probabilities of the same boxes (only when
        ``passes > 1``); ``embedding`` ``(D,)`` (only when ``embeddings``): the backbone's last, coarsest feature
        map, averaged over the image's valid (non-padding) area: Faster R-CNN the FPN ``"pool"`` level, RetinaNet
        and FCOS ``P7`` (D = 256), SSDlite the last extra block (D = 128).
    """
    detector_num_classes(detector)  # TypeError for other models
    if passes < 1 or not 0.0 <= dropout < 1.0:
        raise ValueError(f"detect: expected passes >= 1 and 0 <= dropout < 1, got {passes} and {dropout}")
    if detector.training:
        raise RuntimeError("detect: put the detector in eval mode first (its transform, RPN and BatchNorm layers "
                           "behave differently in training mode)")
    original_sizes = [(int(image.shape[-2]), int(image.shape[-1])) for image in images]
    image_list, _ = detector.transform(list(images))
    features = detector.backbone(image_list.tensors)
    if isinstance(features, Tensor):
        features = OrderedDict([("0", features)])
    if isinstance(detector, tvd.FasterRCNN):
        kept = _fasterrcnn(detector, image_list, features, passes, dropout)
    elif isinstance(detector, tvd.RetinaNet | tvd.FCOS):
        kept = _dense(detector, image_list, list(features.values()), passes, dropout)
    else:
        kept = _ssd(detector, image_list, list(features.values()), passes, dropout)
    coarsest = next(reversed(features.values()))  # (B, D, h, w)
    padded_height, padded_width = image_list.tensors.shape[-2:]
    results = []
    for i, (item, size, original) in enumerate(zip(kept, image_list.image_sizes, original_sizes, strict=True)):
        class_probs = item.samples.mean(dim=0)
        boxes = box_ops.clip_boxes_to_image(resize_boxes(item.boxes, size, original), original)
        result = {"boxes": boxes, "labels": item.labels,
                  "scores": class_probs.gather(1, item.labels[:, None])[:, 0], "class_probs": class_probs}
        if passes > 1:
            result["prob_samples"] = item.samples
        if embeddings:
            rows = max(1, math.ceil(coarsest.shape[-2] * size[0] / padded_height))
            columns = max(1, math.ceil(coarsest.shape[-1] * size[1] / padded_width))
            result["embedding"] = coarsest[i, :, :rows, :columns].float().mean(dim=(1, 2))
        results.append(result)
    return results


# --------------------------------------------------------------------------------------------- LightningModule


class TorchvisionDetectionModule(DetectionModule):
    """Trains a torchvision 2D detector on batches from alcv's image collate function, evaluates it with COCO mAP.

    Batches: ``{"index": (B,), "images": B float (3, H, W) in [0, 1], "boxes": B float (M_i, 4) xyxy pixels,
    "labels": B int64 (M_i,) ids 0..C-1, ...}``.

    Args:
        detector: a torchvision FasterRCNN, RetinaNet, FCOS or SSD, e.g. from :func:`fasterrcnn`.
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
            found = None if samples is None else torch.ones(samples.shape[:2], dtype=torch.bool)
            frames.append(Detections(int(index), result["boxes"], result["labels"], result["scores"],
                                     result["class_probs"], result.get("embedding"), samples, found).cpu())
        return frames
