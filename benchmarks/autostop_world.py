"""Auto-stop against the fixed budget and the hindsight-best checkpoint, from a `bench` folder.

Produce the folder (world benchmark, the world demo's learning rates, the `unlearn` default of
5 epochs as the maximum, an evaluation every 9 and a meter reading every 3 optimizer steps)::

    unilogit bench --benchmark world --split forget10 \\
        --methods unilogit,npo,simnpo,undial,graddiff \\
        --lrs unilogit:1e-3,npo:1e-3,simnpo:3e-3,undial:1e-3,graddiff:1e-3 \\
        --epochs 5 --eval-every 9 --meter-every 3 --batch-size 8 --output runs/autostop-world

then print the table::

    python benchmarks/autostop_world.py runs/autostop-world

For every run, three checkpoints: FIXED (the last step: the fixed budget), HINDSIGHT (the
evaluation with the highest Forget Quality, ties: higher Model Utility; needs the gold model)
and AUTO (the stop rule's kept step, docs/stopping.md; needs no gold model). Columns: Forget
Quality, Model Utility, KL to gold on forget and retain answers, membership AUC (loss attack,
full forget vs holdout split), forget-set probability beside the gold model's. The issue's
targets are checked per run: where some evaluation reaches FQ >= 0.05, AUTO has FQ >= 0.05 and
MU >= HINDSIGHT's MU - 0.02; AUTO's forget probability is within a factor 2 of gold's; and
whether any evaluation of the run meets all three at once (if none does, no stopping rule can).
Works on any `bench` folder with a gold model (world, TOFU with a retain model).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from unilogit.report import autostop_points, read_records

COLUMNS = (
    ("forget_quality", "FQ", "{:.3g}"),
    ("model_utility", "MU", "{:.3f}"),
    ("forget/kl_to_gold", "KL f", "{:.3f}"),
    ("retain/kl_to_gold", "KL r", "{:.3f}"),
    ("mia/loss", "AUC loss", "{:.3f}"),
    ("mia/min_k_plus_plus", "AUC mk++", "{:.3f}"),
    ("forget/probability", "P(forget)", "{:.3f}"),
)


def _cell(r: dict[str, Any], key: str, fmt: str) -> str:
    v = r.get(key)
    return fmt.format(v) if isinstance(v, (int, float)) else "–"


def _hindsight(evals: list[dict[str, Any]]) -> dict[str, Any]:
    """Highest Forget Quality; ties: higher Model Utility, then the earlier step."""
    return max(
        evals,
        key=lambda r: (r.get("forget_quality", -1), r.get("model_utility", -1), -r["step"]),
    )


def table(records: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(Markdown lines, target-check lines)."""
    gold = next(r for r in records if r.get("method") == "retain")
    target = next(r for r in records if r.get("method") == "target")
    gold_p = gold["forget/probability"]
    autos = {p["run_id"]: p for p in autostop_points(records)}
    head = ["run", "point", "step", *[c[1] for c in COLUMNS], "P/P_gold"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def row(name: str, point: str, r: dict[str, Any]) -> None:
        ratio = r.get("forget/probability", float("nan")) / gold_p
        cells = [name, point, str(r.get("step", 0))]
        cells += [_cell(r, k, f) for k, _, f in COLUMNS] + [f"{ratio:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")

    row("gold (retain model)", "–", gold)
    row("target model", "–", target)
    checks = []
    runs: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if r.get("kind") == "run":
            runs.setdefault(r["run_id"], []).append(r)
    for run_id, evals in sorted(runs.items()):
        final = next((r for r in evals if r.get("final")), None)
        if final is None:  # a run still going (or stopped) in a live folder
            checks.append(f"{run_id}: unfinished, left out")
            continue
        best, auto = _hindsight(evals), autos.get(run_id)
        row(run_id, "fixed", final)
        row(run_id, "hindsight", best)
        if auto is None:
            checks.append(f"{run_id}: no auto-stop decision recorded")
            continue
        row(run_id, f"AUTO ({auto.get('autostop_reason')})", auto)
        checks.append(_check(run_id, evals, best, auto, gold_p))
    return lines, checks


def _meets(r: dict, best: dict, gold_p: float) -> tuple[bool, bool, bool]:
    """The issue's three targets for one evaluation: FQ >= 0.05; MU >= the hindsight-best's
    MU - 0.02; forget probability within a factor 2 of the gold model's."""
    ratio = r["forget/probability"] / gold_p
    return (
        r.get("forget_quality", 0) >= 0.05,
        r.get("model_utility", 0) >= best.get("model_utility", 0) - 0.02,
        0.5 <= ratio <= 2,
    )


def _check(run_id: str, evals: list, best: dict, auto: dict, gold_p: float) -> str:
    reached = any(r.get("forget_quality", 0) >= 0.05 for r in evals)
    fq_ok, mu_ok, p_ok = _meets(auto, best, gold_p)
    ratio = auto["forget/probability"] / gold_p
    parts = [f"P ratio {ratio:.2f} ({'ok' if p_ok else 'MISSED'})"]
    if reached:
        parts.insert(0, f"FQ>=0.05 {'ok' if fq_ok else 'MISSED'}")
        parts.insert(1, f"MU >= hindsight-0.02 {'ok' if mu_ok else 'MISSED'}")
        parts.append(_feasible(evals, best, gold_p))
    else:
        parts.insert(0, "no evaluation reached FQ >= 0.05")
    return f"{run_id}: " + "; ".join(parts)


def _feasible(evals: list, best: dict, gold_p: float) -> str:
    """Which evaluations meet all three targets at once, i.e. whether ANY stopping rule could
    have met them at this run's evaluation points."""
    steps = [r["step"] for r in evals if all(_meets(r, best, gold_p))]
    if not steps:
        return "no evaluation meets all three targets (no stopping rule could)"
    return f"evaluations meeting all three targets: steps {steps}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("results", help="a `unilogit bench` output folder")
    args = p.parse_args(argv)
    records = read_records(Path(args.results) / "results.jsonl")
    lines, checks = table(records)
    print("\n".join(lines))
    print()
    print("\n".join(checks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
