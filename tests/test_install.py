"""The package as a user installs it: a wheel built from this checkout, installed into a new virtual environment
outside the repository, runs ``alcv experiment=smoke`` from an empty folder with the configs it ships."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

from alcv.run_records import read_results

REPOSITORY = Path(__file__).resolve().parents[1]


def test_a_wheel_installed_outside_the_repository_runs_the_smoke_experiment(tmp_path: Path) -> None:
    """The wheel holds every package of the source tree and every config of ``conf/`` (as ``alcv/conf/``), and
    ``python -m alcv.cli experiment=smoke`` runs from it in an empty folder."""
    source, wheels = tmp_path / "source", tmp_path / "wheels"
    # pip builds in the folder it is given: a copy, so that nothing is written into the repository
    shutil.copytree(REPOSITORY, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", "outputs", "multirun", "benchmarks", "docs"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels),
                            str(source)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = wheels.glob("alcv-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = {str(path.relative_to(REPOSITORY)) for path in (REPOSITORY / "alcv").rglob("__init__.py")}
    configs = {f"alcv/{path.relative_to(REPOSITORY)}" for path in (REPOSITORY / "conf").rglob("*.yaml")}
    assert packages <= names, f"packages missing from the wheel: {sorted(packages - names)}"
    assert configs <= names, f"configs missing from the wheel: {sorted(configs - names)}"

    # a new environment that borrows only the dependencies (torch & co.) of this one: its own site-packages
    # come first, and this environment's editable alcv is not on its path
    environment = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(environment)], check=True, timeout=120)
    python = environment / "bin" / "python"
    own = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                         capture_output=True, text=True, check=True).stdout.strip()
    Path(own, "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", own,
                                str(wheel)], capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]

    empty = tmp_path / "elsewhere"
    empty.mkdir()
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": ""}
    where = subprocess.run([str(python), "-c", "import alcv; print(alcv.__file__)"], cwd=empty, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(own)
    ran = subprocess.run([str(python), "-m", "alcv.cli", "experiment=smoke", "logger=none",
                          "trainer.enable_progress_bar=false", "hydra.run.dir=run"], cwd=empty, env=env,
                         capture_output=True, text=True, timeout=600)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert [record["loop"] for record in read_results(empty / "run")] == [0, 1]
