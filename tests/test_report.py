"""The study report on results files written here with known values: its numbers, figures and refusals."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from omegaconf import DictConfig

from alcv.run_records import RESULTS_FILE, append_jsonl
from alcv.study.report import (
    calibration_table,
    classwise_curves,
    confidence_interval,
    curve_areas,
    labels_to_reach,
    learning_curves,
    load_study,
    main,
    subset_class_table,
    subset_table,
    truth_table,
    write_report,
)

CLASSES = ("vehicle", "pedestrian")
POOL = 1000


def write_run(folder: Path, strategy: str, seed: int, frames: list[int], maps: list[float],
              study_type: str = "active_learning", boxes_per_frame: int = 10, dataset: str = "synthetic_lidar",
              num_loops: int | None = None, class_aps: list[list[float]] | None = None) -> Path:
    """One run's results.jsonl: loop k labeled ``frames[k]`` frames and scored ``maps[k]``; class APs
    default to the mAP for vehicles and half of it for pedestrians."""
    folder.mkdir(parents=True)
    for loop, (n_frames, value) in enumerate(zip(frames, maps, strict=True)):
        aps = class_aps[loop] if class_aps else [value, value / 2]
        append_jsonl(folder / RESULTS_FILE, {
            "experiment": "subset_study" if study_type == "subset" else "al_vs_random", "study_type": study_type,
            "dataset": dataset, "strategy": strategy, "seed": seed, "loop": loop,
            "num_loops": num_loops or len(frames), "n_labeled_frames": n_frames,
            "n_labeled_boxes": n_frames * boxes_per_frame, "n_pool_frames": POOL, "fraction": n_frames / POOL,
            "target_fraction": n_frames / POOL if study_type == "subset" else None, "map": value,
            "ap_per_class": dict(zip(CLASSES, aps, strict=True)),
            "timings": {"train": 1.0, "test": 1.0, "pool_inference": 0.0, "selection": 0.0}})
    return folder


FRAMES = [100, 200, 300, 400]


@pytest.fixture
def study_dir(tmp_path: Path) -> Path:
    """Two seeds of random and least confidence, subsets at 10 % and 100 % (and a full run of seed 2,
    which no strategy has, so it must not enter their reference)."""
    root = tmp_path / "multirun"
    write_run(root / "al/0", "random", 0, FRAMES, [0.40, 0.55, 0.64, 0.70], boxes_per_frame=10)
    write_run(root / "al/1", "random", 1, FRAMES, [0.30, 0.45, 0.60, 0.66], boxes_per_frame=12)
    write_run(root / "al/2", "least_confidence", 0, FRAMES, [0.40, 0.64, 0.70, 0.74], boxes_per_frame=10)
    write_run(root / "al/3", "least_confidence", 1, FRAMES, [0.30, 0.66, 0.68, 0.70], boxes_per_frame=12)
    for seed, small, full in [(0, 0.2, 0.80), (1, 0.5, 0.60), (2, 0.3, 0.95)]:
        write_run(root / f"subset/s{seed}_10", "random", seed, [100], [small], study_type="subset")
        write_run(root / f"subset/s{seed}_100", "random", seed, [POOL], [full], study_type="subset")
    return root


def test_labels_to_reach_the_full_data_map_by_hand(study_dir: Path) -> None:
    study = load_study([study_dir])
    table = labels_to_reach(study).set_index(["strategy", "level"])
    # reference: mean full-pool mAP of seeds 0 and 1 = (0.80 + 0.60) / 2 = 0.70 (seed 2 has no AL runs)
    assert table["full_data_map"].tolist() == pytest.approx([0.70] * 6)
    assert table.loc[("random", 0.95), "target_map"] == pytest.approx(0.665)
    # random's mean curve 0.35 0.50 0.62 0.68: 90 % (0.63) and 95 % (0.665) at 400 frames, 100 % never
    assert table.loc[("random", 0.9), "frames"] == 400 and table.loc[("random", 0.95), "frames"] == 400
    assert np.isnan(table.loc[("random", 1.0), "frames"])
    # least confidence's mean curve 0.35 0.65 0.69 0.72: 200, 300 and 400 frames
    lc = table.loc["least_confidence"]
    assert lc["frames"].tolist() == [200, 300, 400]
    assert lc["boxes"].tolist() == [200 * 11, 300 * 11, 400 * 11]  # mean of 10 and 12 boxes a frame
    assert lc["frames_vs_random"].tolist()[:2] == pytest.approx([0.5, 0.75])
    assert lc["boxes_vs_random"].tolist()[:2] == pytest.approx([0.5, 0.75])
    assert np.isnan(lc.loc[1.0, "frames_vs_random"])
    assert table.loc[("random", 0.95), "frames_vs_random"] == 1.0
    assert (table["seeds"] == 2).all()

    areas = curve_areas(study).set_index("strategy")
    # least confidence: 0.1 * (0.50 + 0.67 + 0.705) / 0.3 over the fractions 0.1 ... 0.4
    assert areas.loc["least_confidence", "auc"] == pytest.approx(0.625)
    # against boxes 1100 ... 4400 the same trapezoids, scaled by 1100 / 3300
    assert areas.loc["least_confidence", "auc_boxes"] == pytest.approx(0.625)
    assert areas.loc["random", "auc"] == pytest.approx(0.1 * (0.425 + 0.56 + 0.65) / 0.3)


def test_learning_curve_means_and_confidence_band(study_dir: Path) -> None:
    curves = learning_curves(load_study([study_dir])).set_index(["strategy", "loop"])
    first = curves.loc[("least_confidence", 0)]
    assert first["map_mean"] == pytest.approx(0.35) and first["seeds"] == 2
    # t(0.975, 1 dof) = 12.7062; std of (0.40, 0.30) = 0.070711; half width = 12.7062 * 0.070711 / sqrt(2)
    assert first["ci_high"] - first["map_mean"] == pytest.approx(12.7062 * 0.070711 / np.sqrt(2), rel=1e-4)
    assert curves.loc[("random", 3), "boxes"] == pytest.approx(400 * 11)
    assert confidence_interval(np.array([0.5])) == (pytest.approx(np.nan, nan_ok=True),) * 2


def test_subset_tables_give_min_median_max_per_fraction(study_dir: Path) -> None:
    study = load_study([study_dir])
    table = subset_table(study).set_index("fraction")
    assert list(table.index) == [0.1, 1.0]
    assert table.loc[0.1, ["runs", "map_min", "map_median", "map_max"]].tolist() == pytest.approx([3, 0.2, 0.3, 0.5])
    assert table.loc[1.0, "map_median"] == pytest.approx(0.80)
    assert table.loc[0.1, "median_ap/pedestrian"] == pytest.approx(0.15)
    classes = subset_class_table(study).set_index(["fraction", "class"])
    assert classes.loc[(0.1, "pedestrian"), ["ap_min", "ap_max"]].tolist() == pytest.approx([0.1, 0.25])


def test_classwise_change_per_loop(tmp_path: Path) -> None:
    aps = [[0.1, 0.0], [0.4, 0.1], [0.5, 0.4]]
    write_run(tmp_path / "a", "least_confidence", 0, [10, 20, 30], [0.05, 0.25, 0.45], class_aps=aps)
    write_run(tmp_path / "b", "least_confidence", 1, [10, 20, 30], [0.05, 0.25, 0.45],
              class_aps=[[v + 0.1 for v in row] for row in aps])
    table = classwise_curves(load_study([tmp_path]), "least_confidence").set_index(["class", "loop"])
    assert table.loc[("vehicle", 1), "ap_mean"] == pytest.approx(0.45)
    assert table.loc[("vehicle", 1), "ap_change"] == pytest.approx(0.3)
    assert table.loc[("pedestrian", 2), "ap_change"] == pytest.approx(0.3)
    assert np.isnan(table.loc[("pedestrian", 0), "ap_change"])
    with pytest.raises(ValueError, match="no active-learning runs of strategy 'entropy'"):
        classwise_curves(load_study([tmp_path]), "entropy")


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = imread(path)
    assert image.shape[0] > 300 and image.shape[1] > 600
    assert image[..., :3].std() > 0.05, f"{path} is blank"


def test_report_writes_figures_tables_and_markdown(study_dir: Path, tmp_path: Path) -> None:
    report = write_report(load_study([study_dir]), tmp_path / "report")
    assert set(report.figures) == {"subset_violins", "learning_curves", "classwise_least_confidence"}
    for path in report.figures.values():
        assert_png(path)
    summary = report.summary.read_text()
    for path in report.figures.values():
        assert f"]({path.name})" in summary
    assert "| least_confidence | 0.950 | 2 | 0.700 | 0.665 | 300 | 3300 | 0.750 | 0.750 |" in summary
    assert "| least_confidence | 2 | 0.100-0.400 | 0.625 | 1100-4400 | 0.625 |" in summary
    assert (tmp_path / "report" / "labels_to_reach.csv").exists()


def test_early_stop_missing_seed_and_single_seed_become_notes(tmp_path: Path) -> None:
    write_run(tmp_path / "a", "random", 0, FRAMES, [0.3, 0.4, 0.5, 0.6])
    write_run(tmp_path / "b", "random", 1, FRAMES[:2], [0.3, 0.4], num_loops=4)  # stopped after loop 1
    write_run(tmp_path / "c", "least_confidence", 0, FRAMES, [0.3, 0.5, 0.6, 0.7])
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / RESULTS_FILE).write_text("")  # killed during its first loop
    study = load_study([tmp_path])
    notes = "\n".join(study.notes)
    assert f"{tmp_path / 'd' / RESULTS_FILE}: no complete records" in notes
    assert f"{tmp_path / 'b'}: stopped after loop 1 of 3" in notes
    assert "strategy 'least_confidence' lacks seeds [1]" in notes
    assert "strategy 'least_confidence' has a single seed: no confidence band" in notes
    curves = learning_curves(study).set_index(["strategy", "loop"])
    assert curves.loc[("random", 1), "seeds"] == 2 and curves.loc[("random", 2), "seeds"] == 1
    assert curves.loc[("random", 2), "map_mean"] == pytest.approx(0.5)
    report = write_report(study, tmp_path / "report")
    assert_png(report.figures["learning_curves"])
    summary = report.summary.read_text()
    assert "stopped after loop 1 of 3" in summary and "no subset runs at fraction 1.0" in summary


def test_corrupt_line_is_named_and_the_rest_is_read(tmp_path: Path) -> None:
    run = write_run(tmp_path / "a", "random", 0, FRAMES, [0.3, 0.4, 0.5, 0.6])
    lines = (run / RESULTS_FILE).read_text().splitlines()
    lines[1] = lines[1][:40]  # a line cut short, as by a crash mid-write
    lines.insert(3, json.dumps({"loop": 9}))
    (run / RESULTS_FILE).write_text("\n".join(lines) + "\n")
    study = load_study([tmp_path])
    assert study.records["loop"].tolist() == [0, 2, 3]
    assert any(note.startswith(f"{run / RESULTS_FILE}:2: skipped, not valid JSON") for note in study.notes)
    assert any(f"{run / RESULTS_FILE}:4: skipped, the record lacks fields" in note for note in study.notes)


def test_refuses_mixed_datasets_and_directories_without_results(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    write_run(tmp_path / "a", "random", 0, FRAMES, [0.3, 0.4, 0.5, 0.6])
    write_run(tmp_path / "b", "random", 1, FRAMES, [0.3, 0.4, 0.5, 0.6], dataset="kitti")
    with pytest.raises(ValueError, match=r"different datasets.*'synthetic_lidar'.*'kitti'"):
        load_study([tmp_path])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty: no results\.jsonl"):
        load_study([tmp_path / "empty"])
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "empty")])
    assert exit_info.value.code == 2
    assert "alcv-report: error:" in capsys.readouterr().err


def test_cli_writes_the_report_and_logs_it_to_wandb_offline(study_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main([str(study_dir / "al"), str(study_dir / "subset"), "--out", str(out), "--strategy", "random",
                 "--wandb"]) == 0
    assert (out / "report.md").exists() and (out / "classwise_random.png").exists()
    (run_dir,) = (out / "wandb").glob("offline-run-*")
    images = sorted(p.name.split("_")[0] for p in (run_dir / "files/media/images/report").glob("*.png"))
    assert images == ["classwise", "learning", "subset"]
    assert list((run_dir / "files/media/table/report").glob("labels_to_reach_table*.table.json"))


def test_a_tiny_real_study_gives_a_report_and_runs_the_notebook(compose_cfg: Callable[..., DictConfig],
                                                                 tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Both studies for real at toy size, then `alcv-report` and the notebook over their output."""
    import nbclient
    import nbformat
    from conftest import TINY

    from alcv.loop import run

    study = tmp_path / "study"
    subset = ["experiment=subset_study", "loop.initial_size=null", "loop.num_loops=1"]
    for number, overrides in enumerate([
        [*subset, "loop.initial_fraction=0.5"], [*subset, "loop.initial_fraction=1.0"],
        ["experiment=al_vs_random", "strategy=random"], ["experiment=al_vs_random", "strategy=least_confidence"],
    ]):
        run(compose_cfg(*TINY, *overrides, "logger=none", output_dir=study / str(number)))

    assert main([str(study)]) == 0
    summary = (study / "report" / "report.md").read_text()
    assert "## Random-subset variance" in summary and "## Labels needed" in summary
    for name in ("subset_violins", "learning_curves", "classwise_least_confidence"):
        assert_png(study / "report" / f"{name}.png")

    notebook_path = Path(__file__).parents[1] / "notebooks" / "study_figures.ipynb"
    notebook = nbformat.read(notebook_path, as_version=4)
    monkeypatch.setenv("ALCV_RESULTS", str(study))
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(notebook_path.parent)}}).execute()
    images = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
              if "image/png" in output.get("data", {})]
    assert len(images) == 4  # the report's three figures and the per-seed curves


def test_variants_of_one_strategy_get_their_own_curves(tmp_path: Path) -> None:
    for number, aggregation in enumerate(["max", "mean"]):
        folder = write_run(tmp_path / str(number), "least_confidence", 0, FRAMES, [0.3, 0.4, 0.5, 0.6])
        lines = [json.loads(line) for line in (folder / RESULTS_FILE).read_text().splitlines()]
        for line in lines:
            line["strategy_config"] = {"_target_": "x", "aggregation": aggregation, "min_score": 0.1}
        (folder / RESULTS_FILE).write_text("".join(json.dumps(line) + "\n" for line in lines))
    curves = learning_curves(load_study([tmp_path]))
    assert sorted(curves["strategy"].unique()) == ["least_confidence (aggregation=max)",
                                                   "least_confidence (aggregation=mean)"]
    assert (curves["seeds"] == 1).all()


def test_loop_selection_settings_make_variants_but_subset_runs_do_not(tmp_path: Path) -> None:
    spreads = {"plain": None, "spread": 2}
    for name, max_per_drive in spreads.items():
        for strategy in ("random", "least_confidence"):
            folder = write_run(tmp_path / name / strategy, strategy, 0, FRAMES, [0.3, 0.4, 0.5, 0.6])
            lines = [json.loads(line) for line in (folder / RESULTS_FILE).read_text().splitlines()]
            for line in lines:
                line["selection_config"] = {"query_size": 100, "spread": {"max_per_drive": max_per_drive}}
            (folder / RESULTS_FILE).write_text("".join(json.dumps(line) + "\n" for line in lines))
    write_run(tmp_path / "full", "random", 0, [POOL], [0.8], study_type="subset")  # no selection settings
    study = load_study([tmp_path])
    assert sorted(learning_curves(study)["strategy"].unique()) == [
        "least_confidence (loop.spread.max_per_drive=2)", "least_confidence (loop.spread.max_per_drive=None)",
        "random (loop.spread.max_per_drive=2)", "random (loop.spread.max_per_drive=None)"]
    assert study.subsets["strategy"].unique().tolist() == ["random"]
    assert labels_to_reach(study, (0.5,))["frames_vs_random"].isna().all()  # no curve is labeled 'random'
    assert any("no active-learning runs labeled 'random'" in note for note in study.notes)
    table = labels_to_reach(study, (0.5,), baseline="random (loop.spread.max_per_drive=None)")
    assert table["frames"].tolist() == [200] * 4 and table["frames_vs_random"].tolist() == [1.0] * 4


def test_areas_against_boxes_use_the_range_every_strategy_covers(tmp_path: Path) -> None:
    write_run(tmp_path / "a", "random", 0, [100, 200], [0.2, 0.4], boxes_per_frame=20)  # boxes 2000, 4000
    write_run(tmp_path / "b", "least_confidence", 0, [100, 200], [0.2, 0.6], boxes_per_frame=10)  # 1000, 2000
    areas = curve_areas(load_study([tmp_path])).set_index("strategy")
    assert areas.loc["random", "boxes"] == "2000-2000"  # the only box count both curves reach
    assert areas.loc["random", "auc_boxes"] == pytest.approx(0.2)
    assert areas.loc["least_confidence", "auc_boxes"] == pytest.approx(0.6)
    assert areas.loc["least_confidence", "auc"] == pytest.approx(0.4)  # mean of 0.2 and 0.6 over 10-20 %


def test_the_readme_notebook_command_runs_on_the_committed_example_study() -> None:
    """`jupyter execute notebooks/study_figures.ipynb` from the repository root, as the README says: it
    reads docs/example_study/runs by default."""
    import subprocess
    import sys

    root = Path(__file__).parents[1]
    jupyter = Path(sys.executable).with_name("jupyter")
    result = subprocess.run([str(jupyter), "execute", "notebooks/study_figures.ipynb"], cwd=root,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert load_study([root / "docs/example_study/runs"]).records["run"].nunique() == 35


def test_the_calibration_table_pools_the_seeds_reliability_tables(tmp_path: Path) -> None:
    from alcv.metrics.average_precision import reliability

    # seed 0: 4 boxes at 0.9 (3 right) and 2 at 0.2 (none right); seed 1: 2 boxes at 0.7 (both right)
    tables = [reliability(np.array([0.9] * 4 + [0.2] * 2), np.array([True] * 3 + [False] * 3), 2.0),
              reliability(np.array([0.7, 0.7]), np.array([True, True]), 2.0)]
    for seed, table in enumerate(tables):
        folder = write_run(tmp_path / str(seed), "least_confidence", seed, [100], [0.5])
        line = json.loads((folder / RESULTS_FILE).read_text())
        line["score_reliability"] = table.as_dict()
        (folder / RESULTS_FILE).write_text(json.dumps(line) + "\n")
    write_run(tmp_path / "old", "random", 0, [100], [0.4])  # an older results file without the table
    study = load_study([tmp_path])
    row = calibration_table(study).set_index("strategy").loc["least_confidence"]
    # ECE: seed 0 (4 * 0.15 + 2 * 0.2) / 6 = 1/6, seed 1 |1 - 0.7| = 0.3
    assert row["calibration_error"] == pytest.approx((1 / 6 + 0.3) / 2)
    assert row["right_at_0.5"] == pytest.approx(5 / 6) and row["boxes_at_0.5"] == pytest.approx(3)
    report = write_report(study, tmp_path / "report")
    assert "## How far the scores can be trusted" in report.summary.read_text()
    assert_png(tmp_path / "report" / "reliability_least_confidence.png")


def test_the_pool_truth_table_averages_the_seeds_and_skips_undefined_values(tmp_path: Path) -> None:
    summaries = [{"error_lift": 1.5, "box_lift": 0.8, "score_error_spearman": 0.4, "picked_errors_per_frame": 3.0,
                  "pool_errors_per_frame": 2.0, "picked_errors_per_box": 0.8, "pool_errors_per_box": 1.0},
                 {"error_lift": 0.5, "box_lift": 1.2, "score_error_spearman": None, "picked_errors_per_frame": 1.0,
                  "pool_errors_per_frame": 2.0, "picked_errors_per_box": 1.2, "pool_errors_per_box": 1.0}]
    for seed, summary in enumerate(summaries):
        folder = write_run(tmp_path / str(seed), "least_confidence", seed, [100, 200], [0.5, 0.6])
        lines = [json.loads(line) for line in (folder / RESULTS_FILE).read_text().splitlines()]
        lines[0]["pool_truth"] = summary  # the last loop acquires nothing: no summary
        (folder / RESULTS_FILE).write_text("".join(json.dumps(line) + "\n" for line in lines))
    write_run(tmp_path / "random", "random", 0, [100, 200], [0.4, 0.5])  # no pool inference, no summary
    table = truth_table(load_study([tmp_path]))
    assert table[["strategy", "loop", "seeds"]].values.tolist() == [["least_confidence", 0, 2]]
    row = table.iloc[0]
    assert row["error_lift"] == pytest.approx(1.0) and row["box_lift"] == pytest.approx(1.0)
    assert row["score_error_spearman"] == pytest.approx(0.4)  # the seed without one is left out, not counted as 0
    report = write_report(load_study([tmp_path]), tmp_path / "report")
    assert "## Do the picks hold the model's errors?" in report.summary.read_text()
    assert (tmp_path / "report" / "pool_truth.csv").is_file()
