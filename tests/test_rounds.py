"""Real labeling rounds end to end on exported synthetic worlds: alcv-round selects unlabeled frames and writes them
out with the model's boxes, alcv-label import brings labels back into the data, and the next round trains on them."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import hydra
import numpy as np
import pytest
from conftest import TINY, TINY_CAMERA_WORLD, compose_config
from omegaconf import DictConfig

from alcv.data.export import coco_overrides, kitti_overrides
from alcv.data.export import main as export_main
from alcv.data.kitti import KittiDataset
from alcv.labeling.cli import main as label_main
from alcv.loop import run
from alcv.rounds import LABELED_FRAMES_FILE, SELECTION_FILE, SUMMARY_FILE, run_round
from alcv.run_records import RESULTS_FILE, read_results

TINY_WORLD = [override for override in TINY if override.startswith("data.dataset.world")]
TINY_TRAINING = [override for override in TINY if not override.startswith(("data.dataset.world", "loop."))]
KITTI_SPLITS = {"pool": "pool", "val": "val", "test": "test"}


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path, with its bytes."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def kitti_worlds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tiny synthetic world as KITTI twice: with every label (the truth annotators would give), and with
    labels for 10 pool frames only."""
    folder = tmp_path_factory.mktemp("kitti_worlds")
    export_main(["kitti", str(folder / "truth"), *TINY_WORLD])
    export_main(["kitti", str(folder / "partial"), "--labeled-pool", "10", *TINY_WORLD])
    return folder / "truth", folder / "partial"


def _kitti_round(root: Path, rounds: Path, *overrides: str) -> DictConfig:
    return compose_config("data=kitti", *kitti_overrides({"root": str(root), "splits": KITTI_SPLITS}),
                          *TINY_TRAINING, "logger=none", "data.num_workers=0", "loop.query_size=5",
                          "round.min_score=0.05", f"round.dir={rounds}", *overrides, output_dir=rounds,
                          config_name="round")


def test_a_kitti_round_trip_selects_writes_out_imports_and_trains_the_next_round(
        kitti_worlds: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    truth, partial = kitti_worlds
    root = tmp_path / "kitti"
    shutil.copytree(partial, root)
    rounds = tmp_path / "rounds"
    cfg = _kitti_round(root, rounds)
    dataset = hydra.utils.instantiate(cfg.data.dataset)
    assert dataset.unlabeled_indices().size == dataset.split_indices("pool").size - 10

    summary = run_round(cfg)
    assert summary is not None and summary["round"] == 0
    assert (summary["labeled_frames"], summary["new_frames"], summary["selected"]) == (10, 10, 5)
    assert summary["unlabeled_frames"] == dataset.unlabeled_indices().size
    assert set(summary["timings"]) == {"train", "test", "pool_inference", "selection", "export"}
    printed = capsys.readouterr().out
    assert "round 0: trained on 10 labeled frames" in printed and "seconds: train" in printed
    assert json.loads((rounds / "round_000" / SUMMARY_FILE).read_text())["selected"] == 5

    # the selection: unlabeled frames, best first, with the model's boxes scored at least round.min_score
    selection = json.loads((rounds / "round_000" / SELECTION_FILE).read_text())
    names = [frame["frame"] for frame in selection["frames"]]
    unlabeled = {dataset.frame_name(index) for index in dataset.unlabeled_indices().tolist()}
    assert len(names) == 5 and set(names) <= unlabeled
    scores = [frame["score"] for frame in selection["frames"]]
    assert scores == sorted(scores, reverse=True)
    assert all(min(frame["scores"], default=1.0) >= 0.05 for frame in selection["frames"])

    # the pre-annotations: a KITTI folder of the selected frames, whose label files hold those boxes and scores
    written = rounds / "round_000" / "kitti"
    assert (written / "ImageSets" / "selected.txt").read_text().split() == names
    for frame in selection["frames"]:
        name = frame["frame"]
        assert (written / "velodyne" / f"{name}.bin").read_bytes() == (root / "velodyne" / f"{name}.bin").read_bytes()
        lines = (written / "label_2" / f"{name}.txt").read_text().splitlines()
        assert [float(line.split()[15]) for line in lines] == pytest.approx(frame["scores"], abs=1e-4)
    pre_annotated = KittiDataset(written, class_map=dataset_class_map(cfg), splits={"pool": "selected"},
                                 held_out={"test": 0.2}, drop_types=[])
    assert sorted(pre_annotated.frame_name(i) for i in range(len(pre_annotated))) == sorted(names)

    # run again before the labels came back: nothing changes, and it says so
    before = _files(rounds)
    assert run_round(cfg) is None
    assert "nothing was changed" in capsys.readouterr().out
    assert _files(rounds) == before

    # labels of a frame the round did not select are refused, and the data folder is left as it was
    stray = tmp_path / "stray"
    stray.mkdir()
    outsider = sorted(unlabeled - set(names))[0]
    shutil.copy(truth / "label_2" / f"{outsider}.txt", stray / f"{outsider}.txt")
    data_before = _files(root)
    with pytest.raises(SystemExit) as refused:
        label_main(["import", str(rounds / "round_000"), "--labels", str(stray)])
    assert refused.value.code == 2
    assert outsider in capsys.readouterr().err
    assert _files(root) == data_before

    # an annotator labels four of the five (one with a box removed); the fifth is reported missing
    edited = tmp_path / "edited" / "label_2"
    edited.mkdir(parents=True)
    for name in names[:4]:
        shutil.copy(truth / "label_2" / f"{name}.txt", edited / f"{name}.txt")
    first = edited / f"{names[0]}.txt"
    first.write_text("".join(first.read_text().splitlines(keepends=True)[1:]))
    label_main(["import", str(rounds / "round_000"), "--labels", str(edited.parent)])
    printed = capsys.readouterr().out
    assert "wrote the labels of 4 of 5 selected frames" in printed and names[4] in printed
    for name in names[:4]:
        assert (root / "label_2" / f"{name}.txt").read_bytes() == (edited / f"{name}.txt").read_bytes()
    imported = [json.loads(line) for line in (rounds / "round_000" / "imported.jsonl").read_text().splitlines()]
    assert imported[-1]["frames"] == sorted(names[:4]) and imported[-1]["missing"] == [names[4]]

    # importing them again would overwrite labels the data has: refused unless asked
    with pytest.raises(SystemExit):
        label_main(["import", str(rounds / "round_000"), "--labels", str(edited.parent)])
    assert "overwrite" in capsys.readouterr().err

    # round 1 waits for the fifth frame, unless told to go on without it; then it trains on the 4 new frames
    assert run_round(cfg) is None
    summary = run_round(_kitti_round(root, rounds, "round.allow_missing=true"))
    assert summary is not None and summary["round"] == 1
    assert (summary["labeled_frames"], summary["new_frames"]) == (14, 4)
    records = read_results(rounds)
    assert [record["loop"] for record in records] == [0, 1]
    labeled = hydra.utils.instantiate(cfg.data.dataset)
    trained_on = [index for index in labeled.split_indices("pool").tolist()
                  if index not in set(labeled.unlabeled_indices().tolist())]
    assert records[1]["n_labeled_boxes"] == sum(labeled.num_boxes(index) for index in trained_on)
    trained_at = json.loads((rounds / LABELED_FRAMES_FILE).read_text())["frames"]
    assert sorted(name for name, at in trained_at.items() if at == 1) == sorted(names[:4])
    assert sum(at == 0 for at in trained_at.values()) == 10
    # round 1 never selects a frame the data has labels for
    chosen = [frame["frame"] for frame in json.loads((rounds / "round_001" / SELECTION_FILE).read_text())["frames"]]
    assert not set(chosen) & set(trained_at)


def dataset_class_map(cfg: DictConfig) -> dict[str, list[str]]:
    """The KITTI class map of a composed config, as plain lists."""
    return {name: list(types) for name, types in cfg.data.dataset.class_map.items()}


def test_a_round_interrupted_before_its_results_line_is_redone_and_its_settings_are_kept(
        kitti_worlds: tuple[Path, Path], tmp_path: Path) -> None:
    _, partial = kitti_worlds
    rounds = tmp_path / "rounds"
    cfg = _kitti_round(partial, rounds)
    first = run_round(cfg)
    selection = (rounds / "round_000" / SELECTION_FILE).read_text()
    (rounds / RESULTS_FILE).write_text("")  # killed after writing the round's folder, before its commit
    assert run_round(cfg)["selected"] == first["selected"]
    assert (rounds / "round_000" / SELECTION_FILE).read_text() == selection  # the same round, redone
    assert len(read_results(rounds)) == 1
    # another model is another series of rounds; a new budget is a setting of the next round
    with pytest.raises(ValueError, match=r"started with another configuration.*model"):
        run_round(_kitti_round(partial, rounds, "model.detector.encoder.channels=8"))
    assert run_round(_kitti_round(partial, rounds, "loop.query_size=3", "round.allow_missing=true")) is not None


def test_frames_trained_on_must_keep_their_labels(kitti_worlds: tuple[Path, Path], tmp_path: Path) -> None:
    _, partial = kitti_worlds
    root, rounds = tmp_path / "kitti", tmp_path / "rounds"
    shutil.copytree(partial, root)
    cfg = _kitti_round(root, rounds)
    run_round(cfg)
    trained = sorted(json.loads((rounds / LABELED_FRAMES_FILE).read_text())["frames"])
    (root / "label_2" / f"{trained[0]}.txt").unlink()
    with pytest.raises(ValueError, match=f"no longer labeled pool frames.*{trained[0]}"):
        run_round(_kitti_round(root, rounds, "round.allow_missing=true"))


def test_a_simulated_run_refuses_a_pool_with_unlabeled_frames(kitti_worlds: tuple[Path, Path],
                                                              compose_cfg: Callable[..., DictConfig]) -> None:
    _, partial = kitti_worlds
    cfg = compose_cfg("data=kitti", *kitti_overrides({"root": str(partial), "splits": KITTI_SPLITS}),
                      *(override for override in TINY if override not in TINY_WORLD), "logger=none",
                      "data.num_workers=0")
    with pytest.raises(ValueError, match=r"pool frames without labels.*alcv-round"):
        run(cfg)


def test_a_coco_round_writes_pre_annotations_and_imports_a_coco_file(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    export_main(["coco", str(tmp_path / "coco"), "--labeled-pool", "12", *TINY_CAMERA_WORLD])
    capsys.readouterr()
    splits = {split: {"images": str(tmp_path / "coco" / split / "images"),
                      "annotations": str(tmp_path / "coco" / split / "instances.json")}
              for split in ("pool", "val", "test")}
    rounds = tmp_path / "rounds"
    classes = ["vehicle", "pedestrian", "golf_cart"]
    cfg = compose_config("data=coco", "model=fcos_tiny", *coco_overrides(splits, classes), *TINY_TRAINING,
                         "logger=none", "data.num_workers=0", "loop.query_size=4",
                         "round.min_score=0.0", f"round.dir={rounds}", output_dir=rounds, config_name="round")
    summary = run_round(cfg)
    assert summary is not None and (summary["labeled_frames"], summary["selected"]) == (12, 4)
    selection = json.loads((rounds / "round_000" / SELECTION_FILE).read_text())
    pre = json.loads((rounds / "round_000" / "pre_annotations.json").read_text())
    assert [image["file_name"] for image in pre["images"]] == [frame["frame"] for frame in selection["frames"]]
    assert [category["name"] for category in pre["categories"]] == ["vehicle", "pedestrian", "golf_cart"]
    assert len(pre["annotations"]) == sum(len(frame["boxes"]) for frame in selection["frames"])
    for frame in selection["frames"]:
        width, height = frame["image_size"]
        assert all(0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height for x1, y1, x2, y2 in frame["boxes"])

    # the annotator accepts the model's boxes of the first two images (but those under 2 pixels), removes those of
    # the third, skips the fourth
    first_two = {image["id"] for image in pre["images"][:2]}
    accepted = [a for a in pre["annotations"] if a["image_id"] in first_two and min(a["bbox"][2:]) >= 2]
    done = {**pre, "images": pre["images"][:3], "annotations": accepted}
    (tmp_path / "done.json").write_text(json.dumps(done))
    label_main(["import", str(rounds / "round_000"), "--labels", str(tmp_path / "done.json")])
    assert "wrote the labels of 3 of 4 selected frames" in capsys.readouterr().out
    dataset = hydra.utils.instantiate(cfg.data.dataset)
    by_name = {dataset.frame_name(index): index for index in dataset.split_indices("pool").tolist()}
    for image, frame in zip(pre["images"][:3], selection["frames"][:3], strict=True):
        index = by_name[frame["frame"]]
        assert index not in set(dataset.unlabeled_indices().tolist())
        boxes = [a["bbox"] for a in accepted if a["image_id"] == image["id"]]
        expected = [[x, y, x + w, y + h] for x, y, w, h in boxes]
        assert np.allclose(dataset[index]["boxes"].numpy().reshape(-1, 4), np.array(expected).reshape(-1, 4),
                           atol=1e-3)
    assert by_name[selection["frames"][3]["frame"]] in set(dataset.unlabeled_indices().tolist())
