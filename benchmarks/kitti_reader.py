"""How fast :class:`alcv.data.kitti.KittiDataset` loads frames from a KITTI-layout folder.

Exports the synthetic LiDAR world (``alcv.data.export.export_kitti``, the same as ``alcv-export kitti``) into a
temporary folder, then measures, in one run:

- construction: reading and validating every label and calibration file and checking every point file's size
  (what happens once per run, before training);
- item loading: ``dataset[i]`` over every frame in order, cold (no cache: every point file is read), in frames
  per second, and the same through a ``DataLoader`` with ``collate_lidar`` and 0 / 2 workers (what training and
  pool inference see), all after one warm-up pass so that the OS file cache holds the files;
- for scale, generating the same frames with the synthetic world (``SyntheticLidarDataset`` without a cache),
  which is what the default data costs.

Usage::

    python benchmarks/kitti_reader.py                 # 600 frames, about a minute on 2 CPU cores
    python benchmarks/kitti_reader.py --frames 3000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from torch.utils.data import DataLoader

from alcv.data.export import export_kitti
from alcv.data.kitti import KittiDataset
from alcv.data.lidar_dataset import SyntheticLidarDataset, collate_lidar
from alcv.data.synthetic_lidar import SyntheticLidarWorld


def seconds(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def read_all(dataset: KittiDataset | SyntheticLidarDataset, indices: list[int]) -> None:
    for index in indices:
        dataset[index]


def load_all(dataset: KittiDataset, indices: list[int], workers: int) -> None:
    loader = DataLoader(dataset, batch_size=8, sampler=indices, num_workers=workers, collate_fn=collate_lidar)
    for _ in loader:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=600, help="pool frames of the exported world")
    args = parser.parse_args()
    world = SyntheticLidarWorld(seed=0, pool_frames=args.frames, val_frames=args.frames // 10,
                                test_frames=args.frames // 5)
    synthetic = SyntheticLidarDataset(world, cache_size=0)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "kitti"
        export_seconds = seconds(lambda: export_kitti(synthetic, root))
        splits = {"pool": "pool", "val": "val", "test": "test"}
        class_map = {"vehicle": ["Car"], "pedestrian": ["Pedestrian"], "golf_cart": ["GolfCart"]}
        construct_seconds = seconds(lambda: KittiDataset(root, class_map, splits=splits))
        dataset = KittiDataset(root, class_map, splits=splits)
        indices = list(range(len(dataset)))
        points = sum(int(dataset[i]["points"].shape[0]) for i in indices)  # also the warm-up pass
        boxes = sum(dataset.num_boxes(i) for i in indices)
        item_seconds = seconds(lambda: read_all(dataset, indices))
        loader_seconds = {workers: seconds(lambda w=workers: load_all(dataset, indices, w)) for workers in (0, 2)}
        synthetic_indices = [int(i) for split in ("pool", "val", "test") for i in synthetic.split_indices(split)]
        synthetic_seconds = seconds(lambda: read_all(synthetic, synthetic_indices))

    frames = len(indices)
    print(f"# python benchmarks/kitti_reader.py --frames {args.frames}")
    print(f"exported {frames} frames ({points / frames:,.0f} points and {boxes / frames:.1f} boxes a frame, "
          f"{points * 16 / 2**20:.0f} MiB of points) in {export_seconds:.1f} s")
    print(f"construction (every label and calib parsed, every point file's size checked): {construct_seconds:.2f} s"
          f" = {frames / construct_seconds:,.0f} frames/s")
    print(f"dataset[i], every frame, no cache: {frames / item_seconds:,.0f} frames/s "
          f"({1000 * item_seconds / frames:.2f} ms a frame)")
    for workers, elapsed in loader_seconds.items():
        print(f"DataLoader(batch 8, collate_lidar, {workers} workers): {frames / elapsed:,.0f} frames/s")
    print(f"for scale, generating the same frames with the synthetic world: {frames / synthetic_seconds:,.0f} "
          f"frames/s (KITTI reading is {synthetic_seconds / item_seconds:.1f}x faster)")


if __name__ == "__main__":
    main()
