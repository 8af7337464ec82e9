"""The audit record of a run (``unlearn_record.json``) and ``verify``.

An unlearning run often answers a legal deletion request, so each saved model carries what is
needed to show what was done: method and options, the input model's identity and weight hash,
SHA-256 and row counts of the data files, library versions, seeds, start/end times, the saved
weights' hash, and evaluations when asked for.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import ConfigError

RECORD_FILE = "unlearn_record.json"
CONFIG_FILE = "unlearn_config.json"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe_data(source: Any, examples: list[Any]) -> dict[str, Any]:
    """Identity of a data set: its file path and SHA-256 when it is a file, else a SHA-256 of
    its rows (prompt, response) in order; always the row count."""
    out: dict[str, Any] = {"rows": len(examples)}
    if isinstance(source, (str, Path)):
        out["source"] = str(source)
        if Path(source).is_file():
            out["sha256"] = sha256_file(source)
            return out
    else:
        first = getattr(examples[0], "row_id", "") if examples else ""
        out["source"] = f"{type(source).__name__} (first row {first})"
    rows = [[getattr(e, "prompt", ""), getattr(e, "response", "")] for e in examples]
    out["rows_sha256"] = hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode()).hexdigest()
    return out


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in ("unilogit", "torch", "transformers", "accelerate", "peft", "datasets"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def verify(directory: str | Path) -> dict[str, Any]:
    """Check that the model saved in ``directory`` is the one its record describes.

    Returns ``{"ok": bool, "checks": [...]}``; raises ConfigError if there is no record.
    """
    from .models import load_model, weights_sha256

    directory = Path(directory)
    record_path = directory / RECORD_FILE
    if not record_path.is_file():
        raise ConfigError(f"{directory}: no {RECORD_FILE} found (not a unilogit output?)")
    try:
        record = json.loads(record_path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{record_path}: not valid JSON ({e})") from None
    checks = []
    expected = record.get("output_model", {}).get("weights_sha256")
    model, _ = load_model(directory, dtype=None, device="cpu")
    actual = weights_sha256(model)
    checks.append(
        {
            "check": "weights_sha256",
            "expected": expected,
            "actual": actual,
            "ok": expected == actual,
        }
    )
    for key in ("forget", "retain"):
        info = record.get("data", {}).get(key) or {}
        path, digest = info.get("source"), info.get("sha256")
        if path and digest and Path(path).is_file():
            now_digest = sha256_file(path)
            checks.append(
                {
                    "check": f"{key} file sha256",
                    "path": path,
                    "expected": digest,
                    "actual": now_digest,
                    "ok": now_digest == digest,
                }
            )
    return {"ok": all(c["ok"] for c in checks), "checks": checks}
