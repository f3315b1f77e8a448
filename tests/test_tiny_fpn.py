"""The small 2D backbone: pyramid levels, strides and channels as torchvision's detectors expect."""

from __future__ import annotations

import pytest
import torch

from alcv.models.components.tiny_fpn import TinyFPNBackbone


@pytest.mark.parametrize(("stages", "levels", "names", "strides"), [
    ((8, 16, 32, 64), 3, ["p3", "p4", "p5"], (8, 16, 32)),
    ((8, 16, 32), 2, ["p3", "p4"], (8, 16)),
    ((8, 16, 32, 64), 4, ["p2", "p3", "p4", "p5"], (4, 8, 16, 32)),
])
def test_levels_have_the_announced_strides_and_channels(stages: tuple[int, ...], levels: int, names: list[str],
                                                        strides: tuple[int, ...]) -> None:
    backbone = TinyFPNBackbone(stages, levels=levels, out_channels=24)
    assert backbone.strides == strides
    features = backbone(torch.rand(2, 3, 64, 128))
    assert list(features) == names
    for stride, level in zip(strides, features.values(), strict=True):
        assert level.shape == (2, 24, 64 // stride, 128 // stride)


def test_bad_level_count_is_refused() -> None:
    with pytest.raises(ValueError, match="'levels' must be in \\[1, 2\\]"):
        TinyFPNBackbone((8, 16), levels=3)
