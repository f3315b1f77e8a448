"""Hydra/OmegaConf set-up shared by the command line and the tests."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf


def _config_dir() -> Path:
    """The configuration folder: ``alcv/conf`` in an installed wheel (the build maps the repository's top-level
    ``conf/`` there, see ``pyproject.toml``), or ``conf/`` beside the package in a source checkout (an editable
    install)."""
    installed = Path(__file__).parent / "conf"
    return installed if installed.is_dir() else Path(__file__).parents[1] / "conf"


#: the configuration folder that `alcv` composes from
CONFIG_DIR = _config_dir()


def register_resolvers() -> None:
    """``${len:...}``: the length of a list in the config (e.g. the number of classes)."""
    if not OmegaConf.has_resolver("len"):
        OmegaConf.register_new_resolver("len", lambda value: len(value))
