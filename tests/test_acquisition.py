"""Acquisition end to end on hand-built inputs: textbook uncertainty measures, aggregation, class weights,
sampled measures (BALD, vote entropy), budgets and spreading, core-set / hybrid / class balance, the
committee's box matching, and order-independence properties of the whole selection."""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence

import numpy as np
import pytest
import torch
from fake_detections import make_frame
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import entropy as scipy_entropy

from alcv.models.committee import match_to_anchor
from alcv.models.detections import Detections
from alcv.strategies import (
    ClassBalanceStrategy,
    CoresetStrategy,
    CRBStrategy,
    HybridStrategy,
    Picker,
    PoolStats,
    RandomStrategy,
    SelectionRules,
    Strategy,
    UncertaintyStrategy,
    aggregate,
    entropy,
    k_centre_greedy,
    least_confidence,
    margin,
    mutual_information,
    nearest_distances,
    ranked_positions,
    tie_break_keys,
    top_k,
    vote_entropy,
)

CLASS_NAMES = ("vehicle", "pedestrian", "golf_cart")


# ------------------------------------------------------------------------------------ helpers
def frames_picker(budget: float, size: int) -> Picker:
    return Picker(SelectionRules(budget=budget), np.ones(size))


def pick(strategy: Strategy, pool: PoolStats, picker: Picker, seed: int = 0) -> list[int]:
    """Absolute indices acquired by ``strategy`` from ``pool``, in pick order."""
    return pool.candidates[strategy.select(pool, picker, seed)].tolist()


def scored_pool(scores: Sequence[float], candidates: Sequence[int] | None = None, **columns: np.ndarray) -> PoolStats:
    candidates = np.arange(len(scores)) if candidates is None else np.asarray(candidates)
    return PoolStats(np.asarray(candidates, dtype=np.int64),
                     {"score": np.asarray(scores, dtype=np.float64), **columns})


def acquire_through_pool_inference(strategy: Strategy, frames: Sequence[Detections], labeled: set[int],
                                   rules: SelectionRules, seed: int, batch_size: int,
                                   labeled_class_counts: np.ndarray | None = None,
                                   predicted_boxes: np.ndarray | None = None) -> np.ndarray:
    """What the loop acquires: ``frame_stats`` per batch of ``frames`` (in the given order) written into dense
    columns by absolute index (as the callback does), then :class:`PoolStats` of the unlabeled candidates
    (ascending) and ``strategy.select``. ``predicted_boxes`` is indexed by absolute index."""
    size = max(frame.index for frame in frames) + 1
    columns: dict[str, np.ndarray] = {}
    for start in range(0, len(frames), batch_size):
        batch = frames[start:start + batch_size]
        indices = np.array([frame.index for frame in batch], dtype=np.int64)
        for name, values in strategy.frame_stats(batch).items():
            values = np.asarray(values)
            if name not in columns:
                dtype = np.float32 if values.ndim > 1 else np.float64
                columns[name] = np.full((size, *values.shape[1:]), np.nan, dtype=dtype)
            columns[name][indices] = values
    every = np.array(sorted(frame.index for frame in frames), dtype=np.int64)
    labeled_indices = np.array(sorted(labeled), dtype=np.int64)
    candidates = every[~np.isin(every, labeled_indices)]
    pool = PoolStats(candidates, {name: column[candidates] for name, column in columns.items()}, labeled_indices,
                     {name: column[labeled_indices] for name, column in columns.items()}, labeled_class_counts)
    boxes = np.zeros(size) if predicted_boxes is None else predicted_boxes
    picker = Picker(rules, rules.costs(boxes[candidates]))
    return candidates[strategy.select(pool, picker, seed)]


# ------------------------------------------------------------------------------------ 1. textbook measures
def softmax_rows(rng: np.random.Generator, rows: int, classes: int) -> np.ndarray:
    return rng.dirichlet(np.full(classes, 0.7), size=rows)


@pytest.mark.parametrize("classes", [2, 3, 5, 10])
def test_margin_least_confidence_and_entropy_are_textbook_on_softmax_rows(classes: int) -> None:
    probs = softmax_rows(np.random.default_rng(classes), 40, classes)
    ordered = np.sort(probs, axis=1)
    np.testing.assert_allclose(margin(probs), 1.0 - (ordered[:, -1] - ordered[:, -2]), atol=1e-12)
    np.testing.assert_allclose(least_confidence(probs), 1.0 - ordered[:, -1], atol=1e-12)
    expected_entropy = np.array([scipy_entropy(row) for row in probs]) / math.log(classes)
    np.testing.assert_allclose(entropy(probs), expected_entropy, atol=1e-12)


@pytest.mark.parametrize(("passes", "classes"), [(2, 2), (5, 3), (8, 6)])
def test_mutual_information_is_the_bald_formula_in_nats(passes: int, classes: int) -> None:
    rng = np.random.default_rng(100 * passes + classes)
    samples = np.stack([softmax_rows(rng, 12, classes) for _ in range(passes)])  # (T, M, C)
    expected = [scipy_entropy(samples[:, box].mean(axis=0)) - np.mean([scipy_entropy(p) for p in samples[:, box]])
                for box in range(samples.shape[1])]
    np.testing.assert_allclose(mutual_information(samples), expected, atol=1e-12)
    assert (mutual_information(samples) >= 0).all()


def test_vote_entropy_is_the_entropy_of_the_vote_histogram_in_nats() -> None:
    rng = np.random.default_rng(7)
    members, boxes, classes = 5, 30, 4
    samples = np.stack([softmax_rows(rng, boxes, classes) for _ in range(members)])
    everyone = np.ones((members, boxes), dtype=bool)
    votes = samples.argmax(axis=2)
    expected = [scipy_entropy(np.bincount(votes[:, box], minlength=classes)) for box in range(boxes)]
    np.testing.assert_allclose(vote_entropy(samples, everyone), expected, atol=1e-12)

    # a member that did not find the box votes "missed", an outcome of its own
    found = rng.random((members, boxes)) > 0.3
    with_missed = np.where(found, votes, classes)
    expected = [scipy_entropy(np.bincount(with_missed[:, box], minlength=classes + 1)) for box in range(boxes)]
    np.testing.assert_allclose(vote_entropy(np.where(found[..., None], samples, 0.0), found), expected, atol=1e-12)


def test_vote_entropy_by_hand() -> None:
    samples = np.array([[[0.9, 0.1], [0.6, 0.4], [0.7, 0.3]],
                        [[0.8, 0.2], [0.1, 0.9], [0.0, 0.0]],
                        [[0.6, 0.4], [0.3, 0.7], [0.0, 0.0]]])  # (T=3, M=3, C=2)
    found = np.array([[True, True, True], [True, True, False], [True, True, False]])
    # box 0: votes 0, 0, 0 -> 0; box 1: votes 0, 1, 1 -> H(1/3, 2/3); box 2: 0, missed, missed -> H(1/3, 2/3)
    third = -(1 / 3) * math.log(1 / 3) - (2 / 3) * math.log(2 / 3)
    np.testing.assert_allclose(vote_entropy(samples, found), [0.0, third, third], atol=1e-12)
    # three members, three different outcomes (class 0, class 1, missed): log 3, the most three votes can give
    three_ways = vote_entropy(np.array([[[0.9, 0.1]], [[0.2, 0.8]], [[0.0, 0.0]]]), np.array([[True], [True], [False]]))
    np.testing.assert_allclose(three_ways, [math.log(3)])


def test_single_class_boxes() -> None:
    probs = np.array([[0.9], [0.25], [1.0]])
    np.testing.assert_allclose(margin(probs), [0.1, 0.75, 0.0], atol=1e-12)
    np.testing.assert_allclose(least_confidence(probs), [0.1, 0.75, 0.0], atol=1e-12)
    np.testing.assert_array_equal(entropy(probs), [0.0, 0.0, 0.0])


@pytest.mark.parametrize("classes", [2, 3, 7])
def test_all_equal_probabilities_are_maximally_uncertain(classes: int) -> None:
    probs = np.full((2, classes), 1.0 / classes)
    np.testing.assert_allclose(entropy(probs), [1.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(margin(probs), [1.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(least_confidence(probs), [1 - 1 / classes] * 2, atol=1e-12)


def test_a_certain_box_scores_zero_everywhere() -> None:
    certain = np.array([[0.0, 1.0, 0.0]])
    for measure in (least_confidence, margin, entropy):
        np.testing.assert_allclose(measure(certain), [0.0], atol=1e-12, err_msg=measure.__name__)
    samples = np.repeat(certain[None], 4, axis=0)
    np.testing.assert_allclose(mutual_information(samples), [0.0], atol=1e-12)
    np.testing.assert_allclose(vote_entropy(samples, np.ones((4, 1), dtype=bool)), [0.0], atol=1e-12)


def test_identical_passes_have_no_mutual_information_however_flat() -> None:
    flat = np.full((6, 2, 4), 0.25)  # 6 passes, 2 boxes, every pass uniform
    np.testing.assert_allclose(mutual_information(flat), [0.0, 0.0], atol=1e-12)
    assert entropy(flat[0]).min() == pytest.approx(1.0)  # while the entropy is maximal
    # two passes each sure of a different class: H(mean) = log 2, mean H = 0
    np.testing.assert_allclose(mutual_information(np.array([[[1.0, 0.0]], [[0.0, 1.0]]])), [math.log(2)])


def test_sigmoid_rows_use_the_normalised_distribution_for_entropy_and_bald() -> None:
    sigmoid = np.array([[0.3, 0.1, 0.1], [0.2, 0.2, 0.2], [0.0, 0.0, 0.0]])
    # entropy: of [0.6, 0.2, 0.2], of uniform, and of uniform (a row of zeros)
    expected = np.array([scipy_entropy([0.6, 0.2, 0.2]), math.log(3), math.log(3)]) / math.log(3)
    np.testing.assert_allclose(entropy(sigmoid), expected, atol=1e-12)
    # least confidence and margin read the probabilities as given
    np.testing.assert_allclose(least_confidence(sigmoid), [0.7, 0.8, 1.0], atol=1e-12)
    np.testing.assert_allclose(margin(sigmoid), [0.8, 1.0, 1.0], atol=1e-12)
    # passes that differ only in scale describe the same class distribution: no disagreement
    np.testing.assert_allclose(mutual_information(np.array([[[0.8, 0.2]], [[0.4, 0.1]]])), [0.0], atol=1e-12)


@pytest.mark.parametrize("classes", [1, 3])
def test_empty_inputs_give_empty_outputs(classes: int) -> None:
    for measure in (least_confidence, margin, entropy):
        assert measure(np.zeros((0, classes))).shape == (0,), measure.__name__
    assert mutual_information(np.zeros((4, 0, classes))).shape == (0,)
    assert vote_entropy(np.zeros((4, 0, classes)), np.zeros((4, 0), dtype=bool)).shape == (0,)


def test_sampled_measures_refuse_misshapen_samples() -> None:
    with pytest.raises(ValueError, match=r"\(T, M, C\)"):
        mutual_information(np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"\(T, M\) found"):
        vote_entropy(np.zeros((3, 2, 4)), np.ones((2, 3), dtype=bool))


# ------------------------------------------------------------------------------------ 2. topk_mean
def test_topk_mean_averages_the_k_highest_values_of_each_frame() -> None:
    # frame 0: one box 0.3; frame 1: no box; frame 2: boxes 0.9, 0.1, 0.5 (interleaved with frame 0's)
    values = np.array([0.9, 0.3, 0.1, 0.5])
    frame_of_box = np.array([2, 0, 2, 2])
    np.testing.assert_allclose(aggregate(values, frame_of_box, 3, "topk_mean", top_k=2), [0.3, np.nan, 0.7])
    np.testing.assert_allclose(aggregate(values, frame_of_box, 3, "topk_mean", top_k=1), [0.3, np.nan, 0.9])
    np.testing.assert_allclose(aggregate(values, frame_of_box, 3, "topk_mean", top_k=3), [0.3, np.nan, 0.5])
    np.testing.assert_allclose(aggregate(values, frame_of_box, 3, "topk_mean", top_k=10), [0.3, np.nan, 0.5])


def test_topk_mean_through_the_strategy() -> None:
    detections = [make_frame(0, [[0.7, 0.2, 0.1]]),  # LC 0.3
                  make_frame(1, []),
                  make_frame(2, [[0.1, 0.9, 0.0], [0.5, 0.3, 0.2], [0.4, 0.3, 0.3]])]  # LC 0.1, 0.5, 0.6
    strategy = UncertaintyStrategy(aggregation="topk_mean", top_k=2)
    np.testing.assert_allclose(strategy.frame_scores(detections), [0.3, -np.inf, 0.55], rtol=1e-6)


# ------------------------------------------------------------------------------------ 3. strategy settings
CLASS_FRAMES = [
    make_frame(0, [[0.5, 0.3, 0.2]]),  # a vehicle, LC 0.5
    make_frame(1, [[0.1, 0.2, 0.7]]),  # a golf cart, LC 0.3
    make_frame(2, [[0.2, 0.6, 0.2]]),  # a pedestrian, LC 0.4
]


def test_class_weights_rescale_the_boxes_of_that_class() -> None:
    plain = UncertaintyStrategy(class_names=CLASS_NAMES)
    weighted = UncertaintyStrategy(class_weights={"golf_cart": 3.0}, class_names=CLASS_NAMES)
    plain_scores, weighted_scores = plain.frame_scores(CLASS_FRAMES), weighted.frame_scores(CLASS_FRAMES)
    np.testing.assert_allclose(plain_scores, [0.5, 0.3, 0.4], rtol=1e-6)
    np.testing.assert_allclose(weighted_scores, [0.5, 0.9, 0.4], rtol=1e-6)
    assert pick(plain, scored_pool(plain_scores), frames_picker(3, 3)) == [0, 2, 1]
    assert pick(weighted, scored_pool(weighted_scores), frames_picker(3, 3)) == [1, 0, 2]


def test_class_weights_must_name_known_classes() -> None:
    with pytest.raises(ValueError, match=r"strategy\.class_weights.*golf_kart"):
        UncertaintyStrategy(class_weights={"golf_kart": 3.0}, class_names=CLASS_NAMES)
    with pytest.raises(ValueError, match="golf_cart"):
        UncertaintyStrategy(class_weights={"golf_cart": 3.0})  # no class names to look it up in
    with pytest.raises(ValueError, match=r"strategy\.class_weights"):
        UncertaintyStrategy(class_weights={"golf_cart": -1.0}, class_names=CLASS_NAMES)


def test_sampled_measures_need_samples_to_exist() -> None:
    with pytest.raises(ValueError, match=r"strategy\.passes.*passes=1"):
        UncertaintyStrategy("bald", passes=1, dropout=0.2)
    with pytest.raises(ValueError, match=r"strategy\.dropout"):
        UncertaintyStrategy("bald", passes=4, dropout=0.0)
    with pytest.raises(ValueError, match=r"strategy\.members.*1"):
        UncertaintyStrategy("vote_entropy", members=1)
    bald = UncertaintyStrategy("bald", passes=4, dropout=0.2)
    assert (bald.request.passes, bald.request.dropout, bald.request.members) == (4, 0.2, 1)
    committee = UncertaintyStrategy("vote_entropy", members=3)
    assert (committee.request.passes, committee.request.members) == (1, 3)
    with pytest.raises(ValueError, match="prob_samples"):
        bald.frame_scores([make_frame(5, [[0.5, 0.5, 0.0]])])


def test_bald_ranks_disagreeing_passes_above_agreeing_ones() -> None:
    agree = np.repeat(np.array([[[0.4, 0.3, 0.3]]]), 4, axis=0)  # flat, but every pass says the same
    disagree = np.array([[[0.9, 0.05, 0.05]], [[0.05, 0.9, 0.05]], [[0.9, 0.05, 0.05]], [[0.05, 0.9, 0.05]]])
    detections = [make_frame(0, agree.mean(axis=0), samples=agree),
                  make_frame(1, disagree.mean(axis=0), samples=disagree)]
    bald = UncertaintyStrategy("bald", passes=4, dropout=0.2)
    scores = bald.frame_scores(detections)
    expected = scipy_entropy([0.475, 0.475, 0.05]) - scipy_entropy([0.9, 0.05, 0.05])
    np.testing.assert_allclose(scores, [0.0, expected], atol=1e-6)
    assert pick(bald, scored_pool(scores), frames_picker(1, 2)) == [1]
    # least confidence of the mean prediction would have preferred the flat frame (0.6 vs 0.525)
    least = UncertaintyStrategy().frame_scores(detections)
    np.testing.assert_allclose(least, [0.6, 0.525], rtol=1e-6)


def test_vote_entropy_frames_from_committee_detections() -> None:
    sure = np.array([[0.8, 0.1, 0.1]])
    frames = [
        make_frame(0, sure, samples=np.stack([sure] * 3)),  # unanimous
        make_frame(1, sure, samples=np.stack([sure, sure, np.zeros((1, 3))]),
                   found=np.array([[True], [True], [False]])),  # one member missed it
        make_frame(2, sure, samples=np.stack([sure, sure[:, [1, 0, 2]], sure[:, [2, 1, 0]]])),  # 3 classes
    ]
    strategy = UncertaintyStrategy("vote_entropy", members=3)
    scores = strategy.frame_scores(frames)
    np.testing.assert_allclose(scores, [0.0, scipy_entropy([2, 1]), math.log(3)], atol=1e-6)
    assert pick(strategy, scored_pool(scores), frames_picker(3, 3)) == [2, 1, 0]


# ------------------------------------------------------------------------------------ 4. budgets and spreading
@pytest.mark.parametrize("budget", [0, 1, 4, 10, 25])
def test_a_frame_budget_takes_min_k_n_distinct_candidates(budget: int) -> None:
    candidates = np.array([3, 8, 11, 15, 20, 31, 40, 52, 60, 77])
    scores = np.random.default_rng(1).random(10)
    for strategy in (UncertaintyStrategy(), RandomStrategy()):
        chosen = pick(strategy, scored_pool(scores, candidates), frames_picker(budget, 10))
        assert len(chosen) == min(budget, 10)
        assert len(set(chosen)) == len(chosen)
        assert set(chosen) <= set(candidates.tolist())
    assert pick(UncertaintyStrategy(), scored_pool(scores, candidates), frames_picker(budget, 10)) == \
        candidates[np.argsort(-scores)][:budget].tolist()


def test_box_costs() -> None:
    rules = SelectionRules(budget=10, unit="boxes", frame_cost=2.0, box_cost=0.5)
    np.testing.assert_allclose(rules.costs(np.array([0, 1, 4])), [2.0, 2.5, 4.0])
    np.testing.assert_allclose(SelectionRules(budget=10).costs(np.array([0, 1, 4])), [1.0, 1.0, 1.0])


def test_a_box_budget_skips_a_frame_that_does_not_fit_for_a_cheaper_lower_ranked_one() -> None:
    rules = SelectionRules(budget=5, unit="boxes", frame_cost=1, box_cost=1)
    costs = rules.costs(np.array([2, 5, 1, 0]))  # 3, 6, 2, 1
    pool = scored_pool([0.9, 0.8, 0.7, 0.6])
    picker = Picker(rules, costs)
    # 0 (cost 3, 2 left); 1 costs 6: skipped; 2 (cost 2, 0 left); nothing fits any more
    assert pick(UncertaintyStrategy(), pool, picker) == [0, 2]
    assert picker.spent == 5 and picker.full

    picker = Picker(SelectionRules(budget=4, unit="boxes"), costs)
    assert pick(UncertaintyStrategy(), pool, picker) == [0, 3]  # 2 (cost 2) no longer fits after 0
    assert picker.spent == 4


def test_a_budget_that_fits_no_frame_takes_nothing() -> None:
    rules = SelectionRules(budget=2, unit="boxes")
    assert pick(UncertaintyStrategy(), scored_pool([0.5, 0.4]), Picker(rules, rules.costs(np.array([3, 2])))) == []


def spread_columns(drives: Sequence[int], times: Sequence[float]) -> dict[str, np.ndarray]:
    return {"drive_id": np.asarray(drives, dtype=np.float64), "timestamp": np.asarray(times, dtype=np.float64)}


def spread_picker(rules: SelectionRules, pool: PoolStats) -> Picker:
    return Picker(rules, rules.costs(np.zeros(pool.candidates.size)), pool.column("drive_id"),
                  pool.column("timestamp"))


def test_max_per_drive_one_takes_the_best_frame_of_each_drive() -> None:
    drives = [0, 0, 1, 0, 1, 2, 2]
    pool = scored_pool([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3], **spread_columns(drives, range(7)))
    rules = SelectionRules(budget=10, max_per_drive=1, strict_spread=True)
    assert pick(UncertaintyStrategy(), pool, spread_picker(rules, pool)) == [0, 2, 5]
    rules = SelectionRules(budget=10, max_per_drive=2, strict_spread=True)
    assert pick(UncertaintyStrategy(), pool, spread_picker(rules, pool)) == [0, 1, 2, 4, 5, 6]
    rules = SelectionRules(budget=2, max_per_drive=1)
    assert pick(UncertaintyStrategy(), pool, spread_picker(rules, pool)) == [0, 2]


def test_min_gap_keeps_picks_of_one_drive_apart_in_time() -> None:
    # drive 0 at 0, 1, 1.9, 5, 3.5, 2.5 s and drive 1 at 0.5, 1.5 s, ranked in that order
    drives = [0, 0, 0, 0, 0, 0, 1, 1]
    times = [0.0, 1.0, 1.9, 5.0, 3.5, 2.5, 0.5, 1.5]
    pool = scored_pool(np.linspace(1.0, 0.3, 8), **spread_columns(drives, times))
    rules = SelectionRules(budget=10, min_gap_seconds=2.0, strict_spread=True)
    # 0 s taken; 1 and 1.9 s too close to it; 5 s taken; 3.5 s is 1.5 s before 5; 2.5 s is 2.5 and 2.5 s from
    # both neighbours: taken; the other drive is independent: 0.5 s taken, 1.5 s too close
    assert pick(UncertaintyStrategy(), pool, spread_picker(rules, pool)) == [0, 3, 5, 6]


def test_picks_exactly_min_gap_apart_are_allowed() -> None:
    pool = scored_pool([0.9, 0.8, 0.7], **spread_columns([4, 4, 4], [10.0, 12.0, 11.0]))
    rules = SelectionRules(budget=3, min_gap_seconds=2.0, strict_spread=True)
    assert pick(UncertaintyStrategy(), pool, spread_picker(rules, pool)) == [0, 1]


def test_spreading_relaxes_its_caps_round_by_round_to_spend_the_budget() -> None:
    # 3 drives of 8 frames, ranked drive 0 first; one per drive allows 3 picks, the budget asks for 10
    drives = np.repeat([0, 1, 2], 8)
    pool = scored_pool(np.linspace(1.0, 0.1, 24), **spread_columns(drives, np.tile(np.arange(8.0), 3)))
    picker = spread_picker(SelectionRules(budget=10, max_per_drive=1), pool)
    chosen = pick(UncertaintyStrategy(), pool, picker)
    # one per drive, then two per drive, then four per drive: the best of each drive at every step
    assert chosen == [0, 8, 16, 1, 9, 17, 2, 3, 10, 11]
    assert picker.relaxations == 2 and picker.spent == 10
    # the gap halves: 4 s keeps 0 and 4 of each drive, 2 s adds 2 and 6 of drive 0 first
    picker = spread_picker(SelectionRules(budget=8, min_gap_seconds=4.0), pool)
    assert pick(UncertaintyStrategy(), pool, picker) == [0, 4, 8, 12, 16, 20, 2, 6]
    assert picker.relaxations == 1


def test_spreading_with_more_budget_than_the_caps_allow_labels_exactly_the_budget() -> None:
    rng = np.random.default_rng(7)
    drives, times = rng.integers(0, 4, 40), rng.uniform(0, 30, 40).round(1)
    scores = rng.random(40)
    for rules in (SelectionRules(budget=30, max_per_drive=2), SelectionRules(budget=30, min_gap_seconds=10.0),
                  SelectionRules(budget=40, max_per_drive=1, min_gap_seconds=5.0)):
        for strategy in (UncertaintyStrategy(), RandomStrategy()):
            pool = scored_pool(scores, **spread_columns(drives, times))
            chosen = pick(strategy, pool, spread_picker(rules, pool))
            assert len(chosen) == rules.budget and len(set(chosen)) == len(chosen)
        embeddings = rng.normal(size=(40, 3))
        picker = spread_picker(rules, PoolStats(np.arange(40), spread_columns(drives, times)))
        assert len(k_centre_greedy(embeddings, embeddings[:0], picker, tie_break_keys(np.arange(40), 0))) == \
            rules.budget


def test_strict_spreading_leaves_the_budget_unspent_and_says_why() -> None:
    from alcv.acquisition import budget_shortfall

    pool = scored_pool([0.9, 0.8, 0.7, 0.6], **spread_columns([0, 0, 1, 1], [0, 1, 0, 1]))
    picker = spread_picker(SelectionRules(budget=4, max_per_drive=1, strict_spread=True), pool)
    positions = UncertaintyStrategy().select(pool, picker, 0)
    assert positions.tolist() == [0, 2] and picker.remaining == 2
    assert budget_shortfall("least_confidence", picker, positions) == \
        "the strict spreading rules (loop.spread) refuse the 2 unlabeled frames that fit"
    relaxed = spread_picker(SelectionRules(budget=4, max_per_drive=1), pool)
    assert budget_shortfall("least_confidence", relaxed, UncertaintyStrategy().select(pool, relaxed, 0)) is None


def test_spreading_and_box_budget_together() -> None:
    rules = SelectionRules(budget=6, unit="boxes", max_per_drive=1, strict_spread=True)
    pool = scored_pool([0.9, 0.8, 0.7, 0.6], **spread_columns([0, 0, 1, 2], [0, 9, 0, 0]))
    picker = Picker(rules, rules.costs(np.array([1, 0, 4, 2])), pool.column("drive_id"), pool.column("timestamp"))
    # 0 (cost 2, 4 left); 1 same drive; 2 costs 5: too much; 3 (cost 3, 1 left)
    assert pick(UncertaintyStrategy(), pool, picker) == [0, 3]
    relaxed = SelectionRules(budget=6, unit="boxes", max_per_drive=1)
    picker = Picker(relaxed, rules.costs(np.array([1, 0, 4, 2])), pool.column("drive_id"), pool.column("timestamp"))
    assert pick(UncertaintyStrategy(), pool, picker) == [0, 3, 1]  # then 1 (cost 1) fills the budget


def test_spreading_applies_to_random_selection() -> None:
    rng = np.random.default_rng(3)
    drives = rng.integers(0, 5, 60)
    times = rng.uniform(0, 20, 60).round(1)
    pool = PoolStats(np.arange(60) * 3, spread_columns(drives, times))
    for seed in range(10):
        rules = SelectionRules(budget=60, max_per_drive=1, strict_spread=True)
        chosen = RandomStrategy().select(pool, spread_picker(rules, pool), seed)
        assert sorted(drives[chosen].tolist()) == [0, 1, 2, 3, 4]
        rules = SelectionRules(budget=60, min_gap_seconds=2.0, strict_spread=True)
        chosen = RandomStrategy().select(pool, spread_picker(rules, pool), seed)
        for drive in range(5):
            picked = np.sort(times[chosen][drives[chosen] == drive])
            assert (np.diff(picked) >= 2.0).all()
        assert len(chosen) > 5  # several picks per drive when they are far enough apart


def test_spreading_needs_drive_and_time() -> None:
    with pytest.raises(ValueError, match="drive id and timestamp"):
        Picker(SelectionRules(budget=2, max_per_drive=1), np.ones(3))


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"unit": "pixels"}, "loop.budget_unit"),
        ({"unit": "boxes", "frame_cost": 0.0}, "loop.cost"),
        ({"unit": "boxes", "box_cost": -1.0}, "loop.cost"),
        ({"max_per_drive": 0}, "loop.spread.max_per_drive"),
        ({"min_gap_seconds": -1.0}, "loop.spread.min_gap_seconds"),
        ({"box_min_score": 1.5}, "loop.cost.box_min_score"),
        ({"strict_spread": "yes"}, "loop.spread.strict"),
    ],
)
def test_bad_rules_name_the_setting(kwargs: dict[str, object], setting: str) -> None:
    with pytest.raises(ValueError) as raised:
        SelectionRules(budget=10, **kwargs)  # type: ignore[arg-type]
    assert str(raised.value).startswith(setting)
    if kwargs.get("unit") == "pixels":
        assert "pixels" in str(raised.value)


def test_free_frames_are_fine_with_a_frame_budget() -> None:
    SelectionRules(budget=10, frame_cost=0.0)  # the cost model is only used for budgets in boxes


@pytest.mark.parametrize(("kwargs", "setting"), [({"budget": float("nan"), "unit": "boxes"}, "loop.query_size"),
                                                 ({"budget": 10, "min_gap_seconds": float("nan")},
                                                  "loop.spread.min_gap_seconds")])
def test_nan_settings_are_refused(kwargs: dict[str, object], setting: str) -> None:
    with pytest.raises(ValueError, match=re.escape(setting)):
        SelectionRules(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("unit", ["frames", "boxes"])
def test_an_infinite_budget_is_refused(unit: str) -> None:
    with pytest.raises(ValueError, match=r"^loop\.query_size: the budget must be a finite number"):
        SelectionRules(budget=float("inf"), unit=unit)


# ------------------------------------------------------------------------------------ 5. properties
@settings(max_examples=50, deadline=None)
@given(candidates=st.lists(st.integers(0, 10_000), min_size=0, max_size=40, unique=True), data=st.data(),
       seed=st.integers(0, 2**32 - 1), first_chunk=st.sampled_from([1, 2, 3, 1024]))
def test_ranking_does_not_depend_on_the_order_of_the_arrays(candidates: list[int], data: st.DataObject, seed: int,
                                                             first_chunk: int) -> None:
    scores = np.array(data.draw(st.lists(st.sampled_from([0.0, 0.5, 1.0, np.inf, -np.inf]), min_size=len(candidates),
                                         max_size=len(candidates)), label="scores"))
    permutation = np.array(data.draw(st.permutations(range(len(candidates))), label="permutation"), dtype=np.int64)
    cands = np.array(candidates, dtype=np.int64)

    def full_ranking(indices: np.ndarray, values: np.ndarray) -> list[int]:
        chunks = list(ranked_positions(indices, values, seed, first_chunk=first_chunk))
        positions = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64)
        assert sorted(positions.tolist()) == list(range(len(indices)))  # every position exactly once
        return indices[positions].tolist()

    ranking = full_ranking(cands, scores)
    assert full_ranking(cands[permutation], scores[permutation]) == ranking
    score_of = dict(zip(candidates, scores.tolist(), strict=True))
    assert all(score_of[a] >= score_of[b] for a, b in itertools.pairwise(ranking))
    k = data.draw(st.integers(0, len(candidates) + 3), label="k")
    assert top_k(cands[permutation], scores[permutation], k, seed).tolist() == ranking[:k]


def random_pool(rng: np.random.Generator, size: int) -> list[Detections]:
    """Frames with 0-3 boxes whose probabilities come from a few levels (so that scores tie) and 2D
    integer embeddings (so that distances tie exactly)."""
    levels = np.array([0.05, 0.2, 0.4, 0.6, 0.9])
    indices = rng.choice(1000, size=size, replace=False)
    return [make_frame(int(index), rng.choice(levels, size=(int(rng.integers(0, 4)), 3)),
                       embedding=rng.integers(-3, 4, size=2).astype(float).tolist()) for index in indices]


def pool_strategies() -> list[Strategy]:
    return [UncertaintyStrategy("margin", aggregation="sum"), RandomStrategy(), ClassBalanceStrategy(min_score=0.3),
            CoresetStrategy(), HybridStrategy(UncertaintyStrategy("entropy"), prefilter=2.0),
            CRBStrategy(3, k1=2.0, k2=1.5, min_score=0.1)]


@settings(max_examples=50, deadline=None)
@given(pool_seed=st.integers(0, 2**32 - 1), size=st.integers(1, 25), labeled_fraction=st.floats(0.0, 0.8),
       budget=st.integers(0, 30), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_selection_ignores_the_order_and_batching_of_pool_inference(pool_seed: int, size: int,
                                                                     labeled_fraction: float, budget: int,
                                                                     seed: int, data: st.DataObject) -> None:
    rng = np.random.default_rng(pool_seed)
    frames = random_pool(rng, size)
    indices = [frame.index for frame in frames]
    labeled = {index for index in indices if rng.random() < labeled_fraction}
    unlabeled = set(indices) - labeled
    permutation = data.draw(st.permutations(range(size)), label="inference order")
    reordered = [frames[i] for i in permutation]
    batch_sizes = (data.draw(st.integers(1, 8), label="batch"), data.draw(st.integers(1, 8), label="other batch"))
    counts = np.array([3, 0, 1])
    rules = SelectionRules(budget=budget)

    for strategy in pool_strategies():
        chosen = acquire_through_pool_inference(strategy, frames, labeled, rules, seed, batch_sizes[0], counts)
        again = acquire_through_pool_inference(strategy, reordered, labeled, rules, seed, batch_sizes[1], counts)
        assert again.tolist() == chosen.tolist(), strategy.name
        assert len(chosen) == min(budget, len(unlabeled)), strategy.name
        assert len(set(chosen.tolist())) == len(chosen), strategy.name
        assert set(chosen.tolist()) <= unlabeled, strategy.name  # never a labeled frame


@settings(max_examples=50, deadline=None)
@given(pool_seed=st.integers(0, 2**32 - 1), size=st.integers(1, 25), budget=st.integers(0, 20),
       seed=st.integers(0, 2**32 - 1), max_per_drive=st.sampled_from([None, 1, 2]),
       min_gap=st.sampled_from([None, 0.0, 1.0, 2.5]), boxes=st.booleans(), strict=st.booleans())
def test_every_strategy_respects_budget_and_spreading_and_fills_what_it_can(
        pool_seed: int, size: int, budget: int, seed: int, max_per_drive: int | None, min_gap: float | None,
        boxes: bool, strict: bool) -> None:
    rng = np.random.default_rng(pool_seed)
    frames = random_pool(rng, size)
    candidates = np.array(sorted(frame.index for frame in frames), dtype=np.int64)
    by_index = {frame.index: frame for frame in frames}
    ordered = [by_index[int(index)] for index in candidates]
    drives = rng.integers(0, 3, size).astype(np.float64)
    times = rng.integers(0, 12, size) * 0.5
    predicted = rng.integers(0, 5, size)
    rules = SelectionRules(budget=budget, unit="boxes" if boxes else "frames", max_per_drive=max_per_drive,
                           min_gap_seconds=min_gap, strict_spread=strict)
    costs = rules.costs(predicted)

    for strategy in pool_strategies():
        columns = {name: np.asarray(values) for name, values in strategy.frame_stats(ordered).items()}
        pool = PoolStats(candidates, {**columns, **spread_columns(drives, times)}, labeled_class_counts=np.ones(3))
        picker = Picker(rules, costs, drives, times)
        chosen = strategy.select(pool, picker, seed)
        taken = set(chosen.tolist())
        assert len(taken) == len(chosen) and taken <= set(range(size)), strategy.name
        assert costs[chosen].sum() <= budget + 1e-9, strategy.name
        assert picker.spent == pytest.approx(costs[chosen].sum())
        # the rules every pick kept: those of the last relaxation step, unless they were dropped
        scale = 2 ** picker.relaxations if picker.spreading else math.inf

        def conflicts(position: int, picks: np.ndarray, scale: float = scale) -> bool:
            same = picks[drives[picks] == drives[position]]
            if max_per_drive is not None and same.size >= max_per_drive * scale:
                return True
            return min_gap is not None and bool((np.abs(times[same] - times[position]) < min_gap / scale).any())

        for number, position in enumerate(chosen.tolist()):
            assert not conflicts(position, chosen[:number]), strategy.name
        if not isinstance(strategy, HybridStrategy):  # the hybrid offers only the survivors of its pre-filter
            remaining = budget - costs[chosen].sum()
            for position in set(range(size)) - taken:  # whatever was left out could not have been taken
                assert costs[position] > remaining + 1e-9 or (strict and conflicts(position, chosen)), strategy.name


@settings(max_examples=50, deadline=None)
@given(pool_seed=st.integers(0, 2**32 - 1), size=st.integers(1, 20), dims=st.integers(1, 3),
       labeled=st.integers(0, 4), budget=st.integers(0, 12), data=st.data())
def test_k_centre_greedy_does_not_depend_on_the_row_order(pool_seed: int, size: int, dims: int, labeled: int,
                                                          budget: int, data: st.DataObject) -> None:
    rng = np.random.default_rng(pool_seed)
    embeddings = rng.integers(-3, 4, size=(size, dims)).astype(np.float32)
    centres = rng.integers(-3, 4, size=(labeled, dims)).astype(np.float32)
    candidates = np.sort(rng.choice(10_000, size=size, replace=False))
    keys = tie_break_keys(candidates, pool_seed)
    costs = 1.0 + rng.integers(0, 3, size)
    rules = SelectionRules(budget=budget, unit="boxes")
    permutation = np.array(data.draw(st.permutations(range(size)), label="rows"), dtype=np.int64)
    centre_order = np.array(data.draw(st.permutations(range(labeled)), label="centres"), dtype=np.int64)

    chosen = k_centre_greedy(embeddings, centres, Picker(rules, costs), keys)
    shuffled = k_centre_greedy(embeddings[permutation], centres[centre_order], Picker(rules, costs),
                               keys[permutation], positions=permutation)
    assert shuffled.tolist() == chosen.tolist()
    # each pick is (one of) the farthest of the candidates still affordable from the centres and earlier picks
    for number, position in enumerate(chosen.tolist()):
        spent = costs[chosen[:number]].sum()
        affordable = [p for p in range(size) if p not in chosen[:number] and costs[p] <= budget - spent]
        reference = np.concatenate([centres, embeddings[chosen[:number]]])
        distances = nearest_distances(embeddings, reference)
        assert distances[position] >= max(distances[affordable]) - 1e-6


# ------------------------------------------------------------------------------------ 6. core-set and hybrid
LINE = np.array([[1.0, 0.0], [2.0, 0.0], [10.0, 0.0], [11.0, 0.0]], dtype=np.float32)  # candidates 1, 2, 10, 11


def line_pool() -> PoolStats:
    return PoolStats(np.array([1, 2, 10, 11]), {"embedding": LINE}, np.array([0]),
                     {"embedding": np.zeros((1, 2), dtype=np.float32)})


def test_coreset_on_a_line_by_hand() -> None:
    # from the labeled point 0: 11 is farthest (11); then 2 (2 from 0, 9 from 11); then 1 and 10 are both 1 away
    # from a centre, and the seed decides between them
    orders = set()
    for seed in range(16):
        chosen = pick(CoresetStrategy(), line_pool(), frames_picker(4, 4), seed)
        assert chosen[:2] == [11, 2]
        keys = tie_break_keys(np.array([1, 10]), seed)
        assert chosen[2:] == ([1, 10] if keys[0] < keys[1] else [10, 1])
        assert chosen == pick(CoresetStrategy(), line_pool(), frames_picker(4, 4), seed)  # reproducible
        orders.add(tuple(chosen))
    assert len(orders) == 2
    assert pick(CoresetStrategy(), line_pool(), frames_picker(2, 4)) == [11, 2]


def test_coreset_passes_over_a_frame_the_budget_cannot_afford() -> None:
    rules = SelectionRules(budget=5, unit="boxes")
    costs = rules.costs(np.array([0, 1, 1, 9]))  # 1, 2, 2, 10
    # 11 costs 10: refused; 10 is then the farthest (10, 3 left); 2 (2 away, 1 left); 1 (1 left, cost 1)
    assert pick(CoresetStrategy(), line_pool(), Picker(rules, costs)) == [10, 2, 1]


def test_coreset_without_labeled_frames_starts_at_random_then_goes_far() -> None:
    pool = PoolStats(np.array([1, 2, 10, 11]), {"embedding": LINE})
    for seed in range(8):
        chosen = pick(CoresetStrategy(), pool, frames_picker(2, 4), seed)
        first = int(np.array([1, 2, 10, 11])[np.argmin(tie_break_keys(np.array([1, 2, 10, 11]), seed))])
        assert chosen[0] == first
        assert chosen[1] == (1 if first >= 10 else 11)


def test_identical_embeddings_are_taken_in_the_seeded_order() -> None:
    """38 frames share one embedding, so every step is a tie among identical frames (equally far from the labeled
    frame, then at distance 0 from the first pick): the tie-break keys alone must decide the order."""
    candidates = np.arange(38) * 2 + 1
    for dims in (64, 129):
        rng = np.random.default_rng(dims)
        same = np.tile((rng.normal(size=dims) * 10).astype(np.float32), (38, 1))
        labeled = (rng.normal(size=(1, dims)) * 10).astype(np.float32)
        pool = PoolStats(candidates, {"embedding": same}, np.array([0]), {"embedding": labeled})
        for seed in range(3):
            expected = candidates[np.argsort(tie_break_keys(candidates, seed))].tolist()
            assert pick(CoresetStrategy(), pool, frames_picker(38, 38), seed) == expected, (dims, seed)


def test_nearest_distances() -> None:
    points = np.array([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])
    assert np.isposinf(nearest_distances(points, np.zeros((0, 2)))).all()
    np.testing.assert_allclose(nearest_distances(points, np.array([[0.0, 0.0]])), [0.0, 5.0, 10.0])
    np.testing.assert_allclose(nearest_distances(points, np.array([[6.0, 8.0], [0.0, 1.0]])), [1.0, 3 * 2**0.5, 0.0],
                               atol=1e-9)


def test_hybrid_keeps_only_the_most_uncertain_then_spreads_them() -> None:
    pool = PoolStats(np.arange(6), {
        "score": np.array([0.9, 0.85, 0.8, 0.7, 0.1, 0.05]),
        # 0 and 1 are near-duplicates; 4 and 5 are far from everything but confidently predicted
        "embedding": np.array([[10, 0], [10.1, 0], [0, 5], [0, 8], [50, 50], [-40, 0]], dtype=np.float32),
    }, np.array([6]), {"embedding": np.zeros((1, 2), dtype=np.float32)})
    # prefilter 2 x 2 picks keeps 0..3; from the labeled origin: 1 (10.1), then 3 (8) rather than 0 (0.1 from 1)
    assert pick(HybridStrategy(UncertaintyStrategy(), prefilter=2.0), pool, frames_picker(2, 6)) == [1, 3]
    # prefilter 1: the survivors are exactly the two most uncertain
    assert sorted(pick(HybridStrategy(UncertaintyStrategy(), prefilter=1.0), pool, frames_picker(2, 6))) == [0, 1]
    # for comparison: uncertainty alone takes the near-duplicates, the core-set alone the confident outliers
    assert pick(UncertaintyStrategy(), pool, frames_picker(2, 6)) == [0, 1]
    assert pick(CoresetStrategy(), pool, frames_picker(2, 6)) == [4, 5]


def test_hybrid_refuses_sampled_uncertainty_and_a_small_prefilter() -> None:
    with pytest.raises(ValueError, match="strategy=hybrid"):
        HybridStrategy(UncertaintyStrategy("bald", passes=3, dropout=0.1))
    with pytest.raises(ValueError, match=r"strategy\.prefilter"):
        HybridStrategy(UncertaintyStrategy(), prefilter=0.5)


# ------------------------------------------------------------------------------------ 7. class balance
def test_class_balance_weights_by_hand() -> None:
    # 1/(n+1) for n = 100, 10, 0 is 1/101, 1/11, 1; their sum is 1223/1111, so the weights are 11, 101 and 1111
    # over 1223
    np.testing.assert_allclose(ClassBalanceStrategy.class_weights(np.array([100, 10, 0])),
                               np.array([11, 101, 1111]) / 1223, rtol=1e-12)
    np.testing.assert_allclose(ClassBalanceStrategy.class_weights(np.array([5, 5])), [0.5, 0.5])


def test_class_balance_prefers_the_class_the_labeled_set_lacks() -> None:
    frames = [
        make_frame(0, [[0.9, 0.05, 0.05]]),  # a vehicle: (0.9 x 11 + 0.05 x 101 + 0.05 x 1111) / 1223 = 70.5 / 1223
        make_frame(1, [[0.1, 0.1, 0.8]]),  # a golf cart: (1.1 + 10.1 + 888.8) / 1223 = 900 / 1223
        make_frame(2, [[0.9, 0.05, 0.05]] * 3),  # three vehicles: 211.5 / 1223
        make_frame(3, [[0.1, 0.1, 0.8]], scores=[0.2]),  # a golf cart below min_score: counts for nothing
    ]
    strategy = ClassBalanceStrategy(min_score=0.3)
    mass = strategy.frame_stats(frames)["class_mass"]
    np.testing.assert_allclose(mass, [[0.9, 0.05, 0.05], [0.1, 0.1, 0.8], [2.7, 0.15, 0.15], [0, 0, 0]], atol=1e-6)
    np.testing.assert_allclose(mass @ strategy.class_weights(np.array([100, 10, 0])),
                               np.array([70.5, 900, 211.5, 0]) / 1223, rtol=1e-5)
    pool = PoolStats(np.arange(4), {"class_mass": mass}, labeled_class_counts=np.array([100, 10, 0]))
    assert pick(strategy, pool, frames_picker(4, 4)) == [1, 2, 0, 3]
    # when vehicles are what the labeled set lacks, the order turns
    pool = PoolStats(np.arange(4), {"class_mass": mass}, labeled_class_counts=np.array([0, 10, 100]))
    assert pick(strategy, pool, frames_picker(2, 4)) == [2, 0]


def test_class_balance_needs_the_labeled_class_counts() -> None:
    pool = PoolStats(np.arange(2), {"class_mass": np.ones((2, 3))})
    with pytest.raises(ValueError, match="class counts"):
        ClassBalanceStrategy().select(pool, frames_picker(1, 2), 0)


# ------------------------------------------------------------------------------------ 8. committee matching
def boxes_frame(boxes: Sequence[Sequence[float]], scores: Sequence[float] | None = None) -> Detections:
    tensor = torch.tensor(boxes, dtype=torch.float32)
    count = len(tensor)
    return Detections(0, tensor, torch.zeros(count, dtype=torch.long),
                      torch.tensor(scores if scores is not None else [1.0] * count, dtype=torch.float32),
                      torch.ones(count, 1))


def box3d(x: float, y: float, dx: float, dy: float, z: float = 0.0) -> list[float]:
    return [x, y, z, dx, dy, 1.5, 0.3]


def test_3d_matching_is_greedy_by_score_one_to_one_within_half_the_larger_side() -> None:
    anchor = boxes_frame([box3d(0, 0, 4, 2),  # radius 0.5 x 4 = 2
                          box3d(1, 0, 4, 2),  # radius 2, best score
                          box3d(20, 0, 2, 2),  # radius 1
                          box3d(30, 0, 1, 3)],  # radius 1.5 (the larger side is dy)
                         scores=[0.6, 0.9, 0.8, 0.5])
    other = boxes_frame([box3d(0.8, 0, 4, 2),  # 0.8 from anchor 0, 0.2 from anchor 1
                         box3d(-1.5, 0, 4, 2),  # 1.5 from anchor 0, 2.5 from anchor 1
                         box3d(21.2, 0, 10, 10),  # 1.2 from anchor 2: too far for it, however big it is itself
                         box3d(30, 1.4, 1, 1, z=5.0)])  # 1.4 from anchor 3 in bird's-eye view; height is ignored
    matched = match_to_anchor(anchor, other)
    assert matched.dtype == torch.int64
    # anchor 1 (0.9) takes box 0; anchor 2 finds nothing; anchor 0 (0.6) takes box 1, since box 0 is gone
    assert matched.tolist() == [1, 0, -1, 3]
    # with the scores of anchors 0 and 1 swapped, anchor 0 takes box 0 first and anchor 1 has nothing within 2
    swapped = boxes_frame(anchor.boxes.tolist(), scores=[0.9, 0.6, 0.8, 0.5])
    assert match_to_anchor(swapped, other).tolist() == [0, -1, -1, 3]
    assert match_to_anchor(anchor, other, radius=0.7).tolist() == [1, 0, 2, 3]  # anchor 2 now reaches 1.4


def test_2d_matching_uses_pixel_centres_and_the_larger_side() -> None:
    anchor = boxes_frame([[0, 0, 10, 20], [100, 100, 110, 104]])  # centres (5, 10), (105, 102); radii 10, 5
    other = boxes_frame([[106, 104, 112, 110],  # centre (109, 107): 6.4 from anchor 1
                         [2, 6, 12, 20],  # centre (7, 13): 3.6 from anchor 0
                         [14, 0, 20, 10],  # centre (17, 5): 13 from anchor 0
                         [104, 100, 108, 106]])  # centre (106, 103): 1.4 from anchor 1
    assert match_to_anchor(anchor, other).tolist() == [1, 3]
    assert match_to_anchor(anchor, boxes_frame([[14, 0, 20, 10]])).tolist() == [-1, -1]


def test_matching_with_nothing_to_match() -> None:
    anchor = boxes_frame([box3d(0, 0, 2, 2), box3d(5, 5, 2, 2)])
    empty = Detections(0, torch.zeros(0, 7), torch.zeros(0, dtype=torch.long), torch.zeros(0), torch.zeros(0, 1))
    assert match_to_anchor(anchor, empty).tolist() == [-1, -1]
    assert match_to_anchor(empty, anchor).shape == (0,)
