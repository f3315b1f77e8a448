"""Uncertainty sampling: per-box uncertainty measures, their aggregation into one score per frame (pure
functions over arrays) and :class:`UncertaintyStrategy`, which labels the most uncertain frames.

Every measure takes a box's per-class probabilities ``(M, C)`` (the contract of
:attr:`alcv.models.detections.Detections.class_probs`: softmax rows sum to 1 over the C object classes
plus a background that is left out; sigmoid rows hold C independent probabilities). Least confidence and
margin read the probabilities as given, so a sigmoid box that is unsure whether it is an object at all
scores as uncertain. Entropy and mutual information need a distribution: they use the row normalised over
the C classes (the class distribution given that the box is an object), which leaves softmax rows that
sum to 1 unchanged. On such rows every measure equals its textbook definition.

Least confidence grows as a box's top probability falls, all the way down to the detector's score threshold:
of a frame's boxes, the weakest detection (a near-certain background) is the "most uncertain", and with the
``max`` aggregation every frame that has one detection just above ``min_score`` scores about ``1 -
min_score``. Binary entropy instead reads each class probability as the Bernoulli it is for a sigmoid head
(is this an object of class c?) and is highest at 0.5, where the detector cannot tell object from background.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
from scipy.special import entr

from alcv.models.detections import Detections, PredictionRequest
from alcv.strategies.base import BoxFilter, PoolStats, select_by_score
from alcv.strategies.selection import Picker

AGGREGATIONS = ("max", "mean", "sum", "min", "topk_mean")
EMPTY_FRAME_POLICIES = ("least_uncertain", "most_uncertain")


def least_confidence(class_probs: np.ndarray) -> np.ndarray:
    """``1 - max_c p(c)`` per box, from ``(M, C)`` per-class probabilities; returns ``(M,)`` in [0, 1]."""
    if class_probs.shape[0] == 0:
        return np.zeros(0)
    return 1.0 - class_probs.max(axis=1)


def margin(class_probs: np.ndarray) -> np.ndarray:
    """``1 - (p1 - p2)`` per box, with p1 >= p2 the two highest class probabilities (p2 = 0 with one
    class); returns ``(M,)`` in [0, 1] for softmax rows."""
    if class_probs.shape[0] == 0:
        return np.zeros(0)
    if class_probs.shape[1] == 1:
        return 1.0 - class_probs[:, 0]
    top_two = -np.partition(-class_probs, 1, axis=1)[:, :2]
    return 1.0 - (top_two[:, 0] - top_two[:, 1])


def class_distribution(class_probs: np.ndarray) -> np.ndarray:
    """Rows of ``(..., C)`` probabilities normalised to sum to 1 (a row of zeros becomes uniform)."""
    class_probs = np.clip(np.asarray(class_probs, dtype=np.float64), 0.0, None)
    totals = class_probs.sum(axis=-1, keepdims=True)
    uniform = np.full_like(class_probs, 1.0 / max(class_probs.shape[-1], 1))
    return np.where(totals > 0, class_probs / np.where(totals > 0, totals, 1.0), uniform)


def entropy(class_probs: np.ndarray) -> np.ndarray:
    """Normalised entropy of each box's class distribution, ``H(p) / log C`` in [0, 1]; ``(M, C)`` ->
    ``(M,)``. With one class there is no class uncertainty and the entropy is 0."""
    if class_probs.shape[0] == 0 or class_probs.shape[1] < 2:
        return np.zeros(class_probs.shape[0])
    return entr(class_distribution(class_probs)).sum(axis=-1) / np.log(class_probs.shape[1])


def binary_entropy(class_probs: np.ndarray) -> np.ndarray:
    """Per box, the largest over classes of the Bernoulli entropy ``H(p_c) = -p_c log p_c - (1 - p_c)
    log(1 - p_c)``, divided by ``log 2``: ``(M, C)`` -> ``(M,)`` in [0, 1], 1 where some class probability is
    0.5 and 0 where every one is 0 or 1.

    Each class probability of a sigmoid head (CenterNet heatmaps, FCOS / RetinaNet logits) answers "is there
    an object of class c here?", and this is the entropy of that answer, as Haussmann et al. (Scalable Active
    Learning for Object Detection, IEEE IV 2020) score the per-class probability maps of a one-stage
    detector. Unlike least confidence it ranks a detection at 0.1 (nearly sure it is background) below one at
    0.5. The largest over classes, not the sum, so that small probabilities of the other classes do not add up
    to more than one undecided class."""
    if class_probs.shape[0] == 0:
        return np.zeros(0)
    probs = np.clip(np.asarray(class_probs, dtype=np.float64), 0.0, 1.0)
    return ((entr(probs) + entr(1.0 - probs)) / np.log(2.0)).max(axis=1)


def mutual_information(samples: np.ndarray) -> np.ndarray:
    """BALD: ``H(mean_t p_t) - mean_t H(p_t)`` per box, in nats, from ``(T, M, C)`` class probabilities of
    the same ``M`` boxes under ``T`` stochastic forward passes; returns ``(M,)``, >= 0.

    High when the passes disagree with each other (epistemic uncertainty), low when every pass gives the
    same distribution, however flat it is.
    """
    if samples.ndim != 3:
        raise ValueError(f"mutual_information: expected (T, M, C) samples, got shape {samples.shape}")
    distributions = class_distribution(samples)
    total = entr(distributions.mean(axis=0)).sum(axis=-1)
    expected = entr(distributions).sum(axis=-1).mean(axis=0)
    return np.maximum(total - expected, 0.0)


def vote_entropy(samples: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Vote entropy of a committee per box, in nats: ``-sum_v (V(v) / T) log(V(v) / T)`` over the
    outcomes v = each class, plus "missed" for members that did not detect the box at all.

    Args:
        samples: ``(T, M, C)`` class probabilities of the ``M`` boxes from each of ``T`` members.
        found: ``(T, M)`` bool, whether member t detected box m (its vote is then its top class).

    Returns:
        ``(M,)``: 0 when all members agree, ``log T`` at most.
    """
    if samples.ndim != 3 or found.shape != samples.shape[:2]:
        raise ValueError(f"vote_entropy: expected (T, M, C) samples and (T, M) found, got {samples.shape} and "
                         f"{found.shape}")
    members, boxes, classes = samples.shape
    votes = np.where(found, samples.argmax(axis=2), classes)  # (T, M); class C means "missed"
    counts = np.zeros((boxes, classes + 1))
    np.add.at(counts, (np.broadcast_to(np.arange(boxes), votes.shape), votes), 1.0)
    return entr(counts / max(members, 1)).sum(axis=-1)


UNCERTAINTIES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "least_confidence": least_confidence, "margin": margin, "entropy": entropy, "binary_entropy": binary_entropy}
#: per-box measures that need several predictions of each box: MC-dropout passes or committee members
SAMPLED_UNCERTAINTIES = ("bald", "vote_entropy")


def aggregate(values: np.ndarray, frame_of_box: np.ndarray, num_frames: int, how: str, top_k: int = 3) -> np.ndarray:
    """Reduce per-box ``values`` ``(M,)`` to per-frame scores ``(num_frames,)``.

    ``frame_of_box`` ``(M,)`` gives each box's frame in ``[0, num_frames)``; ``how`` is one of
    :data:`AGGREGATIONS` (``topk_mean``: the mean of a frame's ``top_k`` highest values, or of all of
    them if it has fewer). Frames without boxes get NaN (the caller applies the empty-frame policy).
    """
    if how not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation '{how}', expected one of {AGGREGATIONS}")
    counts = np.bincount(frame_of_box, minlength=num_frames).astype(np.float64)
    if how == "topk_mean":
        order = np.lexsort((-values, frame_of_box))
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        rank = np.arange(order.size) - starts[frame_of_box[order]]
        kept = order[rank < top_k]
        result = np.bincount(frame_of_box[kept], weights=values[kept], minlength=num_frames)
        result = result / np.maximum(np.minimum(counts, top_k), 1)
    elif how in ("sum", "mean"):
        result = np.bincount(frame_of_box, weights=values, minlength=num_frames).astype(np.float64)
        if how == "mean":
            result = result / np.maximum(counts, 1)
    else:
        result = np.full(num_frames, -np.inf if how == "max" else np.inf)
        (np.maximum if how == "max" else np.minimum).at(result, frame_of_box, values)
    result[counts == 0] = np.nan
    return result


class UncertaintyStrategy:
    """Per-box uncertainty, aggregated per frame, then the most uncertain frames.

    Args:
        uncertainty: per-box measure: ``least_confidence``, ``margin``, ``entropy``, ``binary_entropy`` (the
            functions of those names), ``bald`` (mutual information over ``passes`` MC-dropout passes) or
            ``vote_entropy`` (over a committee of ``members`` independently trained models).
        aggregation: how a frame's box values become its score: ``max`` (its most uncertain box),
            ``mean``, ``sum`` (favours crowded frames), ``min`` or ``topk_mean`` (mean of the ``top_k``
            highest).
        empty_frames: policy for frames with no box that counts: ``least_uncertain`` ranks them below
            every frame with detections (the detector is sure the frame holds nothing); ``most_uncertain``
            ranks them above all (a frame where it sees nothing may hold what it cannot detect yet). Ties
            among them are broken at random.
        min_score, class_weights, class_names: see :class:`BoxFilter`.
        passes, dropout: MC-dropout passes and their dropout probability (``bald``).
        members: committee size (``vote_entropy``).
        name: the strategy's name in results (default: ``uncertainty``).
    """

    def __init__(self, uncertainty: str = "least_confidence", aggregation: str = "max", top_k: int = 3,
                 empty_frames: str = "least_uncertain", min_score: float = 0.0,
                 class_weights: Mapping[str, float] | None = None, class_names: Sequence[str] | None = None,
                 passes: int = 1, dropout: float = 0.0, members: int = 1, name: str | None = None) -> None:
        known = (*UNCERTAINTIES, *SAMPLED_UNCERTAINTIES)
        if uncertainty not in known:
            raise ValueError(f"strategy.uncertainty: unknown '{uncertainty}', expected one of {known}")
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"strategy.aggregation: unknown '{aggregation}', expected one of {AGGREGATIONS}")
        if top_k < 1:
            raise ValueError(f"strategy.top_k: must be >= 1, got {top_k}")
        if empty_frames not in EMPTY_FRAME_POLICIES:
            raise ValueError(f"strategy.empty_frames: unknown '{empty_frames}', expected one of "
                             f"{EMPTY_FRAME_POLICIES}")
        if uncertainty == "bald" and not (passes >= 2 and 0.0 < dropout < 1.0):
            raise ValueError(f"strategy=bald needs strategy.passes >= 2 and strategy.dropout in (0, 1), got "
                             f"passes={passes}, dropout={dropout}")
        if uncertainty == "vote_entropy" and members < 2:
            raise ValueError(f"strategy=vote_entropy needs a committee: strategy.members >= 2, got {members}")
        self.name = name or uncertainty
        self.uncertainty = uncertainty
        self.aggregation = aggregation
        self.top_k = top_k
        self.empty_frames = empty_frames
        self.filter = BoxFilter(min_score, class_weights, class_names)
        self.request = PredictionRequest(passes=passes if uncertainty == "bald" else 1,
                                         dropout=dropout if uncertainty == "bald" else 0.0,
                                         members=members if uncertainty == "vote_entropy" else 1)

    def box_values(self, detections: Detections, kept: np.ndarray) -> np.ndarray:
        """The uncertainty ``(K,)`` of the ``kept`` boxes of one frame."""
        if self.uncertainty == "bald":
            return mutual_information(_samples(detections, "prob_samples")[:, kept])
        if self.uncertainty == "vote_entropy":
            return vote_entropy(_samples(detections, "prob_samples")[:, kept],
                                _samples(detections, "found")[:, kept])
        return UNCERTAINTIES[self.uncertainty](detections.class_probs.numpy()[kept])

    def frame_scores(self, detections: Sequence[Detections]) -> np.ndarray:
        """One score per frame ``(B,)``; frames with no box that counts get ``-inf`` or ``+inf``."""
        kept = [self.filter.kept(d) for d in detections]
        counts = np.array([int(k.sum()) for k in kept], dtype=np.int64)
        values = [self.box_values(d, k) for d, k in zip(detections, kept, strict=True)]
        num_classes = max((d.class_probs.shape[1] for d in detections), default=1)
        weights = self.filter.weights(num_classes)
        labels = [d.labels.numpy()[k] for d, k in zip(detections, kept, strict=True)]
        all_values = np.concatenate(values) * weights[np.concatenate(labels)] if values else np.zeros(0)
        frame_of_box = np.repeat(np.arange(len(detections)), counts)
        scores = aggregate(all_values, frame_of_box, len(detections), self.aggregation, self.top_k)
        return np.where(counts == 0, -np.inf if self.empty_frames == "least_uncertain" else np.inf, scores)

    def frame_stats(self, detections: Sequence[Detections]) -> dict[str, np.ndarray]:
        return {"score": self.frame_scores(detections)}

    def select(self, pool: PoolStats, picker: Picker, seed: int) -> np.ndarray:
        return select_by_score(pool, picker, pool.column("score"), seed)


def _samples(detections: Detections, name: str) -> np.ndarray:
    value = getattr(detections, name)
    if value is None:
        raise ValueError(f"frame {detections.index}: the detections carry no '{name}'; the strategy needs a model "
                         "that predicts several passes or a committee (see PredictionRequest)")
    return value.numpy()
