"""COCO-format detection datasets for alcv's 2D path.

A split is a folder of images and a COCO *instances* JSON file (``images``, ``annotations``, ``categories``).
:class:`CocoDataset` reads the pool, val and test splits into one dataset indexed by absolute index, in the
2D item contract of :mod:`alcv.data.collate` (grayscale, palette and RGBA images are converted to RGB; drives
and timestamps: see :class:`CocoDataset`).

**Unlabeled images** (an alcv extension): an image record of the pool file with ``"unlabeled": true`` has no
annotations yet (the file must then hold none for it): it is read with zero boxes and listed by
:meth:`CocoDataset.unlabeled_indices`, to be labeled, never trained or evaluated on. Once people have labeled
it, :meth:`CocoDataset.write_pool_labels` checks the boxes and writes them into the pool file, removing the
flag. Without the field (or with ``false``) an image is labeled, also when it has no annotations (it holds
nothing to detect). Val and test images must be labeled.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image as PILImage
from torchvision import tv_tensors

from alcv.data.splits import (
    IndexedSplits,
    check_held_out,
    check_split_names,
    class_map_for,
    is_integer,
    is_number,
    listed,
)
from alcv.safe_io import write_text_atomically

logger = logging.getLogger(__name__)

#: how far (pixels) a written box may reach past the image's edges (it is clipped to them)
_EDGE_TOLERANCE = 1e-6
#: image-record fields that name the image's sequence (drive), in order of precedence
_DRIVE_FIELDS = ("video_id", "sequence_id")
#: image-record fields that give the frame's number within its sequence, in order of precedence
_FRAME_FIELDS = ("frame_index", "frame_id")


def _read_image(path: Path) -> torch.Tensor:
    """Decode ``path`` to a uint8 ``(3, H, W)`` RGB tensor with PIL (any format PIL reads: JPEG, PNG, BMP, ...).

    Grayscale, palette, RGBA and CMYK images are converted to RGB; 16-bit grayscale keeps its top 8 bits. EXIF
    orientation is not applied: COCO boxes and ``width`` / ``height`` refer to the stored pixels. Raises
    ``FileNotFoundError`` or ``ValueError`` naming the file when it is missing or cannot be decoded.
    """
    try:
        with PILImage.open(path) as opened:
            if opened.mode.startswith("I;16"):
                gray = (np.asarray(opened).astype(np.uint16) >> 8).astype(np.uint8)
                array = np.repeat(gray[..., None], 3, axis=2)
            else:
                array = np.array(opened.convert("RGB"), dtype=np.uint8)  # a writable copy
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: image file not found") from None
    except (OSError, ValueError, PILImage.DecompressionBombError) as error:
        raise ValueError(f"{path}: cannot decode the image ({error})") from error
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


class CocoDataset(IndexedSplits[torch.Tensor]):
    """Pool, val and test splits in COCO instances format, as one dataset indexed by absolute index.

    Absolute indices: the pool images first, then val, then test, each split in ascending image id.
    ``split_indices(split)`` gives a split's absolute indices. All JSON files are read and validated at
    construction (nothing is half-loaded: any problem raises before the dataset exists); images are decoded
    lazily in ``__getitem__`` (with PIL), and :meth:`num_boxes` / :meth:`box_labels` never decode an image.

    Annotation rules, applied per annotation file:

    - annotations with ``iscrowd: 1`` are dropped: a crowd region marks many objects under one outline, not an
      instance a detector should learn to box (COCO's evaluation ignores them as well);
    - annotations of categories that no ``class_map`` entry names are dropped (classes not detected); a
      ``class_map`` entry naming a category absent from a file's ``categories`` is an error;
    - the COCO ``bbox`` ``[x, y, w, h]`` (pixels, top-left corner) becomes ``[x, y, x + w, y + h]`` (XYXY),
      clipped to the image ``[0, width] x [0, height]``;
    - after clipping, boxes whose width or height is below ``min_box_size`` pixels, or zero, are dropped as
      degenerate, with one ``logging`` warning per file saying how many;
    - images without (kept) annotations stay in the dataset with zero boxes: confirming that a frame holds
      nothing to detect is information that active learning pays for too;
    - an image record with ``"unlabeled": true`` (pool file only, and without annotations) is **unlabeled**
      (:meth:`unlabeled_indices`): zero boxes, to be labeled, never trained or evaluated on.
      :meth:`write_pool_labels` writes the boxes of labeled pool images into the pool file, checked first.

    :meth:`frame_name` is an image's ``file_name`` as in its JSON (relative to the split's images folder).

    Splits: 'pool' needs an annotation file; 'val' and 'test' either have their own file in ``splits`` or are
    carved out of the pool file by ``held_out``, whole drives at a time (so no drive is in two splits): the
    drives, in the order of their first image, are shuffled by ``split_seed`` and the first
    ``round(fraction x drives)`` (at least one for a fraction > 0) go to 'test', the next ones to 'val'. An
    image without a video is a drive of its own, so without videos the fractions are fractions of images.

    Drives and time: an image record's ``video_id`` (else ``sequence_id``) names its drive; an image with
    neither is a drive of its own. Drive ids are consecutive ints from 0, in the order of the first absolute
    index of each drive, counted per split, so drives never collide across splits (a ``video_id`` 3 in the
    pool and a ``video_id`` 3 in the test split are different drives) nor with images that have no video.
    ``timestamp`` is the record's ``timestamp`` (taken as seconds), else its ``frame_index`` (else
    ``frame_id``) divided by ``fps``, else 0.0.

    Bad input raises ``ValueError`` (``FileNotFoundError`` for missing files) naming the file, the annotation
    or image id, and the problem: a file that is not JSON (with its line) or not COCO instances, an image
    record without ``id`` / ``file_name`` / ``width`` / ``height``, duplicate image or category ids, a missing
    image file, an ``unlabeled`` field that is not a bool, an image flagged unlabeled that has annotations or is
    in a val or test split, an annotation whose ``image_id`` or ``category_id`` is unknown, a ``bbox`` that is not 4
    finite numbers or has a negative width or height, a 'test' split with neither a file nor a ``held_out``
    fraction (or with both), fractions that leave the pool without a drive, and a bad ``class_map`` or
    ``class_names``. An image whose decoded size differs from its record's ``width`` / ``height`` raises
    ``ValueError`` when it is read.

    Args:
        splits: ``{"pool": {"images": <folder>, "annotations": <instances json>}}``, plus ``"test"`` and
            ``"val"`` entries of the same form for splits with files of their own (a None entry: no file);
            an image's file is ``<folder>/<file_name>``.
        class_map: each alcv class name -> the COCO category names (``str``) or ids (``int``) that become
            it, e.g. ``{"vehicle": ["car", "truck", "bus"], "pedestrian": ["person"]}``. A category may map to
            one class only. A class of ``class_names`` that the map does not name is the category of the same
            name.
        class_names: the alcv classes in label order (label ``i`` is ``class_names[i]``); None: the keys of
            ``class_map`` in order. At least one of the two must be given.
        held_out: ``{"test": fraction, "val": fraction}`` of the pool file's drives that become those splits
            (see above); fractions are in [0, 1) and sum to less than 1.
        split_seed: the seed of the held-out drives' shuffle.
        min_box_size: smallest kept box width and height after clipping, pixels (>= 0).
        cache_size: decoded images kept in a per-process LRU cache (0: none). With DataLoader workers each
            worker keeps its own cache; a cached image takes ``3 H W`` bytes.
        fps: frames per second, to turn ``frame_index`` / ``frame_id`` into seconds.
    """

    modality: ClassVar[str] = "camera"

    def __init__(self, splits: Mapping[str, Mapping[str, str] | None],
                 class_map: Mapping[str, Sequence[str | int]] | None = None, class_names: Sequence[str] | None = None,
                 held_out: Mapping[str, float] | None = None, split_seed: int = 0, min_box_size: float = 1.0,
                 cache_size: int = 0, fps: float = 10.0) -> None:
        if not is_number(min_box_size) or not min_box_size >= 0:
            raise ValueError(f"CocoDataset: 'min_box_size' must be a number >= 0, got {min_box_size!r}")
        if not is_number(fps) or not fps > 0 or not math.isfinite(fps):
            raise ValueError(f"CocoDataset: 'fps' must be a finite number > 0, got {fps!r}")
        self.min_box_size = float(min_box_size)
        self.fps = float(fps)
        super().__init__(cache_size)
        class_entries = self._check_class_map(class_map_for(class_map, class_names, "CocoDataset"))
        self.class_names: tuple[str, ...] = tuple(class_entries)
        self._class_entries = class_entries
        fractions = check_held_out(held_out, split_seed, "CocoDataset")
        split_paths = self._check_splits(splits, fractions)
        #: the pool split's (images folder, annotation file)
        self.pool_files: tuple[Path, Path] = split_paths["pool"]
        parsed_splits = {split: _parse_instances(annotations, images_dir, class_entries, self.min_box_size, self.fps)
                         for split, (images_dir, annotations) in split_paths.items()}
        sources = {split: annotations for split, (_, annotations) in split_paths.items()}
        records = self._index_splits(parsed_splits, sources, fractions, split_seed, box_width=4, noun="images")
        self._files = np.array([record["file"] for record in records], dtype=str)
        self._sizes = np.array([record["size"] for record in records], dtype=np.int64).reshape(-1, 2)
        self._image_ids = np.array([record["id"] for record in records], dtype=np.int64)

    @staticmethod
    def _check_class_map(class_map: Mapping[str, Sequence[str | int]]) -> dict[str, list[str | int]]:
        if not isinstance(class_map, Mapping) or not class_map:
            raise ValueError(f"CocoDataset: 'class_map' must be a non-empty mapping of class name -> COCO "
                             f"category names or ids, got {class_map!r}")
        entries: dict[str, list[str | int]] = {}
        owner: dict[str | int, str] = {}
        for name, categories in class_map.items():
            if isinstance(categories, str | int) and not isinstance(categories, bool):
                categories = [categories]
            if not isinstance(categories, Sequence) or not categories:
                raise ValueError(f"CocoDataset: class_map[{name!r}] must be a non-empty list of COCO category "
                                 f"names or ids, got {categories!r}")
            entries[str(name)] = []
            for category in categories:
                if not (isinstance(category, str) or is_integer(category)):
                    raise ValueError(f"CocoDataset: class_map[{name!r}]: {category!r} is neither a category name "
                                     f"(str) nor a category id (int)")
                if category in owner:
                    where = (f"listed twice in class_map[{name!r}]" if owner[category] == str(name) else
                             f"mapped to both {owner[category]!r} and {name!r}")
                    raise ValueError(f"CocoDataset: class_map: category {category!r} is {where}")
                owner[category] = str(name)
                entries[str(name)].append(category)
        return entries

    @staticmethod
    def _check_splits(splits: Mapping[str, Mapping[str, str] | None], fractions: Mapping[str, float]
                      ) -> dict[str, tuple[Path, Path]]:
        if not isinstance(splits, Mapping):
            raise ValueError(f"CocoDataset: 'splits' must map split names to {{images, annotations}}, got "
                             f"{splits!r}")
        splits = {name: entry for name, entry in splits.items() if entry is not None}
        check_split_names(list(splits), fractions, "CocoDataset", "{images, annotations}")
        paths: dict[str, tuple[Path, Path]] = {}
        for name, entry in splits.items():
            if not isinstance(entry, Mapping) or not {"images", "annotations"} <= set(entry):
                raise ValueError(f"CocoDataset: splits[{name!r}] must be {{images: <folder>, annotations: "
                                 f"<instances json>}}, got {entry!r}")
            images, annotations = Path(str(entry["images"])), Path(str(entry["annotations"]))
            if not annotations.is_file():
                raise FileNotFoundError(f"CocoDataset: splits[{name!r}]: annotation file {annotations} not found")
            if not images.is_dir():
                raise FileNotFoundError(f"CocoDataset: splits[{name!r}]: image folder {images} not found")
            paths[str(name)] = (images, annotations)
        return paths

    def image_id(self, index: int) -> int:
        """The COCO image id of absolute index ``index`` (ids may repeat across splits)."""
        return int(self._image_ids[self._check_index(index)])

    def image_path(self, index: int) -> Path:
        """The image file of absolute index ``index``."""
        return Path(str(self._files[self._check_index(index)]))

    def write_pool_labels(self, labels: Mapping[str, tuple[np.ndarray, Sequence[str]]], overwrite: bool = False
                          ) -> int:
        """Write the finished labels of pool images into the pool split's annotation file.

        Args:
            labels: an image's ``file_name`` (as in the pool file) -> ``(boxes, class_names)``: ``boxes``
                ``(M, 4)`` float XYXY pixels of the stored image, ``class_names`` the ``M`` alcv classes of the
                dataset (``M`` may be 0: an image that holds nothing to detect).
            overwrite: replace the annotations of images that are labeled already (else such images are
                refused).

        Every entry is checked before anything is written, so a refused call leaves the file byte-identical: the
        image is a pool image of the dataset (and still in the file, once); each class is one of the dataset's,
        written as the COCO category of its ``class_map`` entry (the first category name or id of the entry that
        the file's ``categories`` have); each box lies inside the image ``[0, width] x [0, height]`` (within
        1e-6 pixels; it is clipped to it) and is at least ``min_box_size`` pixels, and more than 0, wide and
        high (the dataset would drop it otherwise); the image is flagged unlabeled and has no annotations,
        unless ``overwrite`` (which removes its annotations, crowd ones included).

        Then the file is rewritten once, atomically (a temporary file renamed over it), as compact UTF-8 JSON
        that keeps every other field, record and annotation as it was, in its order: the written images lose
        their ``unlabeled`` field, and their new annotations follow the others, with ids from the file's
        largest int annotation id + 1 on, ``bbox`` ``[x, y, w, h]``, ``area`` ``w h`` and ``iscrowd`` 0.

        The dataset itself is not changed: a :class:`CocoDataset` built anew reads the labels.

        Returns:
            The number of annotations written.

        Raises:
            ValueError: naming the file, the image and the problem (for a box, its position, its coordinates and
                the edge it crosses).
        """
        _, path = self.pool_files
        if not isinstance(labels, Mapping):
            raise ValueError(f"{path}: write_pool_labels: 'labels' must map image file names to (boxes, class "
                             f"names), got {type(labels).__name__}")
        if not labels:
            return 0
        pool = {self.frame_name(index) for index in self.split_indices("pool").tolist()}
        data = load_instances(path)
        class_categories = _class_categories(path, data["categories"], self._class_entries)
        records: dict[str, list[dict[str, Any]]] = {}
        for image in data["images"]:
            if isinstance(image, dict) and image.get("file_name") in labels:
                records.setdefault(image["file_name"], []).append(image)
        annotated = {annotation.get("image_id") for annotation in data["annotations"] if isinstance(annotation, dict)}
        targets: list[dict[str, Any]] = []
        written: list[dict[str, Any]] = []
        labeled_already: list[str] = []
        for file_name, entry in labels.items():
            if not isinstance(file_name, str) or file_name not in pool:
                raise ValueError(f"{path}: write_pool_labels: image {file_name!r} is not a pool image of the "
                                 f"dataset")
            if len(records.get(file_name, [])) != 1:
                raise ValueError(f"{path}: write_pool_labels: image {file_name!r} has "
                                 f"{len(records.get(file_name, []))} records in the file now; expected one")
            record = records[file_name][0]
            boxes = self._checked_boxes(path, record, entry)
            if record.get("unlabeled") is not True or record["id"] in annotated:
                labeled_already.append(file_name)
            targets.append(record)
            written += [{"image_id": record["id"], "category_id": class_categories[name], "box": box}
                        for box, name in zip(boxes.tolist(), entry[1], strict=True)]
        if labeled_already and not overwrite:
            raise ValueError(f"{path}: write_pool_labels: {len(labeled_already)} image(s) are labeled already "
                             f"(not flagged \"unlabeled\": true, or with annotations): {listed(labeled_already)}; "
                             f"pass overwrite=True to replace their annotations")
        replaced = {record["id"] for record in targets}
        next_id = max((a["id"] for a in data["annotations"] if isinstance(a, dict) and is_integer(a.get("id"))),
                      default=0) + 1
        data["annotations"] = [annotation for annotation in data["annotations"]
                               if not (isinstance(annotation, dict) and annotation.get("image_id") in replaced)]
        for number, annotation in enumerate(written):
            x1, y1, x2, y2 = annotation["box"]
            data["annotations"].append({"id": next_id + number, "image_id": annotation["image_id"],
                                        "category_id": annotation["category_id"], "bbox": [x1, y1, x2 - x1, y2 - y1],
                                        "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
        for record in targets:
            record.pop("unlabeled", None)
        write_text_atomically(path, json.dumps(data, ensure_ascii=False))
        return len(written)

    def _checked_boxes(self, path: Path, record: Mapping[str, Any], entry: Any) -> np.ndarray:
        """The ``(M, 4)`` float64 XYXY boxes of one ``labels`` entry ``(boxes, class_names)`` for the image
        ``record``, checked (see :meth:`write_pool_labels`) and clipped to the image."""
        where = f"{path}: write_pool_labels: image {record['file_name']!r}"
        if not isinstance(entry, Sequence) or isinstance(entry, str) or len(entry) != 2:
            raise ValueError(f"{where}: expected (boxes (M, 4), class names (M,)), got {type(entry).__name__}")
        boxes, names = np.asarray(entry[0], dtype=np.float64), entry[1]
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4 or not np.isfinite(boxes).all():
            raise ValueError(f"{where}: boxes must be (M, 4) finite XYXY pixels, got shape {boxes.shape}")
        if isinstance(names, str) or not isinstance(names, Sequence) or len(names) != len(boxes):
            raise ValueError(f"{where}: expected a list of {len(boxes)} class names, one a box, got {names!r}")
        unknown = [name for name in names if name not in self.class_names]
        if unknown:
            raise ValueError(f"{where}: class(es) {unknown} are not classes of the dataset {list(self.class_names)}")
        width, height = record["width"], record["height"]
        for position, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
            box = f"box {position} [{x1:g}, {y1:g}, {x2:g}, {y2:g}]"
            for crossed, edge in ((x1 < -_EDGE_TOLERANCE, "left edge x = 0"), (y1 < -_EDGE_TOLERANCE, "top edge y = 0"),
                                  (x2 > width + _EDGE_TOLERANCE, f"right edge x = {width}"),
                                  (y2 > height + _EDGE_TOLERANCE, f"bottom edge y = {height}")):
                if crossed:
                    raise ValueError(f"{where}: {box} crosses the image's {edge} (the image is {width} x {height} "
                                     f"pixels; boxes are XYXY pixels inside it)")
            size = min(x2 - x1, y2 - y1)
            if size <= 0 or size < self.min_box_size:
                raise ValueError(f"{where}: {box} is {x2 - x1:g} x {y2 - y1:g} pixels; expected x1 < x2, y1 < y2 "
                                 f"and at least min_box_size={self.min_box_size:g} pixels each way (the dataset "
                                 f"drops smaller boxes)")
        return np.clip(boxes, 0.0, [width, height, width, height])

    def _decode(self, index: int) -> torch.Tensor:
        path = self.image_path(index)
        image = _read_image(path)
        height, width = (int(v) for v in self._sizes[index])
        if tuple(image.shape[-2:]) != (height, width):
            raise ValueError(f"{path}: image id {self.image_id(index)} decodes to {image.shape[-1]}x"
                             f"{image.shape[-2]} pixels but its record says width={width}, height={height}")
        return image

    def __getitem__(self, index: int) -> dict[str, Any]:
        """The item at absolute ``index`` (see the module docstring for the contract)."""
        index = self._check_index(index)
        image = self._cached(index, self._decode).clone()  # a transform may write into its input, not the cache
        boxes, labels = self._annotations(index)
        height, width = (int(v) for v in self._sizes[index])
        return {
            "index": index,
            "image": tv_tensors.Image(image),
            "boxes": tv_tensors.BoundingBoxes(torch.tensor(boxes), format="XYXY", canvas_size=(height, width)),
            "labels": torch.tensor(labels),
            "drive_id": int(self._drive_ids[index]),
            "timestamp": float(self._timestamps[index]),
        }


def load_instances(path: Path) -> dict[str, Any]:
    """The COCO instances file ``path``, checked to be a JSON object with the lists ``images``, ``annotations`` and
    ``categories``; ``ValueError`` names the file (and the line of a JSON error) otherwise."""
    try:
        with path.open(encoding="utf-8") as handle:
            data = json.load(handle)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not a UTF-8 text file ({error})") from None
    expected = ("images", "annotations", "categories")
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a COCO instances file: expected a JSON object with {list(expected)}, got "
                         f"a {type(data).__name__}")
    for key in expected:
        if not isinstance(data.get(key), list):
            problem = "lacks" if key not in data else "has a non-list"
            raise ValueError(f"{path}: not a COCO instances file: it {problem} '{key}' (expected a list)")
    return data


def _class_categories(path: Path, categories: list[Any], class_entries: Mapping[str, Sequence[str | int]]
                      ) -> dict[str, int]:
    """``{alcv class: the COCO category id it is written as}``: the first category of its ``class_map`` entry
    that the file has (by id, or the first category of that name), the file's categories checked as when they
    are read (:func:`_category_labels`)."""
    _category_labels(path, categories, class_entries)  # so every entry is one of the file's categories
    written: dict[str, int] = {}
    for name, (entry, *_) in class_entries.items():
        key = "id" if isinstance(entry, int) else "name"
        written[name] = next(category["id"] for category in categories if category[key] == entry)
    return written


def _category_labels(path: Path, categories: list[Any], class_entries: Mapping[str, Sequence[str | int]]
                     ) -> dict[int, int]:
    """``{COCO category id: alcv label}`` for every category of the file (-1 for categories not mapped)."""
    ids: dict[int, str] = {}
    for position, category in enumerate(categories):
        if not isinstance(category, dict) or not is_integer(category.get("id")) \
                or not isinstance(category.get("name"), str):
            raise ValueError(f"{path}: categories[{position}] must be an object with an int 'id' and a str "
                             f"'name', got {category!r}")
        if category["id"] in ids:
            raise ValueError(f"{path}: duplicate category id {category['id']}")
        ids[category["id"]] = category["name"]
    labels = dict.fromkeys(ids, -1)
    for label, entries in enumerate(class_entries.values()):
        for entry in entries:
            matches = [cid for cid, name in ids.items() if (cid == entry if isinstance(entry, int) else name == entry)]
            if not matches:
                kind = "id" if isinstance(entry, int) else "name"
                raise ValueError(f"{path}: class_map names category {kind} {entry!r}, which is not in the file's "
                                 f"categories {sorted(ids.values())}")
            for cid in matches:
                if labels[cid] >= 0 and labels[cid] != label:
                    raise ValueError(f"{path}: category {cid} ({ids[cid]!r}) is mapped to two classes by class_map")
                labels[cid] = label
    return labels


def _image_records(path: Path, images_dir: Path, images: list[Any], fps: float) -> dict[int, dict[str, Any]]:
    """Validated image records by image id, each file's header checked (:func:`check_image_header`)."""
    records: dict[int, dict[str, Any]] = {}
    for position, image in enumerate(images):
        if not isinstance(image, dict):
            raise ValueError(f"{path}: images[{position}] must be an object, got {image!r}")
        missing = [key for key in ("id", "file_name", "width", "height") if key not in image]
        if missing:
            raise ValueError(f"{path}: images[{position}] (id={image.get('id')!r}) lacks {missing}: not a COCO "
                             f"image record")
        image_id = image["id"]
        if not is_integer(image_id):
            raise ValueError(f"{path}: images[{position}]: image id {image_id!r} is not an int")
        if image_id in records:
            raise ValueError(f"{path}: duplicate image id {image_id}")
        width, height = image["width"], image["height"]
        if not all(is_number(v) and float(v).is_integer() and v > 0 for v in (width, height)):
            raise ValueError(f"{path}: image id {image_id}: width and height must be positive integers, got "
                             f"{width!r} x {height!r}")
        if not isinstance(image["file_name"], str) or not image["file_name"]:
            raise ValueError(f"{path}: image id {image_id}: 'file_name' must be a non-empty string")
        unlabeled = image.get("unlabeled", False)
        if not isinstance(unlabeled, bool):
            raise ValueError(f"{path}: image id {image_id}: 'unlabeled' must be true or false, got {unlabeled!r}")
        file = images_dir / image["file_name"]
        check_image_header(path, image_id, file, (int(width), int(height)))
        drive: tuple[str, Any] = ("image", image_id)
        for field in _DRIVE_FIELDS:
            value = image.get(field)
            if value is not None:
                if not (is_integer(value) or isinstance(value, str)):
                    raise ValueError(f"{path}: image id {image_id}: '{field}' must be an int or a string, got "
                                     f"{value!r}")
                drive = (field, value)
                break
        timestamp = 0.0
        if image.get("timestamp") is not None:
            timestamp = _finite(path, image_id, "timestamp", image["timestamp"])
        else:
            for field in _FRAME_FIELDS:
                if image.get(field) is not None:
                    timestamp = _finite(path, image_id, field, image[field]) / fps
                    break
        records[image_id] = {"file": str(file), "name": image["file_name"], "size": (int(height), int(width)),
                             "id": image_id, "drive": drive, "timestamp": timestamp, "labeled": not unlabeled}
    return records


def check_image_header(annotations: Path, image_id: int, file: Path, size: tuple[int, int]) -> None:
    """Read ``file``'s header (not its pixels) and check that it is an image PIL can decode, of ``size``
    ``(width, height)`` pixels as its record says (boxes are in the stored pixels).

    Raises:
        FileNotFoundError: the file is missing. ValueError: it is no image PIL reads, or of another size; both
            name the annotation file, the image id and the image file.
    """
    if not file.is_file():
        raise FileNotFoundError(f"{annotations}: image id {image_id}: image file {file} not found")
    try:
        with PILImage.open(file) as opened:
            found = opened.size
    except (OSError, ValueError, PILImage.DecompressionBombError) as error:
        raise ValueError(f"{annotations}: image id {image_id}: image file {file} cannot be decoded "
                         f"({error})") from error
    if found != size:
        raise ValueError(f"{annotations}: image id {image_id}: image file {file} is {found[0]} x {found[1]} pixels "
                         f"but its record says width {size[0]}, height {size[1]}")


def _finite(path: Path, image_id: int, field: str, value: Any) -> float:
    if not is_number(value) or not math.isfinite(value):
        raise ValueError(f"{path}: image id {image_id}: '{field}' must be a finite number, got {value!r}")
    return float(value)


def _parse_instances(path: Path, images_dir: Path, class_entries: Mapping[str, Sequence[str | int]],
                     min_box_size: float, fps: float) -> list[dict[str, Any]]:
    """The images of one split in ascending image id, each with its kept ``boxes`` ``(M, 4)`` float32 XYXY
    pixels and ``labels`` ``(M,)`` int64, by the rules of :class:`CocoDataset` (none for an image flagged
    unlabeled, whose ``labeled`` is False)."""
    data = load_instances(path)
    category_labels = _category_labels(path, data["categories"], class_entries)
    records = _image_records(path, images_dir, data["images"], fps)
    kept: dict[int, list[tuple[list[float], int]]] = {image_id: [] for image_id in records}
    crowd = unmapped = degenerate = 0
    for position, annotation in enumerate(data["annotations"]):
        if not isinstance(annotation, dict):
            raise ValueError(f"{path}: annotations[{position}] must be an object, got {annotation!r}")
        name = f"annotation id {annotation['id']!r}" if "id" in annotation else f"annotations[{position}]"
        image_id, category_id, bbox = annotation.get("image_id"), annotation.get("category_id"), annotation.get("bbox")
        if not is_integer(image_id) or image_id not in records:
            raise ValueError(f"{path}: {name}: image_id {image_id!r} is not in 'images'")
        if not records[image_id]["labeled"]:
            raise ValueError(f"{path}: image id {image_id} is flagged \"unlabeled\": true but has annotations (the "
                             f"first: {name}); remove the flag or its annotations")
        if not is_integer(category_id) or category_id not in category_labels:
            raise ValueError(f"{path}: {name} (image id {image_id}): category_id {category_id!r} is not in "
                             f"'categories'")
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(is_number(v) and math.isfinite(v) for v in bbox):
            raise ValueError(f"{path}: {name} (image id {image_id}): 'bbox' must be 4 finite numbers "
                             f"[x, y, width, height], got {bbox!r}")
        x, y, w, h = (float(v) for v in bbox)
        if w < 0 or h < 0:
            raise ValueError(f"{path}: {name} (image id {image_id}): bbox {bbox} has a negative width or height")
        if annotation.get("iscrowd"):
            crowd += 1
            continue
        label = category_labels[category_id]
        if label < 0:
            unmapped += 1
            continue
        height, width = records[image_id]["size"]
        x1, x2 = min(max(x, 0.0), width), min(max(x + w, 0.0), width)
        y1, y2 = min(max(y, 0.0), height), min(max(y + h, 0.0), height)
        if x2 - x1 < min_box_size or y2 - y1 < min_box_size or x2 <= x1 or y2 <= y1:
            degenerate += 1
            continue
        kept[image_id].append(([x1, y1, x2, y2], label))
    if degenerate:
        logger.warning("%s: dropped %d degenerate box(es) narrower or shorter than min_box_size=%g pixels after "
                       "clipping to the image", path, degenerate, min_box_size)
    logger.info("%s: %d images; dropped %d crowd and %d unmapped-category annotation(s)", path, len(records),
                crowd, unmapped)
    parsed = []
    for image_id in sorted(records):
        boxes = kept[image_id]
        parsed.append({**records[image_id],
                       "boxes": np.array([b for b, _ in boxes], dtype=np.float32).reshape(-1, 4),
                       "labels": np.array([label for _, label in boxes], dtype=np.int64)})
    return parsed
