"""Resuming a run in its output folder: after a kill at any moment the run goes on where it stopped and ends with the
selections and results of an uninterrupted run; what cannot be resumed is refused and left as it was."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import TINY, CodeRunningPickle, as_if_killed_during, compose_config, run_cli
from crash_callback import CRASH_AT
from omegaconf import DictConfig
from wandb_log import history_rows

import alcv.run_files
from alcv.loop import run
from alcv.run_files import POOL_STATE_FILE, RUN_FILE, WEIGHTS_FILE
from alcv.run_records import RESULTS_FILE, SELECTIONS_FILE, read_jsonl

Compose = Callable[..., DictConfig]
TESTS = Path(__file__).parent
#: three loops, so that a run killed in loop 1 has a completed loop before it and an acquisition after it
RESUMABLE = [*TINY, "loop.num_loops=3", "logger=none", "+callbacks.crash._target_=crash_callback.CrashAt"]


def outcome(run_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """What a run ends with: its results (without timings), its selections and its labeling state."""
    results = [{key: value for key, value in record.items() if key != "timings"}
               for record in read_jsonl(run_dir / RESULTS_FILE)]
    return results, list(read_jsonl(run_dir / SELECTIONS_FILE)), json.loads((run_dir / POOL_STATE_FILE).read_text())


def files_of(run_dir: Path) -> dict[str, bytes]:
    return {name: (run_dir / name).read_bytes() for name in (RESULTS_FILE, SELECTIONS_FILE, POOL_STATE_FILE, RUN_FILE)}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    """The outcome of uninterrupted runs, cold (fresh weights every loop) and warm-started."""
    outcomes = {}
    for name, extra in (("cold", []), ("warm", ["loop.reset_weights=false"])):
        run_dir = tmp_path_factory.mktemp("uninterrupted") / name
        run(compose_config(*RESUMABLE, *extra, output_dir=run_dir))
        outcomes[name] = outcome(run_dir)
    return outcomes


@pytest.mark.parametrize(("point", "weights"), [("train", "cold"), ("pool", "cold"), ("start", "cold"),
                                               ("train", "warm")])
def test_a_run_killed_anywhere_resumes_to_the_uninterrupted_outcome(
        tmp_path: Path, uninterrupted: dict[str, tuple], point: str, weights: str) -> None:
    extra = ["loop.reset_weights=false"] if weights == "warm" else []
    killed = run_cli(*RESUMABLE, *extra, "hydra.run.dir=run", cwd=tmp_path,
                     env={CRASH_AT: f"1:{point}", "PYTHONPATH": str(TESTS)})
    assert killed.returncode == -9, killed.stderr[-3000:]  # SIGKILL: no clean-up ran
    run_dir = tmp_path / "run"
    assert [record["loop"] for record in read_jsonl(run_dir / RESULTS_FILE)] == [0]  # loop 1 never completed

    records = run(compose_config(*RESUMABLE, *extra, output_dir=run_dir))

    assert outcome(run_dir) == uninterrupted[weights]
    assert [record["loop"] for record in records] == [0, 1, 2]


def test_a_crash_inside_the_commit_redoes_that_loop(tmp_path: Path, uninterrupted: dict[str, tuple],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed after loop 1 saved its labels and selection but before its results line was whole."""
    run_dir = tmp_path / "run"
    append = alcv.run_files.append_jsonl

    def torn_results_line(path: Path, record: dict[str, Any]) -> None:
        if Path(path).name == RESULTS_FILE and record["loop"] == 1:
            with open(path, "a") as handle:
                handle.write(json.dumps(record)[:40])  # half a line, no newline
            raise KeyboardInterrupt
        append(path, record)

    monkeypatch.setattr(alcv.run_files, "append_jsonl", torn_results_line)
    with pytest.raises(KeyboardInterrupt):
        run(compose_config(*RESUMABLE, output_dir=run_dir))
    assert [line["loop"] for line in read_jsonl(run_dir / SELECTIONS_FILE)] == [0, 1, 2]  # loop 2's is written
    monkeypatch.undo()

    run(compose_config(*RESUMABLE, output_dir=run_dir))
    assert outcome(run_dir) == uninterrupted["cold"]


def test_a_finished_run_run_again_changes_nothing_and_another_config_is_refused(compose_cfg: Compose) -> None:
    cfg = compose_cfg(*TINY, "logger=none")
    first = run(cfg)
    saved = files_of(Path(cfg.output_dir))

    # where and how it runs and reports may change
    again = run(compose_cfg(*TINY, "logger=csv", "trainer.enable_progress_bar=true", "trainer.devices=1"))
    assert [record["map"] for record in again] == [pytest.approx(record["map"]) for record in first]
    assert files_of(Path(cfg.output_dir)) == saved

    # what it computes may not
    for override, changed in (("seed=1", "seed: 0 -> 1"), ("strategy=random", "strategy._target_"),
                              ("loop.num_loops=3", "loop.num_loops: 2 -> 3")):
        with pytest.raises(ValueError, match=rf"{RUN_FILE}: .*another configuration.*{changed}"):
            run(compose_cfg(*TINY, "logger=none", override))
        assert files_of(Path(cfg.output_dir)) == saved


def test_results_of_a_run_without_run_file_are_never_overwritten(compose_cfg: Compose) -> None:
    cfg = compose_cfg(*TINY, "logger=none")
    out = Path(cfg.output_dir)
    out.mkdir(parents=True)
    (out / RESULTS_FILE).write_text('{"loop": 0}\n')
    with pytest.raises(FileExistsError, match=f"{RESULTS_FILE} already exists but .*{RUN_FILE} does not"):
        run(cfg)
    assert (out / RESULTS_FILE).read_text() == '{"loop": 0}\n'


def test_weights_are_loaded_without_running_code(compose_cfg: Compose, tmp_path: Path) -> None:
    """A weights file replaced by a pickle that runs code is refused; the code never runs."""
    cfg = compose_cfg(*TINY, "logger=none", "loop.reset_weights=false")
    run(cfg)
    out = Path(cfg.output_dir)
    marker = tmp_path / "code_ran"
    torch.save({"weight": CodeRunningPickle(marker)}, out / "loop_000" / WEIGHTS_FILE)
    as_if_killed_during(out, 1)  # resuming loop 1 loads loop 0's weights

    with pytest.raises(ValueError, match=rf"loop_000/{WEIGHTS_FILE}: not the weights of"):
        run(cfg)
    assert not marker.exists()
    torch.load(out / "loop_000" / WEIGHTS_FILE, weights_only=False)  # what a plain pickle load would have done
    assert marker.exists()


def test_a_logger_folder_outside_the_output_folder_is_refused(compose_cfg: Compose, tmp_path: Path) -> None:
    cfg = compose_cfg(*TINY, "logger=csv", "logger.name=../../escaped")
    with pytest.raises(ValueError, match=r"logger folder .*'.*escaped.*' leads outside the output folder"):
        run(cfg)
    assert not (tmp_path.parent / "escaped").exists()
    assert not os.path.exists(Path(cfg.output_dir) / RESULTS_FILE)


def test_a_resumed_run_continues_its_wandb_run(compose_cfg: Compose) -> None:
    cfg = compose_cfg(*TINY)
    run(cfg)
    out = Path(cfg.output_dir)
    as_if_killed_during(out, 1)
    run(cfg)

    first, resumed = sorted((out / "wandb").glob("offline-run-*"))
    run_id = json.loads((out / RUN_FILE).read_text())["logger_version"]
    assert first.name.endswith(f"-{run_id}") and resumed.name.endswith(f"-{run_id}")
    assert [row["loop"] for row in history_rows(resumed) if "al/map" in row] == [1]


def test_a_callback_writing_outside_the_output_folder_is_refused(compose_cfg: Compose, tmp_path: Path) -> None:
    cfg = compose_cfg(*TINY, "logger=none", "+callbacks.ckpt._target_=lightning.pytorch.callbacks.ModelCheckpoint",
                      f"+callbacks.ckpt.dirpath={tmp_path / 'elsewhere'}")
    with pytest.raises(ValueError, match=r"callbacks.ckpt.dirpath: .*elsewhere.* leads outside the output folder"):
        run(cfg)
    assert not (tmp_path / "elsewhere").exists() and not (tmp_path / "run" / RUN_FILE).exists()
    inside = compose_cfg(*TINY, "logger=none", "loop.num_loops=1", "trainer.enable_checkpointing=true",
                         "+callbacks.ckpt._target_=lightning.pytorch.callbacks.ModelCheckpoint",
                         f"+callbacks.ckpt.dirpath={tmp_path / 'run' / 'checkpoints'}")
    run(inside)
    assert list((tmp_path / "run" / "checkpoints").glob("*.ckpt"))


def test_damaged_state_is_refused_naming_the_file_and_field_and_nothing_is_rewritten(compose_cfg: Compose) -> None:
    cfg = compose_cfg(*TINY, "logger=none", "loop.reset_weights=false")
    run(cfg)
    out = Path(cfg.output_dir)
    results = as_if_killed_during(out, 1)
    intact = {path.relative_to(out): path.read_bytes() for path in out.rglob("*") if path.is_file()}
    selections = (out / SELECTIONS_FILE).read_text().splitlines(keepends=True)
    pool = json.loads((out / POOL_STATE_FILE).read_text())
    moved_label = {**pool, "labeled_at": [0 if loop == 1 else loop for loop in pool["labeled_at"]]}
    damages = [
        (RUN_FILE, "{not json", rf"{RUN_FILE}: not a valid run file"),
        (RUN_FILE, json.dumps({"format": 99, "config": {}}), rf"{RUN_FILE}: field 'format' is 99, expected 1"),
        (RESULTS_FILE, results[0] * 2, rf"{RESULTS_FILE}: field 'loop' runs \[0, 0\]"),
        (SELECTIONS_FILE, selections[0], rf"{SELECTIONS_FILE}: field 'loop' runs \[0\]; expected one selection"),
        (POOL_STATE_FILE, json.dumps(moved_label), rf"{POOL_STATE_FILE}: the frames labeled at loop 0 differ"),
        (f"loop_000/{WEIGHTS_FILE}", None, rf"loop_000/{WEIGHTS_FILE} is missing: .* needs loop 0's weights"),
    ]
    for name, damaged, message in damages:
        if damaged is None:
            (out / name).unlink()
        else:
            (out / name).write_text(damaged)
        with pytest.raises((ValueError, FileNotFoundError), match=message):
            run(cfg)
        assert {path.relative_to(out) for path in out.rglob("*") if path.is_file()} == \
            set(intact) - ({Path(name)} if damaged is None else set())
        (out / name).write_bytes(intact[Path(name)])
    assert {path.relative_to(out): path.read_bytes() for path in out.rglob("*") if path.is_file()} == intact
