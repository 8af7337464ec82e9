"""Benchmarks by name: ``get_benchmark("tofu", split="forget05")``, ``get_benchmark("muse-news")``,
``get_benchmark("world:forget10", preset="quick")`` (the built-in world). Every benchmark is a
:class:`unilogit.benchmarks.base.Benchmark`.

A name may carry the TOFU split after a colon: ``get_benchmark("tofu:forget01", data_dir=...)``.
Aliases: ``muse`` / ``muse_news`` -> ``muse-news``. New benchmarks are added with
:func:`register_benchmark` (a factory called as ``factory(data_dir=..., **kw)``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from unilogit.errors import ConfigError

from .base import Benchmark

__all__ = ["available_benchmarks", "get_benchmark", "register_benchmark"]

BenchmarkFactory = Callable[..., Benchmark]


def _tofu(data_dir: str | os.PathLike | None = None, **kw: Any) -> Benchmark:
    from .tofu import TofuBenchmark

    return TofuBenchmark(data_dir=data_dir, **kw)


def _muse_news(data_dir: str | os.PathLike | None = None, **kw: Any) -> Benchmark:
    from .muse import MuseBenchmark

    return MuseBenchmark(data_dir=data_dir, **kw)


def _world(data_dir: str | os.PathLike | None = None, **kw: Any) -> Benchmark:
    """The built-in world benchmark (built or reused from the cache on first use); a
    ``data_dir`` is the cache base (``cache_dir``), kw: ``split``, ``preset``, ``max_rows``."""
    from .world_split import WorldBenchmark

    cache_dir = kw.pop("cache_dir", None) or data_dir
    return WorldBenchmark(cache_dir=cache_dir, **kw)


def _facts(data_dir: str | os.PathLike | None = None, **kw: Any) -> Any:
    from .facts import FactsBenchmark

    return FactsBenchmark(data_dir=data_dir, **kw)


def _shop(data_dir: str | os.PathLike | None = None, **kw: Any) -> Benchmark:
    """The ``shop`` benchmark (built or reused from the cache on first use); a ``data_dir``
    is the cache base (``cache_dir``), kw: ``preset``, ``max_rows``, ``progress``."""
    from .shop_bench import ShopBenchmark

    cache_dir = kw.pop("cache_dir", None) or data_dir
    return ShopBenchmark(cache_dir=cache_dir, **kw)


_REGISTRY: dict[str, BenchmarkFactory] = {
    "tofu": _tofu,
    "muse-news": _muse_news,
    "world": _world,
    "facts": _facts,
    "shop": _shop,
}
_ALIASES = {"muse": "muse-news", "muse_news": "muse-news", "musenews": "muse-news"}
# benchmarks whose constructor takes a ``split`` (so "name:split" is accepted)
_SPLIT_BENCHMARKS = {"tofu", "world", "facts"}


def register_benchmark(
    name: str, factory: BenchmarkFactory, *, takes_split: bool = False, overwrite: bool = False
) -> None:
    """Make ``get_benchmark(name, data_dir, **kw)`` call ``factory(data_dir=data_dir, **kw)``.

    ``takes_split``: the factory accepts ``split=`` (enables ``"name:split"``).
    """
    key = name.strip().lower()
    if not key or ":" in key:
        raise ConfigError(f"invalid benchmark name {name!r}")
    if key in _REGISTRY and not overwrite:
        raise ConfigError(f"benchmark {key!r} is already registered (pass overwrite=True)")
    _REGISTRY[key] = factory
    if takes_split:
        _SPLIT_BENCHMARKS.add(key)
    else:
        _SPLIT_BENCHMARKS.discard(key)


def available_benchmarks() -> list[str]:
    """The registered benchmark names (aliases not included)."""
    return sorted(_REGISTRY)


def get_benchmark(name: str, data_dir: str | os.PathLike | None = None, **kw: Any) -> Benchmark:
    """The benchmark object ``name`` (``"tofu"``, ``"tofu:forget05"``, ``"muse-news"``, ...).

    ``data_dir``: a local copy of the data (``None`` = the Hugging Face Hub); ``kw`` goes to the
    benchmark's constructor (``split``, ``max_rows``, ...). Unknown names raise
    :class:`ConfigError` listing the valid ones.
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"benchmark name must be a non-empty string, got {name!r}")
    base, _, split = name.strip().partition(":")
    key = base.lower()
    key = _ALIASES.get(key, key)
    if key not in _REGISTRY:
        raise ConfigError(
            f"unknown benchmark {base!r}; available: {', '.join(available_benchmarks())}"
        )
    if split:
        if key not in _SPLIT_BENCHMARKS:
            raise ConfigError(f"benchmark {key!r} has no splits; use {key!r} without ':{split}'")
        if "split" in kw and kw["split"] != split:
            raise ConfigError(f"split given twice: {name!r} and split={kw['split']!r}")
        kw["split"] = split
    bench = _REGISTRY[key](data_dir=data_dir, **kw)
    if not isinstance(bench, Benchmark):
        raise ConfigError(
            f"benchmark {key!r}: its factory returned a {type(bench).__name__}, not a "
            "unilogit.benchmarks.Benchmark (the benchmark contract)"
        )
    return bench
