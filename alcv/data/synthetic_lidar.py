"""The embedded synthetic LiDAR world: drives of 10 Hz frames, generated on the fly.

Frames belong to **drives**. A drive has a scene type (parking lot, residential street, crossing, open
road) that sets its class mix, crowding, ego speed and clutter; its objects and clutter are laid out once
in a world frame and move with constant velocity, and the ego vehicle drives along +x, so neighbouring
frames of a drive are near-duplicates, as in a fleet log. Everything is a pure function of
``(seed, index)``: the layout of drive ``d`` comes from ``default_rng([seed, d])`` and the sensor noise of
frame ``t`` of drive ``d`` from ``default_rng([seed, d, t])``. Nothing is stored on disk.

Coordinate frame of every frame (the LiDAR frame): origin at the sensor, x forward (the ego heading),
y left, z up, metres; the ground is the plane ``z = -SENSOR_HEIGHT``. Boxes are
``[x, y, z, dx, dy, dz, yaw]`` with ``(x, y, z)`` the box centre, ``dx`` the length along the heading,
``dy`` the width, ``dz`` the height, and ``yaw`` the heading angle around +z (radians, 0 = +x).

The sensor model, per frame: ground returns on 32 beam rings (density falls with range); points on the
faces of each object that face the sensor, their number proportional to the face's solid angle (so it
falls with the square of the range); golf carts have open sides (points on the lower body and the roof
only) and are close in size to small cars; clutter (poles, bushes, walls) that the detector
must learn to reject; occlusion of everything behind an object, wall or bush; Gaussian range noise.
A box is labeled when at least ``min_points_per_box`` of its points survive occlusion and its centre
lies inside ``label_range``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

CLASS_NAMES: tuple[str, ...] = ("vehicle", "pedestrian", "golf_cart")
VEHICLE, PEDESTRIAN, GOLF_CART = 0, 1, 2
SCENE_TYPES: tuple[str, ...] = ("open_road", "residential", "crossing", "parking_lot")
FRAME_PERIOD_S = 0.1
SENSOR_HEIGHT = 1.8
#: elevation angles (radians) of the 32 beams that can hit the ground inside 35 m
BEAM_ELEVATIONS = -np.deg2rad(np.linspace(2.9, 30.0, 32))
#: points per (m^2 of face area x cos(incidence) / range^2): about 150 points on a car side at 10 m
POINT_DENSITY = 2200.0
MAX_POINTS_PER_FACE = 400
RANGE_NOISE_M = 0.02
SHADOW_BIN_DEG = 0.5
SHADOW_ELEVATION_DEG = (-32.0, 16.0)
OCCLUSION_MARGIN_M = 0.3

# (mean, std, low, high) of length, width, height per class, metres
_SIZE_PRIORS = {
    VEHICLE: ((4.4, 0.5, 3.2, 5.6), (1.82, 0.12, 1.55, 2.1), (1.55, 0.15, 1.3, 2.0)),
    PEDESTRIAN: ((0.6, 0.1, 0.4, 0.9), (0.62, 0.1, 0.4, 0.9), (1.72, 0.1, 1.45, 1.95)),
    GOLF_CART: ((2.5, 0.2, 2.1, 3.0), (1.25, 0.08, 1.1, 1.45), (1.85, 0.08, 1.7, 2.0)),
}
# reflectivity range (low, high) per surface kind, used as the point intensity in [0, 1]
_INTENSITY: dict[int | str, tuple[float, float]] = {
    VEHICLE: (0.1, 0.7), PEDESTRIAN: (0.05, 0.3), GOLF_CART: (0.15, 0.5),
    "ground": (0.02, 0.15), "pole": (0.3, 0.6), "bush": (0.02, 0.15), "wall": (0.15, 0.4),
}


@dataclass(frozen=True)
class DriveLayout:
    """Everything of one drive that does not change from frame to frame (world frame, metres).

    ``objects`` and ``walls`` rows are ``[x, y, z, dx, dy, dz, yaw]`` at t = 0 (z = box centre above
    the ground plane at the sensor's origin); ``object_velocity`` is ``(N, 2)`` m/s; ``poles`` rows are
    ``[x, y, radius, height]`` and ``bushes`` rows ``[x, y, radius, height]``.
    """

    drive_id: int
    scene: str
    num_frames: int
    ego_speed: float
    objects: np.ndarray
    object_labels: np.ndarray
    object_velocity: np.ndarray
    walls: np.ndarray
    poles: np.ndarray
    bushes: np.ndarray


@dataclass(frozen=True)
class SceneState:
    """The world around the sensor at one frame, in that frame's sensor frame (metres).

    ``objects`` ``(K, 7)`` boxes with class ids ``labels`` ``(K,)`` and ``object_ids`` ``(K,)`` (rows of the
    drive's layout, stable across the drive's frames); ``walls`` ``(W, 7)`` boxes; ``poles`` and ``bushes``
    rows ``[x, y, radius, height]`` standing on the ground. ``reach``: the radius considered.
    """

    drive_id: int
    step: int
    time: float
    reach: float
    objects: np.ndarray
    labels: np.ndarray
    object_ids: np.ndarray
    walls: np.ndarray
    poles: np.ndarray
    bushes: np.ndarray


@dataclass(frozen=True)
class LidarFrame:
    """One frame in the LiDAR frame of its own timestamp.

    Attributes:
        index: absolute dataset index.
        points: ``(N, 4)`` float32 ``[x, y, z, intensity]``.
        boxes: ``(M, 7)`` float32 ``[x, y, z, dx, dy, dz, yaw]``.
        labels: ``(M,)`` int64 class ids into :data:`CLASS_NAMES`.
        drive_id: the drive the frame belongs to.
        timestamp: seconds since the start of the drive.
    """

    index: int
    points: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    drive_id: int
    timestamp: float


def _sizes(rng: np.random.Generator, label: int, count: int) -> np.ndarray:
    columns = [np.clip(rng.normal(mean, std, count), low, high)
               for mean, std, low, high in _SIZE_PRIORS[label]]
    return np.stack(columns, axis=1) if count else np.zeros((0, 3))


class _LayoutBuilder:
    """Collects the objects of one drive while a scene recipe places them."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.boxes: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []
        self.velocity: list[np.ndarray] = []

    def add(self, label: int, xy: np.ndarray, yaw: np.ndarray, speed: np.ndarray) -> None:
        """Place ``len(xy)`` objects of one class: centres ``(K, 2)``, headings and speeds ``(K,)``."""
        count = len(xy)
        if count == 0:
            return
        size = _sizes(self.rng, label, count)
        z = size[:, 2] / 2 - SENSOR_HEIGHT
        self.boxes.append(np.column_stack([xy, z, size, yaw]))
        self.labels.append(np.full(count, label))
        self.velocity.append(np.column_stack([np.cos(yaw), np.sin(yaw)]) * np.asarray(speed)[:, None])

    def along(self, x_low: float, x_high: float, mean_gap: float) -> np.ndarray:
        """Positions along x with exponential gaps (a Poisson process), as in traffic or parked rows."""
        gaps = self.rng.exponential(mean_gap, size=int((x_high - x_low) / mean_gap * 3) + 4)
        xs = x_low + np.cumsum(gaps)
        return xs[xs < x_high]

    def finish(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self.boxes:
            return np.zeros((0, 7)), np.zeros(0, dtype=np.int64), np.zeros((0, 2))
        return (np.concatenate(self.boxes), np.concatenate(self.labels).astype(np.int64),
                np.concatenate(self.velocity))


def _lane_traffic(build: _LayoutBuilder, x_low: float, x_high: float, lanes: Sequence[float],
                  mean_gap: float, speed: tuple[float, float], golf_cart_share: float) -> None:
    """Moving traffic in lanes along x; lanes with y > 0 drive towards -x (oncoming)."""
    rng = build.rng
    for lane_y in lanes:
        xs = build.along(x_low, x_high, mean_gap)
        heading = np.pi if lane_y > 0 else 0.0
        is_cart = rng.random(xs.size) < golf_cart_share
        for label, chosen in ((VEHICLE, ~is_cart), (GOLF_CART, is_cart)):
            count = int(chosen.sum())
            xy = np.column_stack([xs[chosen], lane_y + rng.normal(0, 0.25, count)])
            yaw = heading + rng.normal(0, 0.03, count)
            low, high = (speed if label == VEHICLE else (2.0, 6.0))
            build.add(label, xy, yaw, rng.uniform(low, high, count))


def _curb_parking(build: _LayoutBuilder, x_low: float, x_high: float, sides: Sequence[float],
                  mean_gap: float, golf_cart_share: float) -> None:
    """Parked vehicles (and a few golf carts) along the curbs at ``y = side``."""
    rng = build.rng
    for side in sides:
        xs = build.along(x_low, x_high, mean_gap)
        is_cart = rng.random(xs.size) < golf_cart_share
        for label, chosen in ((VEHICLE, ~is_cart), (GOLF_CART, is_cart)):
            count = int(chosen.sum())
            xy = np.column_stack([xs[chosen], side + rng.normal(0, 0.15, count)])
            yaw = rng.choice([0.0, np.pi], count) + rng.normal(0, 0.05, count)
            build.add(label, xy, yaw, np.zeros(count))


def _walkers(build: _LayoutBuilder, count: int, x_range: tuple[float, float],
             y_range: tuple[float, float], heading: float | None) -> None:
    """Pedestrians at 0-1.6 m/s; ``heading`` None means any direction, else +-heading."""
    rng = build.rng
    xy = np.column_stack([rng.uniform(*x_range, count), rng.uniform(*y_range, count)])
    if heading is None:
        yaw = rng.uniform(-np.pi, np.pi, count)
    else:
        yaw = heading + rng.choice([0.0, np.pi], count) + rng.normal(0, 0.15, count)
    speed = np.where(rng.random(count) < 0.2, 0.0, rng.uniform(0.8, 1.6, count))
    build.add(PEDESTRIAN, xy, yaw, speed)


def _roadside_clutter(rng: np.random.Generator, x_low: float, x_high: float, pole_y: float,
                      pole_gap: float, bush_count: int, bush_y: tuple[float, float],
                      wall_y: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Poles on both roadsides, bushes in a band, and optional walls along both sides."""
    pole_x = np.arange(x_low + rng.uniform(0, pole_gap), x_high, pole_gap)
    sides = rng.choice([-1.0, 1.0], pole_x.size)
    poles = np.column_stack([pole_x, sides * (pole_y + rng.normal(0, 0.3, pole_x.size)),
                             rng.uniform(0.08, 0.18, pole_x.size), rng.uniform(3.0, 7.0, pole_x.size)])
    bush_sides = rng.choice([-1.0, 1.0], bush_count)
    bushes = np.column_stack([rng.uniform(x_low, x_high, bush_count),
                              bush_sides * rng.uniform(*bush_y, bush_count),
                              rng.uniform(0.4, 1.4, bush_count), rng.uniform(0.5, 1.6, bush_count)])
    walls = []
    if wall_y is not None:
        for side in (-1.0, 1.0):
            start = x_low
            while start < x_high:
                length = rng.uniform(6.0, 25.0)
                if rng.random() < 0.6:
                    height = rng.uniform(1.2, 2.5)
                    walls.append([start + length / 2, side * (wall_y + rng.uniform(0, 2)),
                                  height / 2 - SENSOR_HEIGHT, length, 0.3, height, 0.0])
                start += length + rng.uniform(2.0, 10.0)
    return poles, bushes, np.asarray(walls).reshape(-1, 7)


def _open_road_objects(build: _LayoutBuilder, x_low: float, x_high: float) -> None:
    """Fast lane traffic both ways, rare walkers beyond the shoulders."""
    rng = build.rng
    _lane_traffic(build, x_low - 100, x_high + 100, (-1.75, -5.25, 1.75, 5.25),
                  mean_gap=rng.uniform(30, 90), speed=(10.0, 24.0), golf_cart_share=0.0)
    _walkers(build, rng.poisson(0.4), (x_low, x_high), (8.0, 12.0), heading=0.0)


def _residential_objects(build: _LayoutBuilder, x_low: float, x_high: float) -> None:
    """Cars parked along both curbs, slow traffic, walkers on both sidewalks."""
    rng = build.rng
    _curb_parking(build, x_low, x_high, (-4.6, 4.6), mean_gap=rng.uniform(6, 14),
                  golf_cart_share=0.04)
    _lane_traffic(build, x_low - 40, x_high + 40, (-1.6, 1.6), mean_gap=rng.uniform(40, 90),
                  speed=(5.0, 12.0), golf_cart_share=0.05)
    _walkers(build, rng.poisson(0.08 * (x_high - x_low)), (x_low, x_high), (6.0, 7.5), heading=0.0)
    _walkers(build, rng.poisson(0.08 * (x_high - x_low)), (x_low, x_high), (-7.5, -6.0), heading=0.0)


def _crossing_objects(build: _LayoutBuilder, x_low: float, x_high: float) -> None:
    """Parked cars up to the crossing, a queue ahead, cross traffic, pedestrians on the crosswalks and
    sidewalks."""
    rng = build.rng
    crossing_x = rng.uniform(12.0, 18.0)
    _curb_parking(build, x_low, crossing_x - 10, (-4.6, 4.6), mean_gap=rng.uniform(8, 20),
                  golf_cart_share=0.03)
    queue_x = np.cumsum(rng.uniform(6.0, 8.0, rng.integers(0, 4))) * -1 + crossing_x - 8
    build.add(VEHICLE, np.column_stack([queue_x, np.full(queue_x.size, 1.6)]),
              np.full(queue_x.size, np.pi), np.zeros(queue_x.size))
    for lane_x, heading in ((crossing_x - 1.75, np.pi / 2), (crossing_x + 1.75, -np.pi / 2)):
        ys = build.along(-120.0, 120.0, rng.uniform(25, 60))
        is_cart = rng.random(ys.size) < 0.06
        for label, chosen in ((VEHICLE, ~is_cart), (GOLF_CART, is_cart)):
            count = int(chosen.sum())
            build.add(label, np.column_stack([np.full(count, lane_x), ys[chosen]]),
                      np.full(count, heading), rng.uniform(4.0, 11.0, count))
    for walk_x in (crossing_x - 7.0, crossing_x + 7.0):
        _walkers(build, rng.poisson(4.0), (walk_x - 1.5, walk_x + 1.5), (-14.0, 14.0),
                 heading=np.pi / 2)
    _walkers(build, rng.poisson(5.0), (x_low, x_high), (5.5, 9.0), heading=0.0)
    _walkers(build, rng.poisson(5.0), (x_low, x_high), (-9.0, -5.5), heading=0.0)


def _parking_lot_objects(build: _LayoutBuilder, x_low: float, x_high: float) -> None:
    """Rows of slots, partly occupied (a few by golf carts), walkers, golf carts driving."""
    rng = build.rng
    slot_x = np.arange(x_low, x_high, 2.7)
    for row_y in (-16.5, -11.5, -5.0, 5.0, 11.5, 16.5):
        occupied = rng.random(slot_x.size) < rng.uniform(0.35, 0.85)
        is_cart = rng.random(slot_x.size) < 0.07
        for label, chosen in ((VEHICLE, occupied & ~is_cart), (GOLF_CART, occupied & is_cart)):
            count = int(chosen.sum())
            xy = np.column_stack([slot_x[chosen] + rng.normal(0, 0.15, count),
                                  np.full(count, row_y) + rng.normal(0, 0.3, count)])
            yaw = np.sign(row_y) * np.pi / 2 + rng.choice([0.0, np.pi], count) \
                + rng.normal(0, 0.06, count)
            build.add(label, xy, yaw, np.zeros(count))
    _walkers(build, rng.poisson(0.1 * (x_high - x_low)), (x_low, x_high), (-18.0, 18.0), None)
    carts = rng.poisson(0.6)
    build.add(GOLF_CART, np.column_stack([rng.uniform(x_low, x_high, carts),
                                          rng.choice([-8.2, 8.2], carts)]),
              rng.choice([0.0, np.pi], carts), rng.uniform(2.0, 5.0, carts))


@dataclass(frozen=True)
class _Scene:
    """How one scene type is laid out, in the order its random numbers are drawn: the ego speed (m/s); the
    world reaching ``behind`` metres behind the start and ``ahead`` metres past where the ego ends; the
    ``objects`` in it; then the roadside clutter (:func:`_roadside_clutter`: poles at ``pole_y`` every
    ``pole_gap`` metres, drawn from that range, ``bushes_per_metre`` bushes at ``bush_y``, walls at ``wall_y``)."""

    ego_speed: Callable[[np.random.Generator], float]
    behind: float
    ahead: float
    objects: Callable[[_LayoutBuilder, float, float], None]
    pole_y: float
    pole_gap: tuple[float, float]
    bushes_per_metre: float
    bush_y: tuple[float, float]
    wall_y: float | None = None


_SCENES = {
    "open_road": _Scene(lambda rng: rng.uniform(12.0, 20.0), 60.0, 60.0, _open_road_objects,
                        pole_y=9.0, pole_gap=(25, 45), bushes_per_metre=0.15, bush_y=(9.0, 20.0)),
    "residential": _Scene(lambda rng: rng.uniform(4.0, 9.0), 40.0, 40.0, _residential_objects,
                          pole_y=6.0, pole_gap=(15, 30), bushes_per_metre=0.2, bush_y=(8.5, 12.0), wall_y=9.0),
    # the ego stopped or creeping
    "crossing": _Scene(lambda rng: rng.choice([0.0, rng.uniform(0.5, 3.0)]), 30.0, 40.0, _crossing_objects,
                       pole_y=6.0, pole_gap=(10, 20), bushes_per_metre=0.1, bush_y=(9.0, 14.0)),
    "parking_lot": _Scene(lambda rng: rng.uniform(1.5, 4.0), 35.0, 35.0, _parking_lot_objects,
                          pole_y=8.2, pole_gap=(12, 25), bushes_per_metre=0.05, bush_y=(19.0, 24.0)),
}


def _layout(seed: int, drive_id: int, num_frames: int, scene: str) -> DriveLayout:
    """Lay out one drive's objects and clutter in its world frame (ego starts at the origin, +x)."""
    if scene not in _SCENES:
        raise ValueError(f"unknown scene type '{scene}', expected one of {SCENE_TYPES}")
    kind, rng = _SCENES[scene], np.random.default_rng([seed, drive_id, 1])
    build = _LayoutBuilder(rng)
    ego_speed = kind.ego_speed(rng)
    x_low, x_high = -kind.behind, ego_speed * (num_frames * FRAME_PERIOD_S) + kind.ahead
    kind.objects(build, x_low, x_high)
    poles, bushes, walls = _roadside_clutter(rng, x_low, x_high, pole_y=kind.pole_y,
                                             pole_gap=rng.uniform(*kind.pole_gap),
                                             bush_count=rng.poisson(kind.bushes_per_metre * (x_high - x_low)),
                                             bush_y=kind.bush_y, wall_y=kind.wall_y)
    objects, labels, velocity = build.finish()
    return DriveLayout(drive_id, scene, num_frames, float(ego_speed), objects, labels, velocity,
                       walls, poles, bushes)


# ---------------------------------------------------------------------------------------- sensor model
def _box_faces(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Side and top faces of ``(K, 7)`` boxes.

    Returns, for ``F = 5K`` faces (4 sides then the top of each box, box-major): centres ``(F, 3)``,
    outward normals ``(F, 3)``, the two in-plane half-extent vectors ``(F, 3)`` and ``(F, 3)``.
    """
    count = len(boxes)
    cos, sin = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    forward = np.column_stack([cos, sin, np.zeros(count)])
    left = np.column_stack([-sin, cos, np.zeros(count)])
    up = np.tile([0.0, 0.0, 1.0], (count, 1))
    half = boxes[:, 3:6] / 2
    centre = boxes[:, :3]
    normals = np.stack([forward, -forward, left, -left, up], axis=1)
    offsets = np.stack([half[:, 0:1], half[:, 0:1], half[:, 1:2], half[:, 1:2], half[:, 2:3]], axis=1)
    span_a = np.stack([left * half[:, 1:2], left * half[:, 1:2], forward * half[:, 0:1],
                       forward * half[:, 0:1], forward * half[:, 0:1]], axis=1)
    span_b = np.stack([up * half[:, 2:3]] * 4 + [left * half[:, 1:2]], axis=1)
    centres = centre[:, None, :] + normals * offsets
    return (centres.reshape(-1, 3), normals.reshape(-1, 3), span_a.reshape(-1, 3),
            span_b.reshape(-1, 3))


def _sample_faces(rng: np.random.Generator, boxes: np.ndarray, density_scale: np.ndarray,
                  lower_fraction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points on the faces of ``boxes`` that face the sensor at the origin.

    ``density_scale`` ``(K,)`` scales the side-face density and ``lower_fraction`` ``(K,)`` restricts
    side-face points to the lower part of the side (1 = whole side; golf carts are open above the body).
    Returns points ``(N, 3)`` and the box each came from ``(N,)``.
    """
    centres, normals, span_a, span_b = _box_faces(boxes)
    to_sensor = -centres
    distance = np.linalg.norm(to_sensor, axis=1)
    cos_incidence = np.einsum("fd,fd->f", normals, to_sensor) / np.maximum(distance, 1e-6)
    area = 4 * np.linalg.norm(span_a, axis=1) * np.linalg.norm(span_b, axis=1)
    is_side = np.tile([True, True, True, True, False], len(boxes))
    face_box = np.repeat(np.arange(len(boxes)), 5)
    scale = np.where(is_side, density_scale[face_box] * lower_fraction[face_box], 1.0)
    expected = POINT_DENSITY * area * np.clip(cos_incidence, 0, None) * scale / np.maximum(distance, 1) ** 2
    counts = np.minimum(rng.poisson(expected), MAX_POINTS_PER_FACE)
    face_of_point = np.repeat(np.arange(len(counts)), counts)
    u = rng.uniform(-1, 1, face_of_point.size)
    v = rng.uniform(-1, 1, face_of_point.size)
    low = lower_fraction[face_box][face_of_point]
    v = np.where(is_side[face_of_point], -1 + (v + 1) * low, v)
    points = centres[face_of_point] + span_a[face_of_point] * u[:, None] + span_b[face_of_point] * v[:, None]
    return points, face_box[face_of_point]


def _sample_cylinders(rng: np.random.Generator, xy: np.ndarray, radius: np.ndarray,
                      height: np.ndarray, solid: bool) -> tuple[np.ndarray, np.ndarray]:
    """Points on the sensor-facing half of vertical cylinders standing on the ground.

    ``solid=False`` scatters points through the volume instead (foliage). Returns ``(N, 3)`` points
    and the cylinder of each ``(N,)``.
    """
    distance = np.maximum(np.linalg.norm(xy, axis=1), 1.0)
    expected = POINT_DENSITY * 2 * radius * height / distance**2 * (1.0 if solid else 0.6)
    counts = np.minimum(rng.poisson(expected), MAX_POINTS_PER_FACE)
    owner = np.repeat(np.arange(len(xy)), counts)
    facing = np.arctan2(-xy[owner, 1], -xy[owner, 0])
    angle = facing + rng.uniform(-np.pi / 2, np.pi / 2, owner.size)
    reach = radius[owner] * (1.0 if solid else np.sqrt(rng.uniform(0.2, 1.0, owner.size)))
    points = np.column_stack([xy[owner, 0] + reach * np.cos(angle), xy[owner, 1] + reach * np.sin(angle),
                              rng.uniform(0, 1, owner.size) * height[owner] - SENSOR_HEIGHT])
    return points, owner


def _ground(rng: np.random.Generator, max_range: float, count_per_ring: int) -> np.ndarray:
    """Ground returns on the beam rings whose range is inside ``max_range``."""
    ring_range = SENSOR_HEIGHT / np.tan(-BEAM_ELEVATIONS)
    ring_range = ring_range[ring_range < max_range]
    ranges = np.repeat(ring_range, count_per_ring)
    azimuth = rng.uniform(-np.pi, np.pi, ranges.size)
    ranges = ranges + rng.normal(0, 0.05 * ranges / 10 + 0.02, ranges.size)
    return np.column_stack([ranges * np.cos(azimuth), ranges * np.sin(azimuth),
                            rng.normal(-SENSOR_HEIGHT, 0.03, ranges.size)])


def _occluders(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Angular shadow of each box seen from the origin.

    Returns the azimuth of the centre, the half-width of the azimuth interval, the range of the nearest
    corner and the elevation angle of the top edge at that range, each ``(K,)``.
    """
    cos, sin = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    corner_x = np.array([1, 1, -1, -1]) * boxes[:, 3:4] / 2
    corner_y = np.array([1, -1, 1, -1]) * boxes[:, 4:5] / 2
    xs = boxes[:, 0:1] + corner_x * cos[:, None] - corner_y * sin[:, None]
    ys = boxes[:, 1:2] + corner_x * sin[:, None] + corner_y * cos[:, None]
    centre_azimuth = np.arctan2(boxes[:, 1], boxes[:, 0])
    delta = _wrap(np.arctan2(ys, xs) - centre_azimuth[:, None])
    half_width = np.abs(delta).max(axis=1)
    near = np.hypot(xs, ys).min(axis=1)
    top = boxes[:, 2] + boxes[:, 5] / 2
    return centre_azimuth, half_width, near, np.arctan2(top, near)


def _wrap(angle: np.ndarray) -> np.ndarray:
    """Angles wrapped into [-pi, pi)."""
    return (angle + np.pi) % (2 * np.pi) - np.pi


def _visible(points: np.ndarray, owner: np.ndarray, occluder_boxes: np.ndarray) -> np.ndarray:
    """Mask of ``(N, 3)`` points not hidden behind any of ``(K, 7)`` occluder boxes.

    ``owner`` ``(N,)`` is the occluder row each point lies on (-1 for none): nothing hides itself.
    Occlusion is resolved on a shadow map of ``SHADOW_BIN_DEG`` azimuth x elevation bins: each occluder
    shadows the bins of its azimuth interval below its top edge, beyond its nearest corner; the map
    keeps the nearest and the second-nearest shadow of each bin so that an occluder is never tested
    against its own shadow.
    """
    keep = np.ones(len(points), dtype=bool)
    if len(occluder_boxes) == 0 or len(points) == 0:
        return keep
    bin_size = np.deg2rad(SHADOW_BIN_DEG)
    num_azimuth = round(2 * np.pi / bin_size)
    elevation_low = np.deg2rad(SHADOW_ELEVATION_DEG[0])
    num_elevation = round(np.deg2rad(SHADOW_ELEVATION_DEG[1] - SHADOW_ELEVATION_DEG[0]) / bin_size)
    nearest = np.full((num_azimuth, num_elevation), np.inf, dtype=np.float32)
    nearest_id = np.full((num_azimuth, num_elevation), -1)
    second = np.full((num_azimuth, num_elevation), np.inf, dtype=np.float32)
    centre_azimuth, half_width, near, top_elevation = _occluders(occluder_boxes)
    first_bin = np.floor((centre_azimuth - half_width + np.pi) / bin_size).astype(int)
    last_bin = np.floor((centre_azimuth + half_width + np.pi) / bin_size).astype(int)
    top_bin = np.clip(np.ceil((top_elevation - elevation_low) / bin_size).astype(int), 0, num_elevation)
    for k in np.flatnonzero(half_width < np.pi / 2):  # an occluder around the sensor is ignored
        rows = np.arange(first_bin[k], last_bin[k] + 1) % num_azimuth
        region = (rows[:, None], slice(0, top_bin[k]))
        closer = near[k] < nearest[region]
        second[region] = np.where(closer, nearest[region], np.minimum(second[region], near[k]))
        nearest_id[region] = np.where(closer, k, nearest_id[region])
        nearest[region] = np.where(closer, near[k], nearest[region])
    ranges = np.hypot(points[:, 0], points[:, 1])
    azimuth_bin = np.floor((np.arctan2(points[:, 1], points[:, 0]) + np.pi) / bin_size).astype(int) % num_azimuth
    elevation_bin = np.clip(np.floor((np.arctan2(points[:, 2], ranges) - elevation_low) / bin_size).astype(int),
                            0, num_elevation - 1)
    own_shadow = nearest_id[azimuth_bin, elevation_bin] == owner
    blocking = np.where(own_shadow, second[azimuth_bin, elevation_bin], nearest[azimuth_bin, elevation_bin])
    return ranges <= blocking + OCCLUSION_MARGIN_M


class SyntheticLidarWorld:
    """A deterministic fleet log of synthetic LiDAR frames, split into pool / val / test by drive.

    Args:
        seed: fixes the drives, their layouts and the split; the same seed gives the same frames.
        pool_frames, val_frames, test_frames: approximate frame counts of each split. Whole drives are
            assigned in a seeded random order until each split reaches its count, so the real counts
            exceed these by less than one drive.
        drive_frames: inclusive range of drive lengths in frames (10 Hz).
        scene_weights: relative frequency of each scene type, in the order of :data:`SCENE_TYPES`.
        min_points_per_box: a box is labeled only if this many of its points are visible.
        label_range: half-size in metres of the square around the sensor inside which boxes are labeled.
        point_range: half-size of the square in which points are kept.
    """

    class_names: tuple[str, ...] = CLASS_NAMES

    def __init__(self, seed: int = 0, pool_frames: int = 2000, val_frames: int = 200,
                 test_frames: int = 500, drive_frames: tuple[int, int] = (30, 90),
                 scene_weights: Sequence[float] = (0.3, 0.35, 0.2, 0.15), min_points_per_box: int = 3,
                 label_range: float = 20.0, point_range: float = 22.0) -> None:
        for name, value in (("pool_frames", pool_frames), ("test_frames", test_frames)):
            if value <= 0:
                raise ValueError(f"SyntheticLidarWorld: '{name}' must be > 0, got {value}")
        if val_frames < 0:
            raise ValueError(f"SyntheticLidarWorld: 'val_frames' must be >= 0, got {val_frames}")
        low, high = drive_frames
        if not 1 <= low <= high:
            raise ValueError(f"SyntheticLidarWorld: 'drive_frames' must be [low, high] with 1 <= low <= high, "
                             f"got {list(drive_frames)}")
        weights = np.asarray(scene_weights, dtype=float)
        if weights.shape != (len(SCENE_TYPES),) or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"SyntheticLidarWorld: 'scene_weights' must be {len(SCENE_TYPES)} non-negative "
                             f"weights for {SCENE_TYPES}, got {list(scene_weights)}")
        self.seed = int(seed)
        self.min_points_per_box = int(min_points_per_box)
        self.label_range = float(label_range)
        self.point_range = float(point_range)
        rng = np.random.default_rng([self.seed, 0])
        targets = {"test": test_frames, "val": val_frames, "pool": pool_frames}
        lengths: list[int] = []
        while sum(lengths) < sum(targets.values()) + high * len(targets):
            lengths.append(int(rng.integers(low, high + 1)))
        self.drive_lengths = np.asarray(lengths)
        self.drive_scenes = rng.choice(len(SCENE_TYPES), size=len(lengths), p=weights / weights.sum())
        self.drive_start = np.concatenate([[0], np.cumsum(self.drive_lengths)[:-1]])
        # assign whole drives to splits in a seeded order; leftover drives are not used
        order = rng.permutation(len(lengths))
        self.drive_split = np.full(len(lengths), "", dtype=object)
        position = 0
        for split, target in targets.items():
            taken = 0
            while taken < target and position < len(order):
                self.drive_split[order[position]] = split
                taken += self.drive_lengths[order[position]]
                position += 1
        self._frame_drive = np.repeat(np.arange(len(lengths)), self.drive_lengths)

    def __len__(self) -> int:
        """Number of frames in all drives (including drives assigned to no split)."""
        return int(self.drive_lengths.sum())

    def split_indices(self, split: str) -> np.ndarray:
        """Absolute indices of the frames of ``split`` ('pool', 'val' or 'test'), ascending."""
        if split not in ("pool", "val", "test"):
            raise ValueError(f"unknown split '{split}', expected 'pool', 'val' or 'test'")
        return np.flatnonzero(self.drive_split[self._frame_drive] == split)

    def drive_of(self, index: int) -> tuple[int, int]:
        """``(drive_id, frame number within the drive)`` of an absolute index."""
        if not 0 <= index < len(self):
            raise IndexError(f"frame index {index} outside [0, {len(self)})")
        drive = int(self._frame_drive[index])
        return drive, int(index - self.drive_start[drive])

    def drive_and_time(self, index: int) -> tuple[int, float]:
        """``(drive_id, seconds since the drive's start)`` of an absolute index."""
        drive, step = self.drive_of(index)
        return drive, step * FRAME_PERIOD_S

    def layout(self, drive_id: int) -> DriveLayout:
        return _cached_layout(self.seed, drive_id, int(self.drive_lengths[drive_id]),
                              SCENE_TYPES[self.drive_scenes[drive_id]])

    def scene(self, index: int) -> SceneState:
        """What is around the sensor at frame ``index`` (objects, walls, poles and bushes within reach of
        the point range), in the sensor frame of that frame; a pure function of ``(seed, index)``."""
        drive_id, step = self.drive_of(index)
        layout = self.layout(drive_id)
        time = step * FRAME_PERIOD_S
        ego_x = layout.ego_speed * time

        def to_sensor(boxes: np.ndarray, velocity: np.ndarray | None = None) -> np.ndarray:
            moved = boxes.copy()
            if velocity is not None:
                moved[:, :2] += velocity * time
            moved[:, 0] -= ego_x
            return moved

        reach = self.point_range * np.sqrt(2) + 3.0

        def near(boxes: np.ndarray) -> np.ndarray:
            return np.hypot(boxes[:, 0], boxes[:, 1]) < reach + np.hypot(boxes[:, 3], boxes[:, 4]) / 2

        objects = to_sensor(layout.objects, layout.object_velocity)
        object_mask = near(objects)
        walls = to_sensor(layout.walls)
        pole_xy = layout.poles[:, :2] - [ego_x, 0.0]
        pole_mask = np.hypot(pole_xy[:, 0], pole_xy[:, 1]) < reach
        bush_xy = layout.bushes[:, :2] - [ego_x, 0.0]
        bush_mask = np.hypot(bush_xy[:, 0], bush_xy[:, 1]) < reach
        return SceneState(drive_id, step, time, reach, objects[object_mask], layout.object_labels[object_mask],
                          np.flatnonzero(object_mask), walls[near(walls)],
                          np.column_stack([pole_xy, layout.poles[:, 2:]])[pole_mask],
                          np.column_stack([bush_xy, layout.bushes[:, 2:]])[bush_mask])

    def frame(self, index: int) -> LidarFrame:
        """Generate frame ``index``: a pure function of ``(seed, index)``."""
        scene = self.scene(index)
        drive_id, time, reach = scene.drive_id, scene.time, scene.reach
        rng = np.random.default_rng([self.seed, drive_id, scene.step, 2])
        objects, labels, walls = scene.objects, scene.labels, scene.walls
        pole_xy, pole_radius, pole_height = scene.poles[:, :2], scene.poles[:, 2], scene.poles[:, 3]
        bushes = scene.bushes
        bush_xy = bushes[:, :2]

        is_cart = labels == GOLF_CART
        object_points, object_owner = _sample_faces(
            rng, objects, density_scale=np.where(is_cart, 0.8, 1.0), lower_fraction=np.where(is_cart, 0.45, 1.0))
        roof = objects[is_cart].copy()  # golf-cart roof: a thin slab at full height above the open sides
        roof[:, 2] += roof[:, 5] / 2 - 0.05
        roof[:, 5] = 0.1
        roof_points, roof_owner = _sample_faces(rng, roof, np.ones(len(roof)), np.ones(len(roof)))
        wall_points, wall_owner = _sample_faces(rng, walls, np.ones(len(walls)), np.ones(len(walls)))
        pole_points, _ = _sample_cylinders(rng, pole_xy, pole_radius, pole_height, solid=True)
        bush_points, bush_owner = _sample_cylinders(rng, bush_xy, bushes[:, 2], bushes[:, 3], solid=False)
        ground = _ground(rng, reach, count_per_ring=180)
        bush_boxes = np.column_stack([bush_xy, bushes[:, 3] / 2 - SENSOR_HEIGHT,
                                      bushes[:, 2] * 2, bushes[:, 2] * 2, bushes[:, 3], np.zeros(len(bushes))])

        # occluders are objects 0..K-1, then walls, then bushes; poles and ground occlude nothing (-1)
        num_objects, num_walls = len(objects), len(walls)
        owner_of_cart_roof = np.flatnonzero(is_cart)[roof_owner]
        object_intensity = np.array([_INTENSITY[label] for label in range(len(CLASS_NAMES))])
        parts = [  # (points, occluder id, intensity low, intensity high)
            (object_points, object_owner, *object_intensity[labels[object_owner]].T),
            (roof_points, owner_of_cart_roof, *object_intensity[labels[owner_of_cart_roof]].T),
            (wall_points, num_objects + wall_owner, *_INTENSITY["wall"]),
            (pole_points, -1, *_INTENSITY["pole"]),
            (bush_points, num_objects + num_walls + bush_owner, *_INTENSITY["bush"]),
            (ground, -1, *_INTENSITY["ground"]),
        ]
        points = np.concatenate([part[0] for part in parts])
        owner = np.concatenate([np.broadcast_to(part[1], len(part[0])) for part in parts]).astype(np.int64)
        low = np.concatenate([np.broadcast_to(part[2], len(part[0])) for part in parts])
        high = np.concatenate([np.broadcast_to(part[3], len(part[0])) for part in parts])
        keep = _visible(points, owner, np.concatenate([objects, walls, bush_boxes]))
        keep &= (np.abs(points[:, 0]) < self.point_range) & (np.abs(points[:, 1]) < self.point_range)
        points = points[keep] + rng.normal(0, RANGE_NOISE_M, (int(keep.sum()), 3))
        intensity = rng.uniform(low[keep], high[keep])
        cloud = np.column_stack([points, intensity]).astype(np.float32)

        owner = owner[keep]
        visible_counts = np.bincount(owner[(owner >= 0) & (owner < num_objects)], minlength=num_objects)
        labeled = (visible_counts >= self.min_points_per_box) \
            & (np.abs(objects[:, 0]) < self.label_range) & (np.abs(objects[:, 1]) < self.label_range)
        boxes = objects[labeled].copy()
        boxes[:, 6] = _wrap(boxes[:, 6])
        return LidarFrame(index=int(index), points=cloud, boxes=boxes.astype(np.float32),
                          labels=labels[labeled].astype(np.int64), drive_id=drive_id, timestamp=time)


@functools.lru_cache(maxsize=256)
def _cached_layout(seed: int, drive_id: int, num_frames: int, scene: str) -> DriveLayout:
    return _layout(seed, drive_id, num_frames, scene)
