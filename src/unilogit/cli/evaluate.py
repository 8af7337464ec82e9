"""``unilogit eval``: evaluate a model on a benchmark and write the metrics as JSON.

::

    unilogit eval --benchmark world --model runs/forgot --split forget10 --output eval.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError
from . import options as opt

_HEADLINE = (
    "forget_quality",
    "forget_quality_log10",
    "model_utility",
    "knowmem_f",
    "knowmem_r",
    "verbmem_f",
    "privleak",
)


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
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..files import atomic_write_json
    from ..models import load_model

    out = Path(args.output)
    if out.exists() and not args.overwrite:
        raise ConfigError(f"{out} exists; pass --overwrite to replace it")
    if out.is_dir():
        raise ConfigError(f"--output {out} is a directory; give a JSON file name")
    saved = _saved_reference(args.reference)  # read first: a bad file fails before any work
    bench = opt.get_benchmark(args)
    loading = opt.load_options(args)
    model, tok = load_model(args.model, **loading)
    reference, gold = _reference_and_gold(args, bench, model, loading, saved)
    t0 = time.perf_counter()
    result = _evaluate(args, bench, model, tok, reference, gold)
    result = {"model": str(args.model), "seconds": round(time.perf_counter() - t0, 1), **result}
    atomic_write_json(out, result, indent=1)
    print(json.dumps(_headline(result), indent=1))
    print(f"saved to {out}")
    return 0


def _saved_reference(spec: str | None) -> Any:
    """The ``--reference`` JSON file's content (a saved evaluation), or None for a model."""
    if not spec or not (Path(spec).is_file() and Path(spec).suffix == ".json"):
        return None
    path = Path(spec)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"not valid JSON ({e.msg})", file=path, line=e.lineno) from None
    except UnicodeDecodeError:
        raise DataError("not a UTF-8 text file", file=path) from None


def _reference_and_gold(
    args: argparse.Namespace, bench: Any, model: Any, loading: dict[str, Any], saved: Any
) -> tuple[Any, Any]:
    """The Forget Quality / PrivLeak reference (``saved`` evaluation or a model) and the gold
    model; the world benchmark supplies its own retain model for whichever is not given."""
    from ..models import load_model

    reference: Any = saved
    gold: Any = None
    if args.reference and saved is None:
        reference, _ = load_model(args.reference, **loading)
    if args.gold_model:
        gold, _ = load_model(args.gold_model, **loading)
    if args.benchmark.strip().lower() == "world" and (reference is None or gold is None):
        retain_model = bench.load_model("retain").to(model.device)
        reference = retain_model if reference is None else reference
        gold = retain_model if gold is None else gold
    return reference, gold


def _evaluate(
    args: argparse.Namespace, bench: Any, model: Any, tok: Any, reference: Any, gold: Any
) -> dict[str, Any]:
    options = opt.eval_options(args)
    if args.benchmark.strip().lower() in ("muse-news", "muse", "muse_news"):
        if gold is not None:
            raise ConfigError("MUSE has no KL to gold: --gold-model is for TOFU / world")
        return bench.evaluate(
            model,
            tok,
            reference=reference,
            progress=args.progress,
            **{k: v for k, v in options.items() if k == "batch_size"},
        )
    return bench.evaluate(
        model,
        tok,
        reference=reference,
        gold_model=gold,
        generate=args.generate,
        progress=args.progress,
        **options,
    )


def _headline(result: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: result[k] for k in _HEADLINE if result.get(k) is not None}
    for split, s in (result.get("splits") or {}).items():
        if "kl_to_gold" in s:
            out[f"{split}/kl_to_gold"] = s["kl_to_gold"]
    return out
