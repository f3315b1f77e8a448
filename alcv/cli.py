"""Command-line entry points: thin ``@hydra.main`` wrappers over plain functions."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from alcv.config import CONFIG_DIR, register_resolvers
from alcv.loop import run
from alcv.run_records import objective

register_resolvers()


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def main(cfg: DictConfig) -> float:
    """``alcv [overrides]``: run one active-learning experiment (``-m`` for a sweep). Returns its
    ``loop.objective`` (:func:`alcv.run_records.objective`), which Hydra's optimising sweepers (Optuna) maximise
    or minimise."""
    return objective(run(cfg), cfg.loop.objective)


if __name__ == "__main__":
    main()
