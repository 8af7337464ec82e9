"""End-to-end recipes on disk: load a model, train, save it with its config and audit record.

The CLI calls these; they are also the Python way to do what the CLI does.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from . import data as data_lib
from .card import write_card
from .errors import ConfigError, DataError
from .fingerprint import run_fingerprint
from .methods import Method, get_method
from .models import (
    check_output_dir,
    check_output_file,
    load_model,
    merged,
    weights_sha256,
    write_model_files,
)
from .outputs import RunOutput
from .record import (
    CONFIG_FILE,
    describe_data,
    library_versions,
    now,
    rows_sha256,
    sha256_json,
    stopping_record,
    write_record,
)
from .trackers import Tracking
from .trainer import TrainConfig, finetune, process_rank, unlearn

__all__ = [
    "check_output_dir",
    "check_output_file",
    "finetune_to_disk",
    "load_refusals",
    "unlearn_to_disk",
]
FINETUNE_CONFIG = "finetune_config.json"


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


def _input_paths(*sources: Any) -> list[Path]:
    """The local files and directories among a run's inputs (model spec, data, refusals)."""
    out = []
    for s in sources:
        if isinstance(s, (str, os.PathLike)) and Path(s).expanduser().exists():
            out.append(Path(s).expanduser().resolve())
    return out


def load_refusals(refusals: list[str] | str | os.PathLike[str] | None) -> list[str] | None:
    """Refusal texts for IdkDPO: a list as is, or a text file with one refusal per line."""
    if refusals is None or isinstance(refusals, list):
        return refusals
    path = Path(refusals)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError("file not found", file=path) from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read the refusals: {e}", file=path) from None
    texts = [ln.strip() for ln in lines if ln.strip()]
    if not texts:
        raise DataError("no refusal texts (one per line expected)", file=path)
    return texts


def _train_config(run: RunOutput, train_options: dict[str, Any], **extra: Any) -> TrainConfig:
    options = dict(train_options)
    if options.get("checkpoint_every") or options.get("resume"):
        options["checkpoint_dir"] = str(run.checkpoint_dir)
    return TrainConfig(**options, **extra, log_file=str(run.log_file))


@contextlib.contextmanager
def _tracked(
    run: RunOutput, report_to: Any, logging_dir: str | os.PathLike[str] | None
) -> Iterator[Tracking]:
    """The run's trackers (``--report-to``), logging into ``logging_dir`` or else the work
    area, whose ``trackers/`` folder is copied into the output (see :func:`_copy_trackers`)."""
    if logging_dir is not None:
        where = Path(logging_dir).expanduser().resolve()
        if where == run.out or run.out in where.parents:
            raise ConfigError(f"--logging-dir {where} would go inside the output {run.out}")
    folder = Path(logging_dir) if logging_dir is not None else run.checkpoint_dir / "trackers"
    tracking = Tracking(report_to, logging_dir=folder, run_name=run.out.name, main=run.main)
    try:
        yield tracking
    finally:
        tracking.finish()


def _copy_trackers(run: RunOutput, tmp: Path) -> None:
    """Finish the trackers' files, then copy the work area's ``trackers/`` into the output."""
    import shutil

    if (run.checkpoint_dir / "trackers").is_dir():
        shutil.copytree(run.checkpoint_dir / "trackers", tmp / "trackers")


@contextlib.contextmanager
def _interruptible(run: RunOutput) -> Iterator[None]:
    """Ctrl-C while training becomes :class:`Interrupted` (where to resume from)."""
    try:
        yield
    except KeyboardInterrupt:
        raise run.interrupted() from None


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
    refusals: list[str] | str | os.PathLike[str] | None = None,
    allow_overlap: bool = False,
    load_options: dict[str, Any] | None = None,
    evaluate: Callable[[Any, Any], dict[str, Any]] | None = None,
    holdout: Any = None,
    stopping: dict[str, Any] | None = None,
    report_to: str | list[str] | None = None,
    logging_dir: str | os.PathLike[str] | None = None,
    columns: dict[str, str] | None = None,
) -> Path | None:
    """Load ``model``, unlearn ``forget``, save to ``output`` with config + audit record.

    ``holdout`` (rows never trained on): the forgetting meter runs (docs/stopping.md; options
    ``stopping``: ``stop``, ``every``, ``max_rows``); the record says which step was kept, why.
    Every path is checked before any work (see :mod:`unilogit.outputs`); the output, with its
    train log, config and record (:func:`unilogit.record.write_record`), appears in one step
    when complete. ``--resume`` refuses a checkpoint of another run (:mod:`unilogit.fingerprint`).
    ``refusals``: texts, or a file with one per line. ``evaluate(model, tokenizer) -> metrics``:
    run before and after unlearning; the scalar metrics of both go into the audit record
    (``evaluation.before`` / ``evaluation.after``).
    Ctrl-C raises :class:`~unilogit.errors.Interrupted`; a failed save
    :class:`~unilogit.errors.OutputError`; neither leaves a partial output. The output holds a
    model card (``README.md``, :mod:`unilogit.card`). ``report_to``: accelerate trackers
    (:mod:`unilogit.trackers`) receiving the config, every step and both evaluations.

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
    inputs = _input_paths(
        model, forget, retain, refusals if not isinstance(refusals, list) else None
    )
    run = RunOutput(
        output,
        overwrite=overwrite,
        resume=bool(train_options.get("resume")),
        inputs=inputs,
        log_file=log_file,
        main=main_process,
    )
    refusal_texts = load_refusals(refusals)
    forget_rows = data_lib.load_examples(forget, name="forget", columns=columns)
    retain_rows = (
        data_lib.load_examples(retain, name="retain", columns=columns)
        if retain is not None
        else None
    )
    holdout_rows = (
        data_lib.load_examples(holdout, name="holdout", columns=columns)
        if holdout is not None
        else None
    )
    with run, _interruptible(run), _tracked(run, report_to, logging_dir) as tracking:
        net, tokenizer = load_model(model, **load_options)
        input_identity = _model_identity(model, net, load_options)
        cfg = _train_config(run, train_options, allow_overlap=allow_overlap)
        data = {
            "forget": describe_data(forget, forget_rows, name="forget"),
            "retain": None if retain is None else describe_data(retain, retain_rows, name="retain"),
        }
        identity = {"model_sha256": input_identity["weights_sha256"], "data": data}
        extra: dict[str, Any] = {"refusals_sha256": sha256_json(refusal_texts)}
        autostop = _autostop(tokenizer, cfg, forget_rows, retain_rows, holdout_rows, stopping)
        if autostop is not None:
            extra["stopping"] = {**(stopping or {}), "holdout": rows_sha256(holdout_rows)}
        fingerprint = run_fingerprint(
            command="unlearn", method=method_config, train=cfg.recorded(), extra=extra, **identity
        )
        run.check_fingerprint(fingerprint)
        tracking.start({"method": method_config, "train": asdict(cfg), "model": str(model)})
        before = (
            _scalars(evaluate(net, tokenizer)) if evaluate is not None and main_process else None
        )
        tracking.log_eval("eval_before", before, step=0)
        net, history = unlearn(
            net,
            tokenizer,
            forget_rows,
            retain_rows,
            method=method_obj,
            config=cfg,
            refusals=refusal_texts,
            stopping=autostop,
            on_step_end=tracking.on_step_end,
        )
        if not main_process:
            return None
        config = {
            "method": method_config,
            "train": {**asdict(cfg), "log_file": log_file},  # the work-area log is transient
            "model": str(model),
            "load": load_options,  # read back by --config (replaying the run)
            "forget": _source_name(forget),
            "retain": _source_name(retain),
            "refusals": None if isinstance(refusals, list) else _source_name(refusals),
            **({"columns": columns} if columns else {}),
        }
        record = {
            "command": "unlearn",
            "config": config,
            "input_model": input_identity,
            "data": data,
            "refusals_sha256": sha256_json(refusal_texts) if refusal_texts else None,
            "resumed": bool(cfg.resume),
            "seed": cfg.seed,
            "steps": history.total_steps,
            "final_loss": history.steps[-1] if history.steps else None,
            "truncated_rows": history.truncated_rows,
            "stopping": stopping_record(history.stop, holdout, holdout_rows),
            "started": started,
        }
        after = {"merge_lora": merge_lora, "evaluate": evaluate, "before": before, "t0": t0}
        return _publish_unlearned(run, net, tokenizer, record, tracking=tracking, **after)


def _autostop(
    tokenizer: Any,
    cfg: TrainConfig,
    forget: list[Any],
    retain: list[Any] | None,
    holdout: list[Any] | None,
    stopping: dict[str, Any] | None,
) -> Any:
    """The forgetting meter in the loop (:class:`unilogit.autostop.AutoStop`), or None
    without a holdout set."""
    if holdout is None:
        return None
    from .autostop import build_autostop

    options = {"prompt_format": cfg.chat_template, "max_length": cfg.max_length}
    return build_autostop(tokenizer, forget, holdout, retain, **options, **(stopping or {}))


def _publish_unlearned(
    run: RunOutput,
    net: Any,
    tokenizer: Any,
    record: dict[str, Any],
    *,
    merge_lora: bool,
    evaluate: Callable[[Any, Any], dict[str, Any]] | None,
    before: Any,
    t0: float,
    tracking: Tracking,
) -> Path:
    """Merge LoRA adapters if asked, evaluate after, then write model, config and (last) the
    record into the temporary directory that :meth:`RunOutput.publish` renames into place."""
    final_model = merged(net) if merge_lora and hasattr(net, "merge_and_unload") else net
    after = _scalars(evaluate(final_model, tokenizer)) if evaluate is not None else None
    tracking.log_eval("eval_after", after)
    tracking.finish()  # its files complete before they are copied into the output
    record = {
        **record,
        "output_model": {"path": str(run.out), "weights_sha256": weights_sha256(final_model)},
        "evaluation": {"before": before, "after": after} if evaluate is not None else None,
        "versions": library_versions(),
    }

    def write(tmp: Path) -> None:
        config = {CONFIG_FILE: record["config"]}
        write_model_files(final_model, tokenizer, tmp, merge_lora=merge_lora, json_files=config)
        _copy_trackers(run, tmp)
        write_card(tmp, record)
        finished = {"finished": now(), "seconds": round(time.perf_counter() - t0, 2)}
        write_record(tmp, {**record, **finished})

    return run.publish(write)


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
    report_to: str | list[str] | None = None,
    logging_dir: str | os.PathLike[str] | None = None,
    columns: dict[str, str] | None = None,
) -> Path | None:
    """Load ``model``, fine-tune on ``data``, save to ``output`` (safetensors) with
    ``finetune_config.json``; paths, lock, checkpoints, ``--resume`` (fingerprint checked),
    Ctrl-C, publishing, model card and trackers as in :func:`unlearn_to_disk`. Under
    ``accelerate launch`` only the main process saves (the others return None)."""
    load_options = dict(load_options or {})
    train_options = dict(train_options or {})
    run = RunOutput(
        output,
        overwrite=overwrite,
        resume=bool(train_options.get("resume")),
        inputs=_input_paths(model, data),
        log_file=log_file,
        main=process_rank() == 0,
    )
    rows = data_lib.load_examples(data, name="data", columns=columns)
    with run, _interruptible(run), _tracked(run, report_to, logging_dir) as tracking:
        net, tokenizer = load_model(model, **load_options)
        cfg = _train_config(run, train_options)
        identity = describe_data(data, rows, name="data")
        run.check_fingerprint(
            run_fingerprint(
                command="finetune",
                method={"method": "finetune"},
                train=cfg.recorded(),
                data={"data": identity},
                model_sha256=weights_sha256(net),
            )
        )
        tracking.start({"method": {"method": "finetune"}, "train": asdict(cfg), "model": model})
        net, history = finetune(net, tokenizer, rows, config=cfg, on_step_end=tracking.on_step_end)
        if process_rank() != 0:  # under accelerate launch: the main process saves
            return None
        config = {
            "command": "finetune",
            "train": {**asdict(cfg), "log_file": log_file},  # the work-area log is transient
            "model": str(model),
            "load": load_options,  # read back by --config (replaying the run)
            "data": identity,
            **({"columns": columns} if columns else {}),
            "resumed": bool(cfg.resume),
            "versions": library_versions(),
            "final_loss": history.steps[-1] if history.steps else None,
        }
        tracking.finish()

        def write(tmp: Path) -> None:
            files = {FINETUNE_CONFIG: config}
            write_model_files(net, tokenizer, tmp, merge_lora=merge_lora, json_files=files)
            _copy_trackers(run, tmp)
            write_card(tmp, config)

        return run.publish(write)
