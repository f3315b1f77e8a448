"""Real labeling rounds: ``alcv-round`` runs one round of active learning on data whose pool is partly unlabeled.

A simulated run (:mod:`alcv.loop`) reveals the labels its pool already has. A round instead reads which frames
are labeled from the data itself (KITTI label files, COCO annotations; ``unlabeled_indices`` of the dataset):
it trains on the labeled pool frames, tests on the test split, predicts the unlabeled frames, selects with the
configured strategy and budget (``loop.query_size``, ``loop.budget_unit``, ``loop.cost``, ``loop.spread``) and
writes what the annotators need. People then label the selected frames (``alcv-label``, :mod:`alcv.labeling`),
the labels go into the data folder, and the next ``alcv-round`` with the same settings trains on them.

The round folder (``round.dir``) holds::

    run.json              the config of the rounds and the logger's version (the W&B run the rounds log to)
    results.jsonl         one line per completed round, the fields of a simulated run's loops (loop = round)
    labeled_frames.json   the round at which each labeled pool frame (by name) was first trained on
    round_NNN/            one folder per round:
        selection.json    the selected frames, best first (:func:`selection_document`)
        kitti/ or pre_annotations.json    the selection as data of its own, with the model's boxes
                          (:mod:`alcv.labeling.formats`)
        summary.json      what the round trained on, its test mAP and the seconds of each step
        model_weights.pt  the trained weights (for a warm start, loop.reset_weights=false, or loop.keep_weights)

A round commits as a simulated loop does: its folder's files first, its results line last; a round interrupted
before that line is redone from its start. Round ``r`` waits until the frames round ``r - 1`` selected are
labeled in the data: until then ``alcv-round`` changes nothing and says so (``round.allow_missing=true`` goes on
with those that are). Every random stream of round ``r`` derives from the seed and ``r``, as a loop's does.

Frames are known by name (:meth:`frame_name`: a KITTI frame id, a COCO file name), not by absolute index, so a
pool that gains new unlabeled frames between rounds keeps its history; a frame that was trained on must keep
its labels.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as pl
import numpy as np
from omegaconf import DictConfig, OmegaConf

from alcv import tracking
from alcv.acquisition import Selection
from alcv.config import register_resolvers
from alcv.data.datamodule import ActiveDataModule
from alcv.gallery import predict_frames
from alcv.labeling.formats import label_format
from alcv.loop import (
    LabeledBoxes,
    RunState,
    acquire_next,
    check_modality,
    check_training,
    log_loop,
    record_loop,
    run_logger,
    selection_rules,
    train_and_test,
)
from alcv.pool import LabelPool
from alcv.run_files import RESUMABLE_CHANGES, RunFiles, loop_folder
from alcv.run_records import RESULTS_FILE, json_safe
from alcv.safe_io import read_json, write_text_atomically
from alcv.seeding import TRAINING, derive_seed
from alcv.settings import check_settings, composed_experiment

log = logging.getLogger(__name__)

LABELED_FRAMES_FILE = "labeled_frames.json"
SELECTION_FILE = "selection.json"
SUMMARY_FILE = "summary.json"
ROUND_PREFIX = "round"
ROUND_FORMAT = 1
#: settings that may change from one round to the next, beyond those a resumed run may change: the budget and
#: its rules (each round records its own in results.jsonl) and whether a round goes on with missing labels
ROUND_CHANGES = (*RESUMABLE_CHANGES, "loop.query_size", "loop.budget_unit", "loop.cost", "loop.spread",
                 "round.allow_missing")


def round_folder(number: int) -> str:
    """The name of round ``number``'s folder in the round folder."""
    return loop_folder(number, ROUND_PREFIX)


@dataclass(frozen=True)
class RoundProgress:
    """What earlier rounds in the round folder completed.

    Attributes:
        completed: ``R``, the rounds whose results line is complete; the next round is round ``R``.
        records: their results lines. logger_version: the logger's version of the first round (None: none yet).
        trained_at: pool frame name -> the round at which it was first trained on (rounds ``< R`` only).
    """

    completed: int = 0
    records: list[dict[str, Any]] = field(default_factory=list)
    logger_version: Any = None
    trained_at: dict[str, int] = field(default_factory=dict)


class RoundFiles(RunFiles):
    """The files of a series of labeling rounds in ``round.dir`` (see the module docstring): a run's files
    (:class:`~alcv.run_files.RunFiles`) with ``round_NNN`` folders and the labeled frames by name instead of a
    label pool."""

    FOLDER_PREFIX = ROUND_PREFIX

    def resume(self, config: Mapping[str, Any]) -> RoundProgress:  # type: ignore[override]
        """What earlier rounds completed; drops what an interrupted round had begun writing.

        Raises:
            FileExistsError: the folder holds a round's files but no ``run.json``.
            ValueError: the config differs from the saved one in a setting outside :data:`ROUND_CHANGES`, or a
                saved file is malformed; the message names the file and the field.
        """
        saved = self._saved_run(config, (RESULTS_FILE, LABELED_FRAMES_FILE, round_folder(0)), ROUND_CHANGES,
                                "round.dir")
        if saved is None:
            return RoundProgress()
        records = self._completed_records()
        completed = len(records)
        trained_at = {name: number for name, number in self._trained_at().items() if number < completed}
        self._drop_interrupted(completed, records, [])
        if completed:
            log.info("round folder %s: %d completed round(s)", self.output_dir, completed)
        return RoundProgress(completed, records, saved.get("logger_version"), trained_at)

    def _trained_at(self) -> dict[str, int]:
        path = self._path(LABELED_FRAMES_FILE)
        if not path.exists():
            return {}
        saved = read_json(path, "labeled-frames file")
        frames = saved.get("frames") if isinstance(saved, dict) else None
        if not isinstance(frames, dict) or not all(isinstance(number, int) and not isinstance(number, bool)
                                                   and number >= 0 for number in frames.values()):
            raise ValueError(f"{path}: field 'frames' must map frame names to the round (an int >= 0) at which "
                             "they were first trained on")
        return dict(frames)

    def save_trained_at(self, trained_at: Mapping[str, int]) -> None:
        if self.writer:
            write_text_atomically(self._path(LABELED_FRAMES_FILE),
                                  json.dumps({"format": ROUND_FORMAT, "frames": dict(sorted(trained_at.items()))}))

    def write_json(self, number: int, name: str, document: Mapping[str, Any]) -> Path:
        """Write ``document`` to ``round_NNN/name`` atomically (NaN as null); returns the path."""
        path = self.loop_dir(number) / name
        if self.writer:
            write_text_atomically(path, json.dumps(json_safe(document), indent=1, allow_nan=False))
        return path


@dataclass
class RoundState(RunState):
    """A :class:`~alcv.loop.RunState` whose loops are rounds: every round selects frames for the next."""

    def acquires_after(self, loop: int) -> bool:
        return True


def check_round_settings(cfg: DictConfig) -> None:
    """Refuse round settings that cannot work whatever the data, before the round folder is read or written."""
    query = cfg.loop.query_size
    if query <= 0:
        raise ValueError(f"loop.query_size must be > 0 (each round's budget), got {query}")
    if cfg.loop.get("budget_unit", "frames") == "frames" and query != int(query):
        raise ValueError(f"loop.query_size={query}: a budget in frames (loop.budget_unit=frames) is a whole number "
                         "of frames; a fractional budget needs loop.budget_unit=boxes")
    selection_rules(cfg.loop)


def labeled_pool(dataset: Any, trained_at: Mapping[str, int], number: int) -> tuple[LabelPool, dict[str, int]]:
    """The label pool of round ``number``: every pool frame of ``dataset`` that has labels in the data is labeled,
    at the round it was first trained on (``trained_at``, by frame name) or else at ``number``. Returns the pool
    and the updated ``trained_at`` of every labeled pool frame.

    Raises:
        ValueError: a frame trained on in an earlier round is no longer a labeled pool frame of the data (its
            labels were removed, or the frame itself): the earlier rounds' results would not be reproducible.
    """
    pool = LabelPool(dataset.split_indices("pool"))
    unlabeled = set(dataset.unlabeled_indices().tolist())
    names = {dataset.frame_name(index): index for index in pool.indices.tolist()}
    lost = sorted(name for name in trained_at if name not in names or names[name] in unlabeled)
    if lost:
        raise ValueError(f"{len(lost)} frame(s) trained on in earlier rounds are no longer labeled pool frames of the "
                         f"data (e.g. {lost[:5]}): restore their labels (a round's training set only grows)")
    updated: dict[str, int] = {}
    for name, index in names.items():
        if index not in unlabeled:
            updated[name] = trained_at.get(name, number)
    for round_number in sorted(set(updated.values())):
        pool.label([names[name] for name, at in updated.items() if at == round_number], round_number)
    return pool, updated


def awaited_frames(files: RoundFiles, number: int, labeled: set[str]) -> tuple[list[str], int]:
    """The frames that round ``number - 1`` selected and the data has no labels for yet, and how many it selected."""
    path = files.loop_dir(number - 1) / SELECTION_FILE
    try:
        selected = [frame["frame"] for frame in json.loads(path.read_text())["frames"]]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: cannot read the frames round {number - 1} selected ({error}); the round folder "
                         "is damaged") from error
    return [name for name in selected if name not in labeled], len(selected)


def _predictions(state: RoundState, model: pl.LightningModule, indices: np.ndarray) -> list[Any]:
    """``model``'s detections of the frames ``indices``, in that order, ``data.eval_batch_size`` at a time."""
    dataset, size = state.datamodule.dataset, state.datamodule.eval_batch_size
    detections = []
    for start in range(0, indices.size, size):
        items = [dataset[int(index)] for index in indices[start:start + size]]
        detections += [frame.cpu() for frame in predict_frames(model, state.datamodule.collate_fn, items)]
    return detections


def selection_document(state: RoundState, number: int, selection: Selection, detections: Sequence[Any]
                       ) -> dict[str, Any]:
    """``selection.json`` of round ``number``: the data, its classes, the strategy and budget, and per selected frame
    (best first) its ``rank``, absolute ``index``, ``frame`` name, ``file`` (point cloud or image), selection
    ``score`` and ``cost``, and the model's ``boxes`` (``(M, 7)`` LiDAR ``[x, y, z, dx, dy, dz, yaw]``, metres /
    radians, or ``(M, 4)`` XYXY pixels) scored at least ``round.min_score``, their class ``labels`` (names) and
    ``scores``; camera frames also give the ``image_size`` ``[width, height]``."""
    dataset, class_names = state.datamodule.dataset, state.datamodule.class_names
    min_score, data_format = float(state.cfg.round.min_score), label_format(dataset)
    frames = []
    for rank, (index, score, cost, found) in enumerate(zip(selection.indices.tolist(), selection.scores.tolist(),
                                                           selection.costs.tolist(), detections, strict=True)):
        kept = found.scores.numpy() >= min_score
        frame = {"rank": rank, "index": index, "frame": dataset.frame_name(index),
                 "file": str(data_format.frame_file(dataset, index)), "score": score, "cost": cost,
                 "boxes": found.boxes.numpy()[kept].tolist(),
                 "labels": [class_names[label] for label in found.labels.numpy()[kept].tolist()],
                 "scores": found.scores.numpy()[kept].tolist()}
        if dataset.modality == "camera":
            height, width = dataset[index]["image"].shape[-2:]
            frame["image_size"] = [int(width), int(height)]
        frames.append(frame)
    return {"format": ROUND_FORMAT, "round": number, "data": state.datamodule.name, "modality": dataset.modality,
            "class_names": list(class_names), "strategy": state.strategy.name, "budget_unit": state.rules.unit,
            "budget": float(state.cfg.loop.query_size), "budget_left": selection.budget_left, "frames": frames}


def _format_round_summary(summary: Mapping[str, Any]) -> str:
    """The lines a round prints when it ends."""
    timings = summary["timings"]
    return "\n".join([
        f"round {summary['round']}: trained on {summary['labeled_frames']} labeled frames "
        f"({summary['labeled_boxes']} boxes; {summary['new_frames']} new this round); "
        f"{summary['unlabeled_frames']} unlabeled frames predicted",
        f"test mAP {summary['map']:.3f} ("
        + ", ".join(f"{name} {'n/a' if ap is None or not np.isfinite(ap) else f'{ap:.3f}'}"
                    for name, ap in summary["ap_per_class"].items()) + ")",
        f"selected {summary['selected']} frames"
        + (f" ({summary['selected_cost']:g} box equivalents)" if summary["budget_unit"] == "boxes" else "")
        + f" into {summary['folder']}",
        "seconds: " + ", ".join(f"{step} {seconds:.1f}" for step, seconds in timings.items())])


def waiting_message(files: RoundFiles, number: int, dataset: Any, allow_missing: bool) -> str | None:
    """Why round ``number`` cannot start yet (frames round ``number - 1`` selected have no labels in the data and
    ``round.allow_missing`` is false), or None when it can."""
    if number == 0 or allow_missing:
        return None
    unlabeled = set(dataset.unlabeled_indices().tolist())
    labeled = {dataset.frame_name(index) for index in dataset.split_indices("pool").tolist() if index not in unlabeled}
    awaited, selected = awaited_frames(files, number, labeled)
    if not awaited:
        return None
    return (f"alcv-round: round {number - 1} selected {selected} frames and {len(awaited)} of them have no labels in "
            f"the data yet (e.g. {awaited[:5]}); nothing was changed. Label them (alcv-label pull or alcv-label import "
            f"{files.loop_dir(number - 1)}) and run again, or go on without them with round.allow_missing=true")


def prepare_round(cfg: DictConfig, files: RoundFiles, progress: RoundProgress, config: dict[str, Any],
                  datamodule: ActiveDataModule) -> tuple[RoundState, dict[str, int]]:
    """Build and check what round ``progress.completed`` needs (the pool from the data, the strategy, the model, the
    logger), then write ``run.json`` for a new series of rounds; returns the state and the round at which each
    labeled frame was first trained on (:func:`labeled_pool`)."""
    number = progress.completed
    pool, trained_at = labeled_pool(datamodule.dataset, progress.trained_at, number)
    if pool.n_labeled == 0:
        raise ValueError(f"data '{datamodule.name}' has no labeled pool frames to train on: label some first")
    if pool.n_unlabeled == 0:
        raise ValueError(f"data '{datamodule.name}' has no unlabeled pool frames left to select from")
    strategy = hydra.utils.instantiate(cfg.strategy)
    if getattr(strategy, "needs_truth", False):
        raise ValueError(f"strategy '{strategy.name}' selects by the pool's own labels, which a labeling round does "
                         "not have; choose another strategy")
    pl.seed_everything(derive_seed(int(cfg.seed), TRAINING, number), workers=True)
    model: pl.LightningModule = hydra.utils.instantiate(cfg.model)
    check_modality(datamodule, model)
    check_training(cfg, model)
    logger = run_logger(cfg, files.output_dir, progress.logger_version)
    files.start(config, None if logger is None else logger.version)
    datamodule.attach_pool(pool)
    state = RoundState(cfg=cfg, files=files, datamodule=datamodule, strategy=strategy, model=model, pool=pool,
                       rules=selection_rules(cfg.loop), logger=logger, boxes=LabeledBoxes(datamodule))
    return state, trained_at


def export_selection(state: RoundState, number: int, selection: Selection) -> float:
    """Write round ``number``'s ``selection.json`` and pre-annotations (the model's boxes of the selected frames,
    predicted again); returns the seconds it took."""
    started = time.perf_counter()
    detections = _predictions(state, state.model, selection.indices)
    document = selection_document(state, number, selection, detections)
    state.files.write_json(number, SELECTION_FILE, document)
    if state.files.writer:
        dataset = state.datamodule.dataset
        label_format(dataset).write_pre_annotations(dataset, document, state.files.loop_dir(number))
    return time.perf_counter() - started


def run_round(cfg: DictConfig) -> dict[str, Any] | None:
    """Run the next labeling round described by ``cfg`` (the composed ``round`` config) in ``cfg.round.dir``.

    Returns the round's summary (what ``round_NNN/summary.json`` holds), or None when the round waits for labels
    (nothing was written). Raises ``ValueError`` for data that is not a KITTI or COCO folder, a pool without
    labeled or unlabeled frames, a strategy that needs the pool's labels (``oracle``), and what a run refuses.
    """
    register_resolvers()
    config = OmegaConf.to_container(cfg, resolve=True)
    check_settings(config, composed_experiment())
    check_round_settings(cfg)
    files = RoundFiles(Path(cfg.round.dir))
    progress = files.resume(config)
    number = progress.completed
    datamodule: ActiveDataModule = hydra.utils.instantiate(cfg.data)
    label_format(datamodule.dataset)  # refuses data that rounds cannot write labels into, before anything else
    waiting = waiting_message(files, number, datamodule.dataset, bool(cfg.round.allow_missing))
    if waiting is not None:
        print(waiting)
        return None
    state, trained_at = prepare_round(cfg, files, progress, config, datamodule)
    pool = state.pool
    new_frames, n_labeled, n_unlabeled = pool.labeled_in_loop(number), pool.n_labeled, pool.n_unlabeled
    n_boxes = state.boxes.update(pool.labeled_indices)
    log.info("round %d: training on %d labeled frames (%d new), %d unlabeled", number, n_labeled, new_frames.size,
             n_unlabeled)
    trained = train_and_test(state, number, number)
    acquisition = acquire_next(state, trained, number)
    selection = acquisition.selection
    assert selection is not None  # a round always acquires
    export_seconds = export_selection(state, number, selection)
    record = record_loop(state, number, n_labeled, n_boxes, trained, acquisition)
    record = replace(record, timings={**record.timings, "export": export_seconds})
    log_loop(state, record, (new_frames, None), acquisition.gallery)
    summary = {"round": number, "folder": str(files.loop_dir(number)), "labeled_frames": n_labeled,
               "labeled_boxes": n_boxes, "new_frames": int(new_frames.size), "unlabeled_frames": n_unlabeled,
               "selected": int(selection.indices.size), "selected_cost": float(selection.costs.sum()),
               "budget_unit": state.rules.unit, "map": record.map, "ap_per_class": record.ap_per_class,
               "timings": dict(record.timings)}
    if not cfg.loop.reset_weights or cfg.loop.keep_weights:
        files.save_weights(number, state.model)
    files.save_trained_at(trained_at)
    files.write_json(number, SUMMARY_FILE, summary)
    files.append_result(asdict(record))  # the commit
    tracking.finish(state.logger)
    if files.writer:
        print(_format_round_summary(summary))
    return summary
