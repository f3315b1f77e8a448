"""The longest functions of a source tree, in lines of code: docstrings, comments and blank lines left out.

Usage::

    python benchmarks/function_lengths.py            # alcv/, the 10 longest
    python benchmarks/function_lengths.py tests --most 5

Exits with 1 when a function is longer than ``--limit`` lines (default 60, the project's ceiling outside tests).
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path


def code_lines(lines: list[str], function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of ``function`` (a node parsed from ``lines``) that hold code."""
    first = function.body[0]
    docstring = (range(first.lineno, first.end_lineno + 1) if ast.get_docstring(function, clean=False) is not None
                 else range(0))
    return sum(1 for number in range(function.lineno, function.end_lineno + 1)
               if number not in docstring and (text := lines[number - 1].strip()) and not text.startswith("#"))


def function_lengths(root: Path) -> list[tuple[int, str]]:
    """(lines of code, ``path:line name``) of every function and method under ``root``, longest first."""
    rows = []
    for path in sorted(root.rglob("*.py")):
        source = path.read_text()
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source, filename=str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                rows.append((code_lines(lines, node), f"{path}:{node.lineno} {node.name}"))
    return sorted(rows, key=lambda row: (-row[0], row[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", nargs="?", type=Path, default=Path(__file__).resolve().parents[1] / "alcv")
    parser.add_argument("--most", type=int, default=10)
    parser.add_argument("--limit", type=int, default=60)
    args = parser.parse_args()
    rows = function_lengths(args.root)
    for length, where in rows[:args.most]:
        print(f"{length:4d}  {where}")
    sys.exit(1 if rows and rows[0][0] > args.limit else 0)


if __name__ == "__main__":
    main()
