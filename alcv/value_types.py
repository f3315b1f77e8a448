"""What a value read from a config or a JSON file may be, by its type hint, and the words that say so: the one
rule for checked settings (:mod:`alcv.settings`) and checked results files (:mod:`alcv.run_records`).

``int`` is a whole number (``2.5`` and ``true`` are not), ``float`` any number, ``bool`` true or false, ``str``
text, ``Literal`` one of its values; unions any of their members, sequences and mappings element by element; a
path (``os.PathLike``) may be text. A hint of another class (a tensor, a callable) takes no number or text, and a
nested mapping is not judged, since Hydra builds that object from it.
"""

from __future__ import annotations

import inspect
import os
import typing
from collections.abc import Mapping, Sequence
from types import NoneType, UnionType
from typing import Any, Literal


def fits(value: Any, hint: Any, null_numbers: bool = False) -> bool:
    """Whether ``value`` (from a resolved config or a JSON file: None, bool, int, float, str, list or dict) can be
    a ``hint``; hints of kinds a config cannot hold are not judged (True). ``null_numbers``: a null may stand for
    a number anywhere (JSON files write NaN as null)."""
    if hint is Any or hint is object:
        return True
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, UnionType):
        return any(fits(value, member, null_numbers) for member in arguments)
    if origin is Literal:
        return any(value == allowed and type(value) is type(allowed) for allowed in arguments)
    if hint is NoneType or hint is None:
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return (value is None and null_numbers) or (isinstance(value, int | float) and not isinstance(value, bool))
    if hint is str:
        return isinstance(value, str)
    container = origin or hint
    if not inspect.isclass(container):
        return True
    if issubclass(container, Mapping):
        if not isinstance(value, Mapping):
            return False
        value_hint = arguments[1] if len(arguments) == 2 else Any
        return all(fits(item, value_hint, null_numbers) for item in value.values())
    if issubclass(container, Sequence) and not issubclass(container, str):
        if not isinstance(value, list | tuple):
            return False
        if container is tuple and arguments and arguments[-1] is not Ellipsis:
            return len(value) == len(arguments) and all(
                fits(item, inner, null_numbers) for item, inner in zip(value, arguments, strict=True))
        item_hint = arguments[0] if arguments else Any
        return all(fits(item, item_hint, null_numbers) for item in value)
    if isinstance(value, str | bool | int | float):  # a class a config cannot spell, but a path from text
        return isinstance(value, str) and issubclass(container, os.PathLike)
    return True


def describe(hint: Any) -> str:
    """What a value of ``hint`` is, in words."""
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, UnionType):
        return " or ".join(describe(member) for member in arguments)
    if origin is Literal:
        return "one of " + ", ".join(repr(allowed) for allowed in arguments)
    words = {NoneType: "null", bool: "true or false", int: "a whole number", float: "a number", str: "text"}
    if hint in words:
        return words[hint]
    container = origin or hint
    if inspect.isclass(container) and issubclass(container, Mapping) and len(arguments) == 2:
        return f"a mapping of {describe(arguments[0])} to {describe(arguments[1])}"
    if inspect.isclass(container) and issubclass(container, Sequence) and arguments:
        if container is tuple and arguments[-1] is not Ellipsis:
            return f"a list of {len(arguments)} items: " + ", ".join(describe(inner) for inner in arguments)
        return f"a list of {_plural(describe(arguments[0]))}"
    return getattr(hint, "__name__", str(hint))


def kind(value: Any) -> str:
    """What a config value is, in the words of :func:`describe`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "a whole number"
    if isinstance(value, float):
        return "a fractional number" if not value.is_integer() else "a number"
    if isinstance(value, str):
        return "text"
    return "a list" if isinstance(value, list | tuple) else "a mapping"


def _plural(words: str) -> str:
    """``a whole number`` -> ``whole numbers``: :func:`describe`'s words for several values (others unchanged)."""
    plurals = {"a whole number": "whole numbers", "a number": "numbers", "text": "texts", "true or false": "booleans",
               "null": "nulls"}
    return " or ".join(plurals.get(part, part) for part in words.split(" or "))
