"""Tests of the exact rotated-box IoU (alcv.metrics.rotated_iou)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from alcv.metrics import bev_iou, bev_iou_pairs, box_corners_bev, iou_3d, iou_3d_pairs, rotated_iou


def box(
    x: float = 0.0,
    y: float = 0.0,
    z: float = 0.0,
    dx: float = 1.0,
    dy: float = 1.0,
    dz: float = 1.0,
    yaw: float = 0.0,
) -> np.ndarray:
    """One ``(1, 7)`` box ``[x, y, z, dx, dy, dz, yaw]``."""
    return np.array([[x, y, z, dx, dy, dz, yaw]], dtype=np.float64)


def one(iou: np.ndarray) -> float:
    assert iou.shape == (1, 1)
    return float(iou[0, 0])


# ---------------------------------------------------------------------------------------------------------
# Corners
# ---------------------------------------------------------------------------------------------------------


def test_corners_are_counter_clockwise_and_rotated_about_the_centre() -> None:
    # 2 x 1 box at (1, 2) heading +y (yaw 90°): box-frame corners (-1, -.5), (1, -.5), (1, .5), (-1, .5)
    # map to (x, y) -> (-y, x) + centre.
    corners = box_corners_bev(box(x=1.0, y=2.0, dx=2.0, dy=1.0, yaw=math.pi / 2))
    np.testing.assert_allclose(corners[0], [[1.5, 1.0], [1.5, 3.0], [0.5, 3.0], [0.5, 1.0]], atol=1e-12)
    x, y = corners[0, :, 0], corners[0, :, 1]
    signed_area = 0.5 * np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y)
    assert signed_area == pytest.approx(2.0)  # positive = counter-clockwise
    assert box_corners_bev(np.zeros((0, 7))).shape == (0, 4, 2)


# ---------------------------------------------------------------------------------------------------------
# Hand-computed BEV IoUs
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("yaw", [0.0, 0.3, -2.0, math.pi / 2])
def test_identical_boxes_have_iou_one(yaw: float) -> None:
    b = box(x=3.0, y=-1.0, dx=4.2, dy=1.7, yaw=yaw)
    assert one(bev_iou(b, b)) == pytest.approx(1.0, abs=1e-9)
    assert one(iou_3d(b, b)) == pytest.approx(1.0, abs=1e-9)


def test_disjoint_boxes_have_iou_zero() -> None:
    assert one(bev_iou(box(), box(x=5.0))) == 0.0
    # Bounding circles overlap but the rotated rectangles do not: 2 x 0.2 sticks side by side 0.5 apart.
    assert one(bev_iou(box(dx=2.0, dy=0.2, yaw=0.4), box(y=0.5, dx=2.0, dy=0.2, yaw=0.4))) == 0.0


def test_square_rotated_by_90_degrees_is_the_same_square() -> None:
    assert one(bev_iou(box(dx=2.0, dy=2.0), box(dx=2.0, dy=2.0, yaw=math.pi / 2))) == pytest.approx(1.0, abs=1e-12)


def test_rectangle_against_itself_rotated_by_90_degrees() -> None:
    # 2 x 1 and 1 x 2 about the same centre: intersection is the 1 x 1 square, union 2 + 2 - 1 = 3.
    assert one(bev_iou(box(dx=2.0, dy=1.0), box(dx=2.0, dy=1.0, yaw=math.pi / 2))) == pytest.approx(1 / 3)


def test_axis_aligned_boxes_shifted_by_half_a_length() -> None:
    # 2 x 1 boxes at x = 0 and x = 1: intersection [0, 1] x [-.5, .5] = 1, union 2 + 2 - 1 = 3.
    assert one(bev_iou(box(dx=2.0), box(x=1.0, dx=2.0))) == pytest.approx(1 / 3)


def test_parallel_rotated_boxes_shifted_across_their_width() -> None:
    # Same as above in a rotated frame: 2 x 1 boxes at yaw 0.7, the second moved 0.5 m along the width axis
    # (-sin, cos): intersection 2 x 0.5 = 1, union 3.
    yaw = 0.7
    shifted = box(x=-0.5 * math.sin(yaw), y=0.5 * math.cos(yaw), dx=2.0, yaw=yaw)
    assert one(bev_iou(box(dx=2.0, yaw=yaw), shifted)) == pytest.approx(1 / 3)


def test_box_inside_box_is_the_ratio_of_areas() -> None:
    # 1 x 0.5 (area 0.5) rotated by 0.3 inside 4 x 2 (area 8), off-centre: IoU = 0.5 / 8.
    assert one(bev_iou(box(dx=4.0, dy=2.0), box(x=0.7, y=-0.2, dx=1.0, dy=0.5, yaw=0.3))) == pytest.approx(1 / 16)


def test_unit_square_against_itself_rotated_by_45_degrees() -> None:
    # The rotated square's vertices lie at distance √2/2 on the axes, h = √2/2 - 1/2 beyond the unit square's
    # edges. Each sticks out as a right isosceles triangle of height h and base 2h, area h². The intersection
    # (a regular octagon) is 1 - 4h² = 1 - (√2 - 1)² = 2(√2 - 1) ≈ 0.8284 and the union 2 - 2(√2 - 1), so
    # IoU = (√2 - 1) / (2 - √2) = 1/√2.
    intersection = 2 * (math.sqrt(2) - 1)
    expected = intersection / (2 - intersection)
    assert expected == pytest.approx(1 / math.sqrt(2))
    assert one(bev_iou(box(), box(yaw=math.pi / 4))) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("yaw", [0.0, 0.4, -1.9])
def test_yaw_plus_pi_is_the_same_box(yaw: float) -> None:
    a = box(x=1.0, y=2.0, z=0.5, dx=3.0, dy=1.2, dz=1.5, yaw=yaw)
    b = box(x=1.0, y=2.0, z=0.5, dx=3.0, dy=1.2, dz=1.5, yaw=yaw + math.pi)
    assert one(bev_iou(a, b)) == pytest.approx(1.0, abs=1e-9)
    assert one(iou_3d(a, b)) == pytest.approx(1.0, abs=1e-9)
    other = box(x=2.0, y=2.5, dx=2.0, dy=2.0, yaw=0.2)
    assert one(bev_iou(a, other)) == pytest.approx(one(bev_iou(b, other)), abs=1e-12)


def test_touching_boxes_have_iou_zero() -> None:
    assert one(bev_iou(box(dx=2.0), box(x=2.0, dx=2.0))) == 0.0  # shared edge x = 1
    assert one(bev_iou(box(), box(x=1.0, y=1.0))) == 0.0  # shared corner
    # Shared edge of rotated boxes: the second is moved by its length along the heading.
    yaw = 0.9
    ahead = box(x=2.0 * math.cos(yaw), y=2.0 * math.sin(yaw), dx=2.0, yaw=yaw)
    assert one(bev_iou(box(dx=2.0, yaw=yaw), ahead)) == pytest.approx(0.0, abs=1e-12)
    assert one(iou_3d(box(dz=1.0), box(z=1.0, dz=1.0))) == 0.0  # top face on bottom face


def test_random_boxes_touching_end_to_end_have_iou_exactly_zero() -> None:
    # Each box against itself moved by its length along its heading: the boxes share an edge. Far from the
    # origin the moved corners are off by rounding; vertices within a tiny tolerance of an edge count as on it.
    boxes = _random_boxes(np.random.default_rng(11), 300, spread=1e4)
    ahead = boxes.copy()
    ahead[:, 0] += boxes[:, 3] * np.cos(boxes[:, 6])
    ahead[:, 1] += boxes[:, 3] * np.sin(boxes[:, 6])
    np.testing.assert_array_equal(bev_iou_pairs(boxes, ahead), 0.0)


def test_iou_of_the_same_box_never_exceeds_one() -> None:
    # yaw + pi moves every corner by rounding only; the intersection is capped by the smaller box.
    boxes = _random_boxes(np.random.default_rng(12), 300, spread=1e4)
    flipped = boxes + np.array([0, 0, 0, 0, 0, 0, np.pi])
    for fn in (bev_iou_pairs, iou_3d_pairs):
        iou = fn(boxes, flipped)
        assert iou.max() <= 1.0 and iou.min() == pytest.approx(1.0, abs=1e-9)


def test_large_coordinates_keep_full_precision() -> None:
    far = np.array([[1e6, -2e6, 10.0, 0.0, 0.0, 0.0, 0.0]])
    a = box(dx=2.0, yaw=0.3)
    b = box(x=0.4, y=0.1, dx=2.0, yaw=1.1)
    near_iou = one(bev_iou(a, b))
    assert near_iou > 0.1
    assert one(bev_iou(a + far, b + far)) == pytest.approx(near_iou, abs=1e-9)
    assert one(bev_iou(a + far, a + far)) == pytest.approx(1.0, abs=1e-9)


# ---------------------------------------------------------------------------------------------------------
# 3D
# ---------------------------------------------------------------------------------------------------------


def test_3d_half_overlapping_heights() -> None:
    # Same 2 x 1 footprint, heights [0, 2] and [1, 3]: intersection 2 * 1 = 2, union 4 + 4 - 2 = 6.
    a = box(z=1.0, dx=2.0, dz=2.0)
    b = box(z=2.0, dx=2.0, dz=2.0)
    assert one(bev_iou(a, b)) == pytest.approx(1.0)
    assert one(iou_3d(a, b)) == pytest.approx(1 / 3)


def test_3d_combines_footprint_and_height_overlap() -> None:
    # Footprints 2 x 1 shifted by 1 (intersection area 1), heights [0, 2] and [1, 2]:
    # intersection 1 * 1 = 1, volumes 4 and 2, union 5.
    a = box(z=1.0, dx=2.0, dz=2.0)
    b = box(x=1.0, z=1.5, dx=2.0, dz=1.0)
    assert one(iou_3d(a, b)) == pytest.approx(1 / 5)


# ---------------------------------------------------------------------------------------------------------
# Degenerate input, shapes, symmetry, blocks
# ---------------------------------------------------------------------------------------------------------


def test_zero_size_boxes_give_zero_not_nan() -> None:
    point = box(dx=0.0, dy=0.0, dz=0.0)
    flat = box(dz=0.0)
    needle = box(dx=2.0, dy=0.0)
    regular = box()
    assert one(bev_iou(point, regular)) == 0.0
    assert one(bev_iou(needle, regular)) == 0.0
    assert one(bev_iou(point, point)) == 0.0
    assert one(iou_3d(flat, regular)) == 0.0
    assert one(iou_3d(flat, flat)) == 0.0
    assert one(bev_iou(flat, flat)) == pytest.approx(1.0)  # the footprint is not degenerate


@pytest.mark.parametrize(("n", "m"), [(0, 3), (3, 0), (0, 0)])
def test_empty_inputs_give_empty_matrices(n: int, m: int) -> None:
    a, b = np.tile(box(), (n, 1)), np.tile(box(), (m, 1))
    assert bev_iou(a, b).shape == (n, m)
    assert iou_3d(a, b).shape == (n, m)
    assert bev_iou(np.zeros((0,)), b).shape == (0, m)  # any empty array means no boxes
    assert bev_iou_pairs(np.zeros((0, 7)), np.zeros((0, 7))).shape == (0,)


def _random_boxes(rng: np.random.Generator, n: int, spread: float = 3.0) -> np.ndarray:
    return np.concatenate(
        [
            rng.uniform(-spread, spread, (n, 2)),
            rng.uniform(-0.5, 0.5, (n, 1)),
            rng.uniform(0.2, 3.0, (n, 3)),
            rng.uniform(-math.pi, math.pi, (n, 1)),
        ],
        axis=1,
    )


def test_symmetry_pairs_and_block_boundaries(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(7)
    a, b = _random_boxes(rng, 40), _random_boxes(rng, 30)
    for fn in (bev_iou, iou_3d):
        iou = fn(a, b)
        assert iou.shape == (40, 30) and iou.dtype == np.float64
        assert np.all((iou >= 0) & (iou <= 1)) and np.count_nonzero(iou) > 50
        np.testing.assert_allclose(iou, fn(b, a).T, atol=1e-12)
    np.testing.assert_array_equal(bev_iou_pairs(a[:30], b), np.diag(bev_iou(a[:30], b)))
    np.testing.assert_array_equal(iou_3d_pairs(a[:30], b), np.diag(iou_3d(a[:30], b)))

    # Tiny blocks (a row of 30 pairs spans several, and blocks split rows) give the same numbers.
    expected = bev_iou(a, b)
    monkeypatch.setattr(rotated_iou, "PAIRS_PER_BLOCK", 7)
    np.testing.assert_array_equal(bev_iou(a, b), expected)
    np.testing.assert_array_equal(bev_iou_pairs(a[:30], b), np.diag(expected[:30]))


def _grid_intersection_area(a: np.ndarray, b: np.ndarray, cells: int) -> float:
    """Intersection area of two ``(7,)`` boxes counted on a ``cells x cells`` grid over ``a``'s rectangle."""
    u = (np.arange(cells) + 0.5) / cells - 0.5
    local = np.stack(np.meshgrid(u * a[3], u * a[4], indexing="ij"), axis=-1).reshape(-1, 2)
    cos_a, sin_a = math.cos(a[6]), math.sin(a[6])
    world = a[:2] + local @ np.array([[cos_a, sin_a], [-sin_a, cos_a]])
    offset = world - b[:2]
    cos_b, sin_b = math.cos(b[6]), math.sin(b[6])
    along = offset[:, 0] * cos_b + offset[:, 1] * sin_b
    across = -offset[:, 0] * sin_b + offset[:, 1] * cos_b
    inside_b = (np.abs(along) <= b[3] / 2) & (np.abs(across) <= b[4] / 2)
    return float(inside_b.mean()) * a[3] * a[4]


def test_random_pairs_match_a_grid_estimate_of_the_intersection() -> None:
    rng = np.random.default_rng(2024)
    a, b = _random_boxes(rng, 50, spread=1.0), _random_boxes(rng, 50, spread=1.0)
    iou = bev_iou_pairs(a, b)
    area_a, area_b = a[:, 3] * a[:, 4], b[:, 3] * b[:, 4]
    intersection = iou * (area_a + area_b) / (1 + iou)
    assert np.count_nonzero(intersection > 0.05) > 30
    cells = 300
    for k in range(50):
        estimate = _grid_intersection_area(a[k], b[k], cells)
        # Midpoint counting errs by at most the cells cut by b's boundary: perimeter / cell side cells of
        # area a-cell each, i.e. about perimeter(b) * max(a's cell sides).
        tolerance = 2 * (b[k, 3] + b[k, 4]) * max(a[k, 3], a[k, 4]) / cells
        assert intersection[k] == pytest.approx(estimate, abs=tolerance), k


# ---------------------------------------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "a", "b"),
    [
        ("a", np.zeros((2, 6)), np.zeros((1, 7))),
        ("b", np.zeros((2, 7)), np.zeros((7,))),
        ("a", np.array([[0, 0, 0, 1, 1, 1, np.nan]]), np.zeros((1, 7))),
        ("b", np.zeros((1, 7)), np.array([[0, 0, 0, -1.0, 1, 1, 0]])),
        ("a", np.array([["x"] * 7]), np.zeros((1, 7))),
    ],
)
def test_bad_boxes_raise_value_error_naming_argument(name: str, a: np.ndarray, b: np.ndarray) -> None:
    for fn in (bev_iou, iou_3d):
        with pytest.raises(ValueError, match=f"^{name}: "):
            fn(a, b)


def test_row_wise_pairs_need_equal_lengths() -> None:
    with pytest.raises(ValueError, match=r"^b: .*row-wise"):
        bev_iou_pairs(np.zeros((2, 7)), np.zeros((3, 7)))
