"""Every config group option instantiates, every experiment composes and runs, the CLI works."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as pl
import pytest
import torch
import yaml
from conftest import TINY, TINY_CAMERA_WORLD, run_cli
from omegaconf import DictConfig

from alcv.config import CONFIG_DIR
from alcv.data.datamodule import ActiveDataModule
from alcv.data.export import coco_overrides, export_coco, export_kitti, kitti_overrides, nuscenes_overrides
from alcv.data.nuscenes_writer import write_nuscenes
from alcv.loop import run
from alcv.pool import LabelPool
from alcv.run_files import RUN_FILE
from alcv.run_records import objective, read_results

Compose = Callable[..., DictConfig]


def options(group: str) -> list[str]:
    return sorted(path.stem for path in (CONFIG_DIR / group).glob("*.yaml"))


def targets(node: Any) -> Iterator[str]:
    """Every ``_target_`` in a loaded YAML tree."""
    if isinstance(node, dict):
        if "_target_" in node:
            yield node["_target_"]
        for value in node.values():
            yield from targets(value)
    elif isinstance(node, list):
        for value in node:
            yield from targets(value)


def test_every_group_has_options_and_every_option_names_a_target() -> None:
    """Every group has options, and every ``_target_`` in the packaged configs names something that imports and
    can be called (a renamed module or class fails here, not in a user's run)."""
    for group in ("data", "model", "strategy", "loop", "trainer", "logger", "experiment"):
        assert options(group), f"config group {group} is empty"
    found = {(path.relative_to(CONFIG_DIR), target) for path in CONFIG_DIR.rglob("*.yaml")
             for target in targets(yaml.safe_load(path.read_text()))}
    assert len({target for _, target in found}) > 20
    for path, target in sorted(found):
        try:
            located = hydra.utils.get_object(target)
        except Exception as error:
            pytest.fail(f"{path}: _target_ {target} does not import: {error}")
        assert callable(located), f"{path}: _target_ {target} is not callable"


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
    elif option == "nuscenes":
        lidar_world = [override for override in TINY if override.startswith("data.dataset.world")]
        lidar = hydra.utils.instantiate(compose_cfg("data=synthetic_lidar", *lidar_world).data.dataset)
        overrides = nuscenes_overrides(write_nuscenes(lidar, tmp_path / "nuscenes"))
    datamodule = hydra.utils.instantiate(compose_cfg(f"data={option}", *overrides).data)
    assert isinstance(datamodule, ActiveDataModule)
    assert datamodule.class_names == ("vehicle", "pedestrian", "golf_cart")


@pytest.mark.parametrize(("option", "setting"), [("coco", "data.dataset.splits.pool.images"),
                                               ("kitti", "data.dataset.root"), ("nuscenes", "data.dataset.root")])
def test_data_folders_not_given_name_the_missing_setting(compose_cfg: Compose, option: str, setting: str) -> None:
    with pytest.raises(Exception, match=rf"Missing mandatory value: {setting.replace('.', '[.]')}"):
        hydra.utils.instantiate(compose_cfg(f"data={option}").data)


#: the data each detector family reads: 2D (torchvision) detectors take camera images
DATA_OF_MODEL = {"alcv.models.torchvision_module.TorchvisionDetectionModule": "synthetic_camera"}
#: the GPU-sized 2D detectors' inputs shrunk so that a CPU test runs them in seconds
SMALL_INPUT = {"fasterrcnn": ["model.detector.min_size=64", "model.detector.max_size=128"],
               "retinanet": ["model.detector.min_size=64", "model.detector.max_size=128"],
               "fcos": ["model.detector.min_size=64", "model.detector.max_size=128"],
               "ssdlite": ["model.detector.size=[64,128]"],
               # the synthetic world's points have no fifth channel, nuScenes' time lag
               "bev_nuscenes": ["model.detector.encoder.point_features=4"]}


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


def test_cli_runs_the_default_experiment_shortened(tmp_path: Path) -> None:
    result = run_cli(*TINY, "hydra.run.dir=run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    records = read_results(tmp_path / "run")
    assert [r["loop"] for r in records] == [0, 1]
    assert "loop  frames  boxes" in result.stdout  # the per-loop summary table
    assert "wandb sync" in result.stdout  # offline W&B with a hint on how to upload


#: Hydra's Ray launcher on a local Ray runtime that `ray.init` starts for the sweep (the `ray` extra)
RAY_LOCAL = ["hydra/launcher=ray", "+hydra.launcher.ray.init.num_cpus=2",
             "+hydra.launcher.ray.init.include_dashboard=false"]


@contextlib.contextmanager
def ray_kept_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Keeps a local Ray runtime's files in tmp_path; yields the override that points Ray's session folder there.

    Ray's socket paths must fit in 107 bytes, which a session folder under pytest's tmp_path does not: Ray gets a
    short link in /tmp to tmp_path/ray, removed afterwards. Its auth token comes from the environment instead of
    ~/.ray/auth_token, usage stats are off, and TMPDIR is tmp_path since Ray's workers exit without running the
    finalizers that remove W&B's temporary folders.
    """
    pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="the `ray` extra is not installed")
    session = tmp_path / "ray"
    session.mkdir()
    link = Path("/tmp") / f"alcv-ray-{secrets.token_hex(4)}"
    link.symlink_to(session, target_is_directory=True)
    monkeypatch.setenv("RAY_AUTH_TOKEN", secrets.token_hex(32))
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    try:
        yield [f"+hydra.launcher.ray.init._temp_dir={link}"]
    finally:
        link.unlink()


def processes_working_in(folder: Path) -> list[str]:
    """The command lines of the processes whose working directory is in folder (Linux; none elsewhere)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if Path(os.readlink(proc / "cwd")).is_relative_to(folder):
                found.append((proc / "cmdline").read_text().replace("\0", " ").strip())
        except OSError:  # gone meanwhile, or not ours
            continue
    return found


@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
                                      ["hydra/launcher=submitit_local"], RAY_LOCAL],
                         ids=["basic", "joblib", "submitit_local", "ray"])
def test_cli_multirun_sweeps_strategies_one_job_each(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      launcher: list[str]) -> None:
    kept = ray_kept_in(tmp_path, monkeypatch) if launcher == RAY_LOCAL else contextlib.nullcontext([])
    with kept as runtime:
        result = run_cli("-m", "experiment=al_vs_random", "seed=0", *TINY, "loop.num_loops=1", "logger=none",
                         "hydra.sweep.dir=sweep", *launcher, *runtime, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    deadline = time.monotonic() + 10  # the launcher's workers and runtime end with the sweep
    while (left := processes_working_in(tmp_path.resolve())) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left
    jobs = sorted(p.parent for p in (tmp_path / "sweep").rglob("results.jsonl"))
    strategies = sorted(read_results(job)[0]["strategy"] for job in jobs)
    assert strategies == ["least_confidence", "random"]


def test_an_optuna_sweep_optimises_what_the_runs_return(tmp_path: Path) -> None:
    """``hydra/sweeper=optuna`` on ``experiment=smoke``: 2 trials, each with its own learning rate, and the sweep's
    best value is the best trial's ``loop.objective`` (here the area under the learning curve), computed from its
    results file."""
    result = run_cli("-m", "experiment=smoke", "logger=none", "loop.objective=learning_curve_area",
                     "hydra/sweeper=optuna", "hydra.sweeper.n_trials=2", "hydra.sweeper.direction=maximize",
                     "hydra.sweeper.sampler.seed=0", "model.optimizer.lr=interval(0.0003,0.003)",
                     "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p.parent for p in (tmp_path / "sweep").rglob("results.jsonl"))
    assert len(jobs) == 2
    learning_rates = {json.loads((job / RUN_FILE).read_text())["config"]["model"]["optimizer"]["lr"] for job in jobs}
    assert len(learning_rates) == 2 and all(0.0003 <= lr <= 0.003 for lr in learning_rates)
    best = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    values = [objective(read_results(job), "learning_curve_area") for job in jobs]
    assert best["best_value"] == pytest.approx(max(values))


def test_an_unknown_strategy_lists_the_available_ones(compose_cfg: Compose) -> None:
    """What the command line prints for ``alcv strategy=margin_sampling``: Hydra's error at composition."""
    with pytest.raises(Exception, match=r"(?s)margin_sampling.*least_confidence"):
        compose_cfg("strategy=margin_sampling")
