"""``unilogit finetune``: train a model on QA pairs or texts (e.g. a TOFU target model).

::

    unilogit finetune --model ../shared/models/stories260K.gguf --benchmark tofu \\
        --data-dir ../shared/data/tofu --output runs/target --epochs 10 --lr 3e-3
"""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import ConfigError
from . import options as opt
from .prompt_options import add_columns_option
from .prompt_options import columns as prompt_columns


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "finetune",
        help="fine-tune a model on QA pairs or texts (e.g. to build a TOFU target model)",
    )
    opt.add_model_options(p)
    p.add_argument("--data", help="training rows (file or hf:NAME:CONFIG:SPLIT)")
    add_columns_option(p)
    opt.add_benchmark_options(
        p,
        default=None,
        what="train on a benchmark's full training set (TOFU: 'full', or with --split retainNN)",
    )
    p.add_argument("--output", required=True, help="directory for the fine-tuned model")
    p.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    opt.add_run_options(p)
    opt.add_training_options(p)
    opt.add_output_options(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from .. import recipes

    train_options = opt.train_options(args)  # validated before any data or model loads
    opt.check_outputs(args)  # --push-to-hub / --report-to: checked before any work
    out = recipes.finetune_to_disk(
        model=args.model,
        data=_data(args),
        output=args.output,
        overwrite=args.overwrite,
        train_options=train_options,
        log_file=args.log_file,
        merge_lora=not args.save_adapter,
        load_options=opt.load_options(args),
        report_to=args.report_to,
        logging_dir=args.logging_dir,
        columns=prompt_columns(args),
    )
    if out is not None:  # None: a non-main process under accelerate launch
        print(f"saved to {out}")
    opt.push_output(args, out)
    return 0


def _data(args: argparse.Namespace) -> Any:
    if args.benchmark:
        if args.data:
            raise ConfigError("give either --benchmark or --data, not both")
        if args.columns:  # before the benchmark builds: it was silently ignored
            raise ConfigError(
                "--columns maps the columns of a --data file; a --benchmark brings its own "
                "rows: drop --columns"
            )
        bench = opt.get_benchmark(args, use_split=False)  # --split: the training config
        return bench.load(args.split or "full")
    if not args.data:
        raise ConfigError("finetune needs --data FILE (or --benchmark NAME [--split CONFIG])")
    return args.data
