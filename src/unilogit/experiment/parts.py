"""Benchmarks that stand for several unlearning problems (:meth:`Benchmark.parts`), e.g. RWKU's
single-target setting: the same grid runs on every part, each in its own results folder, and
the report averages the parts.

::

    OUTPUT/parts.json          the setting (benchmark, parts) — marks the folder as ours
    OUTPUT/<part>/             one ordinary results folder per part (resumable, own report)
    OUTPUT/results.jsonl, report.md, *.png, results.csv
                               the mean over parts at every evaluation all parts share

Parts train for different numbers of steps (their forget sets differ in size), so evaluations
are matched by epoch: only epoch-end evaluations are averaged (``--eval-every`` points between
epochs stay in the parts' own reports), and a point enters the mean only when every part has
it. Auto-stop points are per part (each part's report shows them).
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from unilogit.errors import ConfigError
from unilogit.files import atomic_write_json, atomic_write_jsonl

from .grid import Grid
from .runner import ExperimentResult, log, run_experiment
from .store import CONFIG_FILE, read_config, refuse_mixed

__all__ = ["PARTS_FILE", "average_parts", "run_parts"]

PARTS_FILE = "parts.json"
#: Record fields that identify an evaluation (copied from the first part, never averaged).
_IDENTITY = ("kind", "method", "lr", "epochs", "seed", "run_id", "options", "epoch", "final")
#: Per-part fields that have no meaning once averaged.
_PER_PART = ("step", "eval_file", "autostop_step", "autostop_reason", "train/step")


def part_name(part: Any) -> str:
    """A folder name for a part: its split with ``:`` made file-name safe."""
    identity = part.describe()
    split = str(identity.get("split") or identity.get("name"))
    return split.replace(":", "-").replace("/", "-")


def run_parts(
    benchmark: Any, parts: Sequence[Any], grid: Grid, output_dir: str | os.PathLike, **kw: Any
) -> ExperimentResult:
    """:func:`run_experiment` with ``grid`` on every part, into ``OUTPUT/<part>/``; then the
    averaged report in ``OUTPUT``. ``kw``: :func:`run_experiment`'s options."""
    out = Path(output_dir)
    names = [part_name(p) for p in parts]
    if len(set(names)) != len(names):
        raise ConfigError(f"the parts of {benchmark!r} have clashing names: {names}")
    setting = {"benchmark": benchmark.describe(), "parts": names}
    _claim(out, setting, kw.get("overwrite", False))
    report, progress = kw.pop("report", True), kw.get("progress", True)
    hooks = kw.get("hooks")
    result = ExperimentResult(records=[], output_dir=out)
    per_part: dict[str, list[dict[str, Any]]] = {}
    for n, (name, part) in enumerate(zip(names, parts, strict=True), 1):
        log(progress, f"part {n}/{len(parts)}: {name}")
        own = {**kw, "hooks": hooks.for_part(name)} if hooks is not None else kw
        one = run_experiment(part, grid, out / name, report=report, **own)
        result.ran += [f"{name}/{r}" for r in one.ran]
        result.skipped += [f"{name}/{r}" for r in one.skipped]
        per_part[name] = list(one.records)
    result.records = average_parts(per_part)
    if report:
        from unilogit.report import write_report

        meta = read_config(out / names[0] / CONFIG_FILE)
        meta["benchmark"] = {**setting["benchmark"], "notes": [_note(names)]}
        meta.pop("models", None)  # one per part's folder
        atomic_write_jsonl(out / "results.jsonl", result.records)
        result.report = write_report(result.records, out, meta=meta)
        log(progress, f"report (mean over {len(names)} parts): {result.report['md']}")
    return result


def _note(names: Sequence[str]) -> str:
    return (
        f"Mean over {len(names)} separate unlearning problems ({', '.join(names)}), each "
        "unlearned alone from the original model; epoch-end evaluations only, a point only "
        "when every part has it; a metric a part lacks (a target without a kept probe of one "
        "level) is the mean over the parts that have it (parts/<metric> in results.jsonl). "
        "Per-part reports (with generations, evaluations and auto-stop points): the folders "
        "of the same names."
    )


def _claim(out: Path, setting: Mapping[str, Any], overwrite: bool) -> None:
    """Refuse a non-empty folder that is not this setting's (results are never mixed) unless
    ``overwrite`` (each part's folder then discards its own old results)."""
    marker = out / PARTS_FILE
    if marker.is_file() and not overwrite:
        refuse_mixed(out, read_config(marker), setting)
    elif not marker.is_file() and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(
            f"output {out} is not empty and holds no {PARTS_FILE}; choose a new or empty directory"
        )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(marker, dict(setting), indent=1)


def average_parts(per_part: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """The mean record over parts of every baseline and every epoch-end run evaluation that
    all parts have: identity fields from the first part, each numeric metric the mean over the
    parts that have it (``parts/<key>`` = how many, when not all: a target without a kept
    adversarial probe has no ``forget/adv``), ``parts`` = their number."""
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for records in per_part.values():
        for r in records:
            key = _point(r)
            if key is not None:
                groups.setdefault(key, []).append(r)
    n = len(per_part)
    return [_mean(rs, n) for rs in groups.values() if len(rs) == n]


def _point(r: Mapping[str, Any]) -> tuple | None:
    """What matches evaluations across parts: baselines by name, runs by grid point and
    epoch (epoch-end evaluations only); ``None`` for anything else."""
    if r.get("kind") == "baseline":
        return ("baseline", r.get("method"))
    epoch = r.get("epoch")
    if r.get("kind") != "run" or not isinstance(epoch, (int, float)) or epoch != int(epoch):
        return None
    return ("run", r.get("method"), float(r["lr"]), r.get("epochs"), r.get("seed"), int(epoch))


def _mean(records: Sequence[Mapping[str, Any]], n: int) -> dict[str, Any]:
    first = records[0]
    out: dict[str, Any] = {k: first[k] for k in _IDENTITY if k in first}
    keys = dict.fromkeys(k for r in records for k in r if k not in out and k not in _PER_PART)
    for key in keys:
        values = [r[key] for r in records if _is_number(r.get(key))]
        if values:
            out[key] = statistics.fmean(values)
            if len(values) < n:  # e.g. a target with no kept adversarial probe
                out[f"parts/{key}"] = len(values)
    out["parts"] = n
    return out


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)
