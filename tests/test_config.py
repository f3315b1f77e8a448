"""Every config group option instantiates, every experiment composes and runs, the CLI works."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import hydra
import lightning.pytorch as pl
import pytest
import torch
from conftest import TINY, TINY_CAMERA_WORLD
from omegaconf import DictConfig

from alcv.config import CONFIG_DIR
from alcv.data.datamodule import ActiveDataModule
from alcv.data.export import coco_overrides, export_coco, export_kitti, kitti_overrides
from alcv.loop import run
from alcv.pool import LabelPool
from alcv.study.results import read_results

Compose = Callable[..., DictConfig]


def options(group: str) -> list[str]:
    return sorted(path.stem for path in (CONFIG_DIR / group).glob("*.yaml"))


def test_every_group_has_options_and_every_option_names_a_target() -> None:
    for group in ("data", "model", "strategy", "loop", "trainer", "logger", "experiment"):
        assert options(group), f"config group {group} is empty"


@pytest.mark.parametrize("option", options("data"))
def test_data_options_instantiate(compose_cfg: Compose, option: str, tmp_path: Path) -> None:
    overrides = []  # COCO and KITTI folders are the user's: read the synthetic worlds exported to them
    if option == "coco":
        camera = hydra.utils.instantiate(compose_cfg("data=synthetic_camera", *TINY_CAMERA_WORLD).data.dataset)
        overrides = coco_overrides(export_coco(camera, tmp_path / "coco"), camera.class_names)
    elif option == "kitti":
        lidar_world = [override for override in TINY if override.startswith("data.dataset.world")]
        lidar = hydra.utils.instantiate(compose_cfg("data=synthetic_lidar", *lidar_world).data.dataset)
        overrides = kitti_overrides(export_kitti(lidar, tmp_path / "kitti"))
    datamodule = hydra.utils.instantiate(compose_cfg(f"data={option}", *overrides).data)
    assert isinstance(datamodule, ActiveDataModule)
    assert datamodule.class_names == ("vehicle", "pedestrian", "golf_cart")


@pytest.mark.parametrize(("option", "setting"), [("coco", "data.dataset.splits.pool.images"),
                                               ("kitti", "data.dataset.root")])
def test_data_folders_not_given_name_the_missing_setting(compose_cfg: Compose, option: str, setting: str) -> None:
    with pytest.raises(Exception, match=rf"Missing mandatory value: {setting.replace('.', '[.]')}"):
        hydra.utils.instantiate(compose_cfg(f"data={option}").data)


#: the data each detector family reads: 2D (torchvision) detectors take camera images
DATA_OF_MODEL = {"alcv.models.torchvision_detection.TorchvisionDetectionModule": "synthetic_camera"}
#: the GPU-sized 2D detectors' inputs shrunk so that a CPU test runs them in seconds
SMALL_INPUT = {"fasterrcnn": ["model.detector.min_size=64", "model.detector.max_size=128"],
               "retinanet": ["model.detector.min_size=64", "model.detector.max_size=128"],
               "fcos": ["model.detector.min_size=64", "model.detector.max_size=128"],
               "ssdlite": ["model.detector.size=[64,128]"]}


@pytest.mark.parametrize("option", options("model"))
def test_model_options_instantiate_and_detect(compose_cfg: Compose, option: str) -> None:
    target = compose_cfg(f"model={option}").model._target_
    cfg = compose_cfg(f"model={option}", f"data={DATA_OF_MODEL.get(target, 'synthetic_lidar')}",
                      *SMALL_INPUT.get(option, []), "data.eval_batch_size=4")
    assert cfg.model.detector.get("weights") is None  # nothing is downloaded by default
    model = hydra.utils.instantiate(cfg.model)
    assert isinstance(model, pl.LightningModule)
    datamodule = hydra.utils.instantiate(cfg.data)
    pool = LabelPool(datamodule.pool_split())
    pool.label(pool.indices[:2], 0)
    datamodule.attach_pool(pool)
    batch = next(iter(datamodule.pool_dataloader()))
    model.eval()
    with torch.no_grad():
        detections = model.predict_step(batch, 0)
    assert [d.index for d in detections] == batch["index"].tolist()
    assert all(d.class_probs.shape == (len(d), 3) for d in detections)


@pytest.mark.parametrize("option", options("strategy"))
def test_strategy_options_instantiate(compose_cfg: Compose, option: str) -> None:
    strategy = hydra.utils.instantiate(compose_cfg(f"strategy={option}").strategy)
    assert strategy.name == option


@pytest.mark.parametrize("option", options("trainer"))
def test_trainer_options_compose_and_cpu_instantiates(compose_cfg: Compose, option: str) -> None:
    cfg = compose_cfg(f"trainer={option}")
    assert hydra.utils.get_class(cfg.trainer._target_) is pl.Trainer
    if cfg.trainer.accelerator == "cpu" or torch.cuda.is_available():
        assert isinstance(hydra.utils.instantiate(cfg.trainer, logger=False), pl.Trainer)


@pytest.mark.parametrize("option", options("logger"))
def test_logger_options_instantiate(compose_cfg: Compose, option: str, tmp_path: Path) -> None:
    cfg = compose_cfg(f"logger={option}")
    if cfg.logger:
        logger = hydra.utils.instantiate(cfg.logger, save_dir=str(tmp_path))
        assert isinstance(logger, pl.loggers.Logger)
        logger.finalize("success")
        if hasattr(logger.experiment, "finish"):
            logger.experiment.finish()


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_composes_and_runs_one_loop(compose_cfg: Compose, experiment: str) -> None:
    cfg = compose_cfg(f"experiment={experiment}")
    overrides = [*TINY, "loop.num_loops=1", "logger=none", "trainer=cpu"]
    if cfg.loop.study_type == "subset":  # subset studies set a fraction of the pool, not a frame count
        overrides.append("loop.initial_size=null")
    cfg = compose_cfg(f"experiment={experiment}", *overrides)
    assert cfg.experiment_name == experiment
    records = run(cfg)
    assert records[0]["experiment"] == experiment


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    alcv = Path(sys.executable).with_name("alcv")
    env = {**os.environ, "WANDB_MODE": "offline"}
    return subprocess.run([str(alcv), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_cli_runs_the_default_experiment_shortened(tmp_path: Path) -> None:
    result = run_cli(*TINY, "hydra.run.dir=run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    records = read_results(tmp_path / "run")
    assert [r["loop"] for r in records] == [0, 1]
    assert "loop  frames  boxes" in result.stdout  # the per-loop summary table
    assert "wandb sync" in result.stdout  # offline W&B with a hint on how to upload


@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
                                      ["hydra/launcher=submitit_local"]], ids=["basic", "joblib", "submitit_local"])
def test_cli_multirun_sweeps_strategies_one_job_each(tmp_path: Path, launcher: list[str]) -> None:
    result = run_cli("-m", "experiment=al_vs_random", "seed=0", *TINY, "loop.num_loops=1", "logger=none",
                     "hydra.sweep.dir=sweep", *launcher, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p.parent for p in (tmp_path / "sweep").rglob("results.jsonl"))
    strategies = sorted(read_results(job)[0]["strategy"] for job in jobs)
    assert strategies == ["least_confidence", "random"]


def test_cli_unknown_strategy_lists_the_available_ones(tmp_path: Path) -> None:
    result = run_cli("strategy=margin_sampling", cwd=tmp_path)
    assert result.returncode != 0
    assert "margin_sampling" in result.stderr and "least_confidence" in result.stderr
