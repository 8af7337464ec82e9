"""The model card (``README.md`` with Hub metadata) written beside every saved model.

Built with ``huggingface_hub``'s :class:`~huggingface_hub.ModelCard` /
:class:`~huggingface_hub.ModelCardData`, from the run's record: the base model, the method and
its options, the training settings, the data sets' hashes, the metrics before and after
unlearning when the run was evaluated, and the tags ``unlearning``, ``unilogit`` and the method.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

CARD_FILE = "README.md"
_HUB_ID = re.compile(r"^(?:[A-Za-z0-9][\w.\-]*/)?[A-Za-z0-9][\w.\-]*$")


def _hub_base(spec: str | None) -> str | None:
    """``spec`` if it names a Hub model (the card's ``base_model``), None for a local path."""
    if not spec or Path(spec).expanduser().exists() or not _HUB_ID.match(spec):
        return None
    return spec


def _flat(metrics: Any, prefix: str = "") -> dict[str, float]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (numbers only)."""
    out: dict[str, float] = {}
    if isinstance(metrics, dict):
        for k, v in metrics.items():
            out.update(_flat(v, f"{prefix}{k}."))
    elif isinstance(metrics, (int, float)) and not isinstance(metrics, bool):
        out[prefix.rstrip(".")] = metrics
    return out


def _number(v: Any) -> str:
    return "" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


def _metrics_table(evaluation: dict[str, Any] | None) -> list[str]:
    if not evaluation:
        return ["Not evaluated (run `unilogit unlearn --benchmark ... --evaluate` to add it)."]
    before, after = _flat(evaluation.get("before")), _flat(evaluation.get("after"))
    lines = ["| metric | before | after |", "|---|---|---|"]
    for key in sorted(set(before) | set(after)):
        lines.append(f"| {key} | {_number(before.get(key))} | {_number(after.get(key))} |")
    return lines


def _data_lines(data: dict[str, Any]) -> list[str]:
    lines = ["| set | source | rows | sha256 (of) |", "|---|---|---|---|"]
    for name, ident in data.items():
        if ident:
            lines.append(
                f"| {name} | `{ident.get('source')}` | {ident.get('rows')} | "
                f"`{ident.get('sha256')}` ({ident.get('sha256_of')}) |"
            )
    return lines


def _json_block(value: Any) -> list[str]:
    return ["```json", json.dumps(value, indent=1, default=str), "```"]


def model_card(record: dict[str, Any]) -> Any:
    """The :class:`huggingface_hub.ModelCard` of a run: ``record`` is an unlearn record
    (:func:`unilogit.recipes.unlearn_to_disk`) or a fine-tune config (``command: finetune``)."""
    from huggingface_hub import ModelCard, ModelCardData

    command = record.get("command", "unlearn")
    config = record.get("config", record)
    method = (config.get("method") or {}).get("method", "finetune")
    base = str(config.get("model"))
    data = record.get("data") or {}
    data = {"data": data} if command == "finetune" else data
    tags = ["unilogit", "unlearning", method] if command == "unlearn" else ["unilogit", method]
    meta = ModelCardData(
        base_model=_hub_base(base),
        library_name="transformers",
        pipeline_tag="text-generation",
        tags=tags,
    )
    what = "unlearned with" if command == "unlearn" else "fine-tuned with"
    body = [
        f"# {Path(str(record.get('output_model', {}).get('path', 'model'))).name}",
        "",
        f"`{base}` {what} [unilogit](https://pypi.org/project/unilogit/) (method `{method}`).",
        "",
        "## Method and options",
        *_json_block(config.get("method") or {"method": method}),
        "",
        "## Training settings",
        *_json_block(config.get("train") or {}),
        "",
        "## Data",
        *_data_lines(data),
        "",
        "## Evaluation",
        *_metrics_table(record.get("evaluation")),
        "",
    ]
    if command == "unlearn":
        body += [
            "## Audit record",
            "`unlearn_record.json` holds the input and output weights' SHA-256, the data hashes "
            "and every setting; `unilogit verify DIR` checks this folder against it.",
            "",
        ]
    return ModelCard(f"---\n{meta.to_yaml()}\n---\n\n" + "\n".join(body))


def write_card(directory: str | os.PathLike[str], record: dict[str, Any]) -> Path:
    """Write :func:`model_card` as ``directory/README.md`` (atomically)."""
    from .files import atomic_write_text

    path = Path(directory) / CARD_FILE
    atomic_write_text(path, str(model_card(record)))
    return path
