"""Sweeps: every method x learning rate x epochs x seed on one benchmark, evaluated after every
epoch, resumable, with a report at the end.

::

    from unilogit.benchmarks import WorldSplit
    from unilogit.sweep import run_sweep

    bench = WorldSplit("forget10", preset="quick")          # builds (or reuses) the world
    result = run_sweep(bench, ["unilogit", "npo"], [1e-3], [3], "runs/sweep")
    result.report["md"]                                      # runs/sweep/report.md

A RUN is one training of the target model with one (method, lr, epochs, seed); it is evaluated
after each of its epochs (the learning-rate schedule is that of the whole run). Before the runs,
the two baselines are evaluated once: the RETAIN model (the gold standard: it never saw the
forget set; its forget-set truth ratios are the Forget Quality reference and its predictions
the KL-to-gold reference) and the TARGET model (epoch 0 of every run).

Output directory::

    sweep.json      the configuration (benchmark, model hashes, training and evaluation
                    settings, method options) and the grid so far
    results.jsonl   one flat record per evaluation (see :func:`summarize`), appended as they
                    come; a run counts as finished once its last epoch's record is there
    evals/          the full evaluation of each record (per-question numbers, generations)
    logs/           the training log (loss terms per step) of each run
    results.csv, report.md, report.html, *.png     (:func:`unilogit.report.write_report`)

Re-running the same sweep skips finished runs (an interrupted run starts again from its
beginning); adding methods, learning rates, epochs or seeds to a finished sweep runs only the new
combinations. A directory written with a DIFFERENT configuration (other models, benchmark,
training or evaluation settings, method options) is refused, so results are never mixed.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, TrainingError

__all__ = [
    "FORMAT_VERSION",
    "Grid",
    "RunSpec",
    "SweepResult",
    "run_sweep",
    "summarize",
]

FORMAT_VERSION = 1
#: Per-split metrics copied from :func:`unilogit.eval.evaluate_qa` into the flat records.
SPLIT_METRICS = ("probability", "rouge_l_recall", "truth_ratio", "kl_to_gold", "fluency")
TOP_METRICS = (
    "forget_quality",
    "forget_quality_log10",
    "forget_quality_ks_statistic",
    "model_utility",
)
#: TrainConfig fields that belong to a run (grid axes) or to bookkeeping, not to the sweep's
#: configuration fingerprint.
_PER_RUN = {
    "lr",
    "epochs",
    "seed",
    "log_file",
    "checkpoint_dir",
    "checkpoint_every",
    "resume",
    "progress",
}


def _log(progress: bool, msg: str) -> None:
    if progress:
        from tqdm.auto import tqdm

        # tqdm.write: a line printed while the trainer's progress bar is open stays readable.
        tqdm.write(f"[unilogit sweep] {msg}", file=sys.stderr)


# ------------------------------------------------------------------------------------ the grid


@dataclass(frozen=True)
class RunSpec:
    """One training run of the grid."""

    method: str
    lr: float
    epochs: int
    seed: int = 0

    @property
    def key(self) -> tuple[str, float, int, int]:
        return (self.method, float(self.lr), int(self.epochs), int(self.seed))

    @property
    def run_id(self) -> str:
        """A file-name-safe identifier, e.g. ``unilogit-lr0.0003-ep5-s0``."""
        return f"{self.method}-lr{self.lr:g}-ep{self.epochs}-s{self.seed}"


def _floats(values: Any, what: str) -> tuple[float, ...]:
    if isinstance(values, (int, float)) and not isinstance(values, bool):
        values = [values]
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise ConfigError(f"{what} must be positive numbers, got {v!r}")
        out.append(float(v))
    if not out:
        raise ConfigError(f"{what}: empty")
    return tuple(dict.fromkeys(out))


def _ints(values: Any, what: str, minimum: int) -> tuple[int, ...]:
    if isinstance(values, int) and not isinstance(values, bool):
        values = [values]
    out = []
    for v in values:
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise ConfigError(f"{what} must be integers >= {minimum}, got {v!r}")
        out.append(v)
    if not out:
        raise ConfigError(f"{what}: empty")
    return tuple(dict.fromkeys(out))


@dataclass(frozen=True)
class Grid:
    """methods x lrs x epochs x seeds. ``lrs`` is one list for every method or a mapping
    method -> list (each method's own learning rates); ``epochs`` are run lengths (each run
    is evaluated after every one of its epochs, so ``(5,)`` already gives epochs 1..5)."""

    methods: tuple[str, ...]
    lrs: Mapping[str, tuple[float, ...]]
    epochs: tuple[int, ...]
    seeds: tuple[int, ...] = (0,)

    @classmethod
    def make(
        cls,
        methods: Sequence[str] | str,
        lrs: Sequence[float] | float | Mapping[str, Sequence[float] | float],
        epochs: Sequence[int] | int,
        seeds: Sequence[int] | int = (0,),
    ) -> Grid:
        from .methods import METHODS

        if isinstance(methods, str):
            methods = [m for m in methods.split(",") if m.strip()]
        methods = tuple(dict.fromkeys(m.strip().lower() for m in methods))
        if not methods:
            raise ConfigError("a sweep needs at least one method")
        unknown = [m for m in methods if m not in METHODS]
        if unknown:
            raise ConfigError(
                f"unknown method(s) {unknown}; valid methods: {', '.join(sorted(METHODS))}"
            )
        if isinstance(lrs, Mapping):
            missing = [m for m in methods if m not in lrs]
            if missing:
                raise ConfigError(f"no learning rates given for {missing}")
            per = {m: _floats(lrs[m], f"learning rates of {m}") for m in methods}
        else:
            shared = _floats(lrs, "learning rates")
            per = {m: shared for m in methods}
        return cls(methods, per, _ints(epochs, "epochs", 1), _ints(seeds, "seeds", 0))

    def runs(self) -> list[RunSpec]:
        return [
            RunSpec(m, lr, e, s)
            for m in self.methods
            for lr in self.lrs[m]
            for e in self.epochs
            for s in self.seeds
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "methods": list(self.methods),
            "lrs": {m: list(v) for m, v in self.lrs.items()},
            "epochs": list(self.epochs),
            "seeds": list(self.seeds),
        }


# ------------------------------------------------------------------------------------ records


def summarize(result: Mapping[str, Any]) -> dict[str, Any]:
    """The flat numbers of an :func:`~unilogit.eval.evaluate_qa` result: ``forget_quality``,
    ``forget_quality_log10``, ``model_utility``, ``"<split>/<metric>"`` for every split and
    metric in :data:`SPLIT_METRICS`, and ``"mia/<attack>"`` AUCs."""
    out: dict[str, Any] = {k: result[k] for k in TOP_METRICS if k in result}
    for split, s in (result.get("splits") or {}).items():
        for m in SPLIT_METRICS:
            if m in s and isinstance(s[m], (int, float)):
                out[f"{split}/{m}"] = s[m]
    for attack, auc in (result.get("mia") or {}).items():
        out[f"mia/{attack}"] = auc
    return out


def _canonical(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    from .report import read_records

    return read_records(path) if path.is_file() else []


def _write_jsonl_atomic(path: Path, records: Sequence[Mapping[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r) + "\n")
    os.replace(tmp, path)


def _write_json_atomic(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=1, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _record_key(r: Mapping[str, Any]) -> tuple[str, float, int, int]:
    return (str(r["method"]), float(r["lr"]), int(r["epochs"]), int(r.get("seed") or 0))


@dataclass
class SweepResult:
    """What :func:`run_sweep` did: every record in the directory, how many runs it trained and
    skipped, and the report's files."""

    records: list[dict[str, Any]]
    output_dir: Path
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    report: dict[str, Path] | None = None


# ------------------------------------------------------------------------------------ models


def _resolve_models(
    benchmark: Any, target: Any, gold: Any, tokenizer: Any, device: Any
) -> tuple[Any, Any, Any]:
    """Target model, gold (retain) model and tokenizer: given objects, paths, or the
    benchmark's own (``load_model("target")`` / ``load_model("retain")``)."""
    from .models import load_model, resolve_device

    dev = resolve_device(device)

    def get(spec: Any, which: str) -> tuple[Any, Any]:
        if spec is None:
            if not hasattr(benchmark, "load_model"):
                raise ConfigError(
                    f"benchmark {getattr(benchmark, 'name', benchmark)!r} has no models of its "
                    f"own: give the {which} model (target= / gold=, or --model / --gold-model)"
                )
            model = benchmark.load_model(which)
            tok = benchmark.load_tokenizer() if hasattr(benchmark, "load_tokenizer") else None
            return model, tok
        if isinstance(spec, (str, os.PathLike)):
            return load_model(spec, device=str(dev))
        return spec, None

    target_model, tok_t = get(target, "target")
    gold_model, _ = get(gold, "retain")
    tok = tokenizer or tok_t
    if tok is None:
        raise ConfigError("no tokenizer: pass tokenizer=... (the target model's)")
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    target_model = target_model.to(dev).eval()
    gold_model = gold_model.to(dev).eval().requires_grad_(False)
    return target_model, gold_model, tok


# ------------------------------------------------------------------------------------ the sweep


def _train_config_fingerprint(train_options: Mapping[str, Any]) -> dict[str, Any]:
    from .trainer import TrainConfig

    options = dict(train_options)
    cfg = TrainConfig.from_options(None, options)
    if options:
        raise ConfigError(f"unknown training option(s): {sorted(options)}")
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _PER_RUN}


def _prepare_dir(out: Path, config: dict[str, Any], grid: Grid, overwrite: bool) -> None:
    """Create ``out`` or check that it holds a sweep of the same configuration."""
    marker = out / "sweep.json"
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output {out} exists and is not a directory")
    if marker.is_file():
        try:
            saved = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"{marker}: unreadable sweep configuration ({e})") from None
        old = {k: v for k, v in saved.items() if k != "grid"}
        if overwrite:
            for name in ("results.jsonl", "evals", "logs"):
                p = out / name
                if p.is_dir():
                    shutil.rmtree(p)
                elif p.exists():
                    p.unlink()
            saved = {"grid": {}}
        elif old != config:
            diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
            details = "; ".join(
                f"{k}: was {json.dumps(old.get(k), sort_keys=True)[:160]}, now "
                f"{json.dumps(config.get(k), sort_keys=True)[:160]}"
                for k in diff
            )
            raise ConfigError(
                f"{out} holds a sweep with a different configuration ({details}); results "
                "would be mixed. Use another output directory, or overwrite=True / --overwrite "
                "to discard the old results"
            )
        grid_seen = saved.get("grid") or {}
    elif out.is_dir() and any(out.iterdir()):
        raise ConfigError(
            f"output directory {out} is not empty and holds no sweep (no sweep.json); choose "
            "a new or empty directory"
        )
    else:
        grid_seen = {}
    merged = _merge_grids(grid_seen, grid.to_dict())
    _write_json_atomic(marker, {**config, "grid": merged})


def _merge_grids(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Union of the grids run in a directory (informational)."""
    out: dict[str, Any] = {}
    for key in ("methods", "epochs", "seeds"):
        out[key] = list(dict.fromkeys([*(old.get(key) or []), *(new.get(key) or [])]))
    lrs: dict[str, list[float]] = {k: list(v) for k, v in (old.get("lrs") or {}).items()}
    for m, values in (new.get("lrs") or {}).items():
        lrs[m] = list(dict.fromkeys([*lrs.get(m, []), *values]))
    out["lrs"] = lrs
    return out


def _last_log_line(path: Path) -> dict[str, Any]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        return json.loads(lines[-1]) if lines else {}
    except (OSError, json.JSONDecodeError):
        return {}


def run_sweep(
    benchmark: Any,
    methods: Sequence[str] | str | Grid,
    lrs: Sequence[float] | float | Mapping[str, Sequence[float]] | None = None,
    epochs: Sequence[int] | int | None = None,
    output_dir: str | os.PathLike = "runs/sweep",
    *,
    seeds: Sequence[int] | int = (0,),
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    train_options: Mapping[str, Any] | None = None,
    eval_options: Mapping[str, Any] | None = None,
    target: Any = None,
    gold: Any = None,
    tokenizer: Any = None,
    device: str | None = None,
    overwrite: bool = False,
    report: bool = True,
    progress: bool = True,
) -> SweepResult:
    """Run every (method, lr, epochs, seed) of the grid on ``benchmark``; evaluate after each
    epoch; append one record per evaluation to ``output_dir/results.jsonl``; write the report.

    Args:
        benchmark: a QA benchmark object: ``forget()``, ``retain()``, ``evaluate(model,
            tokenizer, reference=, gold_model=, ...)``, ``describe()`` (e.g.
            :class:`WorldSplit`, :class:`~unilogit.benchmarks.tofu.TofuBenchmark`). Models come
            from ``load_model("target" | "retain")`` when it has them, else from ``target`` /
            ``gold``.
        methods, lrs, epochs, seeds: the grid (see :class:`Grid`; ``methods`` may be a Grid).
        method_options: method -> its options (``{"npo": {"beta": 0.1}}``; ``retain_loss``,
            ``retain_weight``, ``forget_weight`` too).
        train_options: :class:`~unilogit.trainer.TrainConfig` fields shared by every run
            (``batch_size``, ``max_length``, ...; not ``lr`` / ``epochs`` / ``seed``).
        eval_options: ``benchmark.evaluate`` arguments (``batch_size``, ``max_new_tokens``, ...),
            on top of the benchmark's ``default_eval_options``.
        target, gold, tokenizer: models (objects or paths) when the benchmark has none.
        overwrite: discard the results of a different configuration in ``output_dir``.

    Returns a :class:`SweepResult`. Resumable: see the module docstring.
    """
    from .models import weights_sha256

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError(
            "run_sweep runs in one process (it evaluates between epochs); start "
            "it without `accelerate launch` / torchrun"
        )
    grid = methods if isinstance(methods, Grid) else Grid.make(methods, lrs, epochs, seeds)
    if isinstance(methods, Grid) and (lrs is not None or epochs is not None):
        raise ConfigError("give either a Grid or methods/lrs/epochs, not both")
    method_options = {m: dict(o) for m, o in (method_options or {}).items()}
    train_options = dict(train_options or {})
    train_options.setdefault("progress", progress)
    for k in ("lr", "epochs", "seed"):
        if k in train_options:
            raise ConfigError(f"train_options may not set {k!r}: it is a grid axis")
    train_fp = _train_config_fingerprint(train_options)
    eval_opts = {
        **dict(getattr(benchmark, "default_eval_options", {}) or {}),
        **dict(eval_options or {}),
    }
    # Check every method's options before any training (a typo fails now, not in hour two).
    from .methods import get_method

    for m in grid.methods:
        get_method(m, **method_options.get(m, {}))

    out = Path(output_dir)
    _log(progress, f"preparing the benchmark: {benchmark!r}")
    forget, retain = benchmark.forget(), benchmark.retain()
    target_model, gold_model, tok = _resolve_models(benchmark, target, gold, tokenizer, device)
    config = _canonical(
        {
            "format": FORMAT_VERSION,
            "benchmark": benchmark.describe(),
            "models": {
                "target_sha256": weights_sha256(target_model),
                "retain_sha256": weights_sha256(gold_model),
            },
            "train": train_fp,
            "eval": eval_opts,
            "method_options": {m: method_options.get(m, {}) for m in sorted(method_options)},
        }
    )
    out.mkdir(parents=True, exist_ok=True)
    _prepare_dir(out, config, grid, overwrite)
    results = out / "results.jsonl"

    # Resume: keep baselines and finished runs, drop the evaluations of unfinished runs.
    records = _read_jsonl(results)
    finished = {_record_key(r) for r in records if r.get("kind") == "run" and r.get("final")}
    kept = [r for r in records if r.get("kind") != "run" or _record_key(r) in finished]
    if len(kept) != len(records):
        _log(progress, f"dropping {len(records) - len(kept)} evaluation(s) of unfinished runs")
        _write_jsonl_atomic(results, kept)
    records = kept

    def append(record: dict[str, Any], full: Mapping[str, Any], path: Path) -> None:
        _write_json_atomic(out / path, full)
        record = _canonical({**record, "eval_file": str(path)})
        with open(results, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        records.append(record)

    def evaluate(model: Any, reference: Any, gold: Any) -> tuple[dict[str, Any], float]:
        t0 = time.perf_counter()
        res = benchmark.evaluate(
            model, tok, reference=reference, gold_model=gold, progress=False, **eval_opts
        )
        return res, time.perf_counter() - t0

    # Baselines: the retain model (reference) and the target model (epoch 0).
    retain_file = Path("evals") / "retain.json"
    have = {r.get("method") for r in records if r.get("kind") == "baseline"}
    if "retain" in have and (out / retain_file).is_file():
        retain_eval = json.loads((out / retain_file).read_text(encoding="utf-8"))
    else:
        _log(progress, "evaluating the retain model (gold standard, Forget Quality reference)")
        retain_eval, secs = evaluate(gold_model, None, None)
        ratios = retain_eval["splits"][retain_eval["forget_split"]]["truth_ratios"]
        from .eval.metrics import forget_quality

        ks = forget_quality(ratios, ratios)  # the reference against itself: p = 1
        retain_eval.update(
            forget_quality=ks.p_value,
            forget_quality_log10=ks.log10_p_value,
            forget_quality_ks_statistic=ks.statistic,
        )
        kl_splits = getattr(benchmark, "kl_splits", None)
        for name, split in retain_eval["splits"].items():
            if name != retain_eval.get("holdout_split") and (
                kl_splits is None or name in kl_splits
            ):
                split["kl_to_gold"] = 0.0  # KL of the gold model to itself
        if "retain" not in have:
            rec = {
                "kind": "baseline",
                "method": "retain",
                "epoch": 0,
                "final": True,
                "run_id": "retain",
                **summarize(retain_eval),
                "eval_seconds": round(secs, 2),
            }
            append(rec, retain_eval, retain_file)
        else:
            _write_json_atomic(out / retain_file, retain_eval)
    if "target" not in have:
        _log(progress, "evaluating the target model (before unlearning)")
        target_eval, secs = evaluate(target_model, retain_eval, gold_model)
        rec = {
            "kind": "baseline",
            "method": "target",
            "epoch": 0,
            "final": True,
            "run_id": "target",
            **summarize(target_eval),
            "eval_seconds": round(secs, 2),
        }
        append(rec, target_eval, Path("evals") / "target.json")
        _log(progress, _one_line(rec))

    result = SweepResult(records=records, output_dir=out)
    specs = grid.runs()
    done = {_record_key(r) for r in records if r.get("kind") == "run" and r.get("final")}
    todo = [s for s in specs if s.key not in done]
    result.skipped = [s.run_id for s in specs if s.key in done]
    if result.skipped:
        _log(progress, f"{len(result.skipped)} run(s) already finished in {out}: skipped")
    for n, spec in enumerate(todo, 1):
        _log(
            progress,
            f"run {n}/{len(todo)}: {spec.method} lr={spec.lr:g} "
            f"epochs={spec.epochs} seed={spec.seed}",
        )
        _run_one(
            spec,
            benchmark,
            forget,
            retain,
            target_model,
            gold_model,
            tok,
            retain_eval,
            method_options.get(spec.method, {}),
            train_options,
            evaluate,
            append,
            out,
            progress,
        )
        result.ran.append(spec.run_id)

    result.records = records
    if report:
        from .report import write_report

        result.report = write_report(
            records, out, meta=json.loads((out / "sweep.json").read_text(encoding="utf-8"))
        )
        _log(progress, f"report: {result.report['md']}")
    return result


def _one_line(r: Mapping[str, Any]) -> str:
    def f(key: str, spec: str) -> str:
        v = r.get(key)
        return "–" if not isinstance(v, (int, float)) else format(v, spec)

    who = r["method"] if r.get("kind") == "baseline" else f"{r['method']} epoch {r['epoch']}"
    return (
        f"{who}: FQ {f('forget_quality', '.2g')}, MU {f('model_utility', '.3f')}, "
        f"KL→gold forget {f('forget/kl_to_gold', '.3g')} retain "
        f"{f('retain/kl_to_gold', '.3g')} ({f('eval_seconds', '.0f')} s eval)"
    )


def _unlearn(*args: Any, **kwargs: Any) -> Any:
    """The trainer's :func:`unilogit.trainer.unlearn` (a seam for tests)."""
    from .trainer import unlearn

    return unlearn(*args, **kwargs)


def _run_one(
    spec: RunSpec,
    benchmark: Any,
    forget: list[Any],
    retain: list[Any],
    target_model: Any,
    gold_model: Any,
    tok: Any,
    retain_eval: Mapping[str, Any],
    method_options: Mapping[str, Any],
    train_options: Mapping[str, Any],
    evaluate: Callable[..., tuple[dict[str, Any], float]],
    append: Callable[[dict[str, Any], Mapping[str, Any], Path], None],
    out: Path,
    progress: bool,
) -> None:
    import torch

    from .methods import get_method
    from .trainer import TrainConfig

    method_obj = get_method(spec.method, **method_options)
    log_file = out / "logs" / f"{spec.run_id}.jsonl"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    cfg = TrainConfig.from_options(
        None, {**train_options, "lr": spec.lr, "epochs": spec.epochs, "seed": spec.seed}
    )
    base = {
        "kind": "run",
        "method": spec.method,
        "lr": spec.lr,
        "epochs": spec.epochs,
        "seed": spec.seed,
        "run_id": spec.run_id,
        "options": method_obj.config(),
    }
    clock = {"start": time.perf_counter(), "eval": 0.0}

    def record_epoch(model: Any, epoch: int) -> None:
        was_training = model.training
        model.eval()
        device_type = next(model.parameters()).device.type
        # Evaluate in full precision even if the run trains under autocast.
        with torch.no_grad(), torch.autocast(device_type, enabled=False):
            res, secs = evaluate(model, retain_eval, gold_model)
        model.train(was_training)
        clock["eval"] += secs
        train_secs = time.perf_counter() - clock["start"] - clock["eval"]
        # The trainer's last log line: the step, epoch and loss terms the weights are at.
        losses = {
            f"train/{k}": v
            for k, v in _last_log_line(log_file).items()
            if k.startswith("loss") or k in ("step", "epoch")
        }
        rec = {
            **base,
            "epoch": epoch,
            "final": epoch == spec.epochs,
            **summarize(res),
            **losses,
            "train_seconds": round(train_secs, 2),
            "eval_seconds": round(secs, 2),
        }
        append(rec, res, Path("evals") / spec.run_id / f"epoch-{epoch}.json")
        _log(progress, "  " + _one_line(rec))

    seen: list[int] = []

    def on_epoch_end(model: Any, epoch: int) -> None:
        seen.append(epoch)
        record_epoch(model, epoch)

    model = copy.deepcopy(target_model).train().requires_grad_(True)
    model, _ = _unlearn(
        model,
        tok,
        forget,
        retain if method_obj.retain_kind is not None else None,
        method=method_obj,
        config=cfg,
        log_file=str(log_file),
        on_epoch_end=on_epoch_end,
    )
    if seen != list(range(1, spec.epochs + 1)):
        raise TrainingError(
            f"per-epoch evaluation out of step with the trainer: evaluated after epochs {seen}, "
            f"expected {list(range(1, spec.epochs + 1))}"
        )
    del model
