"""The benchmark contract (unilogit.benchmarks.base): abstract methods, the registry's check,
the shared QA gold baseline and summary, report columns."""

from __future__ import annotations

import math

import pytest

from unilogit.benchmarks import Benchmark, Column, WorldBenchmark, WorldSplit, registry
from unilogit.benchmarks.muse import MuseBenchmark
from unilogit.benchmarks.registry import get_benchmark, register_benchmark
from unilogit.benchmarks.tofu import TofuBenchmark
from unilogit.errors import ConfigError


def test_contract_is_abstract_and_every_benchmark_implements_it():
    with pytest.raises(TypeError, match="abstract"):
        Benchmark()
    for cls in (TofuBenchmark, MuseBenchmark, WorldBenchmark):
        assert issubclass(cls, Benchmark) and cls.columns and cls.curves
        assert {c.x_key for c in cls.curves} | {c.y_key for c in cls.curves}
    assert TofuBenchmark.has_gold and WorldBenchmark.has_gold and not MuseBenchmark.has_gold
    assert WorldSplit is WorldBenchmark  # the old name, kept for one release


def test_registry_refuses_factories_that_break_the_contract(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # restored afterwards
    register_benchmark("duck", lambda data_dir=None, **kw: object())
    with pytest.raises(ConfigError, match="not a unilogit.benchmarks.Benchmark"):
        get_benchmark("duck")


def test_column_headers_show_the_better_direction():
    assert Column("a", "A", True).header == "A ↑"
    assert Column("a", "A", False).header == "A ↓"
    assert Column("a", "A").header == "A"


def test_qa_gold_baseline_is_computed_not_faked():
    """The gold row's Forget Quality is the KS test of its own truth ratios (p = 1); its KL to
    itself is 0 on the KL splits only; the input evaluation is not modified."""
    bench = TofuBenchmark("forget01", loader=lambda config: [])
    result = {
        "benchmark": bench.describe(),
        "forget_split": "forget",
        "splits": {
            "forget": {"truth_ratios": [0.2, 0.9, 1.4], "probability": 0.3},
            "retain": {"truth_ratios": [0.5, 0.7], "probability": 0.6},
            "holdout": {"probability": 0.1},
        },
    }
    gold = bench.gold_baseline(result)
    assert gold["forget_quality"] == pytest.approx(1.0)
    assert gold["forget_quality_log10"] == pytest.approx(0.0)
    assert gold["splits"]["forget"]["kl_to_gold"] == 0.0
    assert gold["splits"]["retain"]["kl_to_gold"] == 0.0
    assert "kl_to_gold" not in gold["splits"]["holdout"]  # not a KL split
    assert "kl_to_gold" not in result["splits"]["forget"] and "forget_quality" not in result
    summary = bench.summarize(gold)
    assert summary["forget/kl_to_gold"] == 0.0 and summary["forget/probability"] == 0.3
    assert math.isclose(summary["forget_quality"], 1.0)
