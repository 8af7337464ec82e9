"""Command line: thin argument parsing over the public API.

Examples::

    unilogit unlearn --model ../shared/models/stories260K.gguf --forget forget.jsonl \\
        --method unilogit --output runs/forgot --epochs 5 --lr 1e-4
    unilogit methods
    unilogit verify runs/forgot
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from .errors import UnilogitError


def _parse_value(text: str) -> Any:
    """Method option values: JSON when it parses (numbers, true, null), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument(
        "--model", required=True, help="local directory, Hub id (org/name) or .gguf file"
    )
    g.add_argument("--revision", help="Hub revision (branch, tag or commit) of --model")
    g.add_argument(
        "--dtype", default="float32", help="float32 | bfloat16 | float16 (default float32)"
    )
    g.add_argument(
        "--device", default=None, help="cpu | cuda | cuda:1 | mps (default: best available)"
    )
    g.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="run the model repo's own code (off by default)",
    )
    g.add_argument(
        "--allow-pickle",
        action="store_true",
        help="accept pickle (.bin) weights (refused by default)",
    )


def _add_benchmark_args(g: Any, *, finetune: bool = False) -> None:
    what = (
        "train on a benchmark's full training set (TOFU: 'full', or with --split retainNN)"
        if finetune
        else "take --forget/--retain from a benchmark: forget split and its matching retain split"
    )
    g.add_argument("--benchmark", help=f"tofu | muse-news: {what}")
    g.add_argument("--split", help="benchmark split, e.g. forget01 | forget05 | forget10 (TOFU)")
    g.add_argument("--data-dir", help="local copy of the benchmark's files (default: the Hub)")
    g.add_argument("--max-rows", type=int, help="use only the first N rows of each split")
    if not finetune:
        g.add_argument(
            "--evaluate",
            action="store_true",
            help="with --benchmark: evaluate before and after; both go into the audit record",
        )


def _add_train_args(
    p: argparse.ArgumentParser, *, default_lr: float, default_epochs: float
) -> None:
    g = p.add_argument_group("training")
    g.add_argument(
        "--epochs",
        type=float,
        default=default_epochs,
        help=f"passes over the forget set (default {default_epochs})",
    )
    g.add_argument(
        "--lr",
        type=float,
        default=default_lr,
        help=f"peak learning rate of AdamW (default {default_lr})",
    )
    g.add_argument(
        "--batch-size", type=int, default=4, help="rows per micro-batch and process (default 4)"
    )
    g.add_argument(
        "--grad-accum", type=int, default=1, help="micro-batches per optimizer step (default 1)"
    )
    g.add_argument(
        "--warmup-ratio", type=float, default=0.1, help="linear warmup share of steps (default 0.1)"
    )
    g.add_argument("--weight-decay", type=float, default=0.0)
    g.add_argument(
        "--max-grad-norm", type=float, default=1.0, help="gradient clipping, 0 = off (default 1)"
    )
    g.add_argument(
        "--max-length",
        type=int,
        default=512,
        help="truncate longer rows, with a warning (default 512)",
    )
    g.add_argument("--seed", type=int, default=0, help="seed of everything random (default 0)")
    g.add_argument("--mixed-precision", default="auto", choices=["auto", "no", "bf16", "fp16"])
    g.add_argument(
        "--no-chat-template",
        dest="chat_template",
        action="store_const",
        const=False,
        default=None,
        help="plain 'Question: ... Answer:' format even if the tokenizer has a chat template",
    )
    g.add_argument("--lora", action="store_true", help="train LoRA adapters instead of all weights")
    g.add_argument("--lora-r", type=int, default=8)
    g.add_argument("--lora-alpha", type=int, default=16)
    g.add_argument(
        "--save-adapter",
        action="store_true",
        help="with --lora: save adapters only instead of merging them into the weights",
    )
    g.add_argument(
        "--log-file",
        help="JSONL file with the loss terms of every step (default OUTPUT/train_log.jsonl)",
    )
    g.add_argument(
        "--checkpoint-every", type=int, default=0, help="save a resumable checkpoint every N steps"
    )
    g.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUTPUT's checkpoint of an interrupted run",
    )
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def make_parser() -> argparse.ArgumentParser:
    from .methods import METHODS

    parser = argparse.ArgumentParser(
        prog="unilogit",
        description="Machine unlearning for language models: Unilogit and strong baselines.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
    _add_model_args(p)
    g = p.add_argument_group("data and method")
    g.add_argument("--forget", help="rows to forget (file or hf:NAME:CONFIG:SPLIT)")
    g.add_argument("--retain", help="rows to keep (used by the retain term)")
    _add_benchmark_args(g)
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
    g.add_argument(
        "--option",
        "-O",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="method option, e.g. -O beta=0.1 (NPO), -O gamma=10 (UnDIAL), "
        "-O divergence=forward (Unilogit); see `unilogit methods`",
    )
    g.add_argument("--refusals", help="with idkdpo: text file of refusal answers, one per line")
    g.add_argument(
        "--allow-overlap",
        action="store_true",
        help="warn instead of refusing when forget and retain share rows",
    )
    p.add_argument(
        "--output", required=True, help="directory for the unlearned model (must not exist)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    _add_train_args(p, default_lr=1e-5, default_epochs=5)

    p = sub.add_parser(
        "finetune",
        help="fine-tune a model on QA pairs or texts (e.g. to build a TOFU target model)",
    )
    _add_model_args(p)
    p.add_argument("--data", help="training rows (file or hf:NAME:CONFIG:SPLIT)")
    _add_benchmark_args(p, finetune=True)
    p.add_argument("--output", required=True, help="directory for the fine-tuned model")
    p.add_argument("--overwrite", action="store_true")
    _add_train_args(p, default_lr=1e-5, default_epochs=5)

    from .demo import add_bench_parsers

    add_bench_parsers(sub)

    sub.add_parser("methods", help="list the unlearning methods and their options")

    p = sub.add_parser("verify", help="check that a saved model matches its unlearn_record.json")
    p.add_argument("directory")
    return parser


def _train_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "epochs": args.epochs,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "grad_accum": args.grad_accum,
        "warmup_ratio": args.warmup_ratio,
        "weight_decay": args.weight_decay,
        "max_grad_norm": args.max_grad_norm,
        "max_length": args.max_length,
        "seed": args.seed,
        "mixed_precision": args.mixed_precision,
        "chat_template": args.chat_template,
        "lora": args.lora,
        "lora_r": args.lora_r,
        "lora_alpha": args.lora_alpha,
        "checkpoint_every": args.checkpoint_every,
        "resume": args.resume,
        "progress": args.progress,
    }


def _method_options(args: argparse.Namespace) -> dict[str, Any]:
    from .errors import ConfigError

    options: dict[str, Any] = {
        "retain_loss": args.retain_loss,
        "retain_weight": args.retain_weight,
        "forget_weight": args.forget_weight,
    }
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option expects KEY=VALUE, got {item!r}")
        options[key.strip().replace("-", "_")] = _parse_value(value)
    return options


def silence_library_progress(args: argparse.Namespace) -> None:
    """With ``--no-progress``, also hide the Hugging Face libraries' own bars."""
    if getattr(args, "progress", True) is False:
        import datasets
        import transformers

        transformers.utils.logging.disable_progress_bar()
        datasets.disable_progress_bars()


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    silence_library_progress(args)
    try:
        if getattr(args, "handler", None) is not None:
            return args.handler(args)
        if args.command == "methods":
            return _cmd_methods()
        if args.command == "verify":
            from .record import verify

            result = verify(args.directory)
            print(json.dumps(result, indent=2))
            return 0 if result["ok"] else 1
        from . import recipes

        if args.command == "unlearn":
            forget, retain = _unlearn_data(args)
            method_options = _method_options(args)
            if retain is None and args.retain_loss == "default":
                method_options["retain_loss"] = None  # no retain set: no retain term
            refusals = None
            if args.refusals:
                from pathlib import Path

                refusals = [
                    ln.strip() for ln in Path(args.refusals).read_text().splitlines() if ln.strip()
                ]
            out = recipes.unlearn_to_disk(
                model=args.model,
                forget=forget,
                retain=retain,
                method=args.method,
                output=args.output,
                overwrite=args.overwrite,
                method_options=method_options,
                train_options=_train_options(args),
                log_file=args.log_file,
                merge_lora=not args.save_adapter,
                refusals=refusals,
                allow_overlap=args.allow_overlap,
                load_options=_load_options(args),
                evaluate=getattr(args, "evaluate_fn", None),
            )
        elif args.command == "finetune":
            out = recipes.finetune_to_disk(
                model=args.model,
                data=_finetune_data(args),
                output=args.output,
                overwrite=args.overwrite,
                train_options=_train_options(args),
                log_file=args.log_file,
                merge_lora=not args.save_adapter,
                load_options=_load_options(args),
            )
        else:  # pragma: no cover - argparse guards this
            parser.error(f"unknown command {args.command}")
        if out is not None:  # None: a non-main process under accelerate launch
            print(f"saved to {out}")
        return 0
    except UnilogitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _benchmark(args: argparse.Namespace, split: str | None) -> Any:
    from .benchmarks.registry import get_benchmark

    kw: dict[str, Any] = {"max_rows": args.max_rows}
    if split:
        kw["split"] = split
    return get_benchmark(args.benchmark, data_dir=args.data_dir, **kw)


def _unlearn_data(args: argparse.Namespace) -> tuple[Any, Any]:
    """--forget/--retain files, or a benchmark's forget split and its matching retain split."""
    from .errors import ConfigError

    if args.benchmark:
        if args.forget or args.retain:
            raise ConfigError("give either --benchmark or --forget/--retain, not both")
        bench = _benchmark(args, args.split)
        args.evaluate_fn = bench.evaluate if args.evaluate else None
        return bench.forget(), bench.retain()
    if args.evaluate:
        raise ConfigError("--evaluate needs --benchmark (it runs the benchmark's evaluation)")
    if not args.forget:
        raise ConfigError("unlearn needs --forget FILE (or --benchmark NAME --split SPLIT)")
    return args.forget, args.retain


def _finetune_data(args: argparse.Namespace) -> Any:
    from .errors import ConfigError

    if args.benchmark:
        if args.data:
            raise ConfigError("give either --benchmark or --data, not both")
        split = args.split or "full"
        bench = _benchmark(args, None)
        return bench.load(split)
    if not args.data:
        raise ConfigError("finetune needs --data FILE (or --benchmark NAME [--split CONFIG])")
    return args.data


def _load_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "dtype": args.dtype,
        "device": args.device,
        "revision": args.revision,
        "trust_remote_code": args.trust_remote_code,
        "allow_pickle": args.allow_pickle,
    }


def _cmd_methods() -> int:
    from .methods import METHODS

    for name, cls in sorted(METHODS.items()):
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        opts = ", ".join(f"{k}={v!r}" for k, v in cls.hyperparameters.items()) or "-"
        ref = "needs a reference model" if cls().needs_reference else "no reference model"
        print(f"{name:10s} {doc}")
        print(f"{'':10s} options: {opts}; default retain: {cls.default_retain}; {ref}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
