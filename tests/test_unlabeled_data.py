"""Pool frames without labels: the KITTI and COCO readers list them, val and test must be labeled, the writers put
finished labels into the data folders (checked first, atomically), and the exports write synthetic worlds with
unlabeled pool frames."""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from alcv.data.coco import CocoDataset
from alcv.data.export import KITTI_TYPES, export_coco, main, write_kitti
from alcv.data.kitti import KittiDataset, kitti_label_text, read_kitti_calibration
from alcv.data.lidar_dataset import SyntheticLidarDataset
from alcv.data.synthetic_camera import SyntheticCameraDataset, SyntheticCameraWorld
from alcv.data.synthetic_lidar import SyntheticLidarWorld

#: a world of a few dozen frames, generated in well under a second
WORLD = {"seed": 0, "pool_frames": 24, "val_frames": 6, "test_frames": 8, "drive_frames": (4, 8)}


def world_overrides(node: str) -> list[str]:
    """``WORLD`` as Hydra overrides of the world config at ``node``."""
    return [f"{node}.{key}={value}" for key, value in {**WORLD, "drive_frames": "[4,8]"}.items()]


def index_of(dataset: Any, name: str) -> int:
    """The absolute index of the frame named ``name``."""
    return next(index for index in range(len(dataset)) if dataset.frame_name(index) == name)


def folder_digest(root: Path) -> dict[str, str]:
    """Every file under ``root`` -> its SHA-256: equal digests, byte-identical folders (no file added either)."""
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def lidar() -> SyntheticLidarDataset:
    return SyntheticLidarDataset(SyntheticLidarWorld(**WORLD), cache_size=0)


@pytest.fixture(scope="module")
def camera() -> SyntheticCameraDataset:
    return SyntheticCameraDataset(SyntheticCameraWorld(SyntheticLidarWorld(**WORLD), width=64, height=32),
                                  cache_size=0)


def some_pool_frames(dataset: Any, count: int) -> list[int]:
    """Every other pool frame, ``count`` of them, that has boxes where possible (absolute indices of ``dataset``)."""
    pool = dataset.split_indices("pool").tolist()
    with_boxes = [index for index in pool if dataset.num_boxes(index)]
    return sorted((with_boxes[::2] + [index for index in pool if index not in with_boxes])[:count])


# ---- the synthetic worlds ----

def test_the_synthetic_worlds_have_no_unlabeled_frames_and_name_frames_by_index(
        lidar: SyntheticLidarDataset, camera: SyntheticCameraDataset) -> None:
    for dataset in (lidar, camera):
        assert dataset.unlabeled_indices().dtype == np.int64 and dataset.unlabeled_indices().size == 0
        assert dataset.frame_name(7) == "000007"
        with pytest.raises(IndexError, match="out of range"):
            dataset.frame_name(len(dataset))


# ---- KITTI ----

@pytest.fixture(scope="module")
def kitti_unlabeled(lidar: SyntheticLidarDataset) -> list[int]:
    return some_pool_frames(lidar, 6)


@pytest.fixture
def kitti_root(lidar: SyntheticLidarDataset, kitti_unlabeled: list[int], tmp_path: Path) -> dict[str, Any]:
    return write_kitti(lidar, tmp_path / "kitti", unlabeled=kitti_unlabeled)


def test_kitti_pool_frames_without_a_label_file_are_unlabeled(lidar: SyntheticLidarDataset, kitti_unlabeled: list[int],
                                                              kitti_root: dict[str, Any]) -> None:
    root = Path(kitti_root["root"])
    assert sorted(int(path.stem) for path in (root / "velodyne").glob("*.bin")) == sorted(
        np.concatenate([lidar.split_indices(split) for split in ("pool", "val", "test")]).tolist())
    assert not any((root / "label_2" / f"{index:06d}.txt").exists() for index in kitti_unlabeled)
    dataset = KittiDataset(**kitti_root)
    unlabeled = dataset.unlabeled_indices()
    assert unlabeled.dtype == np.int64 and np.all(np.diff(unlabeled) > 0)
    assert [int(dataset.frame_name(index)) for index in unlabeled] == kitti_unlabeled
    assert set(unlabeled.tolist()) <= set(dataset.split_indices("pool").tolist())
    for index in range(len(dataset)):
        assert dataset.frame_name(index) == dataset.frame_id(index) == f"{int(dataset.frame_id(index)):06d}"
        item, original = dataset[index], lidar[int(dataset.frame_name(index))]
        assert torch.equal(item["points"], original["points"])
        if index in unlabeled:
            assert item["boxes"].shape == (0, 7) and item["labels"].shape == (0,)
            assert dataset.num_boxes(index) == 0 and dataset.box_labels(index).size == 0
        else:
            assert torch.equal(item["labels"], original["labels"])
    assert sum(lidar.num_boxes(index) for index in kitti_unlabeled) > 0  # they had boxes to lose


def test_kitti_val_and_test_frames_need_labels(lidar: SyntheticLidarDataset, kitti_root: dict[str, Any],
                                               kitti_unlabeled: list[int], tmp_path: Path) -> None:
    root = Path(kitti_root["root"])
    test_frame = f"{lidar.split_indices('test')[0]:06d}"
    (root / "label_2" / f"{test_frame}.txt").unlink()
    with pytest.raises(FileNotFoundError, match=rf"ImageSets/test.txt: frame {test_frame} of the 'test' split: "
                       rf"label file .*{test_frame}.txt not found; val and test frames need labels"):
        KittiDataset(**kitti_root)
    # held-out drives carved out of a pool with unlabeled frames
    every_pool_frame_but_one = lidar.split_indices("pool")[1:].tolist()
    written = write_kitti(lidar, tmp_path / "held_out", splits=["pool"], unlabeled=every_pool_frame_but_one)
    with pytest.raises(ValueError, match=r"velodyne: \d+ frame\(s\) of the 'test' split \(carved out of the pool by "
                       r"held_out\) have no labels \(\d{6}.*\); val and test frames need labels"):
        KittiDataset(written["root"], written["class_map"], splits=None, held_out={"test": 0.5})
    # an export refuses unlabeled val or test frames before writing anything
    val_frame = int(lidar.split_indices("val")[0])
    with pytest.raises(ValueError, match=rf"write_kitti: 'unlabeled' frame\(s\) \[{val_frame}\] are not pool frames "
                       r"of the written splits; only pool frames may be unlabeled"):
        write_kitti(lidar, tmp_path / "refused", unlabeled=[val_frame, *kitti_unlabeled])
    assert not (tmp_path / "refused").exists()


def test_kitti_unlabeled_frames_have_no_eval_frame(kitti_root: dict[str, Any]) -> None:
    dataset = KittiDataset(**kitti_root, official_eval=True)
    unlabeled = int(dataset.unlabeled_indices()[0])
    with pytest.raises(ValueError, match=rf"frame {dataset.frame_name(unlabeled)} \(index {unlabeled}\) is unlabeled "
                       r"\(no .*label_2/\d+.txt\): it has no eval frame"):
        dataset.eval_frame(unlabeled)
    labeled = int(dataset.split_indices("test")[0])
    assert len(dataset.eval_frame(labeled).types) == dataset.num_boxes(labeled)


def original_label_text(lidar: SyntheticLidarDataset, root: Path, index: int) -> str:
    """The label file of synthetic frame ``index`` in the frame's own calibration (as the export writes it)."""
    item = lidar[index]
    calib = read_kitti_calibration(root / "calib" / f"{index:06d}.txt")
    return kitti_label_text(item["boxes"].numpy(), item["labels"].numpy(), calib, lidar.class_names)


def test_kitti_written_labels_read_back_and_overwrite_replaces(lidar: SyntheticLidarDataset, kitti_unlabeled: list[int],
                                                               kitti_root: dict[str, Any]) -> None:
    root = Path(kitti_root["root"])
    dataset = KittiDataset(**kitti_root)
    chosen = kitti_unlabeled[:3]
    labels = {f"{index:06d}": original_label_text(lidar, root, index) for index in reversed(chosen)}
    written = dataset.write_pool_labels(labels)
    assert written == [root / "label_2" / f"{index:06d}.txt" for index in chosen]  # in absolute-index order
    assert [path.read_text() for path in written] == [labels[f"{index:06d}"] for index in chosen]
    assert not list((root / "label_2").glob(".*"))  # no temporary file left
    reread = KittiDataset(**kitti_root)
    assert [int(reread.frame_name(index)) for index in reread.unlabeled_indices()] == kitti_unlabeled[3:]
    for index in range(len(reread)):
        if int(reread.frame_name(index)) in chosen:
            read, original = reread[index], lidar[int(reread.frame_name(index))]
            torch.testing.assert_close(read["boxes"][:, :6], original["boxes"][:, :6], atol=1e-4, rtol=0)
            yaw = (read["boxes"][:, 6] - original["boxes"][:, 6]).double()
            torch.testing.assert_close(torch.remainder(yaw + math.pi, 2 * math.pi) - math.pi,
                                       torch.zeros_like(yaw), atol=1e-4, rtol=0)
            assert torch.equal(read["labels"], original["labels"])
    # overwrite: a labeled frame labeled again (as holding nothing), and a frame labeled before
    labeled = next(int(reread.frame_name(i)) for i in reread.split_indices("pool")
                   if reread.num_boxes(i) and int(reread.frame_name(i)) not in kitti_unlabeled)
    frames = sorted([f"{labeled:06d}", f"{chosen[0]:06d}"], key=lambda frame: index_of(reread, frame))
    assert reread.write_pool_labels(dict.fromkeys(frames, ""), overwrite=True) == [
        root / "label_2" / f"{frame}.txt" for frame in frames]
    again = KittiDataset(**kitti_root)
    for frame in frames:
        assert again.num_boxes(index_of(again, frame)) == 0 and index_of(again, frame) not in again.unlabeled_indices()


def test_kitti_refused_labels_name_the_frame_and_change_nothing(lidar: SyntheticLidarDataset,
                                                                kitti_unlabeled: list[int],
                                                                kitti_root: dict[str, Any]) -> None:
    root = Path(kitti_root["root"])
    dataset = KittiDataset(**kitti_root)
    frame = f"{kitti_unlabeled[0]:06d}"
    good = original_label_text(lidar, root, kitti_unlabeled[1])
    assert good.count("\n") >= 1
    first_line = good.splitlines()[0].split()
    test_frame = f"{lidar.split_indices('test')[0]:06d}"
    labeled_frame = next(dataset.frame_name(i) for i in dataset.split_indices("pool")
                         if i not in dataset.unlabeled_indices())
    before = folder_digest(root)
    refusals = {
        rf"frame '{test_frame}' is not a pool frame of {re.escape(str(root))}": {test_frame: good},
        rf"frame 'nonesuch' is not a pool frame of {re.escape(str(root))}": {"nonesuch": good},
        rf"1 frame\(s\) already have a label file in .*label_2 \({labeled_frame}\); pass overwrite=True":
            {labeled_frame: good},
        rf"labels of frame {frame} \(for .*label_2/{frame}.txt\), line 2: 14 fields, expected 15":
            {frame: good.splitlines()[0] + "\n" + " ".join(first_line[:-1]) + "\n"},
        rf"labels of frame {frame} \(for .*\), line 1: h 'tall' is not a number":
            {frame: " ".join([*first_line[:8], "tall", *first_line[9:]])},
        rf"labels of frame {frame} \(for .*\), line 1: KITTI type 'Truck' is in no class_map entry; add it to "
        r"class_map or drop_types": {frame: " ".join(["Truck", *first_line[1:]])},
        rf"labels of frame {frame} \(for .*\), line 1: dimensions h=0 .*expected a box of positive size":
            {frame: " ".join([*first_line[:8], "0", *first_line[9:]])},
        rf"frame {frame}: the labels must be the text of a label file, got list": {frame: [good]},
    }
    for message, labels in refusals.items():
        # a good entry next to the bad one: nothing is written either
        with pytest.raises(ValueError, match=message):
            dataset.write_pool_labels({f"{kitti_unlabeled[1]:06d}": good, **labels})
        assert folder_digest(root) == before, message


# ---- COCO ----

@pytest.fixture(scope="module")
def coco_unlabeled(camera: SyntheticCameraDataset) -> list[int]:
    return some_pool_frames(camera, 6)


@pytest.fixture
def coco_splits(camera: SyntheticCameraDataset, coco_unlabeled: list[int], tmp_path: Path) -> dict[str, Any]:
    return export_coco(camera, tmp_path / "coco", unlabeled=coco_unlabeled)


def read_coco(splits: dict[str, Any], camera: SyntheticCameraDataset, **arguments: Any) -> CocoDataset:
    return CocoDataset(splits, class_names=list(camera.class_names), **arguments)


def test_coco_images_flagged_unlabeled_are_unlabeled(camera: SyntheticCameraDataset, coco_unlabeled: list[int],
                                                     coco_splits: dict[str, Any]) -> None:
    data = json.loads(Path(coco_splits["pool"]["annotations"]).read_text())
    flagged = [image["id"] - 1 for image in data["images"] if image.get("unlabeled")]
    assert flagged == coco_unlabeled and all(image["unlabeled"] is True for image in data["images"]
                                             if "unlabeled" in image)
    assert not {annotation["image_id"] - 1 for annotation in data["annotations"]} & set(coco_unlabeled)
    for split in ("val", "test"):
        assert "unlabeled" not in Path(coco_splits[split]["annotations"]).read_text()
    dataset = read_coco(coco_splits, camera)
    unlabeled = dataset.unlabeled_indices()
    assert unlabeled.dtype == np.int64 and [dataset.image_id(i) - 1 for i in unlabeled] == coco_unlabeled
    for index in range(len(dataset)):
        assert dataset.frame_name(index) == Path(dataset.image_path(index)).name == f"{dataset.image_id(index):06d}.png"
        item, original = dataset[index], camera[dataset.image_id(index) - 1]
        if index in unlabeled:
            assert item["boxes"].shape == (0, 4) and item["labels"].shape == (0,) and dataset.num_boxes(index) == 0
        else:
            assert torch.equal(item["labels"], original["labels"])
    assert sum(camera.num_boxes(index) for index in coco_unlabeled) > 0


def rewrite_json(path: Path, change: Any) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_coco_unlabeled_images_only_in_the_pool_and_without_annotations(camera: SyntheticCameraDataset,
                                                                        coco_splits: dict[str, Any]) -> None:
    test_file = Path(coco_splits["test"]["annotations"])

    def flag_seven(data: dict[str, Any]) -> None:
        flagged = {image["id"] for image in data["images"][:7]}
        for image in data["images"][:7]:
            image["unlabeled"] = True
        data["annotations"] = [annotation for annotation in data["annotations"]
                               if annotation["image_id"] not in flagged]

    rewrite_json(test_file, flag_seven)
    names = ", ".join(f"{camera.split_indices('test')[i] + 1:06d}.png" for i in range(5))
    with pytest.raises(ValueError, match=rf"test/instances.json: 7 frame\(s\) of the 'test' split have no labels "
                       rf"\({names}, ...\); val and test frames need labels"):
        read_coco(coco_splits, camera)
    rewrite_json(test_file, lambda data: [image.pop("unlabeled") for image in data["images"][:7]])
    pool_file = Path(coco_splits["pool"]["annotations"])
    first = json.loads(pool_file.read_text())["annotations"][0]
    rewrite_json(pool_file, lambda data: data["images"][[image["id"] for image in data["images"]].index(
        first["image_id"])].update(unlabeled=True))
    with pytest.raises(ValueError, match=rf"pool/instances.json: image id {first['image_id']} is flagged "
                       rf"\"unlabeled\": true but has annotations \(the first: annotation id {first['id']}\)"):
        read_coco(coco_splits, camera)
    rewrite_json(pool_file, lambda data: [image.update(unlabeled="yes") for image in data["images"]
                                          if image["id"] == first["image_id"]])
    with pytest.raises(ValueError, match=rf"image id {first['image_id']}: 'unlabeled' must be true or false, got "
                       r"'yes'"):
        read_coco(coco_splits, camera)


def test_coco_written_labels_read_back_exactly_and_keep_the_rest_of_the_file(
        camera: SyntheticCameraDataset, coco_unlabeled: list[int], coco_splits: dict[str, Any]) -> None:
    pool_file = Path(coco_splits["pool"]["annotations"])
    before = json.loads(pool_file.read_text())
    dataset = read_coco(coco_splits, camera)
    chosen = [f"{index + 1:06d}.png" for index in coco_unlabeled[:3]]
    boxes = {chosen[0]: (np.array([[0.0, 0.0, 64.0, 32.0], [10.5, 3.25, 20.0, 30.0]]), ["golf_cart", "vehicle"]),
             chosen[1]: (np.zeros((0, 4)), []),  # holds nothing to detect
             chosen[2]: (np.array([[-1e-7, 1.0, 5.0, 32.0000001]]), ["pedestrian"])}  # on the edges, clipped
    assert dataset.write_pool_labels(boxes) == 3
    after = json.loads(pool_file.read_text())
    assert list(after) == list(before) and after["categories"] == before["categories"]
    ids = {name: next(image["id"] for image in before["images"] if image["file_name"] == name) for name in chosen}
    assert [{key: value for key, value in image.items()} for image in after["images"]] == \
        [{key: value for key, value in image.items() if not (key == "unlabeled" and image["id"] in ids.values())}
         for image in before["images"]]  # records and key order kept, the flag removed
    assert after["annotations"][:len(before["annotations"])] == before["annotations"]
    first_id = max(annotation["id"] for annotation in before["annotations"]) + 1
    assert after["annotations"][len(before["annotations"]):] == [
        {"id": first_id, "image_id": ids[chosen[0]], "category_id": 3, "bbox": [0.0, 0.0, 64.0, 32.0],
         "area": 2048.0, "iscrowd": 0},
        {"id": first_id + 1, "image_id": ids[chosen[0]], "category_id": 1, "bbox": [10.5, 3.25, 9.5, 26.75],
         "area": 9.5 * 26.75, "iscrowd": 0},
        {"id": first_id + 2, "image_id": ids[chosen[2]], "category_id": 2, "bbox": [0.0, 1.0, 5.0, 31.0],
         "area": 155.0, "iscrowd": 0}]
    reread = read_coco(coco_splits, camera)
    assert [reread.image_id(i) - 1 for i in reread.unlabeled_indices()] == coco_unlabeled[3:]
    by_name = {reread.frame_name(index): index for index in range(len(reread))}
    expected = {chosen[0]: ([[0, 0, 64, 32], [10.5, 3.25, 20, 30]], [2, 0]), chosen[1]: ([], []),
                chosen[2]: ([[0, 1, 5, 32]], [1])}
    for name, (xyxy, labels) in expected.items():
        item = reread[by_name[name]]
        assert item["boxes"].as_subclass(torch.Tensor).tolist() == xyxy and item["labels"].tolist() == labels
    # overwrite replaces an image's annotations (of a labeled image too), leaving the others
    labeled = next(reread.frame_name(i) for i in reread.split_indices("pool")
                   if reread.num_boxes(i) and reread.image_id(i) - 1 not in coco_unlabeled)
    assert reread.write_pool_labels({chosen[0]: (np.array([[1.0, 1.0, 9.0, 9.0]]), ["vehicle"]),
                                     labeled: (np.zeros((0, 4)), [])}, overwrite=True) == 1
    again = read_coco(coco_splits, camera)
    by_name = {again.frame_name(index): index for index in range(len(again))}
    assert again[by_name[chosen[0]]]["boxes"].as_subclass(torch.Tensor).tolist() == [[1, 1, 9, 9]]
    assert again.num_boxes(by_name[labeled]) == 0 and by_name[labeled] not in again.unlabeled_indices()
    assert again.num_boxes(by_name[chosen[2]]) == 1
    final = json.loads(pool_file.read_text())
    assert [annotation["id"] for annotation in final["annotations"]][-1] == first_id + 3


def test_coco_refused_labels_name_the_image_and_leave_the_file_byte_identical(
        camera: SyntheticCameraDataset, coco_unlabeled: list[int], coco_splits: dict[str, Any]) -> None:
    dataset = read_coco(coco_splits, camera)
    root = Path(coco_splits["pool"]["annotations"]).parents[1]
    name = f"{coco_unlabeled[0] + 1:06d}.png"
    good = {f"{coco_unlabeled[1] + 1:06d}.png": (np.array([[1.0, 1.0, 9.0, 9.0]]), ["vehicle"])}
    test_name = f"{camera.split_indices('test')[0] + 1:06d}.png"
    labeled = next(dataset.frame_name(i) for i in dataset.split_indices("pool") if i not in dataset.unlabeled_indices())
    one_box = np.array([[1.0, 1.0, 9.0, 9.0]])
    before = folder_digest(root)
    refusals = {
        rf"image '{test_name}' is not a pool image of the dataset": {test_name: (one_box, ["vehicle"])},
        rf"image '{name}': class\(es\) \['truck'\] are not classes of the dataset": {name: (one_box, ["truck"])},
        rf"image '{name}': box 0 \[-0.5, 1, 9, 9\] crosses the image's left edge x = 0 \(the image is 64 x 32":
            {name: (np.array([[-0.5, 1.0, 9.0, 9.0]]), ["vehicle"])},
        rf"image '{name}': box 1 \[1, 1, 9, 32.1\] crosses the image's bottom edge y = 32":
            {name: (np.array([[1.0, 1.0, 9.0, 9.0], [1.0, 1.0, 9.0, 32.1]]), ["vehicle", "vehicle"])},
        rf"image '{name}': box 0 \[1, 1, 64.01, 9\] crosses the image's right edge x = 64":
            {name: (np.array([[1.0, 1.0, 64.01, 9.0]]), ["vehicle"])},
        rf"image '{name}': box 0 \[5, 1, 5, 9\] is 0 x 8 pixels; expected x1 < x2, y1 < y2":
            {name: (np.array([[5.0, 1.0, 5.0, 9.0]]), ["vehicle"])},
        rf"image '{name}': box 0 \[5, 9, 9, 1\] is 4 x -8 pixels":
            {name: (np.array([[5.0, 9.0, 9.0, 1.0]]), ["vehicle"])},
        rf"image '{name}': expected a list of 1 class names, one a box": {name: (one_box, [])},
        rf"image '{name}': boxes must be \(M, 4\) finite XYXY pixels, got shape \(3,\)":
            {name: (np.array([1.0, 2.0, 3.0]), ["vehicle"])},
        rf"1 image\(s\) are labeled already \(not flagged \"unlabeled\": true, or with annotations\): {labeled}; "
        r"pass overwrite=True": {labeled: (one_box, ["vehicle"])},
    }
    for message, labels in refusals.items():
        with pytest.raises(ValueError, match=message):
            dataset.write_pool_labels({**good, **labels})
        assert folder_digest(root) == before, message
    small = read_coco(coco_splits, camera, min_box_size=2.0)
    with pytest.raises(ValueError, match=r"is 1.5 x 8 pixels; .*at least min_box_size=2 pixels each way"):
        small.write_pool_labels({name: (np.array([[1.0, 1.0, 2.5, 9.0]]), ["vehicle"])})
    assert folder_digest(root) == before


# ---- the command line ----

def test_labeled_pool_keeps_the_labels_of_n_random_pool_frames(lidar: SyntheticLidarDataset, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    pool = lidar.split_indices("pool")
    labeled = sorted(np.random.default_rng(3).choice(pool, size=5, replace=False).tolist())
    main(["kitti", str(tmp_path / "kitti"), "--labeled-pool", "5", *world_overrides("data.dataset.world"),
          "--labeled-seed", "3"])
    printed = capsys.readouterr().out
    assert f"pool: {pool.size} frames ({pool.size - 5} unlabeled: written without labels)" in printed
    label_files = {int(path.stem) for path in (tmp_path / "kitti" / "label_2").glob("*.txt")}
    held = {int(i) for split in ("val", "test") for i in lidar.split_indices(split)}
    assert label_files == set(labeled) | held
    read_back = KittiDataset(tmp_path / "kitti", {name: [kitti_type] for name, kitti_type in KITTI_TYPES.items()},
                             splits={"pool": "pool", "val": "val", "test": "test"})
    assert [int(read_back.frame_name(i)) for i in read_back.split_indices("pool")
            if i not in read_back.unlabeled_indices()] == labeled

    main(["coco", str(tmp_path / "coco"), "--labeled-pool", "4", *world_overrides("data.dataset.world.lidar_world")])
    assert f"pool: {pool.size} frames ({pool.size - 4} unlabeled: written without labels)" in capsys.readouterr().out
    images = json.loads((tmp_path / "coco" / "pool" / "instances.json").read_text())["images"]
    kept = sorted(np.random.default_rng(0).choice(pool, size=4, replace=False).tolist())
    assert [image["id"] - 1 for image in images if not image.get("unlabeled")] == kept
    assert sum(image.get("unlabeled", False) for image in images) == pool.size - 4


@pytest.mark.parametrize("count", ["0", "1000"])
def test_labeled_pool_out_of_range_is_refused_before_writing(count: str, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["kitti", str(tmp_path / "kitti"), *world_overrides("data.dataset.world"), "--labeled-pool", count])
    assert exit_info.value.code == 2
    assert re.search(rf"--labeled-pool {count}: expected a number of pool frames in \[1, \d+\]",
                     capsys.readouterr().err)
    assert not (tmp_path / "kitti").exists()


def test_labeled_pool_is_for_coco_and_kitti_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["nuscenes", str(tmp_path / "nuscenes"), "--labeled-pool", "3"])
    assert exit_info.value.code == 2
    assert "--labeled-pool is for coco and kitti exports, not nuscenes" in capsys.readouterr().err
