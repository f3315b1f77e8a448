"""CRB (Luo et al., ICLR 2023) on hand-made detections: each stage's ranking by hand, and why it must be so."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest
import torch

from alcv.models.detections import Detections
from alcv.strategies import CRBStrategy, Picker, PoolStats, SelectionRules, kmeans_plus_plus, label_entropy
from alcv.strategies.crb import GeometryTarget, box_geometry, geometry_balance
from alcv.strategies.selection import tie_break_keys


def frame(index: int, boxes: Sequence[tuple[int, float]], embedding: Sequence[float] = (0.0, 0.0),
          num_classes: int = 3) -> Detections:
    """A LiDAR frame whose boxes are ``(class id, range in metres)``, each on the x axis, scored 0.9."""
    labels = torch.tensor([c for c, _ in boxes], dtype=torch.int64)
    box_tensor = torch.zeros(len(boxes), 7)
    box_tensor[:, 0] = torch.tensor([r for _, r in boxes], dtype=torch.float32)
    probs = torch.full((len(boxes), num_classes), 0.05)
    probs[torch.arange(len(boxes)), labels] = 0.9
    return Detections(index, box_tensor, labels, torch.full((len(boxes),), 0.9), probs,
                      embedding=torch.tensor(embedding, dtype=torch.float32))


def crb_pool(strategy: CRBStrategy, frames: Sequence[Detections]) -> PoolStats:
    return PoolStats(np.array([f.index for f in frames]), {name: np.asarray(values) for name, values in
                                                           strategy.frame_stats(frames).items()})


def crb_pick(strategy: CRBStrategy, frames: Sequence[Detections], budget: float, seed: int = 0) -> list[int]:
    pool = crb_pool(strategy, frames)
    return pool.candidates[strategy.select(pool, Picker(SelectionRules(budget=budget), np.ones(len(frames))),
                                           seed)].tolist()


def test_label_entropy_is_the_entropy_of_the_predicted_class_histogram_in_nats() -> None:
    box_class = np.array([[0, 1, 2, -1], [0, 0, 0, -1], [-1, -1, -1, -1], [0, 1, 1, 0], [2, 0, 0, 0]])
    expected = [math.log(3), 0.0, 0.0, math.log(2), -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))]
    np.testing.assert_allclose(label_entropy(box_class, 3), expected, atol=1e-12)


def test_box_geometry_is_the_bev_range_of_lidar_boxes_and_the_root_area_of_image_boxes() -> None:
    lidar = np.array([[3.0, 4.0, -1.0, 4.0, 2.0, 1.5, 0.3], [0.0, -2.0, 0.0, 1.0, 1.0, 1.0, 0.0]])
    np.testing.assert_allclose(box_geometry(lidar), [5.0, 2.0])  # z does not count: range in bird's-eye view
    np.testing.assert_allclose(box_geometry(np.array([[10.0, 20.0, 14.0, 29.0]])), [6.0])  # 4 x 9 pixels
    with pytest.raises(ValueError, match=r"expected \(M, 7\) LiDAR or \(M, 4\) xyxy boxes, got shape \(2, 5\)"):
        box_geometry(np.zeros((2, 5)))


def test_kmeans_plus_plus_takes_a_prototype_of_every_cluster_before_a_second_of_one() -> None:
    # three tight clusters far apart: after the first prototype, a point of another cluster is over 10^4 times
    # likelier than one of the same cluster, so for every seed the first three cover the three clusters
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0]])
    embeddings = np.concatenate([centre + rng.normal(0, 0.1, (6, 2)) for centre in centres])
    cluster = np.repeat(np.arange(3), 6)
    keys = tie_break_keys(np.arange(18), 5)
    for seed in range(20):
        chosen = kmeans_plus_plus(embeddings, 3, keys, seed)
        assert sorted(cluster[chosen]) == [0, 1, 2], seed
        assert chosen[0] == np.argmin(keys)  # the first is the smallest key
        assert kmeans_plus_plus(embeddings, 3, keys, seed).tolist() == chosen.tolist()  # reproducible


def test_kmeans_plus_plus_on_duplicates_takes_the_rest_by_key_and_never_repeats_a_row() -> None:
    embeddings = np.zeros((4, 2))
    embeddings[3] = 1.0
    keys = np.array([3, 0, 2, 1])
    # from row 1 (key 0), only row 3 is away; then rows 0 and 2 coincide with a prototype and follow by key
    assert kmeans_plus_plus(embeddings, 10, keys, seed=0).tolist() == [1, 3, 2, 0]
    assert kmeans_plus_plus(embeddings, 0, keys, seed=0).tolist() == []


def test_the_balance_prefers_boxes_spread_over_the_target_range_to_boxes_at_one_range() -> None:
    # the pool's vehicles lie between 0 and 40 m; a frame with vehicles at 5, 20 and 35 m covers that range,
    # one with all three at 5 m (or at 35 m) leaves most of the target without density
    values = np.linspace(0.0, 40.0, 81)
    target = GeometryTarget(values, np.zeros(81, dtype=np.int64), 1, alpha=0.95, bandwidth_fraction=0.1)
    near, spread, far = (np.array(ranges) for ranges in ([5.0, 5.0, 5.0], [5.0, 20.0, 35.0], [35.0, 35.0, 35.0]))
    kernels = np.stack([target.kernels(v, np.zeros(3, dtype=np.int64)) for v in (near, spread, far)])
    balance = geometry_balance(target, np.zeros_like(kernels[0]), kernels, np.full((3, 1), 3))
    assert balance[1] > max(balance[0], balance[2])
    assert ((balance >= 0) & (balance <= 1)).all()
    # with near boxes already picked, the far frame fills the gap better than another near one
    after_near = geometry_balance(target, kernels[0], kernels[[0, 2]], np.full((2, 1), 3))
    assert after_near[1] > after_near[0]


def test_a_class_the_candidate_has_no_box_of_counts_as_zero() -> None:
    values = np.array([10.0, 12.0, 14.0, 10.0, 12.0, 14.0])
    classes = np.array([0, 0, 0, 1, 1, 1])
    target = GeometryTarget(values, classes, 2, alpha=0.95, bandwidth_fraction=0.5)
    only_vehicle = target.kernels(np.array([12.0]), np.array([0]))
    both = target.kernels(np.array([12.0, 12.0]), np.array([0, 1]))
    balance = geometry_balance(target, np.zeros((2, 64)), np.stack([only_vehicle, both]), np.array([[1, 0], [1, 1]]))
    assert balance[0] == pytest.approx(balance[1] / 2)  # the same closeness for vehicles, none for the other


def test_crb_stage_one_takes_the_most_even_class_mix_when_k1_is_one() -> None:
    # with k1 = k2 = 1 the survivors of stage 1 are exactly the picks: the two frames mixing all three classes,
    # not the crowded one of a single class nor the empty one
    frames = [frame(0, [(0, 5.0)] * 6), frame(1, [(0, 5.0), (1, 8.0), (2, 12.0)]), frame(2, []),
              frame(3, [(0, 10.0), (1, 15.0), (2, 20.0), (0, 25.0)]), frame(4, [(0, 5.0), (1, 9.0)])]
    assert sorted(crb_pick(CRBStrategy(3, k1=1, k2=1), frames, budget=2)) == [1, 3]


def test_crb_stage_two_keeps_one_prototype_per_scene_of_near_duplicates() -> None:
    # four near-copies of one scene and one frame of another, all of the same class mix: with 2 picks and
    # k2 = 1, k-means++ keeps one copy and the other scene whatever the seed
    scene = [(0, 5.0), (1, 10.0)]
    frames = [frame(i, scene, embedding=(0.0, 0.01 * i)) for i in range(4)] + [frame(4, scene, embedding=(50.0, 0))]
    for seed in range(10):
        chosen = crb_pick(CRBStrategy(3, k1=5, k2=1), frames, budget=2, seed=seed)
        assert 4 in chosen and len(set(chosen) & {0, 1, 2, 3}) == 1, seed


def test_crb_stage_three_picks_the_frame_that_spreads_its_boxes_over_the_pool_ranges() -> None:
    # every frame has one vehicle and one pedestrian (equal label entropy) and all embeddings differ little, so
    # the balance decides: frame 2's boxes span the ranges the pool's boxes cover, the others sit at one end
    frames = [frame(0, [(0, 4.0), (1, 4.0)], (0.0, 0.0)), frame(1, [(0, 36.0), (1, 36.0)], (0.1, 0.0)),
              frame(2, [(0, 20.0), (1, 20.0)], (0.0, 0.1)), frame(3, [(0, 5.0), (1, 5.0)], (0.1, 0.1)),
              frame(4, [(0, 35.0), (1, 35.0)], (0.05, 0.05))]
    for seed in range(5):
        assert crb_pick(CRBStrategy(3, k1=5, k2=5, bandwidth_fraction=0.3), frames, budget=1, seed=seed) == [2]
        # the second pick goes to the other end of the range from the first end it reached
        two = crb_pick(CRBStrategy(3, k1=5, k2=5, bandwidth_fraction=0.3), frames, budget=3, seed=seed)
        assert two[0] == 2 and {two[1], two[2]} & {0, 3} and {two[1], two[2]} & {1, 4}, seed


def test_crb_spends_the_whole_budget_beyond_its_prototypes_in_stage_one_order() -> None:
    # frames 1, 3 and 5 mix two classes; frame 5 costs more than the budget. The mean cost of 4 makes 1.5
    # expected picks, so stages 1-3 keep 2 frames, yet 5 fit: after the prototypes that fit, the rest of the
    # budget goes to the frames by label entropy, mixed ones first
    frames = [frame(i, [(0, 5.0 + i), (1, 6.0)] if i % 2 else [(0, 5.0 + i)]) for i in range(6)]
    costs = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 19.0])
    strategy = CRBStrategy(3, k1=1, k2=1)
    pool = crb_pool(strategy, frames)
    for seed in range(5):
        chosen = pool.candidates[strategy.select(pool, Picker(SelectionRules(budget=6), costs), seed)].tolist()
        assert sorted(chosen) == [0, 1, 2, 3, 4] and set(chosen[:2]) == {1, 3}, seed


def test_crb_refuses_settings_outside_their_ranges() -> None:
    with pytest.raises(ValueError, match=r"need 1 <= k2 <= k1, got k1=2, k2=3"):
        CRBStrategy(3, k1=2, k2=3)
    with pytest.raises(ValueError, match=r"strategy\.alpha: must be in \(0\.5, 1\], got 0\.4"):
        CRBStrategy(3, alpha=0.4)
    with pytest.raises(ValueError, match=r"strategy\.num_classes: must be >= 1, got 0"):
        CRBStrategy(0)
