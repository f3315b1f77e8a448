"""DDP on the CPU (gloo, 2 processes): pool inference combined by absolute index, rank 0 selecting and every
rank labeling its pool give the single-process selection, with uneven shards and with a sampler that pads them;
and the whole loop runs under DDP from the command line.

What DDP adds is checked exactly, with a stand-in detector whose per-frame statistics cannot depend on the
batching (:class:`~ddp_pool_selection.FrameKeyedDetector`). With a real detector, float32 results computed under
other batchings and thread counts are not bit-identical on every CPU, so its scores are compared up to
:data:`RELATIVE_TOLERANCE` and its selection up to near-ties at the cut-off.

Lightning's ``ddp`` strategy starts the other rank by running the command again, which must not be pytest: every
DDP run here is a subprocess, on a free loopback port, writing only under the test's temporary folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import TINY, as_if_killed_during
from ddp_pool_selection import DDP_RUNS, WRITER_RANK, DDPRun, predict_and_select

from alcv.pool import LabelPool
from alcv.run_files import POOL_STATE_FILE
from alcv.run_records import SELECTIONS_FILE, read_jsonl, read_results

WORLD_SIZE = 2
#: how closely a real detector's float32 statistics under DDP must match one process's, relative to the largest
#: magnitude in the column (float32's epsilon is 1.2e-7; differences of about 1e-7 have been seen)
RELATIVE_TOLERANCE = 1e-5
#: each DDP run here takes about 20 s on two cores; past this it hangs
DDP_TIMEOUT_SECONDS = 300


def run_distributed(command: Sequence[str], cwd: Path) -> None:
    """Run ``command`` (which starts DDP) on a free loopback port, W&B offline in ``cwd``, until rank 0 ends or
    :data:`DDP_TIMEOUT_SECONDS` have passed; then whatever is left of its processes (the other ranks) is
    killed."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WANDB_MODE": "offline",
           "WANDB_DIR": str(cwd)}
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=DDP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        output = f"ran past {DDP_TIMEOUT_SECONDS} s"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == 0, f"{' '.join(command)} failed:\n{output[-5000:]}"


@pytest.fixture(scope="module")
def ddp_outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """run of :data:`DDP_RUNS` -> the outcome of each rank, in rank order."""
    out_dir = tmp_path_factory.mktemp("ddp")
    run_distributed([sys.executable, str(Path(__file__).with_name("ddp_pool_selection.py")), str(out_dir)],
                    cwd=out_dir)
    return {run: [json.loads((out_dir / f"{run}.rank{rank}.json").read_text()) for rank in range(WORLD_SIZE)]
            for run in DDP_RUNS}


@pytest.fixture(scope="module")
def single_process(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, bool], dict[str, Any]]:
    """(strategy config, real model) -> its outcome on one process (the reference of every DDP run with them)."""
    root_dir = tmp_path_factory.mktemp("single_process")
    return {(strategy, real_model): predict_and_select(DDPRun(strategy, real_model), devices=1, root_dir=root_dir)
            for strategy, real_model in sorted({(run.strategy, run.real_model) for run in DDP_RUNS.values()
                                                if not run.failing_selection})}


def reference_of(run: str, single_process: dict[tuple[str, bool], dict[str, Any]]) -> dict[str, Any]:
    return single_process[DDP_RUNS[run].strategy, DDP_RUNS[run].real_model]


def assert_same_outcome(outcome: dict[str, Any], expected: dict[str, Any], skipped_columns: tuple[str, ...] = ()
                        ) -> None:
    """``outcome`` holds ``expected``'s selection (in pick order), labeled set and columns (but
    ``skipped_columns``), bit for bit."""
    for key in ("selected", "selected_scores", "selected_costs", "pool_indices", "labeled_at"):
        assert outcome[key] == expected[key], key
    assert set(outcome["columns"]) == set(expected["columns"])
    for name, column in expected["columns"].items():
        if name not in skipped_columns:
            np.testing.assert_array_equal(np.asarray(outcome["columns"][name]), np.asarray(column),
                                          err_msg=f"column '{name}'")


def assert_ranks_agree(ranks: list[dict[str, Any]]) -> None:
    """Only rank 0 ran the strategy, and every rank ends with its selection, labeled set and the same combined
    columns, bit for bit (they are broadcast and reduced, not computed on each rank)."""
    assert [outcome["select_calls"] for outcome in ranks] == [1, 0]
    for outcome in ranks[1:]:
        assert_same_outcome(outcome, ranks[0])


def assert_selects_exactly_as_one_process(ranks: list[dict[str, Any]], reference: dict[str, Any]) -> None:
    """Every rank ends with the single-process selection (in pick order), labeled set and statistics, bit for
    bit: with per-frame statistics that do not depend on the batching, combining, selecting on rank 0,
    broadcasting and labeling change nothing."""
    assert_ranks_agree(ranks)
    assert_same_outcome(ranks[0], reference, skipped_columns=(WRITER_RANK,))


def assert_rows_from_the_lowest_rank(ranks: list[dict[str, Any]]) -> None:
    """The shards cover the predicted frames, and each frame's combined row is whole from the lowest rank that
    scored it (writer-rank row ``[r, -r]``); rows of frames that no rank scored are NaN."""
    predicted = ranks[0]["predicted"]
    scored_by = [set(outcome["scored"]) for outcome in ranks]
    assert set.union(*scored_by) == set(predicted)
    writer_rank = np.asarray(ranks[0]["columns"][WRITER_RANK])
    expected = np.full_like(writer_rank, np.nan)
    for index in predicted:
        lowest = min(rank for rank, scored in enumerate(scored_by) if index in scored)
        expected[index] = [lowest, -lowest]
    for outcome in ranks:
        np.testing.assert_array_equal(np.asarray(outcome["columns"][WRITER_RANK]), expected)


def column_tolerance(column: np.ndarray) -> float:
    """The absolute tolerance for a float32 column of a real detector: :data:`RELATIVE_TOLERANCE` times its
    largest magnitude (a sum's rounding error scales with its terms, not with the result)."""
    return RELATIVE_TOLERANCE * float(np.nanmax(np.abs(column)))


def assert_statistics_close(outcome: dict[str, Any], reference: dict[str, Any]) -> None:
    """The same columns as one process, NaN (not predicted) at the same frames, each value within
    :func:`column_tolerance`."""
    assert set(outcome["columns"]) == set(reference["columns"])
    for name, column in reference["columns"].items():
        if name != WRITER_RANK:
            expected = np.asarray(column, dtype=np.float64)
            np.testing.assert_allclose(np.asarray(outcome["columns"][name], dtype=np.float64), expected, rtol=0,
                                       atol=column_tolerance(expected), err_msg=f"column '{name}'")


def assert_same_selection_up_to_near_ties(selected: Sequence[int], reference_selected: Sequence[int],
                                          reference_scores: np.ndarray, tolerance: float) -> None:
    """``selected`` are the top frames by scores that each lie within ``tolerance`` of ``reference_scores``
    (absolute index -> score), as ``reference_selected`` are by ``reference_scores``: the two hold as many frames
    and differ only in frames whose reference score lies within ``2 * tolerance`` of the reference's cut-off (its
    lowest selected score), the only frames whose rank against the cut-off such errors can flip."""
    assert len(selected) == len(reference_selected)
    cut_off = min(reference_scores[index] for index in reference_selected)
    differing = set(selected) ^ set(reference_selected)
    far_from_the_cut_off = {index for index in differing if abs(reference_scores[index] - cut_off) > 2 * tolerance}
    assert not far_from_the_cut_off, (f"frames {sorted(far_from_the_cut_off)} are selected by only one of the runs "
                                      f"although their scores are more than 2 x {tolerance:.2g} from the cut-off "
                                      f"{cut_off}")


@pytest.mark.parametrize("run", ["least_confidence", "coreset"])
def test_ddp_with_uneven_shards_selects_exactly_what_one_process_selects(
        run: str, ddp_outcomes: dict[str, list[dict[str, Any]]],
        single_process: dict[tuple[str, bool], dict[str, Any]]) -> None:
    """Lightning's sampler for predict shards an odd number of frames unevenly, without repeating any. Least
    confidence predicts the unlabeled frames (a 1-D score); core-set the whole pool, labeled frames included,
    as ``(dataset_size, D)`` embeddings."""
    ranks = ddp_outcomes[run]
    predicted, shards = ranks[0]["predicted"], [outcome["scored"] for outcome in ranks]
    assert len(predicted) % WORLD_SIZE == 1
    assert sorted(len(shard) for shard in shards) == [len(predicted) // 2, len(predicted) // 2 + 1]
    assert not set(shards[0]) & set(shards[1])
    assert_rows_from_the_lowest_rank(ranks)
    assert_selects_exactly_as_one_process(ranks, reference_of(run, single_process))


def test_a_sampler_that_pads_the_shards_scores_each_frame_once(
        ddp_outcomes: dict[str, list[dict[str, Any]]], single_process: dict[tuple[str, bool], dict[str, Any]]) -> None:
    """``DistributedSampler(drop_last=False)`` repeats a frame to even out the odd pool: that frame is scored on
    both ranks and counts once, with the row of rank 0."""
    ranks = ddp_outcomes["padded_sampler"]
    predicted, shards = ranks[0]["predicted"], [outcome["scored"] for outcome in ranks]
    assert len(shards[0]) == len(shards[1]) == (len(predicted) + 1) // 2
    assert len(set(shards[0]) & set(shards[1])) == 1
    assert_rows_from_the_lowest_rank(ranks)
    assert_selects_exactly_as_one_process(ranks, reference_of("padded_sampler", single_process))


def test_a_real_detector_under_ddp_scores_and_selects_as_one_process_up_to_float_error(
        ddp_outcomes: dict[str, list[dict[str, Any]]], single_process: dict[tuple[str, bool], dict[str, Any]]) -> None:
    """The seeded BEV detector: least confidence's scores equal one process's within :func:`column_tolerance`,
    and so does the selection, but for frames within twice that of the cut-off (their order may flip)."""
    ranks = ddp_outcomes["least_confidence_real_model"]
    reference = reference_of("least_confidence_real_model", single_process)
    assert_rows_from_the_lowest_rank(ranks)
    assert_ranks_agree(ranks)
    assert_statistics_close(ranks[0], reference)
    reference_scores = np.asarray(reference["columns"]["score"])
    assert_same_selection_up_to_near_ties(ranks[0]["selected"], reference["selected"], reference_scores,
                                          column_tolerance(reference_scores))
    assert ranks[0]["pool_indices"] == reference["pool_indices"]
    labeled_at = dict(zip(ranks[0]["pool_indices"], ranks[0]["labeled_at"], strict=True))
    expected_at = dict(zip(reference["pool_indices"], reference["labeled_at"], strict=True))
    near_ties = set(ranks[0]["selected"]) ^ set(reference["selected"])
    assert {index for index, loop in labeled_at.items() if loop == 1} == set(ranks[0]["selected"])
    assert {index: loop for index, loop in labeled_at.items() if index not in near_ties} == {
        index: loop for index, loop in expected_at.items() if index not in near_ties}


def test_a_real_detector_under_ddp_gives_the_embeddings_of_one_process_up_to_float_error(
        ddp_outcomes: dict[str, list[dict[str, Any]]], single_process: dict[tuple[str, bool], dict[str, Any]]) -> None:
    """The seeded BEV detector's core-set embeddings of the whole pool, within :func:`column_tolerance`. Its
    selection is not compared: k-centre greedy has no cut-off, any of its steps can flip on a near-tie of
    distances and change every later pick; what DDP does with the embeddings is checked exactly above."""
    ranks = ddp_outcomes["coreset_real_model"]
    assert_rows_from_the_lowest_rank(ranks)
    assert_ranks_agree(ranks)
    assert_statistics_close(ranks[0], reference_of("coreset_real_model", single_process))


def test_the_near_tie_check_excuses_only_frames_at_the_cut_off() -> None:
    """Selections of 3 by scores within 1e-6: a swap across the cut-off 0.7 is a near-tie; a frame well below
    it taken instead, a frame well above it left out, or a selection of another size is not."""
    scores = np.array([0.9, 0.8, 0.7, 0.7000015, 0.1])
    assert_same_selection_up_to_near_ties([0, 3, 1], [0, 1, 2], scores, tolerance=1e-6)
    for selected in ([0, 1, 4], [0, 2, 3], [0, 1]):
        with pytest.raises(AssertionError):
            assert_same_selection_up_to_near_ties(selected, [0, 1, 2], scores, tolerance=1e-6)


def test_a_selection_that_fails_on_rank_0_fails_on_every_rank(ddp_outcomes: dict[str, list[dict[str, Any]]]
                                                              ) -> None:
    """Rank 0 raises its strategy's error; the other ranks, waiting for its selection, raise one that quotes it
    instead of hanging."""
    first, second = (outcome["error"] for outcome in ddp_outcomes["failing_selection"])
    assert first == "SelectionFailure: strategy 'least_confidence' failed on purpose"
    assert second.startswith("RuntimeError: loop 1: global rank 0 could not select the frames to label")
    assert second.endswith(first)


def test_the_loop_runs_under_ddp_from_the_command_line(tmp_path: Path) -> None:
    """``alcv trainer=ddp_cpu`` on two CPU processes: rank 0 alone writes the run's files, once per loop, and the
    labels of every loop are distinct frames of the right number; killed in loop 1, the run resumes under DDP to
    the same selections."""
    run_dir = tmp_path / "run"
    command = [str(Path(sys.executable).with_name("alcv")), "trainer=ddp_cpu", f"trainer.devices={WORLD_SIZE}",
               "logger=none", *TINY, "loop.num_loops=3", f"hydra.run.dir={run_dir}"]
    run_distributed(command, cwd=tmp_path)
    uninterrupted = (run_dir / SELECTIONS_FILE).read_text()
    as_if_killed_during(run_dir, 1)  # loop 1 selects again
    run_distributed(command, cwd=tmp_path)
    assert (run_dir / SELECTIONS_FILE).read_text() == uninterrupted

    results = read_results(run_dir)
    assert [record["loop"] for record in results] == [0, 1, 2]
    assert [record["n_labeled_frames"] for record in results] == [10, 20, 30]
    assert [record["n_selected"] for record in results] == [10, 10, 0]
    selections = list(read_jsonl(run_dir / SELECTIONS_FILE))
    assert [selection["loop"] for selection in selections] == [0, 1, 2]
    assert [len(selection["indices"]) for selection in selections] == [10, 10, 10]
    labeled = [index for selection in selections for index in selection["indices"]]
    assert len(set(labeled)) == len(labeled)
    pool = LabelPool.load(run_dir / POOL_STATE_FILE)
    assert pool.n_labeled == len(labeled)
    for selection in selections:
        assert sorted(selection["indices"]) == pool.labeled_in_loop(selection["loop"]).tolist()
