"""The audit record of a run (``unlearn_record.json``), data identity, and ``verify``.

An unlearning run often answers a legal deletion request, so each saved model carries what is
needed to show what was done: method and options, the input model's identity and weight hash,
SHA-256 and row counts of the data files, library versions, seeds, start/end times, the saved
weights' hash, the SHA-256 of every file of the saved directory, and evaluations when asked
for. The record's own integrity: ``unlearn_record.sha256`` beside it holds the SHA-256 of the
record file's bytes, in ``sha256sum`` format (``sha256sum -c unlearn_record.sha256`` checks it).

Record format versions: 1 (weights hash only; read by :func:`verify`, which then checks the
weights alone and says so) and 2 (adds ``output_model.files``, absolute data paths, the
working directory at record time and the ``.sha256`` file).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import ConfigError, DataError

RECORD_FILE = "unlearn_record.json"
RECORD_HASH_FILE = "unlearn_record.sha256"
CONFIG_FILE = "unlearn_config.json"
RECORD_VERSION = 2


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB chunks); DataError if it is not a file."""
    p = Path(path)
    if not p.is_file():
        raise DataError("file not found" if not p.exists() else "not a file", file=str(path))
    digest = hashlib.sha256()
    with p.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_json(value: Any) -> str:
    """SHA-256 of ``value``'s canonical JSON (sorted keys, no spaces, UTF-8; others via str)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def rows_sha256(examples: list[Any]) -> str:
    """Content hash of loaded rows, in order: one canonical JSON line per row of
    ``[kind, prompt, response, extras]`` (independent of the file's format or spacing)."""
    digest = hashlib.sha256()
    for ex in examples:
        row = [ex.kind, ex.prompt, ex.response, ex.extras]
        if getattr(ex, "messages", None) is not None:  # a conversation row's earlier turns
            row.append(ex.messages)
        digest.update(json.dumps(row, sort_keys=True, default=str).encode() + b"\n")
    return digest.hexdigest()


def describe_data(source: Any, examples: list[Any], *, name: str = "data") -> dict[str, Any]:
    """The identity of a data set (the one used by records, checkpoints and ``describe_source``).

    Always: ``rows`` (count), ``kind``, ``rows_sha256`` (:func:`rows_sha256`), ``source`` (the
    spec as given, or a description of an in-memory source) and ``sha256`` with ``sha256_of``.
    For a local file: ``sha256`` hashes its bytes (``sha256_of="file"``), ``path`` is its
    absolute path and ``cwd`` the working directory (so a relative ``source`` can be found
    again). Otherwise ``sha256`` = ``rows_sha256`` (``sha256_of="rows"``) and ``path`` is the
    ``hf:`` spec or ``name``.
    """
    kind = examples[0].kind if examples else None
    out: dict[str, Any] = {
        "rows": len(examples),
        "kind": kind,
        "rows_sha256": rows_sha256(examples),
    }
    is_file = isinstance(source, (str, os.PathLike)) and Path(source).expanduser().is_file()
    if is_file:
        p = Path(source).expanduser()
        out.update(
            source=str(source),
            path=str(p.resolve()),
            cwd=os.getcwd(),
            sha256=sha256_file(p),
            sha256_of="file",
        )
        return out
    if isinstance(source, (str, os.PathLike)):
        out.update(source=str(source), path=str(source))
    else:
        first = getattr(examples[0], "row_id", "") if examples else ""
        out.update(source=f"{type(source).__name__} (first row {first})", path=name)
    out.update(sha256=out["rows_sha256"], sha256_of="rows")
    return out


#: What a run without a holdout set says (CLI and audit record).
FIXED_BUDGET_NOTE = (
    "ran a fixed budget (the given epochs): without a holdout set it cannot tell whether the "
    "forget set is forgotten, not yet forgotten, or over-forgotten. Give rows of the same kind "
    "that the model never trained on with --holdout FILE (or --benchmark NAME, whose holdout "
    "split is used) and --stop-when forgotten to stop once the forget set is indistinguishable "
    "from them"
)


def stopping_record(
    decision: dict[str, Any] | None, holdout: Any, holdout_rows: list[Any] | None
) -> dict[str, Any]:
    """The record's ``stopping`` block: the holdout set's identity and the stop rule's decision
    (``kept_step``, ``reason``, ``explain``, ``stopped_at``, ``tolerance``, every meter
    ``readings``), or, without a holdout set, ``note``: that a fixed budget ran and why it
    cannot tell whether the data is forgotten."""
    if holdout_rows is None or decision is None:
        return {"holdout": None, "note": FIXED_BUDGET_NOTE}
    return {"holdout": describe_data(holdout, holdout_rows, name="holdout"), **decision}


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in ("unilogit", "torch", "transformers", "accelerate", "peft", "datasets"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


# --------------------------------------------------------------------------- writing


def directory_manifest(directory: str | Path, *, exclude: tuple[str, ...] = ()) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``directory`` (sorted, POSIX names)."""
    directory = Path(directory)
    out = {}
    for p in sorted(directory.rglob("*")):
        rel = p.relative_to(directory).as_posix()
        if p.is_file() and rel not in exclude:
            out[rel] = sha256_file(p)
    return out


def write_record(directory: str | Path, record: dict[str, Any]) -> Path:
    """Write ``record`` (with ``output_model.files`` = the manifest of everything already in
    ``directory``) as ``unlearn_record.json`` plus its ``unlearn_record.sha256``."""
    from .files import atomic_write_bytes, atomic_write_text

    directory = Path(directory)
    record = dict(record, unilogit_record_version=RECORD_VERSION)
    record["output_model"] = dict(
        record.get("output_model") or {},
        files=directory_manifest(directory, exclude=(RECORD_FILE, RECORD_HASH_FILE)),
    )
    data = (json.dumps(record, indent=2, default=str) + "\n").encode("utf-8")
    atomic_write_bytes(directory / RECORD_FILE, data)
    digest = hashlib.sha256(data).hexdigest()
    atomic_write_text(directory / RECORD_HASH_FILE, f"{digest}  {RECORD_FILE}\n")
    return directory / RECORD_FILE


# --------------------------------------------------------------------------- verify


def _check(name: str, expected: Any, actual: Any, **extra: Any) -> dict[str, Any]:
    return {
        "check": name,
        **extra,
        "expected": expected,
        "actual": actual,
        "ok": expected == actual,
    }


def _not_checked(name: str, why: str, **extra: Any) -> dict[str, Any]:
    return {"check": name, **extra, "ok": None, "status": f"not checked: {why}"}


def _record_integrity(directory: Path, raw: bytes) -> dict[str, Any]:
    hash_path = directory / RECORD_HASH_FILE
    if not hash_path.is_file():
        return {"check": "record sha256", "ok": False, "status": f"{RECORD_HASH_FILE} missing"}
    expected = hash_path.read_text(encoding="utf-8", errors="replace").split(" ")[0].strip()
    return _check("record sha256", expected, hashlib.sha256(raw).hexdigest())


def _file_checks(directory: Path, expected: dict[str, str]) -> list[dict[str, Any]]:
    actual = directory_manifest(directory, exclude=(RECORD_FILE, RECORD_HASH_FILE))
    checks = [
        _check(f"file {name}", digest, actual.get(name, "missing"))
        for name, digest in expected.items()
    ]
    extra = sorted(set(actual) - set(expected))
    checks.append(_check("no unrecorded files", [], extra))
    return checks


def _find_data_file(info: dict[str, Any], directory: Path) -> Path | None:
    """The recorded data file: as recorded, relative to the record's directory, relative to
    the working directory at record time, or at its recorded absolute path."""
    source = Path(str(info.get("source"))).expanduser()
    candidates = [source]
    if not source.is_absolute():
        candidates.append(directory / source)
        if info.get("cwd"):
            candidates.append(Path(info["cwd"]) / source)
    if info.get("path"):
        candidates.append(Path(info["path"]))
    return next((c for c in candidates if c.is_file()), None)


def _data_checks(record: dict[str, Any], directory: Path) -> list[dict[str, Any]]:
    checks = []
    for key, info in (record.get("data") or {}).items():
        if not info:
            continue
        name = f"{key} data sha256"
        if info.get("sha256_of", "file") != "file" or "sha256" not in info:
            checks.append(
                _not_checked(name, "the rows were not read from a file", source=info.get("source"))
            )
            continue
        found = _find_data_file(info, directory)
        if found is None:
            checks.append(_not_checked(name, "file not found", path=info.get("source")))
            continue
        checks.append(_check(name, info["sha256"], sha256_file(found), path=str(found)))
    return checks


def verify(directory: str | Path) -> dict[str, Any]:
    """Check that the model saved in ``directory`` is the one its record describes.

    Returns ``{"ok", "complete", "checks"}``: ``ok`` is False if any check failed; ``complete``
    is False if some check could not run (its entry has ``ok: None`` and a ``status`` saying
    why, e.g. ``"not checked: file not found"``). Version-2 records check the record's own
    hash, every file of the directory (missing, changed or unrecorded files fail), the weights
    and the data files; version-1 records the weights only (a check entry says so).
    Raises ConfigError if there is no readable record.
    """
    from .models import load_model, weights_sha256

    directory = Path(directory)
    record_path = directory / RECORD_FILE
    if not record_path.is_file():
        raise ConfigError(f"{directory}: no {RECORD_FILE} found (not a unilogit output?)")
    raw = record_path.read_bytes()
    try:
        record = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{record_path}: not valid JSON ({e})") from None
    if not isinstance(record, dict):
        raise ConfigError(f"{record_path}: not a record (a JSON object expected)")
    version = record.get("unilogit_record_version", 1)
    checks: list[dict[str, Any]] = []
    output = record.get("output_model") or {}
    if version >= 2:
        checks.append(_record_integrity(directory, raw))
        checks += _file_checks(directory, output.get("files") or {})
    else:
        checks.append(
            _not_checked("record version", "version 1 record: only the weights are checked")
        )
    model, _ = load_model(directory, dtype=None, device="cpu")
    checks.append(_check("weights_sha256", output.get("weights_sha256"), weights_sha256(model)))
    if version >= 2:
        checks += _data_checks(record, directory)
    return {
        "ok": all(c["ok"] is not False for c in checks),
        "complete": all(c["ok"] is not None for c in checks),
        "checks": checks,
    }
