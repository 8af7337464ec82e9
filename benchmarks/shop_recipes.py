"""Build one shop per training recipe and print its sanity figures, a JSON line each.

Each recipe is a JSON object of :class:`~unilogit.benchmarks.shop_data.ShopConfig` fields that
replace the preset's; each is a complete, cached ``build_shop`` (data, target, gold,
``sanity.json``), on the GPU when torch sees one (``--device``, resolved as
``unilogit.models.resolve_device`` does; docs/shop.md, "Recipe grid on a GPU")::

    python benchmarks/shop_recipes.py --preset default \\
        --recipe '{}' --recipe '{"freeze_embeddings": true, "replay_repeats": 3}' \\
        --interpolate 0.9,0.8,0.7 --output runs/shop-recipes.jsonl

Every finished recipe is appended to ``--output`` at once (a run cut short keeps what it
finished). ``--interpolate``: also the target-only figures (key EM forget / neighbour, general
retention) of base + a (target - base) for each a, without building anything more.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from unilogit.benchmarks import shop_eval
from unilogit.benchmarks.shop import Shop, build_shop, load_base
from unilogit.benchmarks.shop_data import ShopConfig
from unilogit.models import resolve_device

FIGURES = ("forget", "neighbour", "general")


def target_figures(model: Any, tokenizer: Any, shop: Shop) -> dict[str, float | None]:
    """Key exact match of ``model``'s greedy answers on the forget, neighbour and general rows."""
    out = {}
    for split in FIGURES:
        rows = shop.load_rows(split)
        answers = shop_eval.generate(
            model, tokenizer, [r["question"] for r in rows], shop_eval.MAX_NEW_TOKENS
        )
        out[split] = shop_eval.share(shop_eval.exact_matches(answers, rows))
    return out


@torch.no_grad()
def interpolations(shop: Shop, device: str, weights: list[float]) -> dict[str, dict]:
    """Target figures of base + a (target - base) for each a in ``weights``."""
    base = load_base(shop.config, None, device)[0].state_dict()
    target, tokenizer = shop.load_model("target", device)
    tuned = {k: v.clone() for k, v in target.state_dict().items()}
    out = {}
    for a in weights:
        target.load_state_dict({k: base[k] + a * (tuned[k] - base[k]) for k in tuned})
        out[str(a)] = target_figures(target, tokenizer, shop)
    return out


def run_recipe(preset: str, recipe: dict, device: str | None, weights: list[float]) -> dict:
    shop = build_shop(ShopConfig.preset(preset, **recipe), progress=False, device=device)
    sanity = shop.sanity()
    row: dict[str, Any] = {"recipe": recipe, "hash": shop.root.name}
    for which in ("target", "gold"):
        info = json.loads((shop.model_dir(which) / "train.json").read_text(encoding="utf-8"))
        row[f"{which}_steps"], row[f"{which}_last_loss"] = info["steps"], info["last_loss"]
    row.update({k: v for k, v in sanity.items() if k not in ("misses", "examples")})
    if weights:
        row["interpolated"] = interpolations(shop, str(resolve_device(device)), weights)
    return row


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("::")[0])
    p.add_argument("--preset", default="default", choices=ShopConfig.preset_names())
    p.add_argument("--recipe", action="append", required=True, help="JSON object of fields")
    p.add_argument("--interpolate", default="", help="comma-separated a values (optional)")
    p.add_argument("--device", default=None, help="default: cuda when there is one, else cpu")
    p.add_argument("--output", type=Path, required=True, help="JSONL file (appended to)")
    args = p.parse_args(argv)
    recipes = [json.loads(r) for r in args.recipe]
    weights = [float(a) for a in args.interpolate.split(",") if a.strip()]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    for recipe in recipes:
        row = run_recipe(args.preset, recipe, args.device, weights)
        print(json.dumps(row), flush=True)
        with args.output.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
