"""Whether a detector's pool scores on this CPU depend on the batching and the thread count, and what one
thread costs.

Under DDP each process predicts its own shard of the pool (every ``world_size``-th frame, as Lightning's
sampler for predict deals them) and, on the CPU, with its share of the threads. Float32 kernels may then add in
another order, and a frame's score can change in its last bits (see the README's DDP paragraph). This script
builds the alcv config's data, model (seeded, untrained) and strategy (as ``benchmarks/pool_inference.py``
does), scores the unlabeled pool once as one process does (the pool in order, ``data.eval_batch_size``, this
process's threads) and then under each variant below, and prints per variant: the frames whose score is not
bit-identical, the largest difference relative to the largest score, the frames whose membership in the top
``loop.query_size`` changes, and frames per second (its ratio to the reference is the cost of the variant).

- ``1 thread``: the same batches on one thread;
- ``shards of 2, 1 thread``: what each of 2 DDP processes on this machine computes;
- ``batch 1`` and ``batch 7``: other batch sizes (the last batch of a shard is often odd).

Usage::

    python benchmarks/batch_invariance.py            # the default data and model
    python benchmarks/batch_invariance.py model=fcos_tiny data=synthetic_camera   # any Hydra overrides
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from pool_inference import PoolInference, set_up
from torch.utils.data import DataLoader, Subset


@dataclass(frozen=True)
class Scoring:
    """One way to score the pool: the frames of each process (positions in the pool loader's dataset), the batch
    size and the number of threads."""

    name: str
    shards: int
    batch_size: int
    threads: int


def score_pool(setup: PoolInference, scoring: Scoring) -> tuple[np.ndarray, float]:
    """The strategy's ``score`` of every unlabeled frame under ``scoring``, ``(N,)`` in the pool loader's order,
    and the seconds it took (the shards one after the other)."""
    loader = setup.datamodule.pool_dataloader()
    frames = len(loader.dataset)
    scores = np.full(frames, np.nan)
    threads = torch.get_num_threads()
    torch.set_num_threads(scoring.threads)
    started = time.perf_counter()
    try:
        with torch.inference_mode():
            for shard in range(scoring.shards):
                positions = list(range(shard, frames, scoring.shards))
                shard_loader = DataLoader(Subset(loader.dataset, positions), batch_size=scoring.batch_size,
                                          collate_fn=loader.collate_fn)
                done = 0
                for batch_idx, batch in enumerate(shard_loader):
                    detections = setup.model.predict_step(batch, batch_idx)
                    stats = setup.strategy.frame_stats(detections)
                    if "score" not in stats:
                        raise SystemExit(f"batch_invariance: {setup.description} gives no per-frame 'score'")
                    scores[positions[done:done + len(detections)]] = stats["score"]
                    done += len(detections)
    finally:
        torch.set_num_threads(threads)
    return scores, time.perf_counter() - started


def top(scores: np.ndarray, k: int) -> set[int]:
    return set(np.argsort(-scores, kind="stable")[:k].tolist())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _, overrides = parser.parse_known_args(argv)
    setup = set_up(overrides)
    batch_size, threads = setup.datamodule.eval_batch_size, torch.get_num_threads()
    query_size = int(setup.rules.budget)
    reference = Scoring("one process (reference)", 1, batch_size, threads)
    variants = [Scoring("1 thread", 1, batch_size, 1), Scoring("shards of 2, 1 thread", 2, batch_size, 1),
                Scoring("batch 1", 1, 1, threads), Scoring("batch 7", 1, 7, threads)]
    score_pool(setup, reference)  # fills the frame cache, so that no variant pays for generating frames
    expected, reference_seconds = score_pool(setup, reference)
    scale = float(np.abs(expected).max())
    print(f"# python benchmarks/batch_invariance.py {' '.join(overrides)}   ({expected.size} unlabeled frames, "
          f"{setup.description}, seeded untrained model; reference: batch {batch_size}, {threads} threads; top "
          f"{query_size}: loop.query_size)")
    print(f"{'scoring':<26} {'frames not bit-identical':>25} {'max |diff| / max score':>23} "
          f"{'top-k changes':>14} {'frames/s':>9} {'vs reference':>13}")
    print(f"{reference.name:<26} {'':>25} {'':>23} {'':>14} {expected.size / reference_seconds:9.1f} {1.0:13.2f}")
    for variant in variants:
        scores, seconds = score_pool(setup, variant)
        differing = int((scores != expected).sum())
        top_changes = len(top(scores, query_size) ^ top(expected, query_size)) // 2
        print(f"{variant.name:<26} {differing:>25d} {float(np.abs(scores - expected).max()) / scale:23.1e} "
              f"{top_changes:>14d} {expected.size / seconds:9.1f} {reference_seconds / seconds:13.2f}")


if __name__ == "__main__":
    main()
