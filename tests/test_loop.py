"""The loop driver end to end through ``run(cfg)``, on a tiny world, and its refusals of bad settings."""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, TINY_2D, as_if_killed_during
from omegaconf import DictConfig
from wandb_log import history_rows

from alcv.config import CONFIG_DIR
from alcv.loop import _check_shards, run
from alcv.pool import LabelPool
from alcv.run_files import POOL_STATE_FILE, WEIGHTS_FILE, loop_folder
from alcv.run_records import REQUIRED_FIELDS, RESULTS_FILE, SELECTIONS_FILE, objective, read_jsonl, read_results

Compose = Callable[..., DictConfig]


def test_two_loops_write_results_selections_state_and_wandb(compose_cfg: Compose, tmp_path: Path) -> None:
    cfg = compose_cfg(*TINY, "seed=5", "loop.gallery_frames=4")
    records = run(cfg)
    out = Path(cfg.output_dir)

    results = read_results(out)
    assert len(results) == len(records) == 2
    assert [r["loop"] for r in results] == [0, 1]
    for record in results:
        assert set(REQUIRED_FIELDS) <= set(record)
        assert record["strategy"] == "least_confidence" and record["seed"] == 5
        assert record["dataset"] == "synthetic_lidar"
        assert set(record["ap_per_class"]) == {"vehicle", "pedestrian", "golf_cart"}
        assert set(record["timings"]) == {"train", "test", "pool_inference", "selection"}
        assert record["map"] is None or 0.0 <= record["map"] <= 1.0
        # how often the test boxes of each score are right, at the 2 m threshold
        assert record["score_reliability"]["threshold"] == 2.0 and sum(record["score_reliability"]["boxes"]) > 0
    assert [r["n_labeled_frames"] for r in results] == [10, 20]
    assert results[0]["fraction"] == pytest.approx(10 / results[0]["n_pool_frames"])
    assert results[1]["n_labeled_boxes"] >= results[0]["n_labeled_boxes"]
    assert results[0]["timings"]["pool_inference"] > 0 and results[0]["n_selected"] == 10
    assert results[1]["n_selected"] == 0  # nothing is acquired after the last loop

    # selections: the initial set and one acquisition, matching the saved labeling state
    selections = list(read_jsonl(out / SELECTIONS_FILE))
    assert [s["loop"] for s in selections] == [0, 1]
    pool = LabelPool.load(out / POOL_STATE_FILE)
    for selection in selections:
        assert sorted(selection["indices"]) == pool.labeled_in_loop(selection["loop"]).tolist()
    # best first; frames without boxes rank last (score -inf, stored as null) under the default policy
    scores = [-math.inf if score is None else score for score in selections[1]["scores"]]
    assert scores == sorted(scores, reverse=True)

    # the labeled box count is the real number of boxes in the labeled frames
    from hydra.utils import instantiate

    dataset = instantiate(cfg.data.dataset)
    assert results[0]["n_labeled_boxes"] == sum(dataset.num_boxes(i) for i in selections[0]["indices"])

    # W&B ran offline inside the run's folder and holds the per-loop metrics on the loop axis
    (run_dir,) = (out / "wandb").glob("offline-run-*")
    loop_rows = [row for row in history_rows(run_dir) if "loop" in row]
    assert [row["loop"] for row in loop_rows] == [0, 1]
    for row, record in zip(loop_rows, results, strict=True):
        assert row["al/n_labeled_frames"] == record["n_labeled_frames"]
        assert row["al/n_labeled_boxes"] == record["n_labeled_boxes"]
        assert row["al/map"] == pytest.approx(record["map"])
        assert row["al/ap/vehicle"] == pytest.approx(record["ap_per_class"]["vehicle"])
        # the KITTI-style AP of the test split, beside the centre-distance mAP
        assert set(record["extra_metrics"]) == {"kitti_bev", "kitti_3d"}
        for name, values in record["extra_metrics"].items():
            assert set(values) == {"map", "ap/vehicle", "ap/pedestrian", "ap/golf_cart"}
            assert values["map"] is None or 0.0 <= values["map"] <= 1.0
            if values["map"] is not None:
                assert row[f"al/{name}/map"] == pytest.approx(values["map"])

    # each loop's row holds the frames labeled for it as a W&B Table, in the strategy's order
    for row, selection in zip(loop_rows, selections, strict=True):
        table_file = run_dir / "files" / row["al/selected_frames/path"]
        table = json.loads(table_file.read_text())
        assert table["columns"] == ["loop", "rank", "index", "score", "boxes"]
        assert [r[2] for r in table["data"]] == selection["indices"]
        assert {r[0] for r in table["data"]} == {selection["loop"]}
        assert [r[4] for r in table["data"]] == [dataset.num_boxes(i) for i in selection["indices"]]
    assert [r[3] for r in table["data"]] == pytest.approx(selections[1]["scores"])

    # the gallery: the first 4 picks for loop 1, drawn, and in W&B as point clouds with both box sets
    assert (out / "gallery" / "loop_001.png").stat().st_size > 10_000 and len(list((out / "gallery").iterdir())) == 1
    gallery = json.loads((run_dir / "files" / loop_rows[0]["al/gallery/path"]).read_text())
    assert gallery["columns"] == ["loop", "rank", "index", "score", "frame"]
    first_picks = selections[1]["indices"][:4]
    assert [r[:3] for r in gallery["data"]] == [[1, rank, index] for rank, index in enumerate(first_picks)]
    for index, media in zip(first_picks, loop_rows[0]["al/gallery_frames/objects"], strict=True):
        cloud = json.loads((run_dir / "files" / media["path"]).read_text())
        assert cloud["type"] == "lidar/beta" and len(cloud["points"]) == len(dataset[index]["points"])
        truth = [box for box in cloud["boxes"] if box["label"].startswith("truth ")]
        assert len(truth) == dataset.num_boxes(index) and all(len(box["corners"]) == 8 for box in cloud["boxes"])
    assert "al/gallery" not in loop_rows[1]  # nothing is picked after the last loop


def test_same_seed_same_selection_and_random_needs_no_pool_inference(compose_cfg: Compose,
                                                                     tmp_path: Path) -> None:
    first = compose_cfg(*TINY, "strategy=random", "logger=none", output_dir=tmp_path / "a")
    second = compose_cfg(*TINY, "strategy=random", "logger=none", output_dir=tmp_path / "b")
    other_seed = compose_cfg(*TINY, "strategy=random", "logger=none", "seed=1", output_dir=tmp_path / "c")
    records = run(first)
    run(second)
    run(other_seed)
    assert records[0]["strategy"] == "random" and records[0]["timings"]["pool_inference"] == 0

    def chosen(folder: str) -> list[list[int]]:
        return [s["indices"] for s in read_jsonl(tmp_path / folder / SELECTIONS_FILE)]

    assert chosen("a") == chosen("b")
    assert chosen("a") != chosen("c")


def test_warm_start_runs_and_csv_logger_works(compose_cfg: Compose) -> None:
    cfg = compose_cfg(*TINY, "loop.reset_weights=false", "logger=csv", "loop.num_loops=3",
                      "loop.query_size=5")
    records = run(cfg)
    assert [r["n_labeled_frames"] for r in records] == [10, 15, 20]
    assert list(Path(cfg.output_dir).rglob("metrics.csv"))


def test_a_warm_start_trains_on_from_the_previous_loops_weights(compose_cfg: Compose, tmp_path: Path) -> None:
    """With ``loop.reset_weights=false`` loop 1 trains on from loop 0's model: its pool scores (the loop-2
    selection) differ from a cold start's, after the same loop-1 selection; and loop 1 redone from loop 0's
    saved ``state_dict`` ends with exactly the weights it had."""
    warm_dir, cold_dir, resumed_dir = tmp_path / "warm", tmp_path / "cold", tmp_path / "resumed"
    settings = (*TINY, "logger=none", "loop.num_loops=3")
    run(compose_cfg(*settings, "loop.reset_weights=false", output_dir=warm_dir))
    run(compose_cfg(*settings, output_dir=cold_dir))
    warm, cold = (list(read_jsonl(folder / SELECTIONS_FILE)) for folder in (warm_dir, cold_dir))
    assert warm[1] == cold[1]  # chosen by the same loop-0 model
    assert warm[2]["scores"] != cold[2]["scores"]

    shutil.copytree(warm_dir, resumed_dir)
    as_if_killed_during(resumed_dir, 1)
    run(compose_cfg(*settings, "loop.reset_weights=false", output_dir=resumed_dir))
    trained, redone = (torch.load(folder / loop_folder(1) / WEIGHTS_FILE, weights_only=True)
                       for folder in (warm_dir, resumed_dir))
    assert trained.keys() == redone.keys()
    assert all(torch.equal(trained[name], redone[name]) for name in trained)
    first = torch.load(warm_dir / loop_folder(0) / WEIGHTS_FILE, weights_only=True)
    assert not all(torch.equal(first[name], trained[name]) for name in trained)  # loop 1 did train


def test_a_bf16_mixed_run_on_the_cpu_completes(compose_cfg: Compose) -> None:
    """``experiment=smoke trainer.precision=bf16-mixed``: every loop trains, tests and selects under bfloat16
    autocast on the CPU, and the results hold a defined mAP."""
    cfg = compose_cfg("experiment=smoke", "trainer.precision=bf16-mixed", "logger=none")
    records = run(cfg)
    assert [record["n_labeled_frames"] for record in records] == [10, 20]
    assert all(math.isfinite(record["map"]) for record in records)
    assert [len(s["indices"]) for s in read_jsonl(Path(cfg.output_dir) / SELECTIONS_FILE)] == [10, 10]


def test_subset_run_trains_once_on_a_fraction_of_the_pool(compose_cfg: Compose) -> None:
    cfg = compose_cfg("experiment=subset_study", *TINY, "loop.initial_size=null", "loop.num_loops=1",
                      "loop.initial_fraction=0.25", "logger=none")
    (record,) = run(cfg)
    assert record["study_type"] == "subset" and record["strategy"] == "random"
    assert record["target_fraction"] == 0.25
    assert record["n_labeled_frames"] == round(0.25 * record["n_pool_frames"])
    assert record["n_selected"] == 0 and record["timings"]["pool_inference"] == 0
    assert [s["loop"] for s in read_jsonl(Path(cfg.output_dir) / SELECTIONS_FILE)] == [0]


@pytest.mark.parametrize(("override", "message"), [
    ("loop.initial_size=0", r"loop.initial_size must be in \[1, "),
    ("loop.initial_size=100000", r"loop.initial_size must be in \[1, "),
    ("loop.query_size=1000", r"loop.query_size=1000 .* needs"),
    ("strategy.aggregation=median", r"strategy.aggregation: unknown 'median', expected one of \('max'"),
    ("strategy.empty_frames=skip", r"strategy.empty_frames: unknown 'skip'"),
    ("data.dataset.class_names=[vehicle,tractor]", r"class_names.*tractor"),
    ("loop.initial_fraction=0.5", r"set exactly one of loop.initial_size .* and loop.initial_fraction"),
    ("loop=subset", r"set exactly one of loop.initial_size"),
    ("loop.study_type=subset", r"loop.num_loops must be 1, got 2"),
    ("loop.study_type=bandit", r"loop.study_type='bandit': expected one of 'active_learning', 'subset'"),
    ("loop.objective=auc", r"loop.objective='auc': expected one of 'final_map', 'learning_curve_area'"),
])
def test_bad_settings_fail_before_any_training(compose_cfg: Compose, override: str, message: str) -> None:
    cfg = compose_cfg(*TINY, override)
    with pytest.raises(Exception, match=message):
        run(cfg)
    out = Path(cfg.output_dir)
    assert not (out / RESULTS_FILE).exists() and not (out / "loop_000").exists()
    assert not np.any([p.name.startswith("offline-run") for p in out.rglob("*")])


STRATEGIES = sorted(path.stem for path in (CONFIG_DIR / "strategy").glob("*.yaml"))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_acquires_through_the_loop(compose_cfg: Compose, strategy: str) -> None:
    cfg = compose_cfg(*TINY, f"strategy={strategy}", "logger=none", "loop.query_size=7")
    first, second = run(cfg)
    assert first["strategy"] == strategy and first["n_selected"] == 7
    assert second["n_labeled_frames"] == 17
    # where the pool was predicted, the acquisition measured whether its picks hold the model's errors
    assert (first["pool_truth"] is None) == (strategy == "random") and second["pool_truth"] is None
    if strategy != "random":
        assert first["pool_truth"]["pool_errors_per_frame"] > 0
    selections = list(read_jsonl(Path(cfg.output_dir) / SELECTIONS_FILE))
    picked = selections[1]["indices"]
    assert len(set(picked)) == 7 and not set(picked) & set(selections[0]["indices"])


def test_a_budget_in_boxes_spends_at_most_the_budget_and_logs_true_boxes(compose_cfg: Compose) -> None:
    cfg = compose_cfg(*TINY, "logger=none", "loop.budget_unit=boxes", "loop.query_size=40", "loop.cost.frame=2",
                      "loop.cost.box=1", "loop.pool_truth=false")
    first, second = run(cfg)
    assert first["budget_unit"] == "boxes" and first["pool_truth"] is None  # not measured when turned off
    assert 0 < first["selected_cost"] <= 40
    # each frame costs at least 2, so at most 20 frames fit
    assert 1 <= first["n_selected"] <= 20
    from hydra.utils import instantiate

    dataset = instantiate(cfg.data.dataset)
    labeled = [i for s in read_jsonl(Path(cfg.output_dir) / SELECTIONS_FILE) for i in s["indices"]]
    assert second["n_labeled_boxes"] == sum(dataset.num_boxes(i) for i in labeled)


def test_spreading_with_more_budget_than_the_caps_allow_labels_exactly_the_budget(
        compose_cfg: Compose, caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    from hydra.utils import instantiate

    cfg = compose_cfg(*TINY, "logger=none", "strategy=random", "loop.spread.max_per_drive=1", "loop.query_size=12")
    world = instantiate(cfg.data.dataset).world
    first, _ = run(cfg)
    picked = list(read_jsonl(Path(cfg.output_dir) / SELECTIONS_FILE))[1]["indices"]
    drives = [world.drive_of(i)[0] for i in picked]
    pool_drives = len(set(drives))
    assert pool_drives < 12 and len(picked) == 12 and first["n_selected"] == 12
    assert first["spread_relaxations"] >= 1 and first["budget_left"] == 0 and first["budget_shortfall"] is None
    assert len(set(drives[:pool_drives])) == pool_drives  # the caps held as long as they could: one per drive first

    strict = compose_cfg(*TINY, "logger=none", "strategy=random", "loop.spread.max_per_drive=1",
                         "loop.query_size=12", "loop.spread.strict=true", output_dir=tmp_path / "strict")
    with caplog.at_level(logging.WARNING, logger="alcv.acquisition"):
        first, _ = run(strict)
    assert first["n_selected"] == pool_drives and first["budget_left"] == 12 - pool_drives
    assert "strict spreading rules" in first["budget_shortfall"]
    assert f"{12 - pool_drives:g} of the budget of 12 frames is not spent" in caplog.text


@pytest.mark.parametrize("strategy", ["least_confidence", "bald", "coreset", "committee"])
def test_the_2d_default_runs_the_same_loop_and_strategies(compose_cfg: Compose, strategy: str) -> None:
    cfg = compose_cfg(*TINY_2D, f"strategy={strategy}", "logger=none", "loop.query_size=7", "loop.gallery_frames=2")
    first, second = run(cfg)
    assert first["dataset"] == "synthetic_camera" and first["n_selected"] == 7
    assert set(first["ap_per_class"]) == {"vehicle", "pedestrian", "golf_cart"}
    assert list(first["ap_per_threshold"])[:2] == ["0.5", "0.55"]  # COCO IoU thresholds
    assert second["n_labeled_frames"] == 17
    assert (Path(cfg.output_dir) / "gallery" / "loop_001.png").is_file()  # the picks drawn as images with boxes


@pytest.mark.parametrize(("data", "model", "message"), [
    ([o for o in TINY_2D if o != "model=fcos_tiny"], "model=bev_tiny",
     r"model BEVDetectionModule reads lidar frames but data 'synthetic_camera' holds camera frames: choose a "
     r"camera model for this data \(e\.g\. model=fcos_tiny or model=fasterrcnn\)"),
    (TINY, "model=fcos_tiny", r"model TorchvisionDetectionModule reads camera frames but data 'synthetic_lidar' "
                              r"holds lidar frames: choose a lidar model for this data \(e\.g\. model=bev_tiny\)"),
])
def test_a_model_for_the_other_modality_is_refused_before_training(compose_cfg: Compose, data: list[str], model: str,
                                                                   message: str) -> None:
    cfg = compose_cfg(*data, model, "logger=none")
    with pytest.raises(ValueError, match=message):
        run(cfg)
    assert not (Path(cfg.output_dir) / RESULTS_FILE).exists()


def test_a_split_smaller_than_the_ddp_world_is_refused_instead_of_hanging() -> None:
    with pytest.raises(ValueError, match=r"the test split has 1 frames for 2 processes, and each needs at least one"):
        _check_shards(1, 2, "the test split")
    _check_shards(2, 2, "pool inference")  # one frame each is enough


def test_the_objective_is_the_final_map_or_the_area_under_the_learning_curve() -> None:
    """mAP 0.2, 0.4, 0.5 at 10, 20, 40 % labeled: the area is 0.1 x 0.3 + 0.2 x 0.45 = 0.12 over a span of 0.3,
    a mean of 0.4; one loop gives its own mAP, an undefined mAP NaN, an unknown name an error."""
    records = [{"fraction": fraction, "map": value} for fraction, value in ((0.1, 0.2), (0.2, 0.4), (0.4, 0.5))]
    assert objective(records, "final_map") == 0.5
    assert objective(records, "learning_curve_area") == pytest.approx(0.4)
    assert objective(records[:1], "learning_curve_area") == 0.2
    assert math.isnan(objective([*records[:2], {"fraction": 0.4, "map": None}], "learning_curve_area"))
    with pytest.raises(ValueError, match=r"loop\.objective: unknown 'auc'"):
        objective(records, "auc")
