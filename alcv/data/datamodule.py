"""The LightningDataModule that serves the labeled, unlabeled (pool), validation and test frames."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import lightning.pytorch as pl
import numpy as np
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler

from alcv.pool import LabelPool

#: an item -> the item a loader yields (an augmentation); items are dicts with an absolute ``index``
Transform = Callable[[dict[str, Any]], dict[str, Any]]


class SplitDataset(Protocol):
    """What :class:`ActiveDataModule` needs of a dataset: items by absolute index, splits by drive.

    ``modality`` names what an item holds: ``"lidar"`` (points, 3D boxes) or ``"camera"`` (an image, 2D boxes);
    a model reads one of them (:attr:`alcv.models.detection_module.DetectionModule.modality`).

    A pool frame may be **unlabeled**: its data holds no annotations yet (:meth:`unlabeled_indices`). Its item,
    :meth:`num_boxes` and :meth:`box_labels` have no boxes; it is to be labeled, never trained or evaluated on.
    Val and test frames are always labeled.
    """

    class_names: tuple[str, ...]
    modality: str

    def __len__(self) -> int: ...
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    def split_indices(self, split: str) -> np.ndarray:
        """Ascending int64 absolute indices of 'pool', 'val' (may be empty) or 'test'."""
        ...

    def num_boxes(self, index: int) -> int:
        """Number of boxes of frame ``index`` (its labeling cost), without loading it; 0 when unlabeled."""
        ...

    def box_labels(self, index: int) -> np.ndarray:
        """``(M,)`` int64 class ids of frame ``index``'s boxes, without loading it; empty when unlabeled."""
        ...

    def drive_and_time(self, index: int) -> tuple[int, float]:
        """Frame ``index``'s drive id and its timestamp in seconds, without loading it."""
        ...

    def unlabeled_indices(self) -> np.ndarray:
        """Ascending int64 absolute indices of the frames that have no annotations in the data (always pool
        frames; empty when every frame is labeled, as in the synthetic worlds and nuScenes)."""
        ...

    def frame_name(self, index: int) -> str:
        """The stable name of frame ``index`` in its data: a KITTI frame id (file stem), a COCO image's
        ``file_name`` (as in its JSON, relative to the split's images folder), a nuScenes sample token; a
        synthetic world's ``f"{index:06d}"``."""
        ...


class TransformedSubset(Dataset):
    """The frames ``indices`` (absolute) of ``dataset``, by position, with ``transform`` applied to each item."""

    def __init__(self, dataset: Dataset, indices: Sequence[int], transform: Transform | None = None) -> None:
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return int(self.indices.size)

    def __getitem__(self, position: int) -> dict[str, Any]:
        item = self.dataset[int(self.indices[position])]
        return self.transform(item) if self.transform is not None else item


# Not a RandomSampler: Lightning's DDP swaps that for a one-pass DistributedSampler but shards other samplers' draws.
class EpochSampler(Sampler[int]):
    """``num_samples`` positions of a dataset of ``size`` items, drawn like ``RandomSampler(replacement=False,
    num_samples=...)`` (whole random permutations from torch's global RNG, the last one cut short). Under DDP
    Lightning shards the draws across the ranks; every rank draws the same positions, since the loop seeds every
    rank alike.
    """

    def __init__(self, size: int, num_samples: int) -> None:
        self._draws = RandomSampler(range(size), replacement=False, num_samples=num_samples)

    def __iter__(self) -> Iterator[int]:
        return iter(self._draws)

    def __len__(self) -> int:
        return len(self._draws)


class ActiveDataModule(pl.LightningDataModule):
    """Labeled / unlabeled split of a dataset for an active-learning run.

    The pool split of ``dataset`` is what can be labeled; its labeled part (from the attached
    :class:`LabelPool`) is the training set, its unlabeled part the pool that is scored. The val and test
    splits are fixed. Every batch carries absolute dataset indices in ``batch["index"]``.

    Args:
        dataset: a :class:`SplitDataset`; items are dicts with an absolute ``index``.
        name: the dataset's name in results files (reports refuse to mix datasets).
        collate_fn: turns a list of items into a batch.
        batch_size: training batch size; ``eval_batch_size``: for val / test / pool inference.
        epoch_size: the least number of training samples per epoch; ``epoch_passes``: the least number
            of passes over the labeled set per epoch. An epoch is the larger of the two (one pass when both
            are ``None``), drawn from the labeled set without replacement and repeating it as needed: a
            small labeled set still gets ``epoch_size`` samples, a large one ``epoch_passes`` passes, so
            the model is neither undertrained early nor late in a run.
        train_transform: augmentation for training items only; val, test and pool items are never
            transformed (eval transforms are the identity for point clouds).
        num_workers: DataLoader workers.
    """

    def __init__(self, dataset: SplitDataset, name: str, collate_fn: Callable[[Sequence[Any]], Any],
                 batch_size: int = 16,
                 eval_batch_size: int = 32, epoch_size: int | None = None, epoch_passes: float | None = None,
                 train_transform: Transform | None = None, num_workers: int = 0) -> None:
        super().__init__()
        if batch_size < 1 or eval_batch_size < 1:
            raise ValueError(f"ActiveDataModule: 'batch_size' and 'eval_batch_size' must be >= 1, got "
                             f"{batch_size} and {eval_batch_size}")
        if epoch_size is not None and epoch_size < 1:
            raise ValueError(f"ActiveDataModule: 'epoch_size' must be >= 1 or null, got {epoch_size}")
        if epoch_passes is not None and epoch_passes <= 0:
            raise ValueError(f"ActiveDataModule: 'epoch_passes' must be > 0 or null, got {epoch_passes}")
        self.dataset = dataset
        self.name = name
        self.collate_fn = collate_fn
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.epoch_size = epoch_size
        self.epoch_passes = epoch_passes
        self.train_transform = train_transform
        self.num_workers = num_workers
        self.pool: LabelPool | None = None
        #: whether pool inference also covers the labeled frames (strategies that need their embeddings)
        self.predict_labeled = False

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.dataset.class_names)

    def pool_split(self) -> np.ndarray:
        """Absolute indices of every frame that may be labeled."""
        return self.dataset.split_indices("pool")

    def attach_pool(self, pool: LabelPool) -> None:
        """Use ``pool`` for the labeled / unlabeled split; it must cover exactly the pool split."""
        if difference := pool.differs_from(self.pool_split()):
            raise ValueError(f"ActiveDataModule.attach_pool: the LabelPool's indices differ from the dataset's "
                             f"pool split (was the state saved with another data config or seed?): {difference}")
        self.pool = pool

    def _require_pool(self) -> LabelPool:
        if self.pool is None:
            raise RuntimeError("ActiveDataModule: no LabelPool attached; call attach_pool(pool) first")
        return self.pool

    def train_samples(self, num_labeled: int) -> int:
        """Training samples per epoch for a labeled set of ``num_labeled`` frames."""
        passes = num_labeled if self.epoch_passes is None else math.ceil(self.epoch_passes * num_labeled)
        if self.epoch_size is None:
            return passes
        return max(self.epoch_size, passes) if self.epoch_passes is not None else self.epoch_size

    def _loader(self, indices: np.ndarray, transform: Transform | None = None, train: bool = False) -> DataLoader:
        """Training: :class:`EpochSampler` draws; Lightning shards them over DDP ranks. Evaluation: in order, and
        under DDP in shards without repeated frames, so that a test metric counts every frame once."""
        subset: Dataset = TransformedSubset(self.dataset, indices, transform)
        sampler: Sampler[int] | None = None
        trainer = self.trainer
        if train:
            sampler = EpochSampler(len(subset), self.train_samples(len(subset)))
        elif trainer is not None and trainer.world_size > 1:
            sampler = UnrepeatedDistributedSampler(subset, num_replicas=trainer.world_size, rank=trainer.global_rank,
                                                   shuffle=False)
        return DataLoader(subset, batch_size=self.batch_size if train else self.eval_batch_size,
                          sampler=sampler, shuffle=False, collate_fn=self.collate_fn,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          drop_last=False)

    def train_dataloader(self) -> DataLoader:
        labeled = self._require_pool().labeled_indices
        if labeled.size == 0:
            raise RuntimeError("ActiveDataModule: the labeled set is empty; nothing to train on")
        return self._loader(labeled, self.train_transform, train=True)

    def val_dataloader(self) -> DataLoader | list:
        indices = self.dataset.split_indices("val")
        return self._loader(indices) if indices.size else []

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.dataset.split_indices("test"))

    def pool_dataloader(self, include_labeled: bool = False) -> DataLoader:
        """The unlabeled frames (with ``include_labeled``, the whole pool), in ascending absolute index, with
        eval transforms (no augmentation)."""
        pool = self._require_pool()
        return self._loader(pool.indices if include_labeled else pool.unlabeled_indices)

    def predict_dataloader(self) -> DataLoader:
        return self.pool_dataloader(self.predict_labeled)
