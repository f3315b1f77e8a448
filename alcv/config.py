"""Hydra/OmegaConf set-up shared by the command line and the tests."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

#: the packaged configuration folder (installed with alcv, so `alcv` works outside the repository)
CONFIG_DIR = Path(__file__).parent / "conf"


def register_resolvers() -> None:
    """``${len:...}``: the length of a list in the config (e.g. the number of classes)."""
    if not OmegaConf.has_resolver("len"):
        OmegaConf.register_new_resolver("len", lambda value: len(value))
