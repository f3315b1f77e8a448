"""Seeded synthetic KITTI frames for the check of :mod:`alcv.metrics.kitti_official` against the official evaluation
(``tests/kitti_official_reference.py`` computes the reference, ``tests/test_kitti_official.py`` compares).

Only ``numpy.random.RandomState`` draws (``uniform``, ``randint``), whose streams numpy keeps fixed, and values
rounded as KITTI's label files print them, so the frames are the same on any numpy version. Every frame holds
boxes of KITTI's types (Car, Van, Pedestrian, Person_sitting, Cyclist, Truck, Misc) at depths whose 2D heights span
all difficulty levels, random truncation and occlusion, DontCare regions (some of them over a detected but
unlabelled object), and detections: jittered copies of most boxes (Vans detected as cars, some persons sitting as
pedestrians), and false positives, with scores of 3 decimals (so that some are equal).
"""

from __future__ import annotations

import numpy as np

SEED = 20261201
NUM_FRAMES = 300
#: the evaluated classes: alcv class name -> KITTI type, in class-id order
CLASSES = {"car": "Car", "pedestrian": "Pedestrian", "cyclist": "Cyclist"}
#: (h, w, l) metres of each type
_SIZES = {"Car": (1.5, 1.6, 3.9), "Van": (2.2, 1.9, 5.0), "Pedestrian": (1.75, 0.6, 0.8),
          "Person_sitting": (1.2, 0.6, 0.8), "Cyclist": (1.7, 0.6, 1.8), "Truck": (3.2, 2.5, 10.0),
          "Misc": (1.5, 1.0, 2.0)}
_TYPES = ("Car", "Car", "Car", "Van", "Pedestrian", "Pedestrian", "Person_sitting", "Cyclist", "Cyclist", "Truck",
          "Misc")
#: the class id a detection of each type gets (and the chance that it is detected as another one)
_DETECTED_AS = {"Car": 0, "Van": 0, "Pedestrian": 1, "Person_sitting": 1, "Cyclist": 2}
_TRUNCATIONS = (0.0, 0.0, 0.0, 0.0, 0.1, 0.2, 0.25, 0.4, 0.6)
_FOCAL, _CX, _CY, _WIDTH, _HEIGHT = 721.5377, 609.5593, 172.854, 1242.0, 375.0


def image_box(label_box: np.ndarray) -> np.ndarray:
    """``[left, top, right, bottom]`` of a label box ``[h, w, l, x, y, z, ry]`` projected with KITTI's intrinsics
    (corners in front of the camera), clipped to the 1242 x 375 image, 2 decimals."""
    h, w, length, x, y, z, ry = label_box
    corner_x = np.array([1, 1, -1, -1, 1, 1, -1, -1]) * length / 2
    corner_z = np.array([1, -1, -1, 1, 1, -1, -1, 1]) * w / 2
    corner_y = np.array([0, 0, 0, 0, -1, -1, -1, -1]) * h
    cos, sin = np.cos(ry), np.sin(ry)
    xs = x + cos * corner_x + sin * corner_z
    zs = z - sin * corner_x + cos * corner_z
    ys = y + corner_y
    u, v = _FOCAL * xs / zs + _CX, _FOCAL * ys / zs + _CY
    box = [np.clip(u.min(), 0, _WIDTH), np.clip(v.min(), 0, _HEIGHT), np.clip(u.max(), 0, _WIDTH),
           np.clip(v.max(), 0, _HEIGHT)]
    return np.round(np.array(box), 2)


def _object(rng: np.random.RandomState, kitti_type: str) -> np.ndarray:
    """A label box of ``kitti_type`` in front of the camera, 2 decimals."""
    h, w, length = (s * rng.uniform(0.9, 1.1) for s in _SIZES[kitti_type])
    z = rng.uniform(4.0, 60.0)
    x = rng.uniform(-0.5, 0.5) * z
    return np.round(np.array([h, w, length, x, rng.uniform(1.4, 1.9), z, rng.uniform(-np.pi, np.pi)]), 2)


def _detection(rng: np.random.RandomState, box: np.ndarray) -> np.ndarray:
    """A jittered copy of a label box."""
    scale = rng.uniform(0.95, 1.05, size=3)
    shift = np.array([rng.uniform(-0.2, 0.2), rng.uniform(-0.1, 0.1), rng.uniform(-0.25, 0.25)])
    return np.round(np.concatenate([box[:3] * scale, box[3:6] + shift, [box[6] + rng.uniform(-0.15, 0.15)]]), 2)


def synthetic_frames(seed: int = SEED, num_frames: int = NUM_FRAMES) -> list[dict[str, np.ndarray]]:
    """``num_frames`` frames, each ``{"gt_types" (G,) str, "gt_truncation" (G,), "gt_occlusion" (G,) int,
    "gt_image_boxes" (G, 4), "gt_boxes" (G, 7) label boxes, "det_label" (P,) int (class ids of :data:`CLASSES`),
    "det_score" (P,), "det_image_boxes" (P, 4), "det_boxes" (P, 7)}``."""
    rng = np.random.RandomState(seed)
    return [_frame(rng) for _ in range(num_frames)]


def _frame(rng: np.random.RandomState) -> dict[str, np.ndarray]:
    gt_types, truncation, occlusion, gt_image, gt_boxes = [], [], [], [], []
    det_label, det_score, det_boxes = [], [], []
    for _ in range(rng.randint(0, 10)):
        kitti_type = _TYPES[rng.randint(len(_TYPES))]
        box = _object(rng, kitti_type)
        gt_types.append(kitti_type)
        truncation.append(_TRUNCATIONS[rng.randint(len(_TRUNCATIONS))])
        occlusion.append(rng.randint(0, 4))
        gt_image.append(image_box(box))
        gt_boxes.append(box)
        if kitti_type in _DETECTED_AS and rng.uniform() < 0.85:
            label = _DETECTED_AS[kitti_type] if rng.uniform() < 0.9 else rng.randint(3)
            det_label.append(label)
            det_boxes.append(_detection(rng, box))
    for _ in range(rng.randint(0, 3)):  # DontCare regions, half of them over a detected unlabelled object
        hidden = _object(rng, "Car" if rng.uniform() < 0.5 else "Pedestrian")
        region = image_box(hidden) + np.array([-4.0, -4.0, 4.0, 4.0]) * rng.uniform(0.0, 2.0)
        if rng.uniform() < 0.5:
            det_label.append(0 if hidden[2] > 2 else 1)
            det_boxes.append(_detection(rng, hidden))
        gt_types.append("DontCare")
        truncation.append(-1.0)
        occlusion.append(-1)
        gt_image.append(np.round(region, 2))
        gt_boxes.append(np.array([-1.0, -1.0, -1.0, -1000.0, -1000.0, -1000.0, -10.0]))
    num_true = len(det_boxes)
    for _ in range(rng.randint(0, 4)):  # false positives
        det_label.append(rng.randint(3))
        det_boxes.append(_object(rng, ("Car", "Pedestrian", "Cyclist")[det_label[-1]]))
    # true detections (and those in DontCare regions) score higher than false positives, on the whole
    det_score = [round(rng.uniform(0.0, 0.6) if i >= num_true else rng.uniform(0.2, 1.0), 3)
                 for i in range(len(det_boxes))]
    return {"gt_types": np.array(gt_types, dtype=str), "gt_truncation": np.array(truncation, dtype=np.float64),
            "gt_occlusion": np.array(occlusion, dtype=np.int64),
            "gt_image_boxes": np.array(gt_image, dtype=np.float64).reshape(-1, 4),
            "gt_boxes": np.array(gt_boxes, dtype=np.float64).reshape(-1, 7),
            "det_label": np.array(det_label, dtype=np.int64), "det_score": np.array(det_score, dtype=np.float64),
            "det_image_boxes": np.array([image_box(b) for b in det_boxes], dtype=np.float64).reshape(-1, 4),
            "det_boxes": np.array(det_boxes, dtype=np.float64).reshape(-1, 7)}
