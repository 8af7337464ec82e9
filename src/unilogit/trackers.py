"""``--report-to``: experiment tracking through accelerate's trackers (TensorBoard, W&B, MLflow,
Aim, Comet, ClearML, DVCLive, SwanLab, Trackio: whatever ``accelerate.tracking`` knows).

A :class:`Tracking` spans a whole run: it stores the run's configuration, logs every optimizer
step's line (the trainer's ``on_step_end`` hook: ``history.steps[-1]``, the same numbers as the
JSONL train log) and each evaluation's scalars (``eval_before/...`` at step 0,
``eval_after/...`` at the last step). It holds accelerate's tracker objects itself rather than
going through the training loop's ``Accelerator``, because the evaluations before and after
unlearning happen while that Accelerator does not exist yet or any more; the trackers are
the same classes ``Accelerator(log_with=...)`` builds, started, fed and finished the same way
(main process only).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .experiment.hooks import RunHooks
from .extras import install_hint

#: Trackers whose package is one of our extras (the error names the extra).
_EXTRA_MODULE = {"tensorboard": "tensorboard"}


def parse_report_to(text: str | Sequence[str] | None) -> list[str]:
    """``"tensorboard,wandb"`` -> ``["tensorboard", "wandb"]``; ``none``/empty -> ``[]``.
    ConfigError for a tracker accelerate does not know or whose package is not installed."""
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS, get_available_trackers

    items = text.split(",") if isinstance(text, str) else list(text or [])
    names = [n.strip().lower() for n in items if n.strip() and n.strip().lower() != "none"]
    available = {str(t) for t in get_available_trackers()}
    if "all" in names:
        return sorted(available)
    for name in names:
        if name not in LOGGER_TYPE_TO_CLASS:
            raise ConfigError(
                f"--report-to {name!r}: unknown tracker; choose from none, all, "
                f"{', '.join(sorted(LOGGER_TYPE_TO_CLASS))}"
            )
        if name not in available:
            hint = (
                install_hint(_EXTRA_MODULE[name])
                if name in _EXTRA_MODULE
                else f"pip install {name}"
            )
            raise ConfigError(f"--report-to {name}: its package is not installed: {hint}")
    return list(dict.fromkeys(names))


def _scalars(values: Any, prefix: str = "") -> dict[str, float]:
    """Nested numbers flattened to ``{"a/b": 1.0}`` (texts, lists and None dropped)."""
    out: dict[str, float] = {}
    if isinstance(values, dict):
        for k, v in values.items():
            out.update(_scalars(v, f"{prefix}{k}/"))
    elif isinstance(values, (int, float)) and not isinstance(values, bool):
        out[prefix.rstrip("/")] = float(values)
    return out


def _hparams(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The run configuration flattened to the types every tracker stores (str/int/float/bool)."""
    out: dict[str, Any] = {}
    for k, v in config.items():
        if isinstance(v, dict):
            out.update(_hparams(v, f"{prefix}{k}/"))
        elif v is None or isinstance(v, (bool, int, float, str)):
            out[f"{prefix}{k}"] = "None" if v is None else v
        else:
            out[f"{prefix}{k}"] = str(v)
    return out


class Tracking:
    """The trackers of one run (none: every method is a no-op)."""

    def __init__(
        self,
        report_to: str | Sequence[str] | None,
        *,
        logging_dir: str | os.PathLike[str] | None,
        run_name: str,
        main: bool = True,
    ) -> None:
        """Check ``report_to`` now (ConfigError); the trackers start in :meth:`start`. On a
        non-main process (``main=False``) nothing is tracked."""
        self.names = parse_report_to(report_to) if main else []
        self.logging_dir, self.run_name = logging_dir, run_name
        self.trackers: list[Any] = []
        self.last_step = 0

    def start(self, config: dict[str, Any]) -> None:
        """Start every tracker and store ``config`` (flattened) as the run's hyperparameters."""
        from accelerate import PartialState
        from accelerate.tracking import LOGGER_TYPE_TO_CLASS

        if self.names:
            PartialState()  # what Accelerator() sets up first; the trackers' logging needs it
        for name in self.names:
            cls = LOGGER_TYPE_TO_CLASS[name]
            if cls.requires_logging_directory:
                if self.logging_dir is None:
                    raise ConfigError(f"--report-to {name} needs a logging directory")
                Path(self.logging_dir).mkdir(parents=True, exist_ok=True)
                tracker = cls(self.run_name, str(self.logging_dir))
            else:
                tracker = cls(self.run_name)
            if hasattr(tracker, "start"):  # accelerate >= 1.3 starts trackers here, not in init
                tracker.start()
            tracker.store_init_configuration(_hparams(config))
            self.trackers.append(tracker)

    def log(self, values: dict[str, Any], step: int) -> None:
        """Log the numbers of ``values`` (nested dicts flattened with ``/``) at ``step``."""
        scalars = _scalars(values)
        self.last_step = max(self.last_step, step)
        for tracker in self.trackers:
            tracker.log(scalars, step=step)

    def on_step_end(self, model: Any, step: int, history: Any) -> None:
        """The trainer's ``on_step_end`` hook: the step's log line (``step`` excluded)."""
        line = {k: v for k, v in history.steps[-1].items() if k != "step"}
        self.log({"train": line}, step)

    def log_eval(self, name: str, metrics: Any, step: int | None = None) -> None:
        """An evaluation's scalars as ``NAME/...`` at ``step`` (default: the last step seen)."""
        if metrics:
            self.log({name: metrics}, self.last_step if step is None else step)

    def finish(self) -> None:
        for tracker in self.trackers:
            tracker.finish()
        self.trackers = []


#: Record fields that name a run or an evaluation point rather than measure anything.
_IDENTITY = frozenset({"kind", "method", "lr", "epochs", "seed", "run_id", "options", "step"})
_IDENTITY |= {"epoch", "final"}


def record_scalars(record: dict[str, Any]) -> dict[str, float]:
    """An evaluation record's numbers for a tracker: identity fields and the training losses
    (``train/...``, logged with their step already) left out."""
    kept = {k: v for k, v in record.items() if k not in _IDENTITY and not k.startswith("train/")}
    return _scalars(kept)


class TrackerHooks(RunHooks):
    """``unilogit bench --report-to``: one tracker run per training run, named by its run id,
    in ``logging_dir``: the run's identity, method options and training configuration as its
    hyperparameters (with ``config``, the experiment's), every optimizer step's log line
    (``train/...``, the numbers of ``logs/<run_id>.jsonl``) and every stored evaluation's
    numbers (``eval/...``, those of ``results.jsonl``) at its step. A baseline (the target
    model, the gold model) is a tracker run of its own with its one evaluation at step 0."""

    def __init__(
        self,
        report_to: str | Sequence[str] | None,
        logging_dir: str | os.PathLike[str],
        config: dict[str, Any] | None = None,
    ) -> None:
        self.names = parse_report_to(report_to)
        self.logging_dir, self.config = Path(logging_dir), dict(config or {})
        self.open: dict[str, Tracking] = {}

    def for_part(self, name: str) -> TrackerHooks:
        """One folder per part (``logging_dir/<part>``): parts share run ids."""
        return TrackerHooks(self.names, self.logging_dir / name, self.config)

    def _start(self, run: dict[str, Any], extra: dict[str, Any]) -> Tracking:
        tracking = Tracking(self.names, logging_dir=self.logging_dir, run_name=run["run_id"])
        tracking.start({**self.config, "run": dict(run), **extra})
        return tracking

    def run_started(self, run: Any, config: Any) -> None:
        import dataclasses

        train = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else {}
        self.open[run["run_id"]] = self._start(run, {"train": train})

    def step(self, run: Any, step: int, history: Any) -> None:
        self.open[run["run_id"]].on_step_end(None, step, history)

    def recorded(self, run: Any, record: Any) -> None:
        tracking = self.open.get(run["run_id"])
        if tracking is None:  # a baseline: a tracker run with its one evaluation
            once = self._start(run, {})
            once.log({"eval": record_scalars(dict(record))}, int(record.get("step") or 0))
            once.finish()
            return
        tracking.log({"eval": record_scalars(dict(record))}, int(record["step"]))

    def run_finished(self, run: Any) -> None:
        tracking = self.open.pop(run["run_id"], None)
        if tracking is not None:
            tracking.finish()
