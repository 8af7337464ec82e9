"""``unilogit unlearn``: make a model forget rows, save it with its audit record.

::

    unilogit unlearn --model ../shared/models/stories260K.gguf --forget forget.jsonl \\
        --method unilogit --output runs/forgot --epochs 5 --lr 1e-4
    # stop once forget.jsonl is indistinguishable from never-seen rows (epochs: a maximum)
    unilogit unlearn ... --stop-when forgotten --holdout unseen.jsonl --meter-every 5
"""

from __future__ import annotations

import argparse
import functools
import json
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from . import lm_eval_options
from . import options as opt
from .prompt_options import add_columns_option, prompt_format
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
    _add_stopping_options(p)
    p.add_argument(
        "--output", required=True, help="directory for the unlearned model (must not exist)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    opt.add_run_options(p)
    opt.add_training_options(p)
    opt.add_output_options(p)
    lm_eval_options.add_lm_eval_options(p)
    p.set_defaults(handler=run, on_interrupt=interrupted)


def _add_stopping_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "stopping (docs/stopping.md)",
        "a forgetting meter compares the forget set with a holdout set the model never saw "
        "(membership-inference AUC, loss ratio), without a gold model",
    )
    g.add_argument(
        "--stop-when",
        choices=["budget", "forgotten"],
        default="budget",
        help="budget: run --epochs (default); forgotten: stop once the forget set is "
        "indistinguishable from the holdout set and keep the step closest to that point "
        "(--epochs becomes a maximum; needs --holdout or a --benchmark with a holdout split)",
    )
    g.add_argument(
        "--holdout",
        help="rows of the forget set's kind the model never trained on (any data file); "
        "the meter runs and its readings go into the train log and the audit record",
    )
    g.add_argument(
        "--meter-every",
        type=int,
        default=None,
        help="read the meter every N optimizer steps (default: four times per epoch)",
    )
    g.add_argument(
        "--meter-rows",
        type=int,
        default=200,
        help="at most this many forget / holdout / retain rows per reading (default 200)",
    )


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
    opt.check_outputs(args)  # --push-to-hub / --report-to: checked before any work
    forget, retain, evaluate, holdout = _data(args)
    stopping = _stopping(args, holdout)
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
        report_to=args.report_to,
        logging_dir=args.logging_dir,
        evaluate=lm_eval_options.with_lm_eval(evaluate, args),  # + harness tasks, if asked
        holdout=holdout,
        stopping=stopping,
        columns=prompt_columns(args),
    )
    if out is not None:  # None: a non-main process under accelerate launch
        print(f"saved to {out}")
        print(_stopping_line(out))
    opt.push_output(args, out)
    return 0


def _stopping(args: argparse.Namespace, holdout: Any) -> dict[str, Any] | None:
    """The meter's options (None: no holdout, no meter), checked before any model loads."""
    if args.stop_when == "forgotten" and holdout is None:
        raise ConfigError(
            "--stop-when forgotten needs a holdout set: --holdout FILE (rows of the forget "
            "set's kind that the model never trained on) or a --benchmark with a holdout split"
        )
    if args.meter_every is not None and args.meter_every < 1:
        raise ConfigError(f"--meter-every must be >= 1, got {args.meter_every}")
    if args.meter_rows < 2:
        raise ConfigError(f"--meter-rows must be >= 2, got {args.meter_rows}")
    if holdout is None:
        return None
    return {
        "stop": args.stop_when == "forgotten",
        "every": args.meter_every,
        "max_rows": args.meter_rows,
    }


def _stopping_line(output: Any) -> str:
    """What the audit record says about stopping, in one line."""
    from ..record import RECORD_FILE

    block = json.loads((Path(output) / RECORD_FILE).read_text(encoding="utf-8"))["stopping"]
    if block.get("holdout") is None:
        return "note: " + block["note"]
    last = block["readings"][-1]
    aucs = ", ".join(f"{k} {v:.3f}" for k, v in last["auc"].items())
    now = f"at the last step ({last['step']}) membership AUC {aucs} (0.5 = forgotten)"
    if block.get("meter_only"):
        return (
            f"forgetting meter: {now}; with --stop-when forgotten the rule would have "
            + block["explain"]
        )
    return "auto-stop: " + block["explain"]


def _evaluation(bench: Any, fmt: Any) -> Any:
    """The benchmark's evaluation, with the run's prompt format when one was given (the model
    is evaluated on the prompts it was trained with)."""
    return bench.evaluate if fmt is None else functools.partial(bench.evaluate, prompt_format=fmt)


def _data(args: argparse.Namespace) -> tuple[Any, Any, Any, Any]:
    """(forget, retain, evaluate, holdout): --forget/--retain/--holdout files, or a benchmark's
    forget split, its matching retain split, (with --evaluate) its evaluation and (with
    --stop-when forgotten) its holdout split."""
    if args.benchmark:
        if args.forget or args.retain or args.holdout:
            raise ConfigError("give either --benchmark or --forget/--retain/--holdout, not both")
        if args.columns:  # before the benchmark builds: it was silently ignored
            raise ConfigError(
                "--columns maps the columns of --forget/--retain/--holdout files; a --benchmark "
                "brings its own rows: drop --columns"
            )
        bench = opt.get_benchmark(args, original_model=args.model)
        holdout = bench.holdout() if args.stop_when == "forgotten" else None
        evaluate = _evaluation(bench, prompt_format(args)) if args.evaluate else None
        return bench.forget(), bench.retain(), evaluate, holdout
    if args.evaluate:
        raise ConfigError("--evaluate needs --benchmark (it runs the benchmark's evaluation)")
    if not args.forget:
        raise ConfigError("unlearn needs --forget FILE (or --benchmark NAME --split SPLIT)")
    return args.forget, args.retain, None, args.holdout


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
