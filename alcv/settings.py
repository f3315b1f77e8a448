"""Typed settings: every value of a run's config is checked against the type it must have before anything is
built or written, so that a wrong one is refused with its full key, its value and what was expected.

Two sources of types, one checker (:func:`check_settings`):

- the settings that no constructor receives whole, the loop's, the aggregation axis and the top level, are the
  dataclasses below (:class:`LoopSettings`, :class:`AggregationSettings`, :class:`RunSettings`);
- every node with a ``_target_`` (data, dataset, world, model, detector, optimiser, strategy, trainer, callbacks)
  is checked against the type hints of what it names: the parameters of the class or function that Hydra will
  call with those settings. A key that is none of its parameters is refused too (it would end in an "unexpected
  keyword argument" traceback), unless it takes ``**kwargs``.

What a value may be, by its type hint, is :func:`alcv.value_types.fits`. Ranges and relations between settings are
checked where they are used (e.g. :func:`alcv.loop.check_loop_config`).
"""

from __future__ import annotations

import contextlib
import inspect
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import hydra
import yaml
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from alcv.config import CONFIG_DIR
from alcv.run_records import OBJECTIVES
from alcv.strategies import AGGREGATIONS, BUDGET_UNITS, EMPTY_FRAME_POLICIES
from alcv.value_types import describe, fits, kind

#: what ``loop.study_type`` can be: active learning, or one model on a random subset (the variance study)
STUDY_TYPES = ("active_learning", "subset")
#: keys of a ``_target_`` node that are Hydra's instructions, not arguments
_HYDRA_KEYS = frozenset({"_target_", "_partial_", "_recursive_", "_convert_", "_args_"})


@dataclass
class CostSettings:
    """``loop.cost``: what labeling a frame costs in box equivalents (``frame + box x`` its boxes scored at least
    ``min_score``)."""

    frame: float = 1.0
    box: float = 1.0
    min_score: float = 0.3


@dataclass
class SpreadSettings:
    """``loop.spread``: at most ``max_per_drive`` picks per drive, no two within ``min_gap_seconds`` (seconds)."""

    max_per_drive: int | None = None
    min_gap_seconds: float | None = None
    strict: bool = False


@dataclass
class LoopSettings:
    """``loop``: the study's schedule, budget and rules (the documented copy is ``conf/loop/default.yaml``).
    ``query_size`` is a number because a budget in boxes may be fractional; in frames it must be whole."""

    study_type: Literal[STUDY_TYPES] = "active_learning"
    initial_size: int | None = 100
    initial_fraction: float | None = None
    query_size: float = 100
    budget_unit: Literal[BUDGET_UNITS] = "frames"
    cost: CostSettings = field(default_factory=CostSettings)
    spread: SpreadSettings = field(default_factory=SpreadSettings)
    num_loops: int = 5
    gallery_frames: int = 4
    pool_truth: bool = True
    reset_weights: bool = True
    keep_weights: bool = False
    objective: Literal[OBJECTIVES] = "final_map"


@dataclass
class AggregationSettings:
    """``aggregation``: how a frame's box uncertainties become one score."""

    how: Literal[AGGREGATIONS] = "max"
    top_k: int = 3
    min_score: float = 0.1
    class_weights: dict[str, float] | None = None
    empty_frames: Literal[EMPTY_FRAME_POLICIES] = "least_uncertain"


@dataclass
class RoundSettings:
    """``round``: a labeling round's folder and rules (``conf/round.yaml`` documents them)."""

    dir: str = ""
    allow_missing: bool = False
    min_score: float = 0.3


@dataclass
class RunSettings:
    """The top level's own settings (the groups are checked by their own schema or target)."""

    experiment_name: str = "default"
    seed: int = 0
    output_dir: str = ""
    callbacks: dict[str, Any] = field(default_factory=dict)


#: the sections with a dataclass schema, by key ("" is the top level)
SCHEMAS: dict[str, type] = {"": RunSettings, "loop": LoopSettings, "aggregation": AggregationSettings,
                             "round": RoundSettings}


class UnknownSetting(ValueError):
    """A key that is no setting of what receives it; ``key`` is its full key."""

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key


def check_settings(config: Mapping[str, Any], experiment: str | None = None) -> None:
    """Check a run's resolved config (plain containers, e.g. ``OmegaConf.to_container(cfg, resolve=True)``)
    against :data:`SCHEMAS` and every ``_target_``'s parameters. ``experiment``: the ``experiment=`` option the
    config was composed with, if any; an unknown key that it sets is reported with the options of that group it
    fits (e.g. ``experiment=smoke`` sets the synthetic world's size, which a KITTI dataset does not have).

    Raises:
        ValueError: ``<key>=<value>: expected <what>, got <what it is>``, or ``<key> is not a setting of
            <owner> (its settings: ...)``, for the first wrong value found.
    """
    try:
        for section, schema in SCHEMAS.items():
            values = config.get(section) if section else config
            if isinstance(values, Mapping):
                _check_dataclass(values, schema, section, top_level=not section)
        _check_targets(config, "")
    except UnknownSetting as error:
        note = experiment_fit(experiment, error.key) if experiment else ""
        raise ValueError(f"{error}{note}") from None


def experiment_choice(choices: Mapping[str, Any]) -> str | None:
    """The ``experiment=`` option among Hydra's runtime ``choices`` of a composed config (None: none)."""
    choice = choices.get("experiment")
    return None if choice in (None, "null") else str(choice)


def composed_experiment() -> str | None:
    """The ``experiment=`` option of the config Hydra composed for this process (None: none, or no Hydra)."""
    return experiment_choice(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else None


def experiment_fit(experiment: str, key: str) -> str:
    """If the packaged ``experiment`` option sets ``key`` (or keys under it): a note naming the options of the
    key's group that have every key the experiment sets in that group; else ``""``."""
    path = CONFIG_DIR / "experiment" / f"{experiment}.yaml"
    if not path.is_file():
        return ""
    group = key.split(".", 1)[0]
    set_here = {name for name in _keys(yaml.safe_load(path.read_text()) or {}) if name.startswith(f"{group}.")}
    if not any(name == key or name.startswith(f"{key}.") for name in set_here):
        return ""
    needed = {name.split(".", 1)[1] for name in set_here}
    fitting = sorted(option.stem for option in (CONFIG_DIR / group).glob("*.yaml")
                     if needed <= _keys(_option_config(CONFIG_DIR / group, option.stem)))
    return (f"; experiment={experiment} sets {group} settings that only "
            + (f"{group}={', '.join(fitting)} " if fitting else "no packaged option of the group ")
            + f"have: use it with {'one of those' if fitting else 'data of your own that has them'}, or run "
              "without it")


def _option_config(folder: Path, name: str) -> dict[str, Any]:
    """A group option's YAML merged over the options of the same group that its ``defaults`` list names."""
    loaded = yaml.safe_load((folder / f"{name}.yaml").read_text()) or {}
    parents = [_option_config(folder, parent) for parent in loaded.pop("defaults", []) or []
               if isinstance(parent, str) and (folder / f"{parent}.yaml").is_file()]
    return OmegaConf.to_container(OmegaConf.merge(*parents, loaded))


def _keys(node: Mapping[str, Any], prefix: str = "") -> set[str]:
    """Every key of a nested mapping, leaves and the ones above them, joined with dots (``defaults`` and
    ``hydra`` left out, ``# @package`` lines are comments)."""
    keys = set()
    for key, value in node.items():
        if key in ("defaults", "hydra"):
            continue
        full = f"{prefix}{key}"
        keys.add(full)
        if isinstance(value, Mapping):
            keys |= _keys(value, f"{full}.")
    return keys


def _check_dataclass(values: Mapping[str, Any], schema: type, key: str, top_level: bool = False) -> None:
    """``values`` against the fields of the dataclass ``schema`` (``key``: their section's full key); at the top
    level, keys that are no field are the config groups, checked on their own."""
    hints = typing.get_type_hints(schema)
    names = {item.name for item in fields(schema)}
    for name, value in values.items():
        full = f"{key}.{name}" if key else name
        if name not in names:
            if top_level:
                continue
            raise UnknownSetting(f"{full} is not a setting of {key} (its settings: "
                                 f"{', '.join(sorted(names))})", full)
        hint = hints[name]
        if is_dataclass(hint) and isinstance(value, Mapping):
            _check_dataclass(value, hint, full)
        else:
            _check_value(value, hint, full)


def _check_targets(node: Any, key: str) -> None:
    """Every ``_target_`` node under ``node`` (``key``: its full key), depth first."""
    if isinstance(node, Mapping):
        if isinstance(node.get("_target_"), str):
            _check_target(node, key)
        for name, value in node.items():
            _check_targets(value, f"{key}.{name}" if key else str(name))
    elif isinstance(node, list):
        for position, value in enumerate(node):
            _check_targets(value, f"{key}[{position}]")


def _check_target(node: Mapping[str, Any], key: str) -> None:
    target = node["_target_"]
    try:
        called = hydra.utils.get_object(target)
    except Exception as error:  # Hydra raises several kinds; all mean the same to the user
        raise ValueError(f"{key + '.' if key else ''}_target_={target!r}: does not name an importable class or "
                         f"function ({error})") from error
    try:
        parameters = inspect.signature(called).parameters
    except (TypeError, ValueError):  # a builtin without a signature: nothing to check against
        return
    hints = _type_hints(called)
    takes_any = any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters.values())
    named = [name for name, parameter in parameters.items()
             if parameter.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
    for name, value in node.items():
        if name in _HYDRA_KEYS:
            continue
        full = f"{key}.{name}" if key else str(name)
        if name not in named:
            if takes_any:
                continue
            raise UnknownSetting(f"{full} is not a setting of {target} (its settings: {', '.join(named) or 'none'})",
                                 full)
        if isinstance(value, Mapping) and "_target_" in value:
            continue  # built by Hydra from its own node, checked there
        if value is None and parameters[name].default is None:
            continue  # the parameter's own default, whatever its hint says
        if name in hints:
            _check_value(value, hints[name], full)


def _type_hints(called: Any) -> dict[str, Any]:
    """The parameters' type hints of a class's ``__init__`` or a function; those that cannot be resolved (names
    imported only for type checkers) are left out."""
    function = called.__init__ if inspect.isclass(called) else called
    try:
        return typing.get_type_hints(function)
    except Exception:  # some hint does not resolve: resolve each one alone
        hints = {}
        for name, annotation in getattr(function, "__annotations__", {}).items():
            alone = SimpleNamespace(__annotations__={name: annotation},
                                    __globals__=getattr(function, "__globals__", {}))
            with contextlib.suppress(Exception):  # this hint cannot be judged; the others still are
                hints.update(typing.get_type_hints(alone))
        return hints


def _check_value(value: Any, hint: Any, key: str) -> None:
    if not fits(value, hint):
        raise ValueError(f"{key}={value!r}: expected {describe(hint)}, got {kind(value)}")
