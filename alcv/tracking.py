"""Weights & Biases set-up: online with an account, offline (with a hint on syncing) without one."""

from __future__ import annotations

import logging
import netrc
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import wandb
from lightning.pytorch.loggers import Logger, WandbLogger

log = logging.getLogger(__name__)
WANDB_MODES = ("auto", "online", "offline", "disabled")


def wandb_credentials_found() -> bool:
    """True when an API key is in the environment or in ``~/.netrc`` (where ``wandb login`` puts it)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def resolve_wandb_mode(mode: str) -> str:
    """``auto``: ``$WANDB_MODE`` if set, else online with credentials and offline without."""
    if mode not in WANDB_MODES:
        raise ValueError(f"logger.mode: unknown '{mode}', expected one of {WANDB_MODES}")
    if mode != "auto":
        return mode
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    return "online" if wandb_credentials_found() else "offline"


def make_wandb_logger(save_dir: str, project: str = "alcv", mode: str = "auto", name: str | None = None,
                      group: str | None = None, job_type: str | None = None, tags: list[str] | None = None,
                      **kwargs: Any) -> WandbLogger:
    """A Lightning ``WandbLogger`` for one active-learning run.

    Per-loop metrics (``al/*``) are plotted against the ``loop`` axis; training losses keep Lightning's
    ``trainer/global_step`` (which restarts at every loop, since every loop has a fresh Trainer).
    Extra ``kwargs`` go to ``wandb.init``.
    """
    resolved = resolve_wandb_mode(mode)
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    logger = WandbLogger(project=project, name=name, group=group, job_type=job_type, tags=tags,
                         save_dir=save_dir, mode=resolved, **kwargs)
    if resolved != "disabled":
        logger.experiment.define_metric("loop")
        logger.experiment.define_metric("al/*", step_metric="loop")
    return logger


@dataclass(frozen=True)
class SelectedFrames:
    """The frames labeled for one loop: absolute ``indices`` ``(k,)`` in the strategy's order, their
    acquisition ``scores`` ``(k,)`` (None for the random initial set) and ``boxes``, each frame's box count."""

    indices: np.ndarray
    scores: np.ndarray | None
    boxes: Sequence[int]

    def as_wandb_table(self, loop: int) -> wandb.Table:
        """One row per frame: loop, rank (0 = the strategy's first pick), index, score (None where
        infinite, e.g. an empty frame ranked by policy), boxes."""
        scores = [None] * len(self.indices) if self.scores is None else \
            [float(score) if np.isfinite(score) else None for score in self.scores]
        rows = [[loop, rank, index, score, boxes] for rank, (index, score, boxes)
                in enumerate(zip(self.indices.tolist(), scores, self.boxes, strict=True))]
        return wandb.Table(columns=["loop", "rank", "index", "score", "boxes"], data=rows)


#: the columns of the W&B table ``al/gallery``: one row per drawn pick (see :mod:`alcv.gallery`)
GALLERY_COLUMNS = ["loop", "rank", "index", "score", "frame"]


def log_loop_metrics(logger: Logger | None, metrics: dict[str, float], loop: int,
                     selected: SelectedFrames | None = None, gallery: list[list[Any]] | None = None) -> None:
    """Send one loop's metrics to ``logger``: on the ``loop`` axis for W&B, as step ``loop`` elsewhere.

    ``selected`` (the frames labeled for this loop) goes to W&B as the table ``al/selected_frames``, ``gallery``
    (rows of :data:`GALLERY_COLUMNS`: the first picks this loop made for the next, with their media) as the table
    ``al/gallery`` and its media, in pick order, as the list ``al/gallery_frames`` too: W&B writes the media of a
    table only when it is online (offline tables hold the word "Object3D" or "Image" instead; wandb issue #4611),
    a list of media in either mode.
    """
    if logger is None:
        return
    if isinstance(logger, WandbLogger):
        row: dict[str, Any] = {"loop": loop, **metrics}
        if selected is not None:
            row["al/selected_frames"] = selected.as_wandb_table(loop)
        if gallery:
            row["al/gallery"] = wandb.Table(columns=GALLERY_COLUMNS, data=gallery)
            row["al/gallery_frames"] = [media for *_, media in gallery]
        logger.experiment.log(row)
    else:
        logger.log_metrics(metrics, step=loop)


def finish(logger: Logger | None) -> None:
    """Close the run; for an offline W&B run, say where it is and how to upload it."""
    if logger is None:
        return
    logger.finalize("success")
    if isinstance(logger, WandbLogger):
        run = logger.experiment
        offline = getattr(run.settings, "mode", "") == "offline" or getattr(run.settings, "_offline", False)
        run_dir = Path(run.dir).parent
        run.finish()
        if offline:
            print(f"W&B ran offline (no account configured); upload the run with: wandb sync {run_dir}")
