"""Benchmarks: the contract (:class:`Benchmark`, in :mod:`.base`), TOFU, MUSE-News and the
built-in ``world`` (by name: :func:`unilogit.benchmarks.registry.get_benchmark`).

``world``: a TOFU-like world of fictitious people generated from a seed, with its own tokenizer
and small Llama target / retain models trained here (:func:`build_world` returns the built
:class:`World`; :class:`WorldBenchmark` is the benchmark over one of its forget splits).
``shop``: a synthetic marketplace on a real model (SmolLM2 by default) whose target and gold
models are fine-tuned here (:func:`build_shop`, :class:`ShopBenchmark`; docs/shop.md).
``WorldSplit`` is the old name of :class:`WorldBenchmark` (kept for one release).
"""

from .base import Benchmark, Column, Curve, Reference
from .shop import Shop, build_shop
from .shop_bench import ShopBenchmark
from .shop_data import ShopConfig, generate_shop
from .world import World, build_world, world_root
from .world_data import WorldConfig, generate_world
from .world_split import WorldBenchmark, WorldSplit

__all__ = [
    "Benchmark",
    "Column",
    "Curve",
    "Reference",
    "Shop",
    "ShopBenchmark",
    "ShopConfig",
    "World",
    "WorldBenchmark",
    "WorldConfig",
    "WorldSplit",
    "build_shop",
    "build_world",
    "generate_shop",
    "generate_world",
    "world_root",
]
