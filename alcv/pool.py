"""The labeled / unlabeled state of an active-learning run.

A :class:`LabelPool` knows, for every *absolute* index of the pool split, the loop at which that frame
was labeled (``-1`` = still unlabeled). Nothing else is needed to resume a run: the labeled set of any
loop, the order in which frames were acquired and the size of every acquisition are all derived from it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from alcv.safe_io import write_text_atomically

UNLABELED = -1


class LabelPool:
    """Labeling state over a fixed set of absolute dataset indices.

    Args:
        indices: the absolute dataset indices that make up the pool (unique, any order). Frames outside
            this set (the test split, say) can never be labeled through this pool.

    Invariants: every index is either unlabeled (``-1``) or labeled at one loop ``>= 0``; indices are
    never relabeled; :meth:`label` is all-or-nothing (a bad call changes nothing).
    """

    def __init__(self, indices: Iterable[int]) -> None:
        pool_indices = np.asarray(list(indices), dtype=np.int64)
        if pool_indices.ndim != 1 or pool_indices.size == 0:
            raise ValueError("LabelPool: 'indices' must be a non-empty 1-D collection of dataset indices")
        if np.unique(pool_indices).size != pool_indices.size:
            raise ValueError("LabelPool: 'indices' contains duplicates; every frame may appear once")
        order = np.argsort(pool_indices, kind="stable")
        self._indices = pool_indices[order]
        self._labeled_at = np.full(self._indices.size, UNLABELED, dtype=np.int64)

    # ------------------------------------------------------------------ queries
    def __len__(self) -> int:
        return int(self._indices.size)

    @property
    def indices(self) -> np.ndarray:
        """All absolute indices of the pool, sorted ascending, shape ``(N,)`` int64."""
        return self._indices.copy()

    def differs_from(self, split: np.ndarray) -> str:
        """How the pool's indices differ from ``split`` (absolute dataset indices, any order), in words, e.g.
        ``"2 of its frames are not in the split (e.g. [7, 9]) and 0 frames of the split are not in it (e.g. [])"``;
        ``""`` when they are the same frames."""
        foreign, absent = np.setdiff1d(self._indices, split), np.setdiff1d(split, self._indices)
        if not (foreign.size or absent.size):
            return ""
        return (f"{foreign.size} of its frames are not in the split (e.g. {foreign[:3].tolist()}) and "
                f"{absent.size} frames of the split are not in it (e.g. {absent[:3].tolist()})")

    @property
    def labeled_at(self) -> np.ndarray:
        """Loop at which each index of :attr:`indices` was labeled (``-1`` unlabeled), shape ``(N,)``."""
        return self._labeled_at.copy()

    @property
    def labeled_indices(self) -> np.ndarray:
        """Absolute indices labeled so far, sorted ascending."""
        return self._indices[self._labeled_at != UNLABELED]

    @property
    def unlabeled_indices(self) -> np.ndarray:
        """Absolute indices still unlabeled, sorted ascending."""
        return self._indices[self._labeled_at == UNLABELED]

    @property
    def n_labeled(self) -> int:
        return int(np.count_nonzero(self._labeled_at != UNLABELED))

    @property
    def n_unlabeled(self) -> int:
        return len(self) - self.n_labeled

    @property
    def last_loop(self) -> int:
        """The highest loop at which anything was labeled, ``-1`` if nothing is labeled."""
        return int(self._labeled_at.max())

    def labeled_in_loop(self, loop: int) -> np.ndarray:
        """Absolute indices labeled at exactly ``loop``, sorted ascending."""
        return self._indices[self._labeled_at == loop]

    def contains(self, indices: Iterable[int]) -> np.ndarray:
        """Boolean mask: which of ``indices`` belong to the pool."""
        query = np.asarray(list(indices), dtype=np.int64)
        position = np.searchsorted(self._indices, query)
        position = np.clip(position, 0, self._indices.size - 1)
        return self._indices[position] == query

    # ------------------------------------------------------------------ updates
    def label(self, indices: Iterable[int], loop: int) -> None:
        """Mark absolute ``indices`` as labeled at ``loop``.

        Raises:
            ValueError: if ``loop < 0``, or any index is not in the pool, is already labeled, or appears
                twice in ``indices``. Nothing is changed when it raises.
        """
        if loop < 0:
            raise ValueError(f"LabelPool.label: 'loop' must be >= 0, got {loop}")
        query = np.asarray(list(indices), dtype=np.int64).reshape(-1)
        values, counts = np.unique(query, return_counts=True)
        if (counts > 1).any():
            raise ValueError(
                f"LabelPool.label: duplicate indices {values[counts > 1][:10].tolist()} in one call"
            )
        known = self.contains(query)
        if not known.all():
            raise ValueError(
                f"LabelPool.label: indices {query[~known][:10].tolist()} are not in the pool "
                f"(pool holds {len(self)} indices between {self._indices[0]} and {self._indices[-1]})"
            )
        position = np.searchsorted(self._indices, query)
        already = self._labeled_at[position] != UNLABELED
        if already.any():
            raise ValueError(
                f"LabelPool.label: indices {query[already][:10].tolist()} are already labeled "
                f"(at loops {self._labeled_at[position][already][:10].tolist()})"
            )
        self._labeled_at[position] = loop

    def label_random(self, count: int, loop: int, rng: np.random.Generator) -> np.ndarray:
        """Label ``count`` unlabeled indices drawn uniformly with ``rng``; returns them (sorted)."""
        unlabeled = self.unlabeled_indices
        if not 0 < count <= unlabeled.size:
            raise ValueError(
                f"LabelPool.label_random: 'count' must be in [1, {unlabeled.size}] "
                f"(the unlabeled frames left), got {count}"
            )
        chosen = np.sort(rng.choice(unlabeled, size=count, replace=False))
        self.label(chosen, loop)
        return chosen

    def until(self, loop: int) -> LabelPool:
        """A copy that keeps the labels of loops ``<= loop`` and leaves later ones unlabeled: the state as it was
        when training of ``loop`` began (what a resumed run restarts from)."""
        copy = LabelPool(self._indices)
        copy._labeled_at = np.where(self._labeled_at <= loop, self._labeled_at, UNLABELED)
        return copy

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        """A JSON-serialisable snapshot: ``{"indices": [...], "labeled_at": [...]}``."""
        return {"indices": self._indices.tolist(), "labeled_at": self._labeled_at.tolist()}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any], source: str = "state dict") -> LabelPool:
        """Rebuild a pool from :meth:`state_dict`; ``source`` names the origin in error messages."""
        for field in ("indices", "labeled_at"):
            if field not in state:
                raise ValueError(f"{source}: missing field '{field}' (expected a list of integers)")
        indices = np.asarray(state["indices"])
        labeled_at = np.asarray(state["labeled_at"])
        if indices.ndim != 1 or labeled_at.shape != indices.shape:
            raise ValueError(
                f"{source}: fields 'indices' and 'labeled_at' must be 1-D lists of equal length, "
                f"got shapes {indices.shape} and {labeled_at.shape}"
            )
        if not (np.issubdtype(indices.dtype, np.integer) and np.issubdtype(labeled_at.dtype, np.integer)):
            raise ValueError(f"{source}: fields 'indices' and 'labeled_at' must hold integers")
        if (labeled_at < UNLABELED).any():
            raise ValueError(f"{source}: field 'labeled_at' holds values below -1 (-1 means unlabeled)")
        try:
            pool = cls(indices.tolist())
        except ValueError as error:
            raise ValueError(f"{source}: field 'indices' is invalid: {error}") from error
        order = np.argsort(indices, kind="stable")
        pool._labeled_at = labeled_at[order].astype(np.int64)
        return pool

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the state as JSON atomically: a temporary file in the same folder, then a rename.

        A crash during the write leaves the previous file intact.
        """
        write_text_atomically(path, json.dumps(self.state_dict()))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LabelPool:
        """Read a file written by :meth:`save`; errors name the file and the field."""
        try:
            state = json.loads(Path(path).read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not a valid label-pool JSON file ({error})") from error
        if not isinstance(state, dict):
            raise ValueError(f"{path}: expected a JSON object with 'indices' and 'labeled_at'")
        return cls.from_state_dict(state, source=str(path))
