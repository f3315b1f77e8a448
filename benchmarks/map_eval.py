"""How long the 3D test metrics take on a large test split: 10,000 frames with about 20 boxes each.

Builds, from a seeded generator, 10,000 frames of 20 ground-truth boxes on average (Poisson), 3 classes, boxes
``[x, y, z, dx, dy, dz, yaw]`` in a 100 m x 100 m area, and predictions the way a detector makes them: each
ground-truth box found with probability 0.8 (centre jittered by 0.3 m, size by 5 %, yaw by 0.1 rad, its class
right 90 % of the time) plus 5 false positives a frame, with random scores. Then measures, in one run:

- ``center_distance_ap`` on the flat arrays (the computation alone), against the 2 s target of issue 7;
- ``CenterDistanceMAP``: ``update`` with batches of 32 frames as the test loop feeds it, then ``compute``;
- for comparison, the KITTI-style AP (``KittiMAP``, BEV and 3D IoU, two levels) on the same data.

Usage::

    python benchmarks/map_eval.py              # 10,000 frames
    python benchmarks/map_eval.py --frames 2000
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch

from alcv.metrics import CenterDistanceMAP, KittiMAP, center_distance_ap

CLASS_NAMES = ("vehicle", "pedestrian", "golf_cart")
#: typical box sizes (dx, dy, dz) of the classes, metres
SIZES = np.array([[4.5, 1.9, 1.6], [0.7, 0.7, 1.75], [2.4, 1.3, 1.9]])
BATCH = 32


def make_case(frames: int, seed: int) -> dict[str, np.ndarray]:
    """Flat per-box arrays of ground truth and predictions (see the module docstring)."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(20, frames)
    gt_frame = np.repeat(np.arange(frames), counts)
    gt_label = rng.choice(3, gt_frame.size, p=[0.6, 0.3, 0.1])
    gt_boxes = np.column_stack([rng.uniform(-50, 50, (gt_frame.size, 2)), np.full(gt_frame.size, -0.9),
                                SIZES[gt_label] * rng.uniform(0.9, 1.1, (gt_frame.size, 3)),
                                rng.uniform(-np.pi, np.pi, gt_frame.size)])
    found = rng.random(gt_frame.size) < 0.8
    pred_boxes = gt_boxes[found] + np.column_stack([rng.normal(0, 0.3, (found.sum(), 2)), np.zeros(found.sum()),
                                                   np.zeros((found.sum(), 3)), rng.normal(0, 0.1, found.sum())])
    pred_boxes[:, 3:6] *= rng.uniform(0.95, 1.05, (found.sum(), 3))
    pred_label = np.where(rng.random(found.sum()) < 0.9, gt_label[found], rng.integers(0, 3, found.sum()))
    false_frame = np.repeat(np.arange(frames), 5)
    false_label = rng.integers(0, 3, false_frame.size)
    false_boxes = np.column_stack([rng.uniform(-50, 50, (false_frame.size, 2)), np.full(false_frame.size, -0.9),
                                   SIZES[false_label], rng.uniform(-np.pi, np.pi, false_frame.size)])
    return {"pred_frame": np.concatenate([gt_frame[found], false_frame]),
            "pred_boxes": np.concatenate([pred_boxes, false_boxes]),
            "pred_label": np.concatenate([pred_label, false_label]),
            "pred_score": rng.random(found.sum() + false_frame.size),
            "gt_frame": gt_frame, "gt_boxes": gt_boxes, "gt_label": gt_label}


def fed_by_batches(metric: CenterDistanceMAP | KittiMAP, case: dict[str, np.ndarray], frames: int) -> object:
    """``update`` with batches of :data:`BATCH` frames (per-frame dicts, as the test loop gives), then ``compute``."""
    pred_order, gt_order = np.argsort(case["pred_frame"], kind="stable"), np.argsort(case["gt_frame"], kind="stable")
    pred_bounds = np.searchsorted(case["pred_frame"][pred_order], np.arange(frames + 1))
    gt_bounds = np.searchsorted(case["gt_frame"][gt_order], np.arange(frames + 1))
    tensors = {key: torch.from_numpy(value) for key, value in case.items()}
    for start in range(0, frames, BATCH):
        preds, targets = [], []
        for frame in range(start, min(start + BATCH, frames)):
            pred = torch.from_numpy(pred_order[pred_bounds[frame]:pred_bounds[frame + 1]])
            gt = torch.from_numpy(gt_order[gt_bounds[frame]:gt_bounds[frame + 1]])
            preds.append({"boxes": tensors["pred_boxes"][pred].float(), "labels": tensors["pred_label"][pred],
                          "scores": tensors["pred_score"][pred].float()})
            targets.append({"boxes": tensors["gt_boxes"][gt].float(), "labels": tensors["gt_label"][gt]})
        metric.update(preds, targets, torch.arange(start, start + len(preds)))
    return metric.compute()


def timed(work: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = work()
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    case = make_case(args.frames, args.seed)
    flat = {key.replace("boxes", "xy"): (value[:, :2] if key.endswith("boxes") else value)
            for key, value in case.items()}
    print(f"# python benchmarks/map_eval.py --frames {args.frames}   ({case['gt_frame'].size:,} ground-truth and "
          f"{case['pred_frame'].size:,} predicted boxes, 3 classes, 1 thread)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        seconds, result = timed(lambda: center_distance_ap(**flat, class_names=CLASS_NAMES))
        print(f"{'center_distance_ap (arrays in)':48s}{seconds:6.2f} s   mAP {result.map:.3f}   "
              f"target < 2 s: {'met' if seconds < 2 else 'missed'} ({seconds / 2:.2f} of it)")
        seconds, result = timed(lambda: fed_by_batches(CenterDistanceMAP(CLASS_NAMES), case, args.frames))
        print(f"{f'CenterDistanceMAP (batches of {BATCH}, compute)':48s}{seconds:6.2f} s   mAP {result.map:.3f}")
        levels = [[0.7, 0.5], [0.5, 0.25], [0.7, 0.5]]
        for mode in ("bev", "3d"):
            metric = KittiMAP(CLASS_NAMES, levels, mode=mode)
            seconds, result = timed(lambda m=metric: fed_by_batches(m, case, args.frames))
            print(f"{f'KittiMAP {mode} (batches of {BATCH}, compute)':48s}{seconds:6.2f} s   mAP {result.map:.3f}")


if __name__ == "__main__":
    main()
