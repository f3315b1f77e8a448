"""A CenterPoint-style BEV detector as a fixed pipeline of pure, device-agnostic stages.

pillar encoder (points -> BEV pseudo-image) -> 2D convolutional backbone -> centre head -> peak decoding.
No custom CUDA ops, no ``.cuda()``: every tensor is created on the device of the input.

Frames: all coordinates are in the LiDAR frame (x forward, y left, z up, metres). BEV tensors are laid
out ``(B, C, ny, nx)``: row ``iy`` covers ``y in [y_min + iy * cell, y_min + (iy + 1) * cell)``, column
``ix`` likewise in x.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alcv.models.detections import Detections


@dataclass(frozen=True)
class BEVGrid:
    """The bird's-eye-view grid: ``point_range = [x_min, y_min, z_min, x_max, y_max, z_max]`` (metres)
    and the square ``cell_size`` (metres) of the encoder's grid."""

    point_range: tuple[float, float, float, float, float, float] = (-20.0, -20.0, -3.0, 20.0, 20.0, 3.0)
    cell_size: float = 0.5

    def __post_init__(self) -> None:
        if len(self.point_range) != 6:
            raise ValueError(f"BEVGrid: 'point_range' must have 6 values [x_min, y_min, z_min, x_max, y_max, "
                             f"z_max], got {list(self.point_range)}")
        object.__setattr__(self, "point_range", tuple(float(v) for v in self.point_range))
        x_min, y_min, z_min, x_max, y_max, z_max = self.point_range
        if not (x_max > x_min and y_max > y_min and z_max > z_min and self.cell_size > 0):
            raise ValueError(f"BEVGrid: 'point_range' must be [x_min, y_min, z_min, x_max, y_max, z_max] with "
                             f"max > min and 'cell_size' > 0, got {list(self.point_range)}, {self.cell_size}")
        for extent in (x_max - x_min, y_max - y_min):
            if abs(extent / self.cell_size - round(extent / self.cell_size)) > 1e-6:
                raise ValueError(f"BEVGrid: extent {extent} m is not a multiple of cell_size {self.cell_size}")

    @property
    def nx(self) -> int:
        return round((self.point_range[3] - self.point_range[0]) / self.cell_size)

    @property
    def ny(self) -> int:
        return round((self.point_range[4] - self.point_range[1]) / self.cell_size)


class PillarEncoder(nn.Module):
    """PointPillars-style encoder: a shared point MLP, max-pooled per BEV cell (pillar).

    Each point gets ``point_features + 5`` features: its first ``point_features`` channels (``[x, y, z,
    intensity]``, then e.g. nuScenes' time lag), ``x - x_p, y - y_p, z - z_p, x - x_c, y - y_c`` (``_p``: mean of
    its pillar's points, ``_c``: the cell centre); they go through Linear-BN-ReLU to
    ``channels - 1`` features, and the pillar keeps the max; a last channel holds ``log1p`` of the point
    count. Points outside ``grid.point_range`` are dropped.

    Input: ``points (P, F)`` with ``F >= point_features`` (further channels are not used), ``point_batch (P,)``
    frame of each point in ``[0, batch_size)``.
    Output: ``(batch_size, channels, grid.ny, grid.nx)``.
    """

    def __init__(self, grid: BEVGrid, channels: int = 32, point_features: int = 4) -> None:
        super().__init__()
        if channels < 2:
            raise ValueError(f"PillarEncoder: 'channels' must be >= 2, got {channels}")
        if point_features < 3:
            raise ValueError(f"PillarEncoder: 'point_features' must be >= 3 (x, y, z, ...), got {point_features}")
        self.grid = grid
        self.channels = channels
        self.point_features = point_features
        self.linear = nn.Linear(point_features + 5, channels - 1, bias=False)
        self.norm = nn.BatchNorm1d(channels - 1)

    def forward(self, points: Tensor, point_batch: Tensor, batch_size: int) -> Tensor:
        if points.shape[1] < self.point_features:
            raise ValueError(f"PillarEncoder: points have {points.shape[1]} channels, the encoder reads "
                             f"{self.point_features} (model.detector.encoder.point_features)")
        grid = self.grid
        x_min, y_min, z_min, x_max, y_max, z_max = grid.point_range
        inside = ((points[:, 0] >= x_min) & (points[:, 0] < x_max) & (points[:, 1] >= y_min)
                  & (points[:, 1] < y_max) & (points[:, 2] >= z_min) & (points[:, 2] < z_max))
        points, point_batch = points[inside], point_batch[inside]
        ix = ((points[:, 0] - x_min) / grid.cell_size).long().clamp_(0, grid.nx - 1)
        iy = ((points[:, 1] - y_min) / grid.cell_size).long().clamp_(0, grid.ny - 1)
        num_cells = batch_size * grid.ny * grid.nx
        cell = (point_batch * grid.ny + iy) * grid.nx + ix
        count = torch.zeros(num_cells, device=points.device, dtype=points.dtype).index_add_(
            0, cell, torch.ones_like(points[:, 0]))
        xyz_sum = torch.zeros(num_cells, 3, device=points.device, dtype=points.dtype).index_add_(
            0, cell, points[:, :3])
        pillar_mean = xyz_sum[cell] / count[cell, None]
        cell_centre = torch.stack([(ix.to(points.dtype) + 0.5) * grid.cell_size + x_min,
                                   (iy.to(points.dtype) + 0.5) * grid.cell_size + y_min], dim=1)
        features = torch.cat([points[:, :self.point_features], points[:, :3] - pillar_mean,
                              points[:, :2] - cell_centre], dim=1)
        features = F.relu(self.norm(self.linear(features)))
        # ReLU outputs are >= 0, so an all-zero canvas is a neutral start for the max
        canvas = torch.zeros(num_cells, self.channels - 1, device=points.device, dtype=features.dtype)
        canvas = canvas.scatter_reduce(0, cell[:, None].expand_as(features), features, reduce="amax")
        canvas = torch.cat([canvas, torch.log1p(count)[:, None].to(features.dtype)], dim=1)
        return canvas.view(batch_size, grid.ny, grid.nx, self.channels).permute(0, 3, 1, 2).contiguous()


def _conv_block(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class BEVBackbone(nn.Module):
    """SECOND/PointPillars-style 2D backbone: strided stages whose outputs are resampled to one stride
    and concatenated.

    Stage ``i`` downsamples by ``stage_strides[i]`` and applies ``stage_blocks[i]`` 3x3 conv blocks of
    ``stage_channels[i]`` channels. Every stage output is brought to ``out_stride`` (relative to the
    input) by a strided or transposed convolution with ``upsample_channels`` channels.

    Input ``(B, in_channels, H, W)``; output ``(B, out_channels, H / out_stride, W / out_stride)`` with
    ``out_channels = len(stage_channels) * upsample_channels``. H and W must be divisible by the total
    stride of the stages.
    """

    def __init__(self, in_channels: int, stage_channels: Sequence[int] = (32, 64),
                 stage_blocks: Sequence[int] = (1, 2), stage_strides: Sequence[int] = (1, 2),
                 upsample_channels: int = 32, out_stride: int = 2) -> None:
        super().__init__()
        if not len(stage_channels) == len(stage_blocks) == len(stage_strides) > 0:
            raise ValueError("BEVBackbone: 'stage_channels', 'stage_blocks' and 'stage_strides' must be "
                             f"non-empty and of equal length, got {stage_channels}, {stage_blocks}, {stage_strides}")
        self.out_stride = out_stride
        self.out_channels = len(stage_channels) * upsample_channels
        self.stages = nn.ModuleList()
        self.resamplers = nn.ModuleList()
        channels, total_stride = in_channels, 1
        for out_channels, blocks, stride in zip(stage_channels, stage_blocks, stage_strides, strict=True):
            layers = [_conv_block(channels, out_channels, stride)]
            layers += [_conv_block(out_channels, out_channels) for _ in range(blocks)]
            self.stages.append(nn.Sequential(*layers))
            channels, total_stride = out_channels, total_stride * stride
            if total_stride >= out_stride:
                factor = total_stride // out_stride
                resample = nn.ConvTranspose2d(channels, upsample_channels, factor, factor, bias=False)
            else:
                factor = out_stride // total_stride
                resample = nn.Conv2d(channels, upsample_channels, factor, factor, bias=False)
            self.resamplers.append(nn.Sequential(resample, nn.BatchNorm2d(upsample_channels), nn.ReLU(inplace=True)))

    def forward(self, bev: Tensor) -> Tensor:
        outputs = []
        for stage, resample in zip(self.stages, self.resamplers, strict=True):
            bev = stage(bev)
            outputs.append(resample(bev))
        return torch.cat(outputs, dim=1)


#: regression channels of the centre head, in order: offset (2), z (1), log size (3), sin/cos yaw (2)
REGRESSION_CHANNELS = {"offset": 2, "z": 1, "size": 3, "rotation": 2}


class CenterHead(nn.Module):
    """CenterPoint-style head: per-class centre heatmap logits and box regression at every BEV cell.

    Input ``(B, in_channels, H, W)``; output dict with ``heatmap`` ``(B, num_classes, H, W)`` (logits)
    and ``regression`` ``(B, 8, H, W)``: sub-cell centre offset (cells), z (m), log size (log m),
    sin and cos of yaw.
    """

    def __init__(self, in_channels: int, num_classes: int, head_channels: int = 64, prior: float = 0.1) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.shared = _conv_block(in_channels, head_channels)

        def branch(out_channels: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(head_channels, head_channels, 3, 1, 1), nn.ReLU(inplace=True),
                                 nn.Conv2d(head_channels, out_channels, 1))

        self.heatmap = branch(num_classes)
        self.regression = branch(sum(REGRESSION_CHANNELS.values()))
        nn.init.constant_(self.heatmap[-1].bias, -math.log((1 - prior) / prior))

    def forward(self, features: Tensor) -> dict[str, Tensor]:
        shared = self.shared(features)
        return {"heatmap": self.heatmap(shared), "regression": self.regression(shared)}


def gaussian_radius(length: Tensor, width: Tensor, min_overlap: float = 0.1) -> Tensor:
    """CenterNet's radius (in cells) within which a shifted box keeps ``min_overlap`` IoU, per box."""
    b1, c1 = length + width, width * length * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + torch.sqrt(b1**2 - 4 * c1)) / 2
    b2, c2 = 2 * (length + width), (1 - min_overlap) * width * length
    r2 = (b2 + torch.sqrt(b2**2 - 16 * c2)) / 2
    a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * (length + width), (min_overlap - 1) * width * length
    r3 = (b3 + torch.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return torch.minimum(torch.minimum(r1, r2), r3)


def focal_loss(logits: Tensor, target: Tensor, alpha: float = 2.0, beta: float = 4.0) -> Tensor:
    """CenterNet's penalty-reduced focal loss, summed and divided by the number of peaks (cells == 1)."""
    probability = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    positive = target.eq(1).to(logits.dtype)
    positive_loss = torch.log(probability) * (1 - probability) ** alpha * positive
    negative_loss = torch.log(1 - probability) * probability**alpha * (1 - target) ** beta * (1 - positive)
    return -(positive_loss.sum() + negative_loss.sum()) / positive.sum().clamp(min=1)


class BEVDetector(nn.Module):
    """Points to 3D boxes: ``encoder -> backbone -> head``, plus the loss and the peak decoding.

    Args:
        grid: the BEV grid shared with ``encoder``.
        num_classes: number of object classes (heatmap channels).
        encoder: points -> ``(B, C, ny, nx)``; must expose ``channels``.
        backbone: ``(B, C, ny, nx)`` -> ``(B, C', ny / s, nx / s)``; must expose ``out_stride`` (= s)
            and ``out_channels`` (= C').
        head: builds the :class:`CenterHead` from ``(in_channels, num_classes)`` (a partial in config).
        min_radius: smallest Gaussian radius (output cells) of a heatmap target.
        max_detections: top-k peaks kept per frame; ``score_threshold``: minimum score kept.
        regression_weights: weight of each regression group in :data:`REGRESSION_CHANNELS` order.

    ``forward(points, point_batch, batch_size)`` returns the raw head outputs; ``loss`` and ``decode``
    are pure functions of them (no state is kept between calls).
    """

    def __init__(self, grid: BEVGrid, num_classes: int, encoder: PillarEncoder, backbone: BEVBackbone,
                 head: Callable[[int, int], CenterHead], min_radius: int = 2, max_detections: int = 100,
                 score_threshold: float = 0.05,
                 regression_weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)) -> None:
        super().__init__()
        self.grid = grid
        self.encoder = encoder
        self.backbone = backbone
        self.head = head(backbone.out_channels, num_classes)
        self.num_classes = num_classes
        self.min_radius = min_radius
        self.max_detections = max_detections
        self.score_threshold = score_threshold
        self.regression_weights = tuple(regression_weights)
        if grid.nx % backbone.out_stride or grid.ny % backbone.out_stride:
            raise ValueError(f"BEVDetector: grid {grid.nx}x{grid.ny} is not divisible by the backbone's "
                             f"out_stride {backbone.out_stride}")
        self.out_cell = grid.cell_size * backbone.out_stride

    def features(self, points: Tensor, point_batch: Tensor, batch_size: int) -> Tensor:
        """The backbone's BEV feature map ``(B, C', ny / s, nx / s)``, the input of the head."""
        return self.backbone(self.encoder(points, point_batch, batch_size))

    def forward(self, points: Tensor, point_batch: Tensor, batch_size: int) -> dict[str, Tensor]:
        return self.head(self.features(points, point_batch, batch_size))

    def _box_cells(self, boxes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Continuous output-grid coordinates ``(cx, cy)`` of box centres and their integer cells."""
        x_min, y_min = self.grid.point_range[0], self.grid.point_range[1]
        cx = (boxes[:, 0] - x_min) / self.out_cell
        cy = (boxes[:, 1] - y_min) / self.out_cell
        return cx, cy, cx.floor().long(), cy.floor().long()

    def loss(self, outputs: dict[str, Tensor], boxes: Sequence[Tensor], labels: Sequence[Tensor]) -> dict[str, Tensor]:
        """Focal loss on the heatmap and L1 on the regression at each ground-truth centre cell.

        ``boxes[i]`` ``(M_i, 7)`` and ``labels[i]`` ``(M_i,)`` are frame ``i``'s ground truth. Boxes whose
        centre falls outside the grid are ignored. The heatmap target of each box is a Gaussian whose
        peak is exactly 1 at the box's integer centre cell. Returns ``loss`` (the total),
        ``heatmap_loss`` and ``regression_loss``.
        """
        heatmap_logits, regression = outputs["heatmap"], outputs["regression"]
        batch_size, num_classes, height, width = heatmap_logits.shape
        device = heatmap_logits.device
        all_boxes = torch.cat([b.to(device, heatmap_logits.dtype) for b in boxes]) if boxes else \
            heatmap_logits.new_zeros(0, 7)
        all_labels = torch.cat([lab.to(device) for lab in labels]).long() if labels else \
            torch.zeros(0, dtype=torch.long, device=device)
        frame = torch.repeat_interleave(torch.arange(len(boxes), device=device),
                                        torch.tensor([len(b) for b in boxes], device=device))
        cx, cy, ix, iy = self._box_cells(all_boxes)
        inside = (ix >= 0) & (ix < width) & (iy >= 0) & (iy < height)
        all_boxes, all_labels, frame = all_boxes[inside], all_labels[inside], frame[inside]
        cx, cy, ix, iy = cx[inside], cy[inside], ix[inside], iy[inside]

        radius = gaussian_radius(all_boxes[:, 3] / self.out_cell, all_boxes[:, 4] / self.out_cell)
        radius = radius.floor().clamp(min=self.min_radius)
        sigma = (2 * radius + 1) / 6
        grid_x = torch.arange(width, device=device, dtype=heatmap_logits.dtype)
        grid_y = torch.arange(height, device=device, dtype=heatmap_logits.dtype)
        dx = grid_x[None, :] - ix[:, None]  # (N, W)
        dy = grid_y[None, :] - iy[:, None]  # (N, H)
        gaussian_x = torch.exp(-(dx**2) / (2 * sigma[:, None] ** 2)) * (dx.abs() <= radius[:, None])
        gaussian_y = torch.exp(-(dy**2) / (2 * sigma[:, None] ** 2)) * (dy.abs() <= radius[:, None])
        gaussians = gaussian_y[:, :, None] * gaussian_x[:, None, :]  # (N, H, W), exactly 1 at (iy, ix)
        target = heatmap_logits.new_zeros(batch_size * num_classes, height * width)
        target = target.scatter_reduce(0, (frame * num_classes + all_labels)[:, None].expand(-1, height * width),
                                       gaussians.flatten(1), reduce="amax")
        heatmap_loss = focal_loss(heatmap_logits, target.view_as(heatmap_logits))

        predicted = regression[frame, :, iy, ix]  # (N, 8)
        wanted = torch.cat([
            torch.stack([cx - ix, cy - iy], dim=1), all_boxes[:, 2:3], torch.log(all_boxes[:, 3:6].clamp(min=1e-3)),
            torch.stack([torch.sin(all_boxes[:, 6]), torch.cos(all_boxes[:, 6])], dim=1)], dim=1)
        errors = (predicted - wanted).abs()
        groups = torch.split(errors, list(REGRESSION_CHANNELS.values()), dim=1)
        denominator = max(len(frame), 1)
        regression_loss = sum(weight * group.sum() / denominator
                              for weight, group in zip(self.regression_weights, groups, strict=True))
        return {"loss": heatmap_loss + regression_loss, "heatmap_loss": heatmap_loss,
                "regression_loss": regression_loss}

    @torch.no_grad()
    def decode(self, outputs: dict[str, Tensor], indices: Sequence[int],
               heatmap_samples: Tensor | None = None) -> list[Detections]:
        """Peak decoding: 3x3 max-pool NMS on the heatmap, top ``max_detections`` peaks over all classes
        and cells with score >= ``score_threshold``. ``indices[i]`` is the absolute dataset index of
        frame ``i``. Each detection's ``class_probs`` are the sigmoid heatmaps of all classes at its cell.

        ``heatmap_samples`` ``(T, B, C, H, W)`` (probabilities of T stochastic passes) add each
        detection's ``prob_samples`` ``(T, M, C)``: every pass's class probabilities at the same cell.
        """
        heat = torch.sigmoid(outputs["heatmap"].float())
        regression = outputs["regression"].float()
        batch_size, num_classes, height, width = heat.shape
        peaks = heat * (heat == F.max_pool2d(heat, 3, 1, 1))
        k = min(self.max_detections, num_classes * height * width)
        scores, flat = peaks.flatten(1).topk(k, dim=1)
        label = flat // (height * width)
        cell = flat % (height * width)
        iy, ix = cell // width, cell % width
        frame = torch.arange(batch_size, device=heat.device)[:, None].expand_as(flat)
        values = regression[frame, :, iy, ix]  # (B, k, 8)
        class_probs = heat[frame, :, iy, ix]  # (B, k, C)
        x_min, y_min = self.grid.point_range[0], self.grid.point_range[1]
        x = (ix + values[..., 0]) * self.out_cell + x_min
        y = (iy + values[..., 1]) * self.out_cell + y_min
        size = torch.exp(values[..., 3:6].clamp(max=5.0))
        yaw = torch.atan2(values[..., 6], values[..., 7])
        boxes = torch.cat([x[..., None], y[..., None], values[..., 2:3], size, yaw[..., None]], dim=-1)
        keep = scores >= self.score_threshold
        samples = None if heatmap_samples is None else \
            heatmap_samples.float().permute(0, 1, 3, 4, 2)[:, frame, iy, ix]  # (T, B, k, C)
        detections = []
        for b in range(batch_size):
            frame_samples = None if samples is None else samples[:, b][:, keep[b]]
            found = None if frame_samples is None else \
                torch.ones(frame_samples.shape[:2], dtype=torch.bool, device=frame_samples.device)
            detections.append(Detections(int(indices[b]), boxes[b][keep[b]], label[b][keep[b]], scores[b][keep[b]],
                                         class_probs[b][keep[b]], prob_samples=frame_samples, found=found))
        return detections
