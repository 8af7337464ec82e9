"""``unilogit unlearn``: make a model forget rows, save it with its audit record.

::

    unilogit unlearn --model ../shared/models/stories260K.gguf --forget forget.jsonl \\
        --method unilogit --output runs/forgot --epochs 5 --lr 1e-4
"""

from __future__ import annotations

import argparse
import json
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from . import lm_eval_options
from . import options as opt
from .prompt_options import add_columns_option
from .prompt_options import columns as prompt_columns


def add_parser(sub: Any) -> None:
    from ..methods import METHODS

    p = sub.add_parser(
        "unlearn",
        help="make a model forget a set of QA pairs or texts",
        description=(
            "Unlearn the rows of --forget from --model and save the result to --output. "
            "Data files: .jsonl/.json/.csv/.parquet with 'question' + 'answer' columns "
            "(loss on the answer) or 'text' (loss on all tokens), or hf:NAME:CONFIG:SPLIT. "
            f"Methods: {', '.join(sorted(METHODS))}."
        ),
    )
    opt.add_model_options(p)
    g = p.add_argument_group("data and method")
    g.add_argument("--forget", help="rows to forget (file or hf:NAME:CONFIG:SPLIT)")
    g.add_argument("--retain", help="rows to keep (used by the retain term)")
    g.add_argument(
        "--method",
        default="unilogit",
        help=f"one of: {', '.join(sorted(METHODS))} (default unilogit)",
    )
    g.add_argument(
        "--retain-loss",
        default="default",
        choices=["default", "nll", "kl", "none"],
        help="retain term: NLL, KL to the original model, or none (default: the method's)",
    )
    g.add_argument(
        "--retain-weight", type=float, default=1.0, help="weight α of the retain term (default 1)"
    )
    g.add_argument(
        "--forget-weight", type=float, default=1.0, help="weight γ of the forget term (default 1)"
    )
    opt.add_option_flag(g, per_method=False)
    g.add_argument("--refusals", help="with idkdpo: text file of refusal answers, one per line")
    g.add_argument(
        "--allow-overlap",
        action="store_true",
        help="warn instead of refusing when forget and retain share rows",
    )
    add_columns_option(g)
    b = opt.add_benchmark_options(
        p,
        default=None,
        what="take --forget/--retain from a benchmark: forget split and its matching retain split",
    )
    b.add_argument(
        "--evaluate",
        action="store_true",
        help="with --benchmark: evaluate before and after; both go into the audit record",
    )
    p.add_argument(
        "--output", required=True, help="directory for the unlearned model (must not exist)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    opt.add_run_options(p)
    opt.add_training_options(p)
    lm_eval_options.add_lm_eval_options(p)
    p.set_defaults(handler=run, on_interrupt=interrupted)


def build_method(args: argparse.Namespace, has_retain: bool) -> Any:
    """The Method object, built once (recorded and trained): ``--method``, the retain flags
    and ``-O`` options, typed and checked before any model loads."""
    from ..methods import get_method

    method_options: dict[str, Any] = {
        "retain_loss": args.retain_loss,
        "retain_weight": args.retain_weight,
        "forget_weight": args.forget_weight,
        **opt.method_options(args.method, args.option),
    }
    if not has_retain and method_options["retain_loss"] == "default":
        method_options["retain_loss"] = None  # no retain set: no retain term
    return get_method(args.method, **method_options)


def run(args: argparse.Namespace) -> int:
    from .. import recipes

    train_options = opt.train_options(args)  # validated before any data or model loads
    forget, retain, evaluate = _data(args)
    method = build_method(args, has_retain=retain is not None)
    out = recipes.unlearn_to_disk(
        model=args.model,
        forget=forget,
        retain=retain,
        method=method,
        output=args.output,
        overwrite=args.overwrite,
        train_options=train_options,
        log_file=args.log_file,
        merge_lora=not args.save_adapter,
        refusals=args.refusals,  # a path: read (and protected) by the recipe
        allow_overlap=args.allow_overlap,
        load_options=opt.load_options(args),
        evaluate=lm_eval_options.with_lm_eval(evaluate, args),  # + harness tasks, if asked
        columns=prompt_columns(args),
    )
    if out is not None:  # None: a non-main process under accelerate launch
        print(f"saved to {out}")
    return 0


def _data(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """(forget, retain, evaluate): --forget/--retain files, or a benchmark's forget split, its
    matching retain split and (with --evaluate) its evaluation."""
    if args.benchmark:
        if args.forget or args.retain:
            raise ConfigError("give either --benchmark or --forget/--retain, not both")
        bench = opt.get_benchmark(args, original_model=args.model)
        return bench.forget(), bench.retain(), bench.evaluate if args.evaluate else None
    if args.evaluate:
        raise ConfigError("--evaluate needs --benchmark (it runs the benchmark's evaluation)")
    if not args.forget:
        raise ConfigError("unlearn needs --forget FILE (or --benchmark NAME --split SPLIT)")
    return args.forget, args.retain, None


def checkpoint_state(output: str) -> Path:
    """Where ``unlearn --checkpoint-every`` keeps the state of the run saving to ``output``
    (the convention of :func:`unilogit.recipes.unlearn_to_disk`)."""
    from ..outputs import work_area

    return work_area(output) / "checkpoint" / "trainer_state.json"


def interrupted(args: argparse.Namespace, argv: Sequence[str]) -> str:
    """The line printed on Ctrl-C: the last checkpoint and the command that resumes from it."""
    state = checkpoint_state(args.output)
    try:
        step = json.loads(state.read_text(encoding="utf-8"))["step"]
    except (OSError, ValueError, KeyError, TypeError):
        if args.checkpoint_every:
            return "interrupted before the first checkpoint; nothing to resume"
        return "interrupted (no checkpoints: add --checkpoint-every N to make runs resumable)"
    command = ["unilogit", *argv] + ([] if args.resume else ["--resume"])
    return (
        f"interrupted; last checkpoint: {state.parent} (step {step}); resume with: "
        f"{shlex.join(command)}"
    )
