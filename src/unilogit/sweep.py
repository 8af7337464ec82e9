"""Sweeps: every method x learning rate x epochs x seed on one benchmark, evaluated along the
runs, resumable, with a report at the end. A thin front of :mod:`unilogit.experiment` (the one
experiment pipeline), kept for its call signature::

    from unilogit.benchmarks import WorldBenchmark
    from unilogit.sweep import run_sweep

    bench = WorldBenchmark("forget10", preset="quick")      # builds (or reuses) the world
    result = run_sweep(bench, ["unilogit", "npo"], [1e-3], [3], "runs/sweep", eval_every=5)
    result.report["md"]                                      # runs/sweep/report.md

Output directory::

    sweep.json      the configuration (benchmark, model hashes, training and evaluation
                    settings, evaluation schedule, method options), the grid so far, the
                    report's layout
    results.jsonl   one flat record per evaluation (the benchmark's ``summarize`` + identity:
                    kind, method, lr, epochs, seed, epoch, step, final, run_id, train losses)
    evals/          the full evaluation of each record (``evals/<run_id>/step-<N>.json``)
    logs/           the training log (loss terms per step) of each run
    results.csv, report.md, report.html, *.png     (:func:`unilogit.report.write_report`; with
                    several seeds also the median and min-max spread over seeds, the fronts of
                    the medians and a hypervolume per method: docs/bench.md)

Re-running the same sweep skips finished runs (an interrupted run starts again from its
beginning); adding methods, learning rates, epochs or seeds runs only the new combinations. A
directory written with a DIFFERENT configuration is refused, so results are never mixed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from .benchmarks.base import Benchmark
from .benchmarks.qa import summarize_qa as summarize
from .errors import ConfigError
from .experiment import ExperimentResult, Grid, RunSpec, run_experiment, run_parts
from .experiment.hooks import RunHooks
from .experiment.runner import FORMAT_VERSION, EvaluationHook, TrainFn

__all__ = ["FORMAT_VERSION", "Grid", "RunSpec", "SweepResult", "run_sweep", "summarize"]

#: The result of :func:`run_sweep` (the pipeline's :class:`ExperimentResult`).
SweepResult = ExperimentResult


def run_sweep(
    benchmark: Benchmark,
    methods: Sequence[str] | str | Grid,
    lrs: Sequence[float] | float | Mapping[str, Sequence[float]] | None = None,
    epochs: Sequence[int] | int | None = None,
    output_dir: str | os.PathLike = "runs/sweep",
    *,
    seeds: Sequence[int] | int = (0,),
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
) -> SweepResult:
    """Run every (method, lr, epochs, seed) of the grid on ``benchmark``
    (:func:`unilogit.experiment.run_experiment`; ``methods`` may be a :class:`Grid`, then
    without ``lrs`` / ``epochs``). Evaluations every ``eval_every`` optimizer steps (None: not
    by steps), after every epoch (``eval_epochs``) and after the last step. ``hooks``:
    :class:`~unilogit.experiment.hooks.RunHooks` (harness scores, trackers). A benchmark with
    :meth:`~unilogit.benchmarks.base.Benchmark.parts` (facts ``single``) runs the grid on every
    part and reports their mean (:mod:`unilogit.experiment.parts`)."""
    if isinstance(methods, Grid):
        if lrs is not None or epochs is not None:
            raise ConfigError("give either a Grid or methods/lrs/epochs, not both")
        grid = methods
    else:
        if lrs is None or epochs is None:
            raise ConfigError("a sweep needs learning rates and epochs (or a Grid)")
        grid = Grid.make(methods, lrs, epochs, seeds)
    options = dict(
        method_options=method_options,
        train_options=train_options,
        eval_options=eval_options,
        eval_every=eval_every,
        eval_epochs=eval_epochs,
        target=target,
        gold=gold,
        tokenizer=tokenizer,
        device=device,
        overwrite=overwrite,
        report=report,
        progress=progress,
        train_fn=train_fn,
        on_evaluation=on_evaluation,
        autostop=autostop,
        hooks=hooks,
    )
    parts = benchmark.parts()
    if parts:
        return run_parts(benchmark, parts, grid, output_dir, **options)
    return run_experiment(benchmark, grid, output_dir, **options)
