"""The fair-comparison command documented in docs/bench.md parses, and is what issue 14 asks
for: every registered method (both Unilogit weightings), at least 3 learning rates each, at
least 3 seeds, evaluations along the run."""

from __future__ import annotations

import shlex
from pathlib import Path

from unilogit.cli.main import make_parser
from unilogit.cli.options import split_list
from unilogit.experiment.grid import Grid, parse_lrs
from unilogit.methods import METHODS

DOC = Path(__file__).resolve().parents[1] / "docs" / "bench.md"


def _documented_command() -> list[str]:
    text = DOC.read_text(encoding="utf-8").split("<!-- fair-comparison-command")[1]
    block = text.split("```bash\n")[1].split("```")[0]
    return shlex.split(block.replace("\\\n", " "))


def test_the_documented_fair_comparison_command():
    argv = _documented_command()
    assert argv[:2] == ["unilogit", "bench"]
    args = make_parser().parse_args(argv[1:])
    methods = split_list(args.methods)
    builtin = {m for m in METHODS if not m.startswith("test-")}
    assert set(methods) == builtin and {"unilogit", "unilogit-authors"} <= set(methods)
    grid = Grid.make(methods, parse_lrs(args.lrs, methods), [int(args.epochs)], [0])
    assert all(len(grid.lrs[m]) >= 3 for m in methods), grid.lrs
    assert len(split_list(args.seeds)) >= 3
    assert args.eval_every and args.eval_every < 45  # several evaluations per epoch (45 steps)
    assert args.autostop and not args.overwrite  # resumable, never discards results
