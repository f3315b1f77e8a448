"""LabelPool: the labeled/unlabeled partition, all-or-nothing labeling, and atomic persistence."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import alcv.safe_io
from alcv.pool import UNLABELED, LabelPool

#: absolute indices in no particular order, with gaps: nothing may assume positions
SCATTERED = [1000, 7, 42, 3]


def _partition_holds(pool: LabelPool) -> None:
    labeled, unlabeled = set(pool.labeled_indices.tolist()), set(pool.unlabeled_indices.tolist())
    assert labeled.isdisjoint(unlabeled)
    assert labeled | unlabeled == set(pool.indices.tolist())
    assert pool.n_labeled + pool.n_unlabeled == len(pool)
    assert pool.n_labeled == len(labeled) and pool.n_unlabeled == len(unlabeled)


# ---------------------------------------------------------------------------------------------- state
def test_new_pool_is_all_unlabeled_and_sorted() -> None:
    pool = LabelPool(SCATTERED)
    assert len(pool) == 4
    assert pool.indices.tolist() == [3, 7, 42, 1000]
    assert pool.unlabeled_indices.tolist() == [3, 7, 42, 1000]
    assert pool.labeled_indices.size == 0
    assert pool.labeled_at.tolist() == [UNLABELED] * 4
    assert pool.n_labeled == 0 and pool.n_unlabeled == 4
    assert pool.last_loop == -1
    _partition_holds(pool)


@pytest.mark.parametrize("indices", [[], [[1, 2], [3, 4]], [5, 6, 5]])
def test_constructor_rejects_empty_nested_or_duplicate_indices(indices: list[Any]) -> None:
    with pytest.raises(ValueError, match="indices"):
        LabelPool(indices)


def test_labeling_with_scattered_absolute_indices() -> None:
    pool = LabelPool(SCATTERED)
    pool.label([1000, 3], loop=0)
    pool.label([42], loop=2)

    # labeled_at is aligned with the sorted `indices` [3, 7, 42, 1000]
    assert pool.labeled_at.tolist() == [0, UNLABELED, 2, 0]
    assert pool.labeled_indices.tolist() == [3, 42, 1000]
    assert pool.unlabeled_indices.tolist() == [7]
    assert pool.labeled_in_loop(0).tolist() == [3, 1000]
    assert pool.labeled_in_loop(2).tolist() == [42]
    assert pool.labeled_in_loop(1).size == 0
    assert pool.last_loop == 2
    _partition_holds(pool)


def test_contains_is_exact_below_between_and_above_the_pool() -> None:
    pool = LabelPool(SCATTERED)
    query = [7, 8, 1000, 0, 2000, 3, 41]
    assert pool.contains(query).tolist() == [True, False, True, False, False, True, False]


def test_returned_arrays_are_copies() -> None:
    """Editing what a query returns must not edit the pool."""
    pool = LabelPool(SCATTERED)
    pool.indices[0] = 999
    pool.labeled_at[0] = 5
    assert pool.indices.tolist() == [3, 7, 42, 1000]
    assert pool.n_labeled == 0


# -------------------------------------------------------------------------------- label: refusals
def _labeled_pool() -> LabelPool:
    pool = LabelPool(SCATTERED)
    pool.label([7], loop=0)
    return pool


@pytest.mark.parametrize(
    ("indices", "loop", "message"),
    [
        ([42, 5, 99], 1, r"indices [5, 99] are not in the pool"),
        ([42, 7], 1, r"indices [7] are already labeled"),
        ([3, 42, 3], 1, r"duplicate indices [3]"),
        ([42], -1, r"'loop' must be >= 0, got -1"),
    ],
    ids=["unknown", "already-labeled", "duplicate", "negative-loop"],
)
def test_bad_label_call_names_the_offenders_and_changes_nothing(
    indices: list[int], loop: int, message: str
) -> None:
    pool = _labeled_pool()
    before = pool.state_dict()
    with pytest.raises(ValueError, match=re.escape(message)):
        pool.label(indices, loop=loop)
    # 42 is valid in every call above, yet must not have been labeled by the refused call
    assert pool.state_dict() == before


def test_label_with_no_indices_changes_nothing() -> None:
    pool = _labeled_pool()
    before = pool.state_dict()
    pool.label([], loop=3)
    assert pool.state_dict() == before


# -------------------------------------------------------------------------------- label_random
def test_label_random_is_reproducible_and_labels_what_it_returns() -> None:
    first, second = LabelPool(range(0, 200, 3)), LabelPool(range(0, 200, 3))
    chosen = first.label_random(10, loop=0, rng=np.random.default_rng(11))
    again = second.label_random(10, loop=0, rng=np.random.default_rng(11))

    assert chosen.tolist() == again.tolist()
    assert chosen.tolist() == sorted(set(chosen.tolist()))  # sorted, distinct
    assert set(chosen.tolist()) <= set(range(0, 200, 3))
    assert first.labeled_in_loop(0).tolist() == chosen.tolist()
    assert first.state_dict() == second.state_dict()


def test_label_random_differs_across_seeds_and_skips_labeled_frames() -> None:
    pool_a, pool_b = LabelPool(range(100)), LabelPool(range(100))
    pool_a.label(range(50), loop=0)
    pool_b.label(range(50), loop=0)
    a = pool_a.label_random(10, loop=1, rng=np.random.default_rng(0))
    b = pool_b.label_random(10, loop=1, rng=np.random.default_rng(1))
    assert a.tolist() != b.tolist()
    assert a.min() >= 50 and b.min() >= 50  # never an already-labeled frame


@pytest.mark.parametrize("count", [0, -1, 4])
def test_label_random_rejects_counts_outside_what_is_left(count: int) -> None:
    pool = LabelPool(SCATTERED)
    pool.label([7], loop=0)  # 3 unlabeled frames left
    before = pool.state_dict()
    with pytest.raises(ValueError, match=re.escape("'count' must be in [1, 3]") + ".*" + str(count)):
        pool.label_random(count, loop=1, rng=np.random.default_rng(0))
    assert pool.state_dict() == before


def test_label_random_can_take_every_frame_left() -> None:
    pool = LabelPool(SCATTERED)
    pool.label([7], loop=0)
    assert pool.label_random(3, loop=1, rng=np.random.default_rng(0)).tolist() == [3, 42, 1000]
    assert pool.n_unlabeled == 0


# -------------------------------------------------------------------------------- state dict
def test_state_dict_round_trip_is_json_serialisable() -> None:
    pool = LabelPool(SCATTERED)
    pool.label([42, 3], loop=0)
    pool.label([1000], loop=1)
    state = json.loads(json.dumps(pool.state_dict()))
    assert state == {"indices": [3, 7, 42, 1000], "labeled_at": [0, -1, 0, 1]}

    restored = LabelPool.from_state_dict(state)
    assert restored.state_dict() == pool.state_dict()
    assert restored.labeled_in_loop(1).tolist() == [1000]
    restored.label([7], loop=2)  # the restored pool is a working pool
    assert restored.n_unlabeled == 0


def test_from_state_dict_keeps_each_index_with_its_own_loop_when_unsorted() -> None:
    restored = LabelPool.from_state_dict({"indices": [42, 3, 1000, 7], "labeled_at": [1, -1, 0, -1]})
    assert restored.indices.tolist() == [3, 7, 42, 1000]
    assert restored.labeled_at.tolist() == [-1, -1, 1, 0]


# -------------------------------------------------------------------------------- save / load
def test_save_load_round_trip(tmp_path: Path) -> None:
    pool = LabelPool(SCATTERED)
    pool.label([1000], loop=0)
    path = tmp_path / "nested" / "folder" / "pool.json"  # missing folders are created
    pool.save(path)
    assert json.loads(path.read_text()) == pool.state_dict()
    assert LabelPool.load(path).state_dict() == pool.state_dict()
    assert [p.name for p in path.parent.iterdir()] == ["pool.json"]


def test_save_overwrites_the_previous_state(tmp_path: Path) -> None:
    pool = LabelPool(SCATTERED)
    path = tmp_path / "pool.json"
    pool.save(path)
    pool.label([3, 7], loop=0)
    pool.save(path)
    assert LabelPool.load(path).labeled_indices.tolist() == [3, 7]
    assert [p.name for p in tmp_path.iterdir()] == ["pool.json"]


def _killed_while_writing(descriptor: int) -> None:
    raise KeyboardInterrupt  # the temporary file is written but not yet on disk nor renamed: the "crash"


def _failing_replace(src: Any, dst: Any) -> None:
    raise OSError("disk full")


@pytest.mark.parametrize(("module", "name", "sabotage", "error"), [
    (alcv.safe_io.os, "fsync", _killed_while_writing, KeyboardInterrupt),  # killed while writing
    (alcv.safe_io.os, "replace", _failing_replace, OSError),  # the rename fails
])
def test_a_failed_save_leaves_the_previous_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: Any, name: str, sabotage: Any, error: type
) -> None:
    pool = LabelPool(SCATTERED)
    path = tmp_path / "pool.json"
    pool.save(path)
    saved = path.read_bytes()

    pool.label([42], loop=0)
    monkeypatch.setattr(module, name, sabotage)
    with pytest.raises(error):
        pool.save(path)
    monkeypatch.undo()

    assert path.read_bytes() == saved
    assert [p.name for p in tmp_path.iterdir()] == ["pool.json"]
    assert LabelPool.load(path).n_labeled == 0


@pytest.mark.parametrize(
    ("content", "field"),
    [
        ('{"indices": [1, 2], "labeled_at": [-1', "JSON"),  # truncated file
        ("[1, 2, 3]", "indices"),  # not an object
        ('{"labeled_at": [-1, -1]}', "'indices'"),
        ('{"indices": [1, 2]}', "'labeled_at'"),
        ('{"indices": [1.5, 2], "labeled_at": [-1, -1]}', "'indices'"),
        ('{"indices": [1, 2], "labeled_at": ["-1", "0"]}', "'labeled_at'"),
        ('{"indices": [1, 2], "labeled_at": [true, false]}', "'labeled_at'"),
        ('{"indices": [1, 2], "labeled_at": [-1]}', "'labeled_at'"),  # length mismatch
        ('{"indices": 5, "labeled_at": 0}', "'indices'"),  # scalars, not lists
        ('{"indices": [1, 2], "labeled_at": [-1, -2]}', "'labeled_at'"),  # below -1
        ('{"indices": [4, 4], "labeled_at": [-1, 0]}', "'indices'"),  # duplicates
    ],
    ids=["truncated", "not-object", "no-indices", "no-labeled_at", "float-indices", "string-loops",
         "bool-loops", "length-mismatch", "scalars", "loop-below-minus-one", "duplicate-indices"],
)
def test_load_of_a_bad_file_names_the_file_and_the_field(tmp_path: Path, content: str, field: str) -> None:
    path = tmp_path / "pool.json"
    path.write_text(content)
    with pytest.raises(ValueError) as raised:
        LabelPool.load(path)
    message = str(raised.value)
    assert str(path) in message
    assert field in message


# -------------------------------------------------------------------------------- property
@settings(max_examples=60, deadline=None)
@given(
    indices=st.sets(st.integers(0, 10_000), min_size=1, max_size=25),
    data=st.data(),
)
def test_any_sequence_of_label_calls_keeps_the_partition_and_never_relabels(
    indices: set[int], data: st.DataObject
) -> None:
    pool = LabelPool(sorted(indices, reverse=True))
    loop_of: dict[int, int] = {}
    for loop in range(data.draw(st.integers(1, 6), label="calls")):
        unlabeled = pool.unlabeled_indices.tolist()
        chosen: list[int] = []
        if unlabeled:
            chosen = data.draw(st.lists(st.sampled_from(unlabeled), unique=True), label="chosen")
        pool.label(data.draw(st.permutations(chosen)), loop=loop)
        loop_of.update(dict.fromkeys(chosen, loop))

        if loop_of:  # relabeling anything already labeled is refused and changes nothing
            before = pool.state_dict()
            again = data.draw(st.sampled_from(sorted(loop_of)), label="again")
            with pytest.raises(ValueError, match="already labeled"):
                pool.label([again], loop=loop + 1)
            assert pool.state_dict() == before

        _partition_holds(pool)
        assert dict(zip(pool.labeled_indices.tolist(), pool.labeled_at[pool.labeled_at >= 0].tolist(),
                        strict=True)) == loop_of


def test_until_drops_the_labels_of_later_loops_and_leaves_the_pool_as_it_is() -> None:
    pool = LabelPool(SCATTERED)
    for loop, frames in enumerate(([3, 7], [1000], [42])):
        pool.label(frames, loop)
    earlier = pool.until(1)
    assert earlier.labeled_indices.tolist() == [3, 7, 1000]
    assert earlier.labeled_in_loop(1).tolist() == [1000] and earlier.labeled_in_loop(2).size == 0
    assert pool.labeled_in_loop(2).tolist() == [42]  # the original keeps every label
    earlier.label([42], loop=2)  # what was dropped can be labeled again in the copy
