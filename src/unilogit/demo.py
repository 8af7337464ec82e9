"""``unilogit demo``, ``unilogit bench`` and ``unilogit eval``: compare methods on a benchmark.

::

    unilogit demo                          # world benchmark, Unilogit vs baselines, report
    unilogit bench --benchmark world --split forget10 --methods unilogit,npo,undial \\
        --lrs 1e-3,3e-3 --epochs 5 --output runs/bench
    unilogit eval --benchmark world --model runs/forgot --split forget10 --output eval.json

The demo builds (or reuses, from the cache) the built-in ``world`` benchmark, evaluates its
target model and its retain model (the gold standard, and the Forget Quality reference), runs
Unilogit and the main baselines over a small per-method grid with an evaluation after every
epoch, and writes ``report.md`` / ``report.html`` (:mod:`unilogit.report`). The grid is the same
for every method in size (learning rates x epochs), and every run is reported.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import ConfigError, UnilogitError

__all__ = ["DEMO_GRIDS", "add_bench_parsers", "main", "run_demo"]

#: Per preset: methods, each method's learning rate, run length (epochs; every epoch is
#: evaluated), training settings. One rule chose every method's learning rate: the value of
#: {3e-4, 1e-3, 3e-3} with the highest final Forget Quality in a preliminary 3-4 epoch search on
#: the default world (batch 8; retain term and options: each method's defaults). Three epochs
#: keep the demo within about ten minutes on two CPU cores; every run is reported.
DEMO_GRIDS: dict[str, dict[str, Any]] = {
    "default": {
        "methods": ("unilogit", "npo", "simnpo", "undial", "graddiff"),
        "lrs": {
            "unilogit": (1e-3,),
            "npo": (1e-3,),
            "simnpo": (3e-3,),
            "undial": (1e-3,),
            "graddiff": (1e-3,),
        },
        "epochs": (3,),
        "train": {"batch_size": 8, "mixed_precision": "no"},
    },
    "quick": {
        "methods": ("unilogit", "npo", "simnpo", "undial", "graddiff"),
        "lrs": {
            "unilogit": (2e-3,),
            "npo": (2e-3,),
            "simnpo": (2e-3,),
            "undial": (2e-3,),
            "graddiff": (2e-3,),
        },
        "epochs": (2,),
        "train": {"batch_size": 6, "mixed_precision": "no"},
    },
}


def run_demo(
    output_dir: str | Path | None = None,
    preset: str = "default",
    quick: bool = False,
    *,
    cache_dir: str | Path | None = None,
    world_config: Any = None,
    methods: Sequence[str] | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Any:
    """Build (or reuse) the ``world`` benchmark, run the demo grid, write the report.

    Args:
        output_dir: where results and the report go (default ``runs/demo`` or, with
            ``quick``, ``runs/demo-quick``). Re-running skips finished runs.
        preset: the world preset (``"default"``); ``quick=True`` uses the ``quick`` world and
            grid (a minute on a laptop CPU: a smoke test, not a benchmark).
        cache_dir: the world cache (default ``$UNILOGIT_CACHE`` or ``~/.cache/unilogit``).
        world_config: a :class:`~unilogit.benchmarks.WorldConfig` replacing the preset's.
        methods: a subset of the demo's methods.

    Returns the :class:`~unilogit.sweep.SweepResult` (``.report["md"]`` is the report).
    """
    from .benchmarks import WorldSplit
    from .sweep import Grid, run_sweep

    name = "quick" if quick else preset
    grid_spec = DEMO_GRIDS.get(name, DEMO_GRIDS["default"])
    chosen = tuple(methods) if methods else grid_spec["methods"]
    unknown = [m for m in chosen if m not in grid_spec["lrs"]]
    if unknown:
        raise ConfigError(
            f"the demo has no learning rates for {unknown}; its methods are "
            f"{', '.join(grid_spec['methods'])} (use `unilogit bench` for others)"
        )
    grid = Grid.make(chosen, {m: grid_spec["lrs"][m] for m in chosen}, grid_spec["epochs"])
    out = (
        Path(output_dir)
        if output_dir is not None
        else Path("runs/demo-quick" if quick else "runs/demo")
    )
    t0 = time.perf_counter()
    bench = WorldSplit(
        "forget10", preset=name, cache_dir=cache_dir, config=world_config, progress=progress
    )
    _say(
        progress,
        f"unilogit demo: world benchmark ({name} preset), forget10; methods "
        f"{', '.join(chosen)}; results in {out}",
    )
    result = run_sweep(
        bench,
        grid,
        output_dir=out,
        train_options=grid_spec["train"],
        overwrite=overwrite,
        progress=progress,
    )
    minutes = (time.perf_counter() - t0) / 60
    print(
        f"report: {result.report['md']}"
        + (f" (and {result.report['html']})" if "html" in (result.report or {}) else "")
    )
    _say(
        progress,
        f"done in {minutes:.1f} min ({len(result.ran)} run(s), {len(result.skipped)} reused)",
    )
    return result


def _say(progress: bool, msg: str) -> None:
    if progress:
        print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------- parsing


def _split_list(text: str) -> list[str]:
    return [t.strip() for t in text.replace(";", ",").split(",") if t.strip()]


def parse_lrs(text: str, methods: Sequence[str]) -> list[float] | dict[str, list[float]]:
    """``"1e-4,3e-4"`` (every method) or ``"unilogit:1e-3,npo:3e-4,npo:1e-3"`` (per method;
    plain values then apply to the methods without their own)."""
    shared: list[float] = []
    per: dict[str, list[float]] = {}
    for item in _split_list(text):
        method, sep, value = item.rpartition(":")
        try:
            lr = float(value)
        except ValueError:
            raise ConfigError(f"--lrs: {item!r} is not a number (or METHOD:NUMBER)") from None
        if sep:
            per.setdefault(method.strip().lower(), []).append(lr)
        else:
            shared.append(lr)
    if not per:
        if not shared:
            raise ConfigError("--lrs: no learning rate given")
        return shared
    extra = sorted(set(per) - {m.lower() for m in methods})
    if extra:
        raise ConfigError(f"--lrs names method(s) {extra} that are not in --methods")
    missing = [m for m in methods if m not in per and not shared]
    if missing:
        raise ConfigError(f"--lrs: no learning rate for {missing}")
    return {m: per.get(m, shared) for m in methods}


def parse_method_options(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["npo:beta=0.2", "unilogit:retain_weight=2"]`` -> ``{"npo": {"beta": 0.2}, ...}``."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        head, sep, value = item.partition("=")
        method, colon, key = head.partition(":")
        if not sep or not colon or not method.strip() or not key.strip():
            raise ConfigError(f"--option expects METHOD:KEY=VALUE, got {item!r}")
        try:
            parsed: Any = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        out.setdefault(method.strip().lower(), {})[key.strip().replace("-", "_")] = parsed
    return out


def _add_common_bench(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("benchmark")
    g.add_argument("--benchmark", default="world", help="world | tofu | muse-news (eval only)")
    g.add_argument("--split", default="forget10", help="forget01 | forget05 | forget10")
    g.add_argument("--preset", default="default", help="world preset: default | quick")
    g.add_argument("--cache-dir", help="world cache (default $UNILOGIT_CACHE or ~/.cache/unilogit)")
    g.add_argument("--data-dir", help="local copy of a TOFU / MUSE benchmark's files")
    g.add_argument("--max-rows", type=int, help="use only the first N rows of every split")
    g.add_argument("--device", help="cpu | cuda | mps (default: best available)")
    g.add_argument("--eval-batch-size", type=int, help="evaluation batch size")
    g.add_argument(
        "--max-new-tokens",
        type=int,
        help="greedy answer length for ROUGE (default: world 32, TOFU 200)",
    )
    g.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress bars and messages"
    )


def add_bench_parsers(subparsers: Any) -> None:
    """Add the ``bench``, ``demo`` and ``eval`` subcommands to ``unilogit``'s subparsers.
    Each sets ``handler`` (``args.handler(args) -> exit code``)."""
    p = subparsers.add_parser(
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
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(handler=_cmd_demo)

    p = subparsers.add_parser(
        "bench",
        help="sweep methods x learning rates x epochs on a benchmark and write a report",
        description="Every method x lr x epochs x seed, evaluated after every epoch; results "
        "in OUTPUT/results.jsonl (resumable: finished runs are skipped), OUTPUT/report.md.",
    )
    _add_common_bench(p)
    g = p.add_argument_group("grid")
    g.add_argument(
        "--methods",
        default="unilogit,npo,simnpo,undial,graddiff",
        help="comma-separated methods (default unilogit,npo,simnpo,undial,graddiff)",
    )
    g.add_argument(
        "--lrs",
        default="1e-3",
        help="learning rates: 1e-4,3e-4 for every method, or METHOD:LR items",
    )
    g.add_argument("--epochs", default="5", help="run lengths, comma-separated (default 5)")
    g.add_argument("--seeds", default="0", help="seeds, comma-separated (default 0)")
    g.add_argument(
        "--option",
        "-O",
        action="append",
        default=[],
        metavar="METHOD:KEY=VALUE",
        help="method option, e.g. -O npo:beta=0.2 -O unilogit:retain_weight=2",
    )
    g = p.add_argument_group("models (benchmarks without their own)")
    g.add_argument("--model", help="the target model (TOFU: the fine-tuned model)")
    g.add_argument("--gold-model", help="the retain model (never saw the forget split)")
    g = p.add_argument_group("training")
    g.add_argument("--batch-size", type=int, default=8, help="forget rows per step (default 8)")
    g.add_argument("--grad-accum", type=int, default=1)
    g.add_argument("--max-length", type=int, default=512)
    g.add_argument("--mixed-precision", default="auto", choices=["auto", "no", "bf16", "fp16"])
    p.add_argument("--output", required=True, help="results directory")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="discard results of a different configuration in --output",
    )
    p.set_defaults(handler=_cmd_bench)

    p = subparsers.add_parser(
        "eval",
        help="evaluate a model on a benchmark and write the metrics as JSON",
        description="TOFU / world: Forget Quality (against the retain model), Model Utility, "
        "KL to the gold model, membership AUCs; MUSE: KnowMem, VerbMem, PrivLeak. The world "
        "benchmark uses its own retain model as reference and gold model by default.",
    )
    _add_common_bench(p)
    p.add_argument("--model", required=True, help="model to evaluate (directory, Hub id, .gguf)")
    p.add_argument(
        "--reference",
        help="the retain model's saved evaluation (JSON) or the retain model itself: "
        "Forget Quality (TOFU) / PrivLeak (MUSE)",
    )
    p.add_argument("--gold-model", help="the retain model: KL to gold (TOFU / world)")
    p.add_argument(
        "--no-generate",
        dest="generate",
        action="store_false",
        help="skip greedy decoding (no ROUGE)",
    )
    p.add_argument("--output", required=True, help="JSON file for the results")
    p.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    p.set_defaults(handler=_cmd_eval)


def _eval_options(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if args.eval_batch_size:
        out["batch_size"] = args.eval_batch_size
    if args.max_new_tokens:
        out["max_new_tokens"] = args.max_new_tokens
    return out


def _get_benchmark(args: argparse.Namespace, *, split: bool = True) -> Any:
    from .benchmarks.registry import get_benchmark

    name = args.benchmark.strip().lower()
    kw: dict[str, Any] = {"max_rows": args.max_rows}
    if name == "world":
        kw.update(preset=args.preset, cache_dir=args.cache_dir, progress=args.progress)
    if split and name in ("world", "tofu"):
        kw["split"] = args.split
    return get_benchmark(name, data_dir=args.data_dir, **kw)


def _cmd_demo(args: argparse.Namespace) -> int:
    methods = _split_list(args.methods) if args.methods else None
    run_demo(
        args.output,
        preset=args.preset,
        quick=args.quick,
        cache_dir=args.cache_dir,
        methods=methods,
        overwrite=args.overwrite,
        progress=args.progress,
    )
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from .sweep import run_sweep

    if args.benchmark.strip().lower() not in ("world", "tofu"):
        raise ConfigError(
            f"bench supports QA benchmarks (world, tofu), not {args.benchmark!r}; use "
            "`unilogit eval` for MUSE"
        )
    methods = [m.lower() for m in _split_list(args.methods)]
    bench = _get_benchmark(args)
    train = {
        "batch_size": args.batch_size,
        "grad_accum": args.grad_accum,
        "max_length": args.max_length,
        "mixed_precision": args.mixed_precision,
        "progress": args.progress,
    }
    try:
        epochs = [int(e) for e in _split_list(args.epochs)]
        seeds = [int(s) for s in _split_list(args.seeds)]
    except ValueError:
        raise ConfigError("--epochs and --seeds take comma-separated integers") from None
    result = run_sweep(
        bench,
        methods,
        parse_lrs(args.lrs, methods),
        epochs,
        args.output,
        seeds=seeds,
        method_options=parse_method_options(args.option),
        train_options=train,
        eval_options=_eval_options(args),
        target=args.model,
        gold=args.gold_model,
        device=args.device,
        overwrite=args.overwrite,
        progress=args.progress,
    )
    print(
        f"{len(result.ran)} run(s) trained, {len(result.skipped)} reused; "
        f"report: {result.report['md']}"
    )
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from .models import load_model

    out = Path(args.output)
    if out.exists() and not args.overwrite:
        raise ConfigError(f"{out} exists; pass --overwrite to replace it")
    name = args.benchmark.strip().lower()
    bench = _get_benchmark(args)
    model, tok = load_model(args.model, device=args.device)
    reference: Any = None
    gold: Any = None
    if args.reference:
        ref_path = Path(args.reference)
        if ref_path.is_file() and ref_path.suffix == ".json":
            reference = json.loads(ref_path.read_text(encoding="utf-8"))
        else:
            reference, _ = load_model(args.reference, device=args.device)
    if args.gold_model:
        gold, _ = load_model(args.gold_model, device=args.device)
    if name == "world":
        retain_model = None
        if reference is None or gold is None:
            retain_model = bench.load_model("retain").to(model.device)
        reference = retain_model if reference is None else reference
        gold = retain_model if gold is None else gold
    options = _eval_options(args)
    t0 = time.perf_counter()
    if name in ("muse-news", "muse", "muse_news"):
        if gold is not None:
            raise ConfigError("MUSE has no KL to gold: --gold-model is for TOFU / world")
        result = bench.evaluate(
            model,
            tok,
            reference=reference,
            progress=args.progress,
            **{k: v for k, v in options.items() if k == "batch_size"},
        )
    else:
        result = bench.evaluate(
            model,
            tok,
            reference=reference,
            gold_model=gold,
            generate=args.generate,
            progress=args.progress,
            **options,
        )
    result = {"model": str(args.model), "seconds": round(time.perf_counter() - t0, 1), **result}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str) + "\n", encoding="utf-8")
    print(json.dumps(_headline(result), indent=1))
    print(f"saved to {out}")
    return 0


def _headline(result: Mapping[str, Any]) -> dict[str, Any]:
    keys = (
        "forget_quality",
        "forget_quality_log10",
        "model_utility",
        "knowmem_f",
        "knowmem_r",
        "verbmem_f",
        "privleak",
    )
    out = {k: result[k] for k in keys if result.get(k) is not None}
    for split, s in (result.get("splits") or {}).items():
        if "kl_to_gold" in s:
            out[f"{split}/kl_to_gold"] = s["kl_to_gold"]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m unilogit.demo [demo|bench|eval] ...`` (default: ``demo``)."""
    parser = argparse.ArgumentParser(prog="python -m unilogit.demo")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_bench_parsers(sub)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["demo", *argv]
    args = parser.parse_args(argv)
    from .cli import silence_library_progress

    silence_library_progress(args)
    try:
        return args.handler(args)
    except UnilogitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
