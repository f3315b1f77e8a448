"""Whether the working tree's alcv writes the same run files as an earlier commit: for refactors that must not
change behaviour.

Builds both versions as they would be installed (``pip install --no-deps --target``: a non-editable install of
each, with its own packaged configs), runs ``alcv experiment=smoke logger=none`` with each of ``--strategies``
under both, and once more the first strategy resumed (a third run whose ``results.jsonl`` is cut back as if it
had been killed during loop 1, then started again). Then compares, per run, ``selections.jsonl`` and ``label_pool.json``
byte for byte and ``results.jsonl`` line by line with the ``timings`` left out (the only field that may differ),
and prints one line per file and run. Exits with 1 when anything differs.

Usage::

    python benchmarks/same_outputs.py BASE_REV                     # e.g. the commit before a refactor
    python benchmarks/same_outputs.py BASE_REV --strategies least_confidence coreset --out /tmp/same_outputs

About 4 minutes on 2 CPU cores with the defaults. Other Hydra overrides after ``--`` go to every run.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
#: the files of a run that must not change, and the results file, compared without its timings
SAME_BYTES = ("selections.jsonl", "label_pool.json")
RESULTS = "results.jsonl"


def install(source: Path, target: Path) -> None:
    """A non-editable install of the alcv at ``source`` (without dependencies) into the folder ``target``."""
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                    str(source)], check=True)


def checkout(revision: str, folder: Path) -> None:
    """The files of ``revision`` of this repository, written into ``folder``."""
    archive = subprocess.run(["git", "-C", str(REPOSITORY), "archive", revision], check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")


def run_alcv(package: Path, run_dir: Path, overrides: list[str]) -> None:
    """``alcv experiment=smoke logger=none`` with ``overrides`` from the install in ``package``, into ``run_dir``."""
    env = {**os.environ, "PYTHONPATH": str(package), "WANDB_MODE": "offline"}
    command = [sys.executable, "-c", "from alcv.cli import main; main()", "experiment=smoke", "logger=none",
               "trainer.enable_progress_bar=false", *overrides, f"hydra.run.dir={run_dir}"]
    finished = subprocess.run(command, env=env, cwd=run_dir.parent, capture_output=True, text=True)
    if finished.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{finished.stdout[-3000:]}{finished.stderr[-3000:]}")


def results_without_timings(run_dir: Path) -> list[dict]:
    records = [json.loads(line) for line in (run_dir / RESULTS).read_text().splitlines()]
    for record in records:
        record.pop("timings")
    return records


def compare(base: Path, head: Path) -> list[tuple[str, bool]]:
    """(file, same) for each compared file of the runs in ``base`` and ``head``."""
    outcome = [(name, (base / name).read_bytes() == (head / name).read_bytes()) for name in SAME_BYTES]
    return [*outcome, (f"{RESULTS} (timings left out)", results_without_timings(base) == results_without_timings(head))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base", help="the git revision to compare the working tree with")
    parser.add_argument("--strategies", nargs="+", default=["least_confidence", "coreset"])
    parser.add_argument("--out", type=Path, help="where to build and run (default: a temporary folder, removed)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run (after --)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="same_outputs_"))
    sources = {"base": out / "source_base", "head": out / "source_head"}
    checkout(args.base, sources["base"])
    # the working tree as it is (untracked files too); pip builds in the copy, not in the repository
    shutil.copytree(REPOSITORY, sources["head"], ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", "outputs", "multirun"))
    runs = {f"strategy={strategy}": [f"strategy={strategy}"] for strategy in args.strategies}
    resumed = f"strategy={args.strategies[0]}, resumed in loop 1"
    all_same = True
    try:
        for side, source in sources.items():
            package = out / f"package_{side}"
            install(source, package)
            for name, overrides in runs.items():
                run_dir = out / side / name.replace("=", "_")
                run_dir.parent.mkdir(parents=True, exist_ok=True)
                run_alcv(package, run_dir, [*overrides, *args.overrides])
            resumed_dir = out / side / "resumed"
            run_alcv(package, resumed_dir, [*runs[next(iter(runs))], *args.overrides])
            lines = (resumed_dir / RESULTS).read_text().splitlines(keepends=True)
            (resumed_dir / RESULTS).write_text(lines[0])  # as if killed during loop 1: it is redone
            run_alcv(package, resumed_dir, [*runs[next(iter(runs))], *args.overrides])
        print(f"# python benchmarks/same_outputs.py {args.base} --strategies {' '.join(args.strategies)}   "
              f"(experiment=smoke; base {args.base} vs the working tree)")
        folders = {**{name: name.replace("=", "_") for name in runs}, resumed: "resumed"}
        for name, folder in folders.items():
            for file, same in compare(out / "base" / folder, out / "head" / folder):
                all_same &= same
                print(f"{name:<45} {file:<32} {'same' if same else 'DIFFERENT'}")
        # the resumed run also ends with the uninterrupted run's files
        for file, same in compare(out / "head" / folders[next(iter(runs))], out / "head" / "resumed"):
            all_same &= same
            print(f"{'working tree: resumed vs uninterrupted':<45} {file:<32} {'same' if same else 'DIFFERENT'}")
    finally:
        if args.out is None:
            shutil.rmtree(out, ignore_errors=True)
    sys.exit(0 if all_same else 1)


if __name__ == "__main__":
    main()
