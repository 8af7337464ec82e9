"""benchmarks/speed.py runs: every variant and loss path once on a tiny config, in-process."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "speed.py"


@pytest.fixture(scope="module")
def speed():
    spec = importlib.util.spec_from_file_location("unilogit_speed_benchmark", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_step_table_runs_every_variant(speed, capsys):
    cfg = speed.SpeedConfig(
        vocab=64,
        hidden=32,
        layers=1,
        heads=2,
        seq_len=16,
        batch=2,
        steps=1,
        warmup=0,
        device="cpu",
        isolate=False,
    )
    rows = speed.main(cfg)
    assert [r["variant"] for r in rows] == list(speed.VARIANTS)
    for r in rows:
        assert r["seconds"] > 0 and r["peak_bytes"] >= 0 and "time_ratio" in r
    assert rows[0]["time_ratio"] == 1.0
    out = capsys.readouterr().out
    assert "| unilogit_fused" in out and "× finetune" in out


def test_loss_table_compares_fused_with_naive(speed, capsys):
    cfg = speed.SpeedConfig(
        tokens=24,
        hidden=8,
        vocabs=[50],
        steps=1,
        warmup=0,
        chunk_size=7,
        device="cpu",
        isolate=False,
        loss_only=True,
    )
    rows = speed.main(cfg)
    assert {r["path"] for r in rows} == set(speed.LOSS_PATHS)
    fused = [r for r in rows if r["path"].endswith("_fused")]
    assert fused and all("saved_bytes" in r for r in fused)
    assert "unilogit_fused" in capsys.readouterr().out


def test_parser_round_trips_the_config(speed):
    args = vars(
        speed.make_parser().parse_args(["--vocab", "100", "--no-isolate", "--vocabs", "5", "7"])
    )
    args.pop("worker"), args.pop("json")
    cfg = speed.SpeedConfig(**args)
    assert cfg.vocab == 100 and cfg.isolate is False and cfg.vocabs == [5, 7]
