"""The pool's truth diagnosis: each frame's misses and false alarms by hand, the summary of whether the picks are
the frames the model gets wrong, and that the strategy never sees the labels it is computed from."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alcv.acquisition import choose_frames, truth_summary
from alcv.metrics.frame_errors import frame_errors, frame_truth
from alcv.models.detections import Detections
from alcv.pool import LabelPool
from alcv.strategies import ErrorOracleStrategy, Picker, PoolStats, SelectionRules, select_by_score
from alcv.strategies.base import TRUTH_CALIBRATION_COLUMN, TRUTH_COLUMN


def lidar_frame(index: int, centres: list[tuple[float, float]], labels: list[int], scores: list[float]) -> Detections:
    boxes = torch.zeros(len(centres), 7)
    boxes[:, :2] = torch.tensor(centres, dtype=torch.float32).reshape(-1, 2)
    probs = torch.zeros(len(centres), 3)
    probs[torch.arange(len(centres)), torch.tensor(labels, dtype=torch.int64)] = torch.tensor(scores)
    return Detections(index, boxes, torch.tensor(labels, dtype=torch.int64), torch.tensor(scores), probs)


def truth(centres: list[tuple[float, float]]) -> torch.Tensor:
    boxes = torch.zeros(len(centres), 7)
    boxes[:, :2] = torch.tensor(centres, dtype=torch.float32).reshape(-1, 2)
    return boxes


def test_frame_errors_count_misses_and_false_alarms_of_lidar_boxes_by_hand() -> None:
    # frame 0: two vehicles at (0, 0) and (10, 0). A vehicle 1.5 m from the first matches it; a second one 0.5 m
    # from it comes later (lower score) and finds it taken: a false alarm; a pedestrian at (10, 0) is of the wrong
    # class: a false alarm, and the second vehicle is missed. A vehicle scored 0.2 is ignored (min_score 0.3).
    # frame 1: nothing predicted, one pedestrian: one miss. frame 2: no ground truth, one prediction: a false alarm
    detections = [lidar_frame(0, [(1.5, 0.0), (0.5, 0.0), (10.0, 0.0), (10.0, 0.0)], [0, 0, 1, 0],
                              [0.9, 0.8, 0.7, 0.2]),
                  lidar_frame(1, [], [], []), lidar_frame(2, [(3.0, 3.0)], [2], [0.5])]
    gt_boxes = [truth([(0.0, 0.0), (10.0, 0.0)]), truth([(5.0, 5.0)]), truth([])]
    gt_labels = [torch.tensor([0, 0]), torch.tensor([1]), torch.tensor([], dtype=torch.int64)]
    errors = frame_errors(detections, gt_boxes, gt_labels, min_score=0.3)
    np.testing.assert_array_equal(errors, [[2, 1, 2], [1, 1, 0], [0, 0, 1]])
    # 2.0 m apart still matches (the threshold is inclusive), 2.01 m does not
    near = frame_errors([lidar_frame(0, [(2.0, 0.0)], [0], [0.9])], [truth([(0.0, 0.0)])], [torch.tensor([0])], 0.3)
    far = frame_errors([lidar_frame(0, [(2.01, 0.0)], [0], [0.9])], [truth([(0.0, 0.0)])], [torch.tensor([0])], 0.3)
    np.testing.assert_array_equal(near, [[1, 0, 0]])
    np.testing.assert_array_equal(far, [[1, 1, 1]])


def test_the_reliability_counts_bin_every_prediction_by_score_and_count_its_matches() -> None:
    # scores 0.9 (matched), 0.85 (a second box on the same vehicle: unmatched), 0.25 (matches the other vehicle:
    # it counts for the reliability, though not as a detection at min_score 0.3)
    detections = [lidar_frame(0, [(0.0, 0.0), (0.2, 0.0), (10.0, 0.0)], [0, 0, 0], [0.9, 0.85, 0.25])]
    errors, calibration = frame_truth(detections, [truth([(0.0, 0.0), (10.0, 0.0)])], [torch.tensor([0, 0])],
                                      min_score=0.3, bins=4)
    np.testing.assert_array_equal(errors, [[2, 1, 1]])
    np.testing.assert_array_equal(calibration[0, 0], [0, 1, 0, 2])  # predictions per bin of width 0.25
    np.testing.assert_array_equal(calibration[0, 1], [0, 1, 0, 1])  # matched
    np.testing.assert_allclose(calibration[0, 2], [0, 0.25, 0, 1.75])  # summed scores


def test_frame_errors_match_image_boxes_by_iou() -> None:
    # IoU of [0, 0, 10, 10] with [0, 0, 10, 5] is 0.5 (a match); with [0, 0, 10, 4] it is 0.4 (none)
    def image_frame(box: list[float]) -> Detections:
        return Detections(0, torch.tensor([box]), torch.tensor([1]), torch.tensor([0.9]), torch.tensor([[0.1, 0.9]]))

    gt = [torch.tensor([[0.0, 0.0, 10.0, 10.0]])]
    np.testing.assert_array_equal(frame_errors([image_frame([0, 0, 10, 5])], gt, [torch.tensor([1])], 0.3), [[1, 0, 0]])
    np.testing.assert_array_equal(frame_errors([image_frame([0, 0, 10, 4])], gt, [torch.tensor([1])], 0.3), [[1, 1, 1]])


def test_truth_summary_compares_the_picks_errors_with_the_pool_by_hand() -> None:
    # four frames with 4, 2, 2, 0 ground-truth boxes and 4, 2, 1, 1 errors; picking frames 0 and 1 takes 6 of the 8
    # errors with half the frames: a lift of 3 / 2 per frame; 6 errors on 6 boxes against 8 on 8 per box
    errors = np.array([[4, 3, 1], [2, 1, 1], [2, 1, 0], [0, 0, 1]], dtype=np.float64)
    summary = truth_summary(errors, np.array([0, 1]), np.array([0.9, 0.5, 0.4, 0.1]))
    assert summary["pool_errors_per_frame"] == 2.0 and summary["picked_errors_per_frame"] == 3.0
    assert summary["error_lift"] == 1.5
    assert summary["pool_errors_per_box"] == summary["picked_errors_per_box"] == summary["box_lift"] == 1.0
    # the score ranks the frames exactly as their errors do (ties aside): Spearman of ranks (4, 3, 2, 1) with
    # (4, 3, 1.5, 1.5)
    expected = np.corrcoef([4, 3, 2, 1], [4, 3, 1.5, 1.5])[0, 1]
    assert summary["score_error_spearman"] == pytest.approx(expected)
    assert truth_summary(errors, np.array([0, 1]), None)["score_error_spearman"] is None  # random: no score
    nothing = truth_summary(errors, np.zeros(0, dtype=np.int64), None)
    assert nothing["picked_errors_per_frame"] is None and nothing["error_lift"] is None
    # reliability over 2 bins: frame 0 has 2 boxes at mean score 0.8, both right; frame 1 two at 0.2, one right,
    # and one at 0.9, wrong. Pooled over the picks 0 and 1, the low bin holds 2 boxes of mean score 0.2, half
    # right, and the high bin 3 of mean score 2.5 / 3, two right: (2 x 0.3 + 3 x |2/3 - 2.5/3|) / 5
    calibration = np.zeros((4, 3, 2))
    calibration[0] = [[0, 2], [0, 2], [0, 1.6]]
    calibration[1] = [[2, 1], [1, 0], [0.4, 0.9]]
    with_calibration = truth_summary(errors, np.array([0, 1]), None, calibration)
    assert with_calibration["picked_calibration_error"] == pytest.approx((2 * 0.3 + 3 * (2.5 / 3 - 2 / 3)) / 5)
    assert with_calibration["pool_calibration_error"] == with_calibration["picked_calibration_error"]


class RecordingStrategy:
    """Picks by a fixed score and keeps the columns it was shown."""

    name = "recording"
    request = None

    def __init__(self) -> None:
        self.seen: tuple[list[str], list[str]] = ([], [])

    def frame_stats(self, detections: object) -> dict[str, np.ndarray]:
        return {}

    def select(self, pool: PoolStats, picker: Picker, seed: int) -> np.ndarray:
        self.seen = (sorted(pool.columns), sorted(pool.labeled_columns))
        return select_by_score(pool, picker, pool.column("score"), seed)


def test_the_strategy_never_sees_the_truth_and_the_selection_reports_it() -> None:
    pool = LabelPool(range(6))
    pool.label([0, 1], 0)
    columns = {"score": np.array([0.0, 0.0, 0.9, 0.1, 0.8, 0.2]),
               TRUTH_COLUMN: np.array([[1, 0, 0], [1, 0, 0], [3, 2, 1], [1, 0, 0], [2, 1, 0], [0, 0, 0]], dtype=float),
               TRUTH_CALIBRATION_COLUMN: np.tile([[0.0, 2.0], [0.0, 1.0], [0.0, 1.8]], (6, 1, 1))}
    strategy = RecordingStrategy()
    selection = choose_frames(pool, strategy, SelectionRules(budget=2), loop=1, seed=0, columns=columns)
    assert selection.indices.tolist() == [2, 4] and strategy.seen == (["score"], ["score"])
    # candidates 2..5 hold 3 + 1 + 0 + 0 errors (1 per frame); the picks hold 4 (2 per frame)
    assert selection.truth is not None and selection.truth["error_lift"] == 2.0
    # every frame: two boxes of mean score 0.9, one of them right
    assert selection.truth["pool_calibration_error"] == pytest.approx(0.4)
    without = choose_frames(pool, strategy, SelectionRules(budget=2), loop=1, seed=0,
                            columns={"score": columns["score"]})
    assert without.truth is None


def test_the_error_oracle_ranks_by_the_truth_it_alone_is_shown() -> None:
    # candidates 2..5: errors 3, 1, 0, 4 on 3, 1, 0, 8 boxes. By errors: 5 then 2; by errors per box (a frame
    # without boxes counts its false alarms): 2 (1.0) and 3 (1.0) before 5 (0.5)
    pool = LabelPool(range(6))
    pool.label([0, 1], 0)
    columns = {TRUTH_COLUMN: np.array([[1, 0, 0], [1, 0, 0], [3, 2, 1], [1, 1, 0], [0, 0, 0], [8, 3, 1]], dtype=float)}
    by_errors = choose_frames(pool, ErrorOracleStrategy(), SelectionRules(budget=2), loop=1, seed=0, columns=columns)
    assert by_errors.indices.tolist() == [5, 2]
    by_rate = choose_frames(pool, ErrorOracleStrategy("error_rate"), SelectionRules(budget=2), loop=1, seed=0,
                            columns=columns)
    assert sorted(by_rate.indices.tolist()) == [2, 3]
    assert by_errors.truth is not None and by_errors.truth["error_lift"] == pytest.approx((7 / 2) / (8 / 4))
    with pytest.raises(ValueError, match=r"strategy 'oracle' ranks by the pool's ground truth, but pool inference "
                                         r"counted no errors"):
        choose_frames(pool, ErrorOracleStrategy(), SelectionRules(budget=2), loop=1, seed=0, columns={})
    with pytest.raises(ValueError, match=r"strategy\.rank_by: unknown 'boxes'"):
        ErrorOracleStrategy("boxes")
