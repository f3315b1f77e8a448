"""Least confidence against random, over several seeds, on the default synthetic LiDAR data or (with overrides)
any other data and model, e.g. the 2D default.

Runs, through the real command line (``alcv``):
1. for every seed, one model trained on the whole pool (the full-pool, "nominal" mAP);
2. ``alcv -m experiment=al_vs_random seed=<seeds>``: both strategies through all loops;
then prints the test mAP per loop (mean and spread over seeds) and the labeled fraction each strategy
needs to reach 95 % of the full-pool mAP (per seed, and for the mean curves; ``--levels`` adds other levels).

Usage::

    python benchmarks/al_vs_random.py --seeds 0 1 2 --out benchmarks/runs/al_vs_random [overrides ...]

Extra arguments are Hydra overrides passed to every run (e.g. ``loop.num_loops=3``). About 35 minutes on
2 CPU cores with the defaults. Only results files are read. The 2D run in ``benchmarks/results/``::

    python benchmarks/al_vs_random.py --seeds 0 1 2 --out benchmarks/runs/al_vs_random_2d \
        data=synthetic_camera model=fcos_tiny data.dataset.world.lidar_world.pool_frames=600 \
        data.dataset.world.lidar_world.test_frames=300 loop.initial_size=30 loop.query_size=60 \
        loop.num_loops=6 data.epoch_size=4800 data.epoch_passes=16
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from alcv.config import CONFIG_DIR, register_resolvers
from alcv.run_records import read_results

DEFAULT_LEVEL = 0.95


def alcv(*overrides: str) -> None:
    command = [sys.executable, "-m", "alcv.cli", *overrides]
    print("$ alcv " + " ".join(overrides), flush=True)
    subprocess.run(command, check=True)


def pool_size(overrides: list[str]) -> int:
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    return int(instantiate(cfg.data.dataset).split_indices("pool").size)


def fraction_to_reach(fractions: list[float], maps: list[float], target: float) -> float | None:
    """The first labeled fraction whose mAP is at least ``target`` (None if never reached)."""
    for fraction, value in zip(fractions, maps, strict=True):
        if value is not None and value >= target:
            return fraction
    return None


def describe(fraction: float | None, fractions: list[float]) -> str:
    return f"{fraction:.3f}" if fraction is not None else f"not reached (> {max(fractions):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/runs/al_vs_random"))
    parser.add_argument("--skip-runs", action="store_true", help="only summarise results already in --out")
    parser.add_argument("--levels", type=float, nargs="+", default=[DEFAULT_LEVEL],
                        help="fractions of the full-pool mAP to report the labeled fraction for")
    args, overrides = parser.parse_known_args()
    out = args.out.resolve()
    seeds = ",".join(str(s) for s in args.seeds)

    if not args.skip_runs:
        size = pool_size(overrides)
        for seed in args.seeds:
            # the full-pool settings come last so that they win over the shared overrides
            alcv(*overrides, "experiment_name=full_pool", "strategy=random", f"loop.initial_size={size}",
                 "loop.num_loops=1", f"seed={seed}", "logger=none", "trainer.enable_progress_bar=false",
                 f"hydra.run.dir={out}/full_pool/seed{seed}")
        alcv("-m", "experiment=al_vs_random", f"seed={seeds}", "logger=none", "trainer.enable_progress_bar=false",
             f"hydra.sweep.dir={out}/sweep", *overrides)

    full = {record["seed"]: record["map"] for path in sorted((out / "full_pool").glob("seed*"))
            for record in read_results(path)}
    curves: dict[str, dict[int, list[dict]]] = defaultdict(dict)
    for results in sorted((out / "sweep").rglob("results.jsonl")):
        records = read_results(results.parent)
        curves[records[0]["strategy"]][records[0]["seed"]] = records

    full_mean = float(np.mean(list(full.values())))
    print(f"\nfull-pool mAP per seed: {', '.join(f'{s}: {m:.3f}' for s, m in sorted(full.items()))}; "
          f"mean {full_mean:.3f}\n")
    for strategy, runs in sorted(curves.items()):
        any_run = next(iter(runs.values()))
        fractions = [r["fraction"] for r in any_run]
        table = np.array([[r["map"] for r in runs[seed]] for seed in sorted(runs)], dtype=float)
        print(f"{strategy}: test mAP per loop over seeds {sorted(runs)}")
        print("  loop  frames  fraction   mean    std    min    max   per seed")
        for loop, record in enumerate(any_run):
            column = table[:, loop]
            print(f"  {loop:4d}  {record['n_labeled_frames']:6d}  {record['fraction']:8.3f}  {column.mean():.3f}  "
                  f"{column.std():.3f}  {column.min():.3f}  {column.max():.3f}   "
                  + " ".join(f"{v:.3f}" for v in column))
        for level in args.levels:
            per_seed = {seed: fraction_to_reach(fractions, [r["map"] for r in runs[seed]], level * full[seed])
                        for seed in sorted(runs) if seed in full}
            mean_curve = fraction_to_reach(fractions, table.mean(axis=0).tolist(), level * full_mean)
            print(f"  labeled fraction to reach {level:.0%} of full-pool mAP ({level * full_mean:.3f} for the mean "
                  f"curve): mean curve {describe(mean_curve, fractions)}; per seed "
                  + ", ".join(f"{seed}: {describe(value, fractions)}" for seed, value in per_seed.items()))
        print()


if __name__ == "__main__":
    main()
