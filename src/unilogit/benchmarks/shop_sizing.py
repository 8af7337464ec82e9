"""How long a cold ``shop`` build takes: the step count of each preset, and a timer of one
fine-tuning step on the preset's own rows (docs/shop.md, "Sizing")::

    python -m unilogit.benchmarks.shop_sizing default            # steps only (no model)
    python -m unilogit.benchmarks.shop_sizing default --time 4   # + time 4 steps (1 thread)
    python -m unilogit.benchmarks.shop_sizing default --time 4 --replay-kl 1   # KL replay
"""

from __future__ import annotations

import argparse
import math
import random
import time
from typing import Any

from .shop import MODELS, finetune_options, freeze_embeddings, kl_replay_examples, load_base
from .shop_data import ShopConfig, generate_shop

__all__ = ["build_steps", "time_steps"]


def _rows(files: dict[str, list], name: str, config: ShopConfig) -> list:
    """A training set's rows; ``replay``: its candidates x ``replay_repeats`` (an upper bound:
    the build keeps only the base model's right answers, 38 of 84 for SmolLM2), none with
    ``replay_kl`` (its KL term is paired with the other rows' steps: no steps of its own)."""
    if name == "replay":
        return [] if config.replay_kl > 0 else files["replay_candidates"] * config.replay_repeats
    return files[name]


def build_steps(config: ShopConfig) -> dict[str, Any]:
    """Rows and optimizer steps (``ceil(rows / batch_size) x epochs``) of each model."""
    files = generate_shop(config)
    out: dict[str, Any] = {}
    for which, sets in MODELS.items():
        rows = sum(len(_rows(files, s, config)) for s in sets)
        out[which] = {"rows": rows, "steps": math.ceil(rows / config.batch_size) * config.epochs}
    out["steps"] = sum(out[m]["steps"] for m in MODELS)
    out["parallel_steps"] = max(out[m]["steps"] for m in MODELS)  # build_shop(parallel=True)
    return out


def time_steps(config: ShopConfig, steps: int = 4, threads: int | None = 1) -> dict[str, float]:
    """Wall and CPU seconds per optimizer step of fine-tuning the base model on the config's
    target rows (shuffled; the first step, which pays for warm-up, is not counted), trained as
    the build trains it (``freeze_embeddings``); with ``replay_kl``, the KL term on replay
    questions and the base model's own answers too."""
    import torch

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _time(config, steps)
    finally:
        torch.set_num_threads(before)


def _time(config: ShopConfig, steps: int) -> dict[str, float]:
    import torch

    from unilogit.data import encode_examples, load_examples
    from unilogit.trainer import finetune

    files = generate_shop(config)
    rows = [r for s in MODELS["target"] if s != "replay" for r in files[s]]
    random.Random(0).shuffle(rows)
    model, tokenizer = load_base(config, None)
    freeze_embeddings(model, config)  # as the build trains it
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    examples = load_examples(rows[: config.batch_size * (steps + 1)], kind="qa", name="target")
    lengths = [len(e.input_ids) for e in encode_examples(tokenizer, examples)]
    retain = None
    if config.replay_kl > 0:  # the build's KL rows, from the first candidates' base answers
        from .shop_data import MAX_NEW_TOKENS
        from .shop_eval import replay_rows

        asked = files["replay_candidates"][: config.batch_size * 2]
        record = replay_rows(model, tokenizer, asked, MAX_NEW_TOKENS)[1]
        retain = kl_replay_examples(record, "replay") or None
    marks: list[tuple[float, float]] = []

    def mark(*_: Any) -> None:
        marks.append((time.perf_counter(), time.process_time()))

    options = {**finetune_options(config), "epochs": 1}  # the build's settings, one epoch
    finetune(model, tokenizer, examples, retain=retain, progress=False, on_step_end=mark, **options)
    n = len(marks) - 1
    return {
        "wall_s_per_step": (marks[-1][0] - marks[0][0]) / n,
        "cpu_s_per_step": (marks[-1][1] - marks[0][1]) / n,
        "tokens_per_row": sum(lengths) / len(lengths),
        "threads": torch.get_num_threads(),
        "trainable_params": trainable,  # before LoRA wraps the model
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("::")[0])
    p.add_argument("preset", choices=ShopConfig.preset_names())
    p.add_argument("--time", type=int, default=0, help="time this many steps (0: do not)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--lora", action="store_true")
    p.add_argument("--replay-kl", type=float, help="ShopConfig.replay_kl (default: the preset's)")
    p.add_argument("--kl-batch-size", type=int, help="ShopConfig.kl_batch_size (default: preset's)")
    args = p.parse_args(argv)
    overrides = {"replay_kl": args.replay_kl, "kl_batch_size": args.kl_batch_size}
    config = ShopConfig.preset(
        args.preset, lora=args.lora, **{k: v for k, v in overrides.items() if v is not None}
    )
    plan = build_steps(config)
    print(plan)
    if args.time:
        timing = time_steps(config, args.time, args.threads)
        print(timing)
        minutes = plan["steps"] * timing["cpu_s_per_step"] / 60
        print(f"training both models: {plan['steps']} steps x {timing['cpu_s_per_step']:.2f} s "
              f"= {minutes:.1f} min (CPU time; wall on an idle machine); in parallel: "
              f"{plan['parallel_steps'] * timing['cpu_s_per_step'] / 60:.1f} min")  # fmt: skip


if __name__ == "__main__":
    main()
