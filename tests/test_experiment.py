"""The experiment pipeline (unilogit.experiment): evaluation schedule, hooks, injectable
training, benchmarks without a gold model, the results store's fingerprint. Tiny in-test
models only."""

from __future__ import annotations

import copy
import json

import pytest

from tiny_bench import TinyBench
from unilogit.benchmarks.base import Benchmark, Column, Curve
from unilogit.errors import ConfigError, TrainingError
from unilogit.eval.suites import evaluate_qa
from unilogit.experiment import EvalSchedule, Grid, run_experiment
from unilogit.experiment.grid import parse_lrs
from unilogit.experiment.runner import default_train_fn
from unilogit.report import read_records

TRAIN = {"batch_size": 2, "mixed_precision": "no", "progress": False, "max_length": 32}


@pytest.fixture(scope="module")
def bench():
    return TinyBench()


class NoGoldBench(Benchmark):
    """A benchmark without a gold model or retain data (like MUSE / facts): its own target,
    scores named like the facts benchmark's."""

    name = "nogold"
    default_eval_options = {"batch_size": 16}
    columns = (
        Column("forget/score", "forget score", False),
        Column("utility/score", "utility score", True),
    )
    curves = (
        Curve("forget/score", "utility/score", "forget vs utility", x_higher_is_better=False),
    )

    def __init__(self, tiny: TinyBench):
        self.tiny = tiny

    def describe(self):
        return {"name": "nogold"}

    def forget(self):
        return self.tiny.forget()

    def target_model(self):
        return copy.deepcopy(self.tiny.target), self.tiny.tok

    def evaluate(self, model, tokenizer, *, reference=None, gold_model=None, progress=True, **kw):
        assert reference is None and gold_model is None  # nothing to compare with
        splits = {"forget": self.tiny.forget(), "retain": self.tiny.retain()}
        res = evaluate_qa(
            model, tokenizer, splits, holdout_split=None, generate=False, progress=progress, **kw
        )
        return {"benchmark": self.describe(), "reference": None, **res}

    def summarize(self, result):
        return {
            "forget/score": result["splits"]["forget"]["probability"],
            "utility/score": result["splits"]["retain"]["probability"],
        }


def test_eval_every_steps_hook_numbers_and_injected_training(bench, tmp_path):
    """Evaluations every 2 optimizer steps within epochs (not only at epoch ends), the hook's
    numbers in each record, the injected training function used, losses from the history."""
    calls, seen = [], []

    def train_fn(*args, **kwargs):
        calls.append(kwargs["method"].name)
        return default_train_fn(*args, **kwargs)

    def on_evaluation(model, step, history):
        assert not model.training  # evaluated in eval mode
        seen.append(step)
        return {"meter/step_seen": step, "meter/last_loss": history.steps[-1]["loss"]}

    out = tmp_path / "steps"
    # 4 forget rows, batch 2: 2 steps per epoch, 3 epochs = 6 steps; eval every 4 steps and at
    # the end (epoch boundaries off) -> steps 4 and 6
    result = run_experiment(
        bench,
        Grid.make(["ga"], [1e-3], [3]),
        out,
        train_options=TRAIN,
        eval_every=4,
        eval_epochs=False,
        progress=False,
        report=False,
        train_fn=train_fn,
        on_evaluation=on_evaluation,
    )
    assert calls == ["ga"] and seen == [4, 6] and result.ran == ["ga-lr0.001-ep3-s0"]
    runs = [r for r in read_records(out / "results.jsonl") if r["kind"] == "run"]
    assert [(r["step"], r["epoch"], r["final"]) for r in runs] == [(4, 2, False), (6, 3, True)]
    for r in runs:
        assert r["meter/step_seen"] == r["step"] == r["train/step"]
        assert r["meter/last_loss"] == pytest.approx(r["train/loss"])
        assert (out / r["eval_file"]).name == f"step-{r['step']}.json"
    # eval every step and at epoch ends: steps 1..6, fractional epochs in between
    out2 = tmp_path / "every"
    run_experiment(
        bench,
        Grid.make(["ga"], [1e-3], [2]),
        out2,
        train_options=TRAIN,
        eval_every=1,
        progress=False,
        report=False,
    )
    runs = [r for r in read_records(out2 / "results.jsonl") if r["kind"] == "run"]
    assert [(r["step"], r["epoch"]) for r in runs] == [(1, 0.5), (2, 1), (3, 1.5), (4, 2)]
    # a different schedule in the same folder would mix results: refused
    with pytest.raises(ConfigError, match="different configuration.*schedule"):
        run_experiment(
            bench, Grid.make(["ga"], [1e-3], [2]), out2, train_options=TRAIN, progress=False
        )


def test_a_training_function_that_skips_the_hook_is_an_error(bench, tmp_path):
    def silent(model, *args, **kwargs):  # trains nothing, never calls on_step_end
        return model, None

    with pytest.raises(TrainingError, match="last step's evaluation"):
        run_experiment(
            bench,
            Grid.make(["ga"], [1e-3], [1]),
            tmp_path / "silent",
            train_options=TRAIN,
            progress=False,
            report=False,
            train_fn=silent,
        )


def test_benchmark_without_gold_model_runs_through_the_same_pipeline(bench, tmp_path):
    nogold = NoGoldBench(bench)
    out = tmp_path / "nogold"
    result = run_experiment(
        nogold, Grid.make(["ga", "npo"], [1e-3], [1]), out, train_options=TRAIN, progress=False
    )
    records = read_records(out / "results.jsonl")
    assert [(r["kind"], r["method"]) for r in records] == [
        ("baseline", "target"),
        ("run", "ga"),
        ("run", "npo"),
    ]
    assert all({"forget/score", "utility/score"} <= set(r) for r in records)
    assert not any("forget_quality" in r or "forget/kl_to_gold" in r for r in records)
    saved = json.loads((out / "sweep.json").read_text())
    assert "retain_sha256" not in saved["models"] and saved["layout"]["has_gold"] is False
    # no retain data: NPO (retain term by default) runs forget-only, and says so
    assert saved["method_options"] == {"npo": {"retain_loss": None}}
    assert records[2]["options"]["retain_loss"] is None and "train/loss_retain" not in records[2]
    md = result.report["md"].read_text(encoding="utf-8")
    assert "forget score ↓" in md and "utility score ↑" in md and "## forget vs utility" in md
    assert "Forget Quality" not in md and "KL" not in md and "kl" not in result.report
    assert result.report["pareto"].read_bytes().startswith(b"\x89PNG")
    with pytest.raises(ConfigError, match="has no retain data"):
        run_experiment(
            nogold,
            Grid.make(["npo"], [1e-3], [1]),
            tmp_path / "r",
            method_options={"npo": {"retain_loss": "nll"}},
            train_options=TRAIN,
            progress=False,
        )
    with pytest.raises(ConfigError, match="no gold model"):
        run_experiment(
            nogold,
            Grid.make(["ga"], [1e-3], [1]),
            tmp_path / "g",
            gold=bench.gold,
            train_options=TRAIN,
            progress=False,
        )


def test_only_benchmarks_and_valid_schedules(bench, tmp_path):
    with pytest.raises(ConfigError, match="not a unilogit.benchmarks.Benchmark"):
        run_experiment(object(), Grid.make(["ga"], [1e-3], [1]), tmp_path / "x", progress=False)
    with pytest.raises(ConfigError, match="eval_every"):
        EvalSchedule(every=-1)
    s = EvalSchedule(every=3, epochs=False)
    assert [st for st in range(1, 11) if s.due(st, 10, 5)] == [3, 6, 9, 10]
    s = EvalSchedule(every=None, epochs=True)
    assert [st for st in range(1, 11) if s.due(st, 10, 4)] == [4, 8, 10]


def test_parse_lrs():
    assert parse_lrs("1e-4,3e-4", ["npo"]) == [1e-4, 3e-4]
    assert parse_lrs("2e-3,npo:1e-3", ["unilogit", "npo"]) == {
        "unilogit": [2e-3],
        "npo": [1e-3],
    }
    with pytest.raises(ConfigError, match="not in the methods"):
        parse_lrs("ga:1e-3", ["npo"])
    with pytest.raises(ConfigError, match="not a number"):
        parse_lrs("fast", ["npo"])
    with pytest.raises(ConfigError, match="none for"):
        parse_lrs("npo:1e-3", ["npo", "ga"])


def test_store_names_what_changed_and_treats_null_as_absent(tmp_path):
    """A refused folder names the nested setting that changed (not a truncated dump); an
    option that is null counts as absent, so a new unset option keeps old results usable."""
    from unilogit.experiment.store import ResultsStore

    grid = Grid.make(["ga"], [1e-3], [1])
    train = {"batch_size": 4, "lora": False, "lora_r": 8, "weight_decay": 0.0}
    ResultsStore(tmp_path / "s", {"train": train}, grid)
    ResultsStore(tmp_path / "s", {"train": {**train, "prompt_format": None}}, grid)  # same
    with pytest.raises(ConfigError) as err:
        ResultsStore(tmp_path / "s", {"train": {**train, "lora_r": 16}}, grid)
    assert "train.lora_r: was 8, now 16" in str(err.value)
    assert "batch_size" not in str(err.value)
    with pytest.raises(ConfigError, match=r"train.prompt_format: was null, now \"chatml\""):
        ResultsStore(tmp_path / "s", {"train": {**train, "prompt_format": "chatml"}}, grid)
