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


def plain_name(name: object) -> str:
    """``experiment_name`` as text, after checking that it is a plain name: one path component, not ``.`` or
    ``..``, since it names a folder (``outputs/<experiment_name>/...``) that must not lead elsewhere.

    Raises:
        ValueError: naming the setting and the name.
    """
    text = str(name)
    if not text or text in (".", "..") or "/" in text or "\\" in text:
        raise ValueError(f"experiment_name={text!r}: expected a plain name, since it names the run's folder "
                         "(outputs/<experiment_name>/...): no '/' or '\\', and not '.' or '..'")
    return text


def register_resolvers() -> None:
    """``${len:...}``: the length of a list in the config (e.g. the number of classes); ``${plain_name:...}``: the
    value, refused unless a plain name (:func:`plain_name`), for names that build the run folder's path."""
    if not OmegaConf.has_resolver("len"):
        OmegaConf.register_new_resolver("len", lambda value: len(value))
    if not OmegaConf.has_resolver("plain_name"):
        OmegaConf.register_new_resolver("plain_name", plain_name)
