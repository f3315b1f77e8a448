"""Training augmentation for 2D items: torchvision ``transforms.v2`` on the image and its boxes together."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torchvision.transforms import v2


class ImageTrainAugmentation:
    """Random horizontal flip and photometric jitter of a 2D item (the boxes follow the image).

    The item is a mapping with ``image`` (``tv_tensors.Image``) and ``boxes`` (``tv_tensors.BoundingBoxes``);
    other entries (``labels``, ``index``, ``drive_id``, ...) pass through unchanged. Used for training only:
    the pool, validation and test loaders never augment.

    Args:
        flip_probability: probability of a horizontal flip.
        brightness, contrast, saturation: ranges of ``v2.ColorJitter``, e.g. 0.2 for +-20 %.
    """

    def __init__(self, flip_probability: float = 0.5, brightness: float = 0.2, contrast: float = 0.2,
                 saturation: float = 0.2) -> None:
        if not 0.0 <= flip_probability <= 1.0:
            raise ValueError(f"ImageTrainAugmentation: 'flip_probability' must be in [0, 1], got {flip_probability}")
        self.transform = v2.Compose([
            v2.RandomHorizontalFlip(flip_probability),
            v2.ColorJitter(brightness=brightness, contrast=contrast, saturation=saturation),
            v2.SanitizeBoundingBoxes(labels_getter=lambda item: item["labels"]),
        ])

    def __call__(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return self.transform(dict(item))
