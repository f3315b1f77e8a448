"""Shared fixtures: composing the packaged Hydra config as the `alcv` command would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from label_studio_server import SERVER_ENV, Server, label_studio_executable
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


def compose_config(*overrides: str, output_dir: Path, keep_hydra: bool = False, config_name: str = "config"
                   ) -> DictConfig:
    """The config `alcv *overrides` would run (`alcv-round *overrides` with ``config_name="round"``), writing into
    ``output_dir`` (with its ``hydra`` node if ``keep_hydra``)."""
    register_resolvers()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
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


#: the test files that use the session's Label Studio server (the ``label_studio`` fixture)
LABEL_STUDIO_TESTS = (Path(__file__).with_name("test_label_studio.py"),)
#: the Label Studio server this process started for them (the xdist controller's, or a run's without xdist)
_LABEL_STUDIO = pytest.StashKey[Server]()


def _runs_label_studio_tests(config: pytest.Config) -> bool:
    """Whether the command's paths include a file of LABEL_STUDIO_TESTS (the file, or a folder above it)."""
    targets = [target.resolve() for target in LABEL_STUDIO_TESTS]
    for argument in config.args:
        path = (config.invocation_params.dir / argument.split("::")[0]).resolve()
        if any(path == target or (path.is_dir() and target.is_relative_to(path)) for target in targets):
            return True
    return False


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """On the controller (or a run without xdist), start the Label Studio server of tests/test_label_studio.py in
    the background when those tests are among the paths, so that its first start (database migrations, minutes)
    overlaps the other tests; the workers find it through ``SERVER_ENV`` (inherited), and the tests wait for it.
    Without Label Studio installed nothing starts, and the tests fail naming the install command."""
    if (hasattr(config, "workerinput") or SERVER_ENV in os.environ or config.option.collectonly
            or not _runs_label_studio_tests(config)):
        return
    executable = label_studio_executable()
    if executable is None:
        return
    root = Path(tempfile.mkdtemp(prefix="alcv-label-studio-"))
    config.stash[_LABEL_STUDIO] = Server.start(root, executable)
    os.environ[SERVER_ENV] = str(root)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tests of LABEL_STUDIO_TESTS last (the others keep their order), so that the server pytest_configure
    started has the other tests' time to start in: no worker waits for it."""
    items.sort(key=lambda item: item.path in LABEL_STUDIO_TESTS)


def _stop_label_studio(config: pytest.Config) -> list[int]:
    server = config.stash.get(_LABEL_STUDIO, None)
    if server is None:
        return []
    del config.stash[_LABEL_STUDIO]
    left = server.stop()
    os.environ.pop(SERVER_ENV, None)
    if not left:
        shutil.rmtree(server.root, ignore_errors=True)
    return left


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop the Label Studio server (after every worker is done); processes it leaves behind fail the run."""
    left = _stop_label_studio(session.config)
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"Label Studio processes {left} outlived the test server's stop", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_unconfigure(config: pytest.Config) -> None:
    _stop_label_studio(config)  # when the session did not finish
