"""The BEV detector's contracts: shapes, heatmap targets, decoding with per-class probabilities."""

from __future__ import annotations

import functools
import math
import warnings

import pytest
import torch

from alcv.models.bev_module import BEVDetectionModule
from alcv.models.components.bev import (
    BEVBackbone,
    BEVDetector,
    BEVGrid,
    CenterHead,
    PillarEncoder,
    gaussian_radius,
)
from alcv.models.detections import PredictionRequest

GRID = BEVGrid(point_range=(-8.0, -8.0, -3.0, 8.0, 8.0, 3.0), cell_size=0.5)


def make_detector(num_classes: int = 3) -> BEVDetector:
    torch.manual_seed(0)
    return BEVDetector(GRID, num_classes, PillarEncoder(GRID, channels=8),
                       BEVBackbone(8, stage_channels=(8, 16), stage_blocks=(1, 1), stage_strides=(2, 2),
                                   upsample_channels=8, out_stride=2),
                       functools.partial(CenterHead, head_channels=8), max_detections=20, score_threshold=0.0)


def box_points(box: torch.Tensor, count: int = 60) -> torch.Tensor:
    """Points spread over the footprint of ``box`` (yaw 0), z inside it, intensity 0.5."""
    grid = torch.rand(count, 3) - 0.5
    return torch.stack([box[0] + grid[:, 0] * box[3], box[1] + grid[:, 1] * box[4],
                        box[2] + grid[:, 2] * box[5], torch.full((count,), 0.5)], dim=1)


def test_encoder_scatters_points_into_their_cells() -> None:
    encoder = PillarEncoder(GRID, channels=4)
    points = torch.tensor([[0.1, 0.1, 0.0, 0.2], [0.2, 0.3, 0.5, 0.2], [-7.9, 7.9, 0.0, 0.1], [50.0, 0.0, 0.0, 0.0]])
    bev = encoder(points, torch.tensor([0, 0, 1, 1]), batch_size=2)
    assert bev.shape == (2, 4, GRID.ny, GRID.nx)
    count = torch.expm1(bev[:, -1])  # the last channel is log1p(point count)
    assert count[0, 16, 16].round() == 2  # x, y in [0, 0.5) -> cell (16, 16)
    assert count[1, 31, 0].round() == 1  # x = -7.9, y = 7.9 -> column 0, row 31
    assert count.sum().round() == 3  # the point outside the range is dropped


def test_forward_shapes_and_finite_loss_for_frames_with_and_without_boxes() -> None:
    detector = make_detector()
    boxes = [torch.tensor([[2.0, 1.0, -1.0, 4.0, 1.8, 1.5, 0.3]]), torch.zeros(0, 7)]
    labels = [torch.tensor([0]), torch.zeros(0, dtype=torch.long)]
    points = torch.cat([box_points(boxes[0][0]), torch.rand(30, 4) * 4])
    point_batch = torch.cat([torch.zeros(60, dtype=torch.long), torch.ones(30, dtype=torch.long)])
    outputs = detector(points, point_batch, 2)
    assert outputs["heatmap"].shape == (2, 3, 16, 16)  # 32 cells / out_stride 2
    assert outputs["regression"].shape == (2, 8, 16, 16)
    losses = detector.loss(outputs, boxes, labels)
    assert all(torch.isfinite(v) for v in losses.values())
    losses["loss"].backward()
    assert all(p.grad is not None for p in detector.parameters() if p.requires_grad)


def test_heatmap_target_peaks_at_exactly_one_so_the_focal_loss_sees_positives() -> None:
    """A perfect heatmap (logits = +inf at the peak, the Gaussian elsewhere) gives a near-zero loss;
    it only can if the target is exactly 1 at the box's integer cell."""
    detector = make_detector(num_classes=1)
    box = torch.tensor([[1.3, -2.6, -1.0, 4.0, 1.8, 1.5, 0.0]])
    outputs = detector(box_points(box[0]), torch.zeros(60, dtype=torch.long), 1)
    cx, cy = (1.3 + 8) / 1.0, (-2.6 + 8) / 1.0  # out cell = 0.5 m * stride 2
    heatmap = torch.full_like(outputs["heatmap"], -20.0)
    heatmap[0, 0, math.floor(cy), math.floor(cx)] = 20.0
    peak_only = detector.loss({"heatmap": heatmap, "regression": outputs["regression"]}, [box],
                              [torch.tensor([0])])["heatmap_loss"]
    shifted = torch.full_like(outputs["heatmap"], -20.0)
    shifted[0, 0, math.floor(cy) + 1, math.floor(cx)] = 20.0
    off_peak = detector.loss({"heatmap": shifted, "regression": outputs["regression"]}, [box],
                             [torch.tensor([0])])["heatmap_loss"]
    assert peak_only < 1e-3 < off_peak


def test_gaussian_radius_is_positive_and_grows_with_size() -> None:
    radius = gaussian_radius(torch.tensor([0.6, 2.5, 4.5]), torch.tensor([0.6, 1.2, 1.8]))
    assert torch.isfinite(radius).all() and (radius > 0).all()
    assert radius[0] < radius[1] < radius[2]


def test_decode_returns_boxes_labels_scores_and_class_probabilities() -> None:
    detector = make_detector()
    heatmap = torch.full((2, 3, 16, 16), -10.0)
    heatmap[0, 1, 5, 7] = 2.0  # a pedestrian peak; other classes at the same cell are lower
    heatmap[0, 0, 5, 7] = -1.0
    regression = torch.zeros(2, 8, 16, 16)
    regression[0, :, 5, 7] = torch.tensor([0.5, 0.25, -1.0, math.log(0.6), math.log(0.7), math.log(1.7),
                                           math.sin(0.4), math.cos(0.4)])
    detector.score_threshold = 0.5
    detections = detector.decode({"heatmap": heatmap, "regression": regression}, indices=[41, 97])
    assert [d.index for d in detections] == [41, 97]
    first, second = detections
    assert len(first) == 1 and len(second) == 0
    assert first.labels.tolist() == [1]
    expected = torch.tensor([(7 + 0.5) * 1.0 - 8, (5 + 0.25) * 1.0 - 8, -1.0, 0.6, 0.7, 1.7, 0.4])
    torch.testing.assert_close(first.boxes[0], expected, atol=1e-5, rtol=1e-5)
    assert first.class_probs.shape == (1, 3)
    torch.testing.assert_close(first.class_probs[0], torch.sigmoid(torch.tensor([-1.0, 2.0, -10.0])))
    torch.testing.assert_close(first.scores, first.class_probs[:, 1])
    assert second.boxes.shape == (0, 7) and second.class_probs.shape == (0, 3)


def test_detector_learns_to_find_an_object_it_was_trained_on() -> None:
    torch.manual_seed(0)
    detector = make_detector(num_classes=1)
    box = torch.tensor([[3.2, -1.7, -1.0, 4.0, 1.8, 1.5, 0.0]])
    points = box_points(box[0], 200)
    optimizer = torch.optim.Adam(detector.parameters(), lr=0.01)
    for _ in range(60):
        loss = detector.loss(detector(points, torch.zeros(200, dtype=torch.long), 1), [box], [torch.tensor([0])])
        optimizer.zero_grad()
        loss["loss"].backward()
        optimizer.step()
    detector.eval()
    (found,) = detector.decode(detector(points, torch.zeros(200, dtype=torch.long), 1), [0])
    best = found.boxes[found.scores.argmax()]
    assert torch.hypot(best[0] - 3.2, best[1] + 1.7) < 0.5


def test_grid_and_backbone_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="point_range"):
        BEVGrid(point_range=(0.0, 0.0, 0.0, -1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="cell_size"):
        BEVGrid(point_range=(0.0, 0.0, 0.0, 1.0, 1.0, 1.0), cell_size=0.3)
    with pytest.raises(ValueError, match="stage_"):
        BEVBackbone(4, stage_channels=(8,), stage_blocks=(1, 1), stage_strides=(1,))


def test_decode_reads_every_stochastic_pass_at_the_same_cells() -> None:
    detector = make_detector()
    heatmap = torch.full((1, 3, 16, 16), -10.0)
    heatmap[0, 2, 3, 4] = 3.0
    samples = torch.rand(4, 1, 3, 16, 16)  # 4 passes' probabilities
    detector.score_threshold = 0.5
    (frame,) = detector.decode({"heatmap": heatmap, "regression": torch.zeros(1, 8, 16, 16)}, [7], samples)
    assert len(frame) == 1 and frame.prob_samples is not None and frame.found is not None
    assert frame.prob_samples.shape == (4, 1, 3) and frame.found.all()
    torch.testing.assert_close(frame.prob_samples[:, 0], samples[:, 0, :, 3, 4])


def module(**request: object) -> BEVDetectionModule:
    """A detection module in eval mode whose pool inference follows ``PredictionRequest(**request)``."""
    model = BEVDetectionModule(make_detector(), ("vehicle", "pedestrian", "golf_cart"),
                               functools.partial(torch.optim.Adam, lr=0.01))
    model.prediction_request = PredictionRequest(**request)  # type: ignore[arg-type]
    return model.eval()


def test_predict_step_gives_embeddings_and_mc_dropout_samples_only_when_asked() -> None:
    box = torch.tensor([2.0, 1.0, -1.0, 4.0, 1.8, 1.5, 0.0])
    batch = {"points": box_points(box), "point_batch": torch.zeros(60, dtype=torch.long), "index": torch.tensor([5])}
    (plain,) = module().predict_step(batch, 0)
    assert plain.embedding is None and plain.prob_samples is None

    torch.manual_seed(1)
    model = module(passes=6, dropout=0.5, embeddings=True)
    (sampled,) = model.predict_step(batch, 0)
    assert sampled.embedding is not None
    assert sampled.embedding.shape == (model.detector.backbone.out_channels,)
    assert sampled.prob_samples is not None and sampled.prob_samples.shape == (6, len(sampled), 3)
    assert sampled.found is not None and sampled.found.all()
    assert sampled.prob_samples.std(dim=0).max() > 0  # dropout makes the passes differ
    # the boxes come from the passes' mean: each box's class probabilities are about the samples' mean
    torch.testing.assert_close(sampled.class_probs, sampled.prob_samples.mean(dim=0), atol=1e-4, rtol=1e-4)
    # and the same model without passes is deterministic: dropout is off outside MC passes
    model = module()
    first, second = model.predict_step(batch, 0)[0], model.predict_step(batch, 0)[0]
    torch.testing.assert_close(first.class_probs, second.class_probs)


def test_kitti_ap_is_a_second_test_metric_beside_the_centre_distance_map() -> None:
    model = BEVDetectionModule(make_detector(), ("vehicle", "pedestrian", "golf_cart"),
                               functools.partial(torch.optim.SGD, lr=0.1),
                               kitti_iou_thresholds={"default": [0.7, 0.5], "pedestrian": [0.5, 0.25]})
    assert set(model.extra_test_metrics) == {"kitti_bev", "kitti_3d"}
    assert model.extra_test_metrics["kitti_3d"].iou_thresholds.tolist() == [[0.7, 0.5], [0.5, 0.25], [0.7, 0.5]]
    # a batch whose predictions are its ground truth: every level of every class with boxes scores 1
    boxes = torch.tensor([[2.0, 1.0, -1.0, 4.0, 1.8, 1.5, 0.3], [-3.0, 2.0, -1.0, 0.6, 0.6, 1.7, 1.0]])
    labels = torch.tensor([0, 1])
    predictions = [{"boxes": boxes, "labels": labels, "scores": torch.tensor([0.9, 0.8])}]
    for metric in model.extra_test_metrics.values():
        metric.update(predictions, [{"boxes": boxes, "labels": labels}], torch.tensor([4]))
    with warnings.catch_warnings():  # golf carts have no ground truth; self.log runs without a Trainer
        warnings.simplefilter("ignore")
        model.on_test_epoch_end()
    for name in ("kitti_bev", "kitti_3d"):
        values = model.extra_test_results[name].as_dict()
        assert values["map"] == 1.0 and values["ap/vehicle"] == 1.0 and math.isnan(values["ap/golf_cart"])
    for bad, message in [({"vehicle": [0.7]}, r"lacks \['pedestrian', 'golf_cart'\]"),
                         ({"default": [0.7], "truck": [0.5]}, r"unknown class\(es\) \['truck'\]"),
                         ({"default": [0.7, 0.5], "pedestrian": [0.5]}, r"the same number of levels")]:
        with pytest.raises(ValueError, match=message):
            BEVDetectionModule(make_detector(), ("vehicle", "pedestrian", "golf_cart"),
                               functools.partial(torch.optim.SGD, lr=0.1), kitti_iou_thresholds=bad)
