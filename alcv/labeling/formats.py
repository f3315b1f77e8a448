"""A labeling round's frames as data of their own, and finished labels back into the data folder, per format.

What a round writes for the annotators (:meth:`LabelFormat.write_pre_annotations`, into ``round_NNN/``):

- **KITTI** (LiDAR; Label Studio has no point-cloud editor, so LiDAR frames travel as files): ``kitti/``, a
  KITTI folder of the selected frames that 3D labeling tools import: ``velodyne/<id>.bin`` and ``calib/<id>.txt``
  (hard links to the data's files where the file system allows, else copies), ``label_2/<id>.txt`` with the
  model's boxes as pre-annotations (KITTI label lines with the score as the 16th field, the type of each class
  the first KITTI type of its ``class_map`` entry) and ``ImageSets/selected.txt``, the frames best first.
- **COCO** (camera): ``pre_annotations.json``, COCO instances of the selected images (their data's ``id``,
  ``file_name``, ``width`` and ``height``) with the model's boxes as annotations (``bbox`` ``[x, y, w, h]``
  pixels and a ``score``), whose categories are alcv's classes (``id`` = label + 1, ``name`` = class name).

What comes back (:meth:`LabelFormat.read_labels`), with ``alcv-label import ROUND_DIR --labels PATH``:

- **KITTI**: a folder of label files ``<id>.txt`` (or a KITTI folder with ``label_2/``), the format of
  :mod:`alcv.data.kitti`; its types must be those of the data's ``class_map`` or ``drop_types``.
- **COCO**: a COCO instances JSON of the labeled images, matched by ``file_name``, whose categories are alcv
  class names (as ``pre_annotations.json``'s); an image listed there is labeled (with no annotation: a frame
  that holds nothing to detect).

Either way the labels are checked and written by the dataset's own writers, which change nothing when they refuse
(:func:`alcv.labeling.rounds.write_round_labels` also refuses frames the round did not select and reports the
selected frames that did not come back).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from alcv.data.coco import CocoDataset, load_instances
from alcv.data.kitti import KittiDataset, kitti_label_text, read_kitti_calibration
from alcv.safe_io import write_text_atomically

#: the pre-annotation folder of a KITTI round and the COCO file of a camera round, in ``round_NNN/``
KITTI_FOLDER = "kitti"
COCO_FILE = "pre_annotations.json"


class LabelFormat(Protocol):
    """How the frames of one kind of data go out to annotators and come back."""

    def frame_file(self, dataset: Any, index: int) -> Path:
        """The frame's own file (a point cloud, an image)."""

    def write_pre_annotations(self, dataset: Any, selection: Mapping[str, Any], folder: Path) -> None:
        """Write the selected frames (a ``selection.json`` document) with the model's boxes into ``folder``."""

    def read_labels(self, dataset: Any, source: Path) -> dict[str, Any]:
        """The labels in ``source`` (a file or folder of this format), by frame name, in the form the dataset's
        ``write_pool_labels`` takes."""


def _link_or_copy(source: Path, target: Path) -> None:
    """``target`` as a hard link to ``source``, or a copy where the file system has no hard links across them."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


class KittiFormat:
    """KITTI LiDAR frames (see the module docstring)."""

    def frame_file(self, dataset: KittiDataset, index: int) -> Path:
        return dataset.velodyne_path(index)

    def write_pre_annotations(self, dataset: KittiDataset, selection: Mapping[str, Any], folder: Path) -> None:
        root, class_names = folder / KITTI_FOLDER, list(selection["class_names"])
        for frame in selection["frames"]:
            name = frame["frame"]
            _link_or_copy(Path(frame["file"]), root / "velodyne" / f"{name}.bin")
            calib_file = dataset.root / "calib" / f"{name}.txt"
            _link_or_copy(calib_file, root / "calib" / f"{name}.txt")
            labels = np.array([class_names.index(label) for label in frame["labels"]], dtype=np.int64)
            lines = kitti_label_text(np.asarray(frame["boxes"], dtype=np.float64).reshape(-1, 7), labels,
                                     read_kitti_calibration(calib_file), dataset.class_types).splitlines()
            write_text_atomically(root / "label_2" / f"{name}.txt", "".join(
                f"{line} {score:.4f}\n" for line, score in zip(lines, frame["scores"], strict=True)))
        write_text_atomically(root / "ImageSets" / "selected.txt",
                              "".join(f"{frame['frame']}\n" for frame in selection["frames"]))

    def read_labels(self, dataset: KittiDataset, source: Path) -> dict[str, str]:
        folder = source / "label_2" if (source / "label_2").is_dir() else source
        if not folder.is_dir():
            raise ValueError(f"{source}: not a folder of KITTI label files (<frame id>.txt, or a KITTI folder with "
                             "label_2/)")
        files = {path.stem: path for path in sorted(folder.glob("*.txt"))}
        return {name: path.read_text(encoding="utf-8") for name, path in files.items()}


class CocoFormat:
    """COCO camera images (see the module docstring)."""

    def frame_file(self, dataset: CocoDataset, index: int) -> Path:
        return dataset.image_path(index)

    def write_pre_annotations(self, dataset: CocoDataset, selection: Mapping[str, Any], folder: Path) -> None:
        class_names = list(selection["class_names"])
        images, annotations = [], []
        for frame in selection["frames"]:
            image_id = dataset.image_id(frame["index"])
            width, height = frame["image_size"]
            images.append({"id": image_id, "file_name": frame["frame"], "width": width, "height": height})
            for (x1, y1, x2, y2), label, score in zip(frame["boxes"], frame["labels"], frame["scores"], strict=True):
                annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                    "category_id": class_names.index(label) + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                                    "area": (x2 - x1) * (y2 - y1), "iscrowd": 0, "score": score})
        categories = [{"id": label + 1, "name": name} for label, name in enumerate(class_names)]
        write_text_atomically(folder / COCO_FILE, json.dumps({"images": images, "annotations": annotations,
                                                             "categories": categories}))

    def read_labels(self, dataset: CocoDataset, source: Path) -> dict[str, tuple[np.ndarray, list[str]]]:
        if not source.is_file():
            raise FileNotFoundError(f"{source}: not found; expected the COCO instances file of the labeled images")
        data = load_instances(source)
        categories = {category.get("id"): category.get("name") for category in data["categories"]
                      if isinstance(category, dict)}
        images = {image.get("id"): image.get("file_name") for image in data["images"] if isinstance(image, dict)}
        boxes: dict[str, list[list[float]]] = {str(name): [] for name in images.values()}
        names: dict[str, list[str]] = {str(name): [] for name in images.values()}
        for position, annotation in enumerate(data["annotations"]):
            image = images.get(annotation.get("image_id")) if isinstance(annotation, dict) else None
            if image is None:
                raise ValueError(f"{source}: annotations[{position}]: its image_id is not in 'images'")
            class_name = categories.get(annotation.get("category_id"))
            if class_name not in dataset.class_names:
                raise ValueError(f"{source}: annotations[{position}] of image {image}: category "
                                 f"{class_name or annotation.get('category_id')!r} is not one of the classes "
                                 f"{list(dataset.class_names)}")
            bbox = annotation.get("bbox")
            if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, int | float) for v in bbox)):
                raise ValueError(f"{source}: annotations[{position}] of image {image}: 'bbox' must be 4 numbers "
                                 f"[x, y, width, height], got {bbox!r}")
            x, y, w, h = (float(v) for v in bbox)
            boxes[str(image)].append([x, y, x + w, y + h])
            names[str(image)].append(class_name)
        return {name: (np.array(boxes[name], dtype=np.float64).reshape(-1, 4), names[name]) for name in boxes}


def label_format(dataset: Any) -> LabelFormat:
    """The :class:`LabelFormat` of ``dataset``'s kind; raises ``ValueError`` for data that labeling rounds cannot
    write labels into (only KITTI and COCO folders)."""
    if isinstance(dataset, KittiDataset):
        return KittiFormat()
    if isinstance(dataset, CocoDataset):
        return CocoFormat()
    raise ValueError(f"labeling rounds read and write KITTI (data=kitti) or COCO (data=coco) folders; "
                     f"{type(dataset).__name__} is neither")
