"""Option groups shared by the subcommands, and the one ``KEY=VALUE`` parser.

Each ``add_*`` function adds one argument group; the matching reader turns the parsed
namespace into what the library takes (``load_options`` -> :func:`unilogit.models.load_model`
keywords, ``train_options`` -> :class:`~unilogit.trainer.TrainConfig` fields, validated).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from ..errors import ConfigError
from . import prompt_options

#: Defaults that differ between commands are stated in each flag's help.
UNLEARN_LR = 1e-5  # safe for real models (SmolLM2, Llama); tiny models want ~1e-3
BENCH_LRS = "1e-3"  # the world benchmark's tiny models; real models want ~1e-5


# ------------------------------------------------------------------------------ model loading


def add_model_options(p: argparse.ArgumentParser, *, required: bool = True, what: str = "") -> None:
    """``--model --revision --dtype --device --trust-remote-code --allow-pickle``."""
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        required=required,
        help=what or "local directory, Hub id (org/name) or .gguf file",
    )
    g.add_argument("--revision", help="Hub revision (branch, tag or commit) of the model(s)")
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


def load_options(args: argparse.Namespace) -> dict[str, Any]:
    """The :func:`unilogit.models.load_model` keywords of :func:`add_model_options`."""
    return {
        "dtype": args.dtype,
        "device": args.device,
        "revision": args.revision,
        "trust_remote_code": args.trust_remote_code,
        "allow_pickle": args.allow_pickle,
    }


# ------------------------------------------------------------------------------ benchmarks


def add_benchmark_options(
    p: argparse.ArgumentParser,
    *,
    default: str | None,
    what: str,
    names: str | None = None,
) -> argparse._ArgumentGroup:
    """``--benchmark --split --data-dir --max-rows --preset --cache-dir``; returns the group.
    ``names``: the benchmarks listed in the help (default: every registered one)."""
    from unilogit.benchmarks.registry import available_benchmarks

    names = names or " | ".join(available_benchmarks())
    g = p.add_argument_group("benchmark")
    shown = f" (default {default})" if default else ""
    g.add_argument("--benchmark", default=default, help=f"{names}: {what}{shown}")
    g.add_argument(
        "--split",
        help="forget split: forget01 | forget05 | forget10 (TOFU, world; default forget10), "
        "batch | batch:N | target:ID | single | single:N (facts; default batch; single: every "
        "known target unlearned alone, `bench` reports the mean over targets)",
    )
    g.add_argument("--data-dir", help="local copy of a TOFU / MUSE benchmark's files")
    g.add_argument("--max-rows", type=int, help="use only the first N rows of every split")
    g.add_argument(
        "--preset",
        help="world preset: default | small | quick | 16-epochs | no-background (earlier "
        "defaults); shop preset: default | nll-replay | distilled | small | quick "
        "(default: default)",
    )
    g.add_argument(
        "--max-utility",
        type=int,
        help="facts: at most N utility-probe candidates, spread over the file (cheaper "
        "filtering and evaluation; default all)",
    )
    g.add_argument(
        "--with-retain",
        action="store_true",
        default=None,
        help="facts: add a retain corpus (the model's own texts about the targets' neighbours); "
        "default: the forget corpus only, RWKU's and the Unilogit paper's setting",
    )
    g.add_argument(
        "--holdout-entities",
        type=int,
        help="facts: texts about the first N holdout entities (of 16) are the membership "
        "non-members and the forgetting meter's holdout (default: as many as targets, >= 4)",
    )
    g.add_argument(
        "--cache-dir",
        help="world / facts / shop cache: built models, corpora (default $UNILOGIT_CACHE or "
        "~/.cache/unilogit)",
    )
    return g


#: Constructor options that only some benchmarks take, and which flag gives them.
_OWN_OPTIONS = {
    "world": ("preset", "cache_dir", "progress"),
    "facts": ("cache_dir", "progress", "model", "max_utility", "with_retain", "holdout_entities"),
    "shop": ("preset", "cache_dir", "progress"),
}


def get_benchmark(
    args: argparse.Namespace, *, use_split: bool = True, original_model: str | None = None
) -> Any:
    """The benchmark named by ``--benchmark`` with its data options (and ``--split`` as its
    forget split when ``use_split``); a flag the benchmark does not take is an error.
    ``original_model``: the model unlearning starts from, for benchmarks whose probes and
    corpus are made with it (facts; default there: SmolLM2)."""
    from ..benchmarks.registry import get_benchmark as registry_get

    name = args.benchmark.strip().lower()
    kw: dict[str, Any] = {"max_rows": args.max_rows} if args.max_rows is not None else {}
    own = _OWN_OPTIONS.get(name, ())
    for option in ("preset", "cache_dir", "max_utility", "with_retain", "holdout_entities"):
        value = getattr(args, option, None)
        if value is not None and option not in own:
            flag = "--" + option.replace("_", "-")
            raise ConfigError(f"benchmark {name!r} takes no {flag}")
        if value is not None:
            kw[option] = value
    if "progress" in own:
        kw["progress"] = args.progress
    if original_model is not None and "model" in own:
        kw["model"] = original_model
    spec = f"{name}:{args.split}" if use_split and args.split else name
    return registry_get(spec, data_dir=args.data_dir, **kw)


def add_eval_options(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--eval-batch-size", type=int, help="evaluation batch size")
    g.add_argument(
        "--max-new-tokens",
        type=int,
        help="greedy answer length for ROUGE (default: world 32, TOFU 200)",
    )
    g.add_argument(
        "--metrics-convention",
        choices=("open-unlearning", "tofu", "muse", "exact"),
        help="whose numbers to reproduce (docs/metrics.md; default: open-unlearning for TOFU "
        "and MUSE, exact for world)",
    )


def eval_options(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if args.eval_batch_size:
        out["batch_size"] = args.eval_batch_size
    if args.max_new_tokens:
        out["max_new_tokens"] = args.max_new_tokens
    if getattr(args, "metrics_convention", None):
        out["metrics_convention"] = args.metrics_convention
    return out


# ------------------------------------------------------------------------------ training


def add_progress_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def add_training_options(p: argparse.ArgumentParser, *, batch_size: int = 4) -> None:
    """The :class:`TrainConfig` settings every training command shares (not the run's length,
    learning rate and seed, which ``bench`` sweeps: see :func:`add_run_options`)."""
    g = p.add_argument_group("training")
    g.add_argument(
        "--batch-size",
        type=int,
        default=batch_size,
        help=f"rows per micro-batch and process (default {batch_size})",
    )
    g.add_argument(
        "--retain-batch-size",
        type=int,
        default=None,
        help="retain rows paired with each micro-batch, per process (default: --batch-size; "
        "fewer make each step cheaper)",
    )
    g.add_argument(
        "--grad-accum", type=int, default=1, help="micro-batches per optimizer step (default 1)"
    )
    g.add_argument(
        "--warmup-ratio",
        type=float,
        default=0.1,
        help="linear warmup share of steps, in [0, 1] (default 0.1)",
    )
    g.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay (default 0)")
    g.add_argument(
        "--max-grad-norm", type=float, default=1.0, help="gradient clipping, 0 = off (default 1)"
    )
    g.add_argument(
        "--max-length",
        type=int,
        default=512,
        help="truncate longer rows, with a warning (default 512)",
    )
    g.add_argument("--mixed-precision", default="auto", choices=["auto", "no", "bf16", "fp16"])
    g.add_argument(
        "--no-chat-template",
        dest="chat_template",
        action="store_const",
        const=False,
        default=None,
        help="plain 'Question: ... Answer:' format even if the tokenizer has a chat template",
    )
    prompt_options.add_prompt_options(g)  # --system-prompt, --chat-template, --date-string
    g.add_argument("--lora", action="store_true", help="train LoRA adapters instead of all weights")
    g.add_argument("--lora-r", type=int, default=8, help="LoRA rank (default 8)")
    g.add_argument("--lora-alpha", type=int, default=16, help="LoRA alpha (default 16)")
    add_progress_option(p)


def add_run_options(p: argparse.ArgumentParser, *, epochs: float = 5) -> None:
    """One run's length, learning rate, seed, log and checkpoints (``unlearn``, ``finetune``)."""
    g = p.add_argument_group("run")
    g.add_argument(
        "--epochs",
        type=float,
        default=epochs,
        help=f"passes over the forget set (default {epochs:g})",
    )
    g.add_argument(
        "--lr",
        type=float,
        default=UNLEARN_LR,
        help=f"peak learning rate of AdamW (default {UNLEARN_LR:g}: safe for real models; tiny "
        "models such as stories260K or the world benchmark's need ~1e-3, the default of "
        "`bench --lrs`)",
    )
    g.add_argument("--seed", type=int, default=0, help="seed of everything random (default 0)")
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


_SHARED_FIELDS = (
    "batch_size",
    "retain_batch_size",
    "grad_accum",
    "warmup_ratio",
    "weight_decay",
    "max_grad_norm",
    "max_length",
    "mixed_precision",
    "chat_template",
    "lora",
    "lora_r",
    "lora_alpha",
    "progress",
)
_RUN_FIELDS = ("epochs", "lr", "seed", "checkpoint_every", "resume")


def train_options(args: argparse.Namespace, *, run: bool = True) -> dict[str, Any]:
    """The :class:`~unilogit.trainer.TrainConfig` fields set by :func:`add_training_options`
    (and with ``run``, :func:`add_run_options`), checked by building a TrainConfig: a bad value
    raises ConfigError naming the field, before any model loads."""
    from ..trainer import TrainConfig

    names = _SHARED_FIELDS + (_RUN_FIELDS if run else ())
    options = {name: getattr(args, name) for name in names}
    if (fmt := prompt_options.prompt_format(args)) is not None:
        options["prompt_format"] = fmt
    TrainConfig(**options)
    return options


# ------------------------------------------------------------------------------ outputs


def add_output_options(p: argparse.ArgumentParser) -> None:
    """``--push-to-hub REPO --private --report-to`` (commands that save a model)."""
    g = p.add_argument_group("sharing and tracking")
    g.add_argument(
        "--push-to-hub",
        metavar="REPO",
        help="after saving, upload the model, its card and audit record to this Hub repository",
    )
    g.add_argument(
        "--private", action="store_true", help="with --push-to-hub: create the repository private"
    )
    add_report_to(g, "beside --output, .NAME.trackers")


def add_report_to(g: Any, default_dir: str) -> None:
    """``--report-to`` and ``--logging-dir`` (``default_dir``: where the trackers write)."""
    g.add_argument(
        "--report-to",
        default="none",
        help="experiment trackers, comma-separated: none | tensorboard | wandb | mlflow | ... "
        "(accelerate's; default none)",
    )
    g.add_argument("--logging-dir", help=f"trackers' folder (default: {default_dir})")


def check_outputs(args: argparse.Namespace) -> None:
    """Before any work: ``--push-to-hub`` can upload, ``--report-to`` names known trackers."""
    from ..trackers import parse_report_to

    parse_report_to(args.report_to)
    if args.push_to_hub:
        from ..hub import check_push

        check_push(args.push_to_hub)
    elif args.private:
        raise ConfigError("--private needs --push-to-hub REPO")


def push_output(args: argparse.Namespace, out: Any) -> None:
    """``--push-to-hub``: upload the saved folder ``out`` (None on non-main processes)."""
    if args.push_to_hub and out is not None:
        from ..hub import push_folder

        url = push_folder(out, args.push_to_hub, private=args.private)
        print(f"pushed to {url}")


# ------------------------------------------------------------------------------ aliases

#: Hugging Face ``TrainingArguments`` spellings of our flags (argparse aliases of them).
HF_ALIASES = {
    "--model": ("--model_name_or_path",),
    "--lr": ("--learning_rate",),
    "--epochs": ("--num_train_epochs",),
    "--output": ("--output_dir",),
    "--overwrite": ("--overwrite_output_dir",),
    "--batch-size": ("--per_device_train_batch_size",),
    "--eval-batch-size": ("--per_device_eval_batch_size",),
    "--grad-accum": ("--gradient_accumulation_steps",),
    "--checkpoint-every": ("--save_steps",),
    "--max-steps": ("--max_steps",),
    "--private": ("--hub_private_repo",),
}


def add_aliases(p: argparse.ArgumentParser) -> None:
    """Give every ``--dashed-flag`` of ``p`` its ``--underscored_flag`` spelling and the
    Hugging Face names of :data:`HF_ALIASES` (the same argparse action, so a config file or
    the command line may use either; the first spelling stays the one ``--help`` lists first)."""
    for action in list(p._actions):
        names = []
        for s in action.option_strings:
            if s.startswith("--"):
                names += [s.replace("-", "_").replace("__", "--", 1), *HF_ALIASES.get(s, ())]
        for name in names:
            if name not in p._option_string_actions:
                action.option_strings.append(name)
                p._option_string_actions[name] = action


# ------------------------------------------------------------------------------ KEY=VALUE


def add_option_flag(g: argparse._ArgumentGroup, *, per_method: bool) -> None:
    """``-O/--option``: ``KEY=VALUE``; with ``per_method`` also ``METHOD:KEY=VALUE``."""
    if per_method:
        metavar = "[METHOD:]KEY=VALUE"
        what = (
            "method option: METHOD:KEY=VALUE for one method, KEY=VALUE for every method of "
            "--methods that has the option, e.g. -O npo:beta=0.2 -O retain_weight=2"
        )
    else:
        metavar = "KEY=VALUE"
        what = (
            "option of --method, e.g. -O beta=0.1 (NPO), -O gamma=10 (UnDIAL), "
            "-O divergence=forward (Unilogit); see `unilogit methods`"
        )
    g.add_argument(
        "--option", "-O", action="append", default=[], metavar=metavar, help=f"{what}; repeatable"
    )


def parse_assignment(item: str, *, per_method: bool) -> tuple[str | None, str, str]:
    """``"[METHOD:]KEY=VALUE"`` -> ``(method or None, key with - as _, value text)``."""
    from ..trainer import TrainConfig

    head, sep, value = item.partition("=")
    method, colon, key = head.rpartition(":")
    if not per_method and colon:
        raise ConfigError(f"--option expects KEY=VALUE (the method is --method), got {item!r}")
    key = key.strip().replace("-", "_")
    if not sep or not key or (colon and not method.strip()):
        form = "[METHOD:]KEY=VALUE" if per_method else "KEY=VALUE"
        raise ConfigError(f"--option expects {form}, got {item!r}")
    if key in TrainConfig.field_names() and key != "seed":  # RMU has a seed option of its own
        raise ConfigError(
            f"--option {item!r}: {key!r} is a training setting, not a method option; "
            f"use its own flag (--{key.replace('_', '-')})"
        )
    return (method.strip().lower() if colon else None), key, value


def method_options(method: str, items: Sequence[str]) -> dict[str, Any]:
    """``-O KEY=VALUE`` items of ``unlearn``, typed by the method's option defaults."""
    from ..methods import parse_option

    out: dict[str, Any] = {}
    for item in items:
        _, key, text = parse_assignment(item, per_method=False)
        out[key] = parse_option(method, key, text)
    return out


def parse_method_options(items: Sequence[str], methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``bench``'s ``-O``: ``METHOD:KEY=VALUE`` sets one method's option; ``KEY=VALUE`` sets it
    for every method of ``methods`` that has it (an option none of them has is an error).
    Values are typed by each method's defaults, as in ``unlearn``; later items win."""
    from ..methods import get_method_class, parse_option

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        method, key, text = parse_assignment(item, per_method=True)
        if method is not None:
            if method not in methods:
                raise ConfigError(f"--option {item!r}: method {method!r} is not in --methods")
            targets = [method]
        else:
            targets = [m for m in methods if key in get_method_class(m).option_defaults()]
            if not targets:
                raise ConfigError(
                    f"--option {item!r}: none of the methods {', '.join(methods)} has an "
                    f"option {key!r}"
                )
        for m in targets:
            out.setdefault(m, {})[key] = parse_option(m, key, text)
    return out


def split_list(text: str) -> list[str]:
    """``"a, b;c"`` -> ``["a", "b", "c"]``."""
    return [t.strip() for t in text.replace(";", ",").split(",") if t.strip()]
