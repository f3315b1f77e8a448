"""The embedded synthetic camera world: the synthetic LiDAR world seen through a forward camera.

Every frame of a :class:`~alcv.data.synthetic_lidar.SyntheticLidarWorld` is rendered by a pinhole camera at
the sensor's position looking along +x: sky and ground split at the horizon, the road, then walls, bushes,
poles and objects painted far to near with flat-shaded faces (vehicles in many colours, pedestrians as legs
and torso, golf carts as a low body with a roof on posts, so that they differ from small cars by their
open sides), then per-frame lighting and sensor noise. Drives, timestamps and the pool / val / test split
are the LiDAR world's, so neighbouring frames of a drive are near-duplicates here too; every image is a
pure function of ``(seed, index)``.

Image frame: pixels, origin at the top-left corner, u to the right, v down; a sensor-frame point
``(x, y, z)`` (x forward, y left, z up, metres) projects to ``u = cx - f y / x``, ``v = cy - f z / x``.

An object is labeled with the bounding rectangle of its projection, clipped to the image, when its centre
is between ``min_depth`` and ``max_depth`` metres ahead, its rectangle is at least ``min_box_pixels`` high
and wide, and at least ``min_visible_fraction`` of its silhouette is not hidden by nearer things.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from PIL import Image, ImageDraw

from alcv.data.frames import CachedFrames
from alcv.data.synthetic_lidar import CLASS_NAMES, GOLF_CART, PEDESTRIAN, SENSOR_HEIGHT, SyntheticLidarWorld
from alcv.geometry import box_corners

#: colour palettes per class (RGB); an object's colour is drawn once per drive from its palette
_PALETTES = {
    0: [(180, 30, 30), (30, 60, 160), (220, 220, 220), (40, 40, 40), (120, 120, 130), (200, 160, 40),
        (20, 110, 60)],
    PEDESTRIAN: [(200, 60, 60), (40, 90, 180), (230, 200, 60), (60, 140, 70), (90, 40, 120)],
    GOLF_CART: [(235, 235, 225), (200, 190, 150), (60, 130, 70)],
}
#: brightness of a face by the direction its normal points: top, then sides facing the camera
_TOP_SHADE, _SIDE_SHADES = 1.15, (0.95, 0.75)
#: corner indices (of alcv.geometry.UNIT_CORNERS) of the six faces of a box, with their outward normals in the
#: box frame
_FACES = [((0, 1, 3, 2), (-1, 0, 0)), ((4, 5, 7, 6), (1, 0, 0)), ((0, 1, 5, 4), (0, -1, 0)),
          ((2, 3, 7, 6), (0, 1, 0)), ((0, 2, 6, 4), (0, 0, -1)), ((1, 3, 7, 5), (0, 0, 1))]


@dataclass(frozen=True)
class CameraFrame:
    """One rendered frame.

    Attributes:
        index: absolute dataset index (the LiDAR world's).
        image: ``(H, W, 3)`` uint8 RGB.
        boxes: ``(M, 4)`` float32 ``[u1, v1, u2, v2]`` pixels (xyxy), clipped to the image.
        labels: ``(M,)`` int64 class ids into :data:`~alcv.data.synthetic_lidar.CLASS_NAMES`.
        drive_id: the drive. timestamp: seconds since the start of the drive.
    """

    index: int
    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    drive_id: int
    timestamp: float


@dataclass(frozen=True)
class _Part:
    """A box to paint: ``box`` ``[x, y, z, dx, dy, dz, yaw]``, its colour and the labeled object it belongs
    to (-1 for clutter)."""

    box: np.ndarray
    colour: tuple[int, int, int]
    owner: int


class SyntheticCameraWorld:
    """The frames of ``lidar_world`` rendered by a forward camera (see the module docstring).

    Args:
        lidar_world: the world to render; its drives, timestamps and splits are this world's.
        width, height: image size in pixels.
        horizontal_fov_degrees: the camera's horizontal field of view.
        min_depth, max_depth: objects whose centre is nearer or farther (metres ahead) are not labeled.
        min_box_pixels: smallest labeled box side, pixels.
        min_visible_fraction: smallest unoccluded share of an object's silhouette for it to be labeled.
        noise_std: standard deviation of the per-pixel sensor noise (0-255 scale).
    """

    class_names: tuple[str, ...] = CLASS_NAMES

    def __init__(self, lidar_world: SyntheticLidarWorld, width: int = 256, height: int = 128,
                 horizontal_fov_degrees: float = 90.0, min_depth: float = 2.0, max_depth: float = 40.0,
                 min_box_pixels: float = 6.0, min_visible_fraction: float = 0.3, noise_std: float = 6.0) -> None:
        if width < 16 or height < 16:
            raise ValueError(f"SyntheticCameraWorld: image size must be at least 16x16, got {width}x{height}")
        if not 10.0 <= horizontal_fov_degrees <= 170.0:
            raise ValueError(f"SyntheticCameraWorld: 'horizontal_fov_degrees' must be in [10, 170], got "
                             f"{horizontal_fov_degrees}")
        if not 0 < min_depth < max_depth:
            raise ValueError(f"SyntheticCameraWorld: need 0 < min_depth < max_depth, got {min_depth}, {max_depth}")
        if not 0.0 <= min_visible_fraction <= 1.0:
            raise ValueError(f"SyntheticCameraWorld: 'min_visible_fraction' must be in [0, 1], got "
                             f"{min_visible_fraction}")
        self.lidar_world = lidar_world
        self.width, self.height = int(width), int(height)
        self.focal = self.width / 2 / np.tan(np.radians(horizontal_fov_degrees) / 2)
        self.cx, self.cy = self.width / 2, self.height / 2
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        self.min_box_pixels = float(min_box_pixels)
        self.min_visible_fraction = float(min_visible_fraction)
        self.noise_std = float(noise_std)

    def __len__(self) -> int:
        return len(self.lidar_world)

    def drive_and_time(self, index: int) -> tuple[int, float]:
        """``(drive_id, seconds since the drive's start)`` of an absolute index: the LiDAR world's."""
        return self.lidar_world.drive_and_time(index)

    def split_indices(self, split: str) -> np.ndarray:
        """Absolute indices of 'pool', 'val' or 'test': the LiDAR world's split, by drive."""
        return self.lidar_world.split_indices(split)

    def project(self, points: np.ndarray) -> np.ndarray:
        """``(..., 3)`` sensor-frame points (x > 0) -> ``(..., 2)`` pixel coordinates ``(u, v)``."""
        depth = points[..., 0]
        return np.stack([self.cx - self.focal * points[..., 1] / depth, self.cy - self.focal * points[..., 2] / depth],
                        axis=-1)

    def _parts(self, scene: object, rng: np.random.Generator) -> list[_Part]:
        """The boxes to paint: labeled objects (as their parts) and clutter, nearest last."""
        drive_rng = np.random.default_rng([self.lidar_world.seed, scene.drive_id, 7])  # type: ignore[attr-defined]
        colours = {label: drive_rng.integers(0, len(palette), size=4096) for label, palette in _PALETTES.items()}
        parts: list[_Part] = []
        for number, (box, label, object_id) in enumerate(zip(scene.objects, scene.labels,  # type: ignore[attr-defined]
                                                             scene.object_ids, strict=True)):  # type: ignore[attr-defined]
            colour = _PALETTES[int(label)][int(colours[int(label)][object_id % 4096])]
            parts += _object_parts(box, int(label), colour, number)
        grey = (int(rng.integers(90, 140)),) * 3
        parts += [_Part(wall, (150, 120, 100), -1) for wall in scene.walls]  # type: ignore[attr-defined]
        for x, y, radius, height in scene.poles:  # type: ignore[attr-defined]
            parts.append(_Part(np.array([x, y, height / 2 - SENSOR_HEIGHT, 2 * radius, 2 * radius, height, 0.0]),
                               grey, -1))
        for x, y, radius, height in scene.bushes:  # type: ignore[attr-defined]
            parts.append(_Part(np.array([x, y, height / 2 - SENSOR_HEIGHT, 2 * radius, 2 * radius, height, 0.0]),
                               (50, 110, 50), -1))
        in_front = [part for part in parts if box_corners(part.box[None])[0, :, 0].min() > 0.3]
        return sorted(in_front, key=lambda part: -float(np.hypot(part.box[0], part.box[1])))

    def _paint(self, draw: ImageDraw.ImageDraw, ids: ImageDraw.ImageDraw, part: _Part) -> None:
        """Paint the faces of ``part`` that face the camera, far to near, into the image and the id map."""
        corners = box_corners(part.box[None])[0]
        pixels = self.project(corners)
        yaw = part.box[6]
        rotation = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
        faces = []
        for indices, normal in _FACES:
            centre = corners[list(indices)].mean(axis=0)
            world_normal = rotation @ np.array(normal, dtype=float)
            if world_normal @ -centre <= 0:  # back face
                continue
            shade = _TOP_SHADE if normal[2] > 0 else _SIDE_SHADES[0] if normal[0] != 0 else _SIDE_SHADES[1]
            faces.append((float(np.linalg.norm(centre)), indices, shade))
        for _, indices, shade in sorted(faces, reverse=True):
            polygon = [tuple(p) for p in pixels[list(indices)].tolist()]
            draw.polygon(polygon, fill=tuple(int(min(255, c * shade)) for c in part.colour))
            ids.polygon(polygon, fill=part.owner + 1)

    def _background(self, rng: np.random.Generator, drive_id: int) -> Image.Image:
        """Sky above the horizon, ground below, and the road ahead, tinted per drive."""
        tint = np.random.default_rng([self.lidar_world.seed, drive_id, 8]).uniform(0.8, 1.1, size=3)
        rows = np.arange(self.height)[:, None]
        sky = np.array([150, 180, 215]) * tint * (0.85 + 0.15 * rows / self.cy)
        ground = np.array([95, 105, 85]) * tint
        canvas = np.where(rows[..., None] < self.cy, sky[:, None, :], ground[None, None, :])
        canvas = np.broadcast_to(canvas, (self.height, self.width, 3)).astype(np.uint8)
        image = Image.fromarray(canvas, "RGB")
        road = np.array([[1.0, 5.0, -SENSOR_HEIGHT], [80.0, 5.0, -SENSOR_HEIGHT], [80.0, -5.0, -SENSOR_HEIGHT],
                         [1.0, -5.0, -SENSOR_HEIGHT]])
        shade = int(rng.integers(60, 80))
        ImageDraw.Draw(image).polygon([tuple(p) for p in self.project(road).tolist()], fill=(shade, shade, shade + 5))
        return image

    def frame(self, index: int) -> CameraFrame:
        """Render frame ``index``: a pure function of ``(seed, index)``."""
        scene = self.lidar_world.scene(index)
        rng = np.random.default_rng([self.lidar_world.seed, scene.drive_id, scene.step, 9])
        image = self._background(rng, scene.drive_id)
        id_map = Image.new("I", (self.width, self.height), 0)
        draw, ids = ImageDraw.Draw(image), ImageDraw.Draw(id_map)
        parts = self._parts(scene, rng)
        for part in parts:
            self._paint(draw, ids, part)
        visible = np.bincount(np.asarray(id_map, dtype=np.int64).ravel(), minlength=len(scene.objects) + 1)[1:]
        boxes, labels = self._labels(scene.objects, scene.labels, parts, visible)

        pixels = np.asarray(image, dtype=np.float32) * rng.uniform(0.75, 1.2)
        pixels += rng.normal(0.0, self.noise_std, pixels.shape)
        return CameraFrame(int(index), np.clip(pixels, 0, 255).astype(np.uint8), boxes, labels, scene.drive_id,
                           scene.time)

    def _labels(self, objects: np.ndarray, labels: np.ndarray, parts: Sequence[_Part],
                visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The labeled boxes ``(M, 4)`` and class ids ``(M,)`` of the objects, by the rules of the module."""
        boxes, kept = [], []
        for number in range(len(objects)):
            own = [part.box for part in parts if part.owner == number]
            depth = objects[number, 0]
            if not own or not self.min_depth <= depth <= self.max_depth:
                continue
            pixels = self.project(box_corners(np.stack(own)).reshape(-1, 3))
            u1, v1 = np.clip(pixels.min(axis=0), 0, [self.width, self.height])
            u2, v2 = np.clip(pixels.max(axis=0), 0, [self.width, self.height])
            if min(u2 - u1, v2 - v1) < self.min_box_pixels:
                continue
            silhouette = Image.new("L", (self.width, self.height), 0)
            outline = ImageDraw.Draw(silhouette)
            for box in own:
                hull = _convex_hull(self.project(box_corners(box[None])[0]))
                outline.polygon([tuple(p) for p in hull.tolist()], fill=1)
            area = int(np.asarray(silhouette, dtype=np.int64).sum())
            if area == 0 or visible[number] < self.min_visible_fraction * area:
                continue
            boxes.append([u1, v1, u2, v2])
            kept.append(number)
        return (np.asarray(boxes, dtype=np.float32).reshape(-1, 4), labels[kept].astype(np.int64))


def _object_parts(box: np.ndarray, label: int, colour: tuple[int, int, int], owner: int) -> list[_Part]:
    """An object as the boxes that draw it: one body for a vehicle; legs and torso for a pedestrian; a low
    body, a roof and two posts for a golf cart (open sides)."""
    x, y, z, dx, dy, dz, yaw = box
    bottom = z - dz / 2
    if label == PEDESTRIAN:
        legs = np.array([x, y, bottom + dz * 0.225, dx, dy * 0.8, dz * 0.45, yaw])
        torso = np.array([x, y, bottom + dz * 0.725, dx, dy, dz * 0.55, yaw])
        return [_Part(legs, (50, 50, 70), owner), _Part(torso, colour, owner)]
    if label == GOLF_CART:
        body = np.array([x, y, bottom + dz * 0.225, dx, dy, dz * 0.45, yaw])
        roof = np.array([x, y, bottom + dz - 0.05, dx * 0.9, dy, 0.1, yaw])
        offset = np.array([np.cos(yaw), np.sin(yaw)]) * dx * 0.4
        posts = [np.array([x + sign * offset[0], y + sign * offset[1], bottom + dz * 0.725, 0.08, dy * 0.9, dz * 0.55,
                           yaw]) for sign in (-1, 1)]
        return [_Part(body, colour, owner), *(_Part(post, (60, 60, 60), owner) for post in posts),
                _Part(roof, colour, owner)]
    return [_Part(box, colour, owner)]


def _convex_hull(points: np.ndarray) -> np.ndarray:
    """Convex hull of ``(N, 2)`` points, counter-clockwise (Andrew's monotone chain)."""
    ordered = sorted(map(tuple, points.tolist()))
    if len(ordered) < 3:
        return np.asarray(ordered)

    def half(sequence: list[tuple[float, float]]) -> list[tuple[float, float]]:
        chain: list[tuple[float, float]] = []
        for point in sequence:
            while len(chain) >= 2 and ((chain[-1][0] - chain[-2][0]) * (point[1] - chain[-2][1])
                                       - (chain[-1][1] - chain[-2][1]) * (point[0] - chain[-2][0])) <= 0:
                chain.pop()
            chain.append(point)
        return chain

    lower, upper = half(ordered), half(ordered[::-1])
    return np.asarray(lower[:-1] + upper[:-1])


class SyntheticCameraDataset(CachedFrames[CameraFrame]):
    """Items of a :class:`SyntheticCameraWorld` by absolute index, in the 2D item contract of :mod:`alcv.data.collate`.

    Each item: ``index``; ``image``, a ``tv_tensors.Image`` uint8 ``(3, H, W)``; ``boxes``, a
    ``tv_tensors.BoundingBoxes`` float32 ``(M, 4)`` XYXY pixels; ``labels`` int64 ``(M,)`` into
    ``class_names``; ``drive_id``; ``timestamp``. Class selection and caching of rendered frames: see
    :class:`~alcv.data.frames.CachedFrames`.
    """

    modality: ClassVar[str] = "camera"

    def __getitem__(self, index: int) -> dict[str, object]:
        import torch
        from torchvision import tv_tensors

        frame = self.frame(int(index))
        height, width = frame.image.shape[:2]
        return {
            "index": frame.index,
            "image": tv_tensors.Image(torch.from_numpy(frame.image).permute(2, 0, 1).contiguous()),
            "boxes": tv_tensors.BoundingBoxes(torch.from_numpy(frame.boxes), format="XYXY",
                                              canvas_size=(height, width)),
            "labels": torch.from_numpy(frame.labels),
            "drive_id": frame.drive_id,
            "timestamp": frame.timestamp,
        }
