"""alcv.metrics.kitti_official: equal to OpenPCDet's port of KITTI's official evaluation on seeded synthetic frames
(the stored reference, tests/kitti_official_reference.json), and the rules users rely on, on hand-made frames."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from kitti_official_frames import CLASSES, NUM_FRAMES, SEED, image_box, synthetic_frames

from alcv.metrics.kitti_official import (
    DIFFICULTIES,
    OFFICIAL_IOU_THRESHOLDS,
    KittiOfficialAP,
    OfficialDetections,
    OfficialGroundTruth,
    kitti_official_ap,
    score_thresholds,
)

REFERENCE = Path(__file__).with_name("kitti_official_reference.json")
NAMES, TYPES = list(CLASSES), list(CLASSES.values())
DONT_CARE_BOX = [-1.0, -1.0, -1.0, -1000.0, -1000.0, -1000.0, -10.0]


def flat(frames: list[dict[str, np.ndarray]]) -> tuple[OfficialGroundTruth, OfficialDetections]:
    """The frames of :func:`synthetic_frames` (frame id = position) as flat arrays."""
    def joined(key: str) -> np.ndarray:
        return np.concatenate([frame[key] for frame in frames])

    def frame_ids(key: str) -> np.ndarray:
        return np.concatenate([np.full(len(frame[key]), i, dtype=np.int64) for i, frame in enumerate(frames)])

    gt = OfficialGroundTruth(frame=frame_ids("gt_types"), types=joined("gt_types"),
                             truncation=joined("gt_truncation"), occlusion=joined("gt_occlusion"),
                             image_boxes=joined("gt_image_boxes"), boxes=joined("gt_boxes"))
    pred = OfficialDetections(frame=frame_ids("det_label"), label=joined("det_label"), score=joined("det_score"),
                              image_boxes=joined("det_image_boxes"), boxes=joined("det_boxes"))
    return gt, pred


@pytest.fixture(scope="module")
def synthetic() -> tuple[OfficialGroundTruth, OfficialDetections]:
    return flat(synthetic_frames())


@pytest.mark.parametrize("mode", ["image", "bev", "3d"])
def test_equals_the_official_evaluation_on_seeded_synthetic_frames(
        mode: str, synthetic: tuple[OfficialGroundTruth, OfficialDetections]) -> None:
    reference = json.loads(REFERENCE.read_text())
    assert (reference["seed"], reference["num_frames"], reference["classes"]) == (SEED, NUM_FRAMES, CLASSES)
    expected = reference["ap"][mode]
    gt, pred = synthetic
    result = kitti_official_ap(gt, pred, NAMES, TYPES, expected["iou_thresholds"], mode)
    for recall, ap in (("R40", result.ap_r40), ("R11", result.ap_r11)):
        want = np.array(expected[recall])  # (class, difficulty, level)
        assert ap.shape == want.shape == (3, 3, 2)
        np.testing.assert_allclose(ap, want, rtol=0, atol=1e-6, err_msg=f"{mode} {recall}")
    # the reference is not degenerate: every difficulty and class has AP strictly inside (0, 1)
    assert np.all((result.ap_r40 > 0) & (result.ap_r40 < 1))


def car(x: float, z: float, length: float = 3.9) -> np.ndarray:
    """A car-sized label box at ``(x, z)`` metres (bottom at y = 1.7)."""
    return np.array([1.5, 1.6, length, x, 1.7, z, 0.0])


def frame(gt: list[tuple[str, np.ndarray, int, float]], dets: list[tuple[int, np.ndarray, float]],
          dont_care: list[np.ndarray] = (), copies: int = 80) -> tuple[OfficialGroundTruth, OfficialDetections]:
    """``copies`` frames alike: ``gt`` (type, label box, occlusion, truncation), ``dets`` (class id, label box,
    score in [0, 1)) and DontCare regions (2D boxes); 2D boxes are the label boxes projected. Copy ``k``'s scores
    are ``k + score``: copies never interleave, and the official R40 samples 41 thresholds (80 boxes: a perfect
    detector gets 1; with few boxes the official R40 is lower, as it samples by threshold, not by recall)."""
    types = [t for t, _, _, _ in gt] + ["DontCare"] * len(dont_care)
    boxes = [b for _, b, _, _ in gt] + [np.array(DONT_CARE_BOX)] * len(dont_care)
    images = [image_box(b) for _, b, _, _ in gt] + list(dont_care)
    truth = OfficialGroundTruth(frame=np.repeat(np.arange(copies), len(types)), types=np.tile(types, copies),
                                truncation=np.tile([t for *_, t in gt] + [-1.0] * len(dont_care), copies),
                                occlusion=np.tile([o for _, _, o, _ in gt] + [-1] * len(dont_care), copies),
                                image_boxes=np.tile(np.array(images).reshape(-1, 4), (copies, 1)),
                                boxes=np.tile(np.array(boxes).reshape(-1, 7), (copies, 1)))
    scores = np.array([s for _, _, s in dets], dtype=np.float64)
    detections = OfficialDetections(frame=np.repeat(np.arange(copies), len(dets)),
                                    label=np.tile(np.array([c for c, _, _ in dets], dtype=np.int64), copies),
                                    score=(np.arange(copies)[:, None] + scores).ravel(),
                                    image_boxes=np.tile(np.array([image_box(b) for _, b, _ in dets]).reshape(-1, 4),
                                                        (copies, 1)),
                                    boxes=np.tile(np.array([b for _, b, _ in dets]).reshape(-1, 7), (copies, 1)))
    return truth, detections


def car_ap(gt: OfficialGroundTruth, pred: OfficialDetections, mode: str = "bev") -> KittiOfficialAP:
    """Official AP of class 0 evaluated as Car (and 1 as Pedestrian) at KITTI's thresholds."""
    thresholds = [OFFICIAL_IOU_THRESHOLDS[mode]["Car"], OFFICIAL_IOU_THRESHOLDS[mode]["Pedestrian"]]
    with pytest.warns(UserWarning, match="no counted ground-truth"):  # no pedestrians
        return kitti_official_ap(gt, pred, ["car", "pedestrian"], ["Car", "Pedestrian"], thresholds, mode)


def moderate_car(result: KittiOfficialAP) -> float:
    return float(result.ap_r40[0, DIFFICULTIES.index("moderate"), 0])


def test_a_detection_in_a_dont_care_region_is_ignored_in_the_image_metric_only() -> None:
    target, stray = car(0.0, 10.0), car(5.0, 15.0)
    region = image_box(stray) + np.array([-5.0, -5.0, 5.0, 5.0])
    # the stray detection scores higher than the true one: without the region precision is 1/2 at full recall
    dets = [(0, target, 0.9), (0, stray, 0.95)]
    assert moderate_car(car_ap(*frame([("Car", target, 0, 0.0)], dets), "image")) == pytest.approx(0.5)
    assert moderate_car(car_ap(*frame([("Car", target, 0, 0.0)], dets, [region]), "image")) == pytest.approx(1.0)
    # in BEV and 3D the official code never applies DontCare regions (their boxes are placeholders)
    for mode in ("bev", "3d"):
        assert moderate_car(car_ap(*frame([("Car", target, 0, 0.0)], dets, [region]), mode)) == pytest.approx(0.5)


@pytest.mark.parametrize(("neighbour", "expected"), [("Van", 1.0), ("Truck", 0.5)])
def test_a_car_detection_on_a_van_is_no_false_positive(neighbour: str, expected: float) -> None:
    target, van = car(0.0, 10.0), car(5.0, 15.0, length=5.0)
    gt, pred = frame([("Car", target, 0, 0.0), (neighbour, van, 0, 0.0)], [(0, target, 0.9), (0, van, 0.95)])
    assert moderate_car(car_ap(gt, pred)) == pytest.approx(expected)


def test_a_pedestrian_detection_on_a_person_sitting_is_no_false_positive() -> None:
    person, sitting = np.array([1.75, 0.6, 0.8, 0.0, 1.7, 8.0, 0.0]), np.array([1.2, 0.6, 0.8, 3.0, 1.7, 9.0, 0.0])
    for kitti_type, expected in (("Person_sitting", 1.0), ("Misc", 0.5)):
        gt, pred = frame([("Pedestrian", person, 0, 0.0), (kitti_type, sitting, 0, 0.0)],
                         [(0, person, 0.9), (0, sitting, 0.95)])
        result = kitti_official_ap(gt, pred, ["pedestrian"], ["Pedestrian"], [[0.5, 0.25]], "3d")
        assert result.ap_r40[0, 1, 0] == pytest.approx(expected)


def test_a_detection_too_small_for_a_level_is_ignored_there() -> None:
    target, far = car(0.0, 10.0), car(3.0, 35.0)  # the far car is about 31 px high: below easy's 40, above 25
    assert 25 <= image_box(far)[3] - image_box(far)[1] < 40
    result = car_ap(*frame([("Car", target, 0, 0.0)], [(0, target, 0.9), (0, far, 0.95)]))
    np.testing.assert_allclose(result.ap_r40[0, :, 0], [1.0, 0.5, 0.5])


def test_height_limits_are_strict_for_ground_truth_and_inclusive_for_detections() -> None:
    target, stray = car(0.0, 10.0), car(5.0, 15.0)
    gt, pred = frame([("Car", target, 0, 0.0)], [(0, target, 0.9), (0, stray, 0.95)])
    gt.image_boxes[:, 3] = gt.image_boxes[:, 1] + 40.0  # exactly easy's limit: not easy, moderate
    pred.image_boxes[:, 3] = pred.image_boxes[:, 1] + 25.0  # exactly the limit: kept at moderate, ignored at easy
    result = car_ap(gt, pred)
    assert np.isnan(result.ap_r40[0, 0, 0])
    np.testing.assert_allclose(result.ap_r40[0, 1:, 0], [0.5, 0.5])


def test_a_too_small_detection_of_any_class_competes_in_the_threshold_pass() -> None:
    seen, hidden = car(-3.0, 20.0), car(3.0, 20.0)
    flat = hidden.copy()
    flat[0] = 0.3  # the same footprint, 0.3 m high: under 25 px in the image, so ignored at every level
    assert image_box(flat)[3] - image_box(flat)[1] < 25
    boxes = [("Car", seen, 0, 0.0), ("Car", hidden, 0, 0.0)]
    found = [(0, seen, 0.9), (0, hidden, 0.5)]
    assert moderate_car(car_ap(*frame(boxes, found))) == pytest.approx(1.0)
    for label in (0, 1):  # a car or a pedestrian detection, of higher score, takes the hidden car in the first
        # pass (by score), so the true detection's score is no threshold: half the recall is never sampled
        assert moderate_car(car_ap(*frame(boxes, [*found, (label, flat, 0.95)]))) == pytest.approx(0.5)


def test_difficulty_levels_are_cumulative_and_uncounted_boxes_absorb_their_detection() -> None:
    visible, occluded, truncated = car(-4.0, 10.0), car(4.0, 12.0), car(0.0, 20.0)
    gt = [("Car", visible, 0, 0.0), ("Car", occluded, 1, 0.0), ("Car", truncated, 0, 0.4)]
    detected = frame(gt, [(0, visible, 0.9), (0, occluded, 0.95), (0, truncated, 0.97)])
    # easy counts only the visible car; the others take their detections without being true positives
    np.testing.assert_allclose(car_ap(*detected).ap_r40[0, :, 0], [1.0, 1.0, 1.0])
    only_visible = frame(gt, [(0, visible, 0.9)])
    # moderate and hard count two and three cars a frame: the recall stops at 1/2 and 1/3, which the sampled
    # thresholds reach at samples 20 and 13; the official code also keeps the last score (sample 14 for hard)
    np.testing.assert_allclose(car_ap(*only_visible).ap_r40[0, :, 0], [1.0, 0.5, 14 / 40])


def test_as_dict_reports_every_difficulty_level_and_recall_setting() -> None:
    target = car(0.0, 10.0)
    result = car_ap(*frame([("Car", target, 0, 0.0)], [(0, target, 0.9)]))
    values = result.as_dict()
    assert values["map"] == values["ap/car"] == 1.0  # the pedestrian class (NaN) is left out of the mean
    assert np.isnan(values["ap/pedestrian"])
    assert {key for key in values if key.startswith("ap/car/")} == {
        f"ap/car/{d}/{r}@{t:g}" for d in DIFFICULTIES for r in ("R40", "R11") for t in (0.7, 0.5)}


def test_score_thresholds_sample_recall_in_steps_of_one_fortieth() -> None:
    scores = np.linspace(1.0, 0.01, 100)
    kept = score_thresholds(scores, 100)
    assert len(kept) == 41 and kept[0] == 1.0 and kept[-1] == 0.01
    assert score_thresholds(scores[:3], 3) == pytest.approx([1.0, 0.99, 0.98])
    assert score_thresholds(np.zeros(0), 5) == []


def test_mismatched_inputs_are_errors() -> None:
    gt, pred = frame([("Car", car(0.0, 10.0), 0, 0.0)], [(0, car(0.0, 10.0), 0.9)], copies=1)
    with pytest.raises(ValueError, match="class_types: expected 2 KITTI types"):
        kitti_official_ap(gt, pred, ["car", "pedestrian"], ["Car"], [0.7, 0.5])
    with pytest.raises(ValueError, match=r"pred.label: expected class ids in \[0, 1\)"):
        kitti_official_ap(gt, OfficialDetections(pred.frame, pred.label + 1, pred.score, pred.image_boxes,
                                                 pred.boxes), ["car"], ["Car"], [0.7])
    with pytest.raises(ValueError, match=r"gt.types: expected 1 values"):
        OfficialGroundTruth(gt.frame, np.array(["Car", "Van"]), gt.truncation, gt.occlusion, gt.image_boxes,
                            gt.boxes)
    with pytest.raises(ValueError, match=r"pred.boxes: expected finite values of shape \(1, 7\)"):
        OfficialDetections(pred.frame, pred.label, pred.score, pred.image_boxes, pred.boxes[:, :6])
