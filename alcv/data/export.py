"""Export a dataset to a standard on-disk layout, so that real-data loaders can be exercised on whole datasets
and users can see the format their own data needs.

``alcv-export coco OUT [overrides ...]`` writes the camera dataset of the composed config (by default the
embedded synthetic camera world: ``data=synthetic_camera``) in COCO layout, one folder per split::

    OUT/pool/images/000001.png ... OUT/pool/instances.json
    OUT/val/...  OUT/test/...

``alcv-export kitti OUT [overrides ...]`` writes the LiDAR dataset of the composed config (by default the
synthetic LiDAR world: ``data=synthetic_lidar``) in KITTI layout (:func:`write_kitti`):
``OUT/velodyne``, ``OUT/label_2``, ``OUT/calib``, ``OUT/ImageSets/{pool,val,test}.txt`` and ``OUT/drives.txt``.

``alcv-export nuscenes OUT [overrides ...]`` writes the LiDAR dataset (by default ``data=synthetic_lidar``) in
nuScenes layout (:func:`~alcv.data.nuscenes_writer.write_nuscenes`): ``OUT/<version>/*.json``,
``OUT/samples/LIDAR_TOP/*.pcd.bin`` and ``OUT/maps``, with the devkit's official scene names.

Each prints the ``alcv data=coco ...`` / ``data=kitti ...`` / ``data=nuscenes ...`` command that reads the export
back, and never writes into a folder that already holds something.

``--labeled-pool N`` (coco and kitti) keeps the labels of ``N`` pool frames drawn at random (``--labeled-seed S``,
default 0) and writes the other pool frames unlabeled: KITTI frames without a label file, COCO images flagged
``"unlabeled": true`` without annotations, for a labeling round to label (see :mod:`alcv.data.kitti` and
:mod:`alcv.data.coco`). Val and test keep their labels. A dataset's own unlabeled frames stay unlabeled in every
export to these formats.

``alcv-export nuscenes-results RUN_DIR [--loop N] [--out FILE]`` writes the test-split detections of a loop of a
``data=nuscenes`` run in the devkit's results format (:func:`export_nuscenes_results`) and prints the devkit's
command that scores them.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from PIL import Image

from alcv.config import CONFIG_DIR, register_resolvers
from alcv.data.datamodule import SplitDataset
from alcv.data.kitti import (
    KITTI_NAME,
    KittiCalibration,
    kitti_calibration_text,
    kitti_label_text,
    kitti_like_calibration,
)
from alcv.data.nuscenes import NuScenesDataset
from alcv.data.nuscenes_writer import nuscenes_results, write_nuscenes
from alcv.data.splits import SPLITS
from alcv.run_files import RUN_FILE, WEIGHTS_FILE, RunFiles, loop_folder, read_run_config
from alcv.run_records import RESULTS_FILE, read_results
from alcv.safe_io import refuse_non_empty, write_text_atomically
from alcv.settings import check_settings, experiment_choice

__all__ = [
    "KITTI_TYPES",
    "NUSCENES_RESULTS_FILE",
    "coco_overrides",
    "export_coco",
    "export_kitti",
    "export_nuscenes_results",
    "kitti_overrides",
    "main",
    "nuscenes_overrides",
    "unlabeled_frames",
    "write_kitti",
]

#: KITTI's type names for alcv's synthetic classes (golf carts are not a KITTI type: a custom one)
KITTI_TYPES = {"vehicle": "Car", "pedestrian": "Pedestrian", "golf_cart": "GolfCart"}


def unlabeled_frames(dataset: SplitDataset, split_indices: Mapping[str, np.ndarray], unlabeled: Collection[int],
                     owner: str) -> frozenset[int]:
    """The absolute indices an export writes without labels: ``unlabeled`` and the dataset's own unlabeled frames
    (:meth:`~alcv.data.datamodule.SplitDataset.unlabeled_indices`, whose items have no boxes to write).

    ``split_indices`` are the written splits' absolute indices. Raises ``ValueError`` starting with ``owner`` (the
    writer) for ``unlabeled`` entries that are not ints or not pool frames of the written splits (val and test
    frames need labels).
    """
    requested = np.asarray(list(unlabeled))
    if requested.size and requested.dtype.kind not in "iu":
        raise ValueError(f"{owner}: 'unlabeled' must be absolute pool indices (ints), got {list(unlabeled)[:5]}")
    requested = requested.astype(np.int64)
    outside = np.setdiff1d(requested, split_indices.get("pool", np.zeros(0, np.int64)))
    if outside.size:
        raise ValueError(f"{owner}: 'unlabeled' frame(s) {outside[:5].tolist()} are not pool frames of the written "
                         f"splits; only pool frames may be unlabeled (val and test frames need labels)")
    return frozenset(requested.tolist()) | frozenset(dataset.unlabeled_indices().tolist())


def export_coco(dataset: SplitDataset, out_dir: Path | str, splits: Sequence[str] = SPLITS,
                unlabeled: Collection[int] = ()) -> dict[str, dict[str, str]]:
    """Write the camera ``dataset``'s ``splits`` under ``out_dir`` in COCO instances format.

    Per split ``s``: ``out_dir/s/images/<id>.png`` (lossless, so pixels read back exactly) and
    ``out_dir/s/instances.json`` with

    - ``images``: ``id`` = absolute index + 1 (so ids ascend in absolute order), ``file_name``, ``width``,
      ``height``, ``video_id`` = the item's ``drive_id`` and ``timestamp`` (seconds), and ``"unlabeled": true``
      for the pool frames ``unlabeled`` (absolute indices) and the dataset's own unlabeled frames;
    - ``annotations``: ``bbox`` ``[x, y, w, h]`` pixels from the item's XYXY boxes, ``area`` = w h,
      ``iscrowd`` 0, ``category_id`` = label + 1, ids consecutive from 1 per file; none for unlabeled images;
    - ``categories``: ``{"id": i + 1, "name": class_names[i]}``.

    Splits without frames are skipped. The instances file is written last and atomically, so a folder that has
    one holds every image it lists. Returns the ``splits`` mapping :class:`~alcv.data.coco.CocoDataset` takes.
    Raises ``ValueError`` for a dataset whose items are not images or ``unlabeled`` frames that are not pool
    frames (:func:`unlabeled_frames`), ``FileExistsError`` for a split folder that already holds something
    (nothing is overwritten), before writing anything.
    """
    if getattr(dataset, "modality", None) != "camera":
        raise ValueError(f"export_coco: {type(dataset).__name__} holds {getattr(dataset, 'modality', '?')} frames; "
                         f"COCO export needs camera images (e.g. data=synthetic_camera)")
    out_dir = Path(out_dir).resolve()
    categories = [{"id": label + 1, "name": name} for label, name in enumerate(dataset.class_names)]
    split_indices = {split: dataset.split_indices(split) for split in splits}
    split_indices = {split: indices for split, indices in split_indices.items() if indices.size}
    unlabeled = unlabeled_frames(dataset, split_indices, unlabeled, "export_coco")
    for split in split_indices:  # every refusal comes before anything is written
        refuse_non_empty(out_dir / split)
    written: dict[str, dict[str, str]] = {}
    for split, indices in split_indices.items():
        folder = out_dir / split
        (folder / "images").mkdir(parents=True, exist_ok=True)
        images: list[dict[str, Any]] = []
        annotations: list[dict[str, Any]] = []
        for index in indices.tolist():
            item = dataset[index]
            pixels = item["image"].permute(1, 2, 0).numpy()
            image_id = index + 1
            file_name = f"{image_id:06d}.png"
            Image.fromarray(pixels, "RGB").save(folder / "images" / file_name)
            images.append({"id": image_id, "file_name": file_name, "width": int(pixels.shape[1]),
                           "height": int(pixels.shape[0]), "video_id": int(item["drive_id"]),
                           "timestamp": float(item["timestamp"])})
            if index in unlabeled:
                images[-1]["unlabeled"] = True
                continue
            for (x1, y1, x2, y2), label in zip(item["boxes"].tolist(), item["labels"].tolist(), strict=True):
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": label + 1,
                                    "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                                    "iscrowd": 0})
        instances = folder / "instances.json"
        write_text_atomically(instances, json.dumps({"images": images, "annotations": annotations,
                                                     "categories": categories}))
        written[split] = {"images": str(folder / "images"), "annotations": str(instances)}
    return written


def coco_overrides(splits: dict[str, dict[str, str]], class_names: Sequence[str]) -> list[str]:
    """The Hydra overrides with which ``alcv data=coco`` reads the ``splits`` that :func:`export_coco` wrote."""
    overrides = [f'data.dataset.splits.pool.{key}="{value}"' for key, value in splits["pool"].items()]
    for split in ("val", "test"):
        if split in splits:
            overrides += [f"data.dataset.held_out.{split}=0", f"data.dataset.splits.{split}="
                          f'{{images: "{splits[split]["images"]}", annotations: "{splits[split]["annotations"]}"}}']
    return [*overrides, f"data.dataset.class_names=[{','.join(class_names)}]", "data.dataset.class_map=null"]


def kitti_overrides(written: Mapping[str, Any]) -> list[str]:
    """The Hydra overrides with which ``alcv data=kitti`` reads what :func:`export_kitti` wrote."""
    splits = ", ".join(f"{split}: {stem}" for split, stem in written["splits"].items())
    return [f'data.dataset.root="{written["root"]}"', f"data.dataset.splits={{{splits}}}"]


def nuscenes_overrides(written: Mapping[str, Any]) -> list[str]:
    """The Hydra overrides with which ``alcv data=nuscenes`` reads what
    :func:`~alcv.data.nuscenes_writer.write_nuscenes` wrote."""
    splits = ", ".join(f"{split}: {name}" for split, name in written["splits"].items())
    class_map = ", ".join(f"{name}: [{', '.join(categories)}]" for name, categories in written["class_map"].items())
    return [f'data.dataset.root="{written["root"]}"', f"data.dataset.version={written['version']}",
            f"data.dataset.splits={{{splits}}}", f"data.dataset.class_names=[{','.join(written['class_names'])}]",
            f"data.dataset.class_map={{{class_map}}}"]


def write_kitti(dataset: SplitDataset, root: Path | str, splits: Sequence[str] = SPLITS,
                calib: KittiCalibration | None = None, type_names: Sequence[str] | None = None,
                unlabeled: Collection[int] = ()) -> dict[str, Any]:
    """Write the LiDAR ``dataset``'s ``splits`` under ``root`` in KITTI layout (see :mod:`alcv.data.kitti`).

    Each frame's id is its absolute index, ``%06d``. Written per frame: ``velodyne/<id>.bin`` (the item's points'
    ``x, y, z, intensity``, float32, exactly), ``calib/<id>.txt``
    (:func:`~alcv.data.kitti.kitti_calibration_text` of ``calib``; default
    :func:`~alcv.data.kitti.kitti_like_calibration`, whose non-trivial rotations make a round trip exercise the
    transforms) and ``label_2/<id>.txt`` (:func:`~alcv.data.kitti.kitti_label_text`, with ``type_names``, default
    the class names: every box, also those outside camera 2's view, since the LiDAR sees all around), except
    for the pool frames ``unlabeled`` (absolute indices) and the dataset's own unlabeled frames, which are written
    without a label file (unlabeled, see :mod:`alcv.data.kitti`). Then ``drives.txt`` (the items' ``drive_id`` and
    ``timestamp``) and last, atomically, ``ImageSets/<split>.txt`` for each split with frames, so a split file
    lists only frames fully written.

    Returns the keyword arguments with which :class:`~alcv.data.kitti.KittiDataset` reads it back: ``root``,
    ``class_map`` (each class name -> its type name) and ``splits`` (each written split -> its ImageSets stem, the
    split's name). Raises ``ValueError`` for a dataset whose items are not point clouds, bad ``type_names``, an
    unknown split or ``unlabeled`` frames that are not pool frames (:func:`unlabeled_frames`), and
    ``FileExistsError`` for a ``root`` that already holds something, before writing anything.
    """
    if getattr(dataset, "modality", None) != "lidar":
        raise ValueError(f"write_kitti: {type(dataset).__name__} holds {getattr(dataset, 'modality', '?')} frames; "
                         f"KITTI export needs LiDAR point clouds (e.g. data=synthetic_lidar)")
    class_names = list(dataset.class_names)
    type_names = class_names if type_names is None else list(type_names)
    if len(type_names) != len(class_names) or len(set(type_names)) != len(type_names) \
            or not all(isinstance(name, str) and KITTI_NAME.fullmatch(name) for name in type_names):
        raise ValueError(f"write_kitti: 'type_names' must be {len(class_names)} distinct names of letters, digits, "
                         f"'_' and '-', one for each of {class_names}, got {type_names!r}")
    unknown = [split for split in splits if split not in SPLITS]
    if unknown:
        raise ValueError(f"write_kitti: unknown split(s) {unknown}; expected some of {list(SPLITS)}")
    calib = kitti_like_calibration() if calib is None else calib
    root = Path(root)
    split_indices = {split: dataset.split_indices(split) for split in splits}
    split_indices = {split: indices for split, indices in split_indices.items() if indices.size}
    unlabeled = unlabeled_frames(dataset, split_indices, unlabeled, "write_kitti")
    refuse_non_empty(root)
    for folder in ("velodyne", "label_2", "calib", "ImageSets"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    calib_text = kitti_calibration_text(calib)
    drive_lines: dict[int, str] = {}
    for indices in split_indices.values():
        for index in indices.tolist():
            item = dataset[index]
            frame = f"{index:06d}"
            item["points"].numpy()[:, :4].astype("<f4").tofile(root / "velodyne" / f"{frame}.bin")
            (root / "calib" / f"{frame}.txt").write_text(calib_text, encoding="utf-8")
            if index not in unlabeled:
                label_text = kitti_label_text(item["boxes"].numpy(), item["labels"].numpy(), calib, type_names)
                (root / "label_2" / f"{frame}.txt").write_text(label_text, encoding="utf-8")
            drive_lines[index] = f"{frame} {int(item['drive_id'])} {float(item['timestamp'])!r}\n"
    write_text_atomically(root / "drives.txt", "".join(drive_lines[index] for index in sorted(drive_lines)))
    for split, indices in split_indices.items():
        write_text_atomically(root / "ImageSets" / f"{split}.txt",
                              "".join(f"{index:06d}\n" for index in indices.tolist()))
    class_map = {name: [type_name] for name, type_name in zip(class_names, type_names, strict=True)}
    return {"root": str(root), "class_map": class_map, "splits": {split: split for split in split_indices}}


def export_kitti(dataset: SplitDataset, out_dir: Path | str, unlabeled: Collection[int] = ()) -> dict[str, Any]:
    """Write the LiDAR ``dataset`` under ``out_dir`` in KITTI layout (:func:`write_kitti`, the pool frames
    ``unlabeled`` without labels), with KITTI's type names for alcv's classes (:data:`KITTI_TYPES`), so
    ``data=kitti``'s class map reads it as is."""
    type_names = [KITTI_TYPES.get(name, name) for name in dataset.class_names]
    return write_kitti(dataset, Path(out_dir).resolve(), type_names=type_names, unlabeled=unlabeled)


#: the file :func:`export_nuscenes_results` writes in a loop's folder by default
NUSCENES_RESULTS_FILE = "nuscenes_results.json"


def export_nuscenes_results(run_dir: Path | str, loop: int | None = None, out: Path | str | None = None) -> Path:
    """Write the test-split detections of loop ``loop`` (default: the last completed one) of the nuScenes run in
    ``run_dir`` in the devkit's results format (:func:`~alcv.data.nuscenes_writer.nuscenes_results`), for
    ``nuscenes.eval.detection.evaluate``; returns the file, ``out`` or ``run_dir/loop_NNN/nuscenes_results.json``.

    The run's own config (``run.json``) builds the data and the model, which gets the loop's saved weights: the
    run must have kept them (``loop.keep_weights=true``). Raises ``FileNotFoundError`` for a folder that is no run
    or a loop without weights, and ``ValueError`` for a run on other data or a loop that did not complete.
    """
    run_dir = Path(run_dir)
    cfg = OmegaConf.create(read_run_config(run_dir))
    if cfg.data.dataset.get("_target_") != f"{NuScenesDataset.__module__}.{NuScenesDataset.__name__}":
        raise ValueError(f"{run_dir / RUN_FILE}: the run read {cfg.data.dataset.get('_target_')}, not nuScenes data "
                         "(data=nuscenes)")
    completed = len(read_results(run_dir))
    loop = completed - 1 if loop is None else loop
    if not 0 <= loop < completed:
        raise ValueError(f"{run_dir / RESULTS_FILE}: loop {loop} did not complete (the run completed {completed})")
    weights = run_dir / loop_folder(loop) / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: not found; a run keeps every loop's weights with loop.keep_weights=true")
    datamodule = hydra.utils.instantiate(cfg.data)
    model = hydra.utils.instantiate(cfg.model)
    RunFiles(run_dir).load_weights(loop, model)
    model.eval()
    with torch.inference_mode():
        detections = [frame.cpu() for batch in datamodule.test_dataloader() for frame in model.predict_step(batch, 0)]
    path = Path(out) if out is not None else run_dir / loop_folder(loop) / NUSCENES_RESULTS_FILE
    write_text_atomically(path, json.dumps(nuscenes_results(datamodule.dataset, detections)))
    return path


def _results_main(argv: Sequence[str]) -> None:
    """``alcv-export nuscenes-results RUN_DIR [--loop N] [--out FILE]``."""
    parser = argparse.ArgumentParser(
        prog="alcv-export nuscenes-results", description="Write a nuScenes run's test-split detections of one loop "
        "in the devkit's results format (the run must have kept its weights: loop.keep_weights=true).")
    parser.add_argument("run_dir", type=Path, help="the run's output folder")
    parser.add_argument("--loop", type=int, default=None, help="the loop (default: the last completed one)")
    parser.add_argument("--out", type=Path, default=None, help="the results file (default: in the loop's folder)")
    args = parser.parse_args(argv)
    try:
        path = export_nuscenes_results(args.run_dir, args.loop, args.out)
    except (ValueError, FileNotFoundError) as error:
        parser.exit(2, f"alcv-export: {error}\n")
    dataset = OmegaConf.create(read_run_config(args.run_dir)).data.dataset
    print(f"written to {path}; score it with the devkit (eval_set: the devkit's split of the test scenes, e.g. "
          f"mini_val or val):\n  python -m nuscenes.eval.detection.evaluate --result_path {shlex.quote(str(path))} "
          f"--output_dir {shlex.quote(str(path.parent / 'nuscenes_eval'))} --dataroot "
          f"{shlex.quote(str(dataset.root))} --version {dataset.version} --eval_set <split>")


#: what each format writes, the data config it is read back with, and the data it exports by default
_FORMATS = {"coco": ("data=synthetic_camera", "data=coco model=fcos_tiny"),
            "kitti": ("data=synthetic_lidar", "data=kitti"),
            "nuscenes": ("data=synthetic_lidar", "data=nuscenes")}


def _drawn_unlabeled(dataset: SplitDataset, labeled_pool: int | None, seed: int) -> list[int]:
    """The pool frames to write unlabeled: with ``labeled_pool`` (``--labeled-pool``) all but that many of the
    pool frames with labels, drawn by ``np.random.default_rng(seed)``, in ascending order; without it the
    dataset's own unlabeled frames. Raises ``ValueError`` for a ``labeled_pool`` outside [1, pool frames with
    labels]."""
    own = dataset.unlabeled_indices()
    if labeled_pool is None:
        return own.tolist()
    pool = dataset.split_indices("pool")
    candidates = np.setdiff1d(pool, own)
    if not 1 <= labeled_pool <= candidates.size:
        raise ValueError(f"--labeled-pool {labeled_pool}: expected a number of pool frames in [1, "
                         f"{candidates.size}] (the pool frames with labels)")
    labeled = np.random.default_rng(seed).choice(candidates, size=labeled_pool, replace=False)
    return np.setdiff1d(pool, labeled).tolist()


def main(argv: Sequence[str] | None = None) -> None:
    """``alcv-export {coco,kitti,nuscenes} OUT [overrides ...]``: export the configured dataset (see the module
    docstring)."""
    parser = argparse.ArgumentParser(
        prog="alcv-export", description="Write the dataset of the alcv config (after Hydra overrides such as "
        "data.dataset.world.pool_frames=200) to a standard layout: COCO for camera data (default "
        "data=synthetic_camera), KITTI or nuScenes for LiDAR data (default data=synthetic_lidar).")
    parser.add_argument("format", choices=sorted(_FORMATS), help="the layout to write (or nuscenes-results RUN_DIR: a "
                        "nuScenes run's detections in the devkit's results format, see alcv-export nuscenes-results "
                        "--help)")
    parser.add_argument("out", type=Path, help="a new (or empty) output folder")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the alcv config")
    parser.add_argument("--labeled-pool", type=int, default=None, metavar="N",
                        help="coco and kitti: keep the labels of N pool frames drawn at random and write the other "
                        "pool frames unlabeled, for labeling rounds (default: every frame keeps its labels)")
    parser.add_argument("--labeled-seed", type=int, default=0, metavar="S",
                        help="the seed of the --labeled-pool draw (numpy's default_rng; default 0)")
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["nuscenes-results"]:
        _results_main(argv[1:])
        return
    args = parser.parse_intermixed_args(argv)
    if args.labeled_pool is not None and args.format not in ("coco", "kitti"):
        parser.exit(2, f"alcv-export: --labeled-pool is for coco and kitti exports, not {args.format}\n")
    default_data, read_back = _FORMATS[args.format]
    overrides = list(args.overrides)
    if not any(override.startswith("data=") for override in overrides):
        overrides.insert(0, default_data)
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    try:
        check_settings({"data": OmegaConf.to_container(cfg.data, resolve=True)},
                       experiment_choice(cfg.hydra.runtime.choices))
    except ValueError as error:
        parser.exit(2, f"alcv-export: {error}\n")
    dataset = hydra.utils.instantiate(cfg.data.dataset)
    try:
        unlabeled = _drawn_unlabeled(dataset, args.labeled_pool, args.labeled_seed)
        if unlabeled and args.format == "nuscenes":
            raise ValueError(f"{len(unlabeled)} pool frame(s) of the dataset have no labels; the nuScenes export "
                             f"has no unlabeled samples (it would write them as holding no objects)")
        if args.format == "coco":
            written = export_coco(dataset, args.out, unlabeled=unlabeled)
            read_overrides = coco_overrides(written, dataset.class_names)
        elif args.format == "kitti":
            read_overrides = kitti_overrides(export_kitti(dataset, args.out, unlabeled=unlabeled))
        else:
            read_overrides = nuscenes_overrides(write_nuscenes(dataset, args.out.resolve()))
    except (ValueError, FileExistsError, ImportError) as error:
        parser.exit(2, f"alcv-export: {error}\n")
    for split in SPLITS:
        print(f"{split}: {len(dataset.split_indices(split))} frames"
              f"{f' ({len(unlabeled)} unlabeled: written without labels)' if split == 'pool' and unlabeled else ''}")
    command = " ".join(shlex.quote(override) for override in read_overrides)
    print(f"written to {args.out.resolve()}; read it back with:\n  alcv {read_back} {command}")


if __name__ == "__main__":
    main()
