"""Labels needed to reach 95 % of the full-pool mAP, each strategy against random, over seeds (issue 15).

Runs, through the real command line (skipped with ``--skip-runs``; every finished run is kept, and the same
command run again resumes the runs it had started, since each sweep writes into a fixed folder of ``--study``):

1. the full-pool reference models, one per seed:
   ``alcv -m experiment=subset_study loop.initial_fraction=1.0 seed=<seeds> hydra.sweep.dir=<study>/full_pool``;
2. one sweep per arm (a strategy and its settings, :data:`ARMS`) over the seeds, on Hydra's joblib launcher
   with ``--jobs`` workers of one thread each:
   ``alcv -m experiment=label_efficiency <arm overrides> seed=<seeds> hydra.sweep.dir=<study>/arms``;
3. with ``--baseline-tail``, random's curve beyond the arms' last loop: one model per (fraction, seed) on a random
   subset of the pool, ``alcv -m experiment=subset_study loop.initial_fraction=<tail> seed=<seeds>
   hydra.sweep.dir=<study>/random_tail``. Every loop of random active learning trains from fresh weights
   (``loop.reset_weights``) on a uniformly random subset of the pool with the same recipe, so a subset run of the
   same size and seed is a sample of the same point of random's curve; only what random needs to reach 95 % is
   paid for, not a second copy of its first loops;
4. ``alcv-report <study> --out <study>/report --baseline random`` (curves with bands, the report's own
   labels-needed table).

Then it prints, and writes to ``--out``: the cost per run (minutes of train + test + pool inference + selection,
as the runs timed themselves), every seed's mAP per loop, and per arm the frames and boxes needed to reach 90 %
and 95 % of the full-pool mAP, their ratio to random's with a bootstrap 95 % interval over seeds, the area under
the learning curve and the AP per class at the last loop. An arm that has finished some of the seeds (two or
more) but not all gets the same row in a table of its own, against random over those seeds only. It ends with one
line::

    best: <arm> | seeds: <n> | frames to 95 %: <ratio> [<low>, <high>] | boxes to 95 %: <ratio> [<low>, <high>]

**How labels-to-reach is measured.** The target is the level times the mean full-pool mAP of the seeds used;
the mean learning curve (over the same seeds) is interpolated linearly between the last loop below the target
and the first at or above it (``none`` where the curve never reaches it). The ratio is the strategy's labels
over random's. The interval resamples the seeds with replacement (the same seeds for the strategy, random and
the reference: a paired bootstrap), recomputes the ratio, and takes the 2.5 and 97.5 percentiles of the
resamples where both curves reach the target; the share of such resamples is printed beside it. The best arm
is the one with the smallest frames ratio at 95 % (by the mean curves), or, where no arm and random both
reach it, the largest area under the curve.

Usage::

    # screening on the 1,000-frame world: 50 random frames, then 5 acquisitions of 100 (5 % ... 54 %); random's
    # curve goes on to 90 % of the pool with subset models of the same seeds
    python benchmarks/label_efficiency.py --study benchmarks/studies/label_efficiency_small --seeds 0 1 2 \\
        --arms random least_confidence --baseline-tail 0.65 0.75 0.85 0.95 --jobs 2 \\
        --out benchmarks/results/label_efficiency_small.txt -- \\
        data=synthetic_lidar_small loop.initial_size=50 loop.query_size=100
    # budgets in boxes: 2,000 box equivalents per acquisition (100 frames of the pool's 20 boxes per frame)
    python benchmarks/label_efficiency.py --study benchmarks/studies/label_efficiency_small --seeds 0 1 2 \
        --arms random least_confidence@boxes --box-query 2000 --jobs 2 -- \
        data=synthetic_lidar_small loop.initial_size=50 loop.query_size=100
    # the issue's protocol on the default world (experiment=label_efficiency: 100 ... 1,100 of 2,063 frames)
    python benchmarks/label_efficiency.py --study benchmarks/studies/label_efficiency --seeds 0 1 2 3 4 \\
        --arms random least_confidence --jobs 2 --out benchmarks/results/label_efficiency.txt

Overrides after ``--`` go to every run (the full-pool ones take only those of ``data.``). Each arm is one sweep
over the seeds: with fewer jobs than seeds the last ones run alone, so ``--jobs`` equal to the number of seeds
keeps both cores busy (at the cost of sharing them). Cost on this
project's 2 CPU cores, one thread per job: a small-world run of 6 loops takes about 16 minutes, its full-pool
model about 8; a default-world run about twice that (the cost grows with the labeled frames, since each loop
trains 20 passes over them).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from alcv.run_records import curve_average
from alcv.study.report import Study, load_study, truth_table
from alcv.study.selections import selection_table

#: name -> the overrides that make the arm (besides the protocol and the seed); see BOX_ARMS for ``<arm>@boxes``
ARMS: dict[str, tuple[str, ...]] = {
    "random": ("strategy=random",),
    "random+spread": ("strategy=random", "loop.spread.max_per_drive=2"),
    "least_confidence": ("strategy=least_confidence",),
    "least_confidence+spread": ("strategy=least_confidence", "loop.spread.max_per_drive=2"),
    **{f"{measure}/{how}": (f"strategy={measure}", f"aggregation={how}")
       for measure in ("least_confidence", "margin", "entropy", "binary_entropy")
       for how in ("mean", "sum", "topk_mean")},
    "margin": ("strategy=margin",),
    "entropy": ("strategy=entropy",),
    "binary_entropy": ("strategy=binary_entropy",),
    "bald": ("strategy=bald",),
    "committee": ("strategy=committee",),
    "coreset": ("strategy=coreset",),
    "hybrid": ("strategy=hybrid",),
    # hybrid's default prefilter (10 x the picks) keeps the whole pool when a query is a tenth of it (as on the
    # 1,000-frame world with 100-frame queries), which makes it core-set exactly; 3 x keeps a third
    "hybrid/prefilter3": ("strategy=hybrid", "strategy.prefilter=3"),
    "class_balance": ("strategy=class_balance",),
    "crb": ("strategy=crb",),
    "localization": ("strategy=localization",),
    "oracle": ("strategy=oracle",),
    "oracle/error_rate": ("strategy=oracle", "strategy.rank_by=error_rate"),
}
#: every arm again with a budget in boxes (``--box-query`` box equivalents per acquisition instead of the
#: protocol's ``loop.query_size`` frames), named ``<arm>@boxes``
BOX_SUFFIX = "@boxes"
ARMS.update({f"{name}{BOX_SUFFIX}": (*overrides, "loop.budget_unit=boxes") for name, overrides in list(ARMS.items())})
BASELINE = "random"
LEVELS = (0.9, 0.95)
#: the folder of random's tail in a study (see ``--baseline-tail``)
TAIL_FOLDER = "random_tail"
#: the folder of a study's screening runs: one seed, the protocol's first loops (see :func:`screen_table`)
SCREEN_FOLDER = "screen"
#: overrides that are the protocol, not the arm: left out of the run folders' names
PROTOCOL_KEYS = ("experiment", "hydra/launcher", "hydra.launcher.n_jobs", "trainer.enable_progress_bar")


def arm_folder(overrides: Sequence[str], seed: int) -> str:
    """The run folder's name that Hydra's ``override_dirname`` gives an arm's run: its overrides and the seed,
    sorted by key, joined by commas."""
    return ",".join(sorted([*overrides, f"seed={seed}"]))


def arms_of(records: pd.DataFrame) -> pd.Series:
    """Each record's arm: the :data:`ARMS` entry whose overrides name its run folder, else the report's label of
    its strategy (the name plus the settings in which its runs differ)."""
    folders = {",".join(sorted(overrides)): arm for arm, overrides in ARMS.items()}

    def arm(row: pd.Series) -> str:
        key = ",".join(part for part in Path(row["run"]).name.split(",") if not part.startswith("seed="))
        return folders.get(key, row["strategy"])

    return records.apply(arm, axis=1)


def alcv(*arguments: str, command: str = "alcv") -> None:
    print(f"$ {command} " + " ".join(arguments), flush=True)
    subprocess.run([str(Path(sys.executable).with_name(command)), *arguments], check=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})


def run_study(study: Path, seeds: Sequence[int], arms: Sequence[str], jobs: int, overrides: Sequence[str],
              box_query: float | None, baseline_tail: Sequence[float] = ()) -> None:
    """The full-pool models, random's tail (subset models at the ``baseline_tail`` fractions) and every arm's
    sweep; runs that finished before are found and kept. Box arms (:data:`BOX_SUFFIX`) spend ``box_query`` box
    equivalents per acquisition."""
    seed_list = ",".join(str(seed) for seed in seeds)
    launcher = ("hydra/launcher=joblib", f"hydra.launcher.n_jobs={jobs}") if jobs > 1 else ()
    excluded = [*PROTOCOL_KEYS, "loop.query_size", *(override.split("=", 1)[0] for override in overrides)]
    data_overrides = [override for override in overrides if override.startswith(("data=", "data."))]
    alcv("-m", "experiment=subset_study", "loop.initial_fraction=1.0", f"seed={seed_list}", "logger=none",
         "trainer.enable_progress_bar=false", *launcher, *data_overrides, f"hydra.sweep.dir={study}/full_pool")
    if baseline_tail:
        alcv("-m", "experiment=subset_study", f"loop.initial_fraction={','.join(f'{f:g}' for f in baseline_tail)}",
             f"seed={seed_list}", "logger=none", "trainer.enable_progress_bar=false", *launcher, *data_overrides,
             f"hydra.sweep.dir={study}/{TAIL_FOLDER}")
    for arm in arms:
        protocol = list(overrides)
        if arm.endswith(BOX_SUFFIX):
            if box_query is None:
                raise SystemExit(f"label_efficiency: arm '{arm}' needs --box-query (box equivalents per acquisition)")
            protocol = [o for o in protocol if not o.startswith("loop.query_size=")]
            protocol.append(f"loop.query_size={box_query:g}")
        alcv("-m", "experiment=label_efficiency", *ARMS[arm], f"seed={seed_list}", "trainer.enable_progress_bar=false",
             *launcher, *protocol, f"hydra.sweep.dir={study}/arms",
             f"hydra.job.config.override_dirname.exclude_keys=[{','.join(dict.fromkeys(excluded))}]")


def labels_at_level(labels: np.ndarray, maps: np.ndarray, target: float) -> float:
    """Labels (frames or boxes, ascending) at which the curve ``maps`` first reaches ``target``, interpolated
    linearly from the loop before; NaN if it never does (or already does at the first loop: then the first)."""
    reached = np.flatnonzero(maps >= target)
    if reached.size == 0:
        return float("nan")
    first = int(reached[0])
    if first == 0:
        return float(labels[0])
    low, high = maps[first - 1], maps[first]
    return float(labels[first - 1] + (target - low) / (high - low) * (labels[first] - labels[first - 1]))


@dataclass(frozen=True)
class Curves:
    """Per arm: ``(seeds, loops)`` arrays of mAP, labeled frames and labeled boxes, and the seeds' order;
    ``tail_points``: how many of the baseline's last columns are subset models (random's tail)."""

    seeds: np.ndarray
    maps: dict[str, np.ndarray]
    frames: dict[str, np.ndarray]
    boxes: dict[str, np.ndarray]
    full_map: np.ndarray
    tail_points: int = 0

    def reach(self, arm: str, unit: str, level: float, rows: np.ndarray) -> float:
        """Labels in ``unit`` at which the mean curve over seed rows ``rows`` reaches ``level`` x the mean
        full-pool mAP of those seeds."""
        labels = (self.frames if unit == "frames" else self.boxes)[arm][rows].mean(axis=0)
        return labels_at_level(labels, self.maps[arm][rows].mean(axis=0), level * self.full_map[rows].mean())

    def lower_bound(self, arm: str, unit: str, level: float) -> float:
        """Where the baseline's mean curve reaches ``level`` but ``arm``'s ends below it: the ratio is above
        ``arm``'s last labels over the baseline's labels at the level (NaN otherwise)."""
        every = np.arange(self.seeds.size)
        if np.isfinite(self.reach(arm, unit, level, every)):
            return float("nan")
        labels = (self.frames if unit == "frames" else self.boxes)[arm].mean(axis=0)
        return float(labels[-1] / self.reach(BASELINE, unit, level, every))


def collect(study: Study) -> tuple[Curves, dict[str, Curves], dict[str, str]]:
    """The complete runs of the seeds that have a full-pool run and a complete baseline run, for every arm that
    completed all of them; per arm that completed two or more but not all of them, its curves and the baseline's
    over those seeds only (a paired comparison on fewer seeds); and the other arms, each with what it lacks."""
    records = study.records.assign(arm=arms_of(study.records))
    records = records[records["run"].map(lambda run: Path(run).parent.name != SCREEN_FOLDER)]
    full = study.subsets[study.subsets["target_fraction"] >= 1.0].groupby("seed")["map"].mean()
    runs = records[records["study_type"] == "active_learning"]
    complete = runs.groupby("run")["loop"].transform("max") + 1 == runs["num_loops"]
    runs = runs[complete]
    seeds = set(full.index) & set(runs.loc[runs["arm"] == BASELINE, "seed"])
    if not seeds:
        raise SystemExit(f"label_efficiency: no seed has both a full-pool run and a complete '{BASELINE}' run yet")
    incomplete, partial = {}, {}
    for arm in set(records.loc[records["study_type"] == "active_learning", "arm"]):
        done = seeds & set(runs.loc[runs["arm"] == arm, "seed"])
        if done != seeds:
            incomplete[arm] = f"complete for seeds {sorted(done)} of {sorted(seeds)}"
            if len(done) >= 2:
                partial[arm] = _curves(study, runs[runs["arm"].isin([arm, BASELINE])], np.array(sorted(done)),
                                       full, {})
    curves = _curves(study, runs[~runs["arm"].isin(list(incomplete))], np.array(sorted(seeds)), full, incomplete)
    return curves, partial, incomplete


def _curves(study: Study, runs: pd.DataFrame, order: np.ndarray, full: pd.Series,
            incomplete: dict[str, str]) -> Curves:
    """The curves of every arm in ``runs`` (complete runs, each arm with all of ``order``'s seeds), the baseline's
    with its tail (:func:`_baseline_tail`, whose missing fractions are noted in ``incomplete``)."""
    tables: dict[str, dict[str, np.ndarray]] = {"map": {}, "n_labeled_frames": {}, "n_labeled_boxes": {}}
    for arm, arm_runs in runs[runs["seed"].isin(order)].groupby("arm"):
        for column, table in tables.items():
            table[str(arm)] = arm_runs.pivot_table(index="seed", columns="loop", values=column).loc[order].to_numpy()
    tail = _baseline_tail(study, order, tables["n_labeled_frames"][BASELINE], incomplete)
    for column, table in tables.items():
        if tail.shape[1]:
            table[BASELINE] = np.concatenate([table[BASELINE], tail[column].to_numpy()], axis=1)
    return Curves(order, tables["map"], tables["n_labeled_frames"], tables["n_labeled_boxes"],
                  full.loc[order].to_numpy(), tail.shape[1] // len(tables))


def _baseline_tail(study: Study, seeds: np.ndarray, baseline_frames: np.ndarray,
                   incomplete: dict[str, str]) -> pd.DataFrame:
    """The subset runs of ``seeds`` in the study's :data:`TAIL_FOLDER` that go beyond the baseline's last loop
    (every seed's): ``(seeds, 3 x fractions)`` columns ``(name, fraction)`` for ``map``, ``n_labeled_frames`` and
    ``n_labeled_boxes``; a fraction that lacks a seed is left out (and noted in ``incomplete``)."""
    subsets = study.subsets
    subsets = subsets[subsets["run"].map(lambda run: Path(run).parent.name == TAIL_FOLDER)
                      & (subsets["n_labeled_frames"] > baseline_frames[:, -1].max())]
    if subsets.empty:
        return pd.DataFrame(index=seeds)
    tail = subsets.pivot_table(index="seed", columns="target_fraction",
                               values=["map", "n_labeled_frames", "n_labeled_boxes"]).reindex(seeds)
    missing = sorted({fraction for (_, fraction), column in tail.items() if column.isna().any()})
    if missing:
        incomplete[f"{BASELINE} tail"] = (f"fractions {[f'{f:g}' for f in missing]} lack some of the seeds "
                                          f"{seeds.tolist()} and are left out")
    return tail.loc[:, ~tail.columns.get_level_values("target_fraction").isin(missing)]


def ratio_with_interval(curves: Curves, arm: str, unit: str, level: float, resamples: int,
                        rng: np.random.Generator) -> tuple[float, float, float, float]:
    """The ratio of ``arm``'s labels to the baseline's at ``level`` (mean curves of all seeds), its paired
    bootstrap 95 % interval over seeds, and the share of resamples where both reach the level."""
    every = np.arange(curves.seeds.size)
    point = curves.reach(arm, unit, level, every) / curves.reach(BASELINE, unit, level, every)
    ratios = []
    for _ in range(resamples):
        rows = rng.integers(0, every.size, every.size)
        ratios.append(curves.reach(arm, unit, level, rows) / curves.reach(BASELINE, unit, level, rows))
    values = np.array(ratios)
    defined = values[np.isfinite(values)]
    low, high = (np.percentile(defined, [2.5, 97.5]) if defined.size else (np.nan, np.nan))
    return float(point), float(low), float(high), defined.size / resamples


def _number(value: float, digits: int = 2) -> str:
    return "none" if not np.isfinite(value) else f"{value:.{digits}f}"


def summarise(study_dir: Path, resamples: int, seed: int, screen: tuple[int, int] = (0, 4)) -> list[str]:
    """The cost, per-seed curves and ratio table, the study's resolution (:func:`resolution`), the screen of
    ``screen = (seed, loops)`` (:func:`screen_table`, where the study has a :data:`SCREEN_FOLDER`) and the
    diagnosis, then the summary line last, as text lines."""
    study = load_study([study_dir])
    curves, partial, incomplete = collect(study)
    rng = np.random.default_rng(seed)
    runs = study.records.assign(minutes=study.records["run"].map(_run_minutes(study_dir)))
    lines = [f"seeds: {curves.seeds.tolist()}; full-pool mAP per seed: "
             + ", ".join(f"{s}: {m:.3f}" for s, m in zip(curves.seeds, curves.full_map, strict=True))
             + f"; mean {curves.full_map.mean():.3f}", ""]
    finished = runs.groupby("run")["loop"].transform("max") + 1 == runs["num_loops"]
    costs = runs[finished].drop_duplicates("run").assign(arm=lambda frame: arms_of(frame))
    subsets = costs["study_type"] == "subset"
    costs.loc[subsets, "arm"] = costs.loc[subsets, "target_fraction"].map(lambda fraction: f"subset {fraction:.2f}")
    lines += ["cost: minutes per finished run (train + test + pool inference + selection, as each run timed itself)",
              *(f"  {arm:32s} runs {len(group):2d}  mean {group['minutes'].mean():5.1f}  "
                f"total {group['minutes'].sum():6.1f}" for arm, group in costs.groupby("arm")), ""]
    if curves.tail_points:
        lines += [f"{BASELINE}'s last {curves.tail_points} points are its tail: models on random subsets of the pool "
                  f"of the same seeds and recipe (subset_study in {TAIL_FOLDER}/), samples of the same points of its "
                  "curve", ""]
    for arm in sorted(curves.maps):
        lines += _curve_lines(curves, arm)
    lines += [f"not in the table yet: {arm}: {what}" for arm, what in sorted(incomplete.items())]
    table = _ratio_table(study, curves, resamples, rng)
    lines += ["", "labels to reach a level of the full-pool mAP (interpolated on the mean curve), ratio to random "
              f"with a paired bootstrap 95 % interval over seeds ({resamples} resamples; 'defined': share of "
              "resamples where both curves reach it; '(> b)': the arm's curve ends below the level where random's "
              "reaches it, so the ratio is above b); auc: mean mAP over the frames every arm covers; AP per "
              "class at the last loop", "", table.to_string(index=False), ""]
    lines += _partial_arms(study, partial, resamples, rng)
    lines += _resolution(study, curves)
    if (study_dir / SCREEN_FOLDER).is_dir():
        lines += _screen(study, curves, *screen)
    return [*lines, *_diagnosis(study), "", _best_line(table, curves.seeds.size)]


def _curve_lines(curves: Curves, arm: str) -> list[str]:
    """``arm``'s mean labeled frames and boxes per loop and its mAP per loop, a row per seed and their mean."""
    return [f"{arm}: test mAP per loop (rows: seeds {curves.seeds.tolist()})",
            "  frames " + " ".join(f"{v:6.0f}" for v in curves.frames[arm].mean(axis=0))
            + "   (mean labeled boxes " + " ".join(f"{v:.0f}" for v in curves.boxes[arm].mean(axis=0)) + ")",
            *("  seed " + f"{s:<2d}" + "".join(f" {v:6.3f}" for v in row)
              for s, row in zip(curves.seeds, curves.maps[arm], strict=True)),
            "  mean   " + " ".join(f"{v:6.3f}" for v in curves.maps[arm].mean(axis=0))]


def _partial_arms(study: Study, partial: dict[str, Curves], resamples: int, rng: np.random.Generator) -> list[str]:
    """The arms complete for some of the seeds (two or more): each against the baseline on its own seeds, beside
    the baseline's row over them, with the main table's columns; they are not candidates for the best line, which
    needs every seed."""
    if not partial:
        return []
    lines = ["arms on fewer seeds, each against random on the same seeds (random's row beside it is of those seeds "
             "only, and so is each auc's range; not candidates for the best line):"]
    rows = []
    for arm, curves in sorted(partial.items()):
        lines += _curve_lines(curves, arm)
        table = _ratio_table(study, curves, resamples, rng)
        rows.append(table.assign(arm=table["arm"] + f" (seeds {curves.seeds.tolist()})"))
    return [*lines, "", pd.concat(rows).to_string(index=False), ""]


def resolution(curves: Curves, level: float = 0.95) -> dict[str, float]:
    """How finely the study can place the baseline's labels-to-reach ``level``, from its own runs.

    ``training_noise``: the standard deviation over seeds of the full-pool mAP. Every full-pool model trains on
    the same frames and is tested on the same split, so only the training seed (initialisation, batch order,
    augmentation) differs: it is the noise of one loop's mAP that no choice of frames causes.
    ``mean_curve_noise``: that over the square root of the seeds, the noise of a point of a mean curve.
    ``slope``: mAP per 100 frames of the baseline's mean curve on the segment where it reaches the target
    (NaN if it never does). ``frames_noise``: ``mean_curve_noise / slope``, how many frames that noise moves the
    crossing by, and ``ratio_noise``: that over the frames to reach, the matching spread of a ratio to it."""
    every = np.arange(curves.seeds.size)
    noise = float(np.std(curves.full_map, ddof=1)) if curves.seeds.size > 1 else float("nan")
    frames, maps = curves.frames[BASELINE].mean(axis=0), curves.maps[BASELINE].mean(axis=0)
    reached = curves.reach(BASELINE, "frames", level, every)
    slope = float("nan")
    if np.isfinite(reached) and reached > frames[0]:
        segment = int(np.searchsorted(frames, reached))
        slope = 100 * (maps[segment] - maps[segment - 1]) / (frames[segment] - frames[segment - 1])
    mean_noise = noise / np.sqrt(curves.seeds.size)
    return {"training_noise": noise, "mean_curve_noise": mean_noise, "slope": slope,
            "frames_noise": 100 * mean_noise / slope, "ratio_noise": 100 * mean_noise / slope / reached}


def _resolution(study: Study, curves: Curves) -> list[str]:
    """:func:`resolution` as text lines, with the training noise of each class's AP (the full-pool models of the
    seeds in ``curves``)."""
    found = resolution(curves)
    full = study.subsets[(study.subsets["target_fraction"] >= 1.0) & study.subsets["seed"].isin(curves.seeds)]
    per_class = ", ".join(f"{name} {full[f'ap/{name}'].std(ddof=1):.3f} (AP {full[f'ap/{name}'].min():.3f} to "
                          f"{full[f'ap/{name}'].max():.3f})" for name in study.class_names)
    return ["", f"resolution at 95 %: training noise (std over seeds of the full-pool mAP, the same frames for "
            f"every seed) {_number(found['training_noise'], 3)}, so {_number(found['mean_curve_noise'], 3)} on a mean "
            f"curve of {curves.seeds.size} seeds; {BASELINE}'s mean curve gains {_number(found['slope'], 4)} mAP "
            f"per 100 frames where it reaches the target, so that noise moves its crossing by about "
            f"{_number(found['frames_noise'], 0)} frames ({_number(found['ratio_noise'])} of the frames it needs); "
            f"training noise of each class's AP on the full pool: {per_class}"]


def screen_table(study: Study, seed: int, loops: int) -> pd.DataFrame:
    """The screen: every arm with a run of ``seed`` that completed at least ``loops`` loops, in the study's arms or
    its :data:`SCREEN_FOLDER` (the arms' own run where both hold one), over its first ``loops`` loops: the test mAP
    of each (``map/0`` is the same random start for every arm of a seed), ``acquired``: their mean after loop 0,
    ``vs_random``: that minus the baseline's (``random@boxes``'s for a box budget, where screened), the labeled
    frames and boxes and the AP per class at the last, and ``error_lift``: the mean over the acquisitions that
    chose those loops' frames (NaN without ``pool_truth``). Best ``acquired`` first."""
    runs = study.active_learning.assign(arm=lambda frame: arms_of(frame))
    runs = runs[(runs["seed"] == seed) & (runs["loop"] < loops)]
    runs = runs[runs.groupby("run")["loop"].transform("count") == loops]
    in_screen = runs["run"].map(lambda run: Path(run).parent.name == SCREEN_FOLDER)
    chosen = runs.assign(in_screen=in_screen).sort_values(["in_screen", "run"]).drop_duplicates("arm")["run"]
    rows = []
    for arm, group in runs[runs["run"].isin(chosen)].sort_values("loop").groupby("arm"):
        last = group.iloc[-1]
        lifts = [summary["error_lift"] for summary in group["pool_truth"].iloc[:-1]
                 if isinstance(summary, dict) and summary.get("error_lift") is not None]
        maps = {f"map/{loop}": value for loop, value in zip(group["loop"], group["map"], strict=True)}
        rows.append({"arm": arm, **maps, "acquired": group["map"].iloc[1:].mean(),
                     "frames": last["n_labeled_frames"], "boxes": last["n_labeled_boxes"],
                     **{f"ap/{name}": last[f"ap/{name}"] for name in study.class_names},
                     "error_lift": float(np.mean(lifts)) if lifts else np.nan})
    table = pd.DataFrame(rows)
    if table.empty or BASELINE not in set(table["arm"]):
        return table
    acquired = dict(zip(table["arm"], table["acquired"], strict=True))

    def baseline_of(arm: str) -> float:  # a box budget is held against random's box budget where screened
        boxes = arm.endswith(BOX_SUFFIX) and f"{BASELINE}{BOX_SUFFIX}" in acquired
        return acquired[f"{BASELINE}{BOX_SUFFIX}" if boxes else BASELINE]

    table.insert(table.columns.get_loc("acquired") + 1, "vs_random",
                 table["acquired"] - table["arm"].map(baseline_of))
    return table.sort_values("acquired", ascending=False).round(3)


def screen_noise(curves: Curves, loops: int) -> dict[str, float]:
    """Per arm with curves of two or more seeds (but the baseline): the standard deviation over seeds of its mean
    mAP over loops ``1 .. loops - 1`` minus the baseline's at the same seed, i.e. how far apart one seed's screen
    can put an arm and random when only the seed differs."""
    if curves.seeds.size < 2:
        return {}
    baseline = curves.maps[BASELINE][:, 1:loops].mean(axis=1)
    return {arm: float(np.std(maps[:, 1:loops].mean(axis=1) - baseline, ddof=1))
            for arm, maps in curves.maps.items() if arm != BASELINE and maps.shape[1] >= loops}


def _screen(study: Study, curves: Curves, seed: int, loops: int) -> list[str]:
    """The screen's table and its rule as text lines (none without a screened arm but the baseline)."""
    table = screen_table(study, seed, loops)
    if len(table) < 2 or "vs_random" not in table:
        return []
    noise = screen_noise(curves, loops)
    lines = ["", f"screen: every arm's run of seed {seed} over its first {loops} loops ({SCREEN_FOLDER}/ holds the "
             "runs made only for it); acquired: the mean mAP after loop 0, vs_random: that minus random's at the "
             "same seed (random@boxes's for a box budget); error_lift: the mean over the acquisitions that chose "
             "these frames"]
    every = np.arange(curves.seeds.size)
    half = 0.5 * curves.reach(BASELINE, "frames", 0.95, every)
    if np.isfinite(half):
        lines.append(f"an arm at half random's frames to 95 % reaches {0.95 * curves.full_map.mean():.3f} by "
                     f"{half:.0f} frames")
    if noise:
        margin = 2 * max(noise.values())
        lines.append("seed noise of vs_random (std over seeds of the same difference, arms with more seeds): "
                     + ", ".join(f"{arm} {value:.3f}" for arm, value in sorted(noise.items()))
                     + f"; rule fixed before the screen: an arm goes on to more seeds if its acquired mean is within "
                       f"twice the largest ({margin:.3f}) of the best arm's of the same budget unit (frames, or "
                       f"boxes for {BOX_SUFFIX})")
        unit = table["arm"].str.endswith(BOX_SUFFIX)
        best = table.groupby(unit)["acquired"].transform("max")
        table["goes_on"] = np.where(table["arm"].isin([BASELINE, f"{BASELINE}{BOX_SUFFIX}"]), "baseline",
                                    np.where(table["acquired"] >= best - margin, "yes", "no"))
    return [*lines, "", table.to_string(index=False)]


def _diagnosis(study: Study) -> list[str]:
    """What every arm's acquisitions picked (ground truth of the picks against the pool's) and whether the picks
    held the model's errors (``pool_truth``), as text lines, for the runs so far, complete or not."""
    picks = selection_table(study.records, study.class_names)
    truth = truth_table(study)
    lines = ["", "diagnosis, over every run so far (complete or not; mean over seeds per acquisition, 'loop': the "
             "loop whose frames it labeled): the ground truth of the picks against the pool (boxes per frame, "
             "share without a box, each class's share of the boxes, share of the pool's drives, share within "
             "0.15 s of a frame of the same drive labeled or picked with it, the picks' lowest and highest "
             "acquisition score)", ""]
    lines += [picks.round(3).to_string(index=False) if not picks.empty else "(no run with label_pool.json yet)"]
    lines += ["", "whether the picks held the model's errors (loop.pool_truth; 'loop': the loop whose model chose): "
              "error_lift = the picks' misses + false alarms per frame over the pool's (1: as random on average), "
              "box_lift = the same per ground-truth box, score_error_spearman = rank correlation of the strategy's "
              "score with a frame's errors", ""]
    lines += [truth.round(3).to_string(index=False) if not truth.empty else "(no run recorded pool_truth yet)"]
    return lines


def _run_minutes(study_dir: Path) -> dict[str, float]:
    from alcv.run_records import read_results

    minutes = {}
    for results in study_dir.rglob("results.jsonl"):
        records = read_results(results.parent)
        minutes[str(results.parent)] = sum(sum(r["timings"].values()) for r in records) / 60
    return minutes


def _ratio_table(study: Study, curves: Curves, resamples: int, rng: np.random.Generator) -> pd.DataFrame:
    every = np.arange(curves.seeds.size)
    last_loops = study.active_learning.assign(arm=lambda frame: arms_of(frame))
    last_loops = last_loops[(last_loops["loop"] == last_loops["num_loops"] - 1) & last_loops["seed"].isin(curves.seeds)]
    low = max(curves.frames[arm].mean(axis=0)[0] for arm in curves.maps)
    high = min(curves.frames[arm].mean(axis=0)[-1] for arm in curves.maps)
    rows = []
    for arm in sorted(curves.maps):
        row: dict[str, object] = {"arm": arm}
        for level in LEVELS:
            for unit in ("frames", "boxes"):
                point, lo, hi, defined = ratio_with_interval(curves, arm, unit, level, resamples, rng)
                row[f"{unit}@{level:.0%}"] = _number(curves.reach(arm, unit, level, every), 0)
                row[f"ratio_{unit}@{level:.0%}"] = f"{_number(point)} [{_number(lo)}, {_number(hi)}] {defined:.0%}"
                bound = curves.lower_bound(arm, unit, level)
                if np.isfinite(bound):
                    row[f"ratio_{unit}@{level:.0%}"] += f" (> {bound:.2f})"
        row["auc"] = round(curve_average(curves.frames[arm].mean(axis=0), curves.maps[arm].mean(axis=0), low, high), 3)
        last = last_loops[last_loops["arm"] == arm]
        for name in study.class_names:
            row[f"ap/{name}"] = round(float(last[f"ap/{name}"].mean()), 3)
        rows.append(row)
    return pd.DataFrame(rows)


def _best_line(table: pd.DataFrame, seeds: int) -> str:
    def ratio(cell: str) -> float:
        match = re.match(r"([0-9.]+|none)", cell)
        return float("nan") if match is None or match.group(1) == "none" else float(match.group(1))

    others = table[table["arm"] != BASELINE]
    if others.empty:
        return f"best: none yet (no arm but {BASELINE} is complete) | seeds: {seeds} | frames to 95 %: none | " \
               "boxes to 95 %: none"
    ratios = others["ratio_frames@95%"].map(ratio)
    best = others.loc[ratios.idxmin()] if ratios.notna().any() else others.loc[others["auc"].idxmax()]

    def interval(cell: str) -> str:  # "<ratio> [<low>, <high>]" without the share defined and the bound
        return cell.split(" (>")[0].rsplit(" ", 1)[0]

    return (f"best: {best['arm']} | seeds: {seeds} | frames to 95 %: {interval(best['ratio_frames@95%'])} | "
            f"boxes to 95 %: {interval(best['ratio_boxes@95%'])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", type=Path, default=Path("benchmarks/studies/label_efficiency"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--arms", nargs="+", default=[BASELINE, "least_confidence"], choices=sorted(ARMS))
    parser.add_argument("--jobs", type=int, default=2, help="parallel jobs (Hydra's joblib launcher), one thread each")
    parser.add_argument("--box-query", type=float,
                        help="box equivalents per acquisition of the <arm>@boxes arms (e.g. the frames per acquisition "
                             "x the pool's mean boxes per frame, for curves over the same range)")
    parser.add_argument("--baseline-tail", type=float, nargs="*", default=[],
                        help="pool fractions beyond the arms' last loop at which random's curve goes on (subset "
                             "models of the same seeds), so that it reaches 95 %% of the full-pool mAP")
    parser.add_argument("--skip-runs", action="store_true", help="only tabulate the runs already in --study")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples over seeds")
    parser.add_argument("--out", type=Path, help="also write the table here, after the command that made it")
    parser.add_argument("--screen", type=int, nargs=2, default=(0, 4), metavar=("SEED", "LOOPS"),
                        help="tabulate the screen: every arm's run of SEED over its first LOOPS loops")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run (after --)")
    args = parser.parse_args()
    if BASELINE not in args.arms:
        parser.error(f"--arms must include the baseline '{BASELINE}'")
    study = args.study.resolve()
    if not args.skip_runs:
        run_study(study, args.seeds, args.arms, args.jobs, args.overrides, args.box_query, args.baseline_tail)
        alcv(str(study), "--out", str(study / "report"), "--levels", *map(str, LEVELS), "--baseline", BASELINE,
             command="alcv-report")
    lines = summarise(study, args.resamples, seed=0, screen=tuple(args.screen))
    print("\n".join(lines))
    if args.out:
        command = "python benchmarks/label_efficiency.py " + " ".join(sys.argv[1:])
        args.out.write_text(f"# {command}\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
