"""Bad input is refused before anything is written: per pattern, several cases, each refusal naming the key (or
the file and field) with what was expected, and every file that existed before byte-identical after."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import hydra
import pytest
from conftest import TINY, as_if_killed_during, compose_config, run_cli
from omegaconf import OmegaConf

from alcv.cli import folder_in_the_way
from alcv.cli import main as cli_main
from alcv.config import plain_name
from alcv.data.export import export_kitti, kitti_overrides
from alcv.data.export import main as export_main
from alcv.loop import run
from alcv.run_files import RUN_FILE
from alcv.run_records import RESULTS_FILE
from alcv.study.report import load_study
from alcv.study.report import main as report_main
from alcv.value_types import describe, fits


def digests(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``, by relative path."""
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny run of two loops that finished."""
    out = tmp_path_factory.mktemp("finished") / "run"
    run(compose_config(*TINY, "logger=none", output_dir=out))
    return out


@pytest.fixture
def earlier_run(finished_run: Path, tmp_path: Path) -> Path:
    """A copy of :func:`finished_run`'s folder for one test to run into."""
    return Path(shutil.copytree(finished_run, tmp_path / "earlier"))


def refuse(overrides: list[str], output_dir: Path, message: str) -> None:
    """``alcv *overrides`` into ``output_dir`` is refused with ``message`` (a literal part of it), and nothing
    that was in the folder changes."""
    before = digests(output_dir) if output_dir.exists() else None
    cfg = compose_config(*TINY, "logger=none", *overrides, output_dir=output_dir)
    with pytest.raises(ValueError, match=re.escape(message)):
        run(cfg)
    if before is None:
        assert not output_dir.exists() or not any(output_dir.iterdir()), "a refused run wrote files"
    else:
        assert digests(output_dir) == before


# pattern 1: a value of the wrong type names its key, the value and the type it must have
WRONG_TYPES = [
    ("loop.query_size=abc", "loop.query_size='abc': expected a number, got text"),
    ("seed=abc", "seed='abc': expected a whole number, got text"),
    ("loop.cost.frame=abc", "loop.cost.frame='abc': expected a number, got text"),
    ("aggregation.class_weights={golf_cart: heavy}",
     "aggregation.class_weights={'golf_cart': 'heavy'}: expected a mapping of text to a number or null"),
    ("aggregation.class_weights=[golf_cart]", "aggregation.class_weights=['golf_cart']: expected a mapping"),
    ("loop.num_loops=2.5", "loop.num_loops=2.5: expected a whole number, got a fractional number"),
    ("loop.query_size=2.5", "loop.query_size=2.5: a budget in frames (loop.budget_unit=frames) is a whole number"),
    ("data.batch_size=2.5", "data.batch_size=2.5: expected a whole number, got a fractional number"),
    ("loop.spread.max_per_drive=two", "loop.spread.max_per_drive='two': expected a whole number or null, got text"),
    ("loop.pool_truth=maybe", "loop.pool_truth='maybe': expected true or false, got text"),
    ("aggregation.how=median", "aggregation.how='median': expected one of 'max', 'mean', 'sum'"),
    ("trainer.max_epochs=abc", "trainer.max_epochs='abc': expected a whole number or null, got text"),
    ("model.optimizer.lr=abc", "model.optimizer.lr='abc': expected a number or Tensor, got text"),
    ("data.dataset.world.pool_frames=many", "data.dataset.world.pool_frames='many': expected a whole number"),
    ("model.detector.grid.cell_size=fine", "model.detector.grid.cell_size='fine': expected a number, got text"),
    ("+loop.bogus=1", "loop.bogus is not a setting of loop (its settings: budget_unit, cost,"),
    ("+data.dataset.bogus=1", "data.dataset.bogus is not a setting of alcv.data.lidar_dataset.SyntheticLidarDataset"),
]


@pytest.mark.parametrize(("override", "message"), WRONG_TYPES, ids=[case for case, _ in WRONG_TYPES])
def test_a_wrong_type_is_refused_by_key_before_the_run_folder_is_touched(earlier_run: Path, override: str,
                                                                        message: str) -> None:
    refuse([override], earlier_run, message)


@pytest.mark.parametrize(("override", "message"), WRONG_TYPES[:4], ids=[case for case, _ in WRONG_TYPES[:4]])
def test_a_wrong_type_leaves_a_new_folder_empty(tmp_path: Path, override: str, message: str) -> None:
    refuse([override], tmp_path / "new", message)


@pytest.mark.parametrize(("value", "hint", "expected"), [
    (3, int, True), (3.0, int, False), (True, int, False), (3, float, True), ("3", float, False),
    (None, int | None, True), ([1, 2.5], list[float], True), ([1, "a"], list[float], False),
    ([1.0, 2.0], tuple[float, float], True), ([1.0], tuple[float, float], False),
    ({"a": 1}, dict[str, float], True), ({"a": "b"}, dict[str, float], False), ("/data", Path, True),
    (3, Path, False), ({"_target_": "x"}, Path, True),
])
def test_a_value_fits_its_hint_element_by_element(value: object, hint: object, expected: bool) -> None:
    assert fits(value, hint) is expected, describe(hint)


# pattern 2: what only Lightning or torch would refuse is built once before anything is written
REFUSED_WHEN_BUILT = [
    ("trainer.max_epochs=-5", "trainer.max_epochs=-5 with trainer.max_steps=-1: every loop must train and stop"),
    ("+trainer.gradient_clip_algorithm=sideways",
     "trainer: the Trainer refused these settings: `gradient_clip_algorithm` sideways is invalid"),
    ("trainer.devices=0", "trainer: the Trainer refused these settings: `Trainer(devices=0)` value is not a valid"),
    ("trainer.max_epochs=0", "trainer.max_epochs=0 with trainer.max_steps=-1: every loop must train and stop"),
    ("trainer.max_epochs=-1", "trainer.max_epochs=-1 with trainer.max_steps=-1: every loop must train and stop"),
    ("model.optimizer.lr=-1", "model.optimizer: AdamW(lr=-1, weight_decay=0.0001) refused: Invalid learning rate"),
    ("model.scheduler.pct_start=2", "model.scheduler: OneCycleLR(max_lr=0.01, pct_start=2) refused"),
]


@pytest.mark.parametrize(("override", "message"), REFUSED_WHEN_BUILT, ids=[case for case, _ in REFUSED_WHEN_BUILT])
def test_trainer_and_optimiser_settings_are_refused_before_anything_is_written(tmp_path: Path, override: str,
                                                                               message: str) -> None:
    """(In the folder of an earlier run, the changed setting is refused first as a changed config.)"""
    refuse([override], tmp_path / "new", message)


def test_the_corrected_command_runs_in_the_folder_of_a_refused_one(tmp_path: Path) -> None:
    """The refused attempt leaves nothing that would make the corrected one a changed config."""
    out = tmp_path / "run"
    refuse(["model.optimizer.lr=-1"], out, "Invalid learning rate")
    records = run(compose_config(*TINY, "logger=none", output_dir=out))
    assert [record["loop"] for record in records] == [0, 1] and (out / RUN_FILE).exists()


# pattern 9: the number of loops is checked before the folder is read
@pytest.mark.parametrize("loops", ["0", "-1"])
def test_no_loops_is_refused_before_the_folder_is_read(tmp_path: Path, earlier_run: Path, loops: str) -> None:
    refuse([f"loop.num_loops={loops}"], tmp_path / "new", f"loop.num_loops must be >= 1, got {loops}")
    refuse([f"loop.num_loops={loops}"], earlier_run, f"loop.num_loops must be >= 1, got {loops}")


# pattern 8: an experiment that fits some data only says which
@pytest.mark.parametrize("data", ["kitti", "coco", "synthetic_camera"])
def test_an_experiment_with_data_it_does_not_fit_names_the_data_it_fits(tmp_path: Path, data: str) -> None:
    refuse([f"data={data}", "experiment=smoke"], tmp_path / "new",
           "experiment=smoke sets data settings that only data=synthetic_lidar, synthetic_lidar_article, "
           "synthetic_lidar_small have")


def test_export_with_an_experiment_that_does_not_fit_names_the_data_it_fits(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        export_main(["coco", str(tmp_path / "out"), "experiment=smoke"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "data.dataset.world.pool_frames is not a setting of alcv.data.synthetic_camera.SyntheticCameraWorld" \
        in error and "experiment=smoke sets data settings that only data=synthetic_lidar" in error
    assert not (tmp_path / "out").exists()


# pattern 3: results files are checked field by field where a run resumes or a report reads them
def _edit_line(path: Path, number: int, **fields: object) -> None:
    lines = path.read_text().splitlines(keepends=True)
    record = json.loads(lines[number - 1])
    record.update(fields)
    lines[number - 1] = json.dumps(record) + "\n"
    path.write_text("".join(lines))


@pytest.mark.parametrize(("line", "fields", "message"), [
    (2, {"map": "high"}, "results.jsonl:2: field 'map' must be a number, got 'high'"),
    (1, {"n_labeled_frames": "10"}, "results.jsonl:1: field 'n_labeled_frames' must be a whole number, got '10'"),
    (2, {"ap_per_class": {"vehicle": "good"}}, "results.jsonl:2: field 'ap_per_class' must be a mapping of text to"),
    (1, {"timings": [1, 2]}, "results.jsonl:1: field 'timings' must be a mapping of text to a number, got [1, 2]"),
])
def test_a_results_field_of_the_wrong_type_is_refused_on_resume_by_file_line_and_field(
        earlier_run: Path, line: int, fields: dict[str, object], message: str) -> None:
    _edit_line(earlier_run / RESULTS_FILE, line, **fields)
    refuse([], earlier_run, message)


def test_a_selections_field_of_the_wrong_type_is_refused_on_resume(earlier_run: Path) -> None:
    _edit_line(earlier_run / "selections.jsonl", 2, indices="1,2,3")
    refuse([], earlier_run, "selections.jsonl:2: field 'indices' must be a list of whole numbers, got '1,2,3'")


def test_a_saved_pool_with_frames_outside_the_pool_split_is_refused_on_resume(earlier_run: Path) -> None:
    as_if_killed_during(earlier_run, 1)  # a finished run started again only prints its summary
    path = earlier_run / "label_pool.json"
    state = json.loads(path.read_text())
    state["indices"][0] = 10_000
    path.write_text(json.dumps(state))
    refuse([], earlier_run, f"{path}: field 'indices' is not the pool split of data 'synthetic_lidar': 1 of its "
                            "frames are not in the split (e.g. [10000])")


@pytest.mark.parametrize("version", ["../elsewhere", "a b", True, -1, [1]])
def test_a_logger_version_that_is_not_a_run_id_is_refused_on_resume(earlier_run: Path, version: object) -> None:
    path = earlier_run / RUN_FILE
    saved = json.loads(path.read_text())
    path.write_text(json.dumps({**saved, "logger_version": version}))
    refuse([], earlier_run, f"{path}: field 'logger_version' is {version!r}; expected null, a whole number >= 0 or "
                            "a run id")


def test_a_report_skips_a_results_line_of_the_wrong_type_with_a_note(
        earlier_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _edit_line(earlier_run / RESULTS_FILE, 2, map="high")
    assert report_main([str(earlier_run), "--out", str(tmp_path / "report")]) == 0
    assert f"note: {earlier_run / RESULTS_FILE}:2: skipped, field 'map' must be a number, got 'high'" \
        in capsys.readouterr().err
    assert load_study([earlier_run]).records["loop"].tolist() == [0]


def test_more_completed_loops_than_the_run_has_is_refused(earlier_run: Path) -> None:
    results = earlier_run / RESULTS_FILE
    last = json.loads(results.read_text().splitlines()[-1])
    with results.open("a") as handle:
        handle.write(json.dumps({**last, "loop": 2}) + "\n")
    refuse([], earlier_run, "holds 3 completed loops but loop.num_loops is 2")


# pattern 7: report options and studies that would count one run twice
@pytest.mark.parametrize("levels", [["0"], ["0.9", "1.5"], ["-0.5"]])
def test_report_levels_outside_zero_to_one_are_refused(finished_run: Path, tmp_path: Path, levels: list[str],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        report_main([str(finished_run), "--out", str(tmp_path / "report"), "--levels", *levels])
    assert exit_info.value.code == 2 and "expected fractions of the full-data mAP in (0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "report").exists()


def test_two_copies_of_one_run_count_as_one_seed_with_a_note(finished_run: Path, tmp_path: Path) -> None:
    for copy in ("a", "b"):
        shutil.copytree(finished_run, tmp_path / "study" / copy)
    study = load_study([tmp_path / "study"])
    assert study.records["run"].unique().tolist() == [str(tmp_path / "study" / "a")]
    assert any("the report keeps" in note and str(tmp_path / "study" / "b") in note for note in study.notes)


# patterns 5 and 10: names that build paths, and paths that are files
@pytest.mark.parametrize("name", ["../../escape", "a/b", "..", ".", "", "a\\b"])
def test_a_name_that_builds_a_path_must_be_a_plain_name(name: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"experiment_name={name!r}: expected a plain name")):
        plain_name(name)
    assert plain_name("al_vs-random.2") == "al_vs-random.2"


@pytest.mark.parametrize("folder", ["hydra.run.dir", "hydra.sweep.dir"])
def test_the_run_folder_hydra_makes_refuses_an_experiment_name_that_is_not_a_plain_name(tmp_path: Path,
                                                                                         folder: str) -> None:
    """Hydra resolves the folder before it makes it, and the resolver refuses the name (the message Hydra then
    prints): nothing is made outside ``outputs/``."""
    cfg = compose_config("experiment_name=../../escape", output_dir=tmp_path / "unused", keep_hydra=True)
    with pytest.raises(Exception, match=re.escape("experiment_name='../../escape': expected a plain name")):
        OmegaConf.select(cfg, folder, throw_on_resolution_failure=True)
    assert OmegaConf.select(compose_config(output_dir=tmp_path / "unused", keep_hydra=True), folder).startswith(
        ("outputs/default/", "multirun/default/"))


def test_a_run_folder_that_is_a_file_is_refused_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "taken"
    file.write_text("mine")
    monkeypatch.setattr(sys, "argv", ["alcv", *TINY, f"hydra.run.dir={file}/run"])
    with pytest.raises(SystemExit) as exit_info:
        cli_main()
    assert exit_info.value.code == (f"alcv: hydra.run.dir={file}/run: {file} is a file, so the run's folder cannot "
                                    "be made there; expected a folder (a new one, or that of an earlier run to "
                                    "resume)")
    assert file.read_text() == "mine"
    assert folder_in_the_way([f"+hydra.sweep.dir={file}", "seed=1"]).startswith(f"hydra.sweep.dir={file}: ")
    assert folder_in_the_way([f"hydra.run.dir={tmp_path}/new", "hydra.run.dir=${now:x}"]) is None


def test_a_report_out_that_is_a_file_is_refused(finished_run: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "report.md"
    file.write_text("mine")
    with pytest.raises(SystemExit) as exit_info:
        report_main([str(finished_run), "--out", str(file)])
    assert exit_info.value.code == 2 and f"--out {file}: {file} is a file" in capsys.readouterr().err
    assert file.read_text() == "mine"


# pattern 4: nothing foreign is overwritten, and a refused attempt leaves the record of the earlier ones
@pytest.mark.parametrize("name", ["label_pool.json", "selections.jsonl", "results.jsonl", "model_weights.pt",
                                  "loop_000"])
def test_a_folder_with_a_run_file_but_no_run_json_is_refused_untouched(finished_run: Path, tmp_path: Path,
                                                                       name: str) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    source = finished_run / name
    if source.is_dir():
        shutil.copytree(source, foreign / name)
    elif source.exists():
        shutil.copy(source, foreign / name)
    else:
        (foreign / name).write_bytes(b"someone else's")
    before = digests(foreign)
    cfg = compose_config(*TINY, "logger=none", output_dir=foreign)
    with pytest.raises(FileExistsError, match=re.escape(f"{foreign / name} already exists but")):
        run(cfg)
    assert digests(foreign) == before


def test_a_refused_resume_keeps_the_hydra_record_of_the_run(finished_run: Path, tmp_path: Path) -> None:
    """Hydra writes each attempt's record into a folder of its own, so a refused attempt replaces neither the
    run's files nor an earlier record (here one in the layout of older versions, ``.hydra/config.yaml``)."""
    out = Path(shutil.copytree(finished_run, tmp_path / "run"))
    (out / ".hydra").mkdir()
    (out / ".hydra" / "config.yaml").write_text("seed: 0\n")
    before = digests(out)
    refused = run_cli(*TINY, "logger=none", "seed=1", f"hydra.run.dir={out}", cwd=tmp_path)
    assert refused.returncode == 1 and "changed: seed: 0 -> 1" in refused.stderr
    assert {name: digest for name, digest in digests(out).items() if name in before} == before
    attempts = [path for path in (out / ".hydra").iterdir() if path.is_dir()]
    assert len(attempts) == 1 and "seed=1" in (attempts[0] / "overrides.yaml").read_text()


# pattern 6: data values, not only structure, are refused before a run writes anything
@pytest.fixture(scope="module")
def kitti_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """TINY's world exported in KITTI layout, and the overrides that read it."""
    world = [override for override in TINY if override.startswith("data.dataset.world")]
    lidar = hydra.utils.instantiate(compose_config(*world, output_dir=Path("unused")).data.dataset)
    written = export_kitti(lidar, tmp_path_factory.mktemp("kitti") / "kitti")
    return Path(written["root"]), kitti_overrides(written)


def _zero_length(root: Path) -> tuple[Path, str]:
    label = next(path for path in sorted((root / "label_2").glob("*.txt")) if path.read_text().strip())
    fields = label.read_text().splitlines()[0].split()
    fields[10] = "0"  # l, of h w l
    label.write_text(" ".join(fields) + "\n" + "\n".join(label.read_text().splitlines()[1:]) + "\n")
    return label, "line 1: dimensions h="


def _scaled_rotation(root: Path) -> tuple[Path, str]:
    calib = sorted((root / "calib").glob("*.txt"))[0]
    lines = [line if not line.startswith("R0_rect") else "R0_rect: 2 0 0 0 1 0 0 0 1"
             for line in calib.read_text().splitlines()]
    calib.write_text("\n".join(lines) + "\n")
    return calib, "the rotation of R0_rect is not a rotation"


@pytest.mark.parametrize("spoil", [_zero_length, _scaled_rotation])
def test_kitti_values_that_cannot_be_are_refused_before_the_run_writes(
        kitti_folder: tuple[Path, list[str]], tmp_path: Path, spoil: Callable[[Path], tuple[Path, str]]) -> None:
    root, overrides = kitti_folder
    data = Path(shutil.copytree(root, tmp_path / "kitti"))
    file, message = spoil(data)
    before = digests(data)
    reading = [override.replace(str(root), str(data)) for override in overrides]
    out = tmp_path / "run"
    cfg = compose_config("data=kitti", *reading, *(o for o in TINY if not o.startswith("data.dataset.world")),
                         "logger=none", output_dir=out)
    with pytest.raises(Exception, match=re.escape(f"{file}") + ".*" + re.escape(message)):  # Hydra wraps it
        run(cfg)
    assert digests(data) == before and (not out.exists() or not any(out.iterdir()))
