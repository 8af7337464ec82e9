"""``unilogit bench``: sweep methods x learning rates x epochs x seeds on a benchmark.

::

    unilogit bench --benchmark world --split forget10 --methods unilogit,unilogit-authors,npo \\
        --lrs 1e-3,3e-3 --epochs 5 --seeds 0,1,2 --eval-every 6 --output runs/bench

The fair comparison (every method, three learning rates each, three seeds, evaluations along
the run; resumable): docs/bench.md.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..errors import ConfigError
from ..experiment.grid import parse_lrs
from . import lm_eval_options
from . import options as opt

#: ``--methods``' default: the Unilogit weightings side by side, and the usual baselines.
DEFAULT_METHODS = ("unilogit", "unilogit-authors", "npo", "simnpo", "undial", "graddiff")


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="sweep methods x learning rates x epochs on a benchmark and write a report",
        description="Every method x lr x epochs x seed, evaluated after every epoch (and every "
        "--eval-every steps); results in OUTPUT/results.jsonl (resumable: finished runs are "
        "skipped), OUTPUT/report.md (with several seeds: medians, spread and hypervolumes). "
        "The fair comparison: docs/bench.md.",
    )
    g = opt.add_benchmark_options(p, default="world", what="the benchmark to sweep on")
    opt.add_eval_options(g)
    g = p.add_argument_group("grid")
    g.add_argument(
        "--methods",
        default=",".join(DEFAULT_METHODS),
        help=f"comma-separated methods (default {','.join(DEFAULT_METHODS)}: Unilogit in both "
        "weightings, ours and the authors' / V; `unilogit methods` lists all)",
    )
    g.add_argument(
        "--lrs",
        default=opt.BENCH_LRS,
        help="learning rates: 1e-4,3e-4 for every method, or METHOD:LR items (default "
        f"{opt.BENCH_LRS}: right for the world benchmark's tiny models; real models want ~1e-5, "
        "the default of `unlearn --lr`)",
    )
    g.add_argument("--epochs", default="5", help="run lengths, comma-separated (default 5)")
    g.add_argument(
        "--seeds",
        default="0",
        help="seeds, comma-separated (default 0); with more than one the report gives the "
        "median and min-max spread over seeds at every evaluation point",
    )
    g.add_argument(
        "--eval-every",
        type=int,
        default=None,
        help="also evaluate every N optimizer steps, so the curves show the path within an "
        "epoch (default: after every epoch and at the end)",
    )
    g.add_argument(
        "--no-autostop",
        dest="autostop",
        action="store_false",
        help="do not read the forgetting meter (default: at every evaluation, when the "
        "benchmark has a holdout split; the report then shows each run's auto-stop point)",
    )
    g.add_argument(
        "--meter-every",
        type=int,
        default=None,
        help="forgetting meter: read it every N optimizer steps (default: four times per "
        "epoch); the step the stop rule keeps is evaluated too",
    )
    g.add_argument(
        "--meter-rows",
        type=int,
        default=200,
        help="forgetting meter: at most this many forget / holdout / retain rows (default 200)",
    )
    opt.add_option_flag(g, per_method=True)
    opt.add_model_options(
        p, required=False, what="the target model (TOFU: the fine-tuned model; world: its own)"
    )
    p.add_argument("--gold-model", help="the retain model (never saw the forget split)")
    opt.add_training_options(p, batch_size=8)
    p.add_argument("--output", required=True, help="results directory")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="discard results of a different configuration in --output",
    )
    lm_eval_options.add_lm_eval_options(p)
    opt.add_report_to(p.add_argument_group("tracking"), "OUTPUT/trackers; one run per training")
    p.set_defaults(handler=run)


def _integers(text: str, flag: str) -> list[int]:
    try:
        return [int(e) for e in opt.split_list(text)]
    except ValueError:
        raise ConfigError(f"{flag} takes comma-separated integers, got {text!r}") from None


def _models(args: argparse.Namespace) -> dict[str, Any]:
    """``--model`` / ``--gold-model`` loaded with the model flags (target, gold, tokenizer)."""
    from ..models import load_model

    loading = opt.load_options(args)
    out: dict[str, Any] = {"target": None, "gold": None, "tokenizer": None}
    if args.model:
        out["target"], out["tokenizer"] = load_model(args.model, **loading)
    if args.gold_model:
        out["gold"], _ = load_model(args.gold_model, **loading)
    return out


def run(args: argparse.Namespace) -> int:
    from ..sweep import run_sweep

    methods = [m.lower() for m in opt.split_list(args.methods)]
    lrs = parse_lrs(args.lrs, methods)
    epochs, seeds = _integers(args.epochs, "--epochs"), _integers(args.seeds, "--seeds")
    method_options = opt.parse_method_options(args.option, methods)
    train = opt.train_options(args, run=False)  # validated before any model loads
    hooks = _hooks(args)  # --lm-eval-tasks, --report-to: checked before any model loads
    bench = opt.get_benchmark(args, original_model=args.model)
    result = run_sweep(
        bench,
        methods,
        lrs,
        epochs,
        args.output,
        seeds=seeds,
        method_options=method_options,
        train_options=train,
        eval_options=opt.eval_options(args),
        eval_every=args.eval_every,
        device=args.device,
        overwrite=args.overwrite,
        progress=args.progress,
        autostop=(
            {"max_rows": args.meter_rows, "every": args.meter_every} if args.autostop else False
        ),
        hooks=hooks,
        **_models(args),
    )
    print(
        f"{len(result.ran)} run(s) trained, {len(result.skipped)} reused; "
        f"report: {result.report['md']}"
    )
    return 0


def _hooks(args: argparse.Namespace) -> Any:
    """``--lm-eval-tasks`` (harness scores in the records) and ``--report-to`` (one tracker
    run per training run, in ``--logging-dir`` or ``OUTPUT/trackers``) as the sweep's hooks."""
    from ..experiment.hooks import HookList
    from ..trackers import TrackerHooks, parse_report_to

    hooks = [h for h in (lm_eval_options.bench_hooks(args),) if h is not None]
    if parse_report_to(args.report_to):
        folder = args.logging_dir or os.path.join(args.output, "trackers")
        hooks.append(TrackerHooks(args.report_to, folder, {"command": "bench"}))
    return HookList(hooks) if hooks else None
