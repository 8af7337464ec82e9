"""unilogit.experiment.hooks: the run loop calls a RunHooks object at its fixed points (the
wiring ``bench --lm-eval-tasks`` and ``bench --report-to`` rely on), on the holdout benchmark
of test_stopping.py so that the auto-stop point is evaluated too."""

from __future__ import annotations

import json

import pytest

from test_stopping import BENCH_TRAIN, holdout_bench  # noqa: F401  (a fixture)
from unilogit.errors import ConfigError
from unilogit.experiment import Grid, run_experiment
from unilogit.experiment.hooks import HookList, RunHooks
from unilogit.report import read_records


class Spy(RunHooks):
    """Records every call; adds ``spy/step`` to the final and kept evaluations."""

    def __init__(self):
        self.calls = []

    def fingerprint(self):
        return {"spy": {"version": 1}}

    def baseline(self, model, tokenizer):
        self.calls.append(("baseline",))
        return {"spy/baseline": 1.0}

    def evaluation(self, run, model, tokenizer, step, final, kept):
        self.calls.append(("evaluation", run["run_id"], step, final, kept))
        return {"spy/step": float(step)} if final or kept else None

    def run_started(self, run, config):
        self.calls.append(("started", run["run_id"], config.lr))

    def step(self, run, step, history):
        assert history.steps[-1]["step"] == step
        self.calls.append(("step", run["run_id"], step))

    def recorded(self, run, record):
        self.calls.append(("recorded", run["run_id"], record["step"]))

    def run_finished(self, run):
        self.calls.append(("finished", run["run_id"]))


def test_the_run_loop_calls_every_hook_and_stores_their_fields(holdout_bench, tmp_path):  # noqa: F811
    spy = Spy()
    out = tmp_path / "sweep"
    kwargs = {"train_options": BENCH_TRAIN, "eval_every": 4, "eval_epochs": False}
    kwargs |= {"autostop": {"every": 1}, "progress": False, "report": False}
    run_experiment(holdout_bench, Grid.make(["npo"], [2e-2], [4]), out, hooks=spy, **kwargs)
    records = read_records(out / "results.jsonl")
    run_id = "npo-lr0.02-ep4-s0"
    runs = [r for r in records if r["kind"] == "run"]
    target = next(r for r in records if r["method"] == "target")
    assert target["spy/baseline"] == 1.0 and [c for c in spy.calls if c[0] == "baseline"]
    assert json.loads((out / "sweep.json").read_text())["hooks"] == {"spy": {"version": 1}}
    # one run: started, 8 steps, finished; every stored record reported, baselines first
    assert spy.calls.count(("started", run_id, 2e-2)) == 1 and spy.calls[-1] == ("finished", run_id)
    assert [c[2] for c in spy.calls if c[0] == "step"] == list(range(1, 9))
    stored = [(r["run_id"], r["step"]) for r in records]
    assert [c[1:] for c in spy.calls if c[0] == "recorded"] == stored
    # every evaluation asked once, with the right flags; the fields are in the records
    evaluations = [c for c in spy.calls if c[0] == "evaluation"]
    assert len(evaluations) == len(runs)
    for r in runs:
        kept = bool(r.get("autostop_eval"))
        assert ("evaluation", run_id, r["step"], r["final"], kept) in evaluations
        assert r.get("spy/step") == (float(r["step"]) if r["final"] or kept else None)
    assert runs[-1]["final"] and runs[-1]["spy/step"] == 8.0

    # reused: no hook sees the finished run; another fingerprint is refused
    again = Spy()
    run_experiment(holdout_bench, Grid.make(["npo"], [2e-2], [4]), out, hooks=again, **kwargs)
    assert again.calls == []
    other = Spy()
    other.fingerprint = lambda: {"spy": {"version": 2}}
    with pytest.raises(ConfigError):
        run_experiment(holdout_bench, Grid.make(["npo"], [2e-2], [4]), out, hooks=other, **kwargs)
    assert other.calls == []


def test_hook_list_merges_fields_and_fingerprints():
    class A(RunHooks):
        def fingerprint(self):
            return {"a": 1}

        def evaluation(self, run, model, tokenizer, step, final, kept):
            return {"x": 1.0, "y": 1.0}

    class B(RunHooks):
        def evaluation(self, run, model, tokenizer, step, final, kept):
            return {"y": 2.0}

    both = HookList([A(), B()])
    assert both.fingerprint() == {"a": 1}
    assert both.evaluation({}, None, None, 1, True, False) == {"x": 1.0, "y": 2.0}
    assert HookList([B()]).fingerprint() is None and RunHooks().fingerprint() is None
