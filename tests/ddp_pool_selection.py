"""Pool inference and selection of one acquisition on the tiny world, on one process or under DDP.

Two kinds of run tell apart the two things DDP pool inference promises:

- with :class:`FrameKeyedDetector`, whose detections of a frame depend only on the frame's absolute index, every
  process computes the same per-frame statistics bit for bit, so what DDP adds (combining the ranks' columns by
  absolute index, rank 0's selection, the broadcast, every rank's labels) must give exactly what one process
  gives;
- with the config's detector (``real_model``), each process predicts other batches (other frames, other sizes)
  with fewer threads, and float32 kernels need not sum in the same order, so the statistics agree with one
  process's only up to floating-point error.

``python tests/ddp_pool_selection.py OUT_DIR`` runs every run of :data:`DDP_RUNS` under
``Trainer(accelerator="cpu", devices=2, strategy="ddp")`` (gloo); each rank writes what it ended with
(:func:`predict_and_select`, or ``{"error": "<type>: <message>"}`` for the run whose selection fails) to
``OUT_DIR/<run>.rank<r>.json``. Lightning's launcher starts rank 1 by running this script again with the same
arguments, and every later Trainer of the script joins the same two processes.
Tests call :func:`predict_and_select` on one process for the reference. Nothing is written outside ``OUT_DIR``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import lightning.pytorch as pl
import numpy as np
import torch
from conftest import TINY
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch.utils.data import DataLoader, DistributedSampler

from alcv.acquisition import acquire
from alcv.callbacks import ActiveLearningCallback
from alcv.config import CONFIG_DIR, register_resolvers
from alcv.data.datamodule import ActiveDataModule
from alcv.loop import initial_size, selection_rules
from alcv.models.detections import Detections, PredictionRequest
from alcv.pool import LabelPool
from alcv.strategies import Picker, PoolStats, Strategy

SEED = 0
#: a smaller pool than TINY's, for speed: 49 frames, 39 of them unlabeled (odd: the shards of two ranks differ)
POOL_FRAMES = "data.dataset.world.pool_frames=35"


class DDPRun(NamedTuple):
    """One pool inference and selection: the ``strategy`` config; whether the pool is predicted by the config's
    detector (seeded, untrained) instead of :class:`FrameKeyedDetector`; whether the pool is sharded by a
    ``DistributedSampler`` that pads with repeated frames; whether the strategy fails when it selects."""

    strategy: str
    real_model: bool = False
    padded_sampler: bool = False
    failing_selection: bool = False


#: the runs of the script, in order (the failing one last)
DDP_RUNS = {
    "least_confidence": DDPRun("least_confidence"),
    "coreset": DDPRun("coreset"),
    "padded_sampler": DDPRun("least_confidence", padded_sampler=True),
    "least_confidence_real_model": DDPRun("least_confidence", real_model=True),
    "coreset_real_model": DDPRun("coreset", real_model=True),
    "failing_selection": DDPRun("least_confidence", failing_selection=True),
}
#: the column in which :class:`RankTagged` records which rank wrote a row
WRITER_RANK = "writer_rank"


def _global_rank() -> int:
    return torch.distributed.get_rank() if torch.distributed.is_initialized() else 0


class SelectionFailure(Exception):
    """What :class:`RankTagged` raises when it is made to fail."""


class RankTagged:
    """``strategy``, plus a :data:`WRITER_RANK` column ``(B, 2)`` = ``[rank, -rank]`` for every frame that the
    process of global rank ``rank`` predicts (two entries, so that a row mixed from two ranks shows), and a
    count of the calls to ``select`` on this process; with ``failing``, ``select`` raises
    :class:`SelectionFailure`."""

    def __init__(self, strategy: Strategy, failing: bool = False) -> None:
        self.strategy = strategy
        self.failing = failing
        self.name = strategy.name
        self.request = strategy.request
        self.select_calls = 0

    def frame_stats(self, detections: Sequence[Detections]) -> dict[str, np.ndarray]:
        rank = _global_rank()
        return {**self.strategy.frame_stats(detections), WRITER_RANK: np.tile([rank, -rank], (len(detections), 1))}

    def select(self, pool: PoolStats, picker: Picker, seed: int) -> np.ndarray:
        self.select_calls += 1
        if self.failing:
            raise SelectionFailure(f"strategy '{self.name}' failed on purpose")
        return self.strategy.select(pool, picker, seed)


class FrameKeyedDetector(pl.LightningModule):
    """A stand-in detector for pool inference whose detections of a frame depend on nothing but its absolute
    index: 0 to :attr:`MAX_BOXES` boxes, their class probabilities ``(M, num_classes)`` and, when
    :attr:`prediction_request` asks for embeddings, an embedding ``(EMBEDDING_DIM,)``, all drawn by a generator
    seeded with the index. Whatever the batching, the thread count or the process, a frame gets the same
    detections bit for bit."""

    MAX_BOXES = 5
    EMBEDDING_DIM = 8

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.prediction_request = PredictionRequest()

    def frame_detections(self, index: int) -> Detections:
        rng = np.random.default_rng([SEED, index])
        num_boxes = int(rng.integers(0, self.MAX_BOXES + 1))
        class_probs = torch.from_numpy(rng.random((num_boxes, self.num_classes), dtype=np.float32))
        scores, labels = class_probs.max(dim=1) if num_boxes else (torch.zeros(0), torch.zeros(0, dtype=torch.long))
        boxes = torch.from_numpy(rng.standard_normal((num_boxes, 7), dtype=np.float32))
        embedding = (torch.from_numpy(rng.standard_normal(self.EMBEDDING_DIM, dtype=np.float32))
                     if self.prediction_request.embeddings else None)
        return Detections(index, boxes, labels, scores, class_probs, embedding)

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> list[Detections]:
        return [self.frame_detections(index) for index in batch["index"].tolist()]


class PaddedPoolData(pl.LightningDataModule):
    """Predicts ``datamodule``'s pool through a ``DistributedSampler`` that pads the shards to equal length by
    repeating frames (``drop_last=False``); to be used with ``Trainer(use_distributed_sampler=False)``."""

    def __init__(self, datamodule: ActiveDataModule) -> None:
        super().__init__()
        self.datamodule = datamodule

    def predict_dataloader(self) -> DataLoader:
        pool_loader = self.datamodule.predict_dataloader()
        sampler = DistributedSampler(pool_loader.dataset, num_replicas=self.trainer.world_size,
                                     rank=self.trainer.global_rank, shuffle=False, drop_last=False)
        return DataLoader(pool_loader.dataset, batch_size=pool_loader.batch_size, sampler=sampler,
                          collate_fn=pool_loader.collate_fn)


def predict_and_select(run: DDPRun, devices: int, root_dir: Path) -> dict[str, Any]:
    """Predict the pool of the tiny world (``TINY``, :data:`POOL_FRAMES`, ``strategy=<run.strategy>``) with a
    :class:`FrameKeyedDetector` (with ``run.real_model``: the config's detector, seeded and untrained) on
    ``devices`` CPU processes and label one acquisition of ``loop.query_size`` frames at loop 1; with
    ``run.padded_sampler``, through :class:`PaddedPoolData`.

    Returns:
        this rank's outcome: ``selected``, ``selected_scores``, ``selected_costs`` (the :class:`Selection`),
        ``labeled_at`` (the pool's state, aligned with ``pool_indices``), ``scored`` (the absolute indices this
        rank predicted), ``predicted`` (those the pool inference had to cover), ``columns`` (the combined
        columns after selection, by absolute index, NaN as NaN) and ``select_calls`` (the strategy's runs on
        this rank).
    """
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*TINY, POOL_FRAMES, f"strategy={run.strategy}",
                                                               "logger=none"])
    datamodule: ActiveDataModule = instantiate(cfg.data)
    pool = LabelPool(datamodule.pool_split())
    pool.label_random(initial_size(cfg.loop, len(pool)), loop=0, rng=np.random.default_rng(SEED))
    datamodule.attach_pool(pool)
    strategy = RankTagged(instantiate(cfg.strategy), failing=run.failing_selection)
    datamodule.predict_labeled = strategy.request.include_labeled
    predicted = pool.indices if strategy.request.include_labeled else pool.unlabeled_indices
    pl.seed_everything(SEED)
    model = instantiate(cfg.model) if run.real_model else FrameKeyedDetector(len(datamodule.class_names))
    model.prediction_request = strategy.request

    rules = selection_rules(cfg.loop)
    callback = ActiveLearningCallback(strategy, rules, dataset_size=len(datamodule.dataset))
    trainer = pl.Trainer(accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto",
                         use_distributed_sampler=not run.padded_sampler, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, default_root_dir=root_dir,
                         callbacks=[callback])
    trainer.predict(model, datamodule=PaddedPoolData(datamodule) if run.padded_sampler else datamodule,
                    return_predictions=False)
    selection = acquire(pool, strategy, rules, loop=1, seed=SEED, columns=callback.columns, trainer=trainer)
    return {"selected": selection.indices.tolist(), "selected_scores": selection.scores.tolist(),
            "selected_costs": selection.costs.tolist(), "pool_indices": pool.indices.tolist(),
            "labeled_at": pool.labeled_at.tolist(), "scored": np.flatnonzero(callback.scored).tolist(),
            "predicted": predicted.tolist(), "select_calls": strategy.select_calls,
            "columns": {name: column.tolist() for name, column in callback.columns.items()}}


def main(out_dir: Path) -> None:
    for name, run in DDP_RUNS.items():
        try:
            outcome = predict_and_select(run, devices=2, root_dir=out_dir)
        except Exception as error:
            if not run.failing_selection:
                raise
            outcome = {"error": f"{type(error).__name__}: {error}"}
        (out_dir / f"{name}.rank{_global_rank()}.json").write_text(json.dumps(outcome))
    torch.distributed.barrier()  # rank 0 ends (and the test reads the files) once every rank has written


if __name__ == "__main__":
    main(Path(sys.argv[1]))
