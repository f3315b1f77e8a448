"""How unequal the default world's frames are: the spread of mAP over random 20 % subsets (issue 15's world check).

The study alcv comes from trained on different random 20 % subsets of its fleet log and got mAP from 0.45 to 0.69.
Issue 15 allows a change to the synthetic world only where such an external, strategy-free measure shows it unlike
real fleet logs. This script reads the subset runs of ``--subsets`` (one model per seed on a random ``--fraction``
of the pool: ``benchmarks/studies/subset_spread/README.md`` has the commands) and the full-pool models of
``--full-pool`` (every seed trains on the same frames, so their spread is the training noise alone), and prints:

- the subset mAP per seed, their range and standard deviation, set beside the study's 0.45 to 0.69;
- the training noise (the full-pool models' standard deviation) and what is left for the subset itself:
  ``sqrt(max(var_subsets - var_training, 0))``, the spread that which frames were drawn causes;
- the same per class (a rare class is where unequal frames show first).

Usage::

    python benchmarks/subset_spread.py --out benchmarks/results/subset_spread.txt

Reads results files only (``alcv.study.report.load_study``); runs nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from alcv.study.report import load_study

#: the random-subset spread of the study alcv comes from: mAP of models on random 20 % subsets of its data
STUDY_RANGE = (0.45, 0.69)


def spread(values: pd.Series) -> dict[str, float]:
    """Mean, standard deviation (ddof 1), min, max and range of ``values``."""
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)), "min": float(values.min()),
            "max": float(values.max()), "range": float(values.max() - values.min())}


def summarise(subsets_dir: Path, full_pool_dir: Path, fraction: float) -> list[str]:
    """The lines of the module docstring's report."""
    subsets = load_study([subsets_dir]).subsets
    subsets = subsets[np.isclose(subsets["target_fraction"], fraction)].sort_values("seed")
    if subsets.empty:
        raise SystemExit(f"subset_spread: no subset run at fraction {fraction:g} under {subsets_dir}")
    full = load_study([full_pool_dir]).subsets
    full = full[full["target_fraction"] >= 1.0].sort_values("seed")
    columns = ["map", *(c for c in subsets.columns if c.startswith("ap/"))]
    lines = [f"random {fraction:.0%} subsets of the pool ({subsets['n_labeled_frames'].iloc[0]} frames), one model "
             f"per seed, {len(subsets)} seeds; full-pool models (the same frames for every seed): {len(full)} seeds",
             "", "per seed: " + "  ".join(f"{s}: {m:.3f}" for s, m in zip(subsets["seed"], subsets["map"],
                                                                          strict=True)), ""]
    rows = []
    for column in columns:
        total, training = spread(subsets[column]), spread(full[column])
        left = np.sqrt(max(total["std"] ** 2 - training["std"] ** 2, 0.0))
        rows.append({"measure": column, **{f"subsets_{k}": v for k, v in total.items()},
                     "training_noise_std": training["std"], "subset_std_less_training": left})
    table = pd.DataFrame(rows).round(3)
    low, high = STUDY_RANGE
    mean = table.loc[table["measure"] == "map"].iloc[0]
    lines += [table.to_string(index=False), "",
              f"the study's 20 % subsets: mAP {low:.2f} to {high:.2f}, a range of {high - low:.2f} "
              f"({(high - low) / ((high + low) / 2):.0%} of its middle); here {mean['subsets_min']:.3f} to "
              f"{mean['subsets_max']:.3f}, a range of {mean['subsets_range']:.3f} "
              f"({mean['subsets_range'] / mean['subsets_mean']:.0%} of the mean), a std of {mean['subsets_std']:.3f} "
              f"against the training noise's {mean['training_noise_std']:.3f} (the full-pool models)"]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subsets", type=Path, default=Path("benchmarks/studies/subset_spread"))
    parser.add_argument("--full-pool", type=Path, default=Path("benchmarks/studies/label_efficiency/full_pool"))
    parser.add_argument("--fraction", type=float, default=0.2)
    parser.add_argument("--out", type=Path, help="also write the report here, after the command that made it")
    args = parser.parse_args()
    lines = summarise(args.subsets, args.full_pool, args.fraction)
    print("\n".join(lines))
    if args.out:
        args.out.write_text("# python benchmarks/subset_spread.py " + " ".join(sys.argv[1:]) + "\n"
                            + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
