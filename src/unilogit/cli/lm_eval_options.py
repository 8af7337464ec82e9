"""``unilogit eval --lm-eval-tasks ...``: lm-evaluation-harness tasks on the evaluated model.

::

    unilogit eval --model runs/forgot --benchmark none --lm-eval-tasks mmlu --lm-eval-limit 200 \\
        --output utility.json

With a benchmark the harness results are added to its evaluation under ``"lm_eval"``; with
``--benchmark none`` only the harness runs. Task data come from the Hugging Face Hub unless
``--lm-eval-include DIR`` defines tasks on local files (see :mod:`unilogit.eval.lm_eval`).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ConfigError


def add_lm_eval_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("lm-evaluation-harness (pip install 'unilogit[lm-eval]')")
    g.add_argument(
        "--lm-eval-tasks",
        metavar="TASK,...",
        help="harness tasks to run on the model, e.g. mmlu,arc_easy (with --benchmark none: "
        "only these)",
    )
    g.add_argument("--lm-eval-include", metavar="DIR", help="folder of extra task YAML files")
    g.add_argument("--lm-eval-limit", type=float, help="at most N documents per task")
    g.add_argument("--lm-eval-fewshot", type=int, help="few-shot examples (default: the task's)")
    g.add_argument("--lm-eval-batch-size", type=int, default=8, help="(default 8)")
    g.add_argument(
        "--lm-eval-chat-template",
        action="store_true",
        help="format the harness's prompts with the tokenizer's chat template",
    )


def only(args: argparse.Namespace) -> bool:
    """``--benchmark none``: run the harness alone (it then needs ``--lm-eval-tasks``)."""
    if str(args.benchmark).strip().lower() != "none":
        return False
    if not args.lm_eval_tasks:
        raise ConfigError("--benchmark none needs --lm-eval-tasks (nothing else to evaluate)")
    if args.reference or args.gold_model:
        raise ConfigError("--reference / --gold-model need a benchmark, not --benchmark none")
    return True


def evaluate(args: argparse.Namespace, model: Any, tokenizer: Any) -> dict[str, Any]:
    """``{"lm_eval": results}`` of :func:`unilogit.eval.lm_eval.run_lm_eval`, or ``{}``
    without ``--lm-eval-tasks``."""
    if not args.lm_eval_tasks:
        return {}
    from ..eval.lm_eval import run_lm_eval

    return {"lm_eval": run_lm_eval(model, tokenizer, args.lm_eval_tasks, **run_options(args))}


def run_options(args: argparse.Namespace) -> dict[str, Any]:
    """:func:`unilogit.eval.lm_eval.run_lm_eval`'s keyword arguments from the flags."""
    limit = args.lm_eval_limit
    if limit is not None and limit >= 1:
        limit = int(limit)
    return {
        "include_path": args.lm_eval_include,
        "num_fewshot": args.lm_eval_fewshot,
        "limit": limit,
        "batch_size": args.lm_eval_batch_size,
        "apply_chat_template": args.lm_eval_chat_template,
    }


def bench_hooks(args: argparse.Namespace) -> Any:
    """``bench --lm-eval-tasks``: the :class:`~unilogit.eval.lm_eval.LmEvalHooks` (the target
    model once, every run's final evaluation and its auto-stop point), or None."""
    if not args.lm_eval_tasks:
        return None
    from ..eval.lm_eval import LmEvalHooks

    return LmEvalHooks(args.lm_eval_tasks, **run_options(args))


def with_lm_eval(
    bench_evaluate: Callable[[Any, Any], dict[str, Any]] | None, args: argparse.Namespace
) -> Callable[[Any, Any], dict[str, Any]] | None:
    """``bench_evaluate`` (a benchmark's evaluation, or None) extended by the harness tasks of
    ``--lm-eval-tasks`` under ``"lm_eval"``: ``unlearn`` runs it before and after unlearning
    and records both in the audit record."""
    if not getattr(args, "lm_eval_tasks", None):
        return bench_evaluate
    from ..eval.lm_eval import parse_tasks

    parse_tasks(args.lm_eval_tasks)  # a bad list fails before any model loads

    def both(model: Any, tokenizer: Any) -> dict[str, Any]:
        result = dict(bench_evaluate(model, tokenizer)) if bench_evaluate is not None else {}
        return {**result, **evaluate(args, model, tokenizer)}

    return both


def scores(result: dict[str, Any]) -> dict[str, float]:
    """An evaluation's harness scores as flat ``lm_eval/<task>/<metric>`` fields (``{}``
    without harness results)."""
    if "lm_eval" not in result:
        return {}
    from ..eval.lm_eval import flat_scores

    return flat_scores(result["lm_eval"])


def run_only(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Load ``--model``, run the harness, write ``{"model", "seconds", "lm_eval"}`` to ``out``
    and return it."""
    from ..eval.lm_eval import parse_tasks
    from ..files import atomic_write_json
    from ..models import load_model
    from . import options as opt

    parse_tasks(args.lm_eval_tasks)  # a bad list fails before the model loads
    model, tok = load_model(args.model, **opt.load_options(args))
    t0 = time.perf_counter()
    result = evaluate(args, model, tok)
    result = {"model": str(args.model), "seconds": round(time.perf_counter() - t0, 1), **result}
    atomic_write_json(out, result, indent=1)
    print(json.dumps(result["lm_eval"]["tasks"], indent=1))
    print(f"saved to {out}")
    return result
