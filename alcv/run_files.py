"""The files of one run in its output folder, and resuming an interrupted run from them.

A run writes, in ``output_dir``:

- ``run.json``: once, when the run starts: the resolved config and the logger's version (the W&B run id);
- ``label_pool.json``: the labeling state (:class:`LabelPool`), replaced atomically;
- ``selections.jsonl``: one line per acquisition (loop 0: the random initial set);
- ``results.jsonl``: one line per completed loop;
- ``loop_NNN/``: the Trainer's folder of loop NNN, with ``model_weights.pt`` (the trained ``state_dict``) when
  the next loop warm-starts from it.

Loop ``k`` commits in this order: its weights (warm start only), the pool holding the labels of loop ``k + 1``,
the selection line of loop ``k + 1``, and last its results line. The results line is the commit: a loop is
completed when its line is complete (newline-terminated). A run resumed after a crash at any moment finds ``L``
completed loops, drops whatever loop ``L`` had begun writing (a partial line, the next selection, the next
labels, its Trainer folder) and redoes loop ``L`` from its start. Every random stream of loop ``L`` is derived
from the seed and the loop number (:mod:`alcv.seeding`), so the redone loop is the loop the uninterrupted run
would have run.

State is read without executing code: JSON for the run, the pool and the records, and ``torch.load`` with
``weights_only=True`` for weights. Every path written is checked to lie inside ``output_dir``.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_only

from alcv.pool import LabelPool
from alcv.run_records import (
    REQUIRED_FIELDS,
    RESULTS_FILE,
    SELECTIONS_FILE,
    LoopRecord,
    append_jsonl,
    read_jsonl,
    write_jsonl_atomically,
)
from alcv.safe_io import atomic_binary_file, checked_inside, read_json, write_text_atomically

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
POOL_STATE_FILE = "label_pool.json"
WEIGHTS_FILE = "model_weights.pt"
RUN_FORMAT = 1

#: settings that may differ when a run resumes: where it runs and how it reports (``loop.objective`` is what it
#: returns to a sweeper, ``loop.gallery_frames`` how many picks it draws, ``loop.keep_weights`` which weights it keeps),
#: not what it computes. A run resumed with
#: other hardware settings goes on, but may not select what an uninterrupted run would have.
RESUMABLE_CHANGES = ("output_dir", "logger", "trainer.accelerator", "trainer.devices", "trainer.num_nodes",
                     "trainer.strategy", "trainer.sync_batchnorm", "trainer.enable_progress_bar",
                     "trainer.log_every_n_steps", "loop.objective", "loop.gallery_frames",
                     "loop.pool_truth", "loop.keep_weights")


def loop_folder(loop: int, prefix: str = "loop") -> str:
    """The name of loop ``loop``'s folder in the output folder (``round_NNN`` for labeling rounds)."""
    return f"{prefix}_{loop:03d}"


def _flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists are values."""
    if not isinstance(config, Mapping) or not config:
        return {prefix: config}
    flat: dict[str, Any] = {}
    for key, value in config.items():
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def config_changes(saved: Mapping[str, Any], current: Mapping[str, Any],
                   allowed: Sequence[str] = RESUMABLE_CHANGES) -> list[str]:
    """The settings (dotted keys) whose values differ between two resolved configs, ``"key: saved -> now"``,
    leaving out the ``allowed`` ones (and the keys under them)."""
    before, after = _flatten(saved), _flatten(current)
    changes = []
    for key in sorted(before.keys() | after.keys()):
        if any(key == setting or key.startswith(f"{setting}.") for setting in allowed):
            continue
        missing = "<not set>"
        if before.get(key, missing) != after.get(key, missing):
            changes.append(f"{key}: {before.get(key, missing)!r} -> {after.get(key, missing)!r}")
    return changes


def read_run_file(path: Path) -> dict[str, Any]:
    """A ``run.json``, checked field by field (as a resume reads it)."""
    saved = read_json(path, "run file")
    if not isinstance(saved, dict) or not isinstance(saved.get("config"), dict):
        raise ValueError(f"{path}: field 'config' missing; expected a JSON object with the run's config")
    if saved.get("format") != RUN_FORMAT:
        raise ValueError(f"{path}: field 'format' is {saved.get('format')!r}, expected {RUN_FORMAT}")
    version = saved.get("logger_version")
    if not (version is None or (isinstance(version, int) and not isinstance(version, bool) and version >= 0)
            or (isinstance(version, str) and re.fullmatch(r"[A-Za-z0-9_.-]+", version)
                and version not in (".", ".."))):
        raise ValueError(f"{path}: field 'logger_version' is {version!r}; expected null, a whole number >= 0 or "
                         "a run id of letters, digits, '_', '-' and '.' (the W&B or CSV run to continue)")
    return saved


def read_run_config(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The resolved config the run in ``run_dir`` was started with (its ``run.json``, checked as a resume checks
    it), read without making or changing anything. Raises ``FileNotFoundError`` for a folder without ``run.json``
    and ``ValueError`` for a run file that is not one."""
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; {run_dir} is not the folder of an alcv run")
    return read_run_file(path)["config"]


@dataclass(frozen=True)
class SelectionLine:
    """The fields of a ``selections.jsonl`` line, the types a resumed run checks: the frames labeled for loop
    ``loop`` (absolute dataset indices, in the strategy's order) and their scores (null for loop 0's random set;
    a null score stands for NaN)."""

    loop: int
    indices: list[int]
    scores: list[float] | None = None


@dataclass(frozen=True)
class Progress:
    """What earlier attempts of a run in the same output folder completed.

    Attributes:
        completed_loops: ``L``, the loops whose results line is complete; the run goes on with loop ``L``.
        records: the results lines of loops ``0 .. L-1``.
        selections: the selection lines of loops ``0 .. L`` (empty when ``L == 0``: the run starts over).
        pool: the labeling state when loop ``L`` starts (the labels of loops ``0 .. L``); None when ``L == 0``.
        logger_version: the version the logger had in the first attempt (the W&B run id), to continue that
            tracked run; None for a new run.
    """

    completed_loops: int = 0
    records: list[dict[str, Any]] = field(default_factory=list)
    selections: list[dict[str, Any]] = field(default_factory=list)
    pool: LabelPool | None = None
    logger_version: Any = None


class RunFiles:
    """The files of one run in ``output_dir`` (see the module docstring); only the global rank-0 process
    writes them.

    Under DDP every rank runs the loop in lockstep, so the other ranks keep the same state in memory (and read
    the same files when resuming) but must not append the same lines or race on the same files.
    """

    #: the prefix of the loops' folders (:func:`loop_folder`)
    FOLDER_PREFIX = "loop"

    def __init__(self, output_dir: Path) -> None:
        self.output_dir = Path(output_dir)
        self.writer = rank_zero_only.rank == 0
        if self.writer:
            self.output_dir.mkdir(parents=True, exist_ok=True)

    def _path(self, *parts: str) -> Path:
        return checked_inside(self.output_dir, Path(*parts), "output file")

    def loop_dir(self, loop: int) -> Path:
        """Loop ``loop``'s folder (its Trainer's ``default_root_dir``, its weights)."""
        return self._path(loop_folder(loop, self.FOLDER_PREFIX))

    # ------------------------------------------------------------------ resuming
    def resume(self, config: Mapping[str, Any]) -> Progress:
        """What earlier attempts in the output folder completed; on the writing rank, drop what an interrupted
        loop had begun writing.

        Args:
            config: this attempt's resolved config (plain containers), compared with the saved one.

        Raises:
            FileExistsError: the folder holds one of a run's files (results, selections, the pool's state,
                weights, a loop's folder) but no ``run.json``: not a run that can be resumed, and never overwritten.
            ValueError: the config differs from the saved one in a setting outside :data:`RESUMABLE_CHANGES`,
                or the saved files are malformed or disagree; the message names the file and the field.
        """
        saved = self._saved_run(config, (RESULTS_FILE, SELECTIONS_FILE, POOL_STATE_FILE, WEIGHTS_FILE,
                                         loop_folder(0)), RESUMABLE_CHANGES, "output_dir")
        if saved is None:
            return Progress()
        records = self._completed_records()
        completed = len(records)
        if completed > int(config["loop"]["num_loops"]):
            raise ValueError(f"{self._path(RESULTS_FILE)}: holds {completed} completed loops but loop.num_loops is "
                             f"{config['loop']['num_loops']}; this is not the run it claims to be (resume it with "
                             "its own settings, or give this run a new output_dir)")
        version = saved.get("logger_version")
        if completed == 0:
            self._drop_interrupted(completed, [], [])
            return Progress(logger_version=version)
        # the last loop acquires nothing: a finished run has selections up to its last loop only
        selections = self._selections_until(min(completed, int(config["loop"]["num_loops"]) - 1))
        pool = self._pool_until(completed, selections)
        self._drop_interrupted(completed, records, selections)
        log.info("resuming the run in %s after %d completed loops", self.output_dir, completed)
        return Progress(completed, records, selections, pool, version)

    def _saved_run(self, config: Mapping[str, Any], own_files: Sequence[str], allowed: Sequence[str],
                   folder_setting: str) -> dict[str, Any] | None:
        """The checked ``run.json`` of an earlier attempt, None when there is none.

        Raises:
            FileExistsError: there is no ``run.json`` but one of ``own_files`` (names in the folder) exists.
            ValueError: the saved config differs from ``config`` in a setting not ``allowed``; the message says to
                choose a new ``folder_setting``.
        """
        run_path = self._path(RUN_FILE)
        if not run_path.exists():
            for name in own_files:
                if self._path(name).exists():
                    raise FileExistsError(f"{self._path(name)} already exists but {run_path} does not, so this is "
                                          f"not a run that can be resumed; give the run a new {folder_setting} (a "
                                          "run's files are never overwritten)")
            return None
        saved = read_run_file(run_path)
        changes = config_changes(saved["config"], config, allowed)
        if changes:
            raise ValueError(f"{run_path}: the run in {self.output_dir} was started with another configuration, so "
                             f"it cannot be resumed with this one; changed: {'; '.join(changes)}. Resume it with "
                             f"its own settings, or give this run a new {folder_setting}")
        return saved

    def _completed_records(self) -> list[dict[str, Any]]:
        path = self._path(RESULTS_FILE)
        if not path.exists():
            return []
        records = list(read_jsonl(path, required=REQUIRED_FIELDS, complete_lines_only=True, schema=LoopRecord))
        loops = [record["loop"] for record in records]
        if loops != list(range(len(records))):
            raise ValueError(f"{path}: field 'loop' runs {loops}; expected 0, 1, 2, ... (one line per completed "
                             "loop, in order)")
        return records

    def _selections_until(self, last: int) -> list[dict[str, Any]]:
        """The selection lines of loops ``0 .. last``, checked field by field (:class:`SelectionLine`) and to be
        one per loop."""
        path = self._path(SELECTIONS_FILE)
        lines = list(read_jsonl(path, required=("loop", "indices"), complete_lines_only=True,
                                schema=SelectionLine)) if path.exists() else []
        kept = [line for line in lines if line["loop"] <= last]
        loops = [line["loop"] for line in kept]
        if loops != list(range(last + 1)):
            raise ValueError(f"{path}: field 'loop' runs {loops}; expected one selection for each of loops 0 to "
                             f"{last}, given the completed loops in {self._path(RESULTS_FILE)}")
        return kept

    def _pool_until(self, completed: int, selections: list[dict[str, Any]]) -> LabelPool:
        """The saved pool without labels of loops after ``completed``, checked against ``selections``."""
        path = self._path(POOL_STATE_FILE)
        if not path.exists():
            raise ValueError(f"{path} is missing, but {self._path(RESULTS_FILE)} records {completed} completed loops")
        pool = LabelPool.load(path).until(completed)
        for line in selections:
            if not np.array_equal(np.sort(np.asarray(line["indices"], dtype=np.int64)),
                                  pool.labeled_in_loop(line["loop"])):
                raise ValueError(f"{path}: the frames labeled at loop {line['loop']} differ from field 'indices' of "
                                 f"that loop in {self._path(SELECTIONS_FILE)}")
        return pool

    def _drop_interrupted(self, completed: int, records: list[dict[str, Any]],
                          selections: list[dict[str, Any]]) -> None:
        """Rewrite the line files without what follows the last commit, and remove the Trainer folders of
        loops that did not complete (the weights of completed loops stay)."""
        if not self.writer:
            return
        for name, kept in ((RESULTS_FILE, records), (SELECTIONS_FILE, selections)):
            if self._path(name).exists():
                write_jsonl_atomically(self._path(name), kept)
        for folder in sorted(self.output_dir.glob(f"{self.FOLDER_PREFIX}_[0-9][0-9][0-9]")):
            if int(folder.name.removeprefix(f"{self.FOLDER_PREFIX}_")) >= completed:
                shutil.rmtree(self._path(folder.name))

    # ------------------------------------------------------------------ writing
    def start(self, config: Mapping[str, Any], logger_version: Any) -> None:
        """Write ``run.json`` for a new run (a resumed run keeps the one its first attempt wrote)."""
        path = self._path(RUN_FILE)
        if self.writer and not path.exists():
            write_text_atomically(path, json.dumps({"format": RUN_FORMAT, "logger_version": logger_version,
                                                    "config": config}, indent=1))

    def save_pool(self, pool: LabelPool) -> None:
        if self.writer:
            pool.save(self._path(POOL_STATE_FILE))

    def append_result(self, record: dict[str, Any]) -> None:
        """Append loop ``record["loop"]``'s line: the commit of that loop (call it last)."""
        if self.writer:
            append_jsonl(self._path(RESULTS_FILE), record)

    def append_selection(self, loop: int, indices: np.ndarray, scores: np.ndarray | None) -> None:
        if self.writer:
            append_jsonl(self._path(SELECTIONS_FILE), {
                "loop": loop, "indices": indices.tolist(), "scores": None if scores is None else scores.tolist()})

    def save_weights(self, loop: int, model: pl.LightningModule) -> None:
        """Save loop ``loop``'s trained ``state_dict`` (tensors only) atomically, for the next loop to
        warm-start from after a resume."""
        if self.writer:
            with atomic_binary_file(self.loop_dir(loop) / WEIGHTS_FILE) as handle:
                torch.save(model.state_dict(), handle)

    def load_weights(self, loop: int, model: pl.LightningModule) -> None:
        """Load loop ``loop``'s saved weights into ``model`` (``weights_only``: no code in the file is run).

        Raises:
            FileNotFoundError: the file is missing (a warm-started run needs it to resume).
            ValueError: the file is not a weights file of this model.
        """
        path = self.loop_dir(loop) / WEIGHTS_FILE
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: the run warm-starts every loop from the previous one "
                                    f"(loop.reset_weights=false), so resuming at loop {loop + 1} needs loop {loop}'s "
                                    "weights")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except (RuntimeError, pickle.UnpicklingError) as error:
            raise ValueError(f"{path}: not the weights of {type(model).__name__} saved by this run ({error})") \
                from error
