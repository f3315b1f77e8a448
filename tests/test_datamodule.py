"""ActiveDataModule: absolute indices end to end, eval transforms on the pool, collation."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from lightning.fabric.utilities.distributed import DistributedSamplerWrapper
from torch.utils.data import RandomSampler, SequentialSampler

from alcv.data.datamodule import ActiveDataModule
from alcv.data.lidar_dataset import LidarTrainAugmentation, SyntheticLidarDataset, collate_lidar
from alcv.data.synthetic_lidar import SyntheticLidarWorld
from alcv.pool import LabelPool


@pytest.fixture(scope="module")
def dataset() -> SyntheticLidarDataset:
    return SyntheticLidarDataset(SyntheticLidarWorld(seed=1, pool_frames=80, val_frames=20, test_frames=30,
                                                     drive_frames=(10, 20)))


def make_datamodule(dataset: SyntheticLidarDataset, labeled: int = 12, epoch_size: int | None = None,
                    epoch_passes: float | None = None) -> tuple[ActiveDataModule, LabelPool]:
    datamodule = ActiveDataModule(dataset, "synthetic_lidar", collate_lidar, batch_size=4, eval_batch_size=5,
                                  epoch_size=epoch_size, epoch_passes=epoch_passes,
                                  train_transform=LidarTrainAugmentation())
    pool = LabelPool(datamodule.pool_split())
    pool.label_random(labeled, 0, np.random.default_rng(0))
    datamodule.attach_pool(pool)
    return datamodule, pool


def loader_indices(loader: torch.utils.data.DataLoader) -> list[int]:
    return [int(i) for batch in loader for i in batch["index"]]


def test_every_loader_carries_absolute_indices_of_its_split(dataset: SyntheticLidarDataset) -> None:
    datamodule, pool = make_datamodule(dataset)
    assert sorted(loader_indices(datamodule.train_dataloader())) == pool.labeled_indices.tolist()
    assert loader_indices(datamodule.pool_dataloader()) == pool.unlabeled_indices.tolist()
    assert loader_indices(datamodule.test_dataloader()) == dataset.split_indices("test").tolist()
    assert loader_indices(datamodule.val_dataloader()) == dataset.split_indices("val").tolist()
    # the pool split does not start at 0: positions and absolute indices differ
    assert pool.indices.tolist() != list(range(len(pool)))


def test_labeling_moves_frames_from_pool_loader_to_train_loader(dataset: SyntheticLidarDataset) -> None:
    datamodule, pool = make_datamodule(dataset)
    newly = pool.unlabeled_indices[[0, 3, 7]]
    pool.label(newly, 1)
    assert set(newly.tolist()) <= set(loader_indices(datamodule.train_dataloader()))
    assert not set(newly.tolist()) & set(loader_indices(datamodule.pool_dataloader()))


def test_pool_and_test_use_eval_transforms_and_training_augments(dataset: SyntheticLidarDataset) -> None:
    datamodule, _ = make_datamodule(dataset)
    torch.manual_seed(0)
    for batch in datamodule.pool_dataloader():
        frame = int(batch["index"][0])
        raw = dataset[frame]
        first = batch["point_batch"] == 0
        torch.testing.assert_close(batch["points"][first], raw["points"])
        torch.testing.assert_close(batch["boxes"][0], raw["boxes"])
    augmented_differs = False
    for batch in datamodule.train_dataloader():
        frame = int(batch["index"][0])
        raw = dataset[frame]
        points = batch["points"][batch["point_batch"] == 0]
        assert points.shape == raw["points"].shape  # augmentation moves points, never drops or adds
        augmented_differs |= not torch.allclose(points, raw["points"])
    assert augmented_differs


def points_in_boxes(points: torch.Tensor, boxes: torch.Tensor, margin: float) -> torch.Tensor:
    """``(N, M)`` bool: point n lies in box m grown by ``margin`` metres on every side (LiDAR frame)."""
    offset = points[:, None, :3] - boxes[None, :, :3]
    cos, sin = torch.cos(boxes[:, 6]), torch.sin(boxes[:, 6])
    along, across = offset[..., 0] * cos + offset[..., 1] * sin, -offset[..., 0] * sin + offset[..., 1] * cos
    return ((along.abs() <= boxes[:, 3] / 2 + margin) & (across.abs() <= boxes[:, 4] / 2 + margin)
            & (offset[..., 2].abs() <= boxes[:, 5] / 2 + margin))


@pytest.mark.parametrize("seed", range(4))
def test_augmentation_keeps_every_point_in_the_same_boxes(dataset: SyntheticLidarDataset, seed: int) -> None:
    torch.manual_seed(seed)
    item = dataset[int(dataset.split_indices("pool")[5 + seed])]
    augmentation = LidarTrainAugmentation(flip_probability=0.5, max_rotation=math.pi, scale_range=(0.8, 1.2))
    augmented = augmentation(item)
    scale = float(augmented["boxes"][0, 5] / item["boxes"][0, 5])
    before = points_in_boxes(item["points"], item["boxes"], margin=0.05)
    assert before.any(dim=0).all()  # every box holds points: the check below is not vacuous
    assert torch.equal(points_in_boxes(augmented["points"], augmented["boxes"], margin=0.05 * scale), before)
    assert not torch.allclose(augmented["points"], item["points"])
    assert torch.equal(augmented["labels"], item["labels"]) and augmented["index"] == item["index"]
    assert torch.all(augmented["boxes"][:, 6].abs() <= math.pi)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"flip_probability": 1.5}, r"'flip_probability' must be in \[0, 1\]"),
    ({"max_rotation": -0.1}, r"'max_rotation' must be a finite angle >= 0"),
    ({"scale_range": (1.1, 0.9)}, r"'scale_range' must be \[low, high\] with 0 < low <= high"),
    ({"scale_range": (0.0, 1.0)}, r"'scale_range' must be \[low, high\] with 0 < low <= high"),
])
def test_augmentation_refuses_bad_settings(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LidarTrainAugmentation(**kwargs)


def test_epoch_size_fixes_training_length_whatever_the_labeled_size(dataset: SyntheticLidarDataset) -> None:
    small, _ = make_datamodule(dataset, labeled=5, epoch_size=40)
    large, _ = make_datamodule(dataset, labeled=30, epoch_size=40)
    assert len(loader_indices(small.train_dataloader())) == 40 == len(loader_indices(large.train_dataloader()))
    # the small labeled set is repeated evenly: every frame 8 times
    assert set(np.unique(loader_indices(small.train_dataloader()), return_counts=True)[1].tolist()) == {8}


def test_epoch_passes_lengthen_training_as_the_labeled_set_grows(dataset: SyntheticLidarDataset) -> None:
    small, _ = make_datamodule(dataset, labeled=5, epoch_size=40, epoch_passes=3)
    large, _ = make_datamodule(dataset, labeled=30, epoch_size=40, epoch_passes=3)
    assert len(loader_indices(small.train_dataloader())) == 40  # 3 passes = 15 < the 40-sample floor
    large_indices = loader_indices(large.train_dataloader())
    assert len(large_indices) == 90  # 3 passes over 30 frames
    assert set(np.unique(large_indices, return_counts=True)[1].tolist()) == {3}
    one_pass, _ = make_datamodule(dataset, labeled=7)
    assert len(loader_indices(one_pass.train_dataloader())) == 7
    with pytest.raises(ValueError, match="epoch_passes"):
        ActiveDataModule(dataset, "x", collate_lidar, epoch_passes=0)


def test_collate_concatenates_variable_size_clouds(dataset: SyntheticLidarDataset) -> None:
    items = [dataset[i] for i in (0, 1, 2)]
    batch = collate_lidar(items)
    sizes = [len(item["points"]) for item in items]
    assert batch["points"].shape == (sum(sizes), 4)
    assert torch.bincount(batch["point_batch"]).tolist() == sizes
    assert batch["index"].tolist() == [0, 1, 2]
    assert [len(b) for b in batch["boxes"]] == [len(item["labels"]) for item in items]


def test_class_selection_relabels_and_drops_other_classes() -> None:
    world = SyntheticLidarWorld(seed=1, pool_frames=80, val_frames=0, test_frames=30, drive_frames=(10, 20))
    full = SyntheticLidarDataset(world)
    reordered = SyntheticLidarDataset(world, class_names=["pedestrian", "vehicle"])
    for index in range(0, 60, 7):
        labels = full[index]["labels"]
        kept = reordered[index]["labels"]
        assert (kept == 0).sum() == (labels == 1).sum()  # pedestrians become class 0
        assert (kept == 1).sum() == (labels == 0).sum()
        assert len(kept) == int((labels <= 1).sum())  # golf carts dropped
    with pytest.raises(ValueError, match=r"class_names.*bicycle"):
        SyntheticLidarDataset(world, class_names=["vehicle", "bicycle"])


def test_a_pool_from_another_dataset_is_refused(dataset: SyntheticLidarDataset) -> None:
    datamodule, _ = make_datamodule(dataset)
    with pytest.raises(ValueError, match="pool split"):
        datamodule.attach_pool(LabelPool([1, 2, 3]))
    with pytest.raises(RuntimeError, match="attach_pool"):
        ActiveDataModule(dataset, "x", collate_lidar).pool_dataloader()


def test_under_ddp_each_rank_trains_on_its_share_of_the_epoch_and_evaluates_distinct_frames(
        dataset: SyntheticLidarDataset) -> None:
    datamodule, _ = make_datamodule(dataset, labeled=10, epoch_size=25)
    train_sampler = datamodule.train_dataloader().sampler
    # Lightning shards a training sampler that is not a RandomSampler / SequentialSampler (it would replace those
    # with one pass over the dataset); every rank draws alike, as the loop seeds them alike
    assert not isinstance(train_sampler, RandomSampler | SequentialSampler)
    torch.manual_seed(3)
    draws = list(train_sampler)
    shards = []
    for rank in range(2):
        torch.manual_seed(3)
        shards.append(list(DistributedSamplerWrapper(train_sampler, num_replicas=2, rank=rank, shuffle=False)))
    assert len(draws) == 25 and [len(shard) for shard in shards] == [13, 13]  # the epoch, plus one pad
    assert sorted(shards[0] + shards[1][:-1]) == sorted(draws)

    test_split = dataset.split_indices("test").tolist()
    assert len(test_split) % 2 == 1
    seen = []
    for rank in range(2):
        datamodule.trainer = SimpleNamespace(world_size=2, global_rank=rank)
        seen.append(loader_indices(datamodule.test_dataloader()))
    assert sorted(seen[0] + seen[1]) == test_split  # each test frame once: none repeated to even the shards
