"""Exporting the synthetic camera world to COCO, reading it back with ``data=coco``, and running the loop on it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import hydra
import numpy as np
import pytest
import torch
from conftest import TINY, TINY_2D, TINY_CAMERA_WORLD
from omegaconf import DictConfig

from alcv.data.coco import CocoDataset
from alcv.data.export import coco_overrides, export_coco, kitti_overrides, main
from alcv.data.synthetic_camera import SyntheticCameraDataset
from alcv.loop import run
from alcv.run_records import SELECTIONS_FILE, read_jsonl, read_results

Compose = Callable[..., DictConfig]


@pytest.fixture
def camera_dataset(compose_cfg: Compose) -> SyntheticCameraDataset:
    return hydra.utils.instantiate(compose_cfg("data=synthetic_camera", *TINY_CAMERA_WORLD).data.dataset)


def test_exported_frames_read_back_with_the_same_pixels_boxes_labels_splits_and_drives(
        camera_dataset: SyntheticCameraDataset, tmp_path: Path) -> None:
    written = export_coco(camera_dataset, tmp_path / "coco")
    assert set(written) == {"pool", "val", "test"}
    coco = CocoDataset(written, class_names=list(camera_dataset.class_names))
    assert coco.class_names == camera_dataset.class_names
    # image ids are the synthetic absolute indices + 1; each split holds the same frames
    for split in ("pool", "val", "test"):
        exported = [coco.image_id(i) - 1 for i in coco.split_indices(split)]
        assert exported == camera_dataset.split_indices(split).tolist()
    drives: dict[int, int] = {}
    for index in range(len(coco)):
        read, original = coco[index], camera_dataset[coco.image_id(index) - 1]
        assert torch.equal(read["image"], original["image"])  # PNG is lossless
        torch.testing.assert_close(read["boxes"].as_subclass(torch.Tensor),
                                   original["boxes"].as_subclass(torch.Tensor), atol=1e-4, rtol=0)
        assert torch.equal(read["labels"], original["labels"])
        assert read["timestamp"] == pytest.approx(original["timestamp"])
        # drive numbers differ (COCO counts them per file) but group the same frames
        assert drives.setdefault(original["drive_id"], read["drive_id"]) == read["drive_id"]
    assert len(set(drives.values())) == len(drives)
    assert sum(coco.num_boxes(i) for i in range(len(coco))) > 0


def test_export_never_overwrites_and_refuses_lidar_frames(camera_dataset: SyntheticCameraDataset, compose_cfg: Compose,
                                                         tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "coco"
    written = export_coco(camera_dataset, out, splits=["test"])
    before = Path(written["test"]["annotations"]).read_bytes()
    with pytest.raises(FileExistsError, match=r"coco/test already exists and is not an empty folder"):
        export_coco(camera_dataset, out)
    assert Path(written["test"]["annotations"]).read_bytes() == before
    assert not (out / "pool").exists()  # the refusal came before anything was written
    with pytest.raises(SystemExit) as exit_info:
        main(["coco", str(out), *TINY_CAMERA_WORLD])
    assert exit_info.value.code == 2
    assert "already exists" in capsys.readouterr().err
    lidar = hydra.utils.instantiate(compose_cfg("data=synthetic_lidar").data.dataset)
    with pytest.raises(ValueError, match=r"SyntheticLidarDataset holds lidar frames; COCO export needs camera"):
        export_coco(lidar, tmp_path / "lidar")


def test_the_loop_runs_on_an_exported_coco_folder_through_data_coco(compose_cfg: Compose, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    main(["coco", str(tmp_path / "coco"), *TINY_CAMERA_WORLD])
    printed = capsys.readouterr().out
    assert "read it back with:\n  alcv data=coco model=fcos_tiny" in printed
    written = {split: {"images": str(tmp_path / "coco" / split / "images"),
                       "annotations": str(tmp_path / "coco" / split / "instances.json")}
               for split in ("pool", "val", "test")}
    overrides = coco_overrides(written, ["vehicle", "pedestrian", "golf_cart"])
    tiny_training = [override for override in TINY_2D if not override.startswith(("data=", "data.dataset.world"))]
    cfg = compose_cfg("data=coco", *overrides, *tiny_training, "logger=none", "data.num_workers=0")
    datamodule = hydra.utils.instantiate(cfg.data)
    assert datamodule.class_names == ("vehicle", "pedestrian", "golf_cart")
    records = run(cfg)
    assert [r["dataset"] for r in records] == ["coco", "coco"]
    assert [r["n_labeled_frames"] for r in records] == [10, 20]
    results = read_results(Path(cfg.output_dir))
    assert set(results[0]["ap_per_class"]) == {"vehicle", "pedestrian", "golf_cart"}
    assert set(results[0]["ap_per_threshold"]) == {f"{t:g}" for t in np.linspace(0.5, 0.95, 10).round(2)}
    selections = list(read_jsonl(Path(cfg.output_dir) / SELECTIONS_FILE))
    labeled = [index for selection in selections for index in selection["indices"]]
    assert len(labeled) == len(set(labeled)) == 20
    assert set(labeled) <= set(datamodule.pool_split().tolist())


def test_a_class_map_on_the_command_line_groups_categories(camera_dataset: SyntheticCameraDataset,
                                                          compose_cfg: Compose, tmp_path: Path) -> None:
    written = export_coco(camera_dataset, tmp_path / "coco")
    overrides = [override for override in coco_overrides(written, camera_dataset.class_names)
                 if not override.startswith("data.dataset.class_")]
    cfg = compose_cfg("data=coco", *overrides, "model=fcos_tiny", "data.dataset.class_names=[moving,walking]",
                      "data.dataset.class_map={moving: [vehicle, golf_cart], walking: [pedestrian]}")
    assert cfg.model.detector.num_classes == 2
    dataset = hydra.utils.instantiate(cfg.data.dataset)
    assert dataset.class_names == ("moving", "walking")
    for index in dataset.split_indices("pool")[:20].tolist():
        original = camera_dataset[dataset.image_id(index) - 1]["labels"]
        assert dataset.box_labels(index).tolist() == [0 if label != 1 else 1 for label in original.tolist()]


def test_the_loop_runs_on_an_exported_kitti_folder_through_data_kitti(compose_cfg: Compose, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    tiny_world = [override for override in TINY if override.startswith("data.dataset.world")]
    main(["kitti", str(tmp_path / "kitti"), *tiny_world])
    printed = capsys.readouterr().out
    assert "read it back with:\n  alcv data=kitti 'data.dataset.root=" in printed
    lidar = hydra.utils.instantiate(compose_cfg("data=synthetic_lidar", *tiny_world).data.dataset)
    overrides = kitti_overrides({"root": str(tmp_path / "kitti"),
                                 "splits": {"pool": "pool", "val": "val", "test": "test"}})
    tiny_training = [override for override in TINY if not override.startswith("data.dataset.world")]
    cfg = compose_cfg("data=kitti", *overrides, *tiny_training, "logger=none", "data.num_workers=0")
    kitti = hydra.utils.instantiate(cfg.data.dataset)
    assert kitti.class_names == lidar.class_names
    assert kitti.split_indices("test").size == lidar.split_indices("test").size
    assert sum(kitti.num_boxes(i) for i in kitti.split_indices("pool")) == \
        sum(lidar.num_boxes(i) for i in lidar.split_indices("pool"))
    records = run(cfg)
    assert [r["dataset"] for r in records] == ["kitti", "kitti"]
    assert [r["n_labeled_frames"] for r in records] == [10, 20]
    assert set(records[0]["ap_per_class"]) == {"vehicle", "pedestrian", "golf_cart"}
    with pytest.raises(SystemExit) as exit_info:
        main(["kitti", str(tmp_path / "kitti"), *tiny_world])
    assert exit_info.value.code == 2
