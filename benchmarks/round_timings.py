"""What one labeling round costs on the default model: ``alcv-round`` on a KITTI export of the synthetic LiDAR world
with 1,000 unlabeled pool frames, and the seconds of each of its steps (its ``summary.json``).

Writes the world into a temporary folder with ``alcv-export kitti --labeled-pool`` (labels for ``--labeled``
random pool frames, none for the ``--unlabeled`` others), runs one round with the default strategy (least
confidence), model (``bev_tiny``) and training (``data=kitti`` with the synthetic world's training length), and
prints the round's timings: train, test, pool inference (the unlabeled frames), selection, and export (predicting
the selected frames again and writing ``selection.json`` and the KITTI pre-annotation folder), with frames per
second where a step is per frame.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/round_timings.py            # 200 labeled + 1,000 unlabeled, ~10 min
    python benchmarks/round_timings.py --labeled 100 --unlabeled 300 --out benchmarks/results/round_timings.txt
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: the synthetic world's training length and batch sizes, which data=kitti sets for real KITTI frames otherwise
TRAINING = ["data.batch_size=16", "data.eval_batch_size=32", "data.epoch_size=2400", "data.epoch_passes=20",
            "data.num_workers=0", "data.train_transform.max_rotation=0.3927"]


def _run(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "WANDB_MODE": "offline"})
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labeled", type=int, default=200, help="labeled pool frames (default 200)")
    parser.add_argument("--unlabeled", type=int, default=1000, help="unlabeled pool frames (default 1000)")
    parser.add_argument("--query", type=int, default=100, help="frames the round selects (default 100)")
    parser.add_argument("--out", type=Path, default=None, help="also write the report here")
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as folder:
        kitti, rounds = Path(folder) / "kitti", Path(folder) / "rounds"
        world = f"data.dataset.world.pool_frames={args.labeled + args.unlabeled}"
        _run([str(bin_dir / "alcv-export"), "kitti", str(kitti), world, "--labeled-pool", str(args.labeled)])
        started = time.perf_counter()
        _run([str(bin_dir / "alcv-round"), "data=kitti", f"data.dataset.root={kitti}",
              "data.dataset.splits={pool: pool, val: val, test: test}", *TRAINING, f"loop.query_size={args.query}",
              f"round.dir={rounds}", "logger=none", "trainer.enable_progress_bar=false"])
        wall = time.perf_counter() - started
        summary = json.loads((rounds / "round_000" / "summary.json").read_text())
    timings = summary["timings"]
    per_frame = {"pool_inference": summary["unlabeled_frames"], "export": summary["selected"]}
    lines = [f"command: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')} python "
             f"benchmarks/round_timings.py --labeled {args.labeled} --unlabeled {args.unlabeled} --query {args.query}",
             f"round 0 of alcv-round on a KITTI export of the synthetic LiDAR world: {summary['labeled_frames']} "
             f"labeled pool frames ({summary['labeled_boxes']} boxes), {summary['unlabeled_frames']} unlabeled, "
             f"{summary['selected']} selected; test mAP {summary['map']:.3f}",
             f"{'step':<16}{'seconds':>10}{'frames/s':>12}"]
    for step, seconds in timings.items():
        rate = f"{per_frame[step] / seconds:12.1f}" if step in per_frame and seconds > 0 else f"{'':>12}"
        lines.append(f"{step:<16}{seconds:10.1f}{rate}")
    lines.append(f"{'alcv-round wall':<16}{wall:10.1f}   (the command, start-up and data reading included)")
    report = "\n".join(lines) + "\n"
    print(report, end="")
    if args.out is not None:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
