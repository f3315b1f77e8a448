"""The acquisition step: the frames a strategy selects under a loop's rules, and labeling them in the pool.

The loop calls :func:`acquire` once per acquisition, after pool inference (whose per-frame columns the
:class:`~alcv.callbacks.ActiveLearningCallback` collected and combined across processes) or without it, for
strategies that need no predictions. Under DDP global rank 0 alone runs the strategy and broadcasts its choice,
so every process labels the same frames.

Where the pool's labels are known (a simulated study, ``loop.pool_truth``), pool inference also gives each frame's
errors and score reliability against its ground truth (the ``truth_`` columns of :mod:`alcv.strategies.base`). No
strategy sees them but the error oracle (``needs_truth``); :func:`truth_summary` measures with them whether the picks
are the frames the model gets wrong, and whether its scores can be trusted there.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import lightning.pytorch as pl
import numpy as np
from scipy.stats import rankdata

from alcv.metrics.average_precision import Reliability
from alcv.pool import LabelPool
from alcv.seeding import SELECTION, derive_seed
from alcv.strategies import Picker, PoolStats, SelectionRules, Strategy
from alcv.strategies.base import TRUTH_CALIBRATION_COLUMN, TRUTH_COLUMN, TRUTH_PREFIX

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Selection:
    """The frames labeled at one loop: absolute ``indices`` ``(k,)`` in pick order (best first), their
    ``scores`` ``(k,)`` (the strategy's ``score`` column; zeros for strategies without one) and ``costs``
    ``(k,)`` under the loop's budget (1 per frame, or box equivalents).

    ``budget_left`` is the budget not spent, in the budget's unit; ``spread_relaxations`` how often the spreading
    rules were relaxed to spend it (:class:`~alcv.strategies.Picker`); ``shortfall`` says why budget was left
    although more frames could have been bought with it (None when the budget was spent: no unlabeled frame left
    costs less than what is left); ``truth`` is :func:`truth_summary` where pool inference gave the frames'
    errors (None otherwise)."""

    loop: int
    indices: np.ndarray
    scores: np.ndarray
    costs: np.ndarray
    budget_left: float = 0.0
    spread_relaxations: int = 0
    shortfall: str | None = None
    truth: dict[str, float | None] | None = None


def truth_summary(errors: np.ndarray, picked: np.ndarray, scores: np.ndarray | None,
                  calibration: np.ndarray | None = None) -> dict[str, float | None]:
    """Whether the picks are the frames the model gets wrong, from the candidates' ``errors`` ``(N, 3)``
    (ground-truth boxes, misses, false alarms; :data:`~alcv.strategies.base.TRUTH_COLUMN`), the ``picked``
    positions, the strategy's ``scores`` ``(N,)`` (None for a strategy without one) and the candidates' score
    reliability counts ``calibration`` ``(N, 3, bins)`` (:data:`~alcv.strategies.base.TRUTH_CALIBRATION_COLUMN`).

    Returns:
        ``pool_errors_per_frame`` and ``picked_errors_per_frame`` (misses plus false alarms, mean over the
        candidates and over the picks), ``pool_errors_per_box`` and ``picked_errors_per_box`` (the same over
        their ground-truth boxes), ``error_lift`` (picked over pool errors per frame: 1 is what random picks
        give on average, above 1 the picks hold more of the model's errors), ``box_lift`` (the same per box)
        and ``score_error_spearman`` (rank correlation over the candidates of the score with the frame's
        errors; None without scores or where either is constant); with ``calibration`` also
        ``pool_calibration_error`` and ``picked_calibration_error``, the expected calibration error of the
        predicted boxes of the candidates and of the picks (0: a box of score s is right with probability s).
        A value whose denominator is 0 is None.
    """
    errors = np.asarray(errors, dtype=np.float64)
    wrong = errors[:, 1] + errors[:, 2]

    def ratio(numerator: float, denominator: float) -> float | None:
        return float(numerator / denominator) if denominator > 0 else None

    pool_frame, picked_frame = ratio(wrong.sum(), len(wrong)), ratio(wrong[picked].sum(), len(picked))
    pool_box, picked_box = ratio(wrong.sum(), errors[:, 0].sum()), ratio(wrong[picked].sum(), errors[picked, 0].sum())
    spearman = None
    if scores is not None and np.ptp(wrong) > 0 and np.ptp(np.nan_to_num(scores, posinf=1e300, neginf=-1e300)) > 0:
        spearman = float(np.corrcoef(rankdata(scores), rankdata(wrong))[0, 1])
    summary = {"pool_errors_per_frame": pool_frame, "picked_errors_per_frame": picked_frame,
               "pool_errors_per_box": pool_box, "picked_errors_per_box": picked_box,
               "error_lift": None if picked_frame is None or not pool_frame else picked_frame / pool_frame,
               "box_lift": None if picked_box is None or not pool_box else picked_box / pool_box,
               "score_error_spearman": spearman}
    if calibration is not None:
        for name, rows in (("pool", slice(None)), ("picked", picked)):
            error = _reliability(np.asarray(calibration, dtype=np.float64)[rows].sum(axis=0)).calibration_error
            summary[f"{name}_calibration_error"] = error if np.isfinite(error) else None
    return summary


def _reliability(counts: np.ndarray) -> Reliability:
    """The :class:`~alcv.metrics.average_precision.Reliability` of summed ``(3, bins)`` counts: predictions,
    matched predictions and summed scores per equal score bin over [0, 1]."""
    boxes, hits, score_sums = counts
    with np.errstate(invalid="ignore", divide="ignore"):
        return Reliability(float("nan"), np.linspace(0.0, 1.0, boxes.size + 1), score_sums / boxes, hits / boxes,
                           boxes.astype(np.int64))


def _unscored(column: np.ndarray) -> np.ndarray:
    """``(n,)`` bool: rows of a column that pool inference never wrote (all NaN)."""
    return np.isnan(column.reshape(len(column), -1)).all(axis=1)


def choose_frames(pool: LabelPool, strategy: Strategy, rules: SelectionRules, loop: int, seed: int,
                  columns: Mapping[str, np.ndarray] | None = None,
                  labeled_class_counts: np.ndarray | None = None) -> Selection:
    """The unlabeled frames that ``strategy`` selects under ``rules`` for ``loop``; ``pool`` is not changed.

    The choice depends only on the arguments (the strategy's randomness comes from ``seed`` and ``loop``).

    Args:
        columns: dense per-frame statistics from pool inference, name -> ``(dataset_size, ...)`` indexed by
            absolute index (NaN where not predicted); None when the pool was not predicted.
        labeled_class_counts: ``(C,)`` ground-truth boxes per class in the labeled frames.

    Raises:
        RuntimeError: if an unlabeled frame has no statistics (pool inference missed it).
    """
    candidates, labeled = pool.unlabeled_indices, pool.labeled_indices
    columns = dict(columns or {})
    truth = {name: columns.pop(name) for name in list(columns) if name.startswith(TRUTH_PREFIX)}
    if getattr(strategy, "needs_truth", False):
        if TRUTH_COLUMN not in truth:
            raise ValueError(f"strategy '{strategy.name}' ranks by the pool's ground truth, but pool inference "
                             "counted no errors: it needs a simulated study, whose pool frames carry their labels")
        columns.update(truth)
    candidate_columns = {name: column[candidates] for name, column in columns.items()}
    for name, values in candidate_columns.items():
        missing = _unscored(values)
        if missing.any():
            raise RuntimeError(f"acquire: pool inference produced no '{name}' for {int(missing.sum())} unlabeled "
                               f"frames, e.g. indices {candidates[missing][:5].tolist()}")
    labeled_columns = {name: column[labeled] for name, column in columns.items()
                       if not _unscored(column[labeled]).any()}
    if rules.counts_boxes and "predicted_boxes" not in candidate_columns:
        raise ValueError("acquire: a budget in boxes needs each candidate's predicted box count from pool inference")
    costs = rules.costs(candidate_columns.get("predicted_boxes", np.zeros(candidates.size)))
    picker = Picker(rules, costs, candidate_columns.get("drive_id"), candidate_columns.get("timestamp"))
    stats = PoolStats(candidates, candidate_columns, labeled, labeled_columns, labeled_class_counts)
    positions = np.asarray(strategy.select(stats, picker, derive_seed(seed, SELECTION, loop)), dtype=np.int64)
    chosen = candidates[positions]
    shortfall = budget_shortfall(strategy.name, picker, positions)
    if shortfall is not None:
        log.warning("loop %d: %g of the budget of %g %s is not spent: %s", loop, picker.remaining, rules.budget,
                    rules.unit, shortfall)
    score_column = candidate_columns.get("score")
    scores = score_column[positions] if score_column is not None else np.zeros(chosen.size)
    summary = None
    if TRUTH_COLUMN in truth and not _unscored(truth[TRUTH_COLUMN][candidates]).any():
        calibration = truth.get(TRUTH_CALIBRATION_COLUMN)
        summary = truth_summary(truth[TRUTH_COLUMN][candidates], positions, score_column,
                                None if calibration is None else calibration[candidates])
    return Selection(loop, chosen, scores, costs[positions], picker.remaining, picker.relaxations, shortfall, summary)


def budget_shortfall(strategy_name: str, picker: Picker, positions: np.ndarray) -> str | None:
    """Why ``picker``'s budget is left unspent after it took ``positions``, or None when it is spent (no candidate
    that was not taken costs less than what is left)."""
    left = np.ones(picker.costs.size, dtype=bool)
    left[positions] = False
    if not left.any():
        return None if picker.remaining <= 1e-9 else "every unlabeled frame is labeled"
    affordable = int((left & (picker.costs <= picker.remaining + 1e-9)).sum())
    if not affordable:
        return None if positions.size else (f"it fits no frame (the cheapest costs {picker.cheapest:g} "
                                            f"{picker.rules.unit}); nothing is labeled")
    frames = f"{affordable} unlabeled frame{'s' if affordable > 1 else ''} that fit{'s' if affordable == 1 else ''}"
    if picker.rules.spreads and picker.rules.strict_spread:
        return f"the strict spreading rules (loop.spread) refuse the {frames}"
    return f"strategy '{strategy_name}' offered none of the {frames}"


def acquire(pool: LabelPool, strategy: Strategy, rules: SelectionRules, loop: int, seed: int,
            columns: Mapping[str, np.ndarray] | None = None, labeled_class_counts: np.ndarray | None = None,
            trainer: pl.Trainer | None = None) -> Selection:
    """Select unlabeled frames with ``strategy`` under ``rules`` (:func:`choose_frames`, same arguments and
    errors) and label them in ``pool`` at ``loop``; on an error ``pool`` is unchanged.

    With a distributed ``trainer`` (``world_size > 1``; a collective call, every rank must make it) global rank 0
    alone chooses and broadcasts the :class:`Selection`, or its error: rank 0 raises its error, the other ranks a
    RuntimeError that quotes it. Every rank then labels the same frames.
    """
    if trainer is None or trainer.world_size == 1:
        selection = choose_frames(pool, strategy, rules, loop, seed, columns, labeled_class_counts)
    else:
        selection, error = None, None
        if trainer.is_global_zero:
            try:
                selection = choose_frames(pool, strategy, rules, loop, seed, columns, labeled_class_counts)
            except Exception as failure:
                error = failure
        selection, message = trainer.strategy.broadcast(
            (selection, None if error is None else f"{type(error).__name__}: {error}"), src=0)
        if error is not None:
            raise error
        if message is not None:
            raise RuntimeError(f"loop {loop}: global rank 0 could not select the frames to label: {message}")
    pool.label(selection.indices, loop)
    return selection
