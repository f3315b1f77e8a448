"""Command-line entry points: thin ``@hydra.main`` wrappers over plain functions."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import hydra
from omegaconf import DictConfig

from alcv.config import CONFIG_DIR, register_resolvers
from alcv.loop import run
from alcv.rounds import run_round
from alcv.run_records import objective
from alcv.safe_io import file_in_the_way

register_resolvers()

#: the overrides that name the folder Hydra makes before the run starts
FOLDER_OVERRIDES = ("hydra.run.dir", "hydra.sweep.dir", "round.dir")


def folder_in_the_way(arguments: Sequence[str]) -> str | None:
    """Why a run folder given on the command line (:data:`FOLDER_OVERRIDES`) cannot be made: it, or a folder
    above it, is a file; None if none is (values with interpolations are left to Hydra)."""
    for argument in arguments:
        key, _, value = argument.lstrip("+").partition("=")
        if key not in FOLDER_OVERRIDES or not value or "${" in value:
            continue
        if (blocking := file_in_the_way(value)) is not None:
            return (f"{key}={value}: {blocking} is a file, so the run's folder cannot be made there; expected a "
                    "folder (a new one, or that of an earlier run to resume)")
    return None


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def _main(cfg: DictConfig) -> float:
    return objective(run(cfg), cfg.loop.objective)


def main() -> None:
    """``alcv [overrides]``: run one active-learning experiment (``-m`` for a sweep). Hydra's optimising sweepers
    (Optuna) maximise or minimise what each run returns, its ``loop.objective``
    (:func:`alcv.run_records.objective`). A run folder that is a file is refused before Hydra would make it."""
    problem = folder_in_the_way(sys.argv[1:])
    if problem is not None:
        sys.exit(f"alcv: {problem}")
    _main()


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="round")
def _round_main(cfg: DictConfig) -> None:
    run_round(cfg)


def round_main() -> None:
    """``alcv-round round.dir=DIR [overrides]``: run the next labeling round in ``DIR`` (:mod:`alcv.rounds`); a
    round folder that is a file is refused before Hydra would make it."""
    problem = folder_in_the_way(sys.argv[1:])
    if problem is not None:
        sys.exit(f"alcv-round: {problem}")
    _round_main()


if __name__ == "__main__":
    main()
