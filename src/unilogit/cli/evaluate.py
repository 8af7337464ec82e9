"""``unilogit eval``: evaluate a model on a benchmark and write the metrics as JSON.

::

    unilogit eval --benchmark world --model runs/forgot --split forget10 --output eval.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from . import lm_eval_options
from . import options as opt
from .prompt_options import add_prompt_options, prompt_format


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a model on a benchmark and write the metrics as JSON",
        description="TOFU / world: Forget Quality (against the retain model), Model Utility, "
        "KL to the gold model, membership AUCs; MUSE: KnowMem, VerbMem, PrivLeak. The world "
        "benchmark uses its own retain model as reference and gold model by default.",
    )
    opt.add_model_options(p, what="model to evaluate (directory, Hub id, .gguf)")
    g = opt.add_benchmark_options(p, default="world", what="the benchmark to evaluate on")
    opt.add_eval_options(g)
    add_prompt_options(p.add_argument_group("prompt format (default: the model family's)"))
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
    opt.add_progress_option(p)
    p.add_argument("--output", required=True, help="JSON file for the results")
    p.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    lm_eval_options.add_lm_eval_options(p)
    opt.add_report_to(p.add_argument_group("tracking"), "beside --output, trackers/")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..files import atomic_write_json
    from ..models import check_output_file, load_model
    from ..trackers import parse_report_to

    inputs = [p for p in (args.model, args.reference, args.gold_model) if p and Path(p).exists()]
    # never a model, a reference, or anything inside them; an existing file only if asked
    out = check_output_file(args.output, overwrite=args.overwrite, protect=inputs)
    parse_report_to(args.report_to)  # a bad tracker name fails before any work
    if lm_eval_options.only(args):  # --benchmark none --lm-eval-tasks ...
        result = lm_eval_options.run_only(args, out)
        _track(args, out, lm_eval_options.scores(result))
        return 0
    saved = _saved_reference(args.reference)  # read first: a bad file fails before any work
    bench = opt.get_benchmark(args)
    loading = opt.load_options(args)
    model, tok = load_model(args.model, **loading)
    reference, gold = _reference_and_gold(args, bench, model, loading, saved)
    t0 = time.perf_counter()
    result = _evaluate(args, bench, model, tok, reference, gold)
    result.update(lm_eval_options.evaluate(args, model, tok))  # {} without --lm-eval-tasks
    result = {"model": str(args.model), "seconds": round(time.perf_counter() - t0, 1), **result}
    atomic_write_json(out, result, indent=1)
    print(json.dumps(bench.summarize(result), indent=1))
    print(f"saved to {out}")
    _track(args, out, {**bench.summarize(result), **lm_eval_options.scores(result)})
    return 0


def _track(args: argparse.Namespace, out: Path, scalars: dict[str, Any]) -> None:
    """``--report-to``: one tracker run named after the output file (in ``--logging-dir``,
    default ``trackers/`` beside it) with the evaluation's numbers as ``eval/...`` at step 0."""
    from ..trackers import Tracking, parse_report_to

    if not parse_report_to(args.report_to):
        return
    folder = Path(args.logging_dir) if args.logging_dir else out.parent / "trackers"
    tracking = Tracking(args.report_to, logging_dir=folder, run_name=out.stem)
    config = {"command": "eval", "model": str(args.model), "benchmark": args.benchmark}
    tracking.start({**config, "split": args.split, "output": str(out)})
    try:
        tracking.log({"eval": scalars}, 0)
    finally:
        tracking.finish()


def _saved_reference(spec: str | None) -> Any:
    """The ``--reference`` JSON file's content (a saved evaluation), or None for a model; read
    first, so a bad file fails before any model loads (DataError naming file and line)."""
    if not spec or not (Path(spec).is_file() and Path(spec).suffix == ".json"):
        return None
    from ..benchmarks.source import load_reference

    return load_reference(spec)


def _reference_and_gold(
    args: argparse.Namespace, bench: Any, model: Any, loading: dict[str, Any], saved: Any
) -> tuple[Any, Any]:
    """The Forget Quality / PrivLeak reference (the ``--reference`` file's path, checked by
    the benchmark, or a model) and the gold model; a benchmark with its own gold model (world)
    supplies it for whichever is not given."""
    from ..models import load_model

    reference: Any = args.reference if saved is not None else None
    gold: Any = None
    if args.reference and saved is None:
        reference, _ = load_model(args.reference, **loading)
    if args.gold_model:
        if not bench.has_gold:
            raise ConfigError(
                f"benchmark {bench.name!r} has no gold model: --gold-model (KL to gold) is for "
                "benchmarks with one (TOFU, world)"
            )
        gold, _ = load_model(args.gold_model, **loading)
    if bench.has_gold and (reference is None or gold is None):
        own = bench.gold_model()
        if own is not None:
            retain_model = own[0].to(model.device)
            reference = retain_model if reference is None else reference
            gold = retain_model if gold is None else gold
    return reference, gold


def _evaluate(
    args: argparse.Namespace, bench: Any, model: Any, tok: Any, reference: Any, gold: Any
) -> dict[str, Any]:
    """``bench.evaluate`` with only the options the user gave (the benchmark refuses the ones
    it does not take, naming those it does)."""
    options = opt.eval_options(args)
    fmt = prompt_format(args)  # None: the benchmark's default for this model family
    if fmt is not None:
        options["prompt_format"] = fmt
    if not args.generate:
        options["generate"] = False
    if gold is not None:
        options["gold_model"] = gold
    return bench.evaluate(model, tok, reference=reference, progress=args.progress, **options)
