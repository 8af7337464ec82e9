"""The longest functions of a source tree (lines from ``def`` to the last line, docstring
included) and how many exceed a limit.

    python benchmarks/function_lengths.py src/unilogit --limit 80 --top 12
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path


def function_lengths(root: Path) -> list[tuple[int, str]]:
    """(length in lines, "path:name") of every function and method under ``root``."""
    rows = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                rows.append((length, f"{path.relative_to(root)}:{node.name}"))
    return sorted(rows, reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--limit", type=int, default=80)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    rows = function_lengths(args.root)
    over = sum(1 for n, _ in rows if n > args.limit)
    print(f"{len(rows)} functions, {over} longer than {args.limit} lines")
    for n, name in rows[: args.top]:
        print(f"{n:5d}  {name}")


if __name__ == "__main__":
    main()
