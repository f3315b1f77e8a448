"""A Lightning callback that kills its own process (SIGKILL: no clean-up, no flush) at a chosen point of a loop,
to test resuming. The point comes from ``$ALCV_TEST_CRASH_AT`` so that the killed attempt and the resumed one have
the same config (``+callbacks.crash._target_=crash_callback.CrashAt``)."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

from alcv.run_files import loop_folder

#: ``$ALCV_TEST_CRASH_AT`` = ``<loop>:<point>``; points: ``start`` (the Trainer of the loop starts fitting, after
#: the previous loop committed: between loops), ``train`` (the 3rd training step), ``pool`` (the 2nd batch of pool
#: inference)
CRASH_AT = "ALCV_TEST_CRASH_AT"
POINTS = ("start", "train", "pool")


class CrashAt(Callback):
    def __init__(self) -> None:
        loop, _, point = os.environ.get(CRASH_AT, "-1:none").partition(":")
        self.loop, self.point = int(loop), point

    def _crash_if(self, trainer: pl.Trainer, point: str) -> None:
        # the loop number is in the name of the Trainer's folder
        if point == self.point and Path(trainer.default_root_dir).name == loop_folder(self.loop):
            os.kill(os.getpid(), signal.SIGKILL)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._crash_if(trainer, "start")

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if batch_idx == 2:
            self._crash_if(trainer, "train")

    def on_predict_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                             batch_idx: int, dataloader_idx: int = 0) -> None:
        if batch_idx == 1:
            self._crash_if(trainer, "pool")
