"""nuScenes-style 3D detection AP on centre distance in the ground plane.

The semantics are those of the nuScenes devkit's ``accumulate`` and ``calc_ap``
(``nuscenes/eval/detection/algo.py``) with ``dist_fcn=center_distance``, ``min_recall=0.1`` and
``min_precision=0.1``, with one deliberate difference: a class without any ground-truth box in the
evaluated frames gets AP = NaN (and a warning) and is left out of the mAP, where the devkit would count 0.

All coordinates are box centres ``x, y`` in metres in the LiDAR frame; ``z`` is ignored.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torchmetrics
from torch import Tensor

__all__ = ["DEFAULT_THRESHOLDS", "CenterDistanceMAP", "DetectionAP", "FrameBoxMetric", "center_distance_ap"]

DEFAULT_THRESHOLDS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
"""nuScenes centre-distance matching thresholds, metres."""

_MIN_RECALL = 0.1
_MIN_PRECISION = 0.1
_RECALL_POINTS = np.linspace(0.0, 1.0, 101)


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
        valid = self.ap[~np.isnan(self.ap).any(axis=1)]
        return valid.mean(axis=0) if len(valid) else np.full(self.ap.shape[1], np.nan)

    def as_dict(self) -> dict[str, float]:
        """``{"map": mAP, "ap/<class_name>": AP of that class, ...}`` as plain Python floats."""
        out = {"map": self.map}
        out.update({f"ap/{name}": float(v) for name, v in zip(self.class_names, self.ap_per_class, strict=True)})
        return out


@dataclass(eq=False)
class DetectionAP(APSummary):
    """Centre-distance average precision of a detector.

    Attributes:
        ap: ``(num_classes, num_thresholds)`` float64, AP of class ``c`` at threshold ``thresholds[t]``
            in ``[0, 1]``; the whole row is NaN for a class without ground truth. Read-only.
        thresholds: the matching thresholds, metres, centre distance in the x-y plane.
        class_names: ``num_classes`` names, index = class id.
    """

    ap: np.ndarray
    thresholds: tuple[float, ...]
    class_names: tuple[str, ...]

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


def center_distance_ap(
    pred_frame: np.ndarray,
    pred_xy: np.ndarray,
    pred_label: np.ndarray,
    pred_score: np.ndarray,
    gt_frame: np.ndarray,
    gt_xy: np.ndarray,
    gt_label: np.ndarray,
    class_names: Sequence[str],
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
) -> DetectionAP:
    """nuScenes centre-distance AP per class and threshold, and mAP.

    For each class and threshold, the predictions of that class are processed by descending score; among
    equal scores the one that comes later in the input arrays goes first (the devkit's
    ``sorted((score, index))[::-1]``). Each is greedily matched to the nearest not yet matched ground-truth
    box of the same class in the same frame (lowest GT index among equally distant ones); it is a true
    positive iff that distance is strictly below the threshold, otherwise a false positive. Precision is
    interpolated at 101 recall points without a monotone envelope, and
    ``AP = mean(clip(prec[11:] - 0.1, 0)) / 0.9``. A class without ground truth gets AP = NaN and a warning.

    Args:
        pred_frame: ``(P,)`` int, frame id of each prediction (any integers, e.g. absolute dataset indices).
        pred_xy: ``(P, 2)`` float, predicted box centre ``x, y`` in the LiDAR frame, metres.
        pred_label: ``(P,)`` int, class id in ``[0, len(class_names))``.
        pred_score: ``(P,)`` float, confidence.
        gt_frame: ``(G,)`` int, frame id of each ground-truth box.
        gt_xy: ``(G, 2)`` float, ground-truth box centre ``x, y`` in the LiDAR frame, metres.
        gt_label: ``(G,)`` int, class id in ``[0, len(class_names))``.
        class_names: one name per class id.
        thresholds: matching thresholds on the x-y centre distance, metres, each finite and > 0.

    Returns:
        A :class:`DetectionAP` with ``ap`` of shape ``(len(class_names), len(thresholds))``.

    Raises:
        ValueError: on wrong shapes or dtypes, mismatched lengths, labels out of range, non-finite
            coordinates or scores, or invalid ``class_names`` / ``thresholds``.
    """
    names = _check_class_names(class_names)
    thr = _check_thresholds(thresholds)
    num_classes = len(names)

    pred_frame, pred_xy, pred_label, pred_score, gt_frame, gt_xy, gt_label = _checked_detections(
        (pred_frame, pred_xy, pred_label, pred_score, gt_frame, gt_xy, gt_label), num_classes, "xy", _xy_matrix)
    num_pred = len(pred_frame)

    # Devkit processing order: sorted((score, position))[::-1].
    order = np.lexsort((np.arange(num_pred), pred_score))[::-1]
    pred_group, gt_group, num_groups = _frame_class_groups(
        pred_frame[order], pred_label[order], gt_frame, gt_label, num_classes
    )
    is_tp = _greedy_match(pred_group, pred_xy[order], gt_group, gt_xy, num_groups, thr)

    sorted_label = pred_label[order]
    npos = np.bincount(gt_label, minlength=num_classes)
    ap = np.zeros((num_classes, len(thr)), dtype=np.float64)
    for c in range(num_classes):
        if npos[c] == 0:
            warnings.warn(
                f"center_distance_ap: class '{names[c]}' (id {c}) has no ground-truth box in the evaluated "
                "frames; its AP is NaN and it is left out of the mAP.",
                UserWarning,
                stacklevel=2,
            )
            ap[c] = np.nan
            continue
        class_tp = is_tp[:, sorted_label == c]
        if class_tp.shape[1] == 0:
            continue  # no predictions: precision curve all zeros, AP 0
        tp = np.cumsum(class_tp, axis=1).astype(float)
        fp = np.cumsum(~class_tp, axis=1).astype(float)
        prec = tp / (fp + tp)
        rec = tp / float(npos[c])
        for t in range(len(thr)):
            ap[c, t] = _calc_ap(np.interp(_RECALL_POINTS, rec[t], prec[t], right=0))
    return DetectionAP(ap=ap, thresholds=tuple(thr.tolist()), class_names=names)


def _checked_detections(arrays: Sequence[Any], num_classes: int, box_name: str,
                        box_matrix: Callable[[str, Any, int, str], np.ndarray]) -> tuple[np.ndarray, ...]:
    """Validate ``(pred_frame, pred_<box_name>, pred_label, pred_score, gt_frame, gt_<box_name>, gt_label)``;
    ``box_matrix(name, value, length, length_of)`` checks a box array. Errors name the argument."""
    pred_frame, pred_boxes, pred_label, pred_score, gt_frame, gt_boxes, gt_label = arrays
    pred_frame = _int_vector("pred_frame", pred_frame)
    gt_frame = _int_vector("gt_frame", gt_frame)
    num_pred, num_gt = len(pred_frame), len(gt_frame)
    return (pred_frame, box_matrix(f"pred_{box_name}", pred_boxes, num_pred, "pred_frame"),
            _labels("pred_label", pred_label, num_pred, "pred_frame", num_classes),
            _float_vector("pred_score", pred_score, num_pred, "pred_frame"),
            gt_frame, box_matrix(f"gt_{box_name}", gt_boxes, num_gt, "gt_frame"),
            _labels("gt_label", gt_label, num_gt, "gt_frame", num_classes))


def _calc_ap(precision: np.ndarray) -> float:
    """The devkit's ``calc_ap``: ``precision`` is the ``(101,)`` interpolated curve; returns AP in [0, 1]."""
    prec = precision[round(100 * _MIN_RECALL) + 1 :] - _MIN_PRECISION
    prec[prec < 0] = 0
    return float(np.mean(prec)) / (1.0 - _MIN_PRECISION)


def _frame_class_groups(
    pred_frame: np.ndarray,
    pred_label: np.ndarray,
    gt_frame: np.ndarray,
    gt_label: np.ndarray,
    num_classes: int,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Dense ids of the (frame, class) groups that contain predictions.

    Returns ``(pred_group (P,), gt_group (G,), num_groups)``; GT boxes in groups without predictions get
    ``-1``. Groups are numbered by descending number of predictions, so the groups that still have a
    prediction of rank ``r`` are always a prefix ``0..n_r-1``.
    """
    num_pred = len(pred_frame)
    _, frame_idx = np.unique(np.concatenate([pred_frame, gt_frame]), return_inverse=True)
    key = frame_idx.reshape(-1).astype(np.int64) * num_classes + np.concatenate([pred_label, gt_label])
    uniq, inverse = np.unique(key, return_inverse=True)
    inverse = inverse.reshape(-1)
    counts = np.bincount(inverse[:num_pred], minlength=len(uniq))
    by_count = np.argsort(-counts, kind="stable")
    num_groups = int(np.count_nonzero(counts))
    new_id = np.full(len(uniq), -1, dtype=np.int64)
    new_id[by_count[:num_groups]] = np.arange(num_groups)
    return new_id[inverse[:num_pred]], new_id[inverse[num_pred:]], num_groups


def _rank_in_group(group: np.ndarray, num_groups: int) -> np.ndarray:
    """``(N,)`` position of each element among the elements of its group, in input order."""
    perm = np.argsort(group, kind="stable")
    counts = np.bincount(group, minlength=num_groups)
    starts = np.cumsum(counts) - counts
    rank = np.empty(len(group), dtype=np.int64)
    rank[perm] = np.arange(len(group)) - starts[group[perm]]
    return rank


def _greedy_match(
    pred_group: np.ndarray,
    pred_xy: np.ndarray,
    gt_group: np.ndarray,
    gt_xy: np.ndarray,
    num_groups: int,
    thresholds: np.ndarray,
) -> np.ndarray:
    """Devkit greedy matching of all groups and thresholds at once.

    Args:
        pred_group: ``(P,)`` group id in ``[0, num_groups)`` of each prediction, predictions in processing
            order, groups numbered by descending number of predictions (see :func:`_frame_class_groups`).
        pred_xy: ``(P, 2)`` centres, metres, same order.
        gt_group: ``(G,)`` group id of each GT box, ``-1`` for boxes no prediction can reach.
        gt_xy: ``(G, 2)`` centres, metres; within a group, lower input index wins distance ties.
        num_groups: number of groups.
        thresholds: ``(T,)`` distance thresholds, metres.

    Returns:
        ``(T, P)`` bool, whether each prediction is a true positive at each threshold.
    """
    num_thr, num_pred = len(thresholds), len(pred_group)
    is_tp = np.zeros((num_thr, num_pred), dtype=bool)
    reachable = gt_group >= 0
    gt_group, gt_xy = gt_group[reachable], gt_xy[reachable]
    if num_pred == 0 or len(gt_group) == 0:
        return is_tp

    # GT boxes padded per group: (num_groups, max_gt, 2); padding is marked as already taken.
    gt_rank = _rank_in_group(gt_group, num_groups)
    max_gt = int(gt_rank.max()) + 1
    gt_table = np.zeros((num_groups, max_gt, 2), dtype=np.float64)
    gt_table[gt_group, gt_rank] = gt_xy
    taken = np.ones((num_thr, num_groups, max_gt), dtype=bool)
    taken[:, gt_group, gt_rank] = False

    # Predictions ordered by (rank in group, group): those of rank r are groups 0..active[r]-1.
    pred_rank = _rank_in_group(pred_group, num_groups)
    by_rank = np.lexsort((pred_group, pred_rank))
    active = np.bincount(pred_rank)
    start = 0
    for n in active:
        idx = by_rank[start : start + n]
        start += n
        diff = pred_xy[idx, None, :] - gt_table[:n]  # (n, max_gt, 2)
        dist = np.sqrt(diff[..., 0] * diff[..., 0] + diff[..., 1] * diff[..., 1])
        dist = np.where(taken[:, :n], np.inf, dist)  # (T, n, max_gt)
        nearest = dist.argmin(axis=2)  # (T, n): first minimum = lowest GT index
        min_dist = np.take_along_axis(dist, nearest[..., None], axis=2)[..., 0]
        match = min_dist < thresholds[:, None]
        t_idx, g_idx = np.nonzero(match)
        taken[t_idx, g_idx, nearest[t_idx, g_idx]] = True
        is_tp[:, idx] = match
    return is_tp


def _check_class_names(class_names: Sequence[str]) -> tuple[str, ...]:
    if isinstance(class_names, str) or not isinstance(class_names, Sequence):
        raise ValueError(f"class_names: expected a sequence of str, got {type(class_names).__name__}")
    names = tuple(class_names)
    if not names or not all(isinstance(n, str) for n in names):
        raise ValueError(f"class_names: expected a non-empty sequence of str, got {names!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"class_names: expected unique names, got {names!r}")
    return names


def _check_thresholds(thresholds: Sequence[float]) -> np.ndarray:
    thr = np.asarray(thresholds, dtype=np.float64)
    if thr.ndim != 1 or thr.size == 0 or not np.all(np.isfinite(thr)) or np.any(thr <= 0):
        raise ValueError(
            "thresholds: expected a non-empty 1-D sequence of finite distances > 0 (metres), "
            f"got {thresholds!r}"
        )
    return thr


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


def _xy_matrix(name: str, value: Any, length: int, length_of: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.size == 0:
        arr = arr.reshape(0, 2)
    if arr.shape != (length, 2):
        raise ValueError(
            f"{name}: expected shape ({length}, 2) (length of {length_of}) of centre x, y in metres, "
            f"got {arr.shape}"
        )
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name}: expected a real-valued dtype, got {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: expected finite coordinates, got NaN or inf")
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


class CenterDistanceMAP(FrameBoxMetric):
    """Accumulates detections over batches (and DDP ranks, see :class:`FrameBoxMetric`) and computes
    :func:`center_distance_ap`; the boxes' centre ``x, y`` (metres, LiDAR frame) is what is kept of them.

    Args:
        class_names: one name per class id.
        thresholds: centre-distance matching thresholds, metres.
        **kwargs: forwarded to :class:`torchmetrics.Metric`.
    """

    box_width = 2

    def __init__(
        self, class_names: Sequence[str], thresholds: Sequence[float] = DEFAULT_THRESHOLDS, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.class_names = _check_class_names(class_names)
        self.thresholds = tuple(_check_thresholds(thresholds).tolist())

    def _box_columns(self, name: str, boxes: Tensor) -> Tensor:
        return _box_centres(name, boxes)

    def compute(self) -> DetectionAP:
        """AP of everything accumulated so far; all classes are NaN if no ground truth was seen."""
        state = self._accumulated()
        return center_distance_ap(
            pred_frame=state["pred_frame"],
            pred_xy=state["pred_boxes"],
            pred_label=state["pred_label"],
            pred_score=state["pred_score"],
            gt_frame=state["gt_frame"],
            gt_xy=state["gt_boxes"],
            gt_label=state["gt_label"],
            class_names=self.class_names,
            thresholds=self.thresholds,
        )


def _box_centres(name: str, boxes: Tensor) -> Tensor:
    """``(M, 2)`` centre ``x, y`` of ``(M, D>=2)`` boxes; an empty tensor of any shape means no boxes."""
    boxes = torch.as_tensor(boxes).detach()
    if boxes.numel() == 0:
        return boxes.reshape(0, 2)
    if boxes.ndim != 2 or boxes.shape[1] < 2:
        raise ValueError(
            f"{name}: expected shape (M, 7) [x, y, z, dx, dy, dz, yaw], got {tuple(boxes.shape)}"
        )
    return boxes[:, :2]


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
