"""Localization stability under a mirrored pass: box and frame stability by hand, the ranking it gives and why,
and the mirrored pass itself on detectors whose answer is known both ways."""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from alcv.models.detections import Detections, PredictionRequest
from alcv.models.mirror import MirroredPassModule, mirror_batch, mirror_boxes
from alcv.strategies import LocalizationStabilityStrategy, Picker, PoolStats, SelectionRules, box_stability
from alcv.strategies.localization import frame_stability


def frame(index: int, boxes: list[list[float]], scores: list[float], mirrored: list[list[float] | None]) -> Detections:
    """Detections of one frame whose boxes' matches in the mirrored pass are ``mirrored`` (None: no match);
    each box is of class 0 with probability its score."""
    width = len(boxes[0]) if boxes else 7
    box_tensor = torch.tensor(boxes, dtype=torch.float32).reshape(-1, width)
    found = torch.tensor([m is not None for m in mirrored], dtype=torch.bool)
    matched = torch.tensor([m if m is not None else [0.0] * width for m in mirrored], dtype=torch.float32)
    probs = torch.tensor([[s, 1 - s] for s in scores], dtype=torch.float32).reshape(-1, 2)
    return Detections(index, box_tensor, torch.zeros(len(boxes), dtype=torch.int64),
                      torch.tensor(scores, dtype=torch.float32), probs, mirror_boxes=matched.reshape(-1, width),
                      mirror_found=found)


CAR = [0.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0]


def test_box_stability_is_the_iou_with_the_mirrored_pass_and_zero_without_a_match() -> None:
    # 2 m along its 4 m length the footprints share 2 x 2 of 8 + 8 - 4 square metres: IoU 1/3
    shifted = [2.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0]
    lidar = frame(0, [CAR, CAR, CAR], [0.9, 0.9, 0.9], [CAR, shifted, None])
    np.testing.assert_allclose(box_stability(lidar), [1.0, 1 / 3, 0.0], atol=1e-9)
    image = frame(1, [[0, 0, 10, 10]], [0.9], [[0, 0, 10, 5]])
    np.testing.assert_allclose(box_stability(image), [0.5])
    with pytest.raises(ValueError, match=r"frame 2: the detections carry no mirrored pass"):
        box_stability(Detections(2, torch.zeros(1, 7), torch.zeros(1, dtype=torch.int64), torch.ones(1),
                                 torch.ones(1, 1)))


def test_frame_stability_weights_the_boxes_by_their_scores() -> None:
    # a stable box scored 0.9 and an unmatched one scored 0.3: (0.9 x 1 + 0.3 x 0) / 1.2
    detections = frame(0, [CAR, CAR], [0.9, 0.3], [CAR, None])
    assert frame_stability(detections, np.array([True, True])) == pytest.approx(0.75)
    assert frame_stability(detections, np.array([True, False])) == pytest.approx(1.0)
    assert math.isnan(frame_stability(detections, np.array([False, False])))


def test_an_unstable_confident_frame_outranks_a_stable_unsure_one_unless_the_weight_is_zero() -> None:
    # frame 0: a confident box (0.9) that the mirrored pass does not find: 0.1 + 1 x (1 - 0) = 1.1;
    # frame 1: an unsure box (0.6) found again in place: 0.4 + 0 = 0.4; frame 2: nothing counts, ranked last
    frames = [frame(0, [CAR], [0.9], [None]), frame(1, [CAR], [0.6], [CAR]), frame(2, [], [], [])]

    def order(weight: float) -> list[int]:
        strategy = LocalizationStabilityStrategy(weight=weight, min_score=0.1)
        pool = PoolStats(np.arange(3), {name: np.asarray(v) for name, v in strategy.frame_stats(frames).items()})
        np.testing.assert_allclose(pool.column("score"), [0.1 + weight, 0.4, -np.inf], atol=1e-6)
        return strategy.select(pool, Picker(SelectionRules(budget=3), np.ones(3)), seed=0).tolist()

    assert order(1.0) == [0, 1, 2]
    assert order(0.0) == [1, 0, 2]  # least confidence alone
    with pytest.raises(ValueError, match=r"strategy\.weight: must be >= 0, got -1"):
        LocalizationStabilityStrategy(weight=-1)


class CentroidDetector(pl.LightningModule):
    """A fake detector with a known answer: one box per frame, a car at the mean of its points (LiDAR) or the
    bounding box of its bright pixels (camera), yaw 0.3 x the sign of y; ``fixed`` puts the box at one place
    whatever the frame, as a detector that ignores its input would."""

    def __init__(self, modality: str, fixed: bool = False) -> None:
        super().__init__()
        self.modality = modality
        self.fixed = fixed
        self.prediction_request = PredictionRequest()

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> list[Detections]:
        frames = []
        for number, index in enumerate(batch["index"].tolist()):
            if self.modality == "lidar":
                points = batch["points"][batch["point_batch"] == number]
                x, y = (5.0, 3.0) if self.fixed else points[:, :2].mean(dim=0).tolist()
                box = torch.tensor([[x, y, 0.0, 4.0, 2.0, 1.5, 0.3 * math.copysign(1, y)]])
            else:
                rows, columns = torch.nonzero(batch["images"][number][0] > 0.5, as_tuple=True)
                box = torch.tensor([[2.0, 2.0, 6.0, 6.0]]) if self.fixed else torch.tensor(
                    [[columns.min(), rows.min(), columns.max() + 1, rows.max() + 1]], dtype=torch.float32)
            frames.append(Detections(index, box, torch.zeros(1, dtype=torch.int64), torch.tensor([0.8]),
                                     torch.tensor([[0.8, 0.2]])))
        return frames


def lidar_batch() -> dict[str, Any]:
    points = torch.tensor([[10.0, 4.0, 0.0, 1.0], [12.0, 6.0, 0.0, 1.0], [-3.0, -8.0, 0.0, 1.0]])
    return {"points": points, "point_batch": torch.tensor([0, 0, 1]), "index": torch.tensor([7, 9]),
            "boxes": [torch.zeros(0, 7)] * 2, "labels": [torch.zeros(0, dtype=torch.int64)] * 2}


def camera_batch() -> dict[str, Any]:
    image = torch.zeros(3, 8, 20)
    image[:, 1:4, 2:7] = 1.0  # a bright block at x 2..7, y 1..4 of a 20-pixel-wide image
    return {"images": [image], "index": torch.tensor([3]), "boxes": [torch.zeros(0, 4)],
            "labels": [torch.zeros(0, dtype=torch.int64)]}


@pytest.mark.parametrize(("modality", "batch"), [("lidar", lidar_batch()), ("camera", camera_batch())])
def test_the_mirrored_pass_finds_the_boxes_of_a_detector_that_sees_the_frame_both_ways(
        modality: str, batch: dict[str, Any]) -> None:
    result = MirroredPassModule(CentroidDetector(modality)).predict_step(batch, 0)
    for detections in result:
        assert detections.mirror_found.tolist() == [True]
        torch.testing.assert_close(detections.mirror_boxes, detections.boxes)  # mirrored back onto the same box
    if modality == "lidar":
        torch.testing.assert_close(result[0].boxes[0, :2], torch.tensor([11.0, 5.0]))
    # a detector that puts its box at one place whatever it sees is found at the mirror image of it: no match
    fixed = MirroredPassModule(CentroidDetector(modality, fixed=True)).predict_step(batch, 0)
    assert all(d.mirror_found.tolist() == [False] and not d.mirror_boxes.any() for d in fixed)


def test_mirroring_twice_gives_back_the_batch_and_the_boxes() -> None:
    batch = lidar_batch()
    twice = mirror_batch(mirror_batch(batch, "lidar"), "lidar")
    torch.testing.assert_close(twice["points"], batch["points"])
    assert "boxes" not in twice  # no ground truth goes to the mirrored pass
    boxes = torch.tensor([[1.0, 2.0, 0.5, 4.0, 2.0, 1.5, 0.4]])
    torch.testing.assert_close(mirror_boxes(boxes, "lidar"), torch.tensor([[1.0, -2.0, 0.5, 4.0, 2.0, 1.5, -0.4]]))
    image_boxes = torch.tensor([[2.0, 1.0, 7.0, 4.0]])
    torch.testing.assert_close(mirror_boxes(image_boxes, "camera", 20.0), torch.tensor([[13.0, 1.0, 18.0, 4.0]]))
    torch.testing.assert_close(mirror_boxes(mirror_boxes(image_boxes, "camera", 20.0), "camera", 20.0), image_boxes)
    with pytest.raises(ValueError, match="needs the image width"):
        mirror_boxes(image_boxes, "camera")
