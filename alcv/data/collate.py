"""The 2D item contract that every camera dataset follows (:class:`~alcv.data.coco.CocoDataset`,
:class:`~alcv.data.synthetic_camera.SyntheticCameraDataset`), and the collation of such items into the batch the
2D detectors consume.

A 2D item is a dict:

- ``index``: int, the absolute dataset index (never a position inside a split or the pool);
- ``image``: ``tv_tensors.Image`` uint8 ``(3, H, W)``, RGB;
- ``boxes``: ``tv_tensors.BoundingBoxes`` float32 ``(M, 4)`` ``[x1, y1, x2, y2]`` (XYXY) in pixels, origin at
  the top-left corner of the image, x to the right, y down, ``canvas_size=(H, W)``;
- ``labels``: int64 ``(M,)`` class ids into the dataset's ``class_names``;
- ``drive_id``: int, and ``timestamp``: float seconds (how a dataset derives them: see its class).

LiDAR items and their collation are in :mod:`alcv.data.lidar_dataset`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torchvision.transforms.v2 import functional as F

__all__ = ["collate_images"]


def collate_images(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Collate 2D items (see the module docstring) into the batch the 2D detectors consume.

    Returns a dict with ``index`` ``(B,)`` int64 (absolute dataset indices); ``images``, a list of B plain
    float32 ``(3, H_i, W_i)`` tensors scaled to ``[0, 1]`` (uint8 images are divided by 255, floating images
    are taken as already in ``[0, 1]``); ``boxes``, a list of plain float32 ``(M_i, 4)`` XYXY pixel tensors;
    ``labels``, a list of int64 ``(M_i,)``; ``drive_id`` ``(B,)`` int64 and ``timestamp`` ``(B,)`` float64.
    Images keep their own sizes: resizing and batching into one tensor is the detector's job.
    """
    return {
        "index": torch.tensor([int(item["index"]) for item in items], dtype=torch.long),
        "images": [F.to_dtype(torch.as_tensor(item["image"]).as_subclass(torch.Tensor), torch.float32, scale=True)
                   for item in items],
        "boxes": [torch.as_tensor(item["boxes"]).as_subclass(torch.Tensor).to(torch.float32).reshape(-1, 4)
                  for item in items],
        "labels": [torch.as_tensor(item["labels"]).as_subclass(torch.Tensor).to(torch.int64) for item in items],
        "drive_id": torch.tensor([int(item["drive_id"]) for item in items], dtype=torch.long),
        "timestamp": torch.tensor([float(item["timestamp"]) for item in items], dtype=torch.float64),
    }
