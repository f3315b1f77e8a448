"""Shared fixtures: composing the packaged Hydra config as the `alcv` command would."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from alcv.config import CONFIG_DIR, register_resolvers
from alcv.run_records import RESULTS_FILE

if "PYTEST_XDIST_WORKER" in os.environ:
    # pytest-xdist starts one worker per core: each computes on one thread, and so do the processes its tests
    # start (they inherit the environment), so that workers do not fight over the cores
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

#: a world and a training length that run a loop in seconds on a CPU
TINY = [
    "data.dataset.world.pool_frames=60",
    "data.dataset.world.val_frames=15",
    "data.dataset.world.test_frames=30",
    "data.dataset.world.drive_frames=[10,20]",
    "data.batch_size=4",
    "data.eval_batch_size=8",
    "data.epoch_size=24",
    "data.epoch_passes=null",
    "loop.initial_size=10",
    "loop.query_size=10",
    "loop.num_loops=2",
    "++loop.gallery_frames=0",  # the tests of the gallery turn it on (++: subset loops have no such key)
    "trainer.enable_progress_bar=false",
]


#: a synthetic camera world as small as TINY's
TINY_CAMERA_WORLD = [
    "data.dataset.world.lidar_world.pool_frames=60",
    "data.dataset.world.lidar_world.val_frames=15",
    "data.dataset.world.lidar_world.test_frames=30",
    "data.dataset.world.lidar_world.drive_frames=[10,20]",
]

#: the same for the 2D default: the synthetic camera world and the small FCOS
TINY_2D = [
    "data=synthetic_camera",
    "model=fcos_tiny",
    *TINY_CAMERA_WORLD,
    *(override for override in TINY if not override.startswith("data.dataset.world")),
]


@pytest.fixture(autouse=True)
def _offline_wandb(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """W&B never reaches a server in tests, and never writes outside the test's folder."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    monkeypatch.setenv("WANDB_SILENT", "true")


def compose_config(*overrides: str, output_dir: Path, keep_hydra: bool = False) -> DictConfig:
    """The config `alcv *overrides` would run, writing into ``output_dir`` (with its ``hydra`` node if
    ``keep_hydra``)."""
    register_resolvers()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.output_dir = str(output_dir)
        if not keep_hydra:
            del cfg.hydra
    return cfg


@pytest.fixture
def compose_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """``compose_cfg(*overrides)`` -> the config `alcv *overrides` would run, writing into tmp_path."""

    def _compose(*overrides: str, output_dir: Path | None = None) -> DictConfig:
        return compose_config(*overrides, output_dir=output_dir or tmp_path / "run")

    return _compose


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``alcv *args`` in a new process (W&B offline), with ``env`` added to the environment."""
    alcv = Path(sys.executable).with_name("alcv")
    environment = {**os.environ, "WANDB_MODE": "offline", **(env or {})}
    return subprocess.run([str(alcv), *args], cwd=cwd, env=environment, capture_output=True, text=True,
                          timeout=600)


def as_if_killed_during(run_dir: Path, loop: int) -> list[str]:
    """Cut the run's ``results.jsonl`` to the lines of loops before ``loop``, as if the run had been killed during
    ``loop`` (a resumed run redoes it); returns the lines it had."""
    lines = (run_dir / RESULTS_FILE).read_text().splitlines(keepends=True)
    (run_dir / RESULTS_FILE).write_text("".join(lines[:loop]))
    return lines


class CodeRunningPickle:
    """A pickle payload that creates the file ``marker`` when unpickled: what a weights-only load must refuse."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))
