"""The demo behind ``unilogit demo``: its grids (:data:`DEMO_GRIDS`) and :func:`run_demo`.

By default the demo runs the ``facts`` benchmark (:mod:`unilogit.benchmarks.facts`): a real
pretrained instruct model, SmolLM2-135M-Instruct, forgets real-world knowledge it has (RWKU's
design: its own texts about the targets are the forget corpus, no retain data), and every method
is evaluated along its run, so each draws a curve of forget score against neighbour knowledge
and general knowledge. ``benchmark="world"`` runs the built-in world of fictitious people
instead (its own tiny models, a gold retain model, Forget Quality). Every run is reported.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = ["DEMO_GRIDS", "run_demo"]

#: Per demo: the benchmark and its options, methods, each method's learning rates, run length
#: (epochs), evaluation schedule, training settings.
#:
#: ``facts``: the learning rates come from a scan on the same four targets (docs/facts.md):
#: at 2e-5 Unilogit, NPO and GA barely move (80 % of forget probes still answered after 15
#: steps), at 1e-4 most is forgotten; UnDIAL moves slowest and gets a larger one. Evaluations
#: every 2 optimizer steps draw each run's path. The full comparison (every method, 3 learning
#: rates) is the ``bench`` command in the README.
#:
#: ``world``: one rule chose every method's learning rate: the value of {3e-4, 1e-3, 3e-3} with
#: the highest final Forget Quality in a preliminary 3-4 epoch search on the default world
#: (batch 8; retain term and options: each method's defaults), on the format-1 world;
#: ``unilogit-authors`` (the authors' weighting, forget term / V) one factor-3 step above ours.
DEMO_GRIDS: dict[str, dict[str, Any]] = {
    "facts": {
        "benchmark": {"split": "batch:4", "max_utility": 60},
        "methods": ("unilogit", "npo", "undial"),
        "lrs": {"unilogit": (1e-4,), "npo": (1e-4,), "undial": (3e-4,)},
        "epochs": (5,),
        "eval_every": 3,
        "eval": {"fluency_prompts": 4, "fluency_tokens": 32},
        "train": {"batch_size": 4, "max_length": 128, "mixed_precision": "no"},
    },
    "facts-quick": {
        "benchmark": {"split": "batch:2", "max_utility": 12, "max_probes": 6},
        "methods": ("unilogit", "npo"),
        "lrs": {"unilogit": (1e-4,), "npo": (1e-4,)},
        "epochs": (2,),
        "eval_every": None,
        "eval": {"fluency_prompts": 1, "fluency_tokens": 16, "examples": 1},
        "train": {"batch_size": 4, "max_length": 128, "mixed_precision": "no"},
    },
    "world": {
        "methods": ("unilogit", "unilogit-authors", "npo", "simnpo", "undial", "graddiff"),
        "lrs": {
            "unilogit": (1e-3,),
            "unilogit-authors": (3e-3,),  # forget term = ours / V: one factor-3 step up
            "npo": (1e-3,),
            "simnpo": (3e-3,),
            "undial": (1e-3,),
            "graddiff": (1e-3,),
        },
        "epochs": (3,),
        "train": {"batch_size": 8, "mixed_precision": "no"},
    },
    "world-quick": {
        "methods": ("unilogit", "unilogit-authors", "npo", "simnpo", "undial", "graddiff"),
        "lrs": {
            "unilogit": (2e-3,),
            "unilogit-authors": (6e-3,),
            "npo": (2e-3,),
            "simnpo": (2e-3,),
            "undial": (2e-3,),
            "graddiff": (2e-3,),
        },
        "epochs": (2,),
        "train": {"batch_size": 6, "mixed_precision": "no"},
    },
}


def run_demo(
    output_dir: str | Path | None = None,
    benchmark: str = "facts",
    quick: bool = False,
    *,
    preset: str = "default",
    cache_dir: str | Path | None = None,
    world_config: Any = None,
    methods: Sequence[str] | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Any:
    """Run the demo grid of ``benchmark`` (``"facts"`` or ``"world"``), write the report.

    Args:
        output_dir: where results and the report go (default ``runs/demo`` or
            ``runs/demo-world``, with ``-quick`` appended for ``quick``). Re-running skips
            finished runs.
        quick: a smaller grid (and for world the ``quick`` world): a smoke test, not a benchmark.
        preset: the world preset (``"default"``); world only.
        cache_dir: models, corpora and worlds (default ``$UNILOGIT_CACHE`` or
            ``~/.cache/unilogit``).
        world_config: a :class:`~unilogit.benchmarks.WorldConfig` replacing the preset's.
        methods: a subset of the demo's methods.

    Returns the :class:`~unilogit.sweep.SweepResult` (``.report["md"]`` is the report).
    """
    from .sweep import Grid, run_sweep

    if benchmark not in ("facts", "world"):
        raise ConfigError(f"the demo runs 'facts' or 'world', not {benchmark!r}")
    name = benchmark + ("-quick" if quick else "")
    spec = DEMO_GRIDS[name]
    chosen = tuple(methods) if methods else spec["methods"]
    unknown = [m for m in chosen if m not in spec["lrs"]]
    if unknown:
        raise ConfigError(
            f"the demo has no learning rates for {unknown}; its methods are "
            f"{', '.join(spec['methods'])} (use `unilogit bench` for others)"
        )
    grid = Grid.make(chosen, {m: spec["lrs"][m] for m in chosen}, spec["epochs"])
    default_out = "runs/demo" + ("" if benchmark == "facts" else "-world")
    out = Path(output_dir) if output_dir is not None else Path(default_out + "-quick" * quick)
    t0 = time.perf_counter()
    bench = _demo_benchmark(benchmark, spec, quick, preset, cache_dir, world_config, progress)
    _say(progress, f"unilogit demo: {bench!r}; methods {', '.join(chosen)}; results in {out}")
    result = run_sweep(
        bench,
        grid,
        output_dir=out,
        train_options=spec["train"],
        eval_options=spec.get("eval"),
        eval_every=spec.get("eval_every"),
        overwrite=overwrite,
        progress=progress,
    )
    minutes = (time.perf_counter() - t0) / 60
    print(
        f"report: {result.report['md']}"
        + (f" (and {result.report['html']})" if "html" in (result.report or {}) else "")
    )
    _say(
        progress,
        f"done in {minutes:.1f} min ({len(result.ran)} run(s), {len(result.skipped)} reused)",
    )
    return result


def _demo_benchmark(
    benchmark: str,
    spec: dict[str, Any],
    quick: bool,
    preset: str,
    cache_dir: str | Path | None,
    world_config: Any,
    progress: bool,
) -> Any:
    if benchmark == "facts":
        from .benchmarks.facts import FactsBenchmark

        options = dict(spec["benchmark"])
        return FactsBenchmark(
            options.pop("split"), cache_dir=cache_dir, progress=progress, **options
        )
    from .benchmarks import WorldBenchmark

    world_preset = "quick" if quick else preset
    return WorldBenchmark(
        "forget10", preset=world_preset, cache_dir=cache_dir, config=world_config, progress=progress
    )


def _say(progress: bool, msg: str) -> None:
    if progress:
        print(msg, file=sys.stderr, flush=True)
