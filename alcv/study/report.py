"""Paper-style study reports from results files: tables, figures and a Markdown summary.

Reads only ``results.jsonl`` files (see :mod:`alcv.run_records`), found under the given directories;
never the objects of a run. Two kinds of runs feed a report, told apart by their ``study_type`` field:

- ``subset`` runs (``experiment=subset_study``): one model per (data fraction, seed) on a random subset.
  They give the violin plots of mAP per fraction and, at fraction 1.0, the full-data mAP that the
  labels-needed table compares against.
- ``active_learning`` runs (``experiment=al_vs_random``): strategies x seeds through all loops. They give
  the learning curves, the class-wise AP per loop and the labels-needed table.

Problems that leave the rest usable (a corrupt line, a run that stopped early, a missing seed, a single
seed) become notes in the report; results of different datasets in one report are refused.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from scipy import stats

from alcv.run_records import REQUIRED_FIELDS, RESULTS_FILE, LoopRecord, curve_average, read_jsonl
from alcv.safe_io import file_in_the_way
from alcv.study.selections import plot_selection_stats, selection_table

#: fractions of the full-data mAP for which the labels-needed table counts labels
DEFAULT_LEVELS = (0.9, 0.95, 1.0)
RANDOM = "random"


@dataclass
class Study:
    """The records of every run found, as one table, plus what was noticed while reading them.

    ``records`` has one row per (run, loop): ``run`` (the run's folder), ``experiment``, ``study_type``,
    ``dataset``, ``strategy`` (the name, plus the settings in which runs of that name differ), ``seed``,
    ``loop``, ``num_loops``, ``n_labeled_frames``, ``n_labeled_boxes``, ``n_pool_frames``, ``fraction``
    (labeled / pool), ``target_fraction`` (the requested fraction of a subset run, else NaN), ``map``,
    one ``ap/<class>`` column per class (NaN where undefined) and ``reliability``, the test boxes' reliability
    table as the run recorded it (``score_reliability``, a dict; None where it has none).
    """

    records: pd.DataFrame
    class_names: tuple[str, ...]
    dataset: str
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        """Add ``text`` to the notes once (tables computed twice do not repeat their notes)."""
        if text not in self.notes:
            self.notes.append(text)

    def of_type(self, study_type: str) -> pd.DataFrame:
        return self.records[self.records["study_type"] == study_type]

    @property
    def active_learning(self) -> pd.DataFrame:
        return self.of_type("active_learning")

    @property
    def subsets(self) -> pd.DataFrame:
        return self.of_type("subset")


def find_results_files(paths: Sequence[str | Path]) -> list[Path]:
    """Every ``results.jsonl`` at or under ``paths`` (files or directories), sorted.

    Raises:
        FileNotFoundError: if a path does not exist or holds no results file.
    """
    found: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or directory")
        files = [path] if path.is_file() else sorted(path.rglob(RESULTS_FILE))
        if not files:
            raise FileNotFoundError(f"{path}: no {RESULTS_FILE} files in this directory or below it; point the "
                                    "report at a run's output directory or a multirun directory")
        found.extend(files)
    return sorted(set(found))


def _variant_settings(record: dict) -> dict[str, str]:
    """The settings that make a run a variant of its strategy, as JSON text by name: the strategy's config (by
    key) and the loop's selection settings (``loop.<key>``, nested keys joined with dots)."""
    settings = {key: json.dumps(value) for key, value in (record.get("strategy_config") or {}).items()
                if key != "_target_"}

    def flatten(prefix: str, value: object) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                flatten(f"{prefix}.{key}", inner)
        else:
            settings[prefix] = json.dumps(value)

    for key, value in (record.get("selection_config") or {}).items():
        flatten(f"loop.{key}", value)
    return settings


def _strategy_labels(records: list[dict]) -> list[str]:
    """A label per record: the strategy's name, plus the settings in which runs of that name and study type
    differ (e.g. ``least_confidence (aggregation=mean)``, ``random (loop.spread.max_per_drive=2)``), so that
    variants of one strategy get curves of their own."""
    settings = [_variant_settings(record) for record in records]
    kinds = [(record.get("study_type", "active_learning"), record["strategy"]) for record in records]
    values: dict[tuple[tuple[str, str], str], set[str | None]] = {}
    for kind, setting in zip(kinds, settings, strict=True):
        for key in setting:
            values.setdefault((kind, key), set())
    for kind, setting in zip(kinds, settings, strict=True):
        for (other, key), seen in values.items():
            if other == kind:
                seen.add(setting.get(key))
    labels = []
    for record, kind, setting in zip(records, kinds, settings, strict=True):
        differing = sorted(key for (other, key), seen in values.items() if other == kind and len(seen) > 1)
        extra = ", ".join(f"{key}={json.loads(setting[key]) if key in setting else None}" for key in differing)
        labels.append(f"{record['strategy']} ({extra})" if extra else record["strategy"])
    return labels


def _as_float(value: object) -> float:
    return float("nan") if value is None else float(value)  # type: ignore[arg-type]


def load_study(paths: Sequence[str | Path]) -> Study:
    """Read every results file under ``paths`` into a :class:`Study`.

    Raises:
        FileNotFoundError: no results files.
        ValueError: no readable record at all, or records of more than one dataset.
    """
    files = find_results_files(paths)
    notes: list[str] = []
    read: list[tuple[Path, dict]] = []
    for path in files:
        records = list(read_jsonl(path, required=REQUIRED_FIELDS, skipped=notes, schema=LoopRecord))
        if not records:
            notes.append(f"{path}: no complete records (the run stopped before its first loop finished)")
        read += [(path, record) for record in records]
    rows, class_names, datasets = [], [], {}
    for (path, record), strategy in zip(read, _strategy_labels([record for _, record in read]), strict=True):
        datasets.setdefault(record["dataset"], path)
        class_names += [name for name in record["ap_per_class"] if name not in class_names]
        row = {
            "run": str(path.parent), "experiment": record["experiment"],
            "study_type": record.get("study_type", "active_learning"), "dataset": record["dataset"],
            "strategy": strategy, "seed": int(record["seed"]), "loop": int(record["loop"]),
            "num_loops": int(record.get("num_loops", record["loop"] + 1)),
            "n_labeled_frames": int(record["n_labeled_frames"]), "n_labeled_boxes": int(record["n_labeled_boxes"]),
            "n_pool_frames": record.get("n_pool_frames"), "fraction": float(record["fraction"]),
            "target_fraction": _as_float(record.get("target_fraction")), "map": _as_float(record["map"]),
            "reliability": record.get("score_reliability"), "pool_truth": record.get("pool_truth"),
        }
        row.update({f"ap/{name}": _as_float(ap) for name, ap in record["ap_per_class"].items()})
        rows.append(row)
    if len(datasets) > 1:
        which = "; ".join(f"'{name}' (e.g. {path})" for name, path in datasets.items())
        raise ValueError(f"results of different datasets cannot share one report: {which}. Report each dataset "
                         "separately")
    if not rows:
        raise ValueError(f"no readable records in {len(files)} results files: " + "; ".join(notes))
    records = pd.DataFrame(rows)
    for name in class_names:
        if f"ap/{name}" not in records:
            records[f"ap/{name}"] = np.nan
    records = _one_run_per_seed(records, notes)
    study = Study(records.sort_values(["study_type", "strategy", "seed", "loop"], ignore_index=True),
                  tuple(class_names), next(iter(datasets)), notes)
    _note_incomplete_runs(study)
    return study


def _one_run_per_seed(records: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """The records of one run per (study type, strategy label, seed, subset fraction): where several runs are
    the same setting and seed (e.g. a run copied into two folders), they are not independent seeds, so the one
    whose folder sorts first is kept and a note names the others."""
    keys = ["study_type", "strategy", "seed", "target_fraction"]
    runs = records.drop_duplicates("run")[[*keys, "run"]].fillna({"target_fraction": -1.0})
    kept = []
    for _, group in runs.groupby(keys, dropna=False):
        folders = sorted(group["run"])
        kept.append(folders[0])
        if len(folders) > 1:
            notes.append(f"{len(folders)} runs are {group['strategy'].iloc[0]} seed {group['seed'].iloc[0]}"
                         f"{'' if group['study_type'].iloc[0] != 'subset' else ' of one subset fraction'}: "
                         f"{', '.join(folders)}; the report keeps {folders[0]} and leaves out the others")
    return records[records["run"].isin(kept)]


def _note_incomplete_runs(study: Study) -> None:
    """Notes for runs that stopped early, seeds missing from some strategies and single-seed curves."""
    runs = study.records.groupby("run").agg(last=("loop", "max"), planned=("num_loops", "max"))
    for run, row in runs[runs["last"] + 1 < runs["planned"]].iterrows():
        study.note(f"{run}: stopped after loop {row['last']} of {row['planned'] - 1} (0-based); its "
                           "finished loops are used")
    curves = study.active_learning
    if curves.empty:
        return
    seeds = curves.groupby("strategy")["seed"].apply(lambda s: set(s.tolist()))
    every = set().union(*seeds)
    for strategy, present in seeds.items():
        if present != every:
            study.note(f"strategy '{strategy}' lacks seeds {sorted(every - present)} that other strategies "
                               "have; its curves average fewer seeds")
        if len(present) == 1:
            study.note(f"strategy '{strategy}' has a single seed: no confidence band is drawn")


def confidence_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean of ``values`` (one value per seed); NaN bounds for fewer than 2."""
    values = values[~np.isnan(values)]
    if values.size < 2:
        return float("nan"), float("nan")
    # the standard interval scaled by hand: scipy's scale=0 gives NaN, zero spread must give (mean, mean)
    low, high = stats.t.interval(level, values.size - 1)
    mean, sem = values.mean(), stats.sem(values)
    return float(mean + low * sem), float(mean + high * sem)


def _subset_fraction(frame: pd.DataFrame) -> pd.Series:
    """A subset run's requested fraction, or its labeled fraction (to 3 places) if it records none."""
    return frame["target_fraction"].fillna(frame["fraction"].round(3))


def subset_table(study: Study) -> pd.DataFrame:
    """Per data fraction of the subset runs: runs, mean frames, and min / median / max / mean of mAP over
    seeds, then the median AP of each class. Empty without subset runs."""
    subsets = study.subsets.assign(target=_subset_fraction)
    if subsets.empty:
        return pd.DataFrame()
    grouped = subsets.groupby("target")
    table = pd.DataFrame({
        "runs": grouped.size(), "frames": grouped["n_labeled_frames"].mean(),
        "map_min": grouped["map"].min(), "map_median": grouped["map"].median(),
        "map_max": grouped["map"].max(), "map_mean": grouped["map"].mean(),
    })
    for name in study.class_names:
        table[f"median_ap/{name}"] = grouped[f"ap/{name}"].median()
    return table.rename_axis("fraction").reset_index()


def subset_class_table(study: Study) -> pd.DataFrame:
    """Per (fraction, class) of the subset runs: min / median / max of the class's AP over seeds."""
    subsets = study.subsets.assign(target=_subset_fraction)
    if subsets.empty:
        return pd.DataFrame()
    long = _class_long(subsets, study.class_names, ["target", "seed"])
    table = long.groupby(["target", "class"], sort=False)["ap"].agg(["min", "median", "max"]).reset_index()
    table = table.sort_values("target", kind="stable", ignore_index=True)
    return table.rename(columns={"target": "fraction", "min": "ap_min", "median": "ap_median", "max": "ap_max"})


def _class_long(frame: pd.DataFrame, class_names: Sequence[str], keys: list[str]) -> pd.DataFrame:
    """``frame``'s ``ap/<class>`` columns as rows: ``keys`` + ``class`` + ``ap``."""
    long = frame.melt(id_vars=keys, value_vars=[f"ap/{name}" for name in class_names], var_name="class",
                      value_name="ap")
    long["class"] = long["class"].str.removeprefix("ap/")
    return long


def learning_curves(study: Study) -> pd.DataFrame:
    """Per (strategy, loop) of the active-learning runs, over seeds: seeds, mean labeled frames, boxes and
    fraction, mean / std of mAP and its 95 % Student-t confidence interval (NaN with one seed)."""
    curves = study.active_learning
    if curves.empty:
        return pd.DataFrame()
    rows = []
    for (strategy, loop), group in curves.groupby(["strategy", "loop"]):
        maps = group["map"].to_numpy(dtype=float)
        low, high = confidence_interval(maps)
        rows.append({"strategy": strategy, "loop": loop, "seeds": len(group),
                     "frames": group["n_labeled_frames"].mean(), "boxes": group["n_labeled_boxes"].mean(),
                     "fraction": group["fraction"].mean(), "map_mean": np.nanmean(maps) if maps.size else np.nan,
                     "map_std": np.nanstd(maps, ddof=1) if maps.size > 1 else np.nan,
                     "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows)


def _pooled_reliability(tables: Sequence[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean score, precision and boxes per score bin of several runs' reliability tables, pooled box by box."""
    boxes = np.sum([np.asarray(t["boxes"], dtype=np.float64) for t in tables], axis=0)
    scored = np.sum([np.nan_to_num(np.asarray(t["mean_score"], dtype=np.float64)) * t["boxes"] for t in tables], axis=0)
    right = np.sum([np.nan_to_num(np.asarray(t["precision"], dtype=np.float64)) * t["boxes"] for t in tables], axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return scored / boxes, right / boxes, boxes


def calibration_table(study: Study) -> pd.DataFrame:
    """Per (strategy, loop) of the active-learning runs that recorded a reliability table: the test boxes'
    expected calibration error (``calibration_error``, mean over seeds; 0 when a box of score s is right with
    probability s), the share of the test boxes scored >= 0.5 that are right (``right_at_0.5``, pooled over seeds)
    and how many such boxes one seed's model predicts on the test split (``boxes_at_0.5``)."""
    runs = study.active_learning
    runs = runs[runs["reliability"].map(lambda table: isinstance(table, dict))]
    rows = []
    for (strategy, loop), group in runs.groupby(["strategy", "loop"]):
        tables = group["reliability"].tolist()
        _, precision, boxes = _pooled_reliability(tables)
        confident = (np.asarray(tables[0]["edges"][:-1]) >= 0.5) & (boxes > 0)
        rows.append({"strategy": strategy, "loop": loop, "frames": group["n_labeled_frames"].mean(),
                     "calibration_error": float(np.nanmean([t["calibration_error"] for t in tables])),
                     "right_at_0.5": float((precision * boxes)[confident].sum() / max(boxes[confident].sum(), 1)),
                     "boxes_at_0.5": float(boxes[confident].sum() / len(tables))})
    return pd.DataFrame(rows)


#: the pool-truth summaries the report averages, in its column order (:func:`alcv.acquisition.truth_summary`)
TRUTH_FIELDS = ("error_lift", "box_lift", "score_error_spearman", "picked_errors_per_frame", "pool_errors_per_frame",
                "picked_errors_per_box", "pool_errors_per_box", "picked_calibration_error", "pool_calibration_error")


def truth_table(study: Study) -> pd.DataFrame:
    """Per (strategy, loop) of the active-learning runs that recorded ``pool_truth``: the frames labeled when the
    acquisition was made and the mean over seeds of each :data:`TRUTH_FIELDS` entry (NaN where undefined), i.e.
    whether the picks are the frames the model gets wrong (``error_lift`` 1: as many errors per frame as the pool;
    ``score_error_spearman``: how well the strategy's score ranks the frames by their errors)."""
    runs = study.active_learning
    runs = runs[runs["pool_truth"].map(lambda summary: isinstance(summary, dict))]
    rows = []
    for (strategy, loop), group in runs.groupby(["strategy", "loop"]):
        values = {}
        for name in TRUTH_FIELDS:
            defined = [float(summary[name]) for summary in group["pool_truth"] if summary.get(name) is not None]
            values[name] = float(np.mean(defined)) if defined else np.nan
        rows.append({"strategy": strategy, "loop": loop, "frames": group["n_labeled_frames"].mean(),
                     "seeds": group["seed"].nunique(), **values})
    return pd.DataFrame(rows)


def classwise_curves(study: Study, strategy: str) -> pd.DataFrame:
    """Per (loop, class) for ``strategy``: mean AP over seeds and its change from the previous loop
    (``ap_change``, NaN at loop 0): how fast each class is being learned."""
    runs = study.active_learning[study.active_learning["strategy"] == strategy]
    if runs.empty:
        raise ValueError(f"no active-learning runs of strategy '{strategy}'; the report has "
                         f"{sorted(study.active_learning['strategy'].unique())}")
    long = _class_long(runs, study.class_names, ["loop", "seed", "n_labeled_frames"])
    table = long.groupby(["class", "loop"], sort=False).agg(frames=("n_labeled_frames", "mean"),
                                                          ap_mean=("ap", "mean")).reset_index()
    table["ap_change"] = table.groupby("class", sort=False)["ap_mean"].diff()
    return table


def full_data_map(study: Study) -> pd.Series:
    """The test mAP of the subset runs trained on the whole pool, per seed (mean if a seed has several)."""
    subsets = study.subsets
    full = subsets[_subset_fraction(subsets) >= 1.0]
    return full.groupby("seed")["map"].mean()


def _reference_map(study: Study, strategy: str, full: pd.Series) -> float:
    """Mean full-data mAP over ``strategy``'s own seeds, or over every full-data seed (with a note) when
    none of its seeds was trained on the full pool; NaN without full-data runs."""
    seeds = study.active_learning.loc[study.active_learning["strategy"] == strategy, "seed"].unique()
    matched = full[full.index.isin(seeds)]
    if full.size and matched.empty:
        study.note(f"strategy '{strategy}': none of its seeds has a full-pool run; its reference is the mean "
                   f"full-data mAP of seeds {full.index.tolist()}")
        matched = full
    return float(matched.mean()) if matched.size else float("nan")


def labels_to_reach(study: Study, levels: Sequence[float] = DEFAULT_LEVELS, baseline: str = RANDOM) -> pd.DataFrame:
    """Per (strategy, level): the labeled frames and boxes at which the strategy's mean learning curve
    first reaches ``level`` x the full-data mAP, and their ratios to the ``baseline`` strategy's (a label of
    :attr:`Study.records`, e.g. ``random (loop.spread.max_per_drive=None)`` when random ran in variants; NaN where
    either never reaches it, or all NaN with a note when no curve has that label).

    The reference is the mean full-data mAP (:func:`full_data_map`) of the strategy's own seeds; the first
    loop whose mean mAP is >= ``level`` x reference counts (no interpolation between loops).
    """
    curves = learning_curves(study)
    if curves.empty:
        return pd.DataFrame()
    full = full_data_map(study)
    if full.empty:
        study.note("no subset runs at fraction 1.0 (the full pool): the labels-needed table is empty; run "
                   "`alcv experiment=subset_study -m loop.initial_fraction=1.0` with the same seeds and report "
                   "both directories together")
    rows = []
    for strategy, curve in curves.groupby("strategy"):
        curve = curve.sort_values("loop")
        reference = _reference_map(study, str(strategy), full)
        for level in levels:
            reached = curve[curve["map_mean"] >= level * reference]
            first = reached.iloc[0] if len(reached) else None
            rows.append({"strategy": strategy, "level": level, "seeds": int(curve["seeds"].max()),
                         "full_data_map": reference, "target_map": level * reference,
                         "frames": np.nan if first is None else first["frames"],
                         "boxes": np.nan if first is None else first["boxes"]})
    table = pd.DataFrame(rows)
    reference_rows = table[table["strategy"] == baseline].set_index("level")
    if reference_rows.empty:
        study.note(f"no active-learning runs labeled '{baseline}' to compare with: the ratios are empty; choose "
                   f"the baseline (--baseline) among {sorted(curves['strategy'].unique())}")
    for unit in ("frames", "boxes"):
        baseline_labels = table["level"].map(reference_rows[unit]) if len(reference_rows) else np.nan
        table[f"{unit}_vs_random"] = table[unit] / baseline_labels
    return table


def curve_areas(study: Study) -> pd.DataFrame:
    """Per strategy: the area under its mean learning curve divided by the range it spans, i.e. the
    curve's average mAP, against labeled fraction (``auc``) and against labeled boxes (``auc_boxes``).

    Every strategy is integrated over the same range, the one that all strategies' curves cover (shown in
    ``fractions`` and ``boxes``): strategies that label fewer boxes per frame end at fewer boxes, and
    comparing averages over different ranges would favour the one that reaches further.
    """
    curves = {strategy: curve.sort_values("loop") for strategy, curve in learning_curves(study).groupby("strategy")}
    rows = []
    for strategy, curve in curves.items():
        row: dict[str, object] = {"strategy": strategy, "seeds": int(curve["seeds"].max())}
        for name, axis, label, digits in (("auc", "fraction", "fractions", 3), ("auc_boxes", "boxes", "boxes", 0)):
            low = max(float(c[axis].iloc[0]) for c in curves.values())
            high = min(float(c[axis].iloc[-1]) for c in curves.values())
            row[label] = f"{low:.{digits}f}-{high:.{digits}f}"
            row[name] = curve_average(curve[axis].to_numpy(dtype=float), curve["map_mean"].to_numpy(dtype=float),
                                      low, high)
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------- figures

def _percent(values: pd.Series) -> pd.Series:
    return (100 * values).round(1).map(lambda v: f"{v:g}")


def _new_figure(columns: int = 1, width: float = 7.0) -> tuple[Figure, list[Axes]]:
    figure = Figure(figsize=(width * columns, 4.8), layout="constrained")
    return figure, list(np.atleast_1d(figure.subplots(1, columns)))


def plot_subset_violins(study: Study) -> Figure:
    """Violins of test mAP per data fraction over seeds (left) and of each class's AP, overlaid (right)."""
    subsets = study.subsets.assign(target=_subset_fraction)
    subsets = subsets.assign(percent=_percent(subsets["target"]))
    order = _percent(pd.Series(sorted(subsets["target"].unique()))).tolist()
    figure, (left, right) = _new_figure(2)
    sns.violinplot(subsets, x="percent", y="map", order=order, ax=left, color="#9ecae1", cut=0,
                   inner="quartile", density_norm="width")
    sns.stripplot(subsets, x="percent", y="map", order=order, ax=left, color="black", size=3, jitter=0.15)
    left.set(title=f"mAP of models trained on random subsets ({study.dataset})",
             xlabel="labeled fraction of the pool (%)", ylabel="test mAP (centre distance)")
    long = _class_long(subsets, study.class_names, ["percent", "seed"])
    sns.violinplot(long, x="percent", y="ap", hue="class", order=order, ax=right, cut=0, inner=None,
                   density_norm="width", dodge=True, alpha=0.6)
    right.set(title="AP per class over the same runs", xlabel="labeled fraction of the pool (%)",
              ylabel="test AP (centre distance)")
    right.legend(title="class", loc="lower right")
    runs = subsets.groupby("target").size()
    seeds = f"{runs.min()}" if runs.min() == runs.max() else f"{runs.min()} to {runs.max()}"
    figure.suptitle(f"Random-subset variance: {seeds} seeds per fraction")
    return figure


def _band(ax: Axes, x: pd.Series, curve: pd.DataFrame, label: str) -> None:
    line = ax.plot(x, curve["map_mean"], marker="o", label=label)[0]
    if curve["ci_low"].notna().any():  # drawn inside [0, 1], where mAP lives
        ax.fill_between(x, curve["ci_low"].clip(0, 1), curve["ci_high"].clip(0, 1), color=line.get_color(),
                        alpha=0.2, linewidth=0)


def plot_learning_curves(study: Study) -> Figure:
    """Mean test mAP per strategy with its 95 % confidence band over seeds, against labeled frames (left)
    and labeled boxes (right); the full-data mAP, when known, as a dashed line."""
    curves = learning_curves(study)
    full = full_data_map(study)
    figure, axes = _new_figure(2)
    for strategy, curve in curves.groupby("strategy"):
        label = f"{strategy} ({curve['seeds'].max()} seeds)"
        _band(axes[0], curve["frames"], curve, label)
        _band(axes[1], curve["boxes"], curve, label)
    for ax, unit in zip(axes, ("frames", "boxes"), strict=True):
        if full.size:
            ax.axhline(full.mean(), color="grey", linestyle="--", label=f"full pool, mean of {full.size} seeds")
        ax.set(xlabel=f"labeled {unit}", ylabel="test mAP (centre distance)",
               title=f"Learning curves against labeled {unit}")
        ax.legend(loc="lower right")
    figure.suptitle(f"Active learning vs random on {study.dataset}: mean and 95 % confidence band over seeds")
    return figure


def plot_reliability(study: Study, strategy: str) -> Figure:
    """Reliability diagram of ``strategy``'s test boxes, one line per loop (pooled over seeds): how often a box of
    a score is right, against that score; the diagonal is a calibrated detector."""
    runs = study.active_learning
    runs = runs[(runs["strategy"] == strategy) & runs["reliability"].map(lambda table: isinstance(table, dict))]
    figure, (ax,) = _new_figure(1)
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="calibrated")
    for loop, group in runs.groupby("loop"):
        score, precision, boxes = _pooled_reliability(group["reliability"].tolist())
        filled = boxes > 0
        ax.plot(score[filled], precision[filled], marker="o",
                label=f"loop {loop} ({group['n_labeled_frames'].mean():.0f} frames)")
    threshold = runs["reliability"].iloc[0]["threshold"] if len(runs) else float("nan")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="box score (mean in its bin)",
           ylabel=f"share of boxes that are right (match within {threshold:g})",
           title=f"Reliability of the test boxes' scores ({strategy})")
    ax.legend(loc="upper left")
    return figure


def plot_classwise(study: Study, strategy: str) -> Figure:
    """Mean AP per class per loop for ``strategy`` (left) and its change from the previous loop (right)."""
    table = classwise_curves(study, strategy)
    figure, (left, right) = _new_figure(2)
    for name, curve in table.groupby("class", sort=False):
        left.plot(curve["loop"], curve["ap_mean"], marker="o", label=name)
        right.plot(curve["loop"], curve["ap_change"], marker="o", label=name)
    right.axhline(0.0, color="grey", linewidth=0.8)
    left.set(title=f"AP per class ({strategy})", xlabel="loop (labeled frames)", ylabel="test AP (mean over seeds)")
    right.set(title="How fast each class is learned", xlabel="loop (labeled frames)",
              ylabel="change in AP from the previous loop")
    ticks = table.groupby("loop")["frames"].mean()
    for ax in (left, right):
        ax.set_xticks(ticks.index, [f"{loop}\n{frames:.0f} fr." for loop, frames in ticks.items()])
        ax.legend(title="class")
    return figure


# ---------------------------------------------------------------------------------------------- writing

def markdown_table(table: pd.DataFrame, digits: int = 3) -> str:
    """``table`` as a GitHub Markdown table, NaN as an em dash. A column of whole numbers prints without
    decimals, a column reaching 100 or more with one, any other float column with ``digits``."""
    formats = {}
    for name in table.columns:
        values = pd.to_numeric(table[name], errors="coerce")
        numeric = values.dropna()
        if table[name].dtype.kind not in "fiu":
            formats[name] = None
        elif not numeric.empty and (numeric == numeric.round()).all():
            formats[name] = ".0f"
        else:
            formats[name] = ".1f" if not numeric.empty and numeric.abs().max() >= 100 else f".{digits}f"

    def cell(name: str, value: object) -> str:
        if formats[name] is None or not isinstance(value, int | float | np.integer | np.floating):
            return str(value)
        return "—" if np.isnan(value) else format(value, formats[name])

    lines = ["| " + " | ".join(map(str, table.columns)) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(name, value) for name, value in zip(table.columns, row, strict=True)) + " |"
              for row in table.itertuples(index=False)]
    return "\n".join(lines)


@dataclass
class Report:
    """What :func:`write_report` wrote: the Markdown summary, the figures and the tables (as CSV too)."""

    summary: Path
    figures: dict[str, Path]
    tables: dict[str, pd.DataFrame]


def default_strategy(study: Study) -> str | None:
    """The strategy whose class-wise curves a report shows: the first non-random one, else random."""
    strategies = sorted(study.active_learning["strategy"].unique())
    return next((s for s in strategies if s != RANDOM), strategies[0] if strategies else None)


def write_report(study: Study, out_dir: str | Path, strategy: str | None = None,
                 levels: Sequence[float] = DEFAULT_LEVELS, baseline: str = RANDOM, selections: bool = False) -> Report:
    """Write ``report.md`` with its PNG figures and CSV tables into ``out_dir`` (ratios of labels needed to the
    ``baseline`` strategy's, see :func:`labels_to_reach`; with ``selections``, what the strategies pick, from the
    runs' datasets: :mod:`alcv.study.selections`); returns what was written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    strategy = strategy or default_strategy(study)
    tables = {"subset_map": subset_table(study), "subset_class_ap": subset_class_table(study),
              "learning_curves": learning_curves(study), "labels_to_reach": labels_to_reach(study, levels, baseline),
              "curve_areas": curve_areas(study), "calibration": calibration_table(study),
              "pool_truth": truth_table(study)}
    if strategy is not None:
        tables[f"classwise_{strategy}"] = classwise_curves(study, strategy)
    if selections:
        tables["selections"] = selection_table(study.records, study.class_names, notes=study.notes)
    figures: dict[str, Figure] = {}
    if not study.subsets.empty:
        figures["subset_violins"] = plot_subset_violins(study)
    if not study.active_learning.empty:
        figures["learning_curves"] = plot_learning_curves(study)
    if strategy is not None:
        figures[f"classwise_{strategy}"] = plot_classwise(study, strategy)
        if not tables["calibration"].empty and strategy in set(tables["calibration"]["strategy"]):
            figures[f"reliability_{strategy}"] = plot_reliability(study, strategy)
    if selections and not tables["selections"].empty:
        figures["selections"] = plot_selection_stats(tables["selections"], study.class_names)
    paths = {}
    for name, figure in figures.items():
        paths[name] = out / f"{name}.png"
        figure.savefig(paths[name], dpi=110)
    for name, table in tables.items():
        if not table.empty:
            table.to_csv(out / f"{name}.csv", index=False)
    summary = out / "report.md"
    summary.write_text(_summary_markdown(study, tables, paths, strategy, levels, baseline))
    return Report(summary, paths, tables)


def _summary_markdown(study: Study, tables: dict[str, pd.DataFrame], figures: dict[str, Path],
                      strategy: str | None, levels: Sequence[float], baseline: str) -> str:
    runs = study.records.groupby("study_type")["run"].nunique()
    parts = [f"# Study report: {study.dataset}", "",
             f"{runs.get('subset', 0)} random-subset runs and {runs.get('active_learning', 0)} active-learning "
             f"runs; classes: {', '.join(study.class_names)}. mAP is the centre-distance mAP on the fixed test "
             "split."]
    if study.notes:
        parts += ["", "## Notes", "", *(f"- {note}" for note in study.notes)]
    if "subset_violins" in figures:
        parts += ["", "## Random-subset variance", "",
                  "Each violin holds one model per seed, trained on a random subset of that fraction of the pool.",
                  "", f"![mAP per data fraction]({figures['subset_violins'].name})", "",
                  markdown_table(tables["subset_map"]), "", "AP per class (min / median / max over seeds):", "",
                  markdown_table(tables["subset_class_ap"])]
    if "learning_curves" in figures:
        curves = tables["learning_curves"][["strategy", "loop", "seeds", "frames", "boxes", "map_mean",
                                            "ci_low", "ci_high"]]
        parts += ["", "## Learning curves", "", "Mean over seeds with a 95 % Student-t confidence band.", "",
                  f"![learning curves]({figures['learning_curves'].name})", "", markdown_table(curves)]
        labels = tables["labels_to_reach"]
        if not labels.empty:
            parts += ["", "## Labels needed to reach the full-data mAP", "",
                      f"The labeled frames and boxes at the first loop whose mean mAP reaches "
                      f"{', '.join(f'{v:.0%}' for v in levels)} of the mean full-data mAP of the same seeds (— where "
                      f"it never does), and their ratios (`*_vs_random`) to those of `{baseline}`.", "",
                      markdown_table(labels)]
        parts += ["", "Area under each mean learning curve divided by its range (the curve's average mAP), against "
                  "labeled fraction (auc) and against labeled boxes (auc_boxes), over the range that every "
                  "strategy covers:", "",
                  markdown_table(tables["curve_areas"])]
    parts += _diagnosis_markdown(tables, figures, strategy)
    if strategy is not None:
        name = f"classwise_{strategy}"
        parts += ["", f"## Class-wise AP per loop: {strategy}", "", f"![class-wise AP]({figures[name].name})", "",
                  markdown_table(tables[name])]
    return "\n".join(parts) + "\n"


def _diagnosis_markdown(tables: dict[str, pd.DataFrame], figures: dict[str, Path], strategy: str | None) -> list[str]:
    """The report's sections on why a strategy does (not) beat random: score calibration, whether the picks hold
    the model's errors, and what the strategies pick."""
    parts: list[str] = []
    if not tables["calibration"].empty:
        parts += ["", "## How far the scores can be trusted", "",
                  "Uncertainty strategies rank frames by the detector's scores, so they can only be as good as "
                  "those scores. Per loop: the expected calibration error of the test boxes (0: a box of score s is "
                  "right with probability s), the share of boxes scored at least 0.5 that are right, and how many "
                  "such boxes a model predicts on the test split.", ""]
        if f"reliability_{strategy}" in figures:
            parts += [f"![reliability]({figures[f'reliability_{strategy}'].name})", ""]
        parts += [markdown_table(tables["calibration"])]
    if not tables["pool_truth"].empty:
        parts += ["", "## Do the picks hold the model's errors?", "",
                  "Where the pool's labels are known (a simulated study, `loop.pool_truth`), each acquisition "
                  "counted the errors of the model that chose it on every candidate frame: ground-truth boxes it "
                  "missed plus boxes it made up (scored at least `loop.cost.min_score`; LiDAR matches within 2 m, "
                  "image boxes at IoU 0.5). `error_lift` is the picks' errors per frame over the pool's (random "
                  "picks give 1 on average), `box_lift` the same per ground-truth box, `score_error_spearman` the "
                  "rank correlation of the strategy's score with a frame's errors, and `*_calibration_error` "
                  "the expected calibration error of the boxes predicted on the picks and on the pool (0: a box of "
                  "score s is right with probability s; mean over seeds; the loop is the one whose model chose).", "",
                  markdown_table(tables["pool_truth"])]
    if "selections" in figures:
        parts += ["", "## What the strategies pick", "",
                  "Per acquisition, the ground truth of the frames it labeled (mean over seeds): boxes per frame, "
                  "frames without a box, each class's share of the boxes, the share of the pool's drives they come "
                  "from, the share next to a frame of the same drive that was already labeled or picked with "
                  "them (within 0.15 s), and the lowest and highest acquisition score of the picks (a narrow range "
                  "at a round value is a saturated score, which tells the picks apart by noise); the `pool` row "
                  "describes every pool frame.", "",
                  f"![what the strategies pick]({figures['selections'].name})", "",
                  markdown_table(tables["selections"])]
    return parts


def log_report_to_wandb(study: Study, report: Report, project: str = "alcv", mode: str = "auto") -> Path:
    """Log the report's figures (as images) and tables to a W&B run in the study's group, job type
    ``report``; returns the run's local folder."""
    import wandb

    from alcv.tracking import resolve_wandb_mode

    group = "+".join(sorted(study.records["experiment"].unique()))
    run = wandb.init(project=project, group=group, job_type="report", name=f"{group}-report",
                     dir=str(report.summary.parent), mode=resolve_wandb_mode(mode))
    run.log({f"report/{name}": wandb.Image(str(path)) for name, path in report.figures.items()})
    run.log({f"report/{name}_table": wandb.Table(dataframe=table) for name, table in report.tables.items()
             if not table.empty})
    folder = Path(run.dir).parent
    run.finish()
    return folder


def main(argv: Sequence[str] | None = None) -> int:
    """``alcv-report DIR [DIR ...]``: figures, tables and ``report.md`` from the results files under DIRs."""
    parser = argparse.ArgumentParser(prog="alcv-report", description=main.__doc__)
    parser.add_argument("paths", nargs="+", help="run or multirun directories (searched for results.jsonl)")
    parser.add_argument("--out", help="where to write the report (default: <first path>/report)")
    parser.add_argument("--strategy", help="strategy of the class-wise figure (default: the first non-random)")
    parser.add_argument("--levels", type=float, nargs="+", default=list(DEFAULT_LEVELS),
                        help="fractions of the full-data mAP for the labels-needed table (default: 0.9 0.95 1.0)")
    parser.add_argument("--baseline", default=RANDOM,
                        help="the strategy (as labeled in the report) that the labels-needed ratios compare with "
                             "(default: random)")
    parser.add_argument("--selections", action="store_true",
                        help="also describe what each strategy picked, from the runs' label_pool.json and datasets "
                             "(rebuilt from run.json; generates or reads every pool frame's labels once)")
    parser.add_argument("--wandb", action="store_true", help="also log the figures and tables to W&B")
    args = parser.parse_args(argv)
    if outside := [level for level in args.levels if not 0 < level <= 1]:
        parser.error(f"--levels {' '.join(f'{level:g}' for level in outside)}: expected fractions of the full-data "
                     "mAP in (0, 1], e.g. --levels 0.9 0.95")
    out = Path(args.out) if args.out else Path(args.paths[0]) / "report"
    if (blocking := file_in_the_way(out)) is not None:
        parser.error(f"--out {out}: {blocking} is a file; expected a folder to write the report into")
    try:
        study = load_study(args.paths)
        report = write_report(study, out, args.strategy, args.levels, args.baseline, args.selections)
    except (FileNotFoundError, ValueError) as error:
        parser.exit(2, f"alcv-report: error: {error}\n")
    for note in study.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.wandb:
        log_report_to_wandb(study, report)
    print(f"alcv-report: wrote {report.summary} with {len(report.figures)} figures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
