"""The active-learning loop driver: ``run(cfg) -> results``, as the steps of its data flow.

:func:`prepare` builds and checks everything a run needs before any file is written. Then per loop ``k``
(0-based) of ``cfg.loop.num_loops``:

1. :func:`train_and_test`: a fresh Trainer fits the model on the labeled frames and tests it on the fixed
   test split;
2. :func:`acquire_next` (except after the last loop): pool inference, where the :class:`ActiveLearningCallback`
   collects per-frame statistics, then :func:`alcv.acquisition.acquire` labels the next frames at loop ``k + 1``;
3. :func:`record_loop`: the loop's :class:`LoopRecord`, logged to the run's logger (W&B);
4. :func:`commit`: the labeling state to ``label_pool.json`` (atomically), the acquisition to
   ``selections.jsonl`` and last the record to ``results.jsonl``.

Running again with the same output folder resumes after the last completed loop (:mod:`alcv.run_files`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as pl
import numpy as np
import pandas as pd
from lightning.pytorch.loggers import Logger, WandbLogger
from omegaconf import DictConfig, OmegaConf

from alcv import gallery, tracking
from alcv.acquisition import Selection, acquire
from alcv.callbacks import ActiveLearningCallback
from alcv.config import register_resolvers
from alcv.data.datamodule import ActiveDataModule
from alcv.models.committee import CommitteeModule
from alcv.models.detection_module import DetectionModule
from alcv.models.detections import PredictionRequest
from alcv.models.mirror import MirroredPassModule
from alcv.pool import LabelPool
from alcv.run_files import POOL_STATE_FILE, Progress, RunFiles
from alcv.run_records import OBJECTIVES, RESULTS_FILE, LoopRecord, check_objective
from alcv.safe_io import checked_inside
from alcv.seeding import INITIAL_SET, TRAINING, derive_seed
from alcv.settings import STUDY_TYPES, check_settings, composed_experiment
from alcv.strategies import SelectionRules, Strategy

log = logging.getLogger(__name__)


#: the loop settings that shape each acquisition; recorded per loop, so that a report tells variants apart
SELECTION_SETTINGS = ("query_size", "budget_unit", "cost", "spread")


def initial_size(loop_cfg: DictConfig, pool_size: int) -> int:
    """Frames labeled at loop 0: ``loop.initial_size``, or ``loop.initial_fraction`` of the pool (rounded,
    at least 1) when that is set instead."""
    size, fraction = loop_cfg.get("initial_size"), loop_cfg.get("initial_fraction")
    if (size is None) == (fraction is None):
        raise ValueError("set exactly one of loop.initial_size (frames) and loop.initial_fraction (of the pool), "
                         f"got initial_size={size} and initial_fraction={fraction}")
    if fraction is None:
        return int(size)
    if not 0 < fraction <= 1:
        raise ValueError(f"loop.initial_fraction must be in (0, 1], got {fraction}")
    return max(1, round(float(fraction) * pool_size))


def selection_rules(loop_cfg: DictConfig) -> SelectionRules:
    """The budget and spreading rules of one acquisition, from ``loop.query_size``, ``loop.budget_unit``,
    ``loop.cost`` and ``loop.spread``."""
    cost, spread = loop_cfg.get("cost") or {}, loop_cfg.get("spread") or {}
    return SelectionRules(budget=float(loop_cfg.query_size), unit=loop_cfg.get("budget_unit", "frames"),
                          frame_cost=float(cost.get("frame", 1.0)), box_cost=float(cost.get("box", 1.0)),
                          box_min_score=float(cost.get("min_score", 0.3)), max_per_drive=spread.get("max_per_drive"),
                          min_gap_seconds=spread.get("min_gap_seconds"), strict_spread=spread.get("strict", False))


def check_schedule(loop_cfg: DictConfig) -> None:
    """Reject a loop schedule that cannot work whatever the data (the number of loops, the budget per query, the
    study type, the objective), before the run folder is read or written; messages name the setting."""
    study_type = loop_cfg.get("study_type", "active_learning")
    if study_type not in STUDY_TYPES:
        raise ValueError(f"loop.study_type: unknown '{study_type}', expected one of {STUDY_TYPES}")
    initial_size(loop_cfg, pool_size=1)  # its checks (one of size and fraction, the fraction's range) need no pool
    query, loops = loop_cfg.query_size, loop_cfg.num_loops
    if study_type == "subset" and loops != 1:
        raise ValueError(f"loop.study_type=subset trains one model on one random subset: loop.num_loops must be "
                         f"1, got {loops}")
    if loops < 1:
        raise ValueError(f"loop.num_loops must be >= 1, got {loops}")
    if loops > 1 and query < 1:
        raise ValueError(f"loop.query_size must be >= 1, got {query}")
    if loop_cfg.get("budget_unit", "frames") == "frames" and query != int(query):
        raise ValueError(f"loop.query_size={query}: a budget in frames (loop.budget_unit=frames) is a whole number "
                         "of frames; a fractional budget needs loop.budget_unit=boxes")
    selection_rules(loop_cfg)
    check_objective(loop_cfg.get("objective", OBJECTIVES[0]))


def check_loop_config(loop_cfg: DictConfig, pool_size: int) -> None:
    """Reject loop settings that cannot work on a pool of ``pool_size`` frames (the initial set and the queries
    against the pool; :func:`run` checks the rest, :func:`check_schedule`, before it reads the run folder), before
    anything trains; messages name the setting."""
    initial, query, loops = initial_size(loop_cfg, pool_size), loop_cfg.query_size, loop_cfg.num_loops
    if not 1 <= initial <= pool_size:
        raise ValueError(f"loop.initial_size must be in [1, {pool_size}] (the pool's size), got {initial}")
    needed = initial + query * (loops - 1)
    if loop_cfg.get("budget_unit", "frames") == "frames" and needed > pool_size:
        raise ValueError(f"loop.query_size={query} with loop.initial_size={initial} and loop.num_loops={loops} "
                         f"needs {needed} frames but the pool holds {pool_size}; at most "
                         f"{(pool_size - initial) // max(loops - 1, 1)} frames per query fit")


def check_saved_pool(pool: LabelPool, split: np.ndarray, path: Path, data: str) -> None:
    """Refuse a resumed run whose saved pool (read from ``path``) is not the data's pool split ``split``
    (absolute dataset indices): its frames would not be the frames it claims to have labeled.

    Raises:
        ValueError: naming the file, the field and frames that differ.
    """
    if difference := pool.differs_from(split):
        raise ValueError(f"{path}: field 'indices' is not the pool split of data '{data}': {difference}")


def check_training(cfg: DictConfig, model: pl.LightningModule) -> None:
    """Build what every loop will train with once, before anything is written, so that settings it refuses fail
    here and not after ``run.json``: the Trainer (``trainer.*``) and the model's optimiser and scheduler. A run that
    would not train (``trainer.max_epochs=0``, or no end to training) is refused too, since its results would be
    those of an untrained model.

    Raises:
        ValueError: naming the setting and what refused it.
    """
    epochs, steps = cfg.trainer.get("max_epochs"), cfg.trainer.get("max_steps", -1)
    if not (epochs is not None and epochs >= 1) and not (steps is not None and steps >= 1):
        raise ValueError(f"trainer.max_epochs={epochs} with trainer.max_steps={steps}: every loop must train and "
                         "stop, so set trainer.max_epochs >= 1 (each epoch is data.epoch_size samples) or "
                         "trainer.max_steps >= 1")
    try:
        hydra.utils.instantiate(cfg.trainer, logger=False, callbacks=[], enable_checkpointing=False)
    except Exception as error:  # Lightning refuses settings with several kinds of error; all are the user's
        cause = error.__cause__ or error  # Hydra's InstantiationException wraps what the Trainer raised
        raise ValueError(f"trainer: the Trainer refused these settings: {cause}") from error
    if isinstance(model, DetectionModule):
        model.check_optimization()


#: a model config of each modality, named in the error of :func:`check_modality`
_EXAMPLE_MODELS = {"lidar": "model=bev_tiny", "camera": "model=fcos_tiny or model=fasterrcnn"}


def check_modality(datamodule: ActiveDataModule, model: pl.LightningModule) -> None:
    """Refuse a model that reads another kind of frame than the data holds (e.g. a BEV model on camera images),
    before anything trains; models or datasets that do not state a ``modality`` are not checked."""
    data_modality = getattr(datamodule.dataset, "modality", None)
    model_modality = getattr(model, "modality", None)
    if data_modality is None or model_modality is None or data_modality == model_modality:
        return
    raise ValueError(
        f"model {type(model).__name__} reads {model_modality} frames but data '{datamodule.name}' holds "
        f"{data_modality} frames: choose a {data_modality} model for this data (e.g. "
        f"{_EXAMPLE_MODELS.get(data_modality, '?')}) or {model_modality} data for this model")


def check_fully_labeled(datamodule: ActiveDataModule) -> None:
    """Refuse data whose pool has frames without labels: a simulated run labels a frame by revealing the labels
    the data holds, so it would train on frames that have none (label them in real rounds, :mod:`alcv.rounds`)."""
    unlabeled = datamodule.dataset.unlabeled_indices()
    if unlabeled.size:
        names = [datamodule.dataset.frame_name(int(index)) for index in unlabeled[:5]]
        raise ValueError(f"data '{datamodule.name}' has {unlabeled.size} pool frames without labels (e.g. {names}): a "
                         "simulated run reveals the labels of the frames it selects, so every pool frame needs them. "
                         "To select frames for people to label, run labeling rounds (alcv-round)")


class LabeledBoxes:
    """Ground-truth boxes of the labeled set, in total and per class, counting each frame once (frames
    only get added)."""

    def __init__(self, datamodule: ActiveDataModule) -> None:
        self.datamodule = datamodule
        self.counted: set[int] = set()
        self.per_class = np.zeros(len(datamodule.class_names), dtype=np.int64)

    def update(self, labeled: np.ndarray) -> int:
        for index in labeled.tolist():
            if index not in self.counted:
                self.counted.add(index)
                labels = self.datamodule.dataset.box_labels(index)
                self.per_class += np.bincount(labels, minlength=self.per_class.size)
        return int(self.per_class.sum())


def _train_committee(cfg: DictConfig, datamodule: ActiveDataModule, model: pl.LightningModule, members: int,
                     seed: int, loop: int, loop_dir: Path) -> list[pl.LightningModule]:
    """``model`` (already trained) plus ``members - 1`` more, each from its own random initialisation and
    trained on the same labeled frames with a fresh Trainer (no logger)."""
    committee = [model]
    for number in range(1, members):
        pl.seed_everything(derive_seed(seed, TRAINING, loop * 1000 + number), workers=True)
        member = hydra.utils.instantiate(cfg.model)
        trainer = hydra.utils.instantiate(cfg.trainer, logger=False,
                                          default_root_dir=str(loop_dir / f"member_{number}"))
        trainer.fit(member, datamodule=datamodule)
        committee.append(member)
    return committee


def _predictor(models: list[pl.LightningModule], request: PredictionRequest) -> pl.LightningModule:
    """The module that predicts the pool for ``request``: the model, a committee of ``models``, or the model with a
    mirrored second pass."""
    predictor = models[0] if len(models) == 1 else CommitteeModule(models)
    if request.mirror:
        if len(models) > 1:
            raise ValueError("a strategy cannot ask for both a committee and a mirrored pass of pool inference")
        predictor = MirroredPassModule(predictor)
    if not hasattr(predictor, "prediction_request") and request != PredictionRequest():
        raise ValueError(f"{type(predictor).__name__} has no 'prediction_request', so it cannot give what the "
                         f"strategy needs from pool inference ({request})")
    if hasattr(predictor, "prediction_request"):
        predictor.prediction_request = request
    return predictor


def run_logger(cfg: DictConfig, output_dir: Path, version: Any) -> Logger | None:
    """The run's logger (None for ``logger=none``), writing inside ``output_dir``; with the ``version`` of an
    earlier attempt (the W&B run id) it continues that tracked run."""
    if not cfg.logger:
        return None
    resumed = {} if version is None else {"version": version}
    logger: Logger = hydra.utils.instantiate(cfg.logger, save_dir=str(output_dir), **resumed)
    checked_inside(output_dir, getattr(logger, "log_dir", None) or logger.save_dir or output_dir,
                   "logger folder (from experiment_name or logger.name)")
    return logger


def _extra_callbacks(cfg: DictConfig, output_dir: Path) -> list[pl.Callback]:
    """The Lightning callbacks of ``cfg.callbacks``, built afresh for one loop's Trainer; a callback that writes
    files (a ``dirpath``, as ``ModelCheckpoint`` has) must write them inside ``output_dir``."""
    callbacks = []
    for name, node in (cfg.get("callbacks") or {}).items():
        callback = hydra.utils.instantiate(node)
        if getattr(callback, "dirpath", None) is not None:
            checked_inside(output_dir, callback.dirpath, f"callbacks.{name}.dirpath")
        callbacks.append(callback)
    return callbacks


def _check_shards(frames: int, world_size: int, what: str) -> None:
    """Refuse an evaluation or a pool inference in which some DDP process would get no frame: Lightning runs no
    hook on such a process, so the others would wait for it forever when they gather metrics or scores."""
    if frames < world_size:
        raise ValueError(f"{what} has {frames} frames for {world_size} processes, and each needs at least one; use "
                         "fewer devices (trainer.devices) or more frames")


def _scores(values: list[float | None] | None) -> np.ndarray | None:
    """A selection line's scores, with the non-finite ones that JSON stores as null back as NaN."""
    return None if values is None else np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _format_summary(records: list[dict[str, Any]], class_names: tuple[str, ...]) -> str:
    """The per-loop table a run prints when it ends: labeled frames and boxes, test mAP and AP per class ("n/a"
    where undefined), and the seconds of training and pool inference."""
    table = pd.DataFrame({
        "loop": [record["loop"] for record in records],
        "frames": [record["n_labeled_frames"] for record in records],
        "boxes": [record["n_labeled_boxes"] for record in records],
        "fraction": [record["fraction"] for record in records],
        "mAP": [record["map"] for record in records],
        **{name: [record["ap_per_class"][name] for record in records] for name in class_names},
        "train s": [record["timings"]["train"] for record in records],
        "pool s": [record["timings"]["pool_inference"] for record in records]})
    three, whole = "{:.3f}".format, "{:.0f}".format
    formats = {**{name: three for name in ("fraction", "mAP", *class_names)}, "train s": whole, "pool s": whole}
    # undefined APs (None read back from a results file, or NaN) print as n/a
    return table.astype(dict.fromkeys(formats, float)).to_string(index=False, na_rep="n/a", formatters=formats)


@dataclass
class RunState:
    """What :func:`prepare` builds for a run, and what its loops change: the model (a new one per loop unless
    it warm-starts), the pool's labels and the labeled boxes.

    Attributes:
        cfg: the composed config. files: the run's files.
        datamodule, strategy, model: built from ``cfg``. pool: the labeling state (resumed or new).
        rules: each acquisition's budget and spreading.
        logger: the run's logger, or None. boxes: ground-truth boxes of the labeled frames.
    """

    cfg: DictConfig
    files: RunFiles
    datamodule: ActiveDataModule
    strategy: Strategy
    model: pl.LightningModule
    pool: LabelPool
    rules: SelectionRules
    logger: Logger | None
    boxes: LabeledBoxes

    @property
    def seed(self) -> int:
        return int(self.cfg.seed)

    @property
    def num_loops(self) -> int:
        return int(self.cfg.loop.num_loops)

    def acquires_after(self, loop: int) -> bool:
        """Whether loop ``loop`` selects frames for a next one (every loop of a run but its last)."""
        return loop < self.num_loops - 1

    @property
    def request(self) -> PredictionRequest:
        """What pool inference must give the strategy."""
        return self.strategy.request or PredictionRequest()

    @property
    def predicts_pool(self) -> bool:
        """Whether acquisitions predict the pool: strategies without predictions still need them for a budget in
        boxes, or for spreading over drives."""
        return self.strategy.request is not None or self.rules.counts_boxes or self.rules.spreads


@dataclass
class TrainedLoop:
    """One loop's training and test: its Trainer (which then predicts the pool) and the callback that collects
    the pool's statistics, the models that predict (the model, or a committee) and the seconds each step took.
    The test result is the model's ``test_result``."""

    trainer: pl.Trainer
    callback: ActiveLearningCallback
    models: list[pl.LightningModule]
    train_seconds: float
    test_seconds: float


@dataclass
class Acquisition:
    """What one loop selected for the next (None after the last loop), the seconds it took and, under W&B, the
    rows of its gallery table (:func:`draw_gallery`)."""

    selection: Selection | None = None
    pool_seconds: float = 0.0
    selection_seconds: float = 0.0
    gallery: list[list[Any]] | None = None


def prepare(cfg: DictConfig, files: RunFiles, progress: Progress, config: dict[str, Any]) -> RunState:
    """Build and check everything the run needs (data, strategy, loop settings, model, callbacks, logger),
    before ``run.json`` is written; then write it and, for a new run, label the random initial set."""
    seed = int(cfg.seed)
    datamodule: ActiveDataModule = hydra.utils.instantiate(cfg.data)
    strategy: Strategy = hydra.utils.instantiate(cfg.strategy)
    check_fully_labeled(datamodule)
    if progress.pool is not None:
        check_saved_pool(progress.pool, datamodule.pool_split(), files.output_dir / POOL_STATE_FILE, datamodule.name)
    pool = progress.pool if progress.pool is not None else LabelPool(datamodule.pool_split())
    check_loop_config(cfg.loop, len(pool))
    pl.seed_everything(derive_seed(seed, TRAINING, 0), workers=True)
    model: pl.LightningModule = hydra.utils.instantiate(cfg.model)
    check_modality(datamodule, model)
    check_training(cfg, model)
    _extra_callbacks(cfg, files.output_dir)  # built again for every loop; here to refuse bad ones before any file
    logger = run_logger(cfg, files.output_dir, progress.logger_version)
    files.start(config, None if logger is None else logger.version)
    if logger is not None and not progress.completed_loops:
        logger.log_hyperparams(config)
    if progress.completed_loops == 0:
        initial_rng = np.random.default_rng(derive_seed(seed, INITIAL_SET))
        pool.label_random(initial_size(cfg.loop, len(pool)), loop=0, rng=initial_rng)
        files.save_pool(pool)
        files.append_selection(0, pool.labeled_in_loop(0), None)
    datamodule.attach_pool(pool)
    return RunState(cfg=cfg, files=files, datamodule=datamodule, strategy=strategy, model=model, pool=pool,
                    rules=selection_rules(cfg.loop), logger=logger, boxes=LabeledBoxes(datamodule))


def train_and_test(state: RunState, loop: int, first_loop: int) -> TrainedLoop:
    """Fit loop ``loop``'s model on the labeled frames with a fresh Trainer (and, when the strategy asks for a
    committee, its other members), then test it. ``first_loop``: the first loop of this process (a warm start
    resumed there loads the previous loop's weights)."""
    cfg, datamodule = state.cfg, state.datamodule
    # every random stream of a loop starts from (seed, loop): a resumed loop is the loop it would have been
    pl.seed_everything(derive_seed(state.seed, TRAINING, loop), workers=True)
    if loop > 0 and cfg.loop.reset_weights:
        state.model = hydra.utils.instantiate(cfg.model)
    elif loop > 0 and loop == first_loop:
        state.files.load_weights(loop - 1, state.model)
    callback = ActiveLearningCallback(state.strategy, state.rules, len(datamodule.dataset),
                                      truth=bool(cfg.loop.get("pool_truth", False))
                                      or getattr(state.strategy, "needs_truth", False))
    loop_dir = state.files.loop_dir(loop)
    trainer: pl.Trainer = hydra.utils.instantiate(
        cfg.trainer, logger=state.logger if state.logger is not None else False,
        callbacks=[callback, *_extra_callbacks(cfg, state.files.output_dir)], default_root_dir=str(loop_dir))
    for split in ("val", "test"):  # an empty val split is not evaluated at all
        if frames := datamodule.dataset.split_indices(split).size:
            _check_shards(frames, trainer.world_size, f"the {split} split")
    started = time.perf_counter()
    trainer.fit(state.model, datamodule=datamodule)
    models = [state.model]
    if state.acquires_after(loop) and state.predicts_pool and state.request.members > 1:
        models = _train_committee(cfg, datamodule, state.model, state.request.members, state.seed, loop, loop_dir)
    train_seconds = time.perf_counter() - started
    started = time.perf_counter()
    trainer.test(state.model, datamodule=datamodule, verbose=False)
    return TrainedLoop(trainer, callback, models, train_seconds, time.perf_counter() - started)


def acquire_next(state: RunState, trained: TrainedLoop, loop: int) -> Acquisition:
    """Select and label the frames of loop ``loop + 1`` (nothing after the last loop): predict the pool when the
    strategy or the rules need it, then :func:`acquire`."""
    if not state.acquires_after(loop):
        return Acquisition()
    columns, pool_seconds = None, 0.0
    if state.predicts_pool:
        started = time.perf_counter()
        state.datamodule.predict_labeled = state.request.include_labeled
        _check_shards(len(state.pool) if state.request.include_labeled else state.pool.n_unlabeled,
                      trained.trainer.world_size, "pool inference")
        trained.trainer.predict(_predictor(trained.models, state.request), datamodule=state.datamodule,
                                return_predictions=False)
        columns, pool_seconds = trained.callback.columns, time.perf_counter() - started
    started = time.perf_counter()
    selection = acquire(state.pool, state.strategy, state.rules, loop + 1, state.seed, columns,
                        state.boxes.per_class.copy(), trained.trainer)
    selection_seconds = time.perf_counter() - started
    return Acquisition(selection, pool_seconds, selection_seconds, draw_gallery(state, trained.models[0], selection))


def draw_gallery(state: RunState, model: pl.LightningModule, selection: Selection) -> list[list[Any]] | None:
    """Draw the first ``loop.gallery_frames`` picks of ``selection`` with ``model``'s predictions into the run's
    ``gallery`` folder (:mod:`alcv.gallery`; the writing process only); returns the rows of the W&B table
    ``al/gallery`` (loop, rank, index, score, media) under a W&B logger, else None."""
    count = int(state.cfg.loop.get("gallery_frames") or 0)
    if count <= 0 or not selection.indices.size or not state.files.writer:
        return None
    dataset = state.datamodule.dataset
    items = [dataset[int(index)] for index in selection.indices[:count]]
    detections = gallery.predict_frames(model, state.datamodule.collate_fn, items)
    scores = selection.scores[:count].tolist()
    gallery.write_gallery(state.files.output_dir, selection.loop,
                          gallery.gallery_figure(items, detections, scores, dataset.modality, selection.loop))
    if not isinstance(state.logger, WandbLogger):
        return None
    return [[selection.loop, rank, int(item["index"]), score if np.isfinite(score) else None,
             gallery.wandb_media(item, frame, state.datamodule.class_names, dataset.modality)]
            for rank, (item, frame, score) in enumerate(zip(items, detections, scores, strict=True))]


def record_loop(state: RunState, loop: int, n_labeled: int, n_boxes: int, trained: TrainedLoop,
                acquisition: Acquisition) -> LoopRecord:
    """The results line of loop ``loop``, trained on ``n_labeled`` frames holding ``n_boxes`` boxes."""
    cfg, model, selection = state.cfg, state.model, acquisition.selection
    result = model.test_result
    return LoopRecord(
        experiment=cfg.experiment_name, study_type=cfg.loop.get("study_type", "active_learning"),
        dataset=state.datamodule.name, strategy=state.strategy.name,
        strategy_config=OmegaConf.to_container(cfg.strategy, resolve=True),
        selection_config={key: value for key, value in OmegaConf.to_container(cfg.loop, resolve=True).items()
                          if key in SELECTION_SETTINGS},
        seed=state.seed, loop=loop, num_loops=state.num_loops, n_labeled_frames=n_labeled, n_labeled_boxes=n_boxes,
        n_pool_frames=len(state.pool), fraction=n_labeled / len(state.pool),
        target_fraction=cfg.loop.get("initial_fraction"), map=result.map,
        ap_per_class=dict(zip(state.datamodule.class_names, result.ap_per_class.tolist(), strict=True)),
        ap_per_threshold=dict(zip((f"{t:g}" for t in result.thresholds), result.ap_per_threshold.tolist(),
                                  strict=True)),
        val_map=model.val_result.map if model.val_result is not None else float("nan"),
        extra_metrics={name: extra.as_dict() for name, extra in getattr(model, "extra_test_results", {}).items()},
        score_reliability=None if result.reliability is None else result.reliability.as_dict(),
        n_selected=0 if selection is None else int(selection.indices.size), budget_unit=state.rules.unit,
        selected_cost=0.0 if selection is None else float(selection.costs.sum()),
        budget_left=0.0 if selection is None else selection.budget_left,
        spread_relaxations=0 if selection is None else selection.spread_relaxations,
        budget_shortfall=None if selection is None else selection.shortfall,
        pool_truth=None if selection is None else selection.truth,
        timings={"train": trained.train_seconds, "test": trained.test_seconds,
                 "pool_inference": acquisition.pool_seconds, "selection": acquisition.selection_seconds})


def log_loop(state: RunState, record: LoopRecord, trained_on: tuple[np.ndarray, np.ndarray | None],
             gallery_rows: list[list[Any]] | None = None) -> None:
    """Log ``record`` to the run's logger, with the frames labeled for its loop (``trained_on``: indices in the
    strategy's order, and their scores or None) and the gallery of its acquisition (:func:`draw_gallery`)."""
    dataset = state.datamodule.dataset
    tracking.log_loop_metrics(state.logger, {
        "al/map": record.map, **{f"al/ap/{name}": ap for name, ap in record.ap_per_class.items()},
        **{f"al/{metric}/{key}": value for metric, values in record.extra_metrics.items()
           for key, value in values.items()},
        "al/n_labeled_frames": record.n_labeled_frames, "al/n_labeled_boxes": record.n_labeled_boxes,
        "al/fraction": record.fraction, "al/train_seconds": record.timings["train"],
        "al/pool_inference_seconds": record.timings["pool_inference"]}, record.loop,
        selected=tracking.SelectedFrames(*trained_on, [dataset.num_boxes(i) for i in trained_on[0].tolist()]),
        gallery=gallery_rows)


def commit(state: RunState, record: LoopRecord, selection: Selection | None) -> dict[str, Any]:
    """Write loop ``record.loop``'s files in the order that makes it resumable (see :mod:`alcv.run_files`):
    weights (for a warm start, or all with ``loop.keep_weights``), the pool, the next selection, and last the
    results line, which it returns."""
    warm_start = state.acquires_after(record.loop) and not state.cfg.loop.reset_weights
    if warm_start or state.cfg.loop.keep_weights:
        state.files.save_weights(record.loop, state.model)
    state.files.save_pool(state.pool)
    if selection is not None:
        state.files.append_selection(selection.loop, selection.indices, selection.scores)
    line = asdict(record)
    state.files.append_result(line)
    return line


def run(cfg: DictConfig) -> list[dict[str, Any]]:
    """Run one active-learning experiment described by ``cfg`` (the composed Hydra config).

    Writes into ``cfg.output_dir``: ``run.json``, ``results.jsonl``, ``selections.jsonl``, ``label_pool.json``
    and one folder per loop for the Trainer (:mod:`alcv.run_files`). When the folder holds an earlier attempt
    of the same run, goes on after its last completed loop (an interrupted loop is redone from its start);
    a run with another config is refused. Returns the records of every loop (the lines of ``results.jsonl``;
    NaN read back from the file of an earlier attempt is None).
    """
    register_resolvers()
    config = OmegaConf.to_container(cfg, resolve=True)
    check_settings(config, composed_experiment())
    check_schedule(cfg.loop)
    files = RunFiles(Path(cfg.output_dir))
    progress = files.resume(config)
    if progress.completed_loops == int(cfg.loop.num_loops):
        log.info("the run in %s has completed all %d loops; nothing to do", files.output_dir, progress.completed_loops)
        if files.writer:
            print(_format_summary(progress.records, tuple(progress.records[0]["ap_per_class"])))
        return progress.records
    state = prepare(cfg, files, progress, config)
    records: list[dict[str, Any]] = list(progress.records)
    last_selection = progress.selections[-1] if progress.selections else None
    # the frames labeled for the coming loop, in the strategy's order, with their scores (None at loop 0)
    trained_on: tuple[np.ndarray, np.ndarray | None] = (
        (state.pool.labeled_in_loop(0), None) if last_selection is None else
        (np.asarray(last_selection["indices"], dtype=np.int64), _scores(last_selection["scores"])))
    for loop in range(progress.completed_loops, state.num_loops):
        n_labeled, n_boxes = state.pool.n_labeled, state.boxes.update(state.pool.labeled_indices)
        log.info("loop %d of %d: training on %d labeled frames (%.1f %% of the pool)", loop + 1, state.num_loops,
                 n_labeled, 100 * n_labeled / len(state.pool))
        trained = train_and_test(state, loop, progress.completed_loops)
        acquisition = acquire_next(state, trained, loop)
        record = record_loop(state, loop, n_labeled, n_boxes, trained, acquisition)
        # logged before the commit: a loop killed in between is logged twice (the same values), never missed
        log_loop(state, record, trained_on, acquisition.gallery)
        records.append(commit(state, record, acquisition.selection))
        if acquisition.selection is not None:
            trained_on = (acquisition.selection.indices, acquisition.selection.scores)
        log.info("loop %d of %d: mAP %.3f on the test split (%s)", loop + 1, state.num_loops, record.map,
                 ", ".join(f"{name} {ap:.3f}" for name, ap in record.ap_per_class.items()))
    tracking.finish(state.logger)
    if files.writer:
        print(f"\nalcv: {cfg.experiment_name} / {state.strategy.name} / seed {state.seed} on {state.datamodule.name} "
              f"(results in {files.output_dir / RESULTS_FILE})")
        print(_format_summary(records, state.datamodule.class_names))
    return records
