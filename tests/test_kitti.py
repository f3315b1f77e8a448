"""KittiDataset and write_kitti: the calibration conversion, the round trip of a synthetic world, the splits,
drives and point range, bad input, and lazy point reading."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from alcv.data.export import write_kitti
from alcv.data.kitti import (
    KittiCalibration,
    KittiDataset,
    kitti_label_text,
    kitti_like_calibration,
    kitti_to_lidar_boxes,
    lidar_to_kitti_boxes,
    read_kitti_calibration,
)
from alcv.data.lidar_dataset import SyntheticLidarDataset
from alcv.data.synthetic_lidar import SyntheticLidarWorld
from alcv.metrics.kitti_official import KittiOfficialMAP
from alcv.pool import LabelPool

CLASS_MAP = {"vehicle": ["Car", "Van"], "pedestrian": ["Pedestrian"]}
VEHICLE, PEDESTRIAN = 0, 1
#: the ideal calibration: LiDAR (x forward, y left, z up) -> camera (x right, y down, z forward), no rectification
AXIS_PERMUTATION = np.array([[0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
IDEAL_CALIB = ("P2: 700 0 620 0 0 700 180 0 0 0 1 0\n"
               "R0_rect: 1 0 0 0 1 0 0 0 1\n"
               f"Tr_velo_to_cam: {' '.join(f'{v:g}' for v in AXIS_PERMUTATION.ravel())}\n")


def label_line(kitti_type: str, *box: float) -> str:
    """A label line of ``type`` and the seven values ``h w l x y z rotation_y``."""
    assert len(box) == 7
    return f"{kitti_type} 0.00 0 0.00 10.00 20.00 30.00 40.00 {' '.join(str(v) for v in box)}"


def frame_points(frame: str) -> np.ndarray:
    """``(5, 4)`` float32 points distinct per frame."""
    return (np.arange(20, dtype=np.float32).reshape(5, 4) + int(frame)) / 7


def write_frame(root: Path, frame: str, labels: list[str], points: np.ndarray | None = None,
                calib: str = IDEAL_CALIB) -> None:
    for folder in ("velodyne", "label_2", "calib"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (frame_points(frame) if points is None else points).astype("<f4").tofile(root / "velodyne" / f"{frame}.bin")
    (root / "label_2" / f"{frame}.txt").write_text("".join(f"{line}\n" for line in labels))
    (root / "calib" / f"{frame}.txt").write_text(calib)


def write_split(root: Path, stem: str, frames: list[str]) -> None:
    (root / "ImageSets").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / f"{stem}.txt").write_text("".join(f"{frame}\n" for frame in frames))


def standard_root(root: Path) -> Path:
    """Frames 000000-000003 (000002 empty, 000003 with DontCare), ImageSets train = 0, 1, 2 and val = 3."""
    write_frame(root, "000000", [label_line("Car", 1.5, 1.6, 3.9, 2.0, 1.7, 10.0, 0.3),
                                 label_line("Pedestrian", 1.7, 0.6, 0.8, -3.0, 1.6, 8.0, -2.0)])
    write_frame(root, "000001", [label_line("Van", 2.0, 1.9, 5.0, 1.0, 1.8, 20.0, 1.0)])
    write_frame(root, "000002", [])
    write_frame(root, "000003", [label_line("DontCare", -1, -1, -1, -1000, -1000, -1000, -10),
                                 label_line("Car", 1.4, 1.7, 4.2, 0.0, 1.6, 15.0, 0.0)])
    write_split(root, "train", ["000000", "000001", "000002"])
    write_split(root, "val", ["000003"])
    return root


@pytest.fixture(scope="module")
def synthetic() -> SyntheticLidarDataset:
    world = SyntheticLidarWorld(seed=0, pool_frames=60, val_frames=15, test_frames=30, drive_frames=(10, 20))
    return SyntheticLidarDataset(world, cache_size=0)


@pytest.fixture(scope="module")
def written(synthetic: SyntheticLidarDataset, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return write_kitti(synthetic, tmp_path_factory.mktemp("kitti") / "training")


def test_a_hand_worked_label_line_under_the_ideal_calibration(tmp_path: Path) -> None:
    # bottom centre (2, 1.7, 10) of a 1.5 m high box: centre (2, 0.95, 10) in the camera frame, i.e. 10 m ahead,
    # 2 m to the right and 0.95 m up in the LiDAR frame; yaw = -ry - pi/2, wrapped to (-pi, pi]
    write_frame(tmp_path, "000000", [label_line("Car", 1.5, 1.6, 3.9, 2.0, 1.7, 10.0, 0.3),
                                     label_line("Car", 1.5, 1.6, 3.9, 2.0, 1.7, 10.0, 1.8) + " 0.93",  # a score
                                     label_line("Car", 1.5, 1.6, 3.9, 2.0, 1.7, 10.0, math.pi / 2)])
    write_frame(tmp_path, "000001", [])
    write_split(tmp_path, "train", ["000000"])
    write_split(tmp_path, "val", ["000001"])
    boxes = KittiDataset(tmp_path, CLASS_MAP)[0]["boxes"].double()
    expected_yaw = [-0.3 - math.pi / 2, -1.8 - math.pi / 2 + 2 * math.pi, math.pi]
    torch.testing.assert_close(boxes[:, :6], torch.tensor([[10.0, -2.0, -0.95, 3.9, 1.6, 1.5]] * 3,
                                                          dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(boxes[:, 6], torch.tensor(expected_yaw, dtype=torch.float64), atol=1e-6, rtol=0)


def test_conversions_invert_each_other_and_match_the_ideal_relation() -> None:
    rng = np.random.default_rng(0)
    boxes = np.column_stack([rng.uniform(-30, 30, (200, 3)), rng.uniform(0.3, 6, (200, 3)),
                             rng.uniform(-math.pi, math.pi, 200)])
    ideal = KittiCalibration(r0_rect=np.eye(3), velo_to_cam=AXIS_PERMUTATION)
    label_boxes = lidar_to_kitti_boxes(boxes, ideal)
    x, y, z, dx, dy, dz, yaw = boxes.T
    np.testing.assert_allclose(label_boxes[:, :6], np.column_stack([dz, dy, dx, -y, -z + dz / 2, x]), atol=1e-9)
    np.testing.assert_allclose(np.cos(label_boxes[:, 6] - (-yaw - math.pi / 2)), 1.0, atol=1e-12)
    for calib in (ideal, kitti_like_calibration()):
        back = kitti_to_lidar_boxes(lidar_to_kitti_boxes(boxes, calib), calib)
        np.testing.assert_allclose(back, boxes, atol=1e-9)
    # the KITTI-like calibration is close to the ideal one, but not equal: the round trip exercised its rotations
    realistic = lidar_to_kitti_boxes(boxes, kitti_like_calibration())
    difference = np.abs(realistic - label_boxes)
    assert 1e-3 < difference[:, 3:6].max() < 1.0  # about 1 degree at up to 50 m, and the lever arm
    assert 1e-4 < np.abs(np.sin(realistic[:, 6] - label_boxes[:, 6])).max() < 0.05


def test_round_trip_of_a_synthetic_world(synthetic: SyntheticLidarDataset, written: dict[str, Any]) -> None:
    assert written["splits"] == {"pool": "pool", "val": "val", "test": "test"}
    dataset = KittiDataset(**written)
    assert dataset.class_names == synthetic.class_names
    for split in ("pool", "val", "test"):  # frame ids are the synthetic absolute indices
        assert [int(dataset.frame_id(i)) for i in dataset.split_indices(split)] == \
            synthetic.split_indices(split).tolist()
    drives: dict[int, int] = {}
    total_boxes = 0
    for index in range(len(dataset)):
        read, original = dataset[index], synthetic[int(dataset.frame_id(index))]
        assert read["index"] == index
        assert torch.equal(read["points"], original["points"])
        torch.testing.assert_close(read["boxes"][:, :6], original["boxes"][:, :6], atol=1e-4, rtol=0)
        yaw_difference = (read["boxes"][:, 6] - original["boxes"][:, 6]).double()
        torch.testing.assert_close(torch.remainder(yaw_difference + math.pi, 2 * math.pi) - math.pi,
                                   torch.zeros_like(yaw_difference), atol=1e-4, rtol=0)
        assert torch.equal(read["labels"], original["labels"])
        assert read["timestamp"] == original["timestamp"]
        assert dataset.drive_and_time(index) == (read["drive_id"], read["timestamp"])  # from the index alone
        # drive numbers differ but group the same frames
        assert drives.setdefault(original["drive_id"], read["drive_id"]) == read["drive_id"]
        total_boxes += dataset.num_boxes(index)
    assert len(set(drives.values())) == len(drives)
    assert total_boxes > 50
    calib = read_kitti_calibration(Path(written["root"]) / "calib" / f"{dataset.frame_id(0)}.txt")
    reference = kitti_like_calibration()
    np.testing.assert_allclose(calib.velo_to_rect(), reference.velo_to_rect(), atol=1e-12)
    assert sorted(calib.projections) == ["P0", "P1", "P2", "P3"] and calib.imu_to_velo is not None


def test_num_boxes_and_box_labels_never_read_a_point_file(written: dict[str, Any],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    dataset = KittiDataset(**written)

    def no_reading(*args: Any, **kwargs: Any) -> np.ndarray:
        raise AssertionError("a point file was read")

    monkeypatch.setattr(np, "fromfile", no_reading)
    for index in range(len(dataset)):
        assert dataset.box_labels(index).shape == (dataset.num_boxes(index),)
    with pytest.raises(AssertionError, match="a point file was read"):
        dataset[0]


def test_item_contract_absolute_order_dont_care_and_empty_frames(tmp_path: Path) -> None:
    root = standard_root(tmp_path / "training")
    write_split(root, "train", ["000002", "000000", "000001"])  # listed out of order
    dataset = KittiDataset(root, CLASS_MAP, splits={"pool": "train", "test": "val", "val": None})
    assert dataset.class_names == ("vehicle", "pedestrian") and dataset.modality == "lidar"
    assert [dataset.frame_id(i) for i in range(len(dataset))] == ["000000", "000001", "000002", "000003"]
    assert dataset.split_indices("pool").tolist() == [0, 1, 2] and dataset.split_indices("test").tolist() == [3]
    assert dataset.split_indices("val").size == 0
    item = dataset[0]
    assert set(item) == {"index", "points", "boxes", "labels", "drive_id", "timestamp"}
    assert item["points"].dtype == torch.float32 and torch.equal(item["points"], torch.from_numpy(frame_points("0")))
    assert item["boxes"].dtype == torch.float32 and item["boxes"].shape == (2, 7)
    assert item["labels"].dtype == torch.int64 and item["labels"].tolist() == [VEHICLE, PEDESTRIAN]
    assert dataset.box_labels(1).tolist() == [VEHICLE]  # a Van is a vehicle
    assert dataset.num_boxes(2) == 0 and dataset[2]["boxes"].shape == (0, 7)  # an empty label file
    assert dataset.box_labels(3).tolist() == [VEHICLE]  # DontCare dropped
    # without drives.txt each frame is a drive of its own at time 0
    assert [dataset[i]["drive_id"] for i in range(4)] == [0, 1, 2, 3]
    assert {dataset[i]["timestamp"] for i in range(4)} == {0.0}
    with pytest.raises(IndexError, match="out of range"):
        dataset[4]


def test_split_files_beside_root_as_in_openpcdet(tmp_path: Path) -> None:
    root = standard_root(tmp_path / "training")
    (root / "ImageSets").rename(tmp_path / "ImageSets")
    assert len(KittiDataset(root, CLASS_MAP)) == 4


def test_point_range_drops_points_and_boxes_whose_centre_is_outside(tmp_path: Path) -> None:
    points = np.array([[1, 0, 0, 0.1], [-1, 0, 0, 0.2], [5, 5, -1.5, 0.3], [5, 5, -2.5, 0.4], [40, 0, 0, 0.5]],
                      dtype=np.float32)
    # LiDAR centres: (10, -2, -0.95) inside; (30, 0, -1) outside in x; (20, 3, 0) on the boundary: kept
    write_frame(tmp_path, "000000", [label_line("Car", 1.5, 1.6, 3.9, 2.0, 1.7, 10.0, 0.0),
                                     label_line("Car", 1.5, 1.6, 3.9, 0.0, 1.75, 30.0, 0.0),
                                     label_line("Pedestrian", 1.7, 0.6, 0.8, -3.0, 0.85, 20.0, 0.0)], points=points)
    write_frame(tmp_path, "000001", [])
    write_split(tmp_path, "train", ["000000"])
    write_split(tmp_path, "val", ["000001"])
    dataset = KittiDataset(tmp_path, CLASS_MAP, point_range=[0, -10, -2, 20, 10, 4])
    assert torch.equal(dataset[0]["points"], torch.from_numpy(points[[0, 2]]))
    assert dataset.box_labels(0).tolist() == [VEHICLE, PEDESTRIAN]
    torch.testing.assert_close(dataset[0]["boxes"][:, :3], torch.tensor([[10.0, -2.0, -0.95], [20.0, 3.0, 0.0]]))


def write_drives(root: Path, drive_of: dict[str, str]) -> None:
    (root / "drives.txt").write_text("".join(f"{frame} {drive} {int(frame) * 0.1}\n"
                                             for frame, drive in drive_of.items()))


def test_held_out_moves_whole_drives_by_seed(tmp_path: Path) -> None:
    drive_of = {f"{i:06d}": drive for i, drive in enumerate("aaabbcccdd")}
    for frame in drive_of:
        write_frame(tmp_path, frame, [label_line("Car", 1.5, 1.6, 3.9, 0.0, 1.7, 10.0, 0.0)])
    write_drives(tmp_path, drive_of)
    splits_by_seed = []
    for seed in (0, 0, 1, 2, 3):
        dataset = KittiDataset(tmp_path, CLASS_MAP, splits=None, held_out={"test": 0.25, "val": 0.25},
                               split_seed=seed)
        split_drives = {}
        for split in ("pool", "val", "test"):
            frames = [dataset.frame_id(i) for i in dataset.split_indices(split)]
            split_drives[split] = {drive_of[frame] for frame in frames}
            # whole drives only, each one drive id, frames in ascending id with their timestamps
            assert sorted(frames) == frames == sorted(f for f, d in drive_of.items() if d in split_drives[split])
            for index, frame in zip(dataset.split_indices(split), frames, strict=True):
                assert dataset[index]["timestamp"] == pytest.approx(int(frame) * 0.1)
            assert len({dataset[i]["drive_id"] for i in dataset.split_indices(split)}) == len(split_drives[split])
        assert [len(split_drives[s]) for s in ("pool", "val", "test")] == [2, 1, 1]
        splits_by_seed.append(split_drives)
    assert splits_by_seed[0] == splits_by_seed[1]
    assert any(other != splits_by_seed[0] for other in splits_by_seed[2:])
    # without drives.txt every frame is a drive: the fractions are fractions of frames
    (tmp_path / "drives.txt").unlink()
    dataset = KittiDataset(tmp_path, CLASS_MAP, splits=None, held_out={"test": 0.2})
    assert dataset.split_indices("test").size == 2 and dataset.split_indices("pool").size == 8


def test_lru_cache_reads_each_point_file_once_and_returns_copies(written: dict[str, Any],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    dataset = KittiDataset(**written, cache_size=2)
    reads: list[str] = []
    fromfile = np.fromfile

    def counting(path: Any, *args: Any, **kwargs: Any) -> np.ndarray:
        reads.append(Path(path).stem)
        return fromfile(path, *args, **kwargs)

    monkeypatch.setattr(np, "fromfile", counting)
    first = dataset[0]["points"]
    first.zero_()  # a transform writing into its item does not change the cache
    assert not torch.equal(dataset[0]["points"], first)
    dataset[1]
    dataset[2]  # evicts frame 0
    dataset[0]
    assert reads == [dataset.frame_id(i) for i in (0, 1, 2, 0)]


def set_label(line_number: int, line: str) -> Callable[[Path], None]:
    """A change of ``label_2/000001.txt`` adding ``line`` as its line ``line_number``."""
    def change(root: Path) -> None:
        path = root / "label_2" / "000001.txt"
        lines = path.read_text().splitlines()
        lines.insert(line_number - 1, line)
        path.write_text("\n".join(lines) + "\n")
    return change


def set_file(relative: str, text: str | bytes | None) -> Callable[[Path], None]:
    """A change writing ``text`` to ``root/relative`` (None: removing it)."""
    def change(root: Path) -> None:
        path = root / relative
        if text is None:
            path.unlink()
        elif isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
    return change


BAD_INPUT = {
    "wrong field count": (set_label(2, "Car 0.00 0 0.00 1 2 3 4 1.5 1.6 3.9 2.0 1.7 10.0"), ValueError,
                          "label_2/000001.txt, line 2: 14 fields, expected 15"),
    "non-numeric value": (set_label(1, label_line("Car", 1.5, 1.6, 3.9, 2.0, 1.7, 10.0, 0.0).replace(" 1.7 ", " abc ")),
                          ValueError, "label_2/000001.txt, line 1: y 'abc' is not a number"),
    "negative dimension": (set_label(1, label_line("Car", 1.5, -1.6, 3.9, 2.0, 1.7, 10.0, 0.0)), ValueError,
                           "label_2/000001.txt, line 1: dimensions h=1.5 w=-1.6 l=3.9; expected a box of positive"),
    "zero size": (set_label(1, label_line("Car", 1.5, 1.6, 0.0, 2.0, 1.7, 10.0, 0.0)), ValueError,
                  r"label_2/000001.txt, line 1: dimensions h=1.5 w=1.6 l=0; expected a box of positive size \(metres"),
    "R0_rect scaled": (set_file("calib/000001.txt", IDEAL_CALIB.replace("R0_rect: 1 0 0 0 1 0 0 0 1",
                                                                        "R0_rect: 2 0 0 0 1 0 0 0 1")),
                       ValueError, "calib/000001.txt: the rotation of R0_rect is not a rotation .*differs from the "
                                   "identity by up to 3"),
    "R0_rect a reflection": (set_file("calib/000001.txt", IDEAL_CALIB.replace("R0_rect: 1 0 0 0 1 0 0 0 1",
                                                                              "R0_rect: -1 0 0 0 1 0 0 0 1")),
                             ValueError, "calib/000001.txt: the rotation of R0_rect is not a rotation .*determinant "
                                         "is -1"),
    "Tr_velo_to_cam sheared": (set_file("calib/000001.txt", IDEAL_CALIB.replace("Tr_velo_to_cam: 0 -1 0",
                                                                                "Tr_velo_to_cam: 0.5 -1 0")),
                               ValueError, "calib/000001.txt: the rotation of Tr_velo_to_cam is not a rotation"),
    "unknown type": (set_label(2, label_line("Tram", 3.5, 2.6, 15.0, 2.0, 1.7, 10.0, 0.0)), ValueError,
                     "label_2/000001.txt, line 2: KITTI type 'Tram' is in no class_map entry; add it to class_map "
                     "or drop_types"),
    "bin size": (set_file("velodyne/000001.bin", bytes(20)), ValueError,
                 "velodyne/000001.bin: 20 bytes is not a multiple of 16"),
    "missing calib file": (set_file("calib/000001.txt", None), FileNotFoundError,
                           "ImageSets/train.txt: frame 000001: calib file .*calib/000001.txt not found"),
    "calib without Tr_velo_to_cam": (set_file("calib/000001.txt", IDEAL_CALIB.split("Tr_velo")[0]), ValueError,
                                     "calib/000001.txt: calibration lacks Tr_velo_to_cam"),
    "calib with a wrong count": (set_file("calib/000001.txt", IDEAL_CALIB.replace("R0_rect: 1 0", "R0_rect: 0")),
                                 ValueError, "calib/000001.txt, line 2: R0_rect has 8 values, expected 9"),
    "listed frame absent": (set_file("ImageSets/train.txt", "000000\n000001\n000009\n"), FileNotFoundError,
                            "ImageSets/train.txt: frame 000009: point file .*velodyne/000009.bin not found"),
    "frame in two splits": (set_file("ImageSets/val.txt", "000003\n000001\n"), ValueError,
                            "ImageSets/val.txt: frame 000001 of the 'test' split is also in the 'pool' split"),
    "frame twice in a split file": (set_file("ImageSets/val.txt", "000003\n\n000003\n"), ValueError,
                                    "ImageSets/val.txt, line 3: frame 000003 is listed twice"),
    "missing split file": (set_file("ImageSets/val.txt", None), FileNotFoundError, "split file val.txt not found"),
    "drives.txt missing a frame": (set_file("drives.txt", "000000 a 0.0\n000001 a 0.1\n000002 b 0\n"), ValueError,
                                   "drives.txt: frame 000003 .* has no line"),
    "drives.txt timestamp": (set_file("drives.txt", "000000 a 0.0\n000001 a nan\n"), ValueError,
                             "drives.txt, line 2: timestamp 'nan' is not a finite number"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_an_error_naming_file_line_and_problem(tmp_path: Path, case: str) -> None:
    change, error, message = BAD_INPUT[case]
    root = standard_root(tmp_path / "training")
    KittiDataset(root, CLASS_MAP)  # fine before the change
    change(root)
    with pytest.raises(error, match=message):
        KittiDataset(root, CLASS_MAP)


@pytest.mark.parametrize(("arguments", "message"), [
    ({"class_map": {"vehicle": ["Car"], "van": ["Car"]}}, "'Car' is mapped to both 'vehicle' and 'van'"),
    ({"class_map": {"vehicle": []}}, r"class_map\['vehicle'\] names no KITTI type"),
    ({"drop_types": ["DontCare", "Car"]}, "'Car' is in both class_map\\['vehicle'\\] and drop_types"),
    ({"splits": {"test": "val"}}, "lacks the 'pool' split"),
    ({"splits": {"pool": "train"}}, "no 'test' split"),
    ({"held_out": {"test": 0.5}}, r"split\(s\) \['test'\] have both a source in 'splits' and a 'held_out' fraction"),
    ({"point_range": [0, 0, 0, 1, 1]}, "'point_range' must be"),
    ({"cache_size": -1}, "'cache_size' must be an int >= 0"),
])
def test_bad_arguments_are_errors(tmp_path: Path, arguments: dict[str, Any], message: str) -> None:
    root = standard_root(tmp_path / "training")
    with pytest.raises(ValueError, match=message):
        KittiDataset(root, **{"class_map": CLASS_MAP, **arguments})


class BoxesAhead:
    """A LiDAR dataset of one pool frame with a box 10 m ahead and one 10 m behind the sensor."""

    modality = "lidar"
    class_names = ("vehicle", "pedestrian")
    boxes = np.array([[10.0, 2.0, -1.0, 4.0, 1.8, 1.5, 0.0], [-10.0, 0.0, -1.0, 0.6, 0.6, 1.7, 1.0]], np.float32)

    def __len__(self) -> int:
        return 1

    def split_indices(self, split: str) -> np.ndarray:
        return np.arange(1 if split == "pool" else 0)

    def unlabeled_indices(self) -> np.ndarray:
        return np.zeros(0, dtype=np.int64)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"index": index, "points": torch.zeros(3, 4), "boxes": torch.from_numpy(self.boxes),
                "labels": torch.tensor([VEHICLE, PEDESTRIAN]), "drive_id": 7, "timestamp": 1.5}


def test_writer_label_lines_image_boxes_and_type_names(tmp_path: Path) -> None:
    ideal = KittiCalibration(r0_rect=np.eye(3), velo_to_cam=AXIS_PERMUTATION,
                             projections={"P2": np.array([[700.0, 0, 620, 0], [0, 700, 180, 0], [0, 0, 1, 0]])})
    written = write_kitti(BoxesAhead(), tmp_path / "kitti", calib=ideal, type_names=["Car", "Pedestrian"])
    assert written["class_map"] == {"vehicle": ["Car"], "pedestrian": ["Pedestrian"]}
    assert written["splits"] == {"pool": "pool"}
    root = Path(written["root"])
    ahead, behind = ((line.split()[0], [float(v) for v in line.split()[1:]])
                     for line in (root / "label_2" / "000000.txt").read_text().splitlines())
    assert ahead[0] == "Car" and behind[0] == "Pedestrian"
    # h w l, bottom centre (-y, -z + h/2, x), ry = -yaw - pi/2; alpha = ry - atan2(x, z)
    np.testing.assert_allclose(ahead[1][7:], [1.5, 1.8, 4.0, -2.0, 1.75, 10.0, -math.pi / 2], atol=1e-6)
    assert ahead[1][:3] == pytest.approx([0.0, 0.0, -math.pi / 2 - math.atan2(-2.0, 10.0)], abs=1e-6)
    left, top, right, bottom = ahead[1][3:7]
    assert 0 <= left < 480 < right <= 1242 and 0 <= top < 250 < bottom <= 375  # the centre projects to (480, 250)
    assert behind[1][3:7] == [-1.0] * 4  # behind the camera: no image box
    assert (root / "drives.txt").read_text() == "000000 7 1.5\n"
    assert (root / "ImageSets" / "pool.txt").read_text() == "000000\n"
    with pytest.raises(ValueError, match="'type_names' must be 2 distinct names"):
        write_kitti(BoxesAhead(), tmp_path / "other", type_names=["Car", "Car"])


def test_writer_refuses_a_root_that_holds_something_without_touching_it(synthetic: SyntheticLidarDataset,
                                                                        tmp_path: Path) -> None:
    root = tmp_path / "kitti"
    root.mkdir()
    (root / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=re.escape(f"{root} already exists and is not an empty folder")):
        write_kitti(synthetic, root)
    assert [path.name for path in root.rglob("*")] == ["notes.txt"] and (root / "notes.txt").read_text() == "mine"
    with pytest.raises(FileExistsError, match="already exists"):
        write_kitti(synthetic, root / "notes.txt")
    camera = BoxesAhead()
    camera.modality = "camera"
    with pytest.raises(ValueError, match="KITTI export needs LiDAR point clouds"):
        write_kitti(camera, tmp_path / "empty")
    assert not (tmp_path / "empty").exists()


# --- the official evaluation (alcv.metrics.kitti_official) on a KittiDataset --------------------------------------

OFFICIAL_FRAMES = 45  # enough boxes for the official R40 to reach 1 for a perfect detector (41 sampled thresholds)


def official_root(root: Path) -> Path:
    """``OFFICIAL_FRAMES`` frames under the ideal calibration, each a Car, a Van and a Pedestrian ahead (written by
    kitti_label_text: projected 2D boxes, truncation and occlusion 0) and a DontCare line; train = the even frames,
    val = the odd ones."""
    calib = read_kitti_calibration(_written_calib(root))
    for i in range(OFFICIAL_FRAMES):
        boxes = np.array([[8.0 + i / 5, 2.0, -0.9, 4.0, 1.7, 1.5, 0.1], [14.0, -3.0, -0.8, 5.0, 1.9, 2.1, 0.0],
                          [9.0, -1.0 - i / 50, -0.8, 0.8, 0.6, 1.75, 1.0]])
        lines = kitti_label_text(boxes, np.array([0, 1, 2]), calib, ["Car", "Van", "Pedestrian"]).splitlines()
        write_frame(root, f"{i:06d}", [*lines, "DontCare -1 -1 -10 500.0 150.0 560.0 190.0 -1 -1 -1 -1000 -1000 "
                                                "-1000 -10"])
    write_split(root, "train", [f"{i:06d}" for i in range(0, OFFICIAL_FRAMES, 2)])
    write_split(root, "val", [f"{i:06d}" for i in range(1, OFFICIAL_FRAMES, 2)])
    return root


def _written_calib(root: Path) -> Path:
    path = root / "ideal_calib.txt"
    root.mkdir(parents=True, exist_ok=True)
    path.write_text(IDEAL_CALIB)
    return path


def own_boxes(dataset: KittiDataset, frames: list[int]) -> list[dict[str, torch.Tensor]]:
    """The dataset's own boxes of ``frames`` as detections (scores falling with the frame)."""
    return [{"boxes": dataset[i]["boxes"], "labels": dataset[i]["labels"],
             "scores": torch.full((dataset.num_boxes(i),), 1.0 - i / 100)} for i in frames]


def test_official_eval_keeps_every_label_line_and_scores_the_dataset_s_own_boxes(tmp_path: Path) -> None:
    dataset = KittiDataset(official_root(tmp_path / "training"), CLASS_MAP, official_eval=True)
    assert dataset.official_types == ("Car", "Pedestrian")  # the benchmark type each class's class_map lists
    frame = dataset.eval_frame(0)
    assert frame.types == ("Car", "Van", "Pedestrian", "DontCare")
    assert frame.occlusion.tolist() == [0, 0, 0, -1] and frame.truncation.tolist() == [0.0, 0.0, 0.0, -1.0]
    assert frame.image_boxes[3].tolist() == [500.0, 150.0, 560.0, 190.0]
    boxes, image_boxes = frame.project(dataset[0]["boxes"].numpy())  # the kept boxes: Car, Van, Pedestrian
    np.testing.assert_allclose(boxes, frame.boxes[:3], atol=1e-4)
    np.testing.assert_allclose(image_boxes, frame.image_boxes[:3], atol=0.01)
    for mode in ("bev", "3d"):
        metric = KittiOfficialMAP(dataset.class_names, mode)
        metric.bind(dataset)
        frames = list(range(len(dataset)))
        metric.update(own_boxes(dataset, frames), own_boxes(dataset, frames), torch.tensor(frames))
        result = metric.compute()
        # vehicles are evaluated as Car: the detections of Vans are ignored, not false positives
        np.testing.assert_allclose(result.ap_r40[:, :, 0], 1.0)
        metric.reset()
        seen = frames[:OFFICIAL_FRAMES // 2]  # detections in half the frames; every frame evaluated
        metric.update(own_boxes(dataset, seen) + [{"boxes": torch.zeros(0, 7), "labels": torch.zeros(0),
                                                   "scores": torch.zeros(0)}] * (len(frames) - len(seen)),
                      own_boxes(dataset, frames), torch.tensor(frames))
        assert metric.compute().ap_r40[0, 1, 0] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="eval_frame needs official_eval=True"):
        KittiDataset(tmp_path / "training", CLASS_MAP).eval_frame(0)


OFFICIAL_BAD_INPUT = {
    "occlusion not an integer": (1, "Car 0.00 1.5 0.00 10 20 30 80 1.5 1.6 3.9 2.0 1.7 10.0 0.0",
                                 "label_2/000001.txt, line 1: occluded 1.5: expected 0 .*, 1, 2 or 3"),
    "truncation above 1": (1, "Car 1.20 0 0.00 10 20 30 80 1.5 1.6 3.9 2.0 1.7 10.0 0.0",
                           r"label_2/000001.txt, line 1: truncated 1.2: expected a fraction in \[0, 1\]"),
    "bbox upside down": (2, "DontCare -1 -1 -10 10 80 30 20 -1 -1 -1 -1000 -1000 -1000 -10",
                         "label_2/000001.txt, line 2: bbox 10 80 30 20: expected left <= right and top <= bottom"),
    "negative size of a dropped type": (1, "Misc 0.00 0 0.00 10 20 30 80 1.5 -1.6 3.9 2.0 1.7 10.0 0.0",
                                        "label_2/000001.txt, line 1: dimensions h=1.5 w=-1.6"),
}


@pytest.mark.parametrize("case", list(OFFICIAL_BAD_INPUT))
def test_official_eval_refuses_bad_fields_naming_file_line_and_field(tmp_path: Path, case: str) -> None:
    line_number, line, message = OFFICIAL_BAD_INPUT[case]
    root = standard_root(tmp_path / "training")
    set_label(line_number, line)(root)
    arguments = {"class_map": CLASS_MAP, "drop_types": ["DontCare", "Misc"]}
    KittiDataset(root, **arguments)  # the fields are only numbers without official_eval
    with pytest.raises(ValueError, match=message):
        KittiDataset(root, **arguments, official_eval=True)


def test_official_eval_needs_p2_and_one_benchmark_type_per_class(tmp_path: Path) -> None:
    root = standard_root(tmp_path / "training")
    set_file("calib/000001.txt", IDEAL_CALIB.split("\n", 1)[1])(root)
    KittiDataset(root, CLASS_MAP)
    with pytest.raises(ValueError, match=r"calib/000001\.txt: calibration lacks P2"):
        KittiDataset(root, CLASS_MAP, official_eval=True)
    with pytest.raises(ValueError, match=r"class_map\['person'\] lists the benchmark types \['Pedestrian', 'Cyc"):
        KittiDataset(root, {"vehicle": ["Car", "Van"], "person": ["Pedestrian", "Cyclist"]}, official_eval=True)


def test_data_kitti_official_eval_reports_official_ap_in_the_test_metrics(compose_cfg: Callable[..., Any],
                                                                         tmp_path: Path) -> None:
    root = official_root(tmp_path / "training")
    data = [f"data.dataset.root={root}", "data.num_workers=0", "data.dataset.class_names=[vehicle,pedestrian]",
            "~data.dataset.class_map.golf_cart"]
    assert "kitti_official_3d" not in hydra.utils.instantiate(compose_cfg("data=kitti", "model=bev_kitti",
                                                                          *data).model).extra_test_metrics
    cfg = compose_cfg("data=kitti", "model=bev_kitti", *data, "data.dataset.official_eval=true")
    assert {"kitti_official_bev", "kitti_official_3d"} <= set(hydra.utils.instantiate(cfg.model).extra_test_metrics)
    # the same switch on the small model, trained on nothing, through Trainer.test
    cfg = compose_cfg("data=kitti", "model=bev_tiny", *data, "data.dataset.official_eval=true",
                      "+model.kitti_official=${data.dataset.official_eval}")
    model, datamodule = hydra.utils.instantiate(cfg.model), hydra.utils.instantiate(cfg.data)
    datamodule.attach_pool(LabelPool(datamodule.pool_split()))
    pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False).test(model, datamodule=datamodule, verbose=False)
    values = model.extra_test_results["kitti_official_3d"].as_dict()
    assert {"map", "ap/vehicle", "ap/pedestrian/hard/R11@0.25"} <= set(values)
    assert all(0.0 <= value <= 1.0 for value in values.values())
    # without the data's label fields the official metrics refuse to run
    cfg = compose_cfg("data=kitti", "model=bev_tiny", *data, "+model.kitti_official=true")
    model, datamodule = hydra.utils.instantiate(cfg.model), hydra.utils.instantiate(cfg.data)
    datamodule.attach_pool(LabelPool(datamodule.pool_split()))
    with pytest.raises(ValueError, match=r"kitti_official needs KITTI data .*data\.dataset\.official_eval=true"):
        pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False).test(model, datamodule=datamodule, verbose=False)
