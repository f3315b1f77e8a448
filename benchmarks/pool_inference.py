"""Pool inference through alcv's path against a bare inference loop over the same model, data and batch size.

Builds the default experiment's data, model and strategy from the packaged config (``alcv`` with the given
Hydra overrides; by default the synthetic LiDAR world, ``model=bev_tiny``, least confidence), labels the
initial set, and fills the dataset's frame cache with one pass over the pool so that both paths read the same
in-memory frames (frame generation is not what is compared). Then, alternating the two paths ``--repeats``
times and keeping each one's fastest pass:

- **bare**: ``for batch in datamodule.pool_dataloader(): model.predict_step(batch, i)`` under
  ``torch.inference_mode()`` with the model in eval mode: the model's forward pass and box decoding only;
- **alcv**: ``Trainer.predict`` with the ``ActiveLearningCallback`` the loop uses, which also computes the
  strategy's per-frame columns and writes them by absolute index, then the acquisition that selects the next
  frames.

Prints frames per second of each and their ratio (issue 7's target: alcv / bare >= 0.9), and the selection's
own time.

Usage::

    python benchmarks/pool_inference.py                        # the default data and model
    python benchmarks/pool_inference.py strategy=bald          # any Hydra overrides of the alcv config
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import hydra
import lightning.pytorch as pl
import numpy as np
import torch
from hydra import compose, initialize_config_dir

from alcv.acquisition import Selection, acquire
from alcv.callbacks import ActiveLearningCallback
from alcv.config import CONFIG_DIR, register_resolvers
from alcv.data.datamodule import ActiveDataModule
from alcv.loop import initial_size, selection_rules
from alcv.pool import LabelPool
from alcv.strategies import SelectionRules, Strategy


@dataclass
class PoolInference:
    """Pool inference of the alcv config at loop 1: its data with the initial set labeled, its strategy, and its
    model in eval mode asked for what the strategy needs."""

    datamodule: ActiveDataModule
    strategy: Strategy
    model: pl.LightningModule
    pool: LabelPool
    rules: SelectionRules
    description: str

    @property
    def frames(self) -> int:
        """The unlabeled frames that pool inference scores."""
        return len(self.pool) - self.pool.n_labeled

    def callback(self, callback_type: type[ActiveLearningCallback] = ActiveLearningCallback) -> ActiveLearningCallback:
        """A fresh callback of the loop's kind for one pass."""
        return callback_type(self.strategy, self.rules, len(self.datamodule.dataset))

    def predict(self, callback: ActiveLearningCallback) -> tuple[Selection, float]:
        """One pass of ``Trainer.predict`` over the pool with ``callback``, then the acquisition of loop 1 (seed 0),
        as the loop runs them; returns the selection and the seconds the acquisition took."""
        trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, callbacks=[callback],
                             enable_progress_bar=False, enable_model_summary=False)
        trainer.predict(self.model, datamodule=self.datamodule, return_predictions=False)
        started = time.perf_counter()
        selection = acquire(self.pool, self.strategy, self.rules, 1, 0, callback.columns, trainer=trainer)
        return selection, time.perf_counter() - started


def set_up(overrides: list[str]) -> PoolInference:
    """:class:`PoolInference` of ``alcv`` with ``overrides`` (and no logger)."""
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["logger=none", *overrides])
    pl.seed_everything(0, verbose=False)
    datamodule = hydra.utils.instantiate(cfg.data)
    strategy = hydra.utils.instantiate(cfg.strategy)
    model = hydra.utils.instantiate(cfg.model).eval()
    pool = LabelPool(datamodule.pool_split())
    pool.label_random(initial_size(cfg.loop, len(pool)), loop=0, rng=np.random.default_rng(0))
    datamodule.attach_pool(pool)
    if strategy.request is not None:
        model.prediction_request = strategy.request
    description = f"{cfg.strategy.get('_target_', '?').rsplit('.', 1)[-1]} '{strategy.name}'"
    return PoolInference(datamodule, strategy, model, pool, selection_rules(cfg.loop), description)


def bare_pass(model: pl.LightningModule, loader: torch.utils.data.DataLoader) -> float:
    started = time.perf_counter()
    with torch.inference_mode():
        for batch_idx, batch in enumerate(loader):
            model.predict_step(batch, batch_idx)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args, overrides = parser.parse_known_args()
    setup = set_up(overrides)
    frames = setup.frames
    bare_pass(setup.model, setup.datamodule.pool_dataloader())  # fills the frame cache; both paths then read it

    bare_seconds, alcv_seconds, selection_seconds = [], [], []
    for _ in range(args.repeats):
        setup.pool = setup.pool.until(0)  # the same initial state for every pass (a pass labels the next frames)
        setup.datamodule.attach_pool(setup.pool)
        bare_seconds.append(bare_pass(setup.model, setup.datamodule.pool_dataloader()))
        started = time.perf_counter()
        selection, seconds = setup.predict(setup.callback())
        alcv_seconds.append(time.perf_counter() - started)
        selection_seconds.append(seconds)
        assert selection.indices.size > 0

    bare, through_alcv = min(bare_seconds), min(alcv_seconds)
    print(f"# python benchmarks/pool_inference.py {' '.join(overrides)}   ({frames} unlabeled frames, batch "
          f"{setup.datamodule.eval_batch_size}, {setup.description}, best of {args.repeats})")
    print(f"bare inference_mode loop:  {frames / bare:8.1f} frames/s  ({bare:.2f} s)")
    print(f"alcv (Trainer.predict + ActiveLearningCallback, selection included): {frames / through_alcv:8.1f} "
          f"frames/s  ({through_alcv:.2f} s, of which selection {min(selection_seconds):.3f} s)")
    print(f"ratio alcv / bare: {bare / through_alcv:.2f}   (target >= 0.9: "
          f"{'met' if bare / through_alcv >= 0.9 else 'missed'})")


if __name__ == "__main__":
    main()
