"""Benchmarks of several unlearning problems (``Benchmark.parts``; facts ``single``): the grid
runs on every part in its own folder and the report averages them."""

from __future__ import annotations

import json

import pytest

from tiny_bench import TinyBench
from unilogit.errors import ConfigError
from unilogit.experiment.parts import average_parts
from unilogit.report import read_records
from unilogit.sweep import run_sweep

TRAIN = {"batch_size": 2, "mixed_precision": "no", "progress": False, "max_length": 32}


class PartBench(TinyBench):
    """TinyBench forgetting rows [lo, hi) of its 24 (a part of :class:`TwoProblems`)."""

    def __init__(self, lo: int, hi: int):
        super().__init__()
        self.lo, self.hi = lo, hi

    def describe(self):
        return {"name": "tiny", "split": f"rows:{self.lo}-{self.hi}"}

    def forget(self):
        return self.rows[self.lo : self.hi]


class TwoProblems(TinyBench):
    def describe(self):
        return {"name": "tiny", "split": "single"}

    def parts(self):
        return [PartBench(20, 24), PartBench(16, 18)]


def test_average_parts_matches_epochs_and_needs_every_part():
    a = [
        {"kind": "baseline", "method": "target", "epoch": 0, "forget/score": 1.0, "step": 0},
        {"kind": "run", "method": "ga", "lr": 1e-3, "epochs": 2, "seed": 0, "run_id": "r",
         "epoch": 1, "step": 3, "final": False, "forget/score": 0.5, "name": "x"},
        {"kind": "run", "method": "ga", "lr": 1e-3, "epochs": 2, "seed": 0, "run_id": "r",
         "epoch": 1.5, "step": 4, "final": False, "forget/score": 0.4},
        {"kind": "run", "method": "ga", "lr": 1e-3, "epochs": 2, "seed": 0, "run_id": "r",
         "epoch": 2, "step": 6, "final": True, "forget/score": 0.2},
    ]  # fmt: skip
    b = [
        {**a[0], "forget/score": 0.5, "forget/adv": 0.0},
        {**a[1], "step": 1, "forget/score": 0.25},
        {**a[3], "epoch": 3, "forget/score": 0.0},  # no epoch 2 in this part
    ]
    out = average_parts({"p1": a, "p2": b})
    assert out == [
        {
            "kind": "baseline",
            "method": "target",
            "epoch": 0,
            "forget/score": 0.75,
            "forget/adv": 0.0,
            "parts/forget/adv": 1,
            "parts": 2,
        },
        {
            "kind": "run",
            "method": "ga",
            "lr": 1e-3,
            "epochs": 2,
            "seed": 0,
            "run_id": "r",
            "epoch": 1,
            "final": False,
            "forget/score": 0.375,
            "parts": 2,
        },
    ]  # fmt: skip  (fractional epochs, points a part lacks, steps and strings: left out)


def test_sweep_over_parts_writes_each_part_and_their_mean(tmp_path):
    out = tmp_path / "single"
    result = run_sweep(TwoProblems(), ["ga"], [1e-3], [2], out, train_options=TRAIN, progress=False)
    assert result.ran == ["rows-20-24/ga-lr0.001-ep2-s0", "rows-16-18/ga-lr0.001-ep2-s0"]
    assert json.loads((out / "parts.json").read_text())["parts"] == ["rows-20-24", "rows-16-18"]
    one = read_records(out / "rows-20-24" / "results.jsonl")
    two = read_records(out / "rows-16-18" / "results.jsonl")
    for epoch in (1, 2):
        mean = next(r for r in result.records if r.get("epoch") == epoch and r["kind"] == "run")
        x = [next(r for r in rs if r["kind"] == "run" and r["epoch"] == epoch) for rs in (one, two)]
        for key in ("forget_quality", "model_utility", "train/loss"):
            assert mean[key] == pytest.approx((x[0][key] + x[1][key]) / 2)
        assert mean["parts"] == 2 and mean["final"] == (epoch == 2)
    report = (out / "report.md").read_text()
    assert "Mean over 2 separate unlearning problems" in report
    assert read_records(out / "results.jsonl") == json.loads(json.dumps(result.records))
    assert (out / "rows-20-24" / "report.md").is_file()
    # resumable: nothing trains again; another setting in the same folder is refused
    again = run_sweep(TwoProblems(), ["ga"], [1e-3], [2], out, train_options=TRAIN, progress=False)
    assert again.ran == [] and len(again.skipped) == 2
    other = TwoProblems()
    other.parts = lambda: [PartBench(20, 24)]
    with pytest.raises(ConfigError, match="different configuration.*parts"):
        run_sweep(other, ["ga"], [1e-3], [2], out, train_options=TRAIN, progress=False)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty and holds no parts.json"):
        run_sweep(TwoProblems(), ["ga"], [1e-3], [1], tmp_path / "busy", progress=False)


def test_hooks_are_given_per_part(tmp_path):
    """Parts share run ids, so run hooks (trackers: one folder per run id) get their own copy
    per part."""
    from unilogit.experiment.hooks import HookList, RunHooks
    from unilogit.trackers import TrackerHooks

    class Spy(RunHooks):
        def __init__(self, part=None, seen=None):
            self.part, self.seen = part, [] if seen is None else seen

        def for_part(self, name):
            return Spy(name, self.seen)

        def run_started(self, run, config):
            self.seen.append((self.part, run["run_id"]))

    spy = Spy()
    run_sweep(
        TwoProblems(), ["ga"], [1e-3], [1], tmp_path / "o", train_options=TRAIN,
        progress=False, report=False, hooks=HookList([spy]),
    )  # fmt: skip
    assert spy.seen == [("rows-20-24", "ga-lr0.001-ep1-s0"), ("rows-16-18", "ga-lr0.001-ep1-s0")]
    own = HookList([TrackerHooks("none", tmp_path / "t")]).for_part("target-x").hooks[0]
    assert own.logging_dir == tmp_path / "t" / "target-x"
