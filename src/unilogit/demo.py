"""The demo behind ``unilogit demo``: its grid (:data:`DEMO_GRIDS`) and :func:`run_demo`.

The demo builds (or reuses, from the cache) the built-in ``world`` benchmark, evaluates its
target model and its retain model (the gold standard, and the Forget Quality reference), runs
Unilogit and the main baselines over a small per-method grid with an evaluation after every
epoch, and writes ``report.md`` / ``report.html`` (:mod:`unilogit.report`). The grid is the same
for every method in size (learning rates x epochs), and every run is reported.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = ["DEMO_GRIDS", "run_demo"]

#: Per preset: methods, each method's learning rate, run length (epochs; every epoch is
#: evaluated), training settings. One rule chose every method's learning rate: the value of
#: {3e-4, 1e-3, 3e-3} with the highest final Forget Quality in a preliminary 3-4 epoch search on
#: the default world (batch 8; retain term and options: each method's defaults). Three epochs
#: keep the demo within about ten minutes on two CPU cores; every run is reported.
DEMO_GRIDS: dict[str, dict[str, Any]] = {
    "default": {
        "methods": ("unilogit", "npo", "simnpo", "undial", "graddiff"),
        "lrs": {
            "unilogit": (1e-3,),
            "npo": (1e-3,),
            "simnpo": (3e-3,),
            "undial": (1e-3,),
            "graddiff": (1e-3,),
        },
        "epochs": (3,),
        "train": {"batch_size": 8, "mixed_precision": "no"},
    },
    "quick": {
        "methods": ("unilogit", "npo", "simnpo", "undial", "graddiff"),
        "lrs": {
            "unilogit": (2e-3,),
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
    preset: str = "default",
    quick: bool = False,
    *,
    cache_dir: str | Path | None = None,
    world_config: Any = None,
    methods: Sequence[str] | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Any:
    """Build (or reuse) the ``world`` benchmark, run the demo grid, write the report.

    Args:
        output_dir: where results and the report go (default ``runs/demo`` or, with
            ``quick``, ``runs/demo-quick``). Re-running skips finished runs.
        preset: the world preset (``"default"``); ``quick=True`` uses the ``quick`` world and
            grid (a minute on a laptop CPU: a smoke test, not a benchmark).
        cache_dir: the world cache (default ``$UNILOGIT_CACHE`` or ``~/.cache/unilogit``).
        world_config: a :class:`~unilogit.benchmarks.WorldConfig` replacing the preset's.
        methods: a subset of the demo's methods.

    Returns the :class:`~unilogit.sweep.SweepResult` (``.report["md"]`` is the report).
    """
    from .benchmarks import WorldSplit
    from .sweep import Grid, run_sweep

    name = "quick" if quick else preset
    grid_spec = DEMO_GRIDS.get(name, DEMO_GRIDS["default"])
    chosen = tuple(methods) if methods else grid_spec["methods"]
    unknown = [m for m in chosen if m not in grid_spec["lrs"]]
    if unknown:
        raise ConfigError(
            f"the demo has no learning rates for {unknown}; its methods are "
            f"{', '.join(grid_spec['methods'])} (use `unilogit bench` for others)"
        )
    grid = Grid.make(chosen, {m: grid_spec["lrs"][m] for m in chosen}, grid_spec["epochs"])
    out = (
        Path(output_dir)
        if output_dir is not None
        else Path("runs/demo-quick" if quick else "runs/demo")
    )
    t0 = time.perf_counter()
    bench = WorldSplit(
        "forget10", preset=name, cache_dir=cache_dir, config=world_config, progress=progress
    )
    _say(
        progress,
        f"unilogit demo: world benchmark ({name} preset), forget10; methods "
        f"{', '.join(chosen)}; results in {out}",
    )
    result = run_sweep(
        bench,
        grid,
        output_dir=out,
        train_options=grid_spec["train"],
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


def _say(progress: bool, msg: str) -> None:
    if progress:
        print(msg, file=sys.stderr, flush=True)
