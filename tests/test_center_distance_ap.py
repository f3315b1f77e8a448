"""Tests of the nuScenes-style centre-distance AP (alcv.metrics.center_distance)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pytest
import torch
from detection_cases import grouped_by_frames
from hypothesis import given, settings
from hypothesis import strategies as st

from alcv.metrics import CenterDistanceMAP, DetectionAP, center_distance_ap

THRESHOLDS = (0.5, 1.0, 2.0, 4.0)


def _ap(preds: Sequence[tuple], gts: Sequence[tuple], class_names: Sequence[str] = ("car",)) -> DetectionAP:
    """preds: (frame, x, y, label, score) tuples; gts: (frame, x, y, label) tuples, in input order."""
    p = np.array(preds, dtype=np.float64).reshape(-1, 5)
    g = np.array(gts, dtype=np.float64).reshape(-1, 4)
    return center_distance_ap(
        pred_frame=p[:, 0].astype(np.int64),
        pred_xy=p[:, 1:3],
        pred_label=p[:, 3].astype(np.int64),
        pred_score=p[:, 4],
        gt_frame=g[:, 0].astype(np.int64),
        gt_xy=g[:, 1:3],
        gt_label=g[:, 3].astype(np.int64),
        class_names=class_names,
    )


# ---------------------------------------------------------------------------------------------------------
# Hand-computed cases. Notation: AP = sum_{k=11..100} max(prec(k/100) - 0.1, 0) / 90 / 0.9, where prec is
# np.interp(k/100, rec, prec, right=0) (left of the first recall point it takes the first precision).
# ---------------------------------------------------------------------------------------------------------


def test_single_perfect_prediction_per_class() -> None:
    # One TP per class: rec=[1], prec=[1] -> prec(k/100)=1 for all k -> AP = 90 * 0.9 / 90 / 0.9 = 1.
    res = _ap(
        preds=[(0, 1.0, 2.0, 0, 0.9), (0, -5.0, 3.0, 1, 0.4)],
        gts=[(0, 1.0, 2.0, 0), (0, -5.0, 3.0, 1)],
        class_names=("car", "pedestrian"),
    )
    np.testing.assert_allclose(res.ap, np.ones((2, 4)))
    assert res.map == pytest.approx(1.0)
    assert res.as_dict() == pytest.approx({"map": 1.0, "ap/car": 1.0, "ap/pedestrian": 1.0})
    assert all(type(v) is float for v in res.as_dict().values())


def test_equal_scores_later_prediction_is_matched_first() -> None:
    # GT at the origin; A (index 0) at 0.3 m and B (index 1) at 0.7 m, both score 0.8.
    # Devkit order sorted((score, i))[::-1] puts B first.
    # t=0.5: B is 0.7 m away -> FP (nothing taken), then A at 0.3 m -> TP. tp=[0,1], fp=[1,1]
    #        -> prec=[0, .5], rec=[0, 1] -> prec(x) = 0.5x. Terms 0.005k - 0.1 > 0 for k=20..100:
    #        sum = 0.005 * 4860 - 0.1 * 81 = 16.2 -> AP = 16.2 / 90 / 0.9 = 0.2.
    # t>=1: B -> TP, A -> FP (GT taken). prec=[1, .5], rec=[1, 1] -> prec(k/100)=1 for k<100, 0.5 at k=100:
    #        sum = 89 * 0.9 + 0.4 = 80.5 -> AP = 80.5 / 81.
    res = _ap(preds=[(0, 0.3, 0.0, 0, 0.8), (0, 0.7, 0.0, 0, 0.8)], gts=[(0, 0.0, 0.0, 0)])
    np.testing.assert_allclose(res.ap[0], [0.2, 80.5 / 81, 80.5 / 81, 80.5 / 81])
    assert res.map == pytest.approx((0.2 + 3 * 80.5 / 81) / 4)

    # Swapping the input order makes A (0.3 m) go first: TP then FP at every threshold -> 80.5/81 each.
    swapped = _ap(preds=[(0, 0.7, 0.0, 0, 0.8), (0, 0.3, 0.0, 0, 0.8)], gts=[(0, 0.0, 0.0, 0)])
    np.testing.assert_allclose(swapped.ap[0], [80.5 / 81] * 4)


def test_equally_distant_gts_lower_index_is_taken() -> None:
    # GTs at (-1, 0), (1, 0) (indices 0, 1) and one far away, npos = 3. P1 at the origin (score 0.9) is 1 m
    # from both; P2 at (-1.5, 0) (score 0.5) is 0.5 m from GT 0 and 2.5 m from GT 1.
    # t=0.5: P1 FP (1 m), P2 FP (0.5 m, strict <) -> AP 0.
    # t=1:   P1 FP, P2 takes GT 0 -> prec=[0, .5], rec=[0, 1/3] -> prec(x)=1.5x up to 1/3, 0 beyond:
    #        sum_{k=11..33} (0.015k - 0.1) = 0.015 * 506 - 2.3 = 5.29 -> AP = 5.29 / 81.
    # t=2:   P1 takes GT 0 (lower index wins the tie), P2 is 2.5 m from GT 1 -> FP. prec=[1, .5],
    #        rec=[1/3, 1/3] -> 1 for k<=33 (k/100 never equals 1/3) -> 23 * 0.9 / 81 = 23/90.
    #        (Had P1 taken GT 1, P2 would be a TP at 0.5 m.)
    # t=4:   both TP: rec=[1/3, 2/3], prec=[1, 1] -> 1 for k<=66 -> 56/90.
    res = _ap(
        preds=[(0, 0.0, 0.0, 0, 0.9), (0, -1.5, 0.0, 0, 0.5)],
        gts=[(0, -1.0, 0.0, 0), (0, 1.0, 0.0, 0), (0, 50.0, 0.0, 0)],
    )
    np.testing.assert_allclose(res.ap[0], [0.0, 5.29 / 81, 23 / 90, 56 / 90])


def test_class_without_ground_truth_is_nan_and_excluded() -> None:
    # "pedestrian" has a prediction but no GT: NaN row and a warning; mAP = AP(car) = 1.
    with pytest.warns(UserWarning, match="pedestrian"):
        res = _ap(
            preds=[(0, 0.0, 0.0, 0, 0.9), (0, 3.0, 3.0, 1, 0.9)],
            gts=[(0, 0.0, 0.0, 0)],
            class_names=("car", "pedestrian"),
        )
    assert np.isnan(res.ap[1]).all()
    np.testing.assert_allclose(res.ap[0], 1.0)
    assert res.map == pytest.approx(1.0)
    d = res.as_dict()
    assert d["map"] == pytest.approx(1.0) and np.isnan(d["ap/pedestrian"])


def test_no_ground_truth_at_all_gives_nan_map_without_numpy_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.warns(UserWarning, match="car"):
            res = _ap(preds=[(0, 0.0, 0.0, 0, 0.9)], gts=[])
        assert np.isnan(res.ap).all()
        assert np.isnan(res.map)


def test_frame_without_predictions_limits_recall() -> None:
    # GTs in frames 0 and 1, one exact prediction in frame 0 only: rec=[0.5], prec=[1].
    # prec(k/100)=1 for k<=50, 0 after (right=0): 40 points k=11..50 -> AP = 40 * 0.9 / 90 / 0.9 = 4/9.
    res = _ap(preds=[(0, 2.0, 2.0, 0, 0.7)], gts=[(0, 2.0, 2.0, 0), (1, 2.0, 2.0, 0)])
    np.testing.assert_allclose(res.ap[0], [4 / 9] * 4)


def test_prediction_exactly_at_threshold_is_not_a_match() -> None:
    # 1.0 m from the GT: not < 0.5, not < 1.0 (strict), but < 2.0 and < 4.0 -> AP per threshold [0, 0, 1, 1].
    res = _ap(preds=[(0, 1.0, 0.0, 0, 0.9)], gts=[(0, 0.0, 0.0, 0)])
    np.testing.assert_allclose(res.ap[0], [0.0, 0.0, 1.0, 1.0])
    assert res.ap_per_class[0] == pytest.approx(0.5)


def test_false_positive_ranked_above_true_positive() -> None:
    # FP (score 0.9) in frame 7, which has no GT; TP (score 0.5) in frame 3. A GT of another class sits on the
    # FP but must not match it. tp=[0,1], fp=[1,1] -> prec=[0, .5], rec=[0, 1] -> prec(x)=0.5x (no monotone
    # envelope, which would give 0.5 everywhere and AP 0.4/0.9) -> AP = 16.2 / 81 = 0.2 (as in the tie test).
    res = _ap(
        preds=[(7, 0.0, 0.0, 0, 0.9), (3, 1.0, 1.0, 0, 0.5)],
        gts=[(3, 1.0, 1.0, 0), (7, 0.0, 0.0, 1)],
        class_names=("car", "truck"),
    )
    np.testing.assert_allclose(res.ap[0], [0.2] * 4)
    np.testing.assert_allclose(res.ap[1], [0.0] * 4)  # truck has a GT but no prediction
    assert res.map == pytest.approx(0.1)


# ---------------------------------------------------------------------------------------------------------
# Equivalence with a line-by-line transcription of the devkit's accumulate / calc_ap.
# ---------------------------------------------------------------------------------------------------------


def _devkit_accumulate(gt_boxes: dict, pred_list: list, class_name: int, dist_th: float) -> np.ndarray | None:
    """Devkit ``accumulate`` with center_distance; pred_list: (frame, xy, label, score) in input order,
    gt_boxes: frame -> [(xy, label), ...] in input order. Returns the (101,) precision, None if npos == 0."""
    npos = len([1 for boxes in gt_boxes.values() for box in boxes if box[1] == class_name])
    if npos == 0:
        return None  # the devkit returns no_predictions() here (AP 0); this module reports NaN instead
    pred_boxes_list = [box for box in pred_list if box[2] == class_name]
    pred_confs = [box[3] for box in pred_boxes_list]
    sortind = [i for (v, i) in sorted((v, i) for (i, v) in enumerate(pred_confs))][::-1]
    tp, fp = [], []
    taken = set()
    for ind in sortind:
        pred_box = pred_boxes_list[ind]
        min_dist = np.inf
        match_gt_idx = None
        for gt_idx, gt_box in enumerate(gt_boxes.get(pred_box[0], [])):
            if gt_box[1] == class_name and (pred_box[0], gt_idx) not in taken:
                this_distance = np.linalg.norm(np.array(pred_box[1]) - np.array(gt_box[0]))
                if this_distance < min_dist:
                    min_dist = this_distance
                    match_gt_idx = gt_idx
        if min_dist < dist_th:
            taken.add((pred_box[0], match_gt_idx))
            tp.append(1)
            fp.append(0)
        else:
            tp.append(0)
            fp.append(1)
    if len(tp) == 0:
        return np.zeros(101)
    tp = np.cumsum(tp).astype(float)
    fp = np.cumsum(fp).astype(float)
    prec = tp / (fp + tp)
    rec = tp / float(npos)
    return np.interp(np.linspace(0, 1, 101), rec, prec, right=0)


def _devkit_calc_ap(precision: np.ndarray, min_recall: float = 0.1, min_precision: float = 0.1) -> float:
    prec = np.copy(precision)
    prec = prec[round(100 * min_recall) + 1 :]
    prec -= min_precision
    prec[prec < 0] = 0
    return float(np.mean(prec)) / (1.0 - min_precision)


def _reference_ap(pf, pxy, pl, ps, gf, gxy, gl, num_classes: int) -> np.ndarray:
    pred_list = [
        (int(f), tuple(xy), int(lab), float(s)) for f, xy, lab, s in zip(pf, pxy, pl, ps, strict=True)
    ]
    gt_boxes: dict[int, list] = {}
    for f, xy, lab in zip(gf, gxy, gl, strict=True):
        gt_boxes.setdefault(int(f), []).append((tuple(xy), int(lab)))
    ap = np.zeros((num_classes, len(THRESHOLDS)))
    for c in range(num_classes):
        for t, th in enumerate(THRESHOLDS):
            prec = _devkit_accumulate(gt_boxes, pred_list, c, th)
            ap[c, t] = np.nan if prec is None else _devkit_calc_ap(prec)
    return ap


def _random_case(rng: np.random.Generator, num_frames: int, num_classes: int, max_boxes: int) -> tuple:
    """Random boxes with forced ties: scores rounded to 0.1, centres on a 0.5 m grid in [-1.5, 1.5]^2
    (duplicate centres, equally distant GTs, distances exactly at a threshold), sparse unordered frame
    ids, predictions shuffled across frames."""
    frame_ids = rng.choice(10_000, size=num_frames, replace=False)
    gf = np.repeat(frame_ids, rng.integers(0, max_boxes + 1, size=num_frames))
    gxy = np.round(rng.uniform(-1.5, 1.5, size=(len(gf), 2)) * 2) / 2
    gl = rng.integers(0, num_classes, size=len(gf))
    pf = np.repeat(frame_ids, rng.integers(0, max_boxes + 1, size=num_frames))
    pxy = np.round(rng.uniform(-1.5, 1.5, size=(len(pf), 2)) * 2) / 2
    pl = rng.integers(0, num_classes, size=len(pf))
    ps = np.round(rng.uniform(0, 1, size=len(pf)), 1)
    perm = rng.permutation(len(pf))
    return pf[perm], pxy[perm], pl[perm], ps[perm], gf, gxy, gl


@pytest.mark.parametrize("seed", range(4))
def test_matches_devkit_reference_on_random_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    num_classes = 4
    case = _random_case(rng, num_frames=60, num_classes=num_classes, max_boxes=12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        res = center_distance_ap(
            *case, class_names=[f"c{i}" for i in range(num_classes)], thresholds=THRESHOLDS
        )
    expected = _reference_ap(*case, num_classes=num_classes)
    np.testing.assert_allclose(res.ap, expected, rtol=0, atol=1e-12, equal_nan=True)
    assert (expected[~np.isnan(expected)] > 0).any()  # the case is not trivially all-zero


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 2), st.integers(-2, 2), st.integers(-2, 2), st.integers(0, 1), st.integers(0, 3)
        ),
        max_size=10,
    ),
    st.lists(
        st.tuples(st.integers(0, 2), st.integers(-2, 2), st.integers(-2, 2), st.integers(0, 1)), max_size=8
    ),
)
def test_matches_devkit_reference_hypothesis(preds: list, gts: list) -> None:
    # Coordinates on a 0.5 m grid and four score levels: many exact ties in score and distance.
    p = np.array(preds, dtype=np.float64).reshape(-1, 5)
    g = np.array(gts, dtype=np.float64).reshape(-1, 4)
    case = (
        p[:, 0].astype(np.int64), p[:, 1:3] / 2, p[:, 3].astype(np.int64), p[:, 4] / 4,
        g[:, 0].astype(np.int64), g[:, 1:3] / 2, g[:, 3].astype(np.int64),
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        res = center_distance_ap(*case, class_names=("a", "b"), thresholds=THRESHOLDS)
    np.testing.assert_allclose(
        res.ap, _reference_ap(*case, num_classes=2), rtol=0, atol=1e-12, equal_nan=True
    )


# ---------------------------------------------------------------------------------------------------------
# torchmetrics accumulator
# ---------------------------------------------------------------------------------------------------------


def _batch(case: tuple, frames: np.ndarray) -> tuple[list, list, torch.Tensor]:
    """Per-frame dicts (boxes (M, 7), labels, scores) for the given frames of a flat case."""
    pf, pxy, pl, ps, gf, gxy, gl = case
    preds, targets = [], []
    for f in frames:
        pm, gm = pf == f, gf == f
        pbox = torch.zeros(int(pm.sum()), 7, dtype=torch.float64)
        pbox[:, :2] = torch.from_numpy(pxy[pm])
        gbox = torch.zeros(int(gm.sum()), 7, dtype=torch.float64)
        gbox[:, :2] = torch.from_numpy(gxy[gm])
        preds.append({"boxes": pbox, "labels": torch.from_numpy(pl[pm]), "scores": torch.from_numpy(ps[pm])})
        targets.append({"boxes": gbox, "labels": torch.from_numpy(gl[gm])})
    return preds, targets, torch.from_numpy(np.asarray(frames))


def test_metric_over_two_updates_equals_functional() -> None:
    rng = np.random.default_rng(123)
    case = _random_case(rng, num_frames=20, num_classes=3, max_boxes=6)
    frames = np.unique(np.concatenate([case[0], case[4]]))
    metric = CenterDistanceMAP(class_names=("a", "b", "c"))
    metric.update(*_batch(case, frames[:7]))
    metric.update(*_batch(case, frames[7:]))
    expected = center_distance_ap(*grouped_by_frames(case, frames), class_names=("a", "b", "c"))
    result = metric.compute()
    assert isinstance(result, DetectionAP)
    np.testing.assert_array_equal(result.ap, expected.ap)
    assert result.map == expected.map
    assert result.map > 0


def test_metric_with_only_empty_updates_is_all_nan() -> None:
    metric = CenterDistanceMAP(class_names=("car", "pedestrian"))
    empty_pred = {
        "boxes": torch.zeros(0, 7),
        "labels": torch.zeros(0, dtype=torch.int64),
        "scores": torch.zeros(0),
    }
    empty_gt = {"boxes": torch.zeros(0, 7), "labels": torch.zeros(0, dtype=torch.int64)}
    metric.update([empty_pred, empty_pred], [empty_gt, empty_gt], torch.tensor([3, 4]))
    with pytest.warns(UserWarning, match="no ground-truth"):
        res = metric.compute()
    assert res.ap.shape == (2, 4) and np.isnan(res.ap).all() and np.isnan(res.map)

    never_updated = CenterDistanceMAP(class_names=("car",))
    with pytest.warns(UserWarning):  # torchmetrics' "compute before update" and our no-GT warning
        assert np.isnan(never_updated.compute().map)


def test_metric_update_rejects_bad_input() -> None:
    metric = CenterDistanceMAP(class_names=("car",))
    pred = {"boxes": torch.zeros(2, 7), "labels": torch.zeros(2, dtype=torch.int64), "scores": torch.zeros(1)}
    gt = {"boxes": torch.zeros(1, 7), "labels": torch.zeros(1, dtype=torch.int64)}
    with pytest.raises(ValueError, match=r"preds\[0\]\['scores'\]"):
        metric.update([pred], [gt], torch.tensor([0]))
    with pytest.raises(ValueError, match="frame_ids"):
        metric.update([pred], [gt], torch.tensor([0, 1]))


# ---------------------------------------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------------------------------------


def _valid_kwargs() -> dict:
    return {
        "pred_frame": np.array([0, 1]),
        "pred_xy": np.zeros((2, 2)),
        "pred_label": np.array([0, 1]),
        "pred_score": np.array([0.5, 0.2]),
        "gt_frame": np.array([0]),
        "gt_xy": np.zeros((1, 2)),
        "gt_label": np.array([0]),
        "class_names": ("car", "truck"),
    }


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("pred_frame", np.array([[0, 1]])),
        ("pred_frame", np.array([0.0, 1.0])),
        ("pred_xy", np.zeros((2, 3))),
        ("pred_xy", np.array([[0.0, np.nan], [0.0, 0.0]])),
        ("pred_label", np.array([0, 2])),
        ("pred_label", np.array([-1, 0])),
        ("pred_score", np.array([0.5, np.inf])),
        ("pred_score", np.array([0.5])),
        ("gt_frame", np.array([0, 1])),
        ("gt_xy", np.full((1, 2), np.inf)),
        ("gt_label", np.array([0, 0])),
        ("class_names", ()),
        ("class_names", "car"),
        ("thresholds", ()),
        ("thresholds", (1.0, -2.0)),
    ],
)
def test_bad_input_raises_value_error_naming_argument(name: str, value: object) -> None:
    kwargs = _valid_kwargs() | {name: value}
    with pytest.raises(ValueError, match=name):
        center_distance_ap(**kwargs)


def test_valid_kwargs_are_valid() -> None:
    with pytest.warns(UserWarning, match="truck"):
        res = center_distance_ap(**_valid_kwargs())
    # car: exact TP in frame 0 -> 1.0; truck: no GT -> NaN.
    np.testing.assert_allclose(res.ap_per_class, [1.0, np.nan])


def test_the_reliability_table_counts_how_often_boxes_of_a_score_are_right() -> None:
    # at the 2 m threshold: 0.95 hits (1.5 m away), 0.9 misses (3 m), 0.15 hits, 0.12 and 0.11 find no box left
    res = _ap(preds=[(0, 1.5, 0.0, 0, 0.95), (0, 13.0, 0.0, 0, 0.9), (1, 0.0, 0.0, 0, 0.15),
                     (1, 0.5, 0.0, 0, 0.12), (1, 20.0, 0.0, 0, 0.11)],
              gts=[(0, 0.0, 0.0, 0), (0, 10.0, 0.0, 0), (1, 0.0, 0.0, 0)])
    table = res.reliability
    assert table is not None and table.threshold == 2.0
    assert table.boxes.tolist() == [0, 3, 0, 0, 0, 0, 0, 0, 0, 2]
    np.testing.assert_allclose(table.mean_score[[1, 9]], [(0.15 + 0.12 + 0.11) / 3, 0.925])
    np.testing.assert_allclose(table.precision[[1, 9]], [1 / 3, 1 / 2])
    assert np.isnan(table.precision[0]) and np.isnan(table.mean_score[5])
    expected = (3 * abs(1 / 3 - 0.38 / 3) + 2 * abs(0.5 - 0.925)) / 5
    assert table.calibration_error == pytest.approx(expected)
    assert table.as_dict()["calibration_error"] == pytest.approx(expected)
