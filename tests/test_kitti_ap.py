"""Tests of the KITTI-style rotated-IoU AP (alcv.metrics.kitti_ap)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import pytest
import torch
from detection_cases import grouped_by_frames

from alcv.metrics import KittiAP, KittiMAP, bev_iou, iou_3d, kitti_ap

# 2 x 2 x 2 boxes at z = 0 unless stated: two boxes shifted by s along x have BEV IoU (2 - s) / (2 + s).
STRICT_LOOSE = ((0.7, 0.5),)


def box(x: float = 0.0, y: float = 0.0, z: float = 0.0, dx: float = 2.0, dy: float = 2.0, dz: float = 2.0) -> tuple:
    """``[x, y, z, dx, dy, dz, yaw]`` of an axis-aligned box."""
    return (x, y, z, dx, dy, dz, 0.0)


def _ap(
    preds: Sequence[tuple],
    gts: Sequence[tuple],
    class_names: Sequence[str] = ("car",),
    iou_thresholds: object = STRICT_LOOSE,
    **kwargs: object,
) -> KittiAP:
    """preds: (frame, label, score, box) tuples; gts: (frame, label, box) tuples, in input order."""
    return kitti_ap(
        pred_frame=np.array([p[0] for p in preds], dtype=np.int64),
        pred_boxes=np.array([p[3] for p in preds], dtype=np.float64).reshape(-1, 7),
        pred_label=np.array([p[1] for p in preds], dtype=np.int64),
        pred_score=np.array([p[2] for p in preds], dtype=np.float64),
        gt_frame=np.array([g[0] for g in gts], dtype=np.int64),
        gt_boxes=np.array([g[2] for g in gts], dtype=np.float64).reshape(-1, 7),
        gt_label=np.array([g[1] for g in gts], dtype=np.int64),
        class_names=class_names,
        iou_thresholds=iou_thresholds,
        **kwargs,
    )


def _far_apart_gts(count: int) -> list[tuple]:
    """``count`` ground-truth boxes of class 0 in frame 0, 10 m apart along y."""
    return [(0, 0, box(y=10.0 * i)) for i in range(count)]


# ---------------------------------------------------------------------------------------------------------
# Hand-computed cases
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("recall_positions", [40, 11])
@pytest.mark.parametrize("mode", ["bev", "3d"])
def test_perfect_detector_has_ap_one(mode: str, recall_positions: int) -> None:
    gts = [(0, 0, box()), (0, 1, box(x=5.0, dx=0.8, dy=0.6)), (1, 0, box(y=3.0)), (2, 2, box(x=-4.0, dz=1.7))]
    preds = [(f, label, 0.1 + 0.2 * i, b) for i, (f, label, b) in enumerate(gts)]
    thresholds = [[0.7, 0.5], [0.5, 0.25], [0.5, 0.25]]
    res = _ap(preds, gts, ("car", "pedestrian", "cyclist"), thresholds, mode=mode, recall_positions=recall_positions)
    np.testing.assert_array_equal(res.ap, np.ones((3, 2)))
    assert res.map == 1.0
    assert res.as_dict() == {"map": 1.0, "ap/car": 1.0, "ap/pedestrian": 1.0, "ap/cyclist": 1.0}
    assert res.mode == mode and res.recall_positions == recall_positions


def test_false_positive_ranked_above_vs_below_the_true_positives() -> None:
    gts = _far_apart_gts(2)
    tps = [(0, 0, 0.8, box()), (0, 0, 0.7, box(y=10.0))]
    # FP first: precision 0, 1/2, 2/3 at recall 0, 1/2, 1. Every recall position r > 0 (and r = 0) is reached
    # at the last point at the latest, where precision is 2/3, the highest from there on -> AP 2/3.
    above = _ap([(0, 0, 0.9, box(x=50.0)), *tps], gts)
    np.testing.assert_allclose(above.ap, [[2 / 3, 2 / 3]])
    np.testing.assert_allclose(_ap([(0, 0, 0.9, box(x=50.0)), *tps], gts, recall_positions=11).ap, [[2 / 3, 2 / 3]])
    # FP last: precision 1, 1, 2/3 at recall 1/2, 1, 1 -> interpolated precision 1 everywhere -> AP 1.
    below = _ap([*tps, (0, 0, 0.1, box(x=50.0))], gts)
    np.testing.assert_array_equal(below.ap, [[1.0, 1.0]])


def test_hand_worked_r40_and_r11() -> None:
    # 4 GTs; 6 detections by score: TP, FP, TP, FP, FP, TP (the third GT is never found).
    #   cumulative TP 1, 1, 2, 2, 2, 3 -> precision 1, 1/2, 2/3, 1/2, 2/5, 1/2; recall 1/4, 1/4, 1/2, 1/2, 1/2, 3/4.
    # Interpolated precision p(r) = max precision over points with recall >= r:
    #   r <= 1/4: 1;  1/4 < r <= 1/2: 2/3;  1/2 < r <= 3/4: 1/2;  r > 3/4: 0.
    # R40 (r = k/40, k = 1..40): k = 1..10 -> 1, k = 11..20 -> 2/3, k = 21..30 -> 1/2, k = 31..40 -> 0:
    #   AP = (10 + 20/3 + 5) / 40 = 13/24.  (k = 10 is r = 1/4 exactly: reached, so precision 1 counts.)
    # R11 (r = 0, 0.1, ..., 1): 0, .1, .2 -> 1; .3, .4, .5 -> 2/3; .6, .7 -> 1/2; .8, .9, 1 -> 0:
    #   AP = (3 + 2 + 1) / 11 = 6/11.
    gts = _far_apart_gts(4)
    hit = [box(), box(y=10.0), box(y=30.0)]
    miss = box(x=100.0)
    preds = [
        (0, 0, 0.9, hit[0]),
        (0, 0, 0.8, miss),
        (0, 0, 0.7, hit[1]),
        (0, 0, 0.6, miss),
        (0, 0, 0.5, miss),
        (0, 0, 0.4, hit[2]),
    ]
    rng = np.random.default_rng(0)
    shuffled = [preds[i] for i in rng.permutation(len(preds))]  # input order does not matter, scores do
    np.testing.assert_allclose(_ap(shuffled, gts).ap, [[13 / 24, 13 / 24]])
    np.testing.assert_allclose(_ap(shuffled, gts, recall_positions=11).ap, [[6 / 11, 6 / 11]])


def test_duplicate_detection_is_a_false_positive() -> None:
    # GTs A and B; detections A (0.9), A again (0.8), B (0.7): TP, FP, TP -> precision 1, 1/2, 2/3 at
    # recall 1/2, 1/2, 1 -> R40: k = 1..20 -> 1, k = 21..40 -> 2/3 -> AP = (20 + 40/3) / 40 = 5/6.
    # (Were the duplicate a TP, AP would be 1.)
    gts = _far_apart_gts(2)
    res = _ap([(0, 0, 0.9, box()), (0, 0, 0.8, box()), (0, 0, 0.7, box(y=10.0))], gts)
    np.testing.assert_allclose(res.ap, [[5 / 6, 5 / 6]])


def test_iou_just_below_the_strict_threshold_counts_only_at_the_loose_level() -> None:
    # Shift 0.36 m: IoU = 1.64 / 2.36 = 0.6949 < 0.7 but >= 0.5.
    shifted = box(x=0.36)
    assert bev_iou(np.array([shifted]), np.array([box()]))[0, 0] == pytest.approx(1.64 / 2.36)
    res = _ap([(0, 0, 0.9, shifted)], [(0, 0, box())])
    np.testing.assert_array_equal(res.ap, [[0.0, 1.0]])
    np.testing.assert_array_equal(res.ap_per_level, [0.0, 1.0])
    assert res.map == 0.5


def test_iou_exactly_at_the_threshold_is_a_match() -> None:
    # A 2 x 1 box centred in a 4 x 1 box: intersection 2, union 4 -> IoU exactly 0.5.
    res = _ap([(0, 0, 0.9, box(dx=2.0, dy=1.0))], [(0, 0, box(dx=4.0, dy=1.0))], iou_thresholds=[0.5])
    np.testing.assert_array_equal(res.ap, [[1.0]])


def test_detection_takes_the_ground_truth_with_the_highest_iou() -> None:
    # GT0 at x = 0, GT1 at x = 0.9; threshold 0.3.
    # D1 (x = 0.8): IoU 1.2/2.8 = 0.43 with GT0, 1.9/2.1 = 0.90 with GT1 -> takes GT1 (not the first GT).
    # D2 (x = 1.2): GT1 is taken; IoU with GT0 = 0.8/3.2 = 0.25 < 0.3 -> FP.
    # TP, FP, recall 1/2 -> R40 AP = 20/40. (Taking GT0 first would let D2 match GT1: AP 1.)
    res = _ap(
        [(0, 0, 0.9, box(x=0.8)), (0, 0, 0.8, box(x=1.2))], [(0, 0, box()), (0, 0, box(x=0.9))], iou_thresholds=[0.3]
    )
    np.testing.assert_allclose(res.ap, [[0.5]])


def test_equal_scores_are_processed_in_input_order() -> None:
    # One GT; A (IoU 1.4/2.6 = 0.54) and B (exact) with the same score. Level 0.5: both orders give TP, FP
    # -> AP 1. Level 0.7: A first is FP then B TP -> precision 0, 1/2 at recall 0, 1 -> AP 1/2;
    # B first is TP -> AP 1.
    a, b = (0, 0, 0.5, box(x=0.6)), (0, 0, 0.5, box())
    np.testing.assert_allclose(_ap([a, b], [(0, 0, box())]).ap, [[0.5, 1.0]])
    np.testing.assert_allclose(_ap([b, a], [(0, 0, box())]).ap, [[1.0, 1.0]])


def test_class_without_ground_truth_is_nan_and_excluded_from_map() -> None:
    with pytest.warns(UserWarning, match="'truck'"):
        res = _ap(
            [(0, 0, 0.9, box()), (0, 1, 0.8, box(x=5.0))],
            [(0, 0, box())],
            ("car", "truck"),
            [[0.7, 0.5], [0.7, 0.5]],
        )
    np.testing.assert_array_equal(res.ap[0], [1.0, 1.0])
    assert np.isnan(res.ap[1]).all()
    assert res.map == 1.0
    np.testing.assert_array_equal(res.ap_per_level, [1.0, 1.0])
    assert res.as_dict()["map"] == 1.0 and np.isnan(res.as_dict()["ap/truck"])


def test_no_ground_truth_at_all_gives_nan_map_without_numpy_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.warns(UserWarning, match="no ground-truth"):
            res = _ap([(0, 0, 0.9, box())], [])
    assert np.isnan(res.ap).all() and np.isnan(res.map) and np.isnan(res.ap_per_level).all()


def test_matching_never_crosses_frames_or_classes() -> None:
    # Class 0 GT in frame 0; identical boxes predicted in frame 1 (class 0) and in frame 0 as class 1.
    with pytest.warns(UserWarning, match="'truck'"):
        res = _ap([(1, 0, 0.9, box()), (0, 1, 0.8, box())], [(0, 0, box())], ("car", "truck"), [[0.7, 0.5], [0.7, 0.5]])
    np.testing.assert_array_equal(res.ap[0], [0.0, 0.0])
    # Large frame ids, mixed with a match in another frame: only the same-frame prediction counts.
    res = _ap([(10**12, 0, 0.9, box()), (7, 0, 0.8, box())], [(7, 0, box()), (10**12 + 1, 0, box())])
    # D(frame 1e12) FP, D(frame 7) TP: precision 0, 1/2 at recall 0, 1/2 -> R40: k = 1..20 -> 1/2, else 0.
    np.testing.assert_allclose(res.ap, [[0.25, 0.25]])


def test_bev_and_3d_differ_when_heights_do_not_overlap() -> None:
    # Same footprint, heights [-1, 1] and [2, 4]: BEV IoU 1, 3D IoU 0.
    pred, gt = (0, 0, 0.9, box(z=3.0)), (0, 0, box())
    assert iou_3d(np.array([pred[3]]), np.array([gt[2]]))[0, 0] == 0.0
    np.testing.assert_array_equal(_ap([pred], [gt], mode="bev").ap, [[1.0, 1.0]])
    np.testing.assert_array_equal(_ap([pred], [gt], mode="3d").ap, [[0.0, 0.0]])


def test_class_with_ground_truth_and_no_predictions_is_zero() -> None:
    res = _ap([], [(0, 0, box())])
    np.testing.assert_array_equal(res.ap, [[0.0, 0.0]])
    assert res.map == 0.0


def test_one_dimensional_thresholds_mean_one_level() -> None:
    res = _ap([(0, 0, 0.9, box(x=0.36))], [(0, 0, box())], iou_thresholds=[0.5])
    assert res.iou_thresholds.shape == (1, 1) and res.ap.shape == (1, 1)


# ---------------------------------------------------------------------------------------------------------
# Randomised comparison with a direct, loop-based reading of the definition (exact recall with Fractions)
# ---------------------------------------------------------------------------------------------------------


def _reference_ap(
    case: tuple, num_classes: int, thresholds: np.ndarray, mode: str, recall_positions: int
) -> np.ndarray:
    pf, pb, pl, ps, gf, gb, gl = case
    iou_fn = bev_iou if mode == "bev" else iou_3d
    positions = (
        [Fraction(k, 10) for k in range(11)] if recall_positions == 11 else [Fraction(k, 40) for k in range(1, 41)]
    )
    ap = np.full(thresholds.shape, np.nan)
    for c in range(num_classes):
        num_gt = int(np.sum(gl == c))
        if num_gt == 0:
            continue
        order = sorted(np.flatnonzero(pl == c), key=lambda i: (-ps[i], i))
        for level in range(thresholds.shape[1]):
            taken: set[int] = set()
            tp = 0
            points = []  # (recall, precision) after each detection
            for n, i in enumerate(order, start=1):
                candidates = [g for g in np.flatnonzero((gl == c) & (gf == pf[i])) if g not in taken]
                if candidates:
                    ious = iou_fn(pb[i : i + 1], gb[candidates])[0]
                    best = int(np.argmax(ious))
                    if ious[best] >= thresholds[c, level]:
                        taken.add(candidates[best])
                        tp += 1
                points.append((Fraction(tp, num_gt), Fraction(tp, n)))
            ap[c, level] = float(
                sum(max((p for r, p in points if r >= pos), default=Fraction(0)) for pos in positions) / len(positions)
            )
    return ap


def _random_case(rng: np.random.Generator, num_frames: int, num_classes: int, max_boxes: int) -> tuple:
    """GT boxes crowded in a 6 m square so that they overlap, predictions near GTs or random; coarse scores
    create ties."""
    gf, gb, gl, pf, pb, pl, ps = [], [], [], [], [], [], []
    for frame in rng.choice(1000, size=num_frames, replace=False):
        n_gt = rng.integers(0, max_boxes + 1)
        boxes = np.concatenate(
            [
                rng.uniform(0, 6, (n_gt, 2)),
                rng.uniform(-0.5, 0.5, (n_gt, 1)),
                rng.uniform(0.5, 3, (n_gt, 3)),
                rng.uniform(-3.2, 3.2, (n_gt, 1)),
            ],
            axis=1,
        )
        labels = rng.integers(0, num_classes, n_gt)
        gf += [frame] * n_gt
        gb.append(boxes)
        gl.append(labels)
        n_pred = rng.integers(0, max_boxes + 2)
        source = rng.integers(0, max(n_gt, 1), n_pred)
        noisy = (boxes[source] if n_gt else np.tile([3, 3, 0, 1, 1, 1, 0.0], (n_pred, 1))) + rng.normal(
            0, [0.4, 0.4, 0.3, 0.2, 0.2, 0.2, 0.3], (n_pred, 7)
        )
        noisy[:, 3:6] = np.abs(noisy[:, 3:6])
        pf += [frame] * n_pred
        pb.append(noisy)
        pl.append(
            np.where(rng.random(n_pred) < 0.8, labels[source] if n_gt else 0, rng.integers(0, num_classes, n_pred))
        )
        ps.append(rng.integers(0, 5, n_pred) / 4)
    return (
        np.array(pf, dtype=np.int64),
        np.concatenate(pb),
        np.concatenate(pl).astype(np.int64),
        np.concatenate(ps),
        np.array(gf, dtype=np.int64),
        np.concatenate(gb),
        np.concatenate(gl).astype(np.int64),
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_a_loop_based_reference_on_random_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    case = _random_case(rng, num_frames=12, num_classes=3, max_boxes=6)
    thresholds = np.array([[0.7, 0.5, 0.3], [0.5, 0.25, 0.1], [0.6, 0.4, 0.2]])
    names = ("car", "pedestrian", "cyclist")
    for mode in ("bev", "3d"):
        for recall_positions in (40, 11):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # a class may lack GT in a random case
                res = kitti_ap(*case, names, thresholds, mode=mode, recall_positions=recall_positions)
            expected = _reference_ap(case, 3, thresholds, mode, recall_positions)
            np.testing.assert_allclose(res.ap, expected, rtol=0, atol=1e-12)
            assert np.nanmax(res.ap) > 0 and np.nanmin(res.ap) < 1


# ---------------------------------------------------------------------------------------------------------
# Result object
# ---------------------------------------------------------------------------------------------------------


def test_result_arrays_are_read_only() -> None:
    res = _ap([(0, 0, 0.9, box())], [(0, 0, box())])
    with pytest.raises(ValueError, match="read-only"):
        res.ap[0, 0] = 0.5
    with pytest.raises(ValueError, match="read-only"):
        res.iou_thresholds[0, 0] = 0.5
    assert res.class_names == ("car",) and all(type(v) is float for v in res.as_dict().values())
    with pytest.raises(ValueError, match=r"^ap: "):
        KittiAP(ap=np.zeros((1, 3)), iou_thresholds=[[0.7, 0.5]], class_names=("car",), mode="bev", recall_positions=40)


# ---------------------------------------------------------------------------------------------------------
# torchmetrics accumulation
# ---------------------------------------------------------------------------------------------------------


def _batch(case: tuple, frames: np.ndarray) -> tuple[list[dict], list[dict], torch.Tensor]:
    pf, pb, pl, ps, gf, gb, gl = case
    preds, targets = [], []
    for f in frames:
        pm, gm = pf == f, gf == f
        preds.append(
            {
                "boxes": torch.from_numpy(pb[pm]).float(),
                "labels": torch.from_numpy(pl[pm]),
                "scores": torch.from_numpy(ps[pm]).float(),
            }
        )
        targets.append({"boxes": torch.from_numpy(gb[gm]).float(), "labels": torch.from_numpy(gl[gm])})
    return preds, targets, torch.from_numpy(np.asarray(frames))


def test_metric_over_several_updates_equals_functional() -> None:
    rng = np.random.default_rng(5)
    case = _random_case(rng, num_frames=15, num_classes=2, max_boxes=5)
    # update() receives float32 boxes and scores here; equal scores keep their order within the frame.
    case = tuple(a.astype(np.float32).astype(np.float64) if a.dtype.kind == "f" else a for a in case)
    frames = np.unique(np.concatenate([case[0], case[4]]))[::-1].copy()
    thresholds = [[0.7, 0.5], [0.5, 0.25]]
    metric = KittiMAP(class_names=("car", "pedestrian"), iou_thresholds=thresholds, mode="3d", recall_positions=11)
    for chunk in np.array_split(frames, 3):
        metric.update(*_batch(case, chunk))
    result = metric.compute()
    expected = kitti_ap(*grouped_by_frames(case, frames), ("car", "pedestrian"), thresholds, mode="3d",
                        recall_positions=11)
    assert isinstance(result, KittiAP) and not result.ap.flags.writeable
    assert result.mode == "3d" and result.recall_positions == 11
    np.testing.assert_array_equal(result.ap, expected.ap)
    np.testing.assert_array_equal(result.iou_thresholds, thresholds)
    assert 0 < result.map < 1


def test_metric_without_updates_or_ground_truth_is_nan() -> None:
    metric = KittiMAP(class_names=("car",), iou_thresholds=[0.7])
    empty_pred = {"boxes": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64), "scores": torch.zeros(0)}
    empty_gt = {"boxes": torch.zeros(0, 7), "labels": torch.zeros(0, dtype=torch.int64)}
    metric.update([empty_pred], [empty_gt], torch.tensor([3]))
    with pytest.warns(UserWarning, match="no ground-truth"):
        assert np.isnan(metric.compute().map)
    never_updated = KittiMAP(class_names=("car",), iou_thresholds=[0.7])
    with pytest.warns(UserWarning):  # torchmetrics' "compute before update" and our no-GT warning
        assert np.isnan(never_updated.compute().map)


def test_metric_rejects_bad_input() -> None:
    metric = KittiMAP(class_names=("car",), iou_thresholds=[0.7])
    gt = {"boxes": torch.zeros(1, 7), "labels": torch.zeros(1, dtype=torch.int64)}
    bad_boxes = {"boxes": torch.zeros(2, 6), "labels": torch.zeros(2, dtype=torch.int64), "scores": torch.zeros(2)}
    with pytest.raises(ValueError, match=r"preds\[0\]\['boxes'\]"):
        metric.update([bad_boxes], [gt], torch.tensor([0]))
    bad_scores = {"boxes": torch.zeros(2, 7), "labels": torch.zeros(2, dtype=torch.int64), "scores": torch.zeros(1)}
    with pytest.raises(ValueError, match=r"preds\[0\]\['scores'\]"):
        metric.update([bad_scores], [gt], torch.tensor([0]))
    with pytest.raises(ValueError, match="frame_ids"):
        metric.update([bad_scores], [gt], torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="iou_thresholds"):
        KittiMAP(class_names=("car", "pedestrian"), iou_thresholds=[0.7])
    with pytest.raises(ValueError, match="mode"):
        KittiMAP(class_names=("car",), iou_thresholds=[0.7], mode="2d")


# ---------------------------------------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------------------------------------


def _valid_kwargs() -> dict:
    return {
        "pred_frame": np.array([0, 1]),
        "pred_boxes": np.array([box(), box(x=3.0)]),
        "pred_label": np.array([0, 1]),
        "pred_score": np.array([0.5, 0.2]),
        "gt_frame": np.array([0]),
        "gt_boxes": np.array([box()]),
        "gt_label": np.array([0]),
        "class_names": ("car", "truck"),
        "iou_thresholds": [[0.7, 0.5], [0.7, 0.5]],
    }


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("pred_frame", np.array([[0, 1]])),
        ("pred_frame", np.array([0.0, 1.0])),
        ("pred_boxes", np.zeros((2, 6))),
        ("pred_boxes", np.zeros((3, 7))),
        ("pred_boxes", np.array([box(), box(x=np.nan)])),
        ("pred_boxes", np.array([box(), box(dx=-1.0)])),
        ("pred_label", np.array([0, 2])),
        ("pred_score", np.array([0.5, np.inf])),
        ("pred_score", np.array([0.5])),
        ("gt_frame", np.array([[0]])),
        ("gt_boxes", np.zeros((1, 8))),
        ("gt_label", np.array([-1])),
        ("class_names", ()),
        ("class_names", "car"),
        ("iou_thresholds", [[0.7, 0.5]]),
        ("iou_thresholds", [[0.7, 0.0], [0.7, 0.5]]),
        ("iou_thresholds", [[0.7, 1.5], [0.7, 0.5]]),
        ("iou_thresholds", [[0.7, np.nan], [0.7, 0.5]]),
        ("iou_thresholds", np.zeros((2, 0))),
        ("iou_thresholds", np.full((2, 1, 1), 0.5)),
        ("iou_thresholds", "strict"),
        ("mode", "2d"),
        ("recall_positions", 41),
        ("recall_positions", True),
    ],
)
def test_bad_input_raises_value_error_naming_argument(name: str, value: object) -> None:
    kwargs = _valid_kwargs() | {name: value}
    with pytest.raises(ValueError, match=f"^{name}: "):
        kitti_ap(**kwargs)


def test_valid_kwargs_are_valid() -> None:
    with pytest.warns(UserWarning, match="truck"):
        res = kitti_ap(**_valid_kwargs())
    # car: exact TP in frame 0 -> 1.0; truck: no GT -> NaN.
    np.testing.assert_array_equal(res.ap_per_class, [1.0, np.nan])
