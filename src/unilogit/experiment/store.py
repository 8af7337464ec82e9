"""The results store of an experiment: one folder, written only through :mod:`unilogit.files`.

::

    sweep.json        the configuration fingerprint (benchmark, model hashes, training and
                      evaluation settings, method options, evaluation schedule), the grid so
                      far and the report's layout (the benchmark's columns and curves)
    results.jsonl     one flat record per evaluation; a run counts as finished once its record
                      with ``final: true`` is there
    evals/            the full evaluation of each record
    autostop/         each run's forgetting-meter readings and stop decision (with a holdout)

A folder written with a different configuration is refused (results are never mixed) unless
``overwrite`` discards its results; a method new to the folder may bring its own options (the
grid grows by methods), a method already there must keep them; a setting that is null counts as
absent (an option added to the code later, unset, does not orphan old results). A non-empty
folder that is not a results store is never written into. Opening a store drops the records of
unfinished runs (they are run again).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unilogit.errors import ConfigError, DataError
from unilogit.files import atomic_write_json, atomic_write_jsonl

from .grid import Grid, merge_grids

if TYPE_CHECKING:
    from unilogit.stopping import StopDecision

__all__ = ["CONFIG_FILE", "ResultsStore", "canonical", "read_config", "refuse_mixed", "run_key"]

CONFIG_FILE = "sweep.json"
RESULTS_FILE = "results.jsonl"
_RESULT_ENTRIES = ("results.jsonl", "evals", "logs", "trackers", "autostop")
#: Entries of the configuration file that are not part of the fingerprint: the grid grows,
#: the layout (the report's columns and curves) follows the code, method options are compared
#: per method (:func:`_merge_method_options`).
_NOT_COMPARED = ("grid", "layout", "method_options")


def canonical(value: Any) -> Any:
    """``value`` as plain JSON (sorted keys; non-JSON values through ``str``)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def run_key(r: Mapping[str, Any]) -> tuple[str, float, int, int]:
    """The grid point of a run record: (method, lr, epochs, seed)."""
    return (str(r["method"]), float(r["lr"]), int(r["epochs"]), int(r.get("seed") or 0))


class ResultsStore:
    """An experiment's folder (see the module docstring). ``records`` holds every kept record
    in order; :meth:`append` adds one (its full evaluation goes to ``evals/``)."""

    def __init__(
        self,
        root: str | Path,
        config: Mapping[str, Any],
        grid: Grid,
        *,
        overwrite: bool = False,
        layout: Mapping[str, Any] | None = None,
    ) -> None:
        self.root = Path(root)
        self.config = canonical(dict(config))
        self.layout = canonical(dict(layout or {}))
        self._prepare(grid, overwrite)
        self.records = self._read_kept()

    @property
    def results_file(self) -> Path:
        return self.root / RESULTS_FILE

    def _prepare(self, grid: Grid, overwrite: bool) -> None:
        marker = self.root / CONFIG_FILE
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"output {self.root} exists and is not a directory")
        grid_seen: Mapping[str, Any] = {}
        if marker.is_file():
            saved = read_config(marker)
            if overwrite:
                self._discard()
            else:
                old = {k: v for k, v in saved.items() if k not in _NOT_COMPARED}
                new = {k: v for k, v in self.config.items() if k not in _NOT_COMPARED}
                refuse_mixed(self.root, old, new)
                grid_seen = saved.get("grid") or {}
                self.config["method_options"] = _merge_method_options(
                    self.root, saved, self.config, grid
                )
        elif self.root.is_dir() and any(self.root.iterdir()):
            raise ConfigError(
                f"output directory {self.root} is not empty and holds no experiment (no "
                f"{CONFIG_FILE}); choose a new or empty directory"
            )
        grid_all = merge_grids(grid_seen, grid.to_dict())
        atomic_write_json(
            marker, {**self.config, "grid": grid_all, "layout": self.layout}, indent=1
        )

    def _discard(self) -> None:
        for name in _RESULT_ENTRIES:
            p = self.root / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()

    def _read_kept(self) -> list[dict[str, Any]]:
        """Baselines and finished runs; the records of unfinished runs are dropped (on disk too)."""
        from unilogit.report import read_records

        records = read_records(self.results_file) if self.results_file.is_file() else []
        finished = self.finished(records)
        kept = [r for r in records if r.get("kind") != "run" or run_key(r) in finished]
        if len(kept) != len(records):
            atomic_write_jsonl(self.results_file, kept)
        self.dropped = len(records) - len(kept)
        return kept

    @staticmethod
    def finished(records: list[Mapping[str, Any]]) -> set[tuple[str, float, int, int]]:
        return {run_key(r) for r in records if r.get("kind") == "run" and r.get("final")}

    def baseline(self, name: str) -> dict[str, Any] | None:
        """The full evaluation of baseline ``name`` when its record and file are both kept."""
        for r in self.records:
            if r.get("kind") == "baseline" and r.get("method") == name:
                path = self.root / str(r.get("eval_file"))
                return _read_evaluation(path) if path.is_file() else None
        return None

    def append(self, record: Mapping[str, Any], full: Mapping[str, Any], path: str) -> dict:
        """Save ``full`` as ``evals``-relative ``path`` and add ``record`` (with ``eval_file``)
        to ``results.jsonl``, both atomically; returns the stored record."""
        atomic_write_json(self.root / path, full, indent=1)
        stored = canonical({**record, "eval_file": str(path)})
        self.records.append(stored)
        atomic_write_jsonl(self.results_file, self.records)
        return stored

    def save_autostop(self, run_id: str, decision: StopDecision) -> Path:
        """Every meter reading of run ``run_id`` and the stop rule's decision
        (:class:`~unilogit.stopping.StopDecision`) as ``autostop/<run_id>.json``, so the rule
        can be applied again to a finished folder."""
        return atomic_write_json(self.root / "autostop" / f"{run_id}.json", decision.to_dict())

    def saved_config(self) -> dict[str, Any]:
        return read_config(self.root / CONFIG_FILE)


def read_config(marker: Path) -> dict[str, Any]:
    try:
        value = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{marker}: unreadable experiment configuration ({e})") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{marker}: the experiment configuration must be a JSON object")
    return value


def _read_evaluation(path: Path) -> dict[str, Any]:
    from unilogit.benchmarks.source import read_json_file

    value = read_json_file(path, "saved evaluation", dict)
    if not value:
        raise DataError("saved evaluation is empty", file=path)
    return value


def _merge_method_options(
    root: Path, saved: Mapping[str, Any], config: Mapping[str, Any], grid: Grid
) -> dict[str, Any]:
    """The saved method options with those of methods new to the folder added; a method that
    already has runs there (in the saved grid) and is run again must keep its options."""
    old, new = saved.get("method_options") or {}, config.get("method_options") or {}
    before = set((saved.get("grid") or {}).get("methods") or [])
    for m in sorted(before & set(grid.methods)):
        if old.get(m, {}) != new.get(m, {}):
            refuse_mixed(root, {"method_options": {m: old.get(m, {})}},
                          {"method_options": {m: new.get(m, {})}})  # fmt: skip
    return canonical({**old, **new})


def _differences(old: Any, new: Any, path: str = "") -> list[str]:
    """Dotted paths where two JSON values differ, each with both values (nested dicts are
    compared key by key, so a long configuration shows only what changed)."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out: list[str] = []
        for k in sorted(set(old) | set(new)):
            if old.get(k) != new.get(k):
                out += _differences(old.get(k), new.get(k), f"{path}.{k}" if path else str(k))
        return out

    def short(v: Any) -> str:
        text = json.dumps(v, sort_keys=True)
        return text if len(text) <= 120 else text[:117] + "..."

    return [f"{path}: was {short(old)}, now {short(new)}"]


def _without_nulls(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


def refuse_mixed(root: Path, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
    old, new = _without_nulls(old), _without_nulls(new)
    if old == new:
        return
    details = "; ".join(_differences(old, new))
    raise ConfigError(
        f"{root} holds a sweep with a different configuration ({details}); results would be "
        "mixed. Use another output directory, or overwrite=True / --overwrite to discard the "
        "old results"
    )
