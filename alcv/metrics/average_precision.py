"""What alcv's AP metrics share: the AP table types, the checks of flat detection arrays, the greedy matching of
predictions to ground truth within (frame, class) groups, and the torchmetrics base that accumulates per-box
detections by frame.

Detections are flat per-box arrays: ``pred_frame`` / ``gt_frame`` ``(P,)`` / ``(G,)`` int frame ids (any
integers, e.g. absolute dataset indices), the boxes ``(P, D)`` / ``(G, D)`` float64 in whatever columns a metric
keeps of them, ``pred_label`` / ``gt_label`` int class ids in ``[0, num_classes)`` and ``pred_score`` ``(P,)``
float confidences.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torchmetrics
from torch import Tensor

__all__ = ["APSummary", "DetectionAP", "FrameBoxMetric", "Reliability", "check_class_names", "checked_detections",
           "greedy_match", "reliability"]

#: score bins of a :class:`Reliability` table: equal bins of [0, 1]
RELIABILITY_BINS = 10


class APSummary:
    """Summaries of an AP table ``ap`` ``(num_classes, num_columns)`` (NaN rows: classes without ground truth)
    with ``class_names``; the columns are matching thresholds or levels."""

    ap: np.ndarray
    class_names: tuple[str, ...]

    @property
    def ap_per_class(self) -> np.ndarray:
        """``(num_classes,)`` float64, AP averaged over the columns; NaN for classes without ground truth."""
        return self.ap.mean(axis=1)

    @property
    def map(self) -> float:
        """Mean AP over the classes that have ground truth; NaN if no class has any."""
        per_class = self.ap_per_class
        valid = per_class[~np.isnan(per_class)]
        return float(valid.mean()) if valid.size else float("nan")

    def _ap_per_column(self) -> np.ndarray:
        """``(num_columns,)`` AP averaged over the classes that have ground truth; NaN if none has."""
        valid = self.ap[~np.isnan(self.ap).any(axis=1)]
        return valid.mean(axis=0) if len(valid) else np.full(self.ap.shape[1], np.nan)

    def as_dict(self) -> dict[str, float]:
        """``{"map": mAP, "ap/<class_name>": AP of that class, ...}`` as plain Python floats."""
        out = {"map": self.map}
        out.update({f"ap/{name}": float(v) for name, v in zip(self.class_names, self.ap_per_class, strict=True)})
        return out


# Not frozen, like DetectionAP, which holds it.
@dataclass(eq=False)
class Reliability:
    """How often a predicted box of a given score is right: the reliability table of a detector's scores.

    Attributes:
        threshold: the matching threshold at which a box counts as right (a true positive).
        edges: ``(B + 1,)`` score bin edges over [0, 1]; bin ``b`` holds scores in ``[edges[b], edges[b + 1])``, the
            last bin also 1.0.
        mean_score: ``(B,)`` mean score of the boxes in each bin (NaN for an empty bin).
        precision: ``(B,)`` share of those boxes that are true positives (NaN for an empty bin).
        boxes: ``(B,)`` int number of boxes per bin.
    """

    threshold: float
    edges: np.ndarray
    mean_score: np.ndarray
    precision: np.ndarray
    boxes: np.ndarray

    @property
    def calibration_error(self) -> float:
        """Expected calibration error: the box-weighted mean of ``|precision - mean_score|`` over the bins (0: a
        box of score s is right with probability s); NaN without boxes."""
        filled = self.boxes > 0
        if not filled.any():
            return float("nan")
        gap = np.abs(self.precision[filled] - self.mean_score[filled])
        return float((gap * self.boxes[filled]).sum() / self.boxes[filled].sum())

    def as_dict(self) -> dict[str, Any]:
        """Plain lists and floats (NaN stays NaN): threshold, edges, mean_score, precision, boxes,
        calibration_error."""
        return {"threshold": float(self.threshold), "edges": self.edges.tolist(),
                "mean_score": self.mean_score.tolist(), "precision": self.precision.tolist(),
                "boxes": self.boxes.tolist(), "calibration_error": self.calibration_error}


def reliability(scores: np.ndarray, is_tp: np.ndarray, threshold: float, bins: int = RELIABILITY_BINS) -> Reliability:
    """The :class:`Reliability` of predicted boxes with ``scores`` ``(P,)`` in [0, 1] (clipped) and true-positive
    flags ``is_tp`` ``(P,)`` bool at matching ``threshold``."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, np.clip(scores, 0.0, 1.0), side="right") - 1, 0, bins - 1)
    boxes = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_score = np.bincount(which, weights=scores, minlength=bins) / boxes
        precision = np.bincount(which, weights=is_tp.astype(np.float64), minlength=bins) / boxes
    return Reliability(float(threshold), edges, mean_score, precision, boxes.astype(np.int64))


# Not frozen: torchmetrics rebuilds a compute() result field by field (apply_to_collection); the arrays are read-only.
@dataclass(eq=False)
class DetectionAP(APSummary):
    """Average precision of a detector per class and matching threshold: centre distance in metres
    (:func:`~alcv.metrics.center_distance.center_distance_ap`) or box IoU (:class:`~alcv.metrics.coco_map.CocoMAP`).

    Attributes:
        ap: ``(num_classes, num_thresholds)`` float64, AP of class ``c`` at threshold ``thresholds[t]``
            in ``[0, 1]``; the whole row is NaN for a class without ground truth. Read-only.
        thresholds: the matching thresholds.
        class_names: ``num_classes`` names, index = class id.
        reliability: how often boxes of each score are right, at one of the thresholds (None where the metric
            does not compute it).
    """

    ap: np.ndarray
    thresholds: tuple[float, ...]
    class_names: tuple[str, ...]
    reliability: Reliability | None = None

    def __post_init__(self) -> None:
        ap = np.array(self.ap, dtype=np.float64)
        expected = (len(self.class_names), len(self.thresholds))
        if ap.shape != expected:
            raise ValueError(f"ap: expected shape (num_classes, num_thresholds) = {expected}, got {ap.shape}")
        ap.setflags(write=False)
        self.ap = ap
        self.thresholds = tuple(float(t) for t in self.thresholds)
        self.class_names = tuple(str(n) for n in self.class_names)

    @property
    def ap_per_threshold(self) -> np.ndarray:
        """``(num_thresholds,)`` AP averaged over the classes that have ground truth; NaN if none has."""
        return self._ap_per_column()


def check_class_names(class_names: Sequence[str]) -> tuple[str, ...]:
    """``class_names`` as a tuple; raises ``ValueError`` unless it is a non-empty sequence of unique str."""
    if isinstance(class_names, str) or not isinstance(class_names, Sequence):
        raise ValueError(f"class_names: expected a sequence of str, got {type(class_names).__name__}")
    names = tuple(class_names)
    if not names or not all(isinstance(n, str) for n in names):
        raise ValueError(f"class_names: expected a non-empty sequence of str, got {names!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"class_names: expected unique names, got {names!r}")
    return names


def checked_detections(arrays: Sequence[Any], num_classes: int, box_name: str,
                       box_matrix: Callable[[str, Any, int, str], np.ndarray]) -> tuple[np.ndarray, ...]:
    """Validate ``(pred_frame, pred_<box_name>, pred_label, pred_score, gt_frame, gt_<box_name>, gt_label)``.

    ``box_matrix(name, value, length, length_of)`` checks a box array of ``length`` rows (that of ``length_of``).
    Returns the arrays in the same order: frames and labels int64, scores float64, boxes as ``box_matrix``
    returns them. Raises ``ValueError`` naming the argument on wrong shapes or dtypes, mismatched lengths, labels
    outside ``[0, num_classes)`` or non-finite scores.
    """
    pred_frame, pred_boxes, pred_label, pred_score, gt_frame, gt_boxes, gt_label = arrays
    pred_frame = _int_vector("pred_frame", pred_frame)
    gt_frame = _int_vector("gt_frame", gt_frame)
    num_pred, num_gt = len(pred_frame), len(gt_frame)
    return (pred_frame, box_matrix(f"pred_{box_name}", pred_boxes, num_pred, "pred_frame"),
            _labels("pred_label", pred_label, num_pred, "pred_frame", num_classes),
            _float_vector("pred_score", pred_score, num_pred, "pred_frame"),
            gt_frame, box_matrix(f"gt_{box_name}", gt_boxes, num_gt, "gt_frame"),
            _labels("gt_label", gt_label, num_gt, "gt_frame", num_classes))


def greedy_match(
    pred_frame: np.ndarray,
    pred_label: np.ndarray,
    gt_frame: np.ndarray,
    gt_label: np.ndarray,
    pair_score: Callable[[np.ndarray, np.ndarray], np.ndarray],
    min_score: np.ndarray,
    strict: bool = False,
) -> np.ndarray:
    """Greedy matching of all (frame, class) groups and levels at once.

    Independently per level, the predictions are processed in the given order. Each is compared with the
    ground-truth boxes of its class in its frame that no earlier prediction has matched at that level; it is a
    true positive, and takes that box, iff the highest pair score among them (lowest ground-truth index among
    equal scores) reaches its class's ``min_score`` at that level (``>=``; ``>`` with ``strict``).

    Args:
        pred_frame: ``(P,)`` int frame ids, predictions in processing order.
        pred_label: ``(P,)`` int class ids in ``[0, C)``, same order.
        gt_frame: ``(G,)`` int frame ids of the ground-truth boxes.
        gt_label: ``(G,)`` int class ids in ``[0, C)``.
        pair_score: ``pair_score(pred_index, gt_index)`` is the ``(K,)`` float64 score (higher = better match) of
            the ``K`` pairs ``(pred_index[k], gt_index[k])``; it is called once, with pairs of the same group only.
        min_score: ``(C, L)`` the score a match needs, per class and level.
        strict: whether a match needs a score strictly above ``min_score``.

    Returns:
        ``(L, P)`` bool, whether each prediction is a true positive at each level.
    """
    num_classes, num_levels = min_score.shape
    num_pred = len(pred_frame)
    is_tp = np.zeros((num_levels, num_pred), dtype=bool)
    pred_group, gt_group, num_groups = _frame_class_groups(pred_frame, pred_label, gt_frame, gt_label, num_classes)

    # Ground-truth boxes by group (input order within a group); groups without predictions are dropped.
    gt_by_group = np.flatnonzero(gt_group >= 0)
    gt_by_group = gt_by_group[np.argsort(gt_group[gt_by_group], kind="stable")]
    gt_count = np.bincount(gt_group[gt_by_group], minlength=num_groups)
    gt_start = np.cumsum(gt_count) - gt_count

    # Predictions that have ground truth to compare with, ordered by (rank within group, processing order):
    # one matching round per rank handles at most one prediction per group, so rounds never conflict.
    rank = rank_in_group(pred_group, num_groups)
    pair_count = gt_count[pred_group]
    candidates = np.flatnonzero(pair_count > 0)
    candidates = candidates[np.argsort(rank[candidates], kind="stable")]
    round_size = np.bincount(rank[candidates])

    # Every (prediction, ground truth) pair of those predictions, grouped by prediction in that order.
    pairs_per_pred = pair_count[candidates]
    pair_pred = np.repeat(candidates, pairs_per_pred)
    first_pair = np.cumsum(pairs_per_pred) - pairs_per_pred
    within = np.arange(len(pair_pred)) - np.repeat(first_pair, pairs_per_pred)
    pair_gt = gt_by_group[np.repeat(gt_start[pred_group[candidates]], pairs_per_pred) + within]
    score = pair_score(pair_pred, pair_gt)

    taken = np.zeros((num_levels, len(gt_frame)), dtype=bool)
    pred_min_score = min_score[pred_label].T  # (L, P)
    round_end = np.cumsum(round_size)
    for round_start, round_stop in zip(round_end - round_size, round_end, strict=True):
        preds = candidates[round_start:round_stop]
        segment_size = pairs_per_pred[round_start:round_stop]
        pair_start = first_pair[round_start]
        segment_start = first_pair[round_start:round_stop] - pair_start
        pair_stop = pair_start + segment_size.sum()

        gts = pair_gt[pair_start:pair_stop]
        round_score = np.where(taken[:, gts], -np.inf, score[pair_start:pair_stop])  # (L, pairs)
        best_score = np.maximum.reduceat(round_score, segment_start, axis=1)  # (L, preds)
        # First pair of each segment reaching its maximum = lowest ground-truth input index.
        is_best = round_score == np.repeat(best_score, segment_size, axis=1)
        best_pair = np.minimum.reduceat(np.where(is_best, np.arange(len(gts)), len(gts)), segment_start, axis=1)
        needed = pred_min_score[:, preds]
        matched = best_score > needed if strict else best_score >= needed
        level, which = np.nonzero(matched)
        taken[level, gts[best_pair[level, which]]] = True
        is_tp[:, preds] = matched
    return is_tp


def _frame_class_groups(
    pred_frame: np.ndarray,
    pred_label: np.ndarray,
    gt_frame: np.ndarray,
    gt_label: np.ndarray,
    num_classes: int,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Dense ids ``0..num_groups-1`` of the (frame, class) groups that contain predictions.

    Returns ``(pred_group (P,), gt_group (G,), num_groups)``; GT boxes in groups without predictions get ``-1``.
    """
    num_pred = len(pred_frame)
    _, frame_idx = np.unique(np.concatenate([pred_frame, gt_frame]), return_inverse=True)
    key = frame_idx.reshape(-1).astype(np.int64) * num_classes + np.concatenate([pred_label, gt_label])
    uniq, inverse = np.unique(key, return_inverse=True)
    inverse = inverse.reshape(-1)
    has_pred = np.zeros(len(uniq), dtype=bool)
    has_pred[inverse[:num_pred]] = True
    new_id = np.where(has_pred, np.cumsum(has_pred) - 1, -1)
    return new_id[inverse[:num_pred]], new_id[inverse[num_pred:]], int(np.count_nonzero(has_pred))


def rank_in_group(group: np.ndarray, num_groups: int) -> np.ndarray:
    """``(N,)`` position of each element among the elements of its group, in input order."""
    perm = np.argsort(group, kind="stable")
    counts = np.bincount(group, minlength=num_groups)
    starts = np.cumsum(counts) - counts
    rank = np.empty(len(group), dtype=np.int64)
    rank[perm] = np.arange(len(group)) - starts[group[perm]]
    return rank


def _int_vector(name: str, value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.size == 0:
        arr = arr.reshape(0)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D integer array, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        raise ValueError(f"{name}: expected an integer dtype, got {arr.dtype}")
    return arr.astype(np.int64)


def _labels(name: str, value: Any, length: int, length_of: str, num_classes: int) -> np.ndarray:
    arr = _int_vector(name, value)
    if len(arr) != length:
        raise ValueError(f"{name}: expected length {length} (that of {length_of}), got {len(arr)}")
    if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        raise ValueError(
            f"{name}: expected class ids in [0, {num_classes}), got values in [{arr.min()}, {arr.max()}]"
        )
    return arr


def _float_vector(name: str, value: Any, length: int, length_of: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.size == 0:
        arr = arr.reshape(0)
    if arr.ndim != 1 or len(arr) != length:
        raise ValueError(f"{name}: expected shape ({length},) (length of {length_of}), got {arr.shape}")
    if arr.size and arr.dtype.kind not in "iuf":
        raise ValueError(f"{name}: expected a real-valued dtype, got {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: expected finite values, got NaN or inf")
    return arr


class FrameBoxMetric(torchmetrics.Metric):
    """Accumulates per-box detections and ground truth by frame, over batches and DDP ranks; subclasses turn
    each batch's boxes into the ``box_width`` columns they keep (:meth:`_box_columns`) and compute from
    :meth:`_accumulated`.

    States are per-box lists concatenated across ranks (``dist_reduce_fx="cat"``): frame id, the box columns
    (float64), label and score. Label/value checks happen in ``compute``. Frame ids must be unique per frame
    across all updates and ranks (e.g. absolute dataset indices); in DDP every rank must have called ``update``
    at least once before ``compute``.
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False
    #: the number of columns kept of each box
    box_width: ClassVar[int]

    pred_frame: list[Tensor]
    pred_boxes: list[Tensor]
    pred_label: list[Tensor]
    pred_score: list[Tensor]
    gt_frame: list[Tensor]
    gt_boxes: list[Tensor]
    gt_label: list[Tensor]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for prefix in ("pred", "gt"):
            for field in ("frame", "boxes", "label"):
                self.add_state(f"{prefix}_{field}", default=[], dist_reduce_fx="cat")
        self.add_state("pred_score", default=[], dist_reduce_fx="cat")

    def _box_columns(self, name: str, boxes: Tensor) -> Tensor:
        """The ``(M, box_width)`` columns kept of ``(M, 7)`` boxes (``name`` is for error messages)."""
        raise NotImplementedError

    def update(
        self,
        preds: Sequence[Mapping[str, Tensor]],
        targets: Sequence[Mapping[str, Tensor]],
        frame_ids: Tensor,
    ) -> None:
        """Add one batch of ``B`` frames.

        Args:
            preds: ``B`` dicts with ``"boxes"`` ``(M_i, 7)`` ``[x, y, z, dx, dy, dz, yaw]`` in the LiDAR
                frame, metres / radians, ``"labels"`` ``(M_i,)`` int class ids and ``"scores"`` ``(M_i,)`` float.
            targets: ``B`` dicts with ``"boxes"`` ``(G_i, 7)`` and ``"labels"`` ``(G_i,)``, same conventions.
            frame_ids: ``(B,)`` int, absolute dataset index of each frame.
        """
        frame_ids = torch.as_tensor(frame_ids)
        if frame_ids.is_floating_point() or frame_ids.is_complex():
            raise ValueError(f"frame_ids: expected an integer tensor, got {frame_ids.dtype}")
        if frame_ids.ndim != 1 or len(frame_ids) != len(preds) or len(targets) != len(preds):
            raise ValueError(
                "frame_ids: expected shape (B,) with B = len(preds) = len(targets), got "
                f"shape {tuple(frame_ids.shape)}, len(preds)={len(preds)}, len(targets)={len(targets)}"
            )
        frame_ids = frame_ids.to(device=self.device, dtype=torch.int64)
        for prefix, batch, with_score in (("pred", preds, True), ("gt", targets, False)):
            boxes, labels, scores = [], [], []
            for i, item in enumerate(batch):
                where = f"{'preds' if with_score else 'targets'}[{i}]"
                columns = self._box_columns(f"{where}['boxes']", item["boxes"])
                boxes.append(columns.to(device=self.device, dtype=torch.float64))
                labels.append(_per_box(f"{where}['labels']", item["labels"], len(columns), torch.int64, self.device))
                if with_score:
                    scores.append(
                        _per_box(f"{where}['scores']", item["scores"], len(columns), torch.float64, self.device)
                    )
            counts = torch.tensor([len(b) for b in boxes], device=self.device)
            getattr(self, f"{prefix}_frame").append(torch.repeat_interleave(frame_ids, counts))
            getattr(self, f"{prefix}_boxes").append(_cat(boxes, (0, self.box_width), torch.float64, self.device))
            getattr(self, f"{prefix}_label").append(_cat(labels, (0,), torch.int64, self.device))
            if with_score:
                self.pred_score.append(_cat(scores, (0,), torch.float64, self.device))

    def _accumulated(self) -> dict[str, np.ndarray]:
        """Everything accumulated so far as CPU arrays: ``pred_frame``, ``pred_boxes`` ``(N, box_width)``,
        ``pred_label``, ``pred_score``, ``gt_frame``, ``gt_boxes``, ``gt_label``."""
        shapes = {"frame": ((0,), torch.int64), "boxes": ((0, self.box_width), torch.float64),
                  "label": ((0,), torch.int64), "score": ((0,), torch.float64)}
        arrays = {}
        for name in ("pred_frame", "pred_boxes", "pred_label", "pred_score", "gt_frame", "gt_boxes", "gt_label"):
            empty_shape, dtype = shapes[name.split("_")[1]]
            value = getattr(self, name)
            tensor = _cat(value, empty_shape, dtype, self.device) if isinstance(value, list) else value
            arrays[name] = tensor.reshape(-1, *empty_shape[1:]).to(device="cpu", dtype=dtype).numpy()
        return arrays


def _per_box(name: str, value: Tensor, length: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    value = torch.as_tensor(value).detach()
    if value.numel() == 0:
        value = value.reshape(0)
    if value.shape != (length,):
        raise ValueError(f"{name}: expected shape ({length},) (one per box), got {tuple(value.shape)}")
    if value.numel() and not dtype.is_floating_point and value.is_floating_point():
        raise ValueError(f"{name}: expected an integer tensor, got {value.dtype}")
    return value.to(device=device, dtype=dtype)


def _cat(
    tensors: Sequence[Tensor], empty_shape: tuple[int, ...], dtype: torch.dtype, device: torch.device
) -> Tensor:
    return torch.cat(list(tensors)) if tensors else torch.zeros(empty_shape, dtype=dtype, device=device)
