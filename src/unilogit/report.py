"""Sweep reports: a table of every run, a CSV, PNG plots and a self-contained Markdown/HTML page.

Everything here is a pure function of the sweep's records (the lines of ``results.jsonl``, see
:mod:`unilogit.experiment`) and, for the "Examples" section, of the saved evaluations they point
to, so a report can be rebuilt at any time without a model::

    from unilogit.report import read_records, write_report
    write_report(read_records("runs/demo/results.jsonl"), "runs/demo",
                 meta=json.load(open("runs/demo/sweep.json")))

What the tables and Pareto plots show comes from the benchmark's declared ``columns`` and
``curves`` (:class:`unilogit.benchmarks.base.Benchmark`), saved in ``sweep.json``'s ``layout``
(or given to :func:`write_report`); without one, the TOFU-style QA layout (Forget Quality, Model
Utility, KL to gold).

A record is a flat dict: identity (``kind`` = ``"run"`` | ``"baseline"``, ``method``, ``lr``,
``epochs`` = the run's total, ``epoch`` = when it was evaluated, ``seed``, ``final``) and metrics
(``forget_quality``, ``forget_quality_log10``, ``model_utility``, ``"<split>/<metric>"`` such as
``"forget/kl_to_gold"``, ``"mia/min_k"``). Baselines are the ``target`` model (before
unlearning) and the ``retain`` model (never saw the forget set: the gold standard).

Each curve is a Pareto plot, x (forgetting) against y (what must survive), e.g. Forget Quality
(log10 of the KS p-value, higher = closer to the retain model) against Model Utility, with the
Pareto front of every evaluation and of each method: a point is on the front when no other point
is at least as good on both axes and better on one. Nothing is filtered: every evaluation of
every run is in the CSV and the full table, and the plots show all of them.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .benchmarks.base import Column, Curve
from .errors import DataError
from .files import atomic_write_text, read_jsonl
from .report_common import colors as _colors
from .report_common import curve_front as _front
from .report_common import curve_xy as _xy
from .report_common import draw_front, pareto_front, set_scale
from .report_common import figure as _figure
from .report_common import fmt as _fmt
from .report_common import label as _label
from .report_common import legend as _legend
from .report_common import num as _num
from .report_common import save_png as _save
from .report_lm_eval import lm_eval_blocks
from .report_seeds import hypervolume_blocks, seed_blocks
from .report_stats import P_GAP_KEY, add_gold_gap, max_seeds, seed_medians

__all__ = [
    "ID_COLUMNS",
    "autostop_points",
    "pareto_front",
    "read_records",
    "write_csv",
    "write_report",
]

#: Identity columns, first in the CSV, in this order.
ID_COLUMNS = ("kind", "method", "lr", "epochs", "epoch", "seed", "final", "run_id")
#: Record keys of the KL-to-gold plot (drawn when the records hold them).
KL_KEYS = ("forget/kl_to_gold", "retain/kl_to_gold")
#: How many examples per kind the "Examples" section shows.
EXAMPLES_PER_KIND = 3
_LINESTYLES = ("-", "--", ":", "-.")
PLOTS = {
    "pareto": "pareto.png",
    "epochs": "forget_quality_epochs.png",
    "kl": "kl_to_gold.png",
}


@dataclass(frozen=True)
class Layout:
    """What a report shows: table columns, Pareto curves (the first one ranks and stars)."""

    columns: tuple[Column, ...]
    curves: tuple[Curve, ...]

    @classmethod
    def resolve(
        cls,
        meta: Mapping[str, Any],
        columns: Sequence[Column] | None = None,
        curves: Sequence[Curve] | None = None,
    ) -> Layout:
        """Explicit ``columns`` / ``curves``, else ``meta["layout"]``, else the QA layout."""
        from .benchmarks.qa import QA_COLUMNS, QA_CURVES

        saved = meta.get("layout") if isinstance(meta.get("layout"), Mapping) else {}
        if columns is None:
            columns = [Column(**c) for c in saved.get("columns") or []] or QA_COLUMNS
        if curves is None:
            curves = [Curve(**c) for c in saved.get("curves") or []] or QA_CURVES
        if not curves:
            raise DataError("a report needs at least one curve")
        return cls(tuple(columns), tuple(curves))

    @property
    def main(self) -> Curve:
        return self.curves[0]

    def plot_names(self) -> list[tuple[str, str, Curve]]:
        """(paths key, file name, curve): ``pareto`` / ``pareto.png`` first, then numbered."""
        out = [("pareto", PLOTS["pareto"], self.main)]
        out += [(f"pareto_{i}", f"pareto_{i}.png", c) for i, c in enumerate(self.curves[1:], 2)]
        return out


# ----------------------------------------------------------------------------------- records


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a ``results.jsonl`` file (blank lines skipped;
    :func:`unilogit.files.read_jsonl`, with an unreadable file a :class:`DataError` too)."""
    try:
        return read_jsonl(path)
    except OSError as e:
        raise DataError(f"cannot read results: {e}", file=Path(path)) from None


def _sort_key(r: Mapping[str, Any]) -> tuple:
    baseline = r.get("kind") == "baseline"
    order = {"target": 0, "retain": 1}
    return (
        0 if baseline else 1,
        order.get(str(r.get("method")), 2) if baseline else 0,
        str(r.get("method")),
        _num(r.get("lr")) or 0.0,
        _num(r.get("epochs")) or 0.0,
        _num(r.get("seed")) or 0.0,
        _num(r.get("epoch")) or 0.0,
        _num(r.get("step")) or 0.0,
    )


def _runs(records: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """run_id -> its evaluations in epoch order (records of kind "run")."""
    out: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        if r.get("kind") == "run":
            out.setdefault(str(r.get("run_id") or _label(r)), []).append(r)
    for evals in out.values():
        evals.sort(key=lambda r: (_num(r.get("epoch")) or 0.0, _num(r.get("step")) or 0.0))
    return out


def autostop_points(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each run's AUTO-STOP point: the evaluation at the step its final record's
    ``autostop_step`` names (the stop rule on the gold-free meter's readings, docs/stopping.md),
    as a copy with ``autostop: True`` and ``autostop_reason``; step 0 is the target model's
    evaluation under the run's identity. Runs without a decision are left out."""
    target = _baseline(records, "target")
    out = []
    for evals in _runs(records).values():
        final = next((r for r in evals if r.get("final")), None)
        step = None if final is None else final.get("autostop_step")
        if step is None:
            continue
        found = next((r for r in evals if r.get("step") == step), None)
        if found is None and step == 0 and target is not None:
            ident = {k: final[k] for k in ("kind", "method", "lr", "epochs", "seed", "run_id")}
            found = {**target, **ident, "epoch": 0, "step": 0, "final": False}
        if found is not None:
            reason = final.get("autostop_reason")
            out.append({**found, "autostop": True, "autostop_reason": reason})
    return out


def _baseline(records: Sequence[Mapping[str, Any]], name: str) -> Mapping[str, Any] | None:
    for r in records:
        if r.get("kind") == "baseline" and r.get("method") == name:
            return r
    return None


def write_csv(records: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """One row per record: identity columns first, then every metric (sorted by name).
    Nested values (dicts, lists) are written as JSON."""
    keys: dict[str, None] = dict.fromkeys(ID_COLUMNS)
    for r in records:
        for k in sorted(r):
            keys.setdefault(k, None)
    columns = list(ID_COLUMNS) + sorted(k for k in keys if k not in ID_COLUMNS)
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow(columns)
    for r in sorted(records, key=_sort_key):
        row = []
        for k in columns:
            v = r.get(k)
            if isinstance(v, (dict, list)):
                v = json.dumps(v)
            row.append("" if v is None else v)
        writer.writerow(row)
    return atomic_write_text(path, buf.getvalue())


# ----------------------------------------------------------------------------------- plots


def plot_pareto(records: Sequence[Mapping[str, Any]], path: Path, curve: Curve) -> Path:
    """``curve.x_key`` vs ``curve.y_key``: every evaluation, each method's front, the global
    front and the baselines (target, retain)."""
    fig = _figure(7.5, 5.5)
    ax = fig.add_subplot(1, 1, 1)
    runs = [r for r in records if r.get("kind") == "run"]
    methods = list(dict.fromkeys(str(r.get("method")) for r in sorted(runs, key=_sort_key)))
    colors = _colors(methods)
    for m in methods:
        pts = [r for r in runs if r.get("method") == m and None not in _xy(r, curve)]
        if not pts:
            continue
        xs, ys = zip(*(_xy(r, curve) for r in pts), strict=True)
        sizes = [46 if r.get("final") else 18 for r in pts]
        ax.scatter(xs, ys, s=sizes, color=colors[m], alpha=0.75, label=m, zorder=3)
        draw_front(ax, pts, curve, color=colors[m], lw=1.2, alpha=0.6, zorder=2)
    everything = [r for r in runs if None not in _xy(r, curve)]
    line = dict(color="black", ls="--", lw=1.0, zorder=1, label="Pareto front (all)")
    front = draw_front(ax, everything, curve, min_points=1, **line)
    if front:
        ax.scatter(*front, s=110, facecolors="none", edgecolors="black", lw=1.0, zorder=4)
    for name, marker, color in (("target", "X", "#444444"), ("retain", "*", "#000000")):
        b = _baseline(records, name)
        if b is not None and None not in _xy(b, curve):
            x, y = _xy(b, curve)
            ax.scatter([x], [y], marker=marker, s=170, color=color, zorder=5, label=name)
    _mark_autostop(ax, records, colors, lambda r: _xy(r, curve))
    if curve.x_key == "forget_quality_log10":
        ax.axvline(math.log10(0.05), color="#999999", lw=0.8, ls=":", zorder=0)
        ax.text(math.log10(0.05), ax.get_ylim()[0], " p=0.05", color="#777777", fontsize=7)
    set_scale(ax, curve)
    ax.set_xlabel(curve.x_label or curve.x_key)
    ax.set_ylabel(curve.y_label or curve.y_key)
    ax.set_title(f"{curve.title} (all evaluations; large = final)")
    ax.grid(alpha=0.3)
    _legend(ax, fontsize=8, loc="best")
    return _save(fig, path)


def plot_epochs(records: Sequence[Mapping[str, Any]], path: Path, curve: Curve) -> Path:
    """The main curve's two numbers at each evaluation (x: epoch, fractional between epoch
    ends), one line per run (epoch 0 = the target model)."""
    from matplotlib.ticker import MaxNLocator

    fig = _figure(11.0, 4.5)
    axes = [fig.add_subplot(1, 2, i + 1) for i in range(2)]
    runs = _runs(records)
    target = _baseline(records, "target")
    retain = _baseline(records, "retain")
    methods = list(dict.fromkeys(str(ev[0].get("method")) for ev in runs.values()))
    colors = _colors(methods)
    style_of: dict[str, int] = {}
    for evals in sorted(runs.values(), key=lambda ev: _sort_key(ev[0])):
        m = str(evals[0].get("method"))
        k = style_of[m] = style_of.get(m, -1) + 1
        for ax, key in zip(axes, (curve.x_key, curve.y_key), strict=True):
            pts = [(_num(r.get("epoch")), _num(r.get(key))) for r in evals]
            if target is not None and _num(target.get(key)) is not None:
                pts.insert(0, (0.0, _num(target.get(key))))
            pts = [(e, v) for e, v in pts if e is not None and v is not None]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(
                    xs,
                    ys,
                    marker="o",
                    ms=3,
                    color=colors[m],
                    ls=_LINESTYLES[k % len(_LINESTYLES)],
                    label=_label(evals[0]),
                )
    for ax, key in zip(axes, (curve.x_key, curve.y_key), strict=True):
        _mark_autostop(ax, records, colors, lambda r, k=key: (_num(r.get("epoch")), _num(r.get(k))))
    titles = (curve.x_label or curve.x_key, curve.y_label or curve.y_key)
    for ax, key, title in zip(axes, (curve.x_key, curve.y_key), titles, strict=True):
        if retain is not None and _num(retain.get(key)) is not None:
            ax.axhline(_num(retain.get(key)), color="black", lw=0.9, ls="--", label="retain")
        ax.set_xlabel("epoch (0 = target model)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    if curve.x_key == "forget_quality_log10":
        axes[0].axhline(math.log10(0.05), color="#999999", lw=0.8, ls=":")
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        axes[1].legend(handles, labels, fontsize=7, loc="best", ncol=1 + len(labels) // 12)
    return _save(fig, path)


def _mark_autostop(ax: Any, records: Sequence[Mapping[str, Any]], colors: dict, xy: Any) -> None:
    """A hollow diamond on each run's auto-stop point (:func:`autostop_points`)."""
    label = "auto-stop (no gold model)"
    for r in autostop_points(records):
        x, y = xy(r)
        color = colors.get(str(r.get("method")), "#333333")
        if x is not None and y is not None:
            ax.scatter([x], [y], marker="D", s=120, facecolors="none", edgecolors=color,
                       lw=1.8, zorder=6, label=label)  # fmt: skip
            label = None


def plot_kl(records: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """KL to the gold (retain) model on forget and retain answers, final epoch of every run,
    with the target model's values as dashed lines."""
    finals = sorted(
        (r for r in records if r.get("kind") == "run" and r.get("final")), key=_sort_key
    )
    fig = _figure(max(6.0, 1.0 + 0.55 * len(finals)), 4.8)
    ax = fig.add_subplot(1, 1, 1)
    keys = (
        ("forget/kl_to_gold", "forget answers", "#d62728"),
        ("retain/kl_to_gold", "retain answers", "#1f77b4"),
    )
    width = 0.4
    values = []
    for j, (key, name, color) in enumerate(keys):
        xs = [i + (j - 0.5) * width for i in range(len(finals))]
        ys = [_num(r.get(key)) for r in finals]
        values += [y for y in ys if y is not None]
        ax.bar(xs, [y if y is not None else 0.0 for y in ys], width, color=color, label=name)
    target = _baseline(records, "target")
    if target is not None:
        for key, name, color in keys:
            v = _num(target.get(key))
            if v is not None:
                values.append(v)
                ax.axhline(v, color=color, ls="--", lw=0.9, label=f"target model, {name}")
    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) > 100:
        ax.set_yscale("log")
    ax.set_xticks(range(len(finals)))
    ax.set_xticklabels([_label(r) for r in finals], rotation=40, ha="right", fontsize=8)
    ax.set_ylabel("KL(p_retain ‖ p_model), mean per answer token  (↓ better)")
    ax.set_title("Closeness to the gold standard (final epoch of every run)")
    ax.grid(axis="y", alpha=0.3)
    _legend(ax, fontsize=8)
    return _save(fig, path)


# ----------------------------------------------------------------------------------- document


def _table(
    rows: Sequence[Mapping[str, Any]], front: set[int], columns: Sequence[Column]
) -> tuple[list[str], list[list]]:
    headers = ["Model / run", "epoch", *[c.header for c in columns], "Pareto"]
    body = []
    for r in rows:
        run = r.get("kind") in ("run", "median")
        cells = [_label(r), f"{_fmt(r.get('epoch'), 'g')}/{r.get('epochs')}" if run else "–"]
        cells += [_fmt(r.get(c.key), c.fmt) for c in columns]
        cells.append("★" if id(r) in front else "")
        body.append(cells)
    return headers, body


def _best_per_method(runs: Sequence[Mapping[str, Any]], curve: Curve) -> list[Mapping[str, Any]]:
    """One rule for every method: the evaluation best on the main curve's x (ties: the better
    y, then the earlier evaluation)."""
    sx = 1.0 if curve.x_higher_is_better else -1.0
    sy = 1.0 if curve.y_higher_is_better else -1.0

    def rank(r: Mapping[str, Any]) -> tuple[float, float, float]:
        x, y = _xy(r, curve)
        e = _num(r.get("step")) or _num(r.get("epoch"))
        return (
            -math.inf if x is None else sx * x,
            -math.inf if y is None else sy * y,
            -(e if e is not None else 0.0),
        )

    best: dict[str, Mapping[str, Any]] = {}
    for r in sorted(runs, key=_sort_key):
        m = str(r.get("method"))
        if m not in best or rank(r) > rank(best[m]):
            best[m] = r
    return list(best.values())


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def esc(c: Any) -> str:
        return str(c).replace("|", "\\|")

    lines = [
        "| " + " | ".join(esc(h) for h in headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _html_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;"
    "color:#222}table{border-collapse:collapse;font-size:13px;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}"
    "td:first-child,th:first-child{text-align:left}th{background:#f3f3f3}"
    "img{max-width:100%;border:1px solid #eee}code{background:#f5f5f5;padding:0 3px}"
)


def _render(blocks: list[tuple], output_dir: Path) -> tuple[str, str]:
    """Blocks -> (Markdown, self-contained HTML with the PNGs inlined as data URIs)."""
    md, body = [], []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "h3"):
            level = int(kind[1])
            md.append("#" * level + " " + block[1])
            body.append(f"<{kind}>{html.escape(block[1])}</{kind}>")
        elif kind == "p":
            md.append(block[1])
            body.append(f"<p>{html.escape(block[1])}</p>")
        elif kind == "ul":
            md.append("\n".join(f"- {item}" for item in block[1]))
            body.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in block[1]) + "</ul>")
        elif kind == "table":
            md.append(_md_table(block[1], block[2]))
            body.append(_html_table(block[1], block[2]))
        elif kind == "img":
            name, alt = block[1], block[2]
            md.append(f"![{alt}]({name})")
            data = base64.b64encode((output_dir / name).read_bytes()).decode("ascii")
            body.append(f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></p>')
        elif kind == "pre":
            md.append("```\n" + block[1] + "\n```")
            body.append(f"<pre>{html.escape(block[1])}</pre>")
    title = blocks[0][1] if blocks and blocks[0][0] == "h1" else "unilogit report"
    page = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n"
    )
    return "\n\n".join(md) + "\n", page


def _describe(meta: Mapping[str, Any]) -> list[str]:
    items = []
    bench = meta.get("benchmark")
    if isinstance(bench, Mapping):
        desc = ", ".join(f"{k}={v}" for k, v in bench.items() if not isinstance(v, (dict, list)))
        items.append(f"Benchmark: {desc}")
        items.extend(str(note) for note in bench.get("notes") or [])  # the benchmark's own
    for key, name in (
        ("models", "Models"),
        ("train", "Training"),
        ("eval", "Evaluation"),
        ("method_options", "Method options"),
        ("grid", "Grid"),
    ):
        value = meta.get(key)
        if value:
            items.append(f"{name}: {json.dumps(value, sort_keys=True, default=str)}")
    return items


def write_report(
    records: Sequence[Mapping[str, Any]],
    output_dir: str | os.PathLike,
    reference: Mapping[str, Any] | None = None,
    *,
    meta: Mapping[str, Any] | None = None,
    title: str | None = None,
    html_report: bool = True,
    columns: Sequence[Column] | None = None,
    curves: Sequence[Curve] | None = None,
) -> dict[str, Path]:
    """Write ``results.csv``, the PNG plots, ``report.md`` (and ``report.html``) to
    ``output_dir`` (every file atomically); return their paths by name.

    Args:
        records: every evaluation (see the module docstring); nothing is dropped.
        reference: the gold standard's record (the retain model). Default: the record with
            ``kind="baseline"`` and ``method="retain"``, if any. It is drawn on the plots and
            listed first in the tables; a reference given here is added to the records when
            they do not hold one.
        meta: the sweep's configuration (``benchmark``, ``models``, ``train``, ``eval``,
            ``method_options``, ``grid``, ``layout``), printed in the set-up section.
        columns / curves: what the tables and Pareto plots show (default: ``meta["layout"]``,
            else the QA layout; see :class:`Layout`).
        html_report: also write ``report.html`` with the plots inlined (one file to share).
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = [dict(r) for r in records]
    if reference is not None and _baseline(records, "retain") is None:
        records.append({**reference, "kind": "baseline", "method": "retain", "epoch": 0})
    if not records:
        raise DataError("write_report: no records")
    meta = dict(meta or {})
    p_gold = add_gold_gap(records)
    layout = _with_gold_gap(Layout.resolve(meta, columns, curves), p_gold)
    paths = {"csv": write_csv(records, out / "results.csv")}
    for key, name, curve in layout.plot_names():
        paths[key] = plot_pareto(records, out / name, curve)
    paths["epochs"] = plot_epochs(records, out / PLOTS["epochs"], layout.main)
    if any(_num(r.get(k)) is not None for r in records for k in KL_KEYS):
        paths["kl"] = plot_kl(records, out / PLOTS["kl"])
    seeds, seed_paths = seed_blocks(records, out, layout.curves)
    paths.update(seed_paths)
    blocks = _document(records, out, meta, layout, title, paths, seeds)
    md, page = _render(blocks, out)
    paths["md"] = atomic_write_text(out / "report.md", md)
    if html_report:
        paths["html"] = atomic_write_text(out / "report.html", page)
    return paths


def _with_gold_gap(layout: Layout, p_gold: float | None) -> Layout:
    """``layout`` with the P/P_gold column (:func:`unilogit.report_stats.add_gold_gap`) right
    after the forget-probability column, when the gold model's probability is known."""
    keys = [c.key for c in layout.columns]
    if p_gold is None or "forget/probability" not in keys or P_GAP_KEY in keys:
        return layout
    at = keys.index("forget/probability") + 1
    gap = Column(P_GAP_KEY, "P/P_gold", None, ".3g")
    return Layout((*layout.columns[:at], gap, *layout.columns[at:]), layout.curves)


def _document(
    records: list[dict[str, Any]],
    out: Path,
    meta: Mapping[str, Any],
    layout: Layout,
    title: str | None,
    paths: Mapping[str, Path],
    seeds: Sequence[tuple] = (),
) -> list[tuple]:
    """The report's blocks, in order (see :func:`_render`); ``seeds``: the seed section."""
    runs = [r for r in records if r.get("kind") == "run"]
    baselines = sorted((r for r in records if r.get("kind") == "baseline"), key=_sort_key)
    scored = [r for r in runs if None not in _xy(r, layout.main)]
    front_records = [scored[i] for i in _front(scored, layout.main)]
    front = {id(r) for r in front_records}
    bench = meta.get("benchmark") if isinstance(meta.get("benchmark"), Mapping) else {}
    name = " ".join(str(bench[k]) for k in ("name", "split") if bench.get(k))
    blocks: list[tuple] = [("h1", title or f"Unlearning report{': ' + name if name else ''}")]
    blocks += _summary(records, runs, front_records, layout)
    for _key, file_name, curve in layout.plot_names():
        blocks += [("h2", curve.title), ("img", file_name, curve.title)]
    blocks += hypervolume_blocks(records)
    blocks += seeds
    finals = sorted((r for r in runs if r.get("final")), key=_sort_key)
    blocks += [
        ("h2", "Final epoch of every run"),
        ("table", *_table(baselines + finals, front, layout.columns)),
    ]
    best = _best_per_method(runs, layout.main)
    several = max_seeds(records) >= 2  # then one lucky seed must not pick the method's best
    best_shown = _best_per_method(seed_medians(records), layout.main) if several else best
    if best_shown:
        rule = (
            f"Best {layout.main.x_label or layout.main.x_key} over all learning rates and "
            f"evaluations of the method; ties broken by {layout.main.y_key}, then the earlier "
            "evaluation."
        )
        if several:
            rule += (
                " With several seeds each candidate is an evaluation point's MEDIAN over the "
                "seeds (the seeds section gives the spread), so one lucky seed does not decide."
            )
        rows = baselines + sorted(best_shown, key=_sort_key)
        blocks += [("h2", "Best evaluation per method (same rule for all)"), ("p", rule)]
        blocks.append(("table", *_table(rows, front, layout.columns)))
    blocks += _autostop_blocks(records, baselines, front, layout)
    blocks += lm_eval_blocks(records, _sort_key)
    blocks += [
        ("h2", "Over epochs"),
        ("img", PLOTS["epochs"], "The main curve's numbers along every run"),
    ]
    if "kl" in paths:
        blocks += [
            ("h2", "KL to the gold standard"),
            ("img", PLOTS["kl"], "KL to the retain model"),
        ]
    blocks += _examples_blocks(records, out, best)
    blocks.append(("h2", "Every evaluation"))
    blocks.append(
        ("table", *_table(baselines + sorted(runs, key=_sort_key), front, layout.columns))
    )
    setup = _describe(meta)
    for key, what in (("metrics_convention", "Metrics convention"), ("prompt_format", "Prompts")):
        used = sorted({str(r[key]) for r in records if r.get(key)})
        if used:
            setup.append(f"{what}: {'; '.join(used)} (docs/metrics.md)")
    setup.append(
        "Files: results.jsonl (every evaluation, all metrics), results.csv (the same "
        "as a table), evals/ (full evaluation outputs with generations)."
    )
    blocks += [("h2", "Set-up"), ("ul", setup)]
    return blocks


def _autostop_blocks(
    records: Sequence[Mapping[str, Any]],
    baselines: Sequence[Mapping[str, Any]],
    front: set[int],
    layout: Layout,
) -> list[tuple]:
    """The auto-stop table: per run, the evaluation the gold-free stop rule keeps."""
    points = sorted(autostop_points(records), key=_sort_key)
    if not points:
        return []
    text = (
        "The evaluation each run keeps when it stops on the gold-free forgetting meter "
        "(docs/stopping.md): membership AUC of forget vs holdout rows, stop once it is within "
        "the sampling noise of 0.5 (or below it), keep the reading closest to 0.5. Drawn as a "
        "hollow diamond on the plots."
    )
    headers, body = _table(list(baselines) + points, front, layout.columns)
    headers = [*headers, "kept step", "why"]
    for row, r in zip(body, list(baselines) + points, strict=True):
        row += [_fmt(r.get("step"), "g") if r.get("autostop") else "–",
                _fmt(r.get("autostop_reason"), "")]  # fmt: skip
    return [("h2", "Auto-stop point of every run"), ("p", text), ("table", headers, body)]


def _summary(
    records: Sequence[Mapping[str, Any]],
    runs: Sequence[Mapping[str, Any]],
    front_records: Sequence[Mapping[str, Any]],
    layout: Layout,
) -> list[tuple]:
    n_runs = len(_runs(records))
    text = (
        f"{n_runs} run(s) of {len({r.get('method') for r in runs})} method(s), {len(runs)} "
        "evaluation(s) (along every run). "
    )
    keys = {c.key for c in layout.columns}
    if "forget_quality" in keys:
        text += (
            "Forget Quality: KS-test p-value of the forget-set truth ratios against the retain "
            "model's (higher is better; above 0.05 the two are statistically "
            "indistinguishable). "
        )
    if "model_utility" in keys:
        text += (
            "Model Utility: harmonic mean of probability, ROUGE-L recall and truth-ratio "
            "utility on the utility splits (higher is better). "
        )
    if keys & set(KL_KEYS):
        text += (
            "KL→gold: mean per answer token of KL(p_retain ‖ p_model) (0 = predicts exactly "
            "like the model that never saw the forget set). "
        )
    if P_GAP_KEY in keys:
        text += _gold_gap_text(records)
    main = layout.main
    text += (
        f"Every run is listed; ★ marks evaluations on the Pareto front of ({main.x_key}, "
        f"{main.y_key}) over all runs."
    )
    blocks: list[tuple] = [("p", text)]
    if front_records:
        counts: dict[str, int] = {}
        for r in front_records:
            counts[str(r.get("method"))] = counts.get(str(r.get("method")), 0) + 1
        share = ", ".join(f"{m}: {c}" for m, c in sorted(counts.items(), key=lambda kv: -kv[1]))
        blocks.append(
            ("p", f"Pareto-optimal evaluations by method ({len(front_records)} in all): {share}.")
        )
    return blocks


def _gold_gap_text(records: Sequence[Mapping[str, Any]]) -> str:
    """Over-forgetting in words: what P/P_gold means and the gold model's P(forget)."""
    gold = _baseline(records, "retain") or {}
    return (
        f"P/P_gold: the forget-set probability over the gold model's "
        f"({_fmt(gold.get('forget/probability'), '.3f')}, the model that never saw the forget "
        "set); a ratio, since the probability spans orders of magnitude: 1 = as likely as under "
        "the gold model, < 1 over-forgotten (less likely than if never learned), > 1 "
        "under-forgotten. "
    )


def _load_examples(out: Path, record: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The ``examples`` of a record's saved evaluation ([] when it has none or is missing)."""
    if record is None or not isinstance(record.get("eval_file"), str):
        return []
    path = out / record["eval_file"]
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return []
    examples = value.get("examples") if isinstance(value, dict) else None
    return [e for e in examples or [] if isinstance(e, dict)]


def _examples_blocks(
    records: Sequence[Mapping[str, Any]], out: Path, best: Sequence[Mapping[str, Any]]
) -> list[tuple]:
    """Before/after generations: the target model's (before), the retain model's and each
    method's best evaluation's (after), for the first prompts of each kind."""
    before = _load_examples(out, _baseline(records, "target"))
    if not before:
        return []
    gold = _baseline(records, "retain")
    after = [("retain (gold)", _load_examples(out, gold))] if gold is not None else []
    after += [(_label(r, with_epoch=True), _load_examples(out, r)) for r in best]
    blocks: list[tuple] = [
        ("h2", "Examples"),
        ("p", "Greedy answers before unlearning (target) and after (best evaluation of each "
              "method), beside the answer key."),
    ]  # fmt: skip
    kinds = list(dict.fromkeys(str(e.get("kind")) for e in before))
    for kind in kinds:
        shown = [e for e in before if str(e.get("kind")) == kind][:EXAMPLES_PER_KIND]
        rows = []
        for e in shown:
            row = [str(e.get("prompt")), str(e.get("answer_key")), str(e.get("generation"))]
            for _, exs in after:
                match = [x for x in exs if x.get("kind") == e.get("kind")
                         and x.get("prompt") == e.get("prompt")]  # fmt: skip
                row.append(str(match[0].get("generation")) if match else "–")
            rows.append([_one_line_text(c) for c in row])
        headers = ["prompt", "answer key", "target", *[who for who, _ in after]]
        blocks += [("h3", kind), ("table", headers, rows)]
    return blocks


def _one_line_text(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
