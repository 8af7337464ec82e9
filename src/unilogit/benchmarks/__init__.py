"""Benchmarks: the contract (:class:`Benchmark`, in :mod:`.base`), TOFU, MUSE-News and the
built-in ``world`` (by name: :func:`unilogit.benchmarks.registry.get_benchmark`).

``world``: a TOFU-like world of fictitious people generated from a seed, with its own tokenizer
and small Llama target / retain models trained here (:func:`build_world` returns the built
:class:`World`; :class:`WorldBenchmark` is the benchmark over one of its forget splits).
``WorldSplit`` is the old name of :class:`WorldBenchmark` (kept for one release).
"""

from .base import Benchmark, Column, Curve, Reference
from .world import World, build_world, world_root
from .world_data import WorldConfig, generate_world
from .world_split import WorldBenchmark, WorldSplit

__all__ = [
    "Benchmark",
    "Column",
    "Curve",
    "Reference",
    "World",
    "WorldBenchmark",
    "WorldConfig",
    "WorldSplit",
    "build_world",
    "generate_world",
    "world_root",
]
