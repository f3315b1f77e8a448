"""Torchvision 2D detectors in alcv: label mapping, per-box class probabilities, MC dropout, embeddings, COCO mAP,
and the pretrained-weights paths (never touching the network)."""

from __future__ import annotations

import math
import urllib.error
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
import torchvision.models._api as tv_api
from conftest import CodeRunningPickle
from torch import Tensor, nn
from torch.utils.data import DataLoader
from torchmetrics.detection import MeanAveragePrecision
from torchvision.models.detection.anchor_utils import AnchorGenerator

from alcv.metrics.coco_map import CocoMAP
from alcv.models.components.tiny_fpn import TinyFPNBackbone
from alcv.models.detections import Detections, PredictionRequest
from alcv.models.torchvision_builders import fasterrcnn, fcos, retinanet, ssdlite
from alcv.models.torchvision_inference import detect, detector_num_classes
from alcv.models.torchvision_module import TorchvisionDetectionModule

CLASS_NAMES = ("car", "person", "bike")
C = len(CLASS_NAMES)
HEIGHT, WIDTH = 64, 96

#: tiny builders; RetinaNet's / FCOS's random-init scores sit near their 0.01 prior, so lower the threshold
BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "fasterrcnn": partial(fasterrcnn, C, variant="mobilenet_v3_large_fpn", min_size=HEIGHT, max_size=WIDTH),
    "retinanet": partial(retinanet, C, min_size=HEIGHT, max_size=WIDTH, score_thresh=0.001),
    "fcos": partial(fcos, C, min_size=HEIGHT, max_size=WIDTH, score_thresh=0.01),
    "ssdlite": partial(ssdlite, C, size=(HEIGHT, WIDTH)),
}
SOFTMAX = {"fasterrcnn", "ssdlite"}  # class 0 is background in torchvision
FAMILIES = list(BUILDERS)
#: torch.hub's loader of pretrained weights, before the tests' fixture replaces it
HUB_LOAD = tv_api.load_state_dict_from_url


@pytest.fixture(autouse=True)
def _small_and_offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Seeded, 2 threads, and any attempt to download weights fails loudly. The thread count is restored after
    the test: tests that compare a run in this process with one in a subprocess (resume) need both to use the
    default."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)

    def no_network(*args: Any, **kwargs: Any) -> Any:
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(tv_api, "load_state_dict_from_url", no_network)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    yield
    torch.set_num_threads(threads)


def make_batch(first_index: int = 10) -> dict[str, Any]:
    """Two images (one 64 x 96, one 70 x 90) in the 2D collate contract, with boxes of every class."""
    generator = torch.Generator().manual_seed(first_index)
    images = [torch.rand(3, HEIGHT, WIDTH, generator=generator), torch.rand(3, 70, 90, generator=generator)]
    boxes = [torch.tensor([[5.0, 6.0, 40.0, 50.0], [50.0, 10.0, 90.0, 40.0]]), torch.tensor([[20.0, 20.0, 60.0, 66.0]])]
    labels = [torch.tensor([0, 2]), torch.tensor([1])]
    return {"index": torch.tensor([first_index, first_index + 1]), "images": images, "boxes": boxes,
            "labels": labels, "drive_id": torch.tensor([0, 0]), "timestamp": torch.tensor([0.0, 0.1],
                                                                                          dtype=torch.float64)}


def make_module(family: str, calibrate: bool = False) -> TorchvisionDetectionModule:
    """The module around a tiny random detector; ``calibrate`` sets the backbone's BatchNorm statistics from one
    batch (a random MobileNetV3 in eval mode otherwise shrinks its features to ~1e-8, and everything downstream
    of it is constant)."""
    module = TorchvisionDetectionModule(BUILDERS[family](), CLASS_NAMES,
                                        optimizer=partial(torch.optim.SGD, lr=0.01, momentum=0.9))
    if calibrate:
        backbone = module.detector.backbone
        for layer in backbone.modules():
            if isinstance(layer, nn.BatchNorm2d):
                layer.reset_running_stats()
                layer.momentum = None  # cumulative average: one batch sets the statistics
        with torch.no_grad():
            images, _ = module.detector.transform(make_batch(first_index=99)["images"])
            backbone.train()(images.tensors)
    return module


def reference_rows(detector: nn.Module, images: list[Tensor]) -> tuple[list[dict[str, Tensor]], list[Tensor]]:
    """Torchvision's own eval output, and per image every candidate's class-probability row ``(N, C)``
    recomputed from the heads' raw outputs (captured with forward hooks), background column dropped."""
    captured: dict[str, Any] = {}

    def keep(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            captured[name] = output

        return hook

    if hasattr(detector, "roi_heads"):
        hooked = [detector.roi_heads.box_predictor.register_forward_hook(keep("predictor"))]
    else:
        hooked = [detector.head.classification_head.register_forward_hook(keep("cls"))]
        if hasattr(detector.head, "regression_head"):
            hooked.append(detector.head.regression_head.register_forward_hook(keep("reg")))
    try:
        outputs = detector(images)
    finally:
        for handle in hooked:
            handle.remove()
    name = type(detector).__name__
    if name == "FasterRCNN":  # (sum of proposals, C + 1), proposals of image 0 first; split unknown: all rows
        rows = captured["predictor"][0].softmax(dim=-1)[:, 1:]
        return outputs, [rows] * len(images)
    logits = captured["cls"]  # (B, N, K)
    if name == "SSD":
        rows = logits.softmax(dim=-1)[..., 1:]
    elif name == "FCOS":
        rows = torch.sqrt(logits.sigmoid() * captured["reg"][1].sigmoid())
    else:
        rows = logits.sigmoid()
    return outputs, list(rows)


def assert_boxes_inside(boxes: Tensor, image: Tensor) -> None:
    assert boxes.shape[1:] == (4,)
    height, width = image.shape[-2:]
    assert bool((boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all())
    assert bool((boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all())
    assert bool((boxes[:, 2:] >= boxes[:, :2]).all())


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
@pytest.mark.parametrize("family", FAMILIES)
def test_training_step_maps_labels_and_backpropagates(family: str) -> None:
    module = make_module(family)
    module.train()
    seen: dict[str, Any] = {}

    def capture(detector: nn.Module, args: tuple[Any, ...]) -> None:
        seen["targets"] = args[1]

    handle = module.detector.register_forward_pre_hook(capture)
    batch = make_batch()
    loss = module.training_step(batch, 0)
    handle.remove()
    offset = 1 if family in SOFTMAX else 0
    for target, labels in zip(seen["targets"], batch["labels"], strict=True):
        assert torch.equal(target["labels"], labels + offset)  # Faster R-CNN / SSD: 0 is background
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in module.detector.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    with pytest.raises(RuntimeError, match="eval mode"):
        module(batch["images"])  # inference in training mode would silently use batch statistics


@pytest.mark.parametrize("family", FAMILIES)
def test_detect_equals_torchvision_and_keeps_class_probability_rows(family: str) -> None:
    module = make_module(family, calibrate=True).eval()
    detector = module.detector
    images = make_batch()["images"]
    num_classes, offset = detector_num_classes(detector)
    assert (num_classes, offset) == (C, 1 if family in SOFTMAX else 0)
    with torch.no_grad():
        reference, rows = reference_rows(detector, images)
        ours = module(images)
        again = module(images)
    assert sum(len(r["labels"]) for r in ours) > 0, "the tiny model should detect something"
    for ref, result, repeat, image, image_rows in zip(reference, ours, again, images, rows, strict=True):
        # same boxes, scores and (shifted) labels as torchvision's own postprocessing
        assert torch.equal(result["labels"], ref["labels"] - offset)
        torch.testing.assert_close(result["boxes"], ref["boxes"], rtol=0, atol=1e-4)
        torch.testing.assert_close(result["scores"], ref["scores"], rtol=0, atol=1e-6)
        # deterministic: no dropout outside MC passes
        for key in ("boxes", "labels", "scores", "class_probs"):
            assert torch.equal(result[key], repeat[key])
        assert "prob_samples" not in result and "embedding" not in result
        labels, probs = result["labels"], result["class_probs"]
        assert labels.dtype == torch.int64 and bool(((labels >= 0) & (labels < C)).all())
        assert probs.shape == (len(labels), C)
        torch.testing.assert_close(probs.gather(1, labels[:, None])[:, 0], result["scores"], rtol=0, atol=0)
        assert bool(((probs >= 0) & (probs <= 1)).all())
        if family in SOFTMAX:  # background left out: rows sum to 1 - p(background) < 1
            assert bool((probs.sum(dim=1) < 1).all())
        # every row is exactly one candidate's full probability row (a wrong column would not match)
        distance = (probs[:, None, :] - image_rows[None, :, :]).abs().amax(dim=-1)  # (M, N)
        assert bool((distance.amin(dim=1) < 1e-6).all())
        assert_boxes_inside(result["boxes"], image)


@pytest.mark.parametrize("family", FAMILIES)
def test_predict_step_embeddings_and_mc_dropout(family: str) -> None:
    module = make_module(family, calibrate=True).eval()
    batch = make_batch(first_index=40)
    with torch.no_grad():
        plain = module.predict_step(batch, 0)
        module.prediction_request = PredictionRequest(passes=3, dropout=0.3, embeddings=True)
        sampled = module.predict_step(batch, 0)
        module.prediction_request = PredictionRequest()
        plain_again = module.predict_step(batch, 0)
    assert not module.detector.training
    expected_dim = 128 if family == "ssdlite" else 256
    for frame, index, image in zip(sampled, (40, 41), batch["images"], strict=True):
        assert isinstance(frame, Detections) and frame.index == index
        assert frame.boxes.device.type == "cpu"
        assert_boxes_inside(frame.boxes, image)
        m = len(frame)
        assert frame.class_probs.shape == (m, C) and frame.scores.shape == (m,)
        assert frame.embedding is not None and frame.embedding.shape == (expected_dim,)
        assert torch.isfinite(frame.embedding).all()
        assert frame.prob_samples is not None and frame.prob_samples.shape == (3, m, C)
        assert frame.found is not None and frame.found.shape == (3, m) and bool(frame.found.all())
        # boxes are decoded from the passes' mean; each pass is read at the same anchors / proposals
        torch.testing.assert_close(frame.prob_samples.mean(dim=0), frame.class_probs)
        torch.testing.assert_close(frame.class_probs.gather(1, frame.labels[:, None])[:, 0], frame.scores)
        assert bool(((frame.prob_samples >= 0) & (frame.prob_samples <= 1)).all())
        if m:
            assert not torch.equal(frame.prob_samples[0], frame.prob_samples[1]), "dropout had no effect"
    for before, after in zip(plain, plain_again, strict=True):
        assert before.embedding is None and before.prob_samples is None and before.found is None
        assert torch.equal(before.boxes, after.boxes) and torch.equal(before.class_probs, after.class_probs)


def test_lightning_fit_validate_test_predict() -> None:
    """The module runs under a Trainer: fit with a scheduler, validation/test keep a DetectionAP, predict."""
    module = TorchvisionDetectionModule(
        BUILDERS["fasterrcnn"](), CLASS_NAMES, optimizer=partial(torch.optim.SGD, lr=0.005, momentum=0.9),
        scheduler=partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.005))
    loader = DataLoader([make_batch(0), make_batch(2)], batch_size=1, collate_fn=lambda items: items[0])
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, loader, loader)
    assert {"train/loss", "train/loss_classifier", "train/loss_objectness", "val/map"} <= set(trainer.logged_metrics)
    assert module.val_result is not None and module.val_result.ap.shape == (C, 10)
    trainer.test(module, loader, verbose=False)
    result = module.test_result
    assert result is not None and result.class_names == CLASS_NAMES
    assert result.thresholds == pytest.approx(tuple(0.5 + 0.05 * i for i in range(10)))
    assert not np.isnan(result.ap).any()  # every class has ground truth in these batches
    assert trainer.callback_metrics["test/map"].item() == pytest.approx(result.map, abs=1e-6)
    predictions = trainer.predict(module, loader)
    assert [frame.index for frames in predictions for frame in frames] == [0, 1, 2, 3]


# ------------------------------------------------------------------------------------------------------- CocoMAP


def coco_case() -> tuple[list[dict[str, Tensor]], list[dict[str, Tensor]]]:
    """Two images, 4 classes: class 0 and 1 have ground truth; class 2 is only predicted; class 3 never appears."""
    preds = [
        {"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 31.0], [50.0, 50.0, 60.0, 60.0],
                                [0.0, 40.0, 12.0, 52.0], [70.0, 0.0, 80.0, 10.0]]),
         "scores": torch.tensor([0.9, 0.8, 0.95, 0.6, 0.7]), "labels": torch.tensor([0, 0, 0, 1, 2])},
        {"boxes": torch.tensor([[10.0, 10.0, 30.0, 30.0], [40.0, 40.0, 60.0, 60.0]]),
         "scores": torch.tensor([0.5, 0.4]), "labels": torch.tensor([0, 1])},
    ]
    targets = [
        {"boxes": torch.tensor([[0.0, 0.0, 10.0, 11.0], [21.0, 20.0, 30.0, 30.0], [0.0, 40.0, 10.0, 50.0]]),
         "labels": torch.tensor([0, 0, 1])},
        {"boxes": torch.tensor([[12.0, 10.0, 30.0, 32.0], [80.0, 80.0, 90.0, 90.0]]),
         "labels": torch.tensor([0, 1])},
    ]
    return preds, targets


def test_coco_map_equals_torchmetrics_and_skips_classes_without_ground_truth() -> None:
    preds, targets = coco_case()
    metric = CocoMAP(["a", "b", "c", "d"])
    metric.update(preds[:1], targets[:1])
    metric.update(preds[1:], targets[1:])
    result = metric.compute()
    reference = MeanAveragePrecision(iou_type="bbox", class_metrics=True, backend="pycocotools")
    reference.update(preds, targets)
    expected = reference.compute()
    assert result.ap.shape == (4, 10)
    assert 0.05 < result.map < 0.95  # a non-trivial case
    assert result.map == pytest.approx(float(expected["map"]), abs=1e-6)
    assert result.ap_per_threshold[0] == pytest.approx(float(expected["map_50"]), abs=1e-6)
    assert result.ap_per_threshold[5] == pytest.approx(float(expected["map_75"]), abs=1e-6)
    per_class = dict(zip(expected["classes"].tolist(), expected["map_per_class"].tolist(), strict=True))
    for class_id in (0, 1):
        assert result.ap_per_class[class_id] == pytest.approx(per_class[class_id], abs=1e-6)
    assert np.isnan(result.ap[2]).all() and np.isnan(result.ap[3]).all()  # predicted only / never seen
    assert result.map == pytest.approx(float(np.mean(result.ap_per_class[:2])))
    assert set(result.as_dict()) == {"map", "ap/a", "ap/b", "ap/c", "ap/d"}
    metric.reset()
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert np.isnan(metric.compute().ap).all()


def test_coco_map_rejects_labels_out_of_range() -> None:
    preds, targets = coco_case()
    with pytest.raises(ValueError, match=r"labels'\] must lie in \[0, 2\)"):
        CocoMAP(["a", "b"]).update(preds, targets)


# ------------------------------------------------------------------------------------------- pretrained weights


@pytest.mark.parametrize(("family", "kwargs", "expected"), [
    ("fasterrcnn", {"weights": "DEFAULT"}, "FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1"),
    ("ssdlite", {"weights_backbone": "IMAGENET1K_V1"}, "MobileNet_V3_Large_Weights.IMAGENET1K_V1"),
])
def test_weights_download_failure_says_what_and_how(family: str, kwargs: dict[str, str], expected: str) -> None:
    with pytest.raises(RuntimeError) as error:
        BUILDERS[family](**kwargs)
    message = str(error.value)
    assert expected in message and "https://download.pytorch.org/" in message
    assert "model.weights=null" in message and "no network in tests" in message


def test_a_cached_weights_file_that_would_run_code_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.hub loads cached files with weights_only=False; the builders force weights-only loading."""
    from torchvision.models.detection import SSDLite320_MobileNet_V3_Large_Weights

    url = SSDLite320_MobileNet_V3_Large_Weights.COCO_V1.url
    monkeypatch.setattr(tv_api, "load_state_dict_from_url", HUB_LOAD)  # the real loader, reading the cache
    hub_dir = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
        marker = tmp_path / "code_ran"
        torch.save({"weight": CodeRunningPickle(marker)}, tmp_path / "hub" / "checkpoints" / url.rsplit("/", 1)[-1])
        with pytest.raises(RuntimeError, match=r"could not fetch or load .*SSDLite320.*Weights only load failed"):
            BUILDERS["ssdlite"](weights="DEFAULT")
    finally:
        torch.hub.set_dir(hub_dir)
    assert not marker.exists()


def test_unknown_weights_name_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown FasterRCNN_MobileNet_V3_Large_FPN_Weights 'NOPE'"):
        BUILDERS["fasterrcnn"](weights="NOPE")


@pytest.mark.parametrize("family", FAMILIES)
def test_pretrained_weights_are_loaded_and_classifier_replaced(family: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """'Download' a COCO-shaped (91-class) state dict of a random model; the built model carries it, except
    for a fresh C-class classifier."""
    coco = BUILDERS[family].func(91 - (1 if family in SOFTMAX else 0), **BUILDERS[family].keywords | {
        "weights": None})
    coco_state = coco.state_dict()
    monkeypatch.setattr(tv_api, "load_state_dict_from_url", lambda url, *args, **kwargs: dict(coco_state))
    model = BUILDERS[family](weights="DEFAULT").eval()
    assert detector_num_classes(model) == (C, 1 if family in SOFTMAX else 0)
    state = model.state_dict()
    replaced = [key for key, value in state.items() if value.shape != coco_state[key].shape]
    assert replaced and all("cls" in key or "classification" in key or "box_predictor" in key for key in replaced)
    for key, value in state.items():  # everything else (backbone, FPN, RPN, regression, ...) was loaded
        if key not in replaced:
            assert torch.equal(value, coco_state[key]), key
    with torch.no_grad():
        results = detect(model, make_batch()["images"])
    assert all(r["class_probs"].shape[1] == C for r in results)
    assert all(math.isfinite(float(r["scores"].sum())) for r in results)


def test_fcos_on_a_custom_backbone_starts_its_box_regression_alive() -> None:
    backbone = TinyFPNBackbone(stage_channels=[8, 16, 24, 32], levels=3, out_channels=32)  # GroupNorm: 32
    anchors = AnchorGenerator(sizes=((8,), (16,), (32,)), aspect_ratios=((1.0,),) * 3)
    model = fcos(C, backbone=backbone, anchor_generator=anchors, min_size=HEIGHT, max_size=WIDTH)
    assert model.backbone is backbone and detector_num_classes(model) == (C, 0)
    bias = model.head.regression_head.bbox_reg.bias
    assert torch.equal(bias, torch.ones_like(bias))  # torchvision starts at 0, where the ReLU can die
    model.train()
    batch = make_batch()
    targets = [{"boxes": boxes, "labels": labels} for boxes, labels in zip(batch["boxes"], batch["labels"],
                                                                            strict=True)]
    losses = model(batch["images"], targets)
    assert losses["bbox_regression"] < 1.0  # boxes with area overlap their targets from the first step
    with pytest.raises(ValueError, match=r"with a custom backbone set weights=None and weights_backbone=None"):
        fcos(C, backbone=backbone, anchor_generator=anchors, weights_backbone="DEFAULT")
