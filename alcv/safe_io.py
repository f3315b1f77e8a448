"""Writing files so that nothing already saved is lost or left half-written, and only where it belongs; reading
state back (JSON, weights) without running code."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

#: torch's switch that makes every ``torch.load`` weights-only, even where the caller asks for a full unpickle
_FORCE_WEIGHTS_ONLY = "TORCH_FORCE_WEIGHTS_ONLY_LOAD"


@contextmanager
def weights_only_loads() -> Iterator[None]:
    """Inside the block every ``torch.load`` unpickles tensors and plain containers only, never code, including
    the loads of libraries that ask for ``weights_only=False`` (torch.hub's ``load_state_dict_from_url``, which
    torchvision's pretrained weights go through)."""
    previous = os.environ.get(_FORCE_WEIGHTS_ONLY)
    os.environ[_FORCE_WEIGHTS_ONLY] = "1"
    try:
        yield
    finally:
        if previous is None:
            del os.environ[_FORCE_WEIGHTS_ONLY]
        else:
            os.environ[_FORCE_WEIGHTS_ONLY] = previous


@contextmanager
def atomic_binary_file(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A binary handle whose content replaces ``path`` atomically when the ``with`` block ends: a temporary file
    in the same folder, flushed to disk, then renamed over ``path``. An error or a crash inside the block leaves
    the previous file (or none) intact, never a part, and no temporary file behind."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_text_atomically(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_binary_file`)."""
    with atomic_binary_file(path) as handle:
        handle.write(text.encode("utf-8"))


def read_json(path: str | os.PathLike[str], what: str) -> Any:
    """The JSON document in ``path``; raises ``ValueError`` ``"<path>: not a valid <what> (<why>)"`` for a file that
    is not JSON."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not a valid {what} ({error})") from error


def refuse_non_empty(folder: Path) -> None:
    """Raise ``FileExistsError`` naming ``folder`` when it exists and is not an empty folder: writers that fill a
    whole folder never overwrite what is there."""
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise FileExistsError(f"{folder} already exists and is not an empty folder; write into a new folder")


def file_in_the_way(folder: str | os.PathLike[str]) -> Path | None:
    """The existing file that stops ``folder`` from being made (``folder`` itself, or a folder above it), or
    None."""
    path = Path(folder)
    return next((candidate for candidate in (path, *path.parents) if candidate.exists() and not candidate.is_dir()),
                None)


def checked_inside(folder: str | os.PathLike[str], path: str | os.PathLike[str], setting: str) -> Path:
    """``path`` (relative paths are taken from ``folder``) resolved, after checking that it lies in ``folder``.

    Raises:
        ValueError: naming ``setting`` (where the path came from) when the path leads outside ``folder``
            (``..``, an absolute path elsewhere, or a symbolic link out of it).
    """
    root = Path(folder).resolve()
    resolved = (root / path).resolve()
    if not resolved.is_relative_to(root):
        raise ValueError(f"{setting}: '{path}' leads outside the output folder {root}; expected a name or a "
                         "relative path inside it")
    return resolved
