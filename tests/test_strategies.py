"""Acquisition strategies on hand-built detections: per-box uncertainty, aggregation, top-k and ties."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from fake_detections import make_frame as frame
from hypothesis import given, settings
from hypothesis import strategies as st

from alcv.models.detections import Detections
from alcv.seeding import SELECTION, derive_seed
from alcv.strategies import (
    AGGREGATIONS,
    EMPTY_FRAME_POLICIES,
    Picker,
    PoolStats,
    RandomStrategy,
    SelectionRules,
    UncertaintyStrategy,
    aggregate,
    binary_entropy,
    least_confidence,
    top_k,
)


def empty(index: int) -> Detections:
    return frame(index, [])


def choose(strategy: UncertaintyStrategy | RandomStrategy, candidates: np.ndarray, scores: np.ndarray, k: int,
           seed: int) -> np.ndarray:
    """What ``strategy`` acquires from ``candidates`` (any order) with ``scores`` under a budget of ``k``
    frames: absolute indices, best first."""
    candidates = np.asarray(candidates, dtype=np.int64)
    order = np.argsort(candidates)
    pool = PoolStats(candidates[order], {"score": np.asarray(scores, dtype=np.float64)[order]})
    positions = strategy.select(pool, Picker(SelectionRules(budget=k), np.ones(candidates.size)), seed)
    return pool.candidates[positions]


def ranking(strategy: UncertaintyStrategy, detections: Sequence[Detections], seed: int = 0) -> list[int]:
    """All frames, best first, as the strategy would acquire them."""
    candidates = np.array([d.index for d in detections])
    return choose(strategy, candidates, strategy.frame_scores(detections), len(detections), seed).tolist()


# ------------------------------------------------------------------------------------ uncertainty
def test_least_confidence_is_one_minus_the_top_probability() -> None:
    probs = np.array([
        [0.7, 0.2, 0.1],  # softmax row -> 0.3
        [0.4, 0.35, 0.25],  # near a tie -> 0.6
        [1.0, 0.0, 0.0],  # certain -> 0
        [0.1, 0.1, 0.1],  # sigmoid row, unsure of everything -> 0.9
        [0.2, 0.9, 0.8],  # sigmoid row, the max is not the first column -> 0.1
    ])
    np.testing.assert_allclose(least_confidence(probs), [0.3, 0.6, 0.0, 0.9, 0.1])
    assert least_confidence(np.zeros((0, 3))).shape == (0,)


def test_binary_entropy_is_the_most_undecided_class_in_bits() -> None:
    h = lambda p: -(p * np.log2(p) + (1 - p) * np.log2(1 - p))  # noqa: E731 - the textbook formula
    probs = np.array([
        [0.5, 0.0, 0.0],  # undecided object or background -> 1 bit
        [0.1, 0.0, 0.0],  # nearly sure it is background -> H(0.1)
        [0.9, 0.05, 0.05],  # a confident vehicle: its own class, not the small others -> H(0.9)
        [0.8, 0.4, 0.0],  # the most undecided class is the second, not the top one -> H(0.4)
        [1.0, 0.0, 0.0],  # certain -> 0
    ])
    np.testing.assert_allclose(binary_entropy(probs), [1.0, h(0.1), h(0.9), h(0.4), 0.0], atol=1e-12)
    assert binary_entropy(np.zeros((0, 3))).shape == (0,)


def test_binary_entropy_ranks_an_undecided_detection_above_a_weak_one_where_least_confidence_does_not() -> None:
    # the two measures disagree on a sigmoid head: frame 20's weakest detection (0.12, nearly sure background)
    # is least confidence's most uncertain box; frame 21's detection at 0.5 is binary entropy's
    detections = [frame(20, [[0.95, 0.0, 0.0], [0.12, 0.0, 0.0]]), frame(21, [[0.5, 0.0, 0.0], [0.9, 0.0, 0.0]])]
    assert ranking(UncertaintyStrategy("least_confidence"), detections) == [20, 21]
    assert ranking(UncertaintyStrategy("binary_entropy"), detections) == [21, 20]


def test_aggregate_reduces_boxes_per_frame_and_leaves_empty_frames_nan() -> None:
    # frame 0: boxes 0.5, 0.05; frame 1: 0.4, 0.4; frame 2: none; frame 3: 0.2
    values = np.array([0.5, 0.4, 0.05, 0.2, 0.4])
    frame_of_box = np.array([0, 1, 0, 3, 1])
    expected = {"max": [0.5, 0.4, np.nan, 0.2], "mean": [0.275, 0.4, np.nan, 0.2],
                "sum": [0.55, 0.8, np.nan, 0.2], "min": [0.05, 0.4, np.nan, 0.2],
                "topk_mean": [0.275, 0.4, np.nan, 0.2]}  # top 3 of at most 2 boxes: the mean
    for how in AGGREGATIONS:
        np.testing.assert_allclose(aggregate(values, frame_of_box, 4, how), expected[how], err_msg=how)
    with pytest.raises(ValueError, match="median"):
        aggregate(values, frame_of_box, 4, "median")


def test_the_least_confident_frame_comes_first_with_max() -> None:
    detections = [
        frame(10, [[0.9, 0.05, 0.05], [0.8, 0.1, 0.1]]),  # max LC 0.2
        frame(11, [[0.95, 0.0, 0.05], [0.4, 0.35, 0.25]]),  # max LC 0.6: one box near a tie
        frame(12, [[0.7, 0.2, 0.1]]),  # max LC 0.3
    ]
    strategy = UncertaintyStrategy(aggregation="max")
    np.testing.assert_allclose(strategy.frame_scores(detections), [0.2, 0.6, 0.3], rtol=1e-6)
    assert ranking(strategy, detections) == [11, 12, 10]
    assert choose(strategy, np.array([10, 11, 12]), strategy.frame_scores(detections), 1, 0).tolist() == [11]


# Frame 0 has one very uncertain and one confident box (LC 0.5, 0.05); frame 1 two middling boxes (0.4, 0.4):
#   max: 0.5 vs 0.4 -> 0 first        mean: 0.275 vs 0.4 -> 1 first
#   sum: 0.55 vs 0.8 -> 1 first       min: 0.05 vs 0.4 -> 1 first
MIXED = [frame(0, [[0.5, 0.3, 0.2], [0.95, 0.05, 0.0]]), frame(1, [[0.6, 0.3, 0.1], [0.3, 0.6, 0.1]])]
# Frame 5 is crowded with fairly sure boxes (5 x LC 0.2), frame 6 holds one unsure box (LC 0.7):
#   sum: 1.0 vs 0.7 -> 5 first, while max / mean / min: 0.2 vs 0.7 -> 6 first
CROWDED = [frame(5, [[0.8, 0.1, 0.1]] * 5), frame(6, [[0.3, 0.3, 0.3]])]
# Frame 8: LC 0.6 and 0.1; frame 9: LC 0.3 and 0.3:
#   max 0.6 vs 0.3 and mean 0.35 vs 0.3 -> 8 first; min 0.1 vs 0.3 -> 9 first
SPREAD = [frame(8, [[0.4, 0.3, 0.3], [0.9, 0.1, 0.0]]), frame(9, [[0.7, 0.2, 0.1], [0.1, 0.7, 0.2]])]


@pytest.mark.parametrize(
    ("detections", "aggregation", "scores", "order"),
    [
        (MIXED, "max", [0.5, 0.4], [0, 1]),
        (MIXED, "mean", [0.275, 0.4], [1, 0]),
        (MIXED, "sum", [0.55, 0.8], [1, 0]),
        (MIXED, "min", [0.05, 0.4], [1, 0]),
        (CROWDED, "sum", [1.0, 0.7], [5, 6]),
        (CROWDED, "max", [0.2, 0.7], [6, 5]),
        (CROWDED, "mean", [0.2, 0.7], [6, 5]),
        (CROWDED, "min", [0.2, 0.7], [6, 5]),
        (SPREAD, "max", [0.6, 0.3], [8, 9]),
        (SPREAD, "mean", [0.35, 0.3], [8, 9]),
        (SPREAD, "min", [0.1, 0.3], [9, 8]),
    ],
)
def test_aggregations_rank_frames_as_computed_by_hand(
    detections: list[Detections], aggregation: str, scores: list[float], order: list[int]
) -> None:
    strategy = UncertaintyStrategy(aggregation=aggregation)
    np.testing.assert_allclose(strategy.frame_scores(detections), scores, rtol=1e-6)
    assert ranking(strategy, detections) == order


# ------------------------------------------------------------------------------------ min_score
def test_boxes_below_min_score_do_not_count() -> None:
    detections = [
        frame(0, [[0.2, 0.1, 0.1]]),  # its only box (score 0.2, LC 0.8) is below 0.5: an empty frame
        frame(1, [[0.9, 0.1, 0.0]]),  # LC 0.1
        frame(2, [[0.25, 0.2, 0.1], [0.6, 0.3, 0.1]]),  # LC 0.75 is dropped (score 0.25) -> 0.4
        frame(3, [[0.5, 0.5, 0.0]]),  # score exactly 0.5: kept -> LC 0.5
    ]
    everything = UncertaintyStrategy(min_score=0.0)
    np.testing.assert_allclose(everything.frame_scores(detections), [0.8, 0.1, 0.75, 0.5], rtol=1e-6)
    assert ranking(everything, detections) == [0, 2, 3, 1]

    confident = UncertaintyStrategy(min_score=0.5)
    np.testing.assert_allclose(confident.frame_scores(detections), [-np.inf, 0.1, 0.4, 0.5], rtol=1e-6)
    assert ranking(confident, detections) == [3, 2, 1, 0]
    assert ranking(UncertaintyStrategy(min_score=0.5, empty_frames="most_uncertain"), detections)[0] == 0


def test_min_score_uses_the_box_score_not_the_class_probabilities() -> None:
    """The box score decides what counts, even where it differs from the top class probability."""
    detections = [frame(0, [[0.9, 0.1, 0.0]], scores=[0.1]), frame(1, [[0.6, 0.3, 0.1]], scores=[0.6])]
    np.testing.assert_allclose(UncertaintyStrategy(min_score=0.3).frame_scores(detections), [-np.inf, 0.4])


# ------------------------------------------------------------------------------------ empty frames
@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_empty_frames_go_last_or_first_by_policy(aggregation: str) -> None:
    detections = [empty(20), frame(21, [[0.4, 0.3, 0.3]]), empty(22), frame(23, [[0.99, 0.01, 0.0]]),
                  frame(24, [[1.0, 0.0, 0.0]])]  # a box with LC 0 still ranks above an empty frame
    least = UncertaintyStrategy(aggregation=aggregation, empty_frames="least_uncertain")
    most = UncertaintyStrategy(aggregation=aggregation, empty_frames="most_uncertain")

    assert np.isneginf(least.frame_scores(detections)[[0, 2]]).all()
    assert np.isposinf(most.frame_scores(detections)[[0, 2]]).all()
    assert ranking(least, detections)[:3] == [21, 23, 24]
    assert set(ranking(least, detections)[3:]) == {20, 22}
    assert set(ranking(most, detections)[:2]) == {20, 22}
    assert ranking(most, detections)[2:] == [21, 23, 24]


def test_a_batch_of_only_empty_frames_and_an_empty_batch() -> None:
    strategy = UncertaintyStrategy()
    assert np.isneginf(strategy.frame_scores([empty(0), empty(1)])).all()
    assert strategy.frame_scores([]).shape == (0,)


# ------------------------------------------------------------------------------------ ties
def test_ties_are_broken_reproducibly_by_the_seed() -> None:
    # frames 0..5 are identical (LC 0.5 each); frame 9 is less confident and must always lead
    detections = [frame(i, [[0.5, 0.3, 0.2]]) for i in range(6)] + [frame(9, [[0.4, 0.3, 0.3]])]
    strategy = UncertaintyStrategy()
    orders = {seed: ranking(strategy, detections, seed) for seed in range(20)}

    for seed, order in orders.items():
        assert order == ranking(strategy, detections, seed)  # same seed, same order
        assert order[0] == 9 and sorted(order[1:]) == list(range(6))
    assert len({tuple(order) for order in orders.values()}) > 1  # the seed does break the ties


def test_single_class_detections() -> None:
    """With C = 1 least confidence is 1 - p of the only class."""
    detections = [frame(0, [[0.9]]), frame(1, [[0.2], [0.95]]), frame(2, [[0.6]]),
                  frame(3, [], num_classes=1)]
    strategy = UncertaintyStrategy()
    np.testing.assert_allclose(strategy.frame_scores(detections), [0.1, 0.8, 0.4, -np.inf], rtol=1e-6)
    assert ranking(strategy, detections) == [1, 2, 0, 3]


def test_all_equal_probabilities_make_every_frame_tied() -> None:
    """When every frame scores the same, the order is the seeded random one: RandomStrategy's."""
    candidates = np.array([40, 3, 17, 8, 25, 11])
    detections = [frame(int(i), [[1 / 3, 1 / 3, 1 / 3]] * 2) for i in candidates]
    strategy = UncertaintyStrategy(aggregation="mean")
    scores = strategy.frame_scores(detections)
    np.testing.assert_allclose(scores, 2 / 3, rtol=1e-6)
    for seed in (0, 1, 12345):
        expected = choose(RandomStrategy(), candidates, scores, 4, seed)
        assert choose(strategy, candidates, scores, 4, seed).tolist() == expected.tolist()


# ------------------------------------------------------------------------------------ settings
@pytest.mark.parametrize(
    ("kwargs", "setting", "allowed"),
    [
        ({"uncertainty": "variance"}, "strategy.uncertainty",
         ["least_confidence", "margin", "entropy", "binary_entropy", "bald"]),
        ({"aggregation": "median"}, "strategy.aggregation", list(AGGREGATIONS)),
        ({"empty_frames": "skip"}, "strategy.empty_frames", list(EMPTY_FRAME_POLICIES)),
        ({"min_score": -0.1}, "strategy.min_score", ["[0, 1]"]),
        ({"min_score": 1.5}, "strategy.min_score", ["[0, 1]"]),
        ({"min_score": float("nan")}, "strategy.min_score", ["[0, 1]"]),
    ],
)
def test_bad_settings_name_the_setting_and_the_allowed_values(
    kwargs: dict[str, object], setting: str, allowed: list[str]
) -> None:
    with pytest.raises(ValueError) as raised:
        UncertaintyStrategy(**kwargs)  # type: ignore[arg-type]
    message = str(raised.value)
    assert message.startswith(setting)
    assert str(next(iter(kwargs.values()))) in message
    for value in allowed:
        assert value in message


def test_valid_settings_are_accepted() -> None:
    for aggregation in AGGREGATIONS:
        for empty_frames in EMPTY_FRAME_POLICIES:
            for min_score in (0.0, 0.5, 1.0):
                UncertaintyStrategy("least_confidence", aggregation, empty_frames=empty_frames, min_score=min_score)


# ------------------------------------------------------------------------------------ top_k
@pytest.mark.parametrize("k", [0, 1, 3, 10, 25])
def test_top_k_returns_min_k_n_distinct_candidates_best_first(k: int) -> None:
    candidates = np.array([91, 4, 57, 13, 70, 2, 38, 66, 25, 8])
    scores = np.array([0.3, 0.9, -np.inf, 0.1, np.inf, 0.5, 0.2, 0.8, 0.7, 0.0])
    chosen = top_k(candidates, scores, k, seed=0)
    assert chosen.dtype == np.int64
    # sorted by score by hand: 70 (inf), 4, 66, 25, 2, 91, 38, 13, 8, 57 (-inf)
    assert chosen.tolist() == [70, 4, 66, 25, 2, 91, 38, 13, 8, 57][:k]


def test_top_k_refuses_nan_mismatched_shapes_and_negative_k() -> None:
    with pytest.raises(ValueError, match="NaN"):
        top_k(np.array([1, 2, 3]), np.array([0.1, np.nan, 0.3]), 1, seed=0)
    with pytest.raises(ValueError, match="equal length"):
        top_k(np.array([1, 2, 3]), np.array([0.1, 0.2]), 1, seed=0)
    with pytest.raises(ValueError, match="1-D"):
        top_k(np.array([[1, 2], [3, 4]]), np.array([[0.1, 0.2], [0.3, 0.4]]), 1, seed=0)
    with pytest.raises(ValueError, match="'k'"):
        top_k(np.array([1, 2, 3]), np.array([0.1, 0.2, 0.3]), -1, seed=0)


def test_a_negative_budget_is_refused() -> None:
    """`acquire` passes `query_size` straight through: a negative one must not label almost everything."""
    with pytest.raises(ValueError, match=r"loop\.query_size"):
        SelectionRules(budget=-1)


# ------------------------------------------------------------------------------------ properties
@settings(max_examples=80, deadline=None)
@given(
    candidates=st.lists(st.integers(0, 100_000), min_size=1, max_size=40, unique=True),
    data=st.data(),
    k=st.integers(0, 50),
    seed=st.integers(0, 2**31 - 1),
)
def test_selection_is_permutation_invariant_and_returns_k_distinct_candidates(
    candidates: list[int], data: st.DataObject, k: int, seed: int
) -> None:
    # few distinct score values, so that ties are common
    scores = data.draw(st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0, np.inf, -np.inf]),
                                min_size=len(candidates), max_size=len(candidates)), label="scores")
    permutation = np.array(data.draw(st.permutations(range(len(candidates))), label="permutation"))
    cands, vals = np.array(candidates, dtype=np.int64), np.array(scores)

    for strategy in (UncertaintyStrategy(), RandomStrategy()):
        chosen = choose(strategy, cands, vals, k, seed)
        assert choose(strategy, cands[permutation], vals[permutation], k, seed).tolist() == chosen.tolist()
        assert chosen.size == min(k, len(candidates))
        assert len(set(chosen.tolist())) == chosen.size
        assert set(chosen.tolist()) <= set(candidates)

    # the uncertainty strategy takes the best: nothing left out scores higher than anything chosen
    chosen = choose(UncertaintyStrategy(), cands, vals, k, seed)
    score_of = dict(zip(candidates, scores, strict=True))
    left_out = set(candidates) - set(chosen.tolist())
    if chosen.size and left_out:
        assert min(score_of[i] for i in chosen.tolist()) >= max(score_of[i] for i in left_out)


# ------------------------------------------------------------------------------------ random
def test_random_strategy_is_seeded_and_ignores_scores() -> None:
    candidates = np.arange(5, 5005, 5)  # 1000 frames
    strategy = RandomStrategy()
    assert strategy.request is None
    assert strategy.frame_stats([frame(0, [[0.5, 0.5, 0.0]]), empty(1)]) == {}

    first = choose(strategy, candidates, np.zeros(1000), 10, seed=3)
    noise = np.random.default_rng(0).random(1000)
    assert choose(strategy, candidates, noise, 10, seed=3).tolist() == first.tolist()
    assert choose(strategy, candidates, np.zeros(1000), 10, seed=4).tolist() != first.tolist()
    assert choose(strategy, candidates, np.zeros(1000), 0, seed=3).size == 0


def test_random_strategy_is_roughly_uniform_over_seeds() -> None:
    """Over 2000 run-derived seeds, each of 20 candidates is picked with frequency near k / N = 0.25.

    The binomial standard deviation is sqrt(0.25 * 0.75 / 2000) ~ 0.01; the bound allows 0.05.
    """
    candidates = np.array([3 + 7 * i for i in range(20)])
    seeds = [derive_seed(7, SELECTION, loop) for loop in range(2000)]
    counts = dict.fromkeys(candidates.tolist(), 0)
    for seed in seeds:
        for index in choose(RandomStrategy(), candidates, np.zeros(20), 5, seed).tolist():
            counts[index] += 1
    frequencies = np.array(list(counts.values())) / len(seeds)
    assert np.abs(frequencies - 0.25).max() < 0.05, frequencies
    # and the first pick (the order matters too) is spread over all candidates
    firsts = {int(choose(RandomStrategy(), candidates, np.zeros(20), 1, seed)[0]) for seed in seeds[:500]}
    assert firsts == set(candidates.tolist())



def test_neighbouring_seeds_give_unrelated_random_selections() -> None:
    """Seeds 0 and 1 must not give the same picks with one bit flipped (the seed is hashed first)."""
    candidates = np.arange(1000)
    first = choose(RandomStrategy(), candidates, np.zeros(1000), 50, seed=0)
    second = choose(RandomStrategy(), candidates, np.zeros(1000), 50, seed=1)
    assert len(set(first.tolist()) & set(second.tolist())) < 15
    assert len(set((first ^ 1).tolist()) & set(second.tolist())) < 15
