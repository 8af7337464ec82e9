"""What a resumed run must share with the run that wrote its checkpoint.

A checkpoint holds optimizer state and a step count; resuming it under another method, learning
rate, data set or input model would silently mix two runs. So a run that checkpoints first
writes ``fingerprint.json`` beside its checkpoints: the components that determine the result
(command, method name and options, the result-relevant TrainConfig fields, the content hashes
of the data, the input model's weights hash) and the SHA-256 of their canonical JSON.
``--resume`` compares them and names every differing field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .record import sha256_json

FINGERPRINT_FILE = "fingerprint.json"
#: TrainConfig fields that do not change the result (where and how a run reports or resumes).
NOT_RESULT_FIELDS = frozenset(
    {"progress", "log_file", "checkpoint_dir", "checkpoint_every", "resume"}
)


def run_fingerprint(
    *,
    command: str,
    method: dict[str, Any],
    train: dict[str, Any],
    data: dict[str, dict[str, Any] | None],
    model_sha256: str,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``{"sha256", "components"}``. ``data``: name → :func:`unilogit.record.describe_data`
    dict (its ``rows_sha256`` and ``rows`` are used) or None; ``extra``: other inputs that
    shape the result (e.g. the refusal texts' hash)."""
    components = {
        "command": command,
        "method": method,
        "train": {k: v for k, v in sorted(train.items()) if k not in NOT_RESULT_FIELDS},
        "data": {
            name: None
            if info is None
            else {"rows": info["rows"], "rows_sha256": info["rows_sha256"]}
            for name, info in sorted(data.items())
        },
        "input_model_weights_sha256": model_sha256,
        **(extra or {}),
    }
    components = json.loads(json.dumps(components, default=str))  # as it reads back from disk
    return {"sha256": sha256_json(components), "components": components}


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``"field: checkpoint X, now Y"`` for every leaf that differs (dotted names)."""
    a, b = _flatten(saved), _flatten(current)
    missing = object()
    out = []
    for key in sorted(set(a) | set(b)):
        old, new = a.get(key, missing), b.get(key, missing)
        if old != new:
            show = lambda v: "absent" if v is missing else repr(v)  # noqa: E731
            out.append(f"{key}: checkpoint {show(old)}, now {show(new)}")
    return out


def check_resume(path: Path, saved: Any, current: dict[str, Any]) -> None:
    """Refuse (ConfigError naming the differing fields) to resume a checkpoint whose
    fingerprint, read from ``path``, is not ``current``'s."""
    if not isinstance(saved, dict) or "components" not in saved:
        raise ConfigError(f"resume: {path} is not a fingerprint; start afresh with --overwrite")
    if saved.get("sha256") == current["sha256"] and saved["components"] == current["components"]:
        return
    diffs = differences(saved["components"], current["components"])
    shown = "; ".join(diffs[:12]) + (f"; and {len(diffs) - 12} more" if len(diffs) > 12 else "")
    raise ConfigError(
        f"resume: the checkpoint beside {path.parent} was written by a different run ({shown}). "
        "Resume with the same settings, or start afresh with --overwrite"
    )
