"""One experiment pipeline: a grid (:mod:`.grid`), a results store (:mod:`.store`) and a run
loop (:mod:`.runner`) with an injectable training function and evaluation hook.

::

    from unilogit.benchmarks import WorldBenchmark
    from unilogit.experiment import Grid, run_experiment

    bench = WorldBenchmark("forget10", preset="quick")
    grid = Grid.make(["unilogit", "npo"], [1e-3], [3])
    result = run_experiment(bench, grid, "runs/exp", eval_every=5)
    result.report["md"]
"""

from .grid import Grid, RunSpec
from .parts import run_parts
from .runner import EvalSchedule, ExperimentResult, run_experiment
from .store import ResultsStore

__all__ = [
    "EvalSchedule",
    "ExperimentResult",
    "Grid",
    "ResultsStore",
    "RunSpec",
    "run_experiment",
    "run_parts",
]
