"""Shared fixtures: composing the packaged Hydra config as the `alcv` command would."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from alcv.config import CONFIG_DIR, register_resolvers

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


@pytest.fixture
def compose_cfg(tmp_path: Path) -> Iterator[Callable[..., DictConfig]]:
    """``compose_cfg(*overrides)`` -> the config `alcv *overrides` would run, writing into tmp_path."""
    register_resolvers()
    GlobalHydra.instance().clear()

    def _compose(*overrides: str, output_dir: Path | None = None) -> DictConfig:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            cfg.output_dir = str(output_dir or tmp_path / "run")
            del cfg.hydra
        return cfg

    yield _compose
    GlobalHydra.instance().clear()
