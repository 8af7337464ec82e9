"""The run loop: baselines, then every run of the grid, evaluated along the way.

A RUN is one training of the target model with one (method, lr, epochs, seed). It is evaluated
every ``eval_every`` optimizer steps, at the end of every epoch (``eval_epochs``) and always
after its last step, from inside the training through the trainer's
``on_step_end(model, step, history)`` hook (``history.steps[-1]`` holds the losses the weights
are at; no log file is parsed). Before the runs the baselines are evaluated once: the GOLD model
when the benchmark has one (``has_gold``; its evaluation, completed by
:meth:`~unilogit.benchmarks.base.Benchmark.gold_baseline`, is the reference of every later
evaluation, stored as the ``retain`` baseline) and the TARGET model (step 0 of every run).

AUTO-STOP (docs/stopping.md): when the benchmark has a holdout split, each run also does what
``unlearn --stop-when forgotten`` does (:class:`~unilogit.autostop.AutoStop`): the gold-free
forgetting meter is read on the target model (step 0, stored with the target baseline) and every
``every`` steps until the stop rule stops (the run itself goes on to its last step); readings
at evaluation steps join those records (``meter_*``). The step the rule keeps is evaluated (its
weights were kept in memory; a step already on the schedule is not evaluated twice), and the
final record names it (``autostop_step``, ``autostop_reason``, ``autostop_tolerance``);
every reading and the decision are saved as ``autostop/<run_id>.json``.

The training function is injectable (``train_fn``, default :func:`unilogit.trainer.unlearn`),
and so is ``on_evaluation(model, step, history)``: called at every evaluation point, its
numbers (a mapping, or None) are added to that evaluation's record.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unilogit.benchmarks.base import Benchmark
from unilogit.errors import ConfigError, TrainingError

from .grid import Grid, RunSpec
from .hooks import RunHooks
from .store import ResultsStore

__all__ = [
    "FORMAT_VERSION",
    "EvalSchedule",
    "ExperimentResult",
    "run_experiment",
]

FORMAT_VERSION = 2
#: TrainConfig fields that belong to a run (grid axes) or to bookkeeping, not to the
#: configuration fingerprint.
_PER_RUN = {"lr", "epochs", "seed", "log_file", "checkpoint_dir", "checkpoint_every", "resume"}
_PER_RUN |= {"progress"}

TrainFn = Callable[..., tuple[Any, Any]]
EvaluationHook = Callable[[Any, int, Any], Mapping[str, Any] | None]


def log(progress: bool, msg: str) -> None:
    if progress:
        from tqdm.auto import tqdm

        # tqdm.write: a line printed while the trainer's progress bar is open stays readable.
        tqdm.write(f"[unilogit sweep] {msg}", file=sys.stderr)


@dataclass(frozen=True)
class EvalSchedule:
    """When a run is evaluated: every ``every`` optimizer steps (None or 0: not by steps), at
    each epoch boundary (``epochs``), and always after the last step."""

    every: int | None = None
    epochs: bool = True

    def __post_init__(self) -> None:
        if self.every is not None and (
            isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 0
        ):
            raise ConfigError(f"eval_every must be a non-negative integer, got {self.every!r}")

    def due(self, step: int, total_steps: int, steps_per_epoch: int) -> bool:
        return (
            step == total_steps
            or (bool(self.every) and step % self.every == 0)
            or (self.epochs and step % max(1, steps_per_epoch) == 0)
        )

    def to_dict(self) -> dict[str, Any]:
        return {"every": self.every or None, "epochs": self.epochs}


@dataclass
class ExperimentResult:
    """What :func:`run_experiment` did: every record in the folder, the runs it trained and
    skipped, and the report's files."""

    records: list[dict[str, Any]]
    output_dir: Path
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    report: dict[str, Path] | None = None


@dataclass
class _Context:
    """Everything a run needs, resolved once."""

    benchmark: Benchmark
    store: ResultsStore
    forget: list[Any]
    retain: list[Any] | None
    target: Any
    gold: Any
    tokenizer: Any
    eval_options: dict[str, Any]
    train_options: dict[str, Any]
    method_options: dict[str, dict[str, Any]]
    schedule: EvalSchedule
    train_fn: TrainFn
    on_evaluation: EvaluationHook | None
    progress: bool
    reference: dict[str, Any] | None = None
    meter: Any = None  # ForgettingMeter over the benchmark's holdout split, or None
    stop_rule: Any = None  # the StopRule applied to each run's readings
    target_reading: Any = None  # the meter on the target model: every run's step 0
    meter_every: int | None = None  # read the meter every N steps (None: 4 times per epoch)
    hooks: RunHooks = field(default_factory=RunHooks)  # extra numbers, run observers


def default_train_fn(*args: Any, **kwargs: Any) -> Any:
    """:func:`unilogit.trainer.unlearn` (imported on first use)."""
    from unilogit.trainer import unlearn

    return unlearn(*args, **kwargs)


def run_experiment(
    benchmark: Benchmark,
    grid: Grid,
    output_dir: str | os.PathLike,
    *,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    train_options: Mapping[str, Any] | None = None,
    eval_options: Mapping[str, Any] | None = None,
    eval_every: int | None = None,
    eval_epochs: bool = True,
    target: Any = None,
    gold: Any = None,
    tokenizer: Any = None,
    device: str | None = None,
    overwrite: bool = False,
    report: bool = True,
    progress: bool = True,
    train_fn: TrainFn | None = None,
    on_evaluation: EvaluationHook | None = None,
    autostop: bool | Mapping[str, Any] = True,
    hooks: RunHooks | None = None,
) -> ExperimentResult:
    """Run every point of ``grid`` on ``benchmark``; record every evaluation in ``output_dir``
    (:class:`~unilogit.experiment.store.ResultsStore`: resumable, refuses mixed results);
    write the report.

    Args:
        benchmark: a :class:`~unilogit.benchmarks.base.Benchmark`. Models come from its
            ``target_model()`` / ``gold_model()`` unless ``target`` / ``gold`` (objects or
            paths) are given; ``gold`` only for benchmarks with ``has_gold``.
        method_options: method -> its options (``{"npo": {"beta": 0.1}}``).
        train_options: :class:`~unilogit.trainer.TrainConfig` fields shared by every run (not
            ``lr`` / ``epochs`` / ``seed``: grid axes).
        eval_options: ``benchmark.evaluate`` options on top of its ``default_eval_options``.
        eval_every / eval_epochs: the evaluation schedule (:class:`EvalSchedule`).
        train_fn: ``unlearn``-compatible training function (tests, other trainers).
        on_evaluation: ``fn(model, step, history) -> mapping | None`` at each evaluation.
        autostop: meter + stop rule (module docstring): bool or ``{"max_rows", "z", "every",
            "damage_guard"}``.
        hooks: :class:`~unilogit.experiment.hooks.RunHooks` (lm-evaluation-harness scores,
            experiment trackers); their fingerprint joins the configuration.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError(
            "run_sweep runs in one process (it evaluates during training); start it without "
            "`accelerate launch` / torchrun"
        )
    ctx = _context(
        benchmark,
        grid,
        Path(output_dir),
        dict(method_options or {}),
        dict(train_options or {}),
        dict(eval_options or {}),
        EvalSchedule(eval_every, eval_epochs),
        (target, gold, tokenizer, device),
        overwrite,
        progress,
        train_fn or default_train_fn,
        on_evaluation,
        autostop,
        hooks or RunHooks(),
    )
    ctx.reference = _baselines(ctx)
    result = ExperimentResult(records=ctx.store.records, output_dir=ctx.store.root)
    done = ctx.store.finished(ctx.store.records)
    todo = [s for s in grid.runs() if s.key not in done]
    result.skipped = [s.run_id for s in grid.runs() if s.key in done]
    if result.skipped:
        log(progress, f"{len(result.skipped)} run(s) already finished: skipped")
    for n, spec in enumerate(todo, 1):
        log(
            progress,
            f"run {n}/{len(todo)}: {spec.method} lr={spec.lr:g} epochs={spec.epochs} "
            f"seed={spec.seed}",
        )
        _run_one(ctx, spec)
        result.ran.append(spec.run_id)
    result.records = ctx.store.records
    if report:
        from unilogit.report import write_report

        result.report = write_report(result.records, ctx.store.root, meta=ctx.store.saved_config())
        log(progress, f"report: {result.report['md']}")
    return result


def _context(
    benchmark: Benchmark,
    grid: Grid,
    out: Path,
    method_options: dict[str, Any],
    train_options: dict[str, Any],
    eval_options: dict[str, Any],
    schedule: EvalSchedule,
    models: tuple[Any, Any, Any, str | None],
    overwrite: bool,
    progress: bool,
    train_fn: TrainFn,
    on_evaluation: EvaluationHook | None,
    autostop: bool | Mapping[str, Any] = False,
    hooks: RunHooks | None = None,
) -> _Context:
    """Check every option before any model loads or trains; load the data and models; open
    the results store."""
    from unilogit.methods import get_method
    from unilogit.models import weights_sha256

    if not isinstance(benchmark, Benchmark):
        raise ConfigError(
            f"{type(benchmark).__name__} is not a unilogit.benchmarks.Benchmark (the contract)"
        )
    method_options = {m: dict(o) for m, o in method_options.items()}
    train_options.setdefault("progress", progress)
    for k in ("lr", "epochs", "seed"):
        if k in train_options:
            raise ConfigError(f"train_options may not set {k!r}: it is a grid axis")
    train_fp = _train_fingerprint(train_options)
    log(progress, f"preparing the benchmark: {benchmark!r}")
    forget, retain = benchmark.forget(), benchmark.retain()
    for m in grid.methods:  # a typo fails now, not in hour two
        if get_method(m, **method_options.get(m, {})).retain_kind is not None and retain is None:
            method_options[m] = _forget_only(benchmark, m, method_options.get(m, {}))
    eval_opts = {**benchmark.default_eval_options, **eval_options}
    target, gold, tok = _resolve_models(benchmark, *models)
    meter, rule, meter_config = _meter(benchmark, autostop, forget, retain, tok, train_options)
    meter_every = None if meter_config is None else meter_config["every"]
    hashes = {"target_sha256": weights_sha256(target)}
    if gold is not None:
        hashes["retain_sha256"] = weights_sha256(gold)
    config = {
        "format": FORMAT_VERSION,
        "benchmark": benchmark.describe(),
        "models": hashes,
        "train": train_fp,
        "eval": eval_opts,
        "schedule": schedule.to_dict(),
        "method_options": {m: method_options[m] for m in sorted(method_options)},
    }
    if meter_config is not None:  # absent when off: results stored without a meter still match
        config["autostop"] = meter_config
    hooks = hooks or RunHooks()
    if (extra := hooks.fingerprint()) is not None:  # absent without hooks: old results match
        config["hooks"] = dict(extra)
    store = ResultsStore(out, config, grid, overwrite=overwrite, layout=_layout(benchmark))
    if store.dropped:
        log(progress, f"dropped {store.dropped} evaluation(s) of unfinished runs")
    return _Context(
        benchmark, store, forget, retain, target, gold, tok, eval_opts, train_options,
        method_options, schedule, train_fn, on_evaluation, progress, None, meter, rule,
        None if meter is None else meter.measure(target, 0), meter_every, hooks,
    )  # fmt: skip


def _meter(
    benchmark: Benchmark,
    autostop: bool | Mapping[str, Any],
    forget: list[Any],
    retain: list[Any] | None,
    tokenizer: Any,
    train_options: Mapping[str, Any],
) -> tuple[Any, Any, dict[str, Any] | None]:
    """(meter, stop rule, its configuration for the fingerprint), or Nones: off, or no
    holdout split."""
    if autostop is False or autostop is None:
        return None, None, None
    options = {} if autostop is True else dict(autostop)
    unknown = sorted(set(options) - {"max_rows", "z", "every", "damage_guard"})
    if unknown:
        raise ConfigError(
            f"autostop options are max_rows, z, every and damage_guard, got {unknown}"
        )
    holdout = benchmark.holdout()
    if not holdout:
        return None, None, None
    from unilogit.stopping import ForgettingMeter, StopRule

    config = {"max_rows": 200, "z": 1.96, "every": None, "damage_guard": True, **options}
    meter = ForgettingMeter(
        tokenizer,
        forget,
        holdout,
        retain,
        max_rows=config["max_rows"],
        prompt_format=train_options.get("chat_template"),
        max_length=train_options.get("max_length", 512),
    )
    return meter, StopRule(z=config["z"], damage_guard=config["damage_guard"]), config


def _forget_only(benchmark: Benchmark, method: str, options: Mapping[str, Any]) -> dict:
    """``method``'s options without a retain term, for a benchmark without retain data (the
    forget-only setting); a retain term the user asked for is an error."""
    if options.get("retain_loss") not in (None, "default"):
        raise ConfigError(
            f"benchmark {benchmark.name!r} has no retain data, but {method} was given "
            f"retain_loss={options['retain_loss']!r}; drop it (forget-only) or use a "
            "benchmark with retain data"
        )
    return {**options, "retain_loss": None}


def _layout(benchmark: Benchmark) -> dict[str, Any]:
    """What the report shows for this benchmark (saved beside the results, so the report can
    be rebuilt from the folder alone)."""
    return {
        "has_gold": benchmark.has_gold,
        "columns": [dataclasses.asdict(c) for c in benchmark.columns],
        "curves": [dataclasses.asdict(c) for c in benchmark.curves],
    }


def _train_fingerprint(train_options: Mapping[str, Any]) -> dict[str, Any]:
    from unilogit.trainer import TrainConfig

    options = dict(train_options)
    cfg = TrainConfig.from_options(None, options)
    if options:
        raise ConfigError(f"unknown training option(s): {sorted(options)}")
    return {k: v for k, v in cfg.recorded().items() if k not in _PER_RUN}


def _resolve_models(
    benchmark: Benchmark, target: Any, gold: Any, tokenizer: Any, device: str | None
) -> tuple[Any, Any, Any]:
    """Target model, gold model (None without ``has_gold``) and tokenizer: given objects or
    paths, else the benchmark's own."""
    from unilogit.models import load_model, resolve_device

    dev = resolve_device(device)

    def get(spec: Any, own: Callable[[], tuple[Any, Any] | None], which: str) -> tuple[Any, Any]:
        if spec is None:
            pair = own()
            if pair is None:
                raise ConfigError(
                    f"benchmark {benchmark.name!r} has no {which} model of its own: give it "
                    f"({which}= / --model / --gold-model)"
                )
            return pair
        if isinstance(spec, (str, os.PathLike)):
            return load_model(spec, device=str(dev))
        return spec, None

    if gold is not None and not benchmark.has_gold:
        raise ConfigError(f"benchmark {benchmark.name!r} has no gold model: do not give one")
    target_model, tok_t = get(target, benchmark.target_model, "target")
    gold_model = None
    if benchmark.has_gold:
        gold_model = get(gold, benchmark.gold_model, "gold")[0].to(dev).eval()
        gold_model.requires_grad_(False)
    tok = tokenizer or tok_t
    if tok is None:
        raise ConfigError("no tokenizer: pass tokenizer=... (the target model's)")
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return target_model.to(dev).eval(), gold_model, tok


# ------------------------------------------------------------------------------ evaluation


@contextlib.contextmanager
def _evaluating(model: Any) -> Iterator[None]:
    """Eval mode, no gradients, full precision (even if the run trains under autocast); the
    model's mode is restored afterwards."""
    import torch

    was_training = model.training
    model.eval()
    device_type = next(model.parameters()).device.type
    try:
        with torch.no_grad(), torch.autocast(device_type, enabled=False):
            yield
    finally:
        model.train(was_training)


def _evaluate(ctx: _Context, model: Any, reference: Any, gold: Any) -> tuple[dict, float]:
    t0 = time.perf_counter()
    with _evaluating(model):
        res = ctx.benchmark.evaluate(
            model,
            ctx.tokenizer,
            reference=reference,
            gold_model=gold,
            progress=False,
            **ctx.eval_options,
        )
    return res, time.perf_counter() - t0


def _baselines(ctx: _Context) -> dict[str, Any] | None:
    """Evaluate the gold model (the reference) and the target model unless already stored;
    return the reference evaluation (None without a gold model)."""
    have = {r.get("method") for r in ctx.store.records if r.get("kind") == "baseline"}
    reference = None
    if ctx.gold is not None:
        reference = ctx.store.baseline("retain")
        if reference is None:
            log(ctx.progress, "evaluating the gold (retain) model: the reference")
            res, secs = _evaluate(ctx, ctx.gold, None, None)
            reference = ctx.benchmark.gold_baseline(res)
            _store_baseline(ctx, "retain", reference, secs, file_only="retain" in have)
    if "target" not in have:
        log(ctx.progress, "evaluating the target model (before unlearning)")
        res, secs = _evaluate(ctx, ctx.target, reference, ctx.gold)
        _store_baseline(ctx, "target", res, secs)
    return reference


def _store_baseline(
    ctx: _Context, name: str, res: Mapping[str, Any], secs: float, file_only: bool = False
) -> None:
    path = f"evals/{name}.json"
    if file_only:  # the record is kept but its file went missing: write the file again
        from unilogit.files import atomic_write_json

        atomic_write_json(ctx.store.root / path, res, indent=1)
        return
    rec = {
        "kind": "baseline",
        "method": name,
        "epoch": 0,
        "step": 0,
        "final": True,
        "run_id": name,
        **ctx.benchmark.summarize(res),
        "eval_seconds": round(secs, 2),
    }
    if name == "target" and ctx.target_reading is not None:
        rec.update(ctx.target_reading.log_fields())  # the meter at step 0 of every run
    if name == "target":
        rec.update(ctx.hooks.baseline(ctx.target, ctx.tokenizer) or {})
    stored = ctx.store.append(rec, res, path)
    ctx.hooks.recorded({k: rec[k] for k in ("kind", "method", "run_id")}, stored)
    log(ctx.progress, one_line(stored, ctx.benchmark))


def one_line(r: Mapping[str, Any], benchmark: Benchmark) -> str:
    """A record in one line: who, the benchmark's first four columns, the evaluation time."""

    def f(key: str) -> str:
        v = r.get(key)
        return "–" if not isinstance(v, (int, float)) else f"{v:.3g}"

    who = r["method"] if r.get("kind") == "baseline" else f"{r['method']} step {r.get('step')}"
    cols = ", ".join(f"{c.label} {f(c.key)}" for c in benchmark.columns[:4])
    return f"{who}: {cols} ({f('eval_seconds')} s eval)"


# ------------------------------------------------------------------------------ one run


def _run_one(ctx: _Context, spec: RunSpec) -> None:
    """Train one run from a copy of the target model, evaluating on ``ctx.schedule``."""
    from unilogit.methods import get_method
    from unilogit.trainer import TrainConfig

    method = get_method(spec.method, **ctx.method_options.get(spec.method, {}))
    log_file = ctx.store.root / "logs" / f"{spec.run_id}.jsonl"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    cfg = TrainConfig.from_options(
        None, {**ctx.train_options, "lr": spec.lr, "epochs": spec.epochs, "seed": spec.seed}
    )
    base = {
        "kind": "run",
        "method": spec.method,
        "lr": spec.lr,
        "epochs": spec.epochs,
        "seed": spec.seed,
        "run_id": spec.run_id,
        "options": method.config(),
    }
    clock = {"start": time.perf_counter(), "eval": 0.0, "final": False}
    model = copy.deepcopy(ctx.target).train().requires_grad_(True)
    auto = None if ctx.meter is None else _RunAutoStop(ctx, model)

    def on_step_end(model: Any, step: int, history: Any) -> None:
        steps_per_epoch = max(1, history.total_steps // spec.epochs)
        ctx.hooks.step(base, step, history)
        meter = {} if auto is None else auto.after_step(model, step, history, steps_per_epoch)
        if auto is not None and step == history.total_steps:  # before the final record
            ctx.store.save_autostop(base["run_id"], auto.stop.decision)
        if ctx.schedule.due(step, history.total_steps, steps_per_epoch):
            _record_evaluation(ctx, base, model, step, history, clock, meter)
        if auto is not None and auto.kept_needs_evaluation(
            step, history.total_steps, steps_per_epoch
        ):
            auto.evaluate_kept(base, model, history, clock)

    ctx.hooks.run_started(base, cfg)
    try:
        ctx.train_fn(
            model,
            ctx.tokenizer,
            ctx.forget,
            ctx.retain if method.retain_kind is not None else None,
            method=method,
            config=cfg,
            log_file=str(log_file),
            on_step_end=on_step_end,
        )
    finally:
        ctx.hooks.run_finished(base)
    if not clock["final"]:
        raise TrainingError(
            f"run {spec.run_id}: the training function returned without its last step's "
            "evaluation (on_step_end was not called for the last optimizer step)"
        )
    del model


def _record_evaluation(
    ctx: _Context,
    base: Mapping[str, Any],
    model: Any,
    step: int,
    history: Any,
    clock: dict[str, Any],
    meter: Mapping[str, Any] | None = None,
) -> None:
    """Evaluate ``model`` at ``step`` and store the record (losses from ``history``, the
    forgetting meter's fields ``meter``)."""
    res, secs = _evaluate(ctx, model, ctx.reference, ctx.gold)
    extra: Mapping[str, Any] | None = None
    if ctx.on_evaluation is not None:
        with _evaluating(model):
            extra = ctx.on_evaluation(model, step, history)
    final = step == history.total_steps
    kept = bool(meter and meter.get("autostop_eval"))
    t0 = time.perf_counter()
    with _evaluating(model):
        hooked = ctx.hooks.evaluation(base, model, ctx.tokenizer, step, final, kept)
    secs += time.perf_counter() - t0  # e.g. harness tasks: evaluation time, not training
    clock["eval"] += secs
    last = history.steps[-1]
    losses = {
        f"train/{k}": v for k, v in last.items() if k.startswith("loss") or k in ("step", "epoch")
    }
    epoch = float(last["epoch"])
    rec = {
        **base,
        "epoch": int(epoch) if epoch.is_integer() else epoch,
        "step": step,
        "final": final,
        **ctx.benchmark.summarize(res),
        **losses,
        **dict(meter or {}),
        **dict(extra or {}),
        **dict(hooked or {}),
        "train_seconds": round(time.perf_counter() - clock["start"] - clock["eval"], 2),
        "eval_seconds": round(secs, 2),
    }
    stored = ctx.store.append(rec, res, f"evals/{base['run_id']}/step-{step}.json")
    ctx.hooks.recorded(base, stored)
    clock["final"] = clock["final"] or final
    log(ctx.progress, "  " + one_line(stored, ctx.benchmark))


class _RunAutoStop:
    """One run's :class:`~unilogit.autostop.AutoStop` (module docstring): reads the meter
    until the rule stops, then has the kept step evaluated once."""

    def __init__(self, ctx: _Context, model: Any) -> None:
        from unilogit.autostop import AutoStop

        self.ctx = ctx
        self.stop = AutoStop(ctx.meter, every=ctx.meter_every, rule=ctx.stop_rule)
        self.stop.add(model, ctx.target_reading)  # the run starts from the target's weights
        self.done_at: int | None = None  # the step at which the rule's decision became final

    def after_step(
        self, model: Any, step: int, history: Any, steps_per_epoch: int
    ) -> dict[str, Any]:
        """Read the meter if due (and not yet decided); the record fields of this step."""
        total = history.total_steps
        out: dict[str, Any] = {}
        if self.done_at is None and self.stop.due(step, total, steps_per_epoch):
            out.update(self.stop.observe(model, step).log_fields())
            if self.stop.decision.stop or step == total:
                self.done_at = step
        if step == total:
            decision = self.stop.decision
            out.update(
                autostop_step=decision.kept_step,
                autostop_reason=decision.reason,
                autostop_tolerance=decision.tolerance,
            )
        return out

    def kept_needs_evaluation(self, step: int, total: int, steps_per_epoch: int) -> bool:
        """Just decided, and the kept step is neither step 0 (the target's evaluation) nor a
        step of the evaluation schedule (already evaluated)."""
        kept = self.stop.decision.kept_step
        if self.done_at != step or not kept:
            return False
        return not self.ctx.schedule.due(kept, total, steps_per_epoch)

    def evaluate_kept(self, base: Mapping[str, Any], model: Any, history: Any, clock: dict) -> None:
        """Evaluate a copy of ``model`` holding the kept step's weights, stored as that step's
        evaluation of the run."""
        from types import SimpleNamespace

        kept = self.stop.decision.kept_step
        reading = next(r for r in self.stop.readings if r.step == kept)
        copy_ = copy.deepcopy(model)
        self.stop.restore(copy_)
        past = SimpleNamespace(steps=history.steps[:kept], total_steps=history.total_steps)
        meter = {**reading.log_fields(), "autostop_eval": True}
        _record_evaluation(self.ctx, base, copy_, kept, past, clock, meter)
        del copy_
