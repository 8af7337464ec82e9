"""The ``facts`` benchmark's data files: schema checks and loading (one JSON object per line).

Files (shipped in ``unilogit/benchmarks/facts_data/``, written for this project; a folder of
files with the same names can replace them):

``targets.jsonl``  ``{"id", "name", "neighbours": [names]}``: the entities to forget and, per
    target, related entities (their texts make the optional retain corpus).
``holdout.jsonl``  ``{"id", "name"}``: entities never trained on; texts the model writes about
    them are the non-members of the membership-inference attack.
``forget.jsonl``   ``{"id", "target", "level", "format", "prompt", "lead"?, "answer", "aliases"?}``
    with ``level`` in ``fb`` (fill-in-the-blank), ``qa``, ``adv`` (adversarial).
``neighbour.jsonl`` the same without ``level``: facts about a target's related entities.
``utility.jsonl``  the same with ``group`` instead of ``target``: general knowledge.
``fluency.jsonl``  ``{"id", "prompt"}``: open instructions whose answers measure fluency.

``format`` is ``chat`` (question in the chat template, ``lead`` starts the assistant turn) or
``text`` (raw completion of ``prompt``). Every error is a :class:`DataError` naming the file, the
line and the field.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from unilogit.errors import DataError
from unilogit.eval.probes import FORMATS, Probe

__all__ = ["FactsData", "Target", "data_dir", "load_data", "read_probes"]

LEVELS = ("fb", "qa", "adv")
FILES = ("targets", "holdout", "forget", "neighbour", "utility", "fluency")


@dataclass(frozen=True)
class Target:
    """An entity to forget (or, for holdout entities, never trained on)."""

    id: str
    name: str
    neighbours: tuple[str, ...] = ()


@dataclass(frozen=True)
class FactsData:
    """Everything the probe files hold, validated; ``sha256`` identifies their contents."""

    targets: tuple[Target, ...]
    holdout: tuple[Target, ...]
    forget: tuple[Probe, ...]
    neighbour: tuple[Probe, ...]
    utility: tuple[Probe, ...]
    fluency: tuple[str, ...]
    sha256: str
    source: str


def data_dir() -> Path:
    """The folder of the probe files shipped with unilogit."""
    return Path(str(resources.files("unilogit.benchmarks") / "facts_data"))


def _rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError("facts data file not found", file=path) from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read: {e}", file=path) from None
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"not valid JSON: {e.msg}", file=path, line=n) from None
        if not isinstance(value, dict):
            raise DataError(
                f"a row must be a JSON object, got {type(value).__name__}", file=path, line=n
            )
        rows.append((n, value))
    if not rows:
        raise DataError("the file has no rows", file=path)
    return rows


class _Row:
    """Typed access to one row's fields; errors name the file, line and field."""

    def __init__(self, path: Path, line: int, value: dict[str, Any], fields: Sequence[str]) -> None:
        self.path, self.line, self.value = path, line, value
        unknown = sorted(set(value) - set(fields))
        if unknown:
            self.fail(unknown[0], f"unknown field (expected: {', '.join(fields)})")

    def fail(self, field: str, reason: str) -> None:
        raise DataError(reason, file=self.path, line=self.line, field=field)

    def text(self, field: str, *, required: bool = True, choices: Sequence[str] = ()) -> str:
        value = self.value.get(field)
        if value is None and not required:
            return ""
        if not isinstance(value, str) or not value.strip():
            self.fail(field, "missing" if value is None else "must be a non-empty string")
        if choices and value not in choices:
            self.fail(field, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def texts(self, field: str) -> tuple[str, ...]:
        value = self.value.get(field, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            self.fail(field, "must be a list of non-empty strings")
        return tuple(value)


def _unique(path: Path, items: Sequence[tuple[int, str]], what: str) -> None:
    seen: dict[str, int] = {}
    for line, key in items:
        if key in seen:
            raise DataError(
                f"duplicate {what} {key!r} (first on line {seen[key]})",
                file=path,
                line=line,
                field="id",
            )
        seen[key] = line


def read_targets(path: Path, *, neighbours: bool) -> tuple[Target, ...]:
    """``targets.jsonl`` (with ``neighbours``) or ``holdout.jsonl``."""
    fields = ("id", "name", "neighbours") if neighbours else ("id", "name")
    out, ids = [], []
    for line, value in _rows(path):
        row = _Row(path, line, value, fields)
        nb = row.texts("neighbours") if neighbours else ()
        out.append(Target(row.text("id"), row.text("name"), nb))
        ids.append((line, out[-1].id))
    _unique(path, ids, "id")
    return tuple(out)


def read_probes(path: Path, kind: str, targets: Sequence[str] = ()) -> tuple[Probe, ...]:
    """Probes of ``kind`` (``forget``, ``neighbour``, ``utility``); ``target`` must name one of
    ``targets`` when given."""
    group = "group" if kind == "utility" else "target"
    fields = ["id", group, "format", "prompt", "lead", "answer", "aliases"]
    if kind == "forget":
        fields.append("level")
    out, ids = [], []
    for line, value in _rows(path):
        row = _Row(path, line, value, fields)
        owner = row.text(group)
        if targets and group == "target" and owner not in targets:
            row.fail("target", f"unknown target {owner!r} (not in targets.jsonl)")
        fmt = row.text("format", required=False) or "chat"
        if fmt not in FORMATS:
            row.fail("format", f"must be one of {', '.join(FORMATS)}, got {fmt!r}")
        lead = row.text("lead", required=False)
        if lead and fmt != "chat":
            row.fail(
                "lead", "only 'chat' probes have a lead (put it in the prompt of a 'text' probe)"
            )
        level = row.text("level", choices=LEVELS) if kind == "forget" else ""
        answers = (row.text("answer"), *row.texts("aliases"))
        probe = Probe(
            id=row.text("id"),
            prompt=row.text("prompt"),
            answers=answers,
            format=fmt,
            lead=lead,
            kind=kind,
            level=level,
            target=owner if group == "target" else "",
        )
        out.append(probe)
        ids.append((line, probe.id))
    _unique(path, ids, "probe id")
    return tuple(out)


def read_fluency(path: Path) -> tuple[str, ...]:
    out = []
    for line, value in _rows(path):
        row = _Row(path, line, value, ("id", "prompt"))
        row.text("id")
        out.append(row.text("prompt"))
    return tuple(out)


def load_data(folder: str | Path | None = None) -> FactsData:
    """Read and check every facts file of ``folder`` (default: the shipped ones)."""
    base = Path(folder).expanduser() if folder is not None else data_dir()
    paths = {name: base / f"{name}.jsonl" for name in FILES}
    digest = hashlib.sha256()
    for name in FILES:
        try:
            digest.update(name.encode() + b"\0" + paths[name].read_bytes() + b"\0")
        except FileNotFoundError:
            raise DataError("facts data file not found", file=paths[name]) from None
    targets = read_targets(paths["targets"], neighbours=True)
    ids = [t.id for t in targets]
    return FactsData(
        targets=targets,
        holdout=read_targets(paths["holdout"], neighbours=False),
        forget=read_probes(paths["forget"], "forget", ids),
        neighbour=read_probes(paths["neighbour"], "neighbour", ids),
        utility=read_probes(paths["utility"], "utility"),
        fluency=read_fluency(paths["fluency"]),
        sha256=digest.hexdigest(),
        source=str(base),
    )
