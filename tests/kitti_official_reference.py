"""Computes ``tests/kitti_official_reference.json``: the official KITTI AP of :mod:`tests.kitti_official_frames`, by
OpenPCDet's Python port of the KITTI evaluation. Not part of the test suite (nothing downloads at test time); run once,
outside alcv's environment, with that port on the path (see the JSON's ``produced_by`` for the exact commands)::

    NUMBA_ENABLE_CUDASIM=1 python tests/kitti_official_reference.py /path/with/kitti_object_eval_python OUT.json

``kitti_object_eval_python`` is OpenPCDet's ``pcdet/datasets/kitti/kitti_object_eval_python`` (``eval.py`` and
``rotate_iou.py``, with an empty ``__init__.py``); its rotated IoU is a numba CUDA kernel, which numba's CUDA
simulator runs on a CPU.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from kitti_official_frames import CLASSES, NUM_FRAMES, SEED, synthetic_frames

#: how the stored reference was produced (written into the JSON)
PRODUCED_BY = {
    "reference": "OpenPCDet's Python port of the KITTI evaluation, pcdet/datasets/kitti/kitti_object_eval_python "
                 "(eval.py, rotate_iou.py), github.com/open-mmlab/OpenPCDet at commit "
                 "8cacccec11db6f59bf6934600c9a175dae254806 (2024-04-17), unmodified",
    "environment": "Python 3.11, numpy 2.4.6, numba 0.68.1 in a scratch venv; numba's CUDA simulator for the rotated "
                   "IoU kernel (NUMBA_ENABLE_CUDASIM=1)",
    "commands": [
        "python3 -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install numpy numba",
        "mkdir -p /tmp/pcdet_ref/kitti_object_eval_python && touch /tmp/pcdet_ref/kitti_object_eval_python/__init__.py",
        "git -C OpenPCDet show 8cacccec11db6f59bf6934600c9a175dae254806:pcdet/datasets/kitti/kitti_object_eval_python/"
        "eval.py > /tmp/pcdet_ref/kitti_object_eval_python/eval.py (and rotate_iou.py likewise)",
        "NUMBA_ENABLE_CUDASIM=1 /tmp/refvenv/bin/python tests/kitti_official_reference.py /tmp/pcdet_ref "
        "tests/kitti_official_reference.json",
    ],
    "calls": "eval.eval_class(gt_annos, dt_annos, [0, 1, 2], [0, 1, 2], metric, min_overlaps) for metric 0 (image), "
             "1 (bev), 2 (3d), min_overlaps as get_official_eval_result builds them; get_mAP_R40 and get_mAP (R11) "
             "of its precision, divided by 100",
}
#: OpenPCDet's metric ids
MODES = {"image": 0, "bev": 1, "3d": 2}


def annotations(frames: list[dict[str, np.ndarray]]) -> tuple[list[dict], list[dict]]:
    """The frames as OpenPCDet's ``kitti_common.get_label_anno`` dicts (``dimensions`` are ``l, h, w``)."""
    names = list(CLASSES.values())
    gt_annos, dt_annos = [], []
    for frame in frames:
        gt, det = frame["gt_boxes"], frame["det_boxes"]
        gt_annos.append({"name": frame["gt_types"], "truncated": frame["gt_truncation"],
                         "occluded": frame["gt_occlusion"], "alpha": np.full(len(gt), -10.0),
                         "bbox": frame["gt_image_boxes"], "dimensions": gt[:, [2, 0, 1]], "location": gt[:, 3:6],
                         "rotation_y": gt[:, 6]})
        dt_annos.append({"name": np.array([names[label] for label in frame["det_label"]], dtype=str),
                         "truncated": np.zeros(len(det)), "occluded": np.zeros(len(det)),
                         "alpha": np.full(len(det), -10.0), "bbox": frame["det_image_boxes"],
                         "dimensions": det[:, [2, 0, 1]], "location": det[:, 3:6], "rotation_y": det[:, 6],
                         "score": frame["det_score"]})
    return gt_annos, dt_annos


def main(port: str, out: str) -> None:
    sys.path.insert(0, port)
    from kitti_object_eval_python import eval as kitti_eval  # the reference, outside alcv

    gt_annos, dt_annos = annotations(synthetic_frames())
    overlap_strict = np.array([[0.7, 0.5, 0.5], [0.7, 0.5, 0.5], [0.7, 0.5, 0.5]])
    overlap_loose = np.array([[0.7, 0.5, 0.5], [0.5, 0.25, 0.25], [0.5, 0.25, 0.25]])
    min_overlaps = np.stack([overlap_strict, overlap_loose])  # (level, metric, class), get_official_eval_result's
    result: dict = {}
    for mode, metric in MODES.items():
        ret = kitti_eval.eval_class(gt_annos, dt_annos, [0, 1, 2], [0, 1, 2], metric, min_overlaps)
        r11, r40 = kitti_eval.get_mAP(ret["precision"]) / 100, kitti_eval.get_mAP_R40(ret["precision"]) / 100
        result[mode] = {"R40": r40.tolist(), "R11": r11.tolist(),
                        "iou_thresholds": min_overlaps[:, metric, :].T.tolist()}
    payload = {"produced_by": PRODUCED_BY, "seed": SEED, "num_frames": NUM_FRAMES, "classes": CLASSES,
               "layout": "ap[mode][R40|R11][class][difficulty easy/moderate/hard][level strict/loose], fractions",
               "ap": result}
    Path(out).write_text(json.dumps(payload, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
