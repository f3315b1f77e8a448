"""Peak memory of pool inference (``Trainer.predict`` with the active-learning callback) at two pool sizes.

Each pool size runs in a fresh Python process built from the packaged config (``alcv`` with the given Hydra
overrides; by default the synthetic LiDAR world with ``pool_frames`` set, ``model=bev_tiny``, least confidence),
with the frame cache off (``data.dataset.cache_size=0``) so that frames are not kept. The process labels the
initial set, resets its RSS high-water mark (``/proc/self/clear_refs``, as in ``selection_scaling.py``), runs
pool inference and selection, and reports:

- peak extra MiB: the peak RSS during pool inference minus the RSS just before it;
- column MiB: the per-frame arrays the callback keeps (what should be the only part that grows with the pool);
- detections: the boxes predicted over the pool (which must not drive the memory: detections are reduced to
  per-frame columns batch by batch and dropped).

The synthetic world itself keeps the layouts of up to 256 drives it has rendered (an ``lru_cache``), so with
the default data part of the growth between the two sizes is that cache, bounded, and not pool inference.

Usage::

    python benchmarks/pool_memory.py                       # pools of 1,000 and 4,000 frames
    python benchmarks/pool_memory.py --sizes 500 8000 strategy=coreset
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
from pool_inference import set_up
from selection_scaling import current_rss_kib, reset_peak_rss

from alcv.callbacks import ActiveLearningCallback
from alcv.models.detections import Detections


class CountingCallback(ActiveLearningCallback):
    """The loop's callback, also counting the detections it is handed (kept as a number only)."""

    detections = 0

    def write_on_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, prediction: Sequence[Detections],
                           batch_indices: Sequence[int] | None, batch: Any, batch_idx: int,
                           dataloader_idx: int) -> None:
        self.detections += sum(len(frame) for frame in prediction)
        super().write_on_batch_end(trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx)


def worker(pool_frames: int, overrides: list[str]) -> dict[str, float]:
    setup = set_up([f"data.dataset.world.pool_frames={pool_frames}", "data.dataset.cache_size=0", *overrides])
    callback = setup.callback(CountingCallback)
    peak_reset = reset_peak_rss()
    before = current_rss_kib() if peak_reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    setup.predict(callback)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"frames": setup.frames, "peak_extra_mib": (peak - before) / 1024,
            "column_mib": sum(column.nbytes for column in callback.columns.values()) / 2**20,
            "detections": callback.detections, "peak_reset": peak_reset}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs=2, default=[1000, 4000], help="two pool sizes, in frames")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args, overrides = parser.parse_known_args()
    if args.worker is not None:
        print(json.dumps(worker(args.worker, overrides)))
        return
    print(f"# python benchmarks/pool_memory.py --sizes {args.sizes[0]} {args.sizes[1]} {' '.join(overrides)}")
    print(f"{'pool frames':>12} {'detections':>11} {'peak extra MiB':>15} {'column MiB':>11}")
    rows = []
    for size in args.sizes:
        output = subprocess.run([sys.executable, __file__, "--worker", str(size), *overrides], check=True,
                                capture_output=True, text=True).stdout
        row = json.loads(output.strip().splitlines()[-1])
        rows.append(row)
        print(f"{row['frames']:12d} {row['detections']:11d} {row['peak_extra_mib']:15.1f} {row['column_mib']:11.3f}"
              + ("" if row["peak_reset"] else "   (peak not reset: a lower bound of the growth)"))
    small, large = rows
    print(f"{large['frames'] / small['frames']:.1f}x the frames and {large['detections'] / small['detections']:.1f}x "
          f"the detections: peak extra memory {large['peak_extra_mib'] - small['peak_extra_mib']:+.1f} MiB, of which "
          f"the callback's columns {large['column_mib'] - small['column_mib']:+.3f} MiB")


if __name__ == "__main__":
    main()
