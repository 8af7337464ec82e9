"""End-to-end recipes on disk: load a model, train, save it with its config and audit record.

The CLI calls these; they are also the Python way to do what the CLI does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from . import data as data_lib
from .methods import Method, get_method
from .models import load_model, prepare_output_dir, save_model, weights_sha256
from .record import CONFIG_FILE, RECORD_FILE, describe_data, library_versions, now
from .trainer import TrainConfig, finetune, process_rank, unlearn


def _model_identity(spec: str, model: Any, load_options: dict[str, Any]) -> dict[str, Any]:
    return {
        "spec": str(spec),
        "revision": load_options.get("revision"),
        "class": type(model).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "weights_sha256": weights_sha256(model),
    }


def _scalars(result: Any) -> Any:
    """The numbers of an evaluation result (nested dicts kept, lists and texts dropped)."""
    if isinstance(result, dict):
        kept = {k: _scalars(v) for k, v in result.items()}
        return {k: v for k, v in kept.items() if v is not None and v != {}}
    if isinstance(result, (int, float)) and not isinstance(result, bool):
        return result
    return None


def _source_name(source: Any) -> str | None:
    if source is None or isinstance(source, (str, Path)):
        return None if source is None else str(source)
    return f"{len(source)} rows given in memory"


def _input_dir(spec: str) -> Path | None:
    path = Path(spec).expanduser()
    if path.is_file():
        return path.parent if path.suffix == ".gguf" else None
    return path if path.exists() else None


def unlearn_to_disk(
    *,
    model: str,
    forget: Any,
    output: str | Path,
    retain: Any = None,
    method: str | Method = "unilogit",
    overwrite: bool = False,
    method_options: dict[str, Any] | None = None,
    train_options: dict[str, Any] | None = None,
    log_file: str | None = None,
    merge_lora: bool = True,
    refusals: list[str] | None = None,
    allow_overlap: bool = False,
    load_options: dict[str, Any] | None = None,
    evaluate: Callable[[Any, Any], dict[str, Any]] | None = None,
) -> Path | None:
    """Load ``model``, unlearn ``forget``, save to ``output`` with config + audit record.

    ``evaluate(model, tokenizer) -> metrics``: run before and after unlearning; the scalar
    metrics of both go into the audit record (``evaluation.before`` / ``evaluation.after``).

    Under ``accelerate launch`` every process trains; only the main process evaluates and
    writes the output and returns its path; the others return None as soon as training ends.
    """
    main_process = process_rank() == 0
    started = now()
    t0 = time.perf_counter()
    load_options = dict(load_options or {})
    train_options = dict(train_options or {})
    method_obj = get_method(method, **(method_options or {}))  # built once: recorded and trained
    method_config = method_obj.config()
    out = prepare_output_dir(output, overwrite=overwrite or train_options.get("resume", False))
    forget_rows = data_lib.load_examples(forget, name="forget")
    retain_rows = data_lib.load_examples(retain, name="retain") if retain is not None else None
    net, tokenizer = load_model(model, **load_options)
    input_identity = _model_identity(model, net, load_options)
    before = _scalars(evaluate(net, tokenizer)) if evaluate is not None and main_process else None

    checkpoint_dir = out.with_name(f".{out.name}.checkpoints")
    if train_options.get("checkpoint_every") or train_options.get("resume"):
        train_options["checkpoint_dir"] = str(checkpoint_dir)
    cfg = TrainConfig(
        **train_options,
        allow_overlap=allow_overlap,
        log_file=log_file or str(checkpoint_dir.with_name(f".{out.name}.train_log.jsonl")),
    )
    Path(cfg.log_file).parent.mkdir(parents=True, exist_ok=True)
    net, history = unlearn(
        net,
        tokenizer,
        forget_rows,
        retain_rows,
        method=method_obj,
        config=cfg,
        refusals=refusals,
    )
    if not main_process:
        return None
    config = {
        "method": method_config,
        "train": asdict(cfg),
        "model": str(model),
        "forget": _source_name(forget),
        "retain": _source_name(retain),
    }
    final_model = net.merge_and_unload() if merge_lora and hasattr(net, "merge_and_unload") else net
    saved = save_model(
        final_model,
        tokenizer,
        out,
        overwrite=True,
        merge_lora=merge_lora,
        json_files={CONFIG_FILE: config},
        protect=[p for p in [_input_dir(model)] if p is not None],
    )
    log_path = Path(cfg.log_file)
    if log_path.exists() and log_path.parent != saved:
        log_path.replace(saved / "train_log.jsonl")
    after = _scalars(evaluate(final_model, tokenizer)) if evaluate is not None else None
    record = {
        "unilogit_record_version": 1,
        "command": "unlearn",
        "config": config,
        "input_model": input_identity,
        "output_model": {"path": str(saved), "weights_sha256": weights_sha256(final_model)},
        "data": {
            "forget": describe_data(forget, forget_rows),
            "retain": describe_data(retain, retain_rows) if retain_rows is not None else None,
        },
        "seed": cfg.seed,
        "steps": history.total_steps,
        "final_loss": history.steps[-1] if history.steps else None,
        "truncated_rows": history.truncated_rows,
        "evaluation": {"before": before, "after": after} if evaluate is not None else None,
        "versions": library_versions(),
        "started": started,
        "finished": now(),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    import json

    tmp = saved / (RECORD_FILE + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
    tmp.replace(saved / RECORD_FILE)
    if checkpoint_dir.exists():
        import shutil

        shutil.rmtree(checkpoint_dir)
    return saved


def finetune_to_disk(
    *,
    model: str,
    data: Any,
    output: str | Path,
    overwrite: bool = False,
    train_options: dict[str, Any] | None = None,
    log_file: str | None = None,
    merge_lora: bool = True,
    load_options: dict[str, Any] | None = None,
) -> Path | None:
    """Load ``model``, fine-tune on ``data``, save to ``output`` (safetensors); under
    ``accelerate launch`` only the main process saves (the others return None)."""
    load_options = dict(load_options or {})
    train_options = dict(train_options or {})
    train_options.pop("resume", None)
    train_options.pop("checkpoint_every", None)
    out = prepare_output_dir(output, overwrite=overwrite)
    rows = data_lib.load_examples(data, name="data")
    net, tokenizer = load_model(model, **load_options)
    cfg = TrainConfig(**train_options, log_file=log_file)
    net, history = finetune(net, tokenizer, rows, config=cfg)
    if process_rank() != 0:  # under accelerate launch: the main process saves
        return None
    config = {
        "command": "finetune",
        "train": asdict(cfg),
        "model": str(model),
        "data": describe_data(data, rows),
        "versions": library_versions(),
        "final_loss": history.steps[-1] if history.steps else None,
    }
    return save_model(
        net,
        tokenizer,
        out,
        overwrite=True,
        merge_lora=merge_lora,
        json_files={"finetune_config.json": config},
        protect=[p for p in [_input_dir(model)] if p is not None],
    )
