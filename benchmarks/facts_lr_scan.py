"""Unlearn the ``facts`` targets with a few methods / learning rates and print forget vs
neighbour vs utility before and after (forget corpus only, full fine-tuning, one evaluation at
the end of each run). Measurement script, not run in CI::

    PYTHONPATH=src python benchmarks/facts_lr_scan.py --split batch:4 --epochs 5 \\
        unilogit@2e-5 unilogit@1e-4 npo@1e-4 undial@1e-4 ga@2e-5
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from unilogit.benchmarks.facts import FactsBenchmark
from unilogit.pretrained import load_smollm2
from unilogit.trainer import unlearn

EVAL = {"fluency_prompts": 4, "fluency_tokens": 32, "examples": 0, "mia": True, "progress": False}


def _fmt(summary: dict[str, float]) -> str:
    return json.dumps({k: round(v, 3) for k, v in summary.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="METHOD@LR, e.g. unilogit@1e-4")
    parser.add_argument("--split", default="batch:4")
    parser.add_argument("--epochs", type=float, default=5)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-utility", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bench = FactsBenchmark(args.split, max_utility=args.max_utility, progress=False)
    model, tok = load_smollm2(progress=False)
    report = bench.prepare(model, tok)
    forget = bench.forget()
    print("targets", report["targets"], "forget texts", len(forget), "kept", report["kept"])
    t0 = time.perf_counter()
    print(
        "BEFORE",
        _fmt(bench.summarize(bench.evaluate(model, tok, **EVAL))),
        f"eval {time.perf_counter() - t0:.1f}s",
        flush=True,
    )
    for run in args.runs:
        method, lr = run.split("@")
        model, tok = load_smollm2(progress=False)
        t0 = time.perf_counter()
        model, hist = unlearn(
            model,
            tok,
            forget,
            method=method,
            lr=float(lr),
            epochs=args.epochs,
            batch_size=args.batch_size,
            retain_loss="none",
            progress=False,
        )
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        summary = bench.summarize(bench.evaluate(model, tok, **EVAL))
        print(
            "AFTER",
            method,
            lr,
            _fmt(summary),
            f"train {train_s:.1f}s ({hist.total_steps} steps) eval {time.perf_counter() - t0:.1f}s",
            flush=True,
        )


if __name__ == "__main__":
    main()
