"""How fast :class:`alcv.data.nuscenes.NuScenesDataset` loads frames from a nuScenes-layout folder, with 1 and 10
LiDAR sweeps a frame.

Exports the synthetic LiDAR world (:func:`alcv.data.nuscenes_writer.write_nuscenes`, the same as ``alcv-export
nuscenes``; needs nuscenes-devkit for the official scene names) into a temporary folder, then measures, in one run:

- construction: reading every table and converting every annotation, checking every keyframe's point file
  (what happens once per run, before training);
- item loading: ``dataset[i]`` over every frame in order, without a cache (every point file is read), in frames
  per second, after one warm-up pass so that the OS file cache holds the files, with ``sweeps=1`` (the keyframe)
  and ``sweeps=10`` (the keyframe and the 9 sweeps before it, each moved into the keyframe's frame; the export's
  sweeps are the previous keyframes, so a frame reads up to 10 files, fewer at the start of a scene).

Usage::

    python benchmarks/nuscenes_reader.py                 # 600 pool frames, about a minute on 2 CPU cores
    python benchmarks/nuscenes_reader.py --frames 3000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from alcv.data.lidar_dataset import SyntheticLidarDataset
from alcv.data.nuscenes import NuScenesDataset
from alcv.data.nuscenes_writer import write_nuscenes
from alcv.data.synthetic_lidar import SyntheticLidarWorld


def seconds(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def points_of_all(dataset: NuScenesDataset) -> int:
    return sum(int(dataset[index]["points"].shape[0]) for index in range(len(dataset)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=600, help="pool frames of the exported world")
    args = parser.parse_args()
    world = SyntheticLidarWorld(seed=0, pool_frames=args.frames, val_frames=args.frames // 10,
                                test_frames=args.frames // 5)
    synthetic = SyntheticLidarDataset(world, cache_size=0)
    print(f"# python benchmarks/nuscenes_reader.py --frames {args.frames}")
    with tempfile.TemporaryDirectory() as folder:
        export_seconds = seconds(lambda: write_nuscenes(synthetic, Path(folder) / "nuscenes"))
        written = write_nuscenes(synthetic, Path(folder) / "again")
        construct_seconds = seconds(lambda: NuScenesDataset(**written))
        frames = len(NuScenesDataset(**written))
        print(f"exported {frames} frames in {export_seconds:.1f} s ({written['version']})")
        print(f"construction (every table read, every annotation converted, every point file checked): "
              f"{construct_seconds:.2f} s = {frames / construct_seconds:,.0f} frames/s")
        rates = {}
        for sweeps in (1, 10):
            dataset = NuScenesDataset(**written, sweeps=sweeps)
            points = points_of_all(dataset)  # also the warm-up pass
            rates[sweeps] = frames / seconds(lambda d=dataset: points_of_all(d))
            print(f"dataset[i], sweeps={sweeps:2d}, every frame, no cache: {rates[sweeps]:,.0f} frames/s "
                  f"({1000 / rates[sweeps]:.2f} ms a frame, {points / frames:,.0f} points a frame)")
    print(f"10 sweeps cost {rates[1] / rates[10]:.1f}x the time of 1")


if __name__ == "__main__":
    main()
