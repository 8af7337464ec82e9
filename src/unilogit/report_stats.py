"""The report's summary statistics, pure functions of sweep records (no plots, no files):

* **seed medians** (:func:`seed_medians`): per method, learning rate, run length and evaluation
  step, the median over seeds of every metric and its spread (min and max over the seeds);
* **hypervolumes** (:data:`HYPERVOLUMES`, :func:`hypervolume_2d`): one number per method that
  summarises its Pareto front;
* **the gap to the gold model** (:func:`add_gold_gap`): the forget-set probability as a ratio
  of the gold (retain) model's, which shows over-forgetting.

Definitions (also in the report text and docs/bench.md):

``FQ-MU hypervolume``
    Each evaluation point is mapped into the unit square: ``u = clip((log10 FQ - F) / (0 - F),
    0, 1)`` with ``F = FQ_LOG10_FLOOR = -10`` (FQ ≤ 1e-10 → 0, FQ = 1 → 1: linear in log10 FQ)
    and ``v = clip(MU, 0, 1)``. The hypervolume is the area of the part of the square dominated
    by the points (both maximised), w.r.t. the reference point (0, 0): the union of the
    rectangles [0, u_i] × [0, v_i]. 0 = nothing better than a model with FQ ≤ 1e-10 or MU 0;
    the gold model itself scores 1 · MU_gold.
``KL hypervolume``
    The same area for ``(exp(-KL→gold forget), exp(-KL→gold retain))``, both in (0, 1],
    reference point (0, 0) (= KL +∞): 1 only for a model that predicts exactly like the gold
    model on both splits.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .report_common import num as _num

__all__ = [
    "FQ_LOG10_FLOOR",
    "HYPERVOLUMES",
    "P_GAP_KEY",
    "Hypervolume",
    "add_gold_gap",
    "hypervolume_2d",
    "normalised_fq",
    "seed_medians",
]

#: log10 FQ at or below which an evaluation counts as "not forgotten at all" (maps to 0).
FQ_LOG10_FLOOR = -10.0
#: The record key of the forget-set probability as a ratio of the gold model's.
P_GAP_KEY = "forget/probability_vs_gold"
#: Record keys that identify a run's evaluation, not a metric (never averaged).
IDENTITY_KEYS = frozenset(
    {"kind", "method", "lr", "epochs", "epoch", "seed", "final", "run_id", "step", "options"}
)


# ------------------------------------------------------------------------------ hypervolume


def hypervolume_2d(points: Sequence[tuple[float, float]]) -> float:
    """Area of the union of the rectangles [0, x] × [0, y] over ``points`` (both coordinates
    maximised, reference point (0, 0)); points with a coordinate ≤ 0 add nothing.

    Sweep from the largest x down: each step adds (x_i - x_next) × (the largest y so far).
    Example: (0.2, 1), (0.5, 0.5), (1, 0.2) -> 0.2·1 + 0.3·0.5 + 0.5·0.2 = 0.45.
    """
    pts = sorted(((x, y) for x, y in points if x > 0 and y > 0), reverse=True)
    area, best_y = 0.0, 0.0
    for i, (x, y) in enumerate(pts):
        best_y = max(best_y, y)
        next_x = pts[i + 1][0] if i + 1 < len(pts) else 0.0
        area += (x - next_x) * best_y
    return area


def normalised_fq(log10_fq: float) -> float:
    """log10 FQ mapped linearly from [FQ_LOG10_FLOOR, 0] onto [0, 1], clipped."""
    return min(1.0, max(0.0, (log10_fq - FQ_LOG10_FLOOR) / (0.0 - FQ_LOG10_FLOOR)))


def _unit(value: float) -> float:
    return min(1.0, max(0.0, value))


@dataclass(frozen=True)
class Hypervolume:
    """A hypervolume of two record keys, each mapped into [0, 1] (higher = better)."""

    x_key: str
    y_key: str
    x_map: Callable[[float], float]
    y_map: Callable[[float], float]
    label: str
    definition: str

    def point(self, record: Mapping[str, Any]) -> tuple[float, float] | None:
        x, y = _num(record.get(self.x_key)), _num(record.get(self.y_key))
        return None if x is None or y is None else (self.x_map(x), self.y_map(y))

    def of(self, records: Sequence[Mapping[str, Any]]) -> float | None:
        """The hypervolume of ``records`` (None when none has both keys)."""
        pts = [p for p in (self.point(r) for r in records) if p is not None]
        return hypervolume_2d(pts) if pts else None


#: The hypervolumes the report gives per method (module docstring), by name.
HYPERVOLUMES: dict[str, Hypervolume] = {
    "fq_mu": Hypervolume(
        "forget_quality_log10",
        "model_utility",
        normalised_fq,
        _unit,
        "HV(FQ, MU)",
        f"area dominated in the unit square by the points (u, v), u = log10 FQ mapped linearly "
        f"from [{FQ_LOG10_FLOOR:g}, 0] onto [0, 1] (clipped: FQ ≤ 1e{FQ_LOG10_FLOOR:g} → 0), "
        "v = MU clipped to [0, 1]; reference point (0, 0); the gold model scores MU_gold",
    ),
    "kl": Hypervolume(
        "forget/kl_to_gold",
        "retain/kl_to_gold",
        lambda kl: math.exp(-max(kl, 0.0)),
        lambda kl: math.exp(-max(kl, 0.0)),
        "HV(KL)",
        "area dominated in the unit square by the points (exp(-KL→gold forget), "
        "exp(-KL→gold retain)); reference point (0, 0), i.e. KL = ∞; 1 = the gold model",
    ),
}


# ------------------------------------------------------------------------------ seeds


def _group_key(r: Mapping[str, Any]) -> tuple:
    return (str(r.get("method")), _num(r.get("lr")), _num(r.get("epochs")), _num(r.get("step")))


def seed_medians(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per (method, lr, epochs, step) of the runs: the median over seeds of every numeric
    metric and ``spread[key] = [min, max]`` over the seeds.

    Only evaluation points that EVERY seed of that (method, lr, epochs) has are kept (an
    auto-stop evaluation off the schedule exists in one seed only). ``forget_quality`` is
    ``10 ** median(forget_quality_log10)`` when the log is recorded (the same as the median FQ
    for an odd number of seeds; the plotted axis is the log). Each row carries ``kind =
    "median"``, the identity, ``epoch`` (median), ``final``, ``n_seeds`` and ``seeds``.
    """
    runs = [r for r in records if r.get("kind") == "run" and not r.get("autostop_eval")]
    seeds_of: dict[tuple, set] = {}
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in runs:
        key = _group_key(r)
        seeds_of.setdefault(key[:3], set()).add(r.get("seed"))
        groups.setdefault(key, []).append(r)
    out = []
    for key, rows in groups.items():
        seeds = sorted({r.get("seed") for r in rows}, key=str)
        if len(seeds) != len(rows) or set(seeds) != seeds_of[key[:3]]:
            continue  # a step not every seed has, or a seed twice (mixed results)
        out.append(_median_row(rows, seeds))
    return out


def _median_row(rows: Sequence[Mapping[str, Any]], seeds: list[Any]) -> dict[str, Any]:
    first = rows[0]
    row: dict[str, Any] = {k: first.get(k) for k in ("method", "lr", "epochs", "step")}
    row.update(kind="median", n_seeds=len(rows), seeds=seeds, final=bool(first.get("final")))
    row["epoch"] = statistics.median(_num(r.get("epoch")) or 0.0 for r in rows)
    spread: dict[str, list[float]] = {}
    keys = dict.fromkeys(k for r in rows for k in r if k not in IDENTITY_KEYS)
    for k in keys:
        values = [_num(r.get(k)) for r in rows]
        if any(v is None for v in values):
            continue  # a metric some seed lacks is not summarised
        row[k] = statistics.median(values)
        spread[k] = [min(values), max(values)]
    if "forget_quality_log10" in spread:
        row["forget_quality"] = 10.0 ** row["forget_quality_log10"]
        spread["forget_quality"] = [10.0**v for v in spread["forget_quality_log10"]]
    row["spread"] = spread
    return row


def max_seeds(records: Sequence[Mapping[str, Any]]) -> int:
    """The largest number of seeds any (method, lr, epochs) of the runs has."""
    seeds: dict[tuple, set] = {}
    for r in records:
        if r.get("kind") == "run":
            seeds.setdefault(_group_key(r)[:3], set()).add(r.get("seed"))
    return max((len(s) for s in seeds.values()), default=0)


# ------------------------------------------------------------------------------ gold gap


def add_gold_gap(records: list[dict[str, Any]], key: str = "forget/probability") -> float | None:
    """Add ``P_GAP_KEY`` = P(forget) / P_gold(forget) to every record holding ``key``, where
    P_gold is the ``retain`` baseline's (the model that never saw the forget set); return
    P_gold (None, and nothing added, without it).

    A ratio, not a difference: the probability spans orders of magnitude and what matters is
    how much more (or less) likely the answers are than under the gold model: 1 = as likely,
    < 1 over-forgotten (less likely than a model that never saw them), > 1 under-forgotten.
    """
    gold = next(
        (r for r in records if r.get("kind") == "baseline" and r.get("method") == "retain"), None
    )
    p_gold = None if gold is None else _num(gold.get(key))
    if p_gold is None or p_gold <= 0:
        return None
    for r in records:
        p = _num(r.get(key))
        if p is not None:
            r[P_GAP_KEY] = p / p_gold
    return p_gold
