"""``unilogit demo``: the built-in world benchmark, Unilogit vs baselines, a report.

::

    unilogit demo            # about ten minutes on two CPU cores
    unilogit demo --quick    # a minute: a smoke test, not a benchmark
"""

from __future__ import annotations

import argparse
from typing import Any

from . import options as opt


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="build the world benchmark, compare Unilogit with baselines, write a report",
        description="Build (or reuse) the built-in world benchmark, evaluate its target and "
        "retain models, run Unilogit, NPO, SimNPO, UnDIAL and GradDiff, evaluate after every "
        "epoch and write report.md / report.html. Re-running reuses finished runs.",
    )
    p.add_argument("--output", help="results directory (default runs/demo)")
    p.add_argument("--preset", default="default", help="world preset (default: default)")
    p.add_argument("--quick", action="store_true", help="the quick world and grid (a minute)")
    p.add_argument("--methods", help="a subset of the demo's methods, comma-separated")
    p.add_argument("--cache-dir", help="world cache (default $UNILOGIT_CACHE or ~/.cache/unilogit)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="discard results of a different configuration in --output",
    )
    opt.add_progress_option(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    run_demo(
        args.output,
        preset=args.preset,
        quick=args.quick,
        cache_dir=args.cache_dir,
        methods=opt.split_list(args.methods) if args.methods else None,
        overwrite=args.overwrite,
        progress=args.progress,
    )
    return 0
