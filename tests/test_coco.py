"""CocoDataset: absolute indices over COCO splits, the annotation rules, bad input, lazy decoding, collation."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from alcv.data import coco
from alcv.data.coco import CocoDataset
from alcv.data.collate import collate_images

CATEGORIES = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 6, "name": "bus"},
              {"id": 8, "name": "truck"}, {"id": 18, "name": "dog"}]
CLASS_MAP = {"vehicle": ["car", "truck", "bus"], "pedestrian": ["person"]}
VEHICLE, PEDESTRIAN = 0, 1


def image(image_id: int, width: int = 40, height: int = 30, **extra: Any) -> dict[str, Any]:
    return {"id": image_id, "file_name": f"{image_id:06d}.png", "width": width, "height": height, **extra}


def ann(ann_id: int, image_id: int, category_id: int, bbox: Any, **extra: Any) -> dict[str, Any]:
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": bbox, "iscrowd": 0, **extra}


def pixels(image_id: int, width: int, height: int) -> np.ndarray:
    """The ``(H, W, 3)`` uint8 content of image ``image_id``: smooth ramps (JPEG keeps them) tinted by the id."""
    rows, columns = np.mgrid[0:height, 0:width]
    return np.stack([40 + columns * 150 // width, 40 + rows * 150 // height,
                     np.full_like(rows, 20 + image_id * 37 % 200)], axis=-1).astype(np.uint8)


def write_split(folder: Path, data: dict[str, Any], mode: str = "RGB") -> dict[str, str]:
    """Write ``data`` (a COCO dict) as ``folder/instances.json`` and each of its well-formed images (not those
    named ``absent*``), in PIL ``mode``, under ``folder/images``; returns the split entry."""
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    for record in data.get("images", []):
        if (isinstance(record, dict) and isinstance(record.get("id"), int) and record.get("width", 0) > 0
                and record.get("height", 0) > 0 and not record.get("file_name", "absent").startswith("absent")):
            array = pixels(record["id"], record["width"], record["height"])
            Image.fromarray(array, "RGB").convert(mode).save(images / record["file_name"])
    (folder / "instances.json").write_text(json.dumps(data))
    return {"images": str(images), "annotations": str(folder / "instances.json")}


def standard_data() -> dict[str, dict[str, Any]]:
    """Three splits whose images are listed out of id order, with image ids repeated across splits."""
    pool = {
        "images": [image(7, timestamp=3.25), image(2, 50, 20, video_id=1, frame_index=20),
                   image(5, video_id=1, frame_index=21)],
        "annotations": [
            ann(100, 2, 3, [10, 5, 20, 10]),            # car -> vehicle, [10, 5, 30, 15]
            ann(101, 2, 1, [0.5, 1.5, 4, 8]),            # person -> pedestrian
            ann(102, 7, 18, [1, 1, 10, 10]),            # dog: unmapped, dropped
            ann(103, 7, 1, [0, 0, 20, 20], iscrowd=1),  # crowd, dropped
            ann(104, 7, 8, [30, 20, 25, 25]),           # truck, clipped to [30, 20, 40, 30]
        ],
        "categories": CATEGORIES,
    }
    val = {"images": [image(1, sequence_id="seq-a", frame_id=5)], "annotations": [ann(200, 1, 6, [2, 2, 6, 6])],
           "categories": CATEGORIES}
    test = {"images": [image(3), image(2, video_id=1)],
            "annotations": [ann(300, 2, 1, [1, 1, 3, 3]), ann(301, 3, 3, [5, 5, 5, 5])], "categories": CATEGORIES}
    return {"pool": pool, "val": val, "test": test}


def write_splits(root: Path, data: dict[str, dict[str, Any]]) -> dict[str, dict[str, str]]:
    return {split: write_split(root / split, content) for split, content in data.items()}


@pytest.fixture
def splits(tmp_path: Path) -> dict[str, dict[str, str]]:
    return write_splits(tmp_path, standard_data())


@pytest.fixture
def dataset(splits: dict[str, dict[str, str]]) -> CocoDataset:
    return CocoDataset(splits, CLASS_MAP)


def test_absolute_indices_pool_then_val_then_test_each_by_ascending_image_id(dataset: CocoDataset) -> None:
    assert len(dataset) == 6
    assert dataset.class_names == ("vehicle", "pedestrian")
    for split, expected in [("pool", [0, 1, 2]), ("val", [3]), ("test", [4, 5])]:
        indices = dataset.split_indices(split)
        assert indices.dtype == np.int64 and indices.tolist() == expected
    assert [dataset.image_id(i) for i in range(len(dataset))] == [2, 5, 7, 1, 2, 3]
    assert [dataset[i]["index"] for i in range(len(dataset))] == list(range(6))
    with pytest.raises(ValueError, match="unknown split 'train'"):
        dataset.split_indices("train")
    with pytest.raises(IndexError):
        dataset[6]
    with pytest.raises(IndexError):
        dataset[-1]


def test_item_contract_types_shapes_and_xyxy_pixel_boxes(dataset: CocoDataset) -> None:
    item = dataset[0]  # pool image id 2, 50 x 20 pixels
    assert set(item) == {"index", "image", "boxes", "labels", "drive_id", "timestamp"}
    assert isinstance(item["index"], int) and item["index"] == 0
    assert isinstance(item["image"], tv_tensors.Image)
    assert item["image"].dtype == torch.uint8 and item["image"].shape == (3, 20, 50)
    assert np.array_equal(item["image"].permute(1, 2, 0).numpy(), pixels(2, 50, 20))  # PNG is lossless
    boxes = item["boxes"]
    assert isinstance(boxes, tv_tensors.BoundingBoxes)
    assert boxes.dtype == torch.float32 and boxes.format == tv_tensors.BoundingBoxFormat.XYXY
    assert tuple(boxes.canvas_size) == (20, 50)
    torch.testing.assert_close(boxes.as_subclass(torch.Tensor), torch.tensor([[10.0, 5.0, 30.0, 15.0],
                                                                              [0.5, 1.5, 4.5, 9.5]]))
    assert item["labels"].dtype == torch.int64 and item["labels"].tolist() == [VEHICLE, PEDESTRIAN]
    assert isinstance(item["drive_id"], int) and isinstance(item["timestamp"], float)


def test_crowd_unmapped_dropped_boxes_clipped_and_empty_images_kept(dataset: CocoDataset) -> None:
    # image 7: a dog (unmapped), a crowd of persons and a truck half outside the 40 x 30 image
    item = dataset[2]
    assert item["labels"].tolist() == [VEHICLE]
    torch.testing.assert_close(item["boxes"].as_subclass(torch.Tensor), torch.tensor([[30.0, 20.0, 40.0, 30.0]]))
    # image 5 has no annotation at all and is kept, with zero boxes
    empty = dataset[1]
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,)
    assert empty["image"].shape == (3, 30, 40)
    assert [dataset.num_boxes(i) for i in range(len(dataset))] == [2, 0, 1, 1, 1, 1]


def test_num_boxes_and_box_labels_use_annotations_without_decoding(splits: dict[str, dict[str, str]],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path: Path) -> torch.Tensor:
        raise AssertionError(f"decoded {path}")

    monkeypatch.setattr(coco, "_read_image", refuse)
    dataset = CocoDataset(splits, CLASS_MAP)  # construction decodes nothing either
    assert dataset.num_boxes(0) == 2
    labels = dataset.box_labels(0)
    assert labels.dtype == np.int64 and labels.tolist() == [VEHICLE, PEDESTRIAN]
    labels[:] = 7  # a copy: the dataset's labels do not change
    assert dataset.box_labels(0).tolist() == [VEHICLE, PEDESTRIAN]
    assert dataset.box_labels(1).shape == (0,)


def test_class_map_by_category_names_and_ids_in_its_order(splits: dict[str, dict[str, str]]) -> None:
    dataset = CocoDataset(splits, {"pedestrian": [1], "dog": "dog", "vehicle": ["car", 8, "bus"]})
    assert dataset.class_names == ("pedestrian", "dog", "vehicle")
    assert dataset.box_labels(0).tolist() == [2, 0]  # car, person
    assert dataset.box_labels(2).tolist() == [1, 2]  # dog, truck (crowd still dropped)
    only_people = CocoDataset(splits, {"pedestrian": ["person"]})
    assert [only_people.num_boxes(i) for i in range(len(only_people))] == [1, 0, 0, 0, 1, 0]


@pytest.mark.parametrize(("class_map", "message"), [
    ({"vehicle": ["car", "tram"]}, r"test/instances\.json.*category name 'tram'"),
    ({"vehicle": [3, 99]}, "category id 99"),
    ({"vehicle": ["car"], "other": ["car"]}, "'car' is mapped to both 'vehicle' and 'other'"),
    ({"vehicle": ["car"], "other": [3]}, "mapped to two classes"),
    ({"vehicle": ["car", "bus", "car"]}, r"'car' is listed twice in class_map\['vehicle'\]"),
    ({}, "non-empty mapping"),
    ({"vehicle": []}, "non-empty list"),
    ({"vehicle": [3.5]}, "neither a category name"),
])
def test_bad_class_map_is_an_error(tmp_path: Path, class_map: dict[str, Any], message: str) -> None:
    data = standard_data()
    for split in ("pool", "val"):  # only the test file lacks 'tram'
        data[split]["categories"] = [*CATEGORIES, {"id": 40, "name": "tram"}]
    with pytest.raises(ValueError, match=message):
        CocoDataset(write_splits(tmp_path, data), class_map)


def test_degenerate_boxes_dropped_with_one_warning_per_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = standard_data()
    data["pool"]["annotations"] += [
        ann(110, 5, 3, [3, 3, 0.5, 10]),   # too narrow
        ann(111, 5, 3, [3, 3, 10, 0]),     # zero height
        ann(112, 5, 3, [39.5, 3, 10, 10]),  # 0.5 pixel wide once clipped
        ann(113, 5, 3, [-20, 3, 10, 10]),  # entirely outside the image
        ann(114, 5, 3, [3, 3, 1, 1]),      # exactly min_box_size: kept
    ]
    with caplog.at_level(logging.WARNING, logger="alcv.data.coco"):
        dataset = CocoDataset(write_splits(tmp_path, data), CLASS_MAP)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "pool/instances.json" in warnings[0].getMessage() and "dropped 4 degenerate" in warnings[0].getMessage()
    assert dataset.num_boxes(1) == 1
    torch.testing.assert_close(dataset[1]["boxes"].as_subclass(torch.Tensor), torch.tensor([[3.0, 3.0, 4.0, 4.0]]))
    # a larger min_box_size drops more; 0 keeps everything but empty boxes
    assert CocoDataset(write_splits(tmp_path, data), CLASS_MAP, min_box_size=5.0).num_boxes(0) == 1
    assert CocoDataset(write_splits(tmp_path, data), CLASS_MAP, min_box_size=0.0).num_boxes(1) == 3


def test_drive_ids_from_video_or_sequence_else_image_and_distinct_across_splits(dataset: CocoDataset) -> None:
    drives = [dataset[i]["drive_id"] for i in range(len(dataset))]
    # pool: images 2 and 5 share video 1, image 7 is its own drive; val: sequence 'seq-a'; test: video 1 again
    # (another split, another drive) and image 3 on its own, although id 3 is not a video id of the test split
    assert drives == [0, 0, 1, 2, 3, 4]


def test_drive_of_an_image_never_collides_with_a_video_of_the_same_number(tmp_path: Path) -> None:
    data = standard_data()
    data["pool"]["images"] = [image(1), image(2, video_id=1), image(3, video_id=1)]
    data["pool"]["annotations"] = []
    dataset = CocoDataset(write_splits(tmp_path, data), CLASS_MAP)
    assert [dataset[i]["drive_id"] for i in dataset.split_indices("pool")] == [0, 1, 1]


def test_timestamps_from_timestamp_then_frame_number_over_fps_else_zero(splits: dict[str, dict[str, str]]) -> None:
    dataset = CocoDataset(splits, CLASS_MAP)
    assert [dataset[i]["timestamp"] for i in range(len(dataset))] == [2.0, 2.1, 3.25, 0.5, 0.0, 0.0]
    slow = CocoDataset(splits, CLASS_MAP, fps=2.0)
    assert [slow[i]["timestamp"] for i in range(len(slow))] == [10.0, 10.5, 3.25, 2.5, 0.0, 0.0]
    for fps in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="'fps'"):
            CocoDataset(splits, CLASS_MAP, fps=fps)


def test_val_split_is_optional(tmp_path: Path) -> None:
    data = standard_data()
    del data["val"]
    dataset = CocoDataset(write_splits(tmp_path, data), CLASS_MAP)
    assert dataset.split_indices("val").dtype == np.int64 and dataset.split_indices("val").size == 0
    assert dataset.split_indices("test").tolist() == [3, 4]


@pytest.mark.parametrize(("mode", "suffix"), [("L", ".png"), ("RGBA", ".png"), ("P", ".png"), ("LA", ".png"),
                                              ("RGB", ".jpg"), ("L", ".jpg"), ("CMYK", ".jpg"),
                                              ("RGB", ".bmp")])
def test_images_of_any_mode_are_read_as_rgb_uint8(tmp_path: Path, mode: str, suffix: str) -> None:
    data = standard_data()
    for split in data.values():
        for record in split["images"]:
            record["file_name"] = record["file_name"].replace(".png", suffix)
    splits = {split: write_split(tmp_path / split, content, mode) for split, content in data.items()}
    item = CocoDataset(splits, CLASS_MAP)[0]
    assert item["image"].dtype == torch.uint8 and item["image"].shape == (3, 20, 50)
    expected = np.asarray(Image.fromarray(pixels(2, 50, 20)).convert(mode).convert("RGB"), dtype=np.int16)
    tolerance = 3 if suffix == ".jpg" else 0
    assert np.abs(item["image"].permute(1, 2, 0).numpy().astype(np.int16) - expected).mean() <= tolerance


def test_sixteen_bit_grayscale_keeps_its_top_eight_bits(splits: dict[str, dict[str, str]]) -> None:
    gray = pixels(5, 40, 30)[..., 0]
    Image.fromarray(gray.astype(np.uint16) * 257).save(Path(splits["pool"]["images"]) / "000005.png")
    item = CocoDataset(splits, CLASS_MAP)[1]
    assert item["image"].dtype == torch.uint8
    assert np.array_equal(item["image"].numpy(), np.broadcast_to(gray, (3, 30, 40)))


def test_lru_cache_decodes_each_image_once_and_evicts_the_oldest(splits: dict[str, dict[str, str]],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    decoded: list[str] = []
    read = coco._read_image

    def counting(path: Path) -> torch.Tensor:
        decoded.append(Path(path).name)
        return read(path)

    monkeypatch.setattr(coco, "_read_image", counting)
    dataset = CocoDataset(splits, CLASS_MAP, cache_size=2)
    first = dataset[0]
    first["image"][:] = 0  # writing into an item does not reach the cache
    assert dataset[0]["image"].any()
    dataset[1]
    dataset[0]
    assert len(decoded) == 2
    dataset[2]  # evicts image 1, the least recently used
    dataset[0]
    dataset[1]
    assert decoded == ["000002.png", "000005.png", "000007.png", "000005.png"]
    uncached = CocoDataset(splits, CLASS_MAP)
    decoded.clear()
    uncached[0]
    uncached[0]
    assert len(decoded) == 2


def test_image_whose_size_differs_from_its_record_is_an_error_when_the_dataset_is_built(tmp_path: Path) -> None:
    """Every image's header is read when the dataset is built, so a wrong record fails before any training."""
    splits = write_splits(tmp_path, standard_data())
    Image.new("RGB", (41, 30)).save(Path(splits["pool"]["images"]) / "000005.png")
    with pytest.raises(ValueError, match=r"pool/instances\.json: image id 5: image file .*000005\.png is 41 x 30 "
                                         r"pixels but its record says width 40, height 30"):
        CocoDataset(splits, CLASS_MAP)


def test_undecodable_image_is_an_error_naming_the_file_when_the_dataset_is_built(tmp_path: Path) -> None:
    splits = write_splits(tmp_path, standard_data())
    (Path(splits["pool"]["images"]) / "000005.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"pool/instances\.json: image id 5: image file .*000005\.png cannot be "
                                         r"decoded"):
        CocoDataset(splits, CLASS_MAP)


def test_an_image_changed_after_the_dataset_was_built_is_an_error_naming_it_when_read(tmp_path: Path) -> None:
    splits = write_splits(tmp_path, standard_data())
    dataset = CocoDataset(splits, CLASS_MAP)
    Image.new("RGB", (41, 30)).save(Path(splits["pool"]["images"]) / "000005.png")
    with pytest.raises(ValueError, match=r"000005\.png: image id 5 decodes to 41x30 pixels but its record says "
                                         r"width=40, height=30"):
        dataset[1]
    (Path(splits["pool"]["images"]) / "000005.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"000005\.png: cannot decode"):
        dataset[1]


Mutation = Callable[[dict[str, Any]], Any]
#: (mutation of the pool's COCO dict, expected exception, pattern the message must match)
BAD_POOL: dict[str, tuple[Mutation, type[Exception], str]] = {
    "annotation of an unknown image": (lambda d: d["annotations"].append(ann(120, 99, 3, [0, 0, 5, 5])),
                                       ValueError, r"pool/instances\.json: annotation id 120: image_id 99 is not "
                                                   r"in 'images'"),
    "annotation of an unknown category": (lambda d: d["annotations"].append(ann(121, 2, 4, [0, 0, 5, 5])),
                                          ValueError, r"annotation id 121 \(image id 2\): category_id 4 is not in "
                                                      r"'categories'"),
    "negative width": (lambda d: d["annotations"].append(ann(122, 2, 3, [10, 10, -2, 5])),
                       ValueError, r"annotation id 122 \(image id 2\).*negative width or height"),
    "negative height": (lambda d: d["annotations"].append(ann(123, 2, 3, [10, 10, 2, -5])),
                        ValueError, r"annotation id 123 .*negative width or height"),
    "crowd box with a negative size": (lambda d: d["annotations"].append(ann(124, 2, 1, [1, 1, -1, 1], iscrowd=1)),
                                       ValueError, "annotation id 124 .*negative"),
    "bbox of 3 numbers": (lambda d: d["annotations"].append(ann(125, 2, 3, [1, 2, 3])),
                          ValueError, r"annotation id 125 .*'bbox' must be 4 finite numbers"),
    "bbox of 5 numbers": (lambda d: d["annotations"].append(ann(126, 2, 3, [1, 2, 3, 4, 5])),
                          ValueError, "annotation id 126 .*4 finite numbers"),
    "bbox with a string": (lambda d: d["annotations"].append(ann(127, 2, 3, [1, 2, "3", 4])),
                           ValueError, "annotation id 127 .*4 finite numbers"),
    "bbox not a list": (lambda d: d["annotations"].append(ann(128, 2, 3, "1 2 3 4")),
                        ValueError, "annotation id 128 .*4 finite numbers"),
    "bbox with NaN": (lambda d: d["annotations"].append(ann(129, 2, 3, [1, 2, float("nan"), 4])),
                      ValueError, "annotation id 129 .*4 finite numbers"),
    "bbox missing": (lambda d: d["annotations"].append({"id": 130, "image_id": 2, "category_id": 3}),
                     ValueError, "annotation id 130 .*4 finite numbers"),
    "annotation without id": (lambda d: d["annotations"].append({"image_id": 2, "category_id": 3, "bbox": [1]}),
                              ValueError, r"annotations\[5\] \(image id 2\)"),
    "duplicate image id": (lambda d: d["images"].append(image(5)), ValueError,
                           r"pool/instances\.json: duplicate image id 5"),
    "missing image file": (lambda d: d["images"].append(image(40, file_name="absent.png")), FileNotFoundError,
                           r"pool/instances\.json: image id 40: image file .*absent\.png not found"),
    "image record without id": (lambda d: d["images"][0].pop("id"), ValueError,
                                r"images\[0\] \(id=None\) lacks \['id'\]: not a COCO image record"),
    "image record without file_name": (lambda d: d["images"][1].pop("file_name"), ValueError,
                                       r"images\[1\] \(id=2\) lacks \['file_name'\]"),
    "image record without width": (lambda d: d["images"][1].pop("width"), ValueError, r"lacks \['width'\]"),
    "image record without height": (lambda d: d["images"][1].pop("height"), ValueError, r"lacks \['height'\]"),
    "image id not an int": (lambda d: d["images"][1].update(id="2"), ValueError, "image id '2' is not an int"),
    "zero width": (lambda d: d["images"][1].update(width=0), ValueError, "image id 2: width and height"),
    "no images key": (lambda d: d.pop("images"), ValueError, r"not a COCO instances file: it lacks 'images'"),
    "no annotations key": (lambda d: d.pop("annotations"), ValueError, "it lacks 'annotations'"),
    "no categories key": (lambda d: d.pop("categories"), ValueError, "it lacks 'categories'"),
    "images not a list": (lambda d: d.update(images={}), ValueError, "has a non-list 'images'"),
    "duplicate category id": (lambda d: d["categories"].append({"id": 3, "name": "auto"}), ValueError,
                              "duplicate category id 3"),
    "bad timestamp": (lambda d: d["images"][0].update(timestamp="noon"), ValueError,
                      "image id 7: 'timestamp' must be a finite number"),
    "bad video id": (lambda d: d["images"][0].update(video_id=[1]), ValueError,
                     "image id 7: 'video_id' must be an int or a string"),
}


@pytest.mark.parametrize("case", list(BAD_POOL))
def test_bad_pool_file_is_an_error_naming_file_id_and_problem(tmp_path: Path, case: str) -> None:
    mutate, error, message = BAD_POOL[case]
    data = copy.deepcopy(standard_data())
    mutate(data["pool"])
    with pytest.raises(error, match=message):
        CocoDataset(write_splits(tmp_path, data), CLASS_MAP)


def test_a_bad_test_file_fails_construction_although_the_pool_is_fine(tmp_path: Path) -> None:
    data = standard_data()
    data["test"]["annotations"].append(ann(310, 3, 3, [0, 0, -1, 1]))
    with pytest.raises(ValueError, match=r"test/instances\.json: annotation id 310"):
        CocoDataset(write_splits(tmp_path, data), CLASS_MAP)


def test_invalid_json_names_the_file_and_line(splits: dict[str, dict[str, str]]) -> None:
    Path(splits["val"]["annotations"]).write_text('{\n  "images": [],\n  "annotations": [,],\n  "categories": []\n}')
    with pytest.raises(ValueError, match=r"val/instances\.json: invalid JSON at line 3"):
        CocoDataset(splits, CLASS_MAP)


def test_json_that_is_not_an_object_is_not_coco(splits: dict[str, dict[str, str]]) -> None:
    Path(splits["pool"]["annotations"]).write_text("[]")
    with pytest.raises(ValueError, match=r"pool/instances\.json: not a COCO instances file: expected a JSON object"):
        CocoDataset(splits, CLASS_MAP)


@pytest.mark.parametrize(("split", "message"), [("pool", r"'splits' lacks the 'pool' split"),
                                                ("test", r"no 'test' split: give splits\.test = \{images, "
                                                         r"annotations\} or a held_out\.test fraction")])
def test_missing_pool_or_test_split_is_an_error(splits: dict[str, dict[str, str]], split: str, message: str
                                                ) -> None:
    del splits[split]
    with pytest.raises(ValueError, match=message):
        CocoDataset(splits, CLASS_MAP)


def test_class_names_set_the_label_order_and_default_to_same_named_categories(
        splits: dict[str, dict[str, str]]) -> None:
    by_name = CocoDataset(splits, class_names=["dog", "person"])
    assert by_name.class_names == ("dog", "person")
    assert by_name.box_labels(0).tolist() == [1]  # image 2: its person is label 1, its car is not a class
    mixed = CocoDataset(splits, {"vehicle": ["car", "truck", "bus"]}, class_names=["person", "vehicle"])
    assert mixed.class_names == ("person", "vehicle")
    assert mixed.box_labels(0).tolist() == [1, 0]
    with pytest.raises(ValueError, match=r"class_map names class\(es\) \['cat'\] that are not in class_names"):
        CocoDataset(splits, {"cat": ["dog"]}, class_names=["person"])
    with pytest.raises(ValueError, match=r"class_map names category name 'vehicle', which is not in the file"):
        CocoDataset(splits, class_names=["vehicle"])
    for bad in ("person", [], ["person", "person"], ["person", 3]):
        with pytest.raises(ValueError, match=r"'class_names' must be a non-empty list of distinct strings"):
            CocoDataset(splits, class_names=bad)
    with pytest.raises(ValueError, match=r"give 'class_names', 'class_map' or both"):
        CocoDataset(splits)


def drive_data(drives: int, frames: int) -> dict[str, Any]:
    """One annotation file of ``drives`` videos of ``frames`` images each, one person per image."""
    images = [image(d * frames + f + 1, video_id=d, frame_index=f) for d in range(drives) for f in range(frames)]
    annotations = [ann(record["id"], record["id"], 1, [1, 1, 5, 5]) for record in images]
    return {"images": images, "annotations": annotations, "categories": CATEGORIES}


def test_held_out_moves_whole_drives_by_seed_into_test_and_val(tmp_path: Path) -> None:
    pool = {"pool": write_split(tmp_path / "all", drive_data(drives=10, frames=3))}
    dataset = CocoDataset(pool, CLASS_MAP, held_out={"test": 0.2, "val": 0.1}, split_seed=4)
    videos = {split: {(dataset.image_id(i) - 1) // 3 for i in dataset.split_indices(split)}  # ids: 3 video + f + 1
              for split in ("pool", "val", "test")}
    assert [len(videos[split]) for split in ("pool", "val", "test")] == [7, 1, 2]
    assert set().union(*videos.values()) == set(range(10))
    assert [dataset.split_indices(split).size for split in ("pool", "val", "test")] == [21, 3, 6]
    # every split keeps ascending image ids, and its drives stay whole
    for split in ("pool", "val", "test"):
        ids = [dataset.image_id(i) for i in dataset.split_indices(split)]
        assert ids == sorted(ids)
        drive_ids = [dataset[i]["drive_id"] for i in dataset.split_indices(split)]
        assert len(set(drive_ids)) == len(videos[split])
    again = CocoDataset(pool, CLASS_MAP, held_out={"test": 0.2, "val": 0.1}, split_seed=4)
    assert again.split_indices("test").tolist() == dataset.split_indices("test").tolist()
    assert [again.image_id(i) for i in range(30)] == [dataset.image_id(i) for i in range(30)]
    tests_by_seed = set()
    for seed in range(6):
        reshuffled = CocoDataset(pool, CLASS_MAP, held_out={"test": 0.2}, split_seed=seed)
        tests_by_seed.add(tuple(reshuffled.image_id(i) for i in reshuffled.split_indices("test")))
    assert len(tests_by_seed) > 1


def test_held_out_and_split_files_combine_and_conflicts_are_errors(splits: dict[str, dict[str, str]],
                                                                    tmp_path: Path) -> None:
    pool_and_test = {"pool": splits["pool"], "test": splits["test"]}
    dataset = CocoDataset(pool_and_test, CLASS_MAP, held_out={"val": 0.3})  # pool has drives: video 1, 7
    assert [dataset.split_indices(split).size for split in ("pool", "val", "test")] in ([2, 1, 2], [1, 2, 2])
    with pytest.raises(ValueError, match=r"split\(s\) \['test'\] have both a source in 'splits' and a 'held_out'"):
        CocoDataset(splits, CLASS_MAP, held_out={"test": 0.2})
    alone = {"pool": splits["pool"]}
    with pytest.raises(ValueError, match=r"pool/instances\.json: held_out \{'test': 0\.5, 'val': 0\.4\} of its 2 "
                                         r"drive\(s\) leaves none for the pool"):
        CocoDataset(alone, CLASS_MAP, held_out={"test": 0.5, "val": 0.4})
    for bad, message in [({"train": 0.1}, r"unknown split\(s\) \['train'\]"),
                         ({"test": 1.0}, r"held_out\.test must be a fraction in \[0, 1\)"),
                         ({"test": -0.1}, r"held_out\.test must be a fraction"),
                         ({"test": 0.6, "val": 0.5}, r"sum to 1 or more"),
                         ([0.2], r"'held_out' must map 'val' / 'test' to fractions")]:
        with pytest.raises(ValueError, match=message):
            CocoDataset(alone, CLASS_MAP, held_out=bad)
    with pytest.raises(ValueError, match=r"no 'test' split"):
        CocoDataset(alone, CLASS_MAP, held_out={"test": 0.0, "val": 0.3})


def test_bad_split_entries_are_errors(splits: dict[str, dict[str, str]], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown split\(s\) \['train'\]"):
        CocoDataset({**splits, "train": splits["pool"]}, CLASS_MAP)
    with pytest.raises(ValueError, match=r"splits\['val'\] must be"):
        CocoDataset({**splits, "val": {"images": splits["val"]["images"]}}, CLASS_MAP)
    with pytest.raises(FileNotFoundError, match=r"annotation file .*nothing\.json not found"):
        CocoDataset({**splits, "val": {**splits["val"], "annotations": str(tmp_path / "nothing.json")}}, CLASS_MAP)
    with pytest.raises(FileNotFoundError, match=r"image folder .*nowhere not found"):
        CocoDataset({**splits, "val": {**splits["val"], "images": str(tmp_path / "nowhere")}}, CLASS_MAP)


def test_empty_required_split_is_an_error(tmp_path: Path) -> None:
    data = standard_data()
    data["test"] = {"images": [], "annotations": [], "categories": CATEGORIES}
    with pytest.raises(ValueError, match=r"test/instances\.json: the 'test' split has no images"):
        CocoDataset(write_splits(tmp_path, data), CLASS_MAP)


def test_bad_arguments_are_errors(splits: dict[str, dict[str, str]]) -> None:
    with pytest.raises(ValueError, match="'min_box_size'"):
        CocoDataset(splits, CLASS_MAP, min_box_size=-1.0)
    with pytest.raises(ValueError, match="'cache_size'"):
        CocoDataset(splits, CLASS_MAP, cache_size=-1)


def test_collate_images_batch_contract(dataset: CocoDataset) -> None:
    items = [dataset[i] for i in (2, 0, 1)]
    batch = collate_images(items)
    assert set(batch) == {"index", "images", "boxes", "labels", "drive_id", "timestamp"}
    assert batch["index"].dtype == torch.int64 and batch["index"].tolist() == [2, 0, 1]
    assert batch["drive_id"].dtype == torch.int64 and batch["drive_id"].tolist() == [1, 0, 0]
    assert batch["timestamp"].dtype == torch.float64 and batch["timestamp"].tolist() == [3.25, 2.0, 2.1]
    assert [tuple(image.shape) for image in batch["images"]] == [(3, 30, 40), (3, 20, 50), (3, 30, 40)]
    for image, item in zip(batch["images"], items, strict=True):
        assert type(image) is torch.Tensor and image.dtype == torch.float32
        assert image.min() >= 0.0 and image.max() <= 1.0
        torch.testing.assert_close(image * 255, item["image"].as_subclass(torch.Tensor).float())
    assert [tuple(boxes.shape) for boxes in batch["boxes"]] == [(1, 4), (2, 4), (0, 4)]
    assert all(type(b) is torch.Tensor and b.dtype == torch.float32 for b in batch["boxes"])
    torch.testing.assert_close(batch["boxes"][1], torch.tensor([[10.0, 5.0, 30.0, 15.0], [0.5, 1.5, 4.5, 9.5]]))
    assert [labels.tolist() for labels in batch["labels"]] == [[VEHICLE], [VEHICLE, PEDESTRIAN], []]
    assert all(labels.dtype == torch.int64 for labels in batch["labels"])
    float_item = {**items[0], "image": items[0]["image"].float() / 255}  # already float: taken as [0, 1]
    torch.testing.assert_close(collate_images([float_item])["images"][0], batch["images"][0])
    empty = collate_images([])
    assert empty["index"].shape == (0,) and empty["images"] == []


def test_hydra_config_through_the_datamodule_keeps_absolute_indices(splits: dict[str, dict[str, str]]) -> None:
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from alcv.data.datamodule import ActiveDataModule
    from alcv.data.image_transforms import ImageTrainAugmentation
    from alcv.pool import LabelPool

    cfg = OmegaConf.create({"_target_": "alcv.data.coco.CocoDataset", "splits": splits,
                            "class_map": {"vehicle": ["car", "truck", "bus"], "pedestrian": ["person"]},
                            "min_box_size": 1.0, "cache_size": 8, "fps": 10.0})
    dataset = instantiate(cfg)
    assert dataset.class_names == ("vehicle", "pedestrian")
    datamodule = ActiveDataModule(dataset, "coco", collate_images, batch_size=2, eval_batch_size=2,
                                  train_transform=ImageTrainAugmentation())
    pool = LabelPool(datamodule.pool_split())
    pool.label(np.array([0, 2]), 0)
    datamodule.attach_pool(pool)
    train = [batch for batch in datamodule.train_dataloader()]
    assert sorted(int(i) for batch in train for i in batch["index"]) == [0, 2]
    assert all(len(b) == len(lab) for batch in train for b, lab in zip(batch["boxes"], batch["labels"], strict=True))
    assert [int(i) for batch in datamodule.pool_dataloader() for i in batch["index"]] == [1]
    assert [int(i) for batch in datamodule.val_dataloader() for i in batch["index"]] == [3]
    assert [int(i) for batch in datamodule.test_dataloader() for i in batch["index"]] == [4, 5]
