"""Inference of torchvision's 2D detectors with per-box class probabilities, MC-dropout samples and embeddings.

:func:`detect` runs the torchvision model's own modules (transform, backbone, RPN / RoI heads or dense heads,
anchor generator, box coder) and the same selection as torchvision's ``postprocess_detections`` (score
threshold, top-k candidates, class-wise NMS, ``detections_per_img``), but remembers which anchor or proposal
each kept box came from. That gives, per box, the full class-probability row the score was taken from, and lets
the classification head be re-run several times with dropout on the same features (MC dropout) and be read at
the same anchors. With one pass its boxes, scores and labels equal torchvision's own eval output.

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
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import detection as tvd
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.ssd import SSD
from torchvision.models.detection.transform import resize_boxes
from torchvision.ops import boxes as box_ops

__all__ = ["detect", "detector_num_classes"]


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

