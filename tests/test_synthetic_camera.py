"""The synthetic camera world: projection, labels by depth / size / occlusion, determinism, the 2D item."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision import tv_tensors

from alcv.data.image_transforms import ImageTrainAugmentation
from alcv.data.synthetic_camera import SyntheticCameraDataset, SyntheticCameraWorld
from alcv.data.synthetic_lidar import SENSOR_HEIGHT, SceneState, SyntheticLidarWorld


@pytest.fixture(scope="module")
def world() -> SyntheticCameraWorld:
    """The default world (drives are laid out lazily, so building it is cheap)."""
    return SyntheticCameraWorld(SyntheticLidarWorld(seed=0))


class OneScene:
    """A stand-in LiDAR world with a single frame holding exactly ``objects`` (and one wall if given)."""

    seed = 0

    def __init__(self, objects: list[list[float]], labels: list[int], walls: list[list[float]] | None = None) -> None:
        self.objects = np.array(objects, dtype=float).reshape(-1, 7)
        self.labels = np.array(labels, dtype=np.int64)
        self.walls = np.array(walls or [], dtype=float).reshape(-1, 7)

    def __len__(self) -> int:
        return 1

    def scene(self, index: int) -> SceneState:
        return SceneState(0, 0, 0.0, 40.0, self.objects, self.labels, np.arange(len(self.labels)), self.walls,
                          np.zeros((0, 4)), np.zeros((0, 4)))


def car(x: float, y: float = 0.0, label: int = 0) -> list[float]:
    """A 4.5 x 1.8 x 1.5 m box standing on the ground, ``x`` metres ahead, heading +x."""
    return [x, y, 0.75 - SENSOR_HEIGHT, 4.5, 1.8, 1.5, 0.0]


def test_projection_puts_the_optical_axis_at_the_centre_and_the_fov_edge_at_the_border() -> None:
    camera = SyntheticCameraWorld(OneScene([], []), width=256, height=128, horizontal_fov_degrees=90.0)  # type: ignore[arg-type]
    np.testing.assert_allclose(camera.project(np.array([10.0, 0.0, 0.0])), [128.0, 64.0])
    # 45 degrees to the left is the left border; 10 m ahead and 2 m up is 25.6 px above the centre
    np.testing.assert_allclose(camera.project(np.array([[10.0, 10.0, 0.0], [10.0, 0.0, 2.0]])),
                               [[0.0, 64.0], [128.0, 64.0 - 25.6]], atol=1e-9)


def test_a_car_ahead_is_labeled_with_the_rectangle_of_its_projection() -> None:
    camera = SyntheticCameraWorld(OneScene([car(10.0)], [0]), noise_std=0.0)  # type: ignore[arg-type]
    frame = camera.frame(0)
    assert frame.labels.tolist() == [0]
    corners = np.array([[10 + dx * 2.25, dy * 0.9, 0.75 - SENSOR_HEIGHT + dz * 0.75]
                        for dx in (-1, 1) for dy in (-1, 1) for dz in (-1, 1)])
    pixels = camera.project(corners)
    np.testing.assert_allclose(frame.boxes[0], [*pixels.min(axis=0), *pixels.max(axis=0)], atol=1e-3)
    u1, v1, u2, v2 = frame.boxes[0].astype(int)
    assert frame.image.shape == (128, 256, 3) and frame.image.dtype == np.uint8
    inside, outside = frame.image[v1 + 2:v2 - 2, u1 + 2:u2 - 2], frame.image[:, :u1 - 2]
    assert abs(inside.mean() - outside.mean()) > 5  # the car is painted where its box is


def test_hidden_far_small_and_behind_objects_are_not_labeled() -> None:
    scene = OneScene([car(8.0), car(20.0), car(60.0, label=0), car(-10.0), car(12.0, 4.0, label=1)],
                     [0, 0, 0, 0, 1])
    labeled = SyntheticCameraWorld(scene, noise_std=0.0).frame(0)  # type: ignore[arg-type]
    # the car 20 m ahead is behind the one at 8 m; 60 m is beyond max_depth; -10 m is behind the camera
    assert sorted(labeled.labels.tolist()) == [0, 1]
    assert len(labeled.boxes) == 2
    # with no visibility requirement the hidden car counts too
    everything = SyntheticCameraWorld(scene, noise_std=0.0, min_visible_fraction=0.0).frame(0)  # type: ignore[arg-type]
    assert len(everything.boxes) == 3


def test_a_wall_hides_what_is_behind_it() -> None:
    wall = [6.0, 0.0, 1.5 - SENSOR_HEIGHT, 0.3, 12.0, 3.0, 0.0]
    frame = SyntheticCameraWorld(OneScene([car(15.0)], [0], walls=[wall]), noise_std=0.0).frame(0)  # type: ignore[arg-type]
    assert len(frame.labels) == 0


def test_frames_are_deterministic_and_share_the_lidar_worlds_drives_and_splits(world: SyntheticCameraWorld) -> None:
    index = int(world.split_indices("pool")[5])
    first, again = world.frame(index), SyntheticCameraWorld(SyntheticLidarWorld(seed=0)).frame(index)
    np.testing.assert_array_equal(first.image, again.image)
    np.testing.assert_array_equal(first.boxes, again.boxes)
    assert not np.array_equal(first.image, world.frame(index + 1).image)
    lidar = world.lidar_world.frame(index)
    assert (first.drive_id, first.timestamp) == (lidar.drive_id, lidar.timestamp)
    for split in ("pool", "val", "test"):
        np.testing.assert_array_equal(world.split_indices(split), world.lidar_world.split_indices(split))


def test_labels_over_many_frames_are_valid_boxes_of_every_class(world: SyntheticCameraWorld) -> None:
    lidar = world.lidar_world
    pool = world.split_indices("pool")
    drives = np.array([lidar.drive_of(int(index))[0] for index in pool])
    # every 6th frame of the first pool drive of each scene type (golf carts live in parking lots)
    first_drives = [drives[lidar.drive_scenes[drives] == scene][0] for scene in range(4)]
    counts = np.zeros(3, dtype=int)
    for index in pool[np.isin(drives, first_drives)][::6]:
        frame = world.frame(int(index))
        assert frame.boxes.shape == (len(frame.labels), 4)
        assert (frame.boxes[:, 2] - frame.boxes[:, 0] >= world.min_box_pixels).all()
        assert (frame.boxes[:, 3] - frame.boxes[:, 1] >= world.min_box_pixels).all()
        assert (frame.boxes >= 0).all() and (frame.boxes[:, [0, 2]] <= world.width).all()
        assert (frame.boxes[:, [1, 3]] <= world.height).all()
        counts += np.bincount(frame.labels, minlength=3)
    assert (counts > 0).all(), counts  # vehicles, pedestrians and golf carts all appear


def test_dataset_items_follow_the_2d_contract_and_augmentation_moves_the_boxes(world: SyntheticCameraWorld) -> None:
    dataset = SyntheticCameraDataset(world, class_names=["vehicle", "golf_cart"])
    index = next(int(i) for i in world.split_indices("pool") if dataset.num_boxes(int(i)) > 0)
    item = dataset[index]
    assert item["index"] == index and isinstance(item["image"], tv_tensors.Image)
    assert item["image"].shape == (3, 128, 256) and item["image"].dtype == torch.uint8
    assert isinstance(item["boxes"], tv_tensors.BoundingBoxes) and item["boxes"].canvas_size == (128, 256)
    assert set(item["labels"].tolist()) <= {0, 1}  # pedestrians dropped, golf carts renumbered to 1
    assert dataset.box_labels(index).tolist() == item["labels"].tolist()

    torch.manual_seed(0)
    flipped = ImageTrainAugmentation(flip_probability=1.0, brightness=0.0, contrast=0.0, saturation=0.0)(item)
    expected = item["boxes"].clone()
    expected[:, [0, 2]] = 256 - item["boxes"][:, [2, 0]]
    torch.testing.assert_close(flipped["boxes"].as_subclass(torch.Tensor), expected.as_subclass(torch.Tensor))
    torch.testing.assert_close(flipped["image"].as_subclass(torch.Tensor),
                               item["image"].flip(-1).as_subclass(torch.Tensor))
    assert flipped["index"] == index and flipped["labels"].tolist() == item["labels"].tolist()
    with pytest.raises(ValueError, match="tractor"):
        SyntheticCameraDataset(world, class_names=["tractor"])
