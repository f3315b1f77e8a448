"""Selection time and peak memory of one acquisition step (``Strategy.select``) on large synthetic pools.

Measures, each case in a fresh Python process (so that no case inherits another's memory):
- top-k strategies (``UncertaintyStrategy`` ranking a per-frame ``score``, ``RandomStrategy`` ranking by seeded
  keys alone) under a frame budget k = 1,000, for pools of 100,000, 1,000,000 and 10,000,000 frames, plus one
  1,000,000-frame row with spreading on (``max_per_drive=2``; drive id = index // 100, timestamp =
  (index % 100) x 0.1 s);
- core-set k-centre greedy (``CoresetStrategy``) on a 100,000-frame pool of 64-dim float32 embeddings with
  2,000 labeled frames as centres, k = 100, and k = 1,000 when that is expected to take under about 60 s.

Scores are uniform random floats from a seeded generator, except that 5 % of the frames share one exact score
placed at the top-k cut (about k / 2 untied frames score above it), so the ranking must break ties among the
whole tied group: the worst case for the partial sort in ``alcv.strategies.selection``.

Seconds are ``time.perf_counter`` around ``select`` only (data generation and ``Picker`` construction are
excluded). "peak extra MiB" is the peak RSS during ``select`` minus the RSS just before it (the high-water mark
is reset through ``/proc/self/clear_refs`` first, then read with ``getrusage(RUSAGE_SELF).ru_maxrss``);
"input MiB" is the bytes of the arrays handed to ``select`` (candidates, columns, costs, drive ids, ...), and
"extra/input" their ratio, i.e. the working memory beyond the inputs.

Usage::

    python benchmarks/selection_scaling.py            # every case, a few minutes on 2 CPU cores
    python benchmarks/selection_scaling.py --quick    # without the 10,000,000-frame cases
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from alcv.strategies import (
    CoresetStrategy,
    Picker,
    PoolStats,
    RandomStrategy,
    SelectionRules,
    Strategy,
    UncertaintyStrategy,
)

SEED = 0
TOP_K = 1_000
TIED_FRACTION = 0.05
FRAMES_PER_DRIVE = 100
SECONDS_BETWEEN_FRAMES = 0.1
MAX_PER_DRIVE = 2
EMBEDDING_DIM = 64
LABELED_FRAMES = 2_000
CORESET_POOL = 100_000
CORESET_SECONDS_LIMIT = 60.0
CASE_TIMEOUT_SECONDS = 600
MIB = 2**20


@dataclass(frozen=True)
class Case:
    """One measured ``select`` call: ``strategy`` is ``uncertainty``, ``random`` or ``coreset``."""

    strategy: str
    pool_size: int
    k: int
    spread: bool = False

    @property
    def label(self) -> str:
        name = {"uncertainty": "top-k uncertainty", "random": "top-k random", "coreset": "coreset k-centre"}
        return name[self.strategy] + (f" max_per_drive={MAX_PER_DRIVE}" if self.spread else "")

    def arguments(self) -> list[str]:
        return ["--worker", self.strategy, str(self.pool_size), str(self.k), *(["--spread"] if self.spread else [])]


def tied_scores(pool_size: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform scores in [0, 1), except a ``TIED_FRACTION`` of them set to one value at the top-k cut."""
    scores = rng.random(pool_size)
    scores[rng.random(pool_size) < TIED_FRACTION] = 1.0 - 0.5 * k / pool_size
    return scores


def build_inputs(case: Case) -> tuple[Strategy, Picker, PoolStats, dict[str, np.ndarray]]:
    """The strategy, the picker and the stats of ``case``; also every input array by name (to count bytes)."""
    rng = np.random.default_rng(SEED)
    candidates = np.arange(case.pool_size, dtype=np.int64)
    costs = np.ones(case.pool_size)
    arrays: dict[str, np.ndarray] = {"candidates": candidates, "costs": costs}
    columns: dict[str, np.ndarray] = {}
    labeled_columns: dict[str, np.ndarray] = {}
    labeled = np.zeros(0, dtype=np.int64)
    if case.strategy == "uncertainty":
        columns["score"] = tied_scores(case.pool_size, case.k, rng)
        strategy: Strategy = UncertaintyStrategy()
    elif case.strategy == "random":
        strategy = RandomStrategy()
    else:
        # labeled frames get absolute indices after the pool's, as if the pool were the unlabeled rest
        labeled = np.arange(case.pool_size, case.pool_size + LABELED_FRAMES, dtype=np.int64)
        columns["embedding"] = rng.standard_normal((case.pool_size, EMBEDDING_DIM), dtype=np.float32)
        labeled_columns["embedding"] = rng.standard_normal((LABELED_FRAMES, EMBEDDING_DIM), dtype=np.float32)
        arrays |= {"labeled": labeled, "labeled embedding": labeled_columns["embedding"]}
        strategy = CoresetStrategy()
    arrays |= columns
    drive_id = timestamp = None
    if case.spread:
        drive_id = candidates // FRAMES_PER_DRIVE
        timestamp = (candidates % FRAMES_PER_DRIVE) * SECONDS_BETWEEN_FRAMES
        arrays |= {"drive_id": drive_id, "timestamp": timestamp}
    rules = SelectionRules(budget=case.k, max_per_drive=MAX_PER_DRIVE if case.spread else None)
    picker = Picker(rules, costs=costs, drive_id=drive_id, timestamp=timestamp)
    stats = PoolStats(candidates=candidates, columns=columns, labeled=labeled, labeled_columns=labeled_columns)
    return strategy, picker, stats, arrays


def current_rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def reset_peak_rss() -> bool:
    """Reset the RSS high-water mark (Linux >= 4.0) so that ``ru_maxrss`` measures from now on."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


def check_selection(case: Case, positions: np.ndarray, picker: Picker) -> None:
    """Fail loudly if ``select`` did not fill the budget with distinct, rule-abiding picks."""
    if positions.size != case.k or np.unique(positions).size != positions.size:
        raise AssertionError(f"{case}: expected {case.k} distinct picks, got {positions.size} "
                             f"({np.unique(positions).size} distinct)")
    if case.spread:
        per_drive = np.bincount(picker.drive_id[positions])  # type: ignore[index]
        if per_drive.max() > MAX_PER_DRIVE:
            raise AssertionError(f"{case}: a drive got {per_drive.max()} picks, more than {MAX_PER_DRIVE}")


def run_worker(case: Case) -> dict[str, float]:
    """Build the inputs of ``case``, then time and measure one ``select`` call (in this process)."""
    strategy, picker, stats, arrays = build_inputs(case)
    gc.collect()
    peak_reset = reset_peak_rss()
    rss_before = current_rss_kib() if peak_reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    positions = strategy.select(stats, picker, SEED)
    seconds = time.perf_counter() - started
    peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    check_selection(case, np.asarray(positions), picker)
    return {"seconds": seconds, "input_bytes": float(sum(a.nbytes for a in arrays.values())),
            "extra_bytes": float(max(peak_after - rss_before, 0) * 1024), "peak_reset": float(peak_reset)}


def measure(case: Case) -> dict[str, float]:
    """Run ``case`` in a fresh interpreter (this script with ``--worker``) and return its measurements."""
    command = [sys.executable, str(Path(__file__).resolve()), *case.arguments()]
    completed = subprocess.run(command, check=True, capture_output=True, text=True, timeout=CASE_TIMEOUT_SECONDS)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def format_row(case: Case, result: dict[str, float] | None, note: str = "") -> str:
    if result is None:
        return f"{case.label:<34} {case.pool_size:>11,} {case.k:>6,}  {note}"
    input_mib, extra_mib = result["input_bytes"] / MIB, result["extra_bytes"] / MIB
    return (f"{case.label:<34} {case.pool_size:>11,} {case.k:>6,} {result['seconds']:>9.3f} {input_mib:>10.1f} "
            f"{extra_mib:>15.1f} {extra_mib / input_mib:>12.2f}" + (f"  {note}" if note else ""))


def top_k_cases(quick: bool) -> list[Case]:
    pool_sizes = [100_000, 1_000_000] if quick else [100_000, 1_000_000, 10_000_000]
    cases = [Case(strategy, size, TOP_K) for size in pool_sizes for strategy in ("uncertainty", "random")]
    return [*cases, Case("uncertainty", 1_000_000, TOP_K, spread=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="skip the 10,000,000-frame cases")
    parser.add_argument("--worker", nargs=3, metavar=("STRATEGY", "POOL_SIZE", "K"), help=argparse.SUPPRESS)
    parser.add_argument("--spread", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        strategy, pool_size, k = args.worker
        print(json.dumps(run_worker(Case(strategy, int(pool_size), int(k), args.spread))))
        return

    print(f"# python benchmarks/selection_scaling.py{' --quick' if args.quick else ''}   ({os.cpu_count()} CPU cores, "
          f"numpy {np.__version__}, Python {sys.version.split()[0]}, {sys.platform})")
    print(f"{'case':<34} {'pool size':>11} {'k':>6} {'seconds':>9} {'input MiB':>10} {'peak extra MiB':>15} "
          f"{'extra/input':>12}", flush=True)
    peak_reset = True
    for case in top_k_cases(args.quick):
        result = measure(case)
        peak_reset &= bool(result["peak_reset"])
        print(format_row(case, result), flush=True)

    small = measure(Case("coreset", CORESET_POOL, 100))
    peak_reset &= bool(small["peak_reset"])
    print(format_row(Case("coreset", CORESET_POOL, 100), small), flush=True)
    # k-centre greedy costs a fixed distance pass to the labeled set plus O(pool x dim) per pick
    estimate = small["seconds"] * 10
    large = Case("coreset", CORESET_POOL, 1_000)
    if estimate <= CORESET_SECONDS_LIMIT:
        result = measure(large)
        peak_reset &= bool(result["peak_reset"])
        print(format_row(large, result), flush=True)
    else:
        print(format_row(large, None, f"skipped: about {estimate:.0f} s expected (> {CORESET_SECONDS_LIMIT:.0f} s)"))
    if not peak_reset:
        print("note: could not reset the RSS high-water mark; 'peak extra' may include data generation's peak")


if __name__ == "__main__":
    main()
