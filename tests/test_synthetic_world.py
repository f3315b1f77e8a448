"""The embedded synthetic LiDAR world: deterministic, drive-structured, split by drive, fleet-like."""

from __future__ import annotations

import numpy as np
import pytest

from alcv.data.synthetic_lidar import (
    CLASS_NAMES,
    FRAME_PERIOD_S,
    SCENE_TYPES,
    SENSOR_HEIGHT,
    SyntheticLidarWorld,
)


@pytest.fixture(scope="module")
def world() -> SyntheticLidarWorld:
    return SyntheticLidarWorld(seed=3, pool_frames=600, val_frames=60, test_frames=200)


def test_frames_are_a_pure_function_of_seed_and_index(world: SyntheticLidarWorld) -> None:
    again = SyntheticLidarWorld(seed=3, pool_frames=600, val_frames=60, test_frames=200)
    for index in (0, 17, len(world) - 1):
        first, second = world.frame(index), again.frame(index)
        np.testing.assert_array_equal(first.points, second.points)
        np.testing.assert_array_equal(first.boxes, second.boxes)
        np.testing.assert_array_equal(first.labels, second.labels)
    # generating other frames in between changes nothing
    world.frame(5)
    np.testing.assert_array_equal(world.frame(17).points, again.frame(17).points)
    other = SyntheticLidarWorld(seed=4, pool_frames=600, val_frames=60, test_frames=200)
    assert not np.array_equal(other.frame(0).points[:100], world.frame(0).points[:100])


def test_splits_are_disjoint_whole_drives_of_roughly_the_requested_size(world: SyntheticLidarWorld) -> None:
    splits = {name: world.split_indices(name) for name in ("pool", "val", "test")}
    all_indices = np.concatenate(list(splits.values()))
    assert np.unique(all_indices).size == all_indices.size
    longest = world.drive_lengths.max()
    for name, target in (("pool", 600), ("val", 60), ("test", 200)):
        assert target <= splits[name].size < target + longest
    drives = {name: {world.drive_of(int(i))[0] for i in idx} for name, idx in splits.items()}
    assert not drives["pool"] & drives["test"] and not drives["pool"] & drives["val"]
    assert not drives["val"] & drives["test"]
    for drive in drives["test"]:  # every frame of a test drive is in the test split
        start, length = world.drive_start[drive], world.drive_lengths[drive]
        assert set(range(start, start + length)) <= set(splits["test"].tolist())


def test_neighbouring_frames_of_a_drive_are_near_duplicates(world: SyntheticLidarWorld) -> None:
    drive = int(np.flatnonzero(world.drive_scenes == SCENE_TYPES.index("parking_lot"))[0])
    start = int(world.drive_start[drive])
    first, second, later = world.frame(start), world.frame(start + 1), world.frame(start + 25)
    assert (first.drive_id, second.drive_id) == (drive, drive)
    assert second.timestamp - first.timestamp == pytest.approx(FRAME_PERIOD_S)
    # known from the index alone, without generating the frame
    assert world.drive_and_time(start + 1) == (second.drive_id, pytest.approx(second.timestamp))

    def nearest_distance(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.median(np.min(np.linalg.norm(a[:, None, :2] - b[None, :, :2], axis=2), axis=1)))

    # the same objects, moved by at most a few decimetres from one frame to the next
    assert nearest_distance(first.boxes, second.boxes) < 0.5
    assert nearest_distance(first.boxes, later.boxes) > nearest_distance(first.boxes, second.boxes)


def test_class_mix_crowding_and_sizes_are_fleet_like() -> None:
    world = SyntheticLidarWorld(seed=0, pool_frames=2000, val_frames=0, test_frames=100)
    frames = [world.frame(i) for i in range(0, len(world), 9)]
    counts = np.bincount(np.concatenate([f.labels for f in frames]), minlength=len(CLASS_NAMES))
    vehicles, pedestrians, carts = counts
    assert vehicles > pedestrians > carts > 0  # vehicles everywhere, pedestrians less, golf carts rare
    assert carts / counts.sum() < 0.1
    per_frame = np.array([len(f.labels) for f in frames])
    assert (per_frame == 0).any() and per_frame.max() >= 20  # from empty frames to crowded ones
    boxes = np.concatenate([f.boxes for f in frames])
    labels = np.concatenate([f.labels for f in frames])
    cart_length = boxes[labels == CLASS_NAMES.index("golf_cart"), 3]
    vehicle_length = boxes[labels == CLASS_NAMES.index("vehicle"), 3]
    # golf carts are close in size to the smallest vehicles
    assert np.percentile(vehicle_length, 2) - cart_length.max() < 0.6
    # every labeled box stands on the ground
    np.testing.assert_allclose(boxes[:, 2] - boxes[:, 5] / 2, -SENSOR_HEIGHT, atol=1e-4)


def test_points_look_like_lidar_returns(world: SyntheticLidarWorld) -> None:
    frame = world.frame(40)
    points = frame.points
    assert points.dtype == np.float32 and points.shape[1] == 4
    assert ((points[:, 3] >= 0) & (points[:, 3] <= 1)).all()
    ground = np.abs(points[:, 2] + SENSOR_HEIGHT) < 0.15
    assert 0.3 < ground.mean() < 0.95
    ranges = np.hypot(points[ground, 0], points[ground, 1])
    # ground density falls with range: more ground returns within 10 m than in the 10-20 m ring,
    # which is three times larger in area
    assert (ranges < 10).sum() > ((ranges >= 10) & (ranges < 20)).sum()
    # objects have points, and points beyond the labeled boxes exist (clutter or walls)
    inside_any = np.zeros(len(points), dtype=bool)
    for box in frame.boxes:
        inside_any |= np.hypot(points[:, 0] - box[0], points[:, 1] - box[1]) < max(box[3], box[4]) / 2 + 0.2
    assert (inside_any & ~ground).sum() > 50
    assert (~inside_any & ~ground).sum() > 10


def test_bad_world_settings_are_rejected_with_the_setting_named() -> None:
    with pytest.raises(ValueError, match="pool_frames"):
        SyntheticLidarWorld(pool_frames=0)
    with pytest.raises(ValueError, match="scene_weights"):
        SyntheticLidarWorld(scene_weights=(1.0, 1.0))
    with pytest.raises(ValueError, match="drive_frames"):
        SyntheticLidarWorld(drive_frames=(10, 5))
