"""A small convolutional backbone with a feature pyramid, for 2D detectors that must train on a CPU."""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Sequence

from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork


def _stage(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two 3x3 convolutions, the first with stride 2: halves the resolution."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, 2, 1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class TinyFPNBackbone(nn.Module):
    """Images ``(B, 3, H, W)`` -> an ``OrderedDict`` of pyramid levels ``"p3"``, ``"p4"``, ... with strides
    8, 16, ... and ``out_channels`` channels each, as torchvision's detectors expect of a backbone.

    A stem of stride 2 and one stage per ``stage_channels`` entry, each halving the resolution; the last
    ``levels`` stages feed a feature pyramid (top-down sum of 1x1 lateral and 3x3 output convolutions).

    Args:
        stage_channels: channels of the stages after the stem (stride 4, 8, 16, ...).
        levels: how many of the last stages become pyramid levels.
        out_channels: channels of every pyramid level.
    """

    def __init__(self, stage_channels: Sequence[int] = (24, 48, 96, 160), levels: int = 3,
                 out_channels: int = 64) -> None:
        super().__init__()
        if not 1 <= levels <= len(stage_channels):
            raise ValueError(f"TinyFPNBackbone: 'levels' must be in [1, {len(stage_channels)}], got {levels}")
        self.stem = nn.Sequential(nn.Conv2d(3, stage_channels[0], 3, 2, 1, bias=False),
                                  nn.BatchNorm2d(stage_channels[0]), nn.ReLU(inplace=True))
        widths = [stage_channels[0], *stage_channels]
        self.stages = nn.ModuleList(_stage(a, b) for a, b in itertools.pairwise(widths))
        self.levels = levels
        self.fpn = FeaturePyramidNetwork(list(stage_channels[-levels:]), out_channels)
        self.out_channels = out_channels
        first_stride = 2 ** (1 + len(stage_channels) - levels + 1)
        self.strides = tuple(first_stride * 2**level for level in range(levels))

    def forward(self, images: Tensor) -> OrderedDict[str, Tensor]:
        features, outputs = self.stem(images), []
        for stage in self.stages:
            features = stage(features)
            outputs.append(features)
        named = OrderedDict((f"p{stride.bit_length() - 1}", out)
                            for stride, out in zip(self.strides, outputs[-self.levels:], strict=True))
        return self.fpn(named)
