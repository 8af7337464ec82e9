"""How long a cold ``shop`` build takes: the step count of each preset, and a timer of one
fine-tuning step on the preset's own rows (docs/shop.md, "Sizing")::

    python -m unilogit.benchmarks.shop_sizing default            # steps only (no model)
    python -m unilogit.benchmarks.shop_sizing default --time 4   # + time 4 steps (1 thread)
"""

from __future__ import annotations

import argparse
import math
import random
import time
from typing import Any

from .shop import MODELS, load_base
from .shop_data import ShopConfig, generate_shop

__all__ = ["build_steps", "time_steps"]


def _rows(files: dict[str, list], name: str, config: ShopConfig) -> list:
    """A training set's rows; ``replay``: its candidates x ``replay_repeats`` (an upper bound:
    the build keeps only the base model's right answers, 38 of 84 for SmolLM2)."""
    if name == "replay":
        return files["replay_candidates"] * config.replay_repeats
    return files[name]


def build_steps(config: ShopConfig) -> dict[str, Any]:
    """Rows and optimizer steps (``ceil(rows / batch_size) x epochs``) of each model."""
    files = generate_shop(config)
    out: dict[str, Any] = {}
    for which, sets in MODELS.items():
        rows = sum(len(_rows(files, s, config)) for s in sets)
        out[which] = {"rows": rows, "steps": math.ceil(rows / config.batch_size) * config.epochs}
    out["steps"] = sum(out[m]["steps"] for m in MODELS)
    return out


def time_steps(config: ShopConfig, steps: int = 4, threads: int | None = 1) -> dict[str, float]:
    """Wall and CPU seconds per optimizer step of fine-tuning the base model on the config's
    target rows (shuffled; the first step, which pays for warm-up, is not counted)."""
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
    examples = load_examples(rows[: config.batch_size * (steps + 1)], kind="qa", name="target")
    lengths = [len(e.input_ids) for e in encode_examples(tokenizer, examples)]
    marks: list[tuple[float, float]] = []

    def mark(*_: Any) -> None:
        marks.append((time.perf_counter(), time.process_time()))

    finetune(
        model, tokenizer, examples, epochs=1, lr=config.lr, batch_size=config.batch_size,
        max_length=config.max_length, lora=config.lora, lora_r=config.lora_r,
        lora_alpha=2 * config.lora_r, lora_target_modules=config.lora_modules,
        mixed_precision="no", progress=False, on_step_end=mark,
    )  # fmt: skip
    n = len(marks) - 1
    return {
        "wall_s_per_step": (marks[-1][0] - marks[0][0]) / n,
        "cpu_s_per_step": (marks[-1][1] - marks[0][1]) / n,
        "tokens_per_row": sum(lengths) / len(lengths),
        "threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("::")[0])
    p.add_argument("preset", choices=ShopConfig.preset_names())
    p.add_argument("--time", type=int, default=0, help="time this many steps (0: do not)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--lora", action="store_true")
    args = p.parse_args(argv)
    config = ShopConfig.preset(args.preset, lora=args.lora)
    plan = build_steps(config)
    print(plan)
    if args.time:
        timing = time_steps(config, args.time, args.threads)
        print(timing)
        minutes = plan["steps"] * timing["cpu_s_per_step"] / 60
        print(f"training both models: {plan['steps']} steps x {timing['cpu_s_per_step']:.2f} s "
              f"= {minutes:.1f} min (CPU time; wall on an idle machine)")  # fmt: skip


if __name__ == "__main__":
    main()
