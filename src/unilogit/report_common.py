"""What the report's modules share: number formatting, run labels, method colours, the Pareto
front and the matplotlib figure helpers (an Agg canvas, no pyplot)."""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .files import atomic_write_bytes

__all__ = [
    "colors",
    "figure",
    "fmt",
    "label",
    "legend",
    "num",
    "pareto_front",
    "save_png",
    "set_scale",
]

METHOD_COLORS = {
    "unilogit": "#d62728",
    "unilogit-authors": "#ff9896",
    "npo": "#1f77b4",
    "simnpo": "#17becf",
    "undial": "#2ca02c",
    "graddiff": "#9467bd",
    "ga": "#8c564b",
    "idkdpo": "#e377c2",
    "rmu": "#bcbd22",
}
_FALLBACK_COLORS = ("#7f7f7f", "#ff7f0e", "#aec7e8", "#98df8a", "#c5b0d5", "#c49c94")


def num(value: Any) -> float | None:
    """A finite float, or None (missing, NaN, inf, not a number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def pareto_front(
    points: Sequence[tuple[float, float]], maximize: tuple[bool, bool] = (True, True)
) -> list[int]:
    """Indices of the non-dominated ``points`` (both coordinates maximised by default).

    ``q`` dominates ``p`` when ``q`` is at least as good as ``p`` on both coordinates and
    strictly better on one; equal points do not dominate each other (both stay on the front).
    Points with a missing or non-finite coordinate are never on the front. The indices come
    back sorted by the first coordinate (then the second), i.e. in plotting order.

    Example: [(0, 1), (1, 0), (0.5, 0.5), (0.2, 0.2)] -> [0, 2, 1] ((0.2, 0.2) is dominated by
    (0.5, 0.5)).
    """
    signs = tuple(1.0 if m else -1.0 for m in maximize)
    clean: list[tuple[int, float, float]] = []
    for i, p in enumerate(points):
        x, y = num(p[0]), num(p[1])
        if x is not None and y is not None:
            clean.append((i, signs[0] * x, signs[1] * y))
    front = []
    for i, x, y in clean:
        dominated = any(
            (qx >= x and qy >= y) and (qx > x or qy > y) for j, qx, qy in clean if j != i
        )
        if not dominated:
            front.append((x, y, i))
    front.sort()
    return [i for _, _, i in front]


def curve_xy(r: Mapping[str, Any], curve: Any) -> tuple[float | None, float | None]:
    """A record's two numbers on ``curve`` (a :class:`~unilogit.benchmarks.base.Curve`)."""
    return num(r.get(curve.x_key)), num(r.get(curve.y_key))


def curve_front(rows: Sequence[Mapping[str, Any]], curve: Any) -> list[int]:
    """Indices of ``rows`` on the Pareto front of ``curve``, in plotting order."""
    return pareto_front(
        [curve_xy(r, curve) for r in rows], (curve.x_higher_is_better, curve.y_higher_is_better)
    )


def draw_front(
    ax: Any, rows: Sequence[Mapping[str, Any]], curve: Any, *, min_points: int = 2, **line: Any
) -> tuple[tuple, tuple] | None:
    """Draw the Pareto front of ``rows`` on ``curve`` as one line (``ax.plot(**line)``) when it
    has at least ``min_points`` points; return its (xs, ys), or None when not drawn."""
    idx = curve_front(rows, curve)
    if len(idx) < min_points:
        return None
    fx, fy = zip(*(curve_xy(rows[i], curve) for i in idx), strict=True)
    ax.plot(fx, fy, **line)
    return fx, fy


#: Where a ``symlog`` axis turns from linear to logarithmic.
SYMLOG_LINEAR_BELOW = 0.01


def set_scale(ax: Any, curve: Any) -> None:
    """Both axes symmetric-log where ``curve.symlog`` (linear below
    :data:`SYMLOG_LINEAR_BELOW`, so 0 stays on the plot), else linear."""
    if curve.symlog:
        ax.set_xscale("symlog", linthresh=SYMLOG_LINEAR_BELOW)
        ax.set_yscale("symlog", linthresh=SYMLOG_LINEAR_BELOW)


def label(r: Mapping[str, Any], with_epoch: bool = False) -> str:
    """A record's short name: the baseline's name, or "method lr=1e-3 [sN | (median of N
    seeds)] [epE]"."""
    if r.get("kind") == "baseline":
        return str(r.get("method"))
    text = f"{r.get('method')} lr={fmt(r.get('lr'), '.0e')}"
    if r.get("kind") == "median":
        text += f" (median of {r.get('n_seeds')} seeds)"
    elif r.get("seed") not in (None, 0):
        text += f" s{r.get('seed')}"
    if with_epoch:
        text += f" ep{r.get('epoch')}"
    return text


def fmt(value: Any, spec: str) -> str:
    """A table cell: "–" for None, a format spec, or "p" for p-values."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, str):
        return value
    v = num(value)
    if v is None:
        return str(value)
    if spec == "p":  # p-values span 1e-30 .. 1: two significant digits, scientific below 1e-3
        return f"{v:.2g}" if v >= 1e-3 or v == 0 else f"{v:.1e}"
    if spec == ".0e":
        mantissa, exp = f"{v:.0e}".split("e")
        return f"{mantissa}e{int(exp)}"
    return format(v, spec)


def colors(methods: Iterable[str]) -> dict[str, str]:
    """A colour per method: its own, else one of the spare colours."""
    out, spare = {}, list(_FALLBACK_COLORS)
    for m in methods:
        if m in METHOD_COLORS:
            out[m] = METHOD_COLORS[m]
        else:
            out[m] = spare.pop(0) if spare else "#333333"
            spare.append(out[m])
    return out


def figure(width: float = 7.0, height: float = 5.0):
    """A matplotlib Figure on an Agg canvas (no pyplot, no global backend switch)."""
    from .extras import require

    require("matplotlib", "plots in reports")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Any, path: Path) -> Path:
    """Lay ``fig`` out and write it as a PNG, atomically."""
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return atomic_write_bytes(path, buf.getvalue())


def legend(ax: Any, **kw: Any) -> None:
    """A legend, when anything on ``ax`` is labelled."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kw)
