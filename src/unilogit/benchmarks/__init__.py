"""Benchmarks shipped with unilogit.

``world``: a TOFU-like world of fictitious people generated from a seed, with its own tokenizer
and small Llama target / retain models trained here (:func:`build_world`).
"""

from .world import WorldBenchmark, build_world, world_root
from .world_data import WorldConfig, generate_world
from .world_split import WorldSplit

__all__ = [
    "WorldBenchmark",
    "WorldConfig",
    "WorldSplit",
    "build_world",
    "generate_world",
    "world_root",
]
