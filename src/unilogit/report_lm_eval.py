"""The report's "General utility (lm-evaluation-harness)" table (``bench --lm-eval-tasks``).

Harness scores are record fields ``lm_eval/<task>/<metric>``
(:func:`unilogit.eval.lm_eval.flat_scores`): on the target model's baseline record (before any
unlearning), on every run's final evaluation and on the evaluation of its auto-stop point. The
table has one column per task and metric, one row for the original model, and one per run with
"before → after" cells (before: the original model's score); a run whose auto-stop point was
scored has a second row for that point.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .report_common import fmt, label

__all__ = ["KEY_PREFIX", "lm_eval_blocks", "lm_eval_keys"]

KEY_PREFIX = "lm_eval/"  # unilogit.eval.lm_eval.KEY_PREFIX (that module imports the harness)


def lm_eval_keys(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every ``lm_eval/<task>/<metric>`` field of ``records``, sorted."""
    return sorted({k for r in records for k in r if k.startswith(KEY_PREFIX)})


def lm_eval_blocks(records: Sequence[Mapping[str, Any]], sort_key: Any = None) -> list[tuple]:
    """The section's report blocks (``[]`` when no record has harness scores)."""
    keys = lm_eval_keys(records)
    if not keys:
        return []
    original = next(
        (r for r in records if r.get("kind") == "baseline" and r.get("method") == "target"), {}
    )
    scored = [r for r in records if r.get("kind") == "run" and any(k in r for k in keys)]
    scored.sort(key=sort_key or (lambda r: (str(r.get("run_id")), r.get("step") or 0)))
    headers = ["Model / run", "step", *[k[len(KEY_PREFIX) :] for k in keys]]
    rows = [["original model", "0", *[fmt(original.get(k), ".3f") for k in keys]]]
    for r in scored:
        name = label(r) + (" (auto-stop point)" if r.get("autostop_eval") else "")
        cells = [f"{fmt(original.get(k), '.3f')} → {fmt(r.get(k), '.3f')}" for k in keys]
        rows.append([name, fmt(r.get("step"), "g"), *cells])
    text = (
        "Scores of EleutherAI's lm-evaluation-harness tasks (columns: task/metric) on the "
        "original model and, per run, before → after unlearning: at the final step, and at "
        "the step the auto-stop rule keeps when that was scored."
    )
    return [
        ("h2", "General utility (lm-evaluation-harness)"),
        ("p", text),
        ("table", headers, rows),
    ]
