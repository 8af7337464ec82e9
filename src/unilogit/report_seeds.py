"""The report's seed and front summaries: with more than one seed, the median over seeds and
its spread (min–max) at every evaluation point and the Pareto fronts of those medians, plotted
with error bars; for every report, one hypervolume per method (:mod:`unilogit.report_stats`).

Blocks are the report's (``("h2", text)``, ``("p", text)``, ``("table", headers, rows)``,
``("img", file, alt)``), rendered by :mod:`unilogit.report`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .benchmarks.base import Curve
from .report_common import colors, draw_front, figure, fmt, legend, num, save_png, set_scale
from .report_common import curve_front as _front
from .report_common import curve_xy as _xy
from .report_stats import HYPERVOLUMES, P_GAP_KEY, max_seeds, seed_medians

__all__ = ["KL_CURVE", "hypervolume_blocks", "seed_blocks"]

#: KL to the gold model on forget vs on retain answers (both minimised).
KL_CURVE = Curve(
    "forget/kl_to_gold",
    "retain/kl_to_gold",
    "KL to gold: forget vs retain",
    "KL→gold on forget answers  (← better)",
    "KL→gold on retain answers  (↓ better)",
    x_higher_is_better=False,
    y_higher_is_better=False,
    symlog=True,
)
#: The median table's columns: (record key, header, format).
SEED_COLUMNS = (
    ("forget_quality", "FQ", "p"),
    ("model_utility", "MU", ".3f"),
    ("forget/kl_to_gold", "KL→gold forget", ".3g"),
    ("retain/kl_to_gold", "KL→gold retain", ".3g"),
    ("forget/probability", "P(forget)", ".3f"),
    (P_GAP_KEY, "P/P_gold", ".3g"),
)
SPREAD = "min–max over the seeds"
#: The plot of the main curve's two numbers along the runs, medians over seeds.
SEED_PATHS = "seeds_paths.png"
_LINESTYLES = ("-", "--", ":", "-.")


def _who(r: Mapping[str, Any]) -> str:
    return f"{r.get('method')} lr={fmt(r.get('lr'), '.0e')}"


def _cell(r: Mapping[str, Any], key: str, spec: str) -> str:
    """``median [min–max]`` (the median alone when there is no spread)."""
    text = fmt(r.get(key), spec)
    lo_hi = (r.get("spread") or {}).get(key)
    if lo_hi and num(r.get(key)) is not None and lo_hi[0] != lo_hi[1]:
        text += f" [{fmt(lo_hi[0], spec)}–{fmt(lo_hi[1], spec)}]"
    return text


def _order(r: Mapping[str, Any]) -> tuple:
    return (
        str(r.get("method")),
        num(r.get("lr")) or 0.0,
        num(r.get("epochs")) or 0.0,
        num(r.get("step")) or 0.0,
    )


# ------------------------------------------------------------------------------ seeds


def seed_blocks(
    records: Sequence[Mapping[str, Any]], out: Path, curves: Sequence[Curve]
) -> tuple[list[tuple], dict[str, Path]]:
    """The "Seeds: median and spread" section and its plots (nothing with one seed)."""
    n = max_seeds(records)
    medians = sorted(seed_medians(records), key=_order)
    if n < 2 or not medians:
        return [], {}
    baselines = [r for r in records if r.get("kind") == "baseline"]
    shown = [c for c in curves if any(None not in _xy(r, c) for r in medians)]
    if any(None not in _xy(r, KL_CURVE) for r in medians) and KL_CURVE not in shown:
        shown.append(KL_CURVE)
    text = (
        f"Up to {n} seeds per method and learning rate. Each point is the MEDIAN over the "
        f"seeds of one evaluation point (same method, lr, run length and step); error bars "
        f"and [brackets] give the spread = {SPREAD} (not an IQR: with a few seeds the min and max "
        "are all there is). Only points that every seed has are summarised. The fronts are "
        "computed over these medians (per method: line; over all methods: dashed)."
    )
    blocks: list[tuple] = [("h2", "Seeds: median and spread"), ("p", text)]
    paths: dict[str, Path] = {}
    for i, curve in enumerate(shown, 1):
        name = f"seeds_pareto_{i}.png"
        paths[f"seeds_{i}"] = plot_seed_pareto(medians, baselines, out / name, curve)
        blocks.append(("img", name, f"{curve.title}: medians over seeds, {SPREAD}"))
    paths["seeds_paths"] = plot_seed_paths(medians, baselines, out / SEED_PATHS, curves[0])
    blocks.append(("img", SEED_PATHS, f"Along the runs: medians over seeds, {SPREAD} shaded"))
    blocks += _front_tables(medians, shown)
    headers = ["Method / lr", "step", "epoch", "seeds", *[h for _, h, _ in SEED_COLUMNS]]
    rows = [
        [
            _who(r),
            fmt(r.get("step"), "g"),
            fmt(r.get("epoch"), ".3g"),
            str(r.get("n_seeds")),
            *[_cell(r, k, spec) for k, _, spec in SEED_COLUMNS],
        ]
        for r in medians
    ]
    blocks += [
        ("h3", "Every evaluation point: median [min–max] over seeds"),
        ("table", headers, rows),
    ]
    return blocks, paths


def _front_tables(medians: Sequence[Mapping[str, Any]], curves: Sequence[Curve]) -> list[tuple]:
    """Per curve: the points on each method's front of medians."""
    blocks: list[tuple] = []
    for curve in curves:
        rows = []
        for method in dict.fromkeys(str(r.get("method")) for r in medians):
            mine = [r for r in medians if r.get("method") == method]
            for i in _front(mine, curve):
                r = mine[i]
                rows.append(
                    [
                        _who(r),
                        fmt(r.get("step"), "g"),
                        fmt(r.get("epoch"), ".3g"),
                        _cell(r, curve.x_key, ".3g"),
                        _cell(r, curve.y_key, ".3g"),
                    ]
                )
        headers = ["Method / lr", "step", "epoch", curve.x_key, curve.y_key]
        blocks += [
            ("h3", f"Each method's front of medians: {curve.title}"),
            ("table", headers, rows),
        ]
    return blocks


def plot_seed_pareto(
    medians: Sequence[Mapping[str, Any]],
    baselines: Sequence[Mapping[str, Any]],
    path: Path,
    curve: Curve,
) -> Path:
    """Medians over seeds with min–max error bars on both axes, each method's front of
    medians (line), the front over all methods (dashed) and the baselines."""
    fig = figure(7.5, 5.5)
    ax = fig.add_subplot(1, 1, 1)
    methods = list(dict.fromkeys(str(r.get("method")) for r in medians))
    palette = colors(methods)
    for m in methods:
        pts = [r for r in medians if r.get("method") == m and None not in _xy(r, curve)]
        if not pts:
            continue
        xs, ys = zip(*(_xy(r, curve) for r in pts), strict=True)
        ax.errorbar(
            xs,
            ys,
            xerr=_bars(pts, curve.x_key),
            yerr=_bars(pts, curve.y_key),
            fmt="o",
            ms=4,
            color=palette[m],
            alpha=0.7,
            elinewidth=0.8,
            capsize=2,
            label=m,
            zorder=3,
        )
        draw_front(ax, pts, curve, color=palette[m], lw=1.4, alpha=0.8, zorder=2)
    every = [r for r in medians if None not in _xy(r, curve)]
    line = dict(color="black", ls="--", lw=1.0, zorder=1, label="front of medians (all)")
    draw_front(ax, every, curve, min_points=1, **line)
    for name, marker, color in (("target", "X", "#444444"), ("retain", "*", "#000000")):
        b = next((r for r in baselines if r.get("method") == name), None)
        if b is not None and None not in _xy(b, curve):
            ax.scatter(
                *[[v] for v in _xy(b, curve)],
                marker=marker,
                s=170,
                color=color,
                zorder=5,
                label=name,
            )
    set_scale(ax, curve)
    ax.set_xlabel(curve.x_label or curve.x_key)
    ax.set_ylabel(curve.y_label or curve.y_key)
    ax.set_title(f"{curve.title} (median over seeds; bars: {SPREAD})")
    ax.grid(alpha=0.3)
    legend(ax, fontsize=8, loc="best")
    return save_png(fig, path)


def plot_seed_paths(
    medians: Sequence[Mapping[str, Any]],
    baselines: Sequence[Mapping[str, Any]],
    path: Path,
    curve: Curve,
) -> Path:
    """The main curve's two numbers along the runs (x: epoch, fractional between epoch ends;
    0 = the target model): one line per method and lr through the medians over seeds, the
    min–max band shaded, so an overshoot inside an epoch is visible."""
    fig = figure(11.0, 4.5)
    axes = [fig.add_subplot(1, 2, i + 1) for i in range(2)]
    target = next((r for r in baselines if r.get("method") == "target"), None)
    retain = next((r for r in baselines if r.get("method") == "retain"), None)
    lines: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in medians:
        lines.setdefault((str(r.get("method")), r.get("lr"), r.get("epochs")), []).append(r)
    palette = colors(dict.fromkeys(m for m, _, _ in lines))
    style_of: dict[str, int] = {}
    for (method, _, _), rows in sorted(lines.items(), key=lambda kv: _order(kv[1][0])):
        k = style_of[method] = style_of.get(method, -1) + 1
        rows = sorted(rows, key=lambda r: num(r.get("step")) or 0.0)
        for ax, key in zip(axes, (curve.x_key, curve.y_key), strict=True):
            pts = [(num(r.get("epoch")), num(r.get(key)), *(r["spread"].get(key) or (None,) * 2))
                   for r in rows]  # fmt: skip
            start = None if target is None else num(target.get(key))
            if start is not None:
                pts.insert(0, (0.0, start, start, start))
            pts = [p for p in pts if None not in p]
            if not pts:
                continue
            xs, ys, lo, hi = zip(*pts, strict=True)
            color, ls = palette[method], _LINESTYLES[k % len(_LINESTYLES)]
            ax.plot(xs, ys, marker="o", ms=3, color=color, ls=ls, label=_who(rows[0]))
            ax.fill_between(xs, lo, hi, color=color, alpha=0.12, lw=0)
    titles = (curve.x_label or curve.x_key, curve.y_label or curve.y_key)
    for ax, key, title in zip(axes, (curve.x_key, curve.y_key), titles, strict=True):
        if retain is not None and num(retain.get(key)) is not None:
            ax.axhline(num(retain.get(key)), color="black", lw=0.9, ls="--", label="retain")
        ax.set_xlabel("epoch (0 = target model)")
        ax.set_title(f"{title}\nmedian over seeds, {SPREAD} shaded", fontsize=9)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        axes[1].legend(handles, labels, fontsize=7, loc="best", ncol=1 + len(labels) // 12)
    return save_png(fig, path)


def _bars(rows: Sequence[Mapping[str, Any]], key: str) -> list[list[float]]:
    """matplotlib's asymmetric error bars [[below...], [above...]] from ``spread[key]``."""
    below, above = [], []
    for r in rows:
        mid = num(r.get(key)) or 0.0
        lo, hi = (r.get("spread") or {}).get(key) or (mid, mid)
        below.append(max(0.0, mid - lo))
        above.append(max(0.0, hi - mid))
    return [below, above]


# ------------------------------------------------------------------------------ hypervolume


def hypervolume_blocks(records: Sequence[Mapping[str, Any]]) -> list[tuple]:
    """One hypervolume per method and kind (:data:`HYPERVOLUMES`) over all its learning rates
    and evaluation points: of the seed medians with more than one seed, else of the
    evaluations; the baselines' own values for scale. Nothing without the keys."""
    multi = max_seeds(records) > 1
    points = seed_medians(records) if multi else [r for r in records if r.get("kind") == "run"]
    kinds = {k: hv for k, hv in HYPERVOLUMES.items() if any(hv.point(r) for r in points)}
    if not kinds:
        return []
    rows = []
    for r in records:
        if r.get("kind") == "baseline" and r.get("method") in ("target", "retain"):
            rows.append(
                [str(r.get("method")), *[fmt(hv.of([r]), ".3f") for hv in kinds.values()], "1"]
            )
    for method in sorted({str(r.get("method")) for r in points}):
        mine = [r for r in points if r.get("method") == method]
        rows.append([method, *[fmt(hv.of(mine), ".3f") for hv in kinds.values()], str(len(mine))])
    what = "the medians over seeds" if multi else "the evaluations"
    text = (
        f"One number per method summarising its Pareto front over all its learning rates and "
        f"evaluation points ({what}); higher is better. "
        + " ".join(f"{hv.label}: {hv.definition}." for hv in kinds.values())
    )
    headers = ["Method", *[hv.label + " ↑" for hv in kinds.values()], "points"]
    return [("h2", "Hypervolume per method"), ("p", text), ("table", headers, rows)]
