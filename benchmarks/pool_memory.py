"""Peak memory of pool inference (``Trainer.predict`` with the active-learning callback) at two pool sizes.

Each pool size runs in a fresh Python process built from the packaged config (``alcv`` with the given Hydra
overrides; by default the synthetic LiDAR world with ``pool_frames`` set, ``model=bev_tiny``, least confidence),
with the frame cache off (``data.dataset.cache_size=0``) so that frames are not kept. The process labels the
initial set and runs pool inference and selection twice from that same state: a cold pass (the first, which also
fills the caches of the process: the synthetic world's drive layouts, allocator pools) and a warm one. Before each
it resets its RSS high-water mark (``/proc/self/clear_refs``, as in ``selection_scaling.py``). It reports:

- peak extra MiB, cold and warm: the peak RSS during the pass minus the RSS just before it;
- Python heap MiB: the peak of what Python and NumPy allocate during the warm pass (``tracemalloc``; torch's
  tensors are not traced), where kept detections would show;
- column MiB: the per-frame arrays the callback keeps (what should be the only part that grows with the pool);
- detections: the boxes predicted over the pool (which must not drive the memory: detections are reduced to
  per-frame columns batch by batch and dropped).

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
import tracemalloc
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


def worker(pool_frames: int, overrides: list[str]) -> dict[str, Any]:
    setup = set_up([f"data.dataset.world.pool_frames={pool_frames}", "data.dataset.cache_size=0", *overrides])
    initial = setup.pool.until(0)
    row: dict[str, Any] = {"frames": setup.frames}
    for name in ("cold", "warm"):
        setup.pool = initial.until(0)  # the same initial state for both passes (a pass labels the next frames)
        setup.datamodule.attach_pool(setup.pool)
        callback = setup.callback(CountingCallback)
        row["peak_reset"] = reset_peak_rss()
        before = current_rss_kib() if row["peak_reset"] else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if name == "warm":
            tracemalloc.start()
        setup.predict(callback)
        row[f"{name}_peak_extra_mib"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    row["python_heap_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    row["column_mib"] = sum(column.nbytes for column in callback.columns.values()) / 2**20
    row["detections"] = callback.detections
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs=2, default=[1000, 4000], help="two pool sizes, in frames")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args, overrides = parser.parse_known_args()
    if args.worker is not None:
        print(json.dumps(worker(args.worker, overrides)))
        return
    print(f"# python benchmarks/pool_memory.py --sizes {args.sizes[0]} {args.sizes[1]} {' '.join(overrides)}")
    columns = ("pool frames", "detections", "cold peak MiB", "warm peak MiB", "Python heap MiB", "column MiB")
    print(" ".join(f"{name:>15}" for name in columns))
    rows = []
    for size in args.sizes:
        output = subprocess.run([sys.executable, __file__, "--worker", str(size), *overrides], check=True,
                                capture_output=True, text=True).stdout
        row = json.loads(output.strip().splitlines()[-1])
        rows.append(row)
        values = (row["frames"], row["detections"], row["cold_peak_extra_mib"], row["warm_peak_extra_mib"],
                  row["python_heap_mib"], row["column_mib"])
        print(" ".join(f"{value:15d}" if isinstance(value, int) else f"{value:15.3f}" for value in values)
              + ("" if row["peak_reset"] else "   (peak not reset: a lower bound of the growth)"))
    small, large = rows
    print(f"{large['frames'] / small['frames']:.1f}x the frames and {large['detections'] / small['detections']:.1f}x "
          "the detections change the peak extra memory by "
          f"{large['cold_peak_extra_mib'] - small['cold_peak_extra_mib']:+.1f} MiB cold and "
          f"{large['warm_peak_extra_mib'] - small['warm_peak_extra_mib']:+.1f} MiB warm, the Python heap by "
          f"{large['python_heap_mib'] - small['python_heap_mib']:+.2f} MiB and the callback's columns by "
          f"{large['column_mib'] - small['column_mib']:+.3f} MiB")


if __name__ == "__main__":
    main()
