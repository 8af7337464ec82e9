"""Sweeps (tiny in-test models and QA lists), the demo and the bench/eval commands (quick world).

The tiny benchmark makes the sweep's bookkeeping cheap to test: per-epoch evaluation, resume,
configuration checks. The world tests run the real demo path end to end on a reduced quick world.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch

from tiny_bench import TinyBench
from unilogit.cli import main as cli_main
from unilogit.cli.options import parse_method_options
from unilogit.demo import run_demo
from unilogit.errors import ConfigError
from unilogit.experiment import runner
from unilogit.experiment.grid import parse_lrs
from unilogit.report import read_records
from unilogit.sweep import Grid, RunSpec, run_sweep

TRAIN = {"batch_size": 2, "mixed_precision": "no", "progress": False, "max_length": 32}


@pytest.fixture(scope="module")
def bench():
    return TinyBench()


@pytest.fixture
def count_unlearn(monkeypatch):
    """Count the training runs (and keep the trained models)."""
    calls = []
    real = runner.default_train_fn

    def counted(*args, **kwargs):
        model, history = real(*args, **kwargs)
        calls.append((kwargs["method"].name, kwargs["config"].lr, model, history))
        return model, history

    monkeypatch.setattr(runner, "default_train_fn", counted)
    return calls


def _runs(out):
    return [r for r in read_records(out / "results.jsonl") if r["kind"] == "run"]


# ------------------------------------------------------------------------------ grid


def test_grid_and_cli_parsing():
    g = Grid.make("unilogit, NPO", 1e-3, [2, 2, 3], seeds=[0, 1])
    assert g.methods == ("unilogit", "npo")
    assert len(g.runs()) == 2 * 1 * 2 * 2
    assert RunSpec("npo", 3e-4, 5, 0).run_id == "npo-lr0.0003-ep5-s0"
    g = Grid.make(["unilogit", "npo"], {"unilogit": [1e-3, 2e-3], "npo": 5e-4}, 1)
    assert [(s.method, s.lr) for s in g.runs()] == [
        ("unilogit", 1e-3),
        ("unilogit", 2e-3),
        ("npo", 5e-4),
    ]
    with pytest.raises(ConfigError, match="valid methods"):
        Grid.make(["unilogitt"], [1e-3], [1])
    with pytest.raises(ConfigError, match="no learning rates given for"):
        Grid.make(["unilogit", "npo"], {"unilogit": [1e-3]}, [1])
    with pytest.raises(ConfigError, match="positive"):
        Grid.make(["npo"], [0.0], [1])
    with pytest.raises(ConfigError, match="integers"):
        Grid.make(["npo"], [1e-3], [1.5])

    assert parse_lrs("1e-4,3e-4", ["npo"]) == [1e-4, 3e-4]
    assert parse_lrs("unilogit:1e-3,npo:3e-4,npo:1e-3", ["unilogit", "npo"]) == {
        "unilogit": [1e-3],
        "npo": [3e-4, 1e-3],
    }
    assert parse_lrs("2e-3,npo:1e-3", ["unilogit", "npo"]) == {"unilogit": [2e-3], "npo": [1e-3]}
    with pytest.raises(ConfigError, match="not in the methods"):
        parse_lrs("ga:1e-3", ["npo"])
    with pytest.raises(ConfigError, match="not a number"):
        parse_lrs("fast", ["npo"])
    assert parse_method_options(["npo:beta=0.2", "npo:retain-loss=kl"], ["npo"]) == {
        "npo": {"beta": 0.2, "retain_loss": "kl"}
    }
    # KEY=VALUE: every method of the sweep that has the option; METHOD:KEY=VALUE then wins
    assert parse_method_options(
        ["beta=0.2", "simnpo:beta=3", "retain_weight=2"], ["unilogit", "npo", "simnpo"]
    ) == {
        "npo": {"beta": 0.2, "retain_weight": 2},
        "simnpo": {"beta": 3, "retain_weight": 2},
        "unilogit": {"retain_weight": 2},
    }
    with pytest.raises(ConfigError, match=r"METHOD:\]KEY=VALUE"):
        parse_method_options(["npo:beta"], ["npo"])
    with pytest.raises(ConfigError, match="none of the methods"):
        parse_method_options(["chunk_size=8"], ["npo"])
    with pytest.raises(ConfigError, match="not in --methods"):
        parse_method_options(["ga:retain_weight=1"], ["npo"])
    with pytest.raises(ConfigError, match="option 'beta' of method 'npo' expects a number"):
        parse_method_options(["npo:beta=abc"], ["npo"])


# ------------------------------------------------------------------------------ sweeps


def test_sweep_writes_results_and_resume_skips_finished_runs(bench, tmp_path, count_unlearn):
    out = tmp_path / "sweep"
    result = run_sweep(
        bench,
        ["unilogit", "npo"],
        [1e-3],
        [1],
        out,
        train_options=TRAIN,
        progress=False,
        report=False,
    )
    assert len(count_unlearn) == 2 and result.ran == [
        "unilogit-lr0.001-ep1-s0",
        "npo-lr0.001-ep1-s0",
    ]
    records = read_records(out / "results.jsonl")
    assert [(r["kind"], r["method"]) for r in records] == [
        ("baseline", "retain"),
        ("baseline", "target"),
        ("run", "unilogit"),
        ("run", "npo"),
    ]
    retain, target = records[0], records[1]
    assert retain["forget_quality"] == 1.0 and retain["forget/kl_to_gold"] == 0.0
    assert 0.0 <= target["forget_quality"] <= 1.0 and target["forget/kl_to_gold"] > 0
    for r in records[2:]:
        assert r["final"] and r["epoch"] == r["epochs"] == 1 and r["lr"] == 1e-3
        assert {
            "forget_quality",
            "model_utility",
            "forget/kl_to_gold",
            "retain/kl_to_gold",
            "forget/probability",
            "train/loss_forget",
        } <= set(r)
        assert (out / r["eval_file"]).is_file()
        assert (out / "logs" / f"{r['run_id']}.jsonl").is_file()
    cfg = json.loads((out / "sweep.json").read_text())
    assert cfg["train"]["batch_size"] == 2 and cfg["grid"]["methods"] == ["unilogit", "npo"]

    # the same sweep again: nothing is trained, nothing is added
    again = run_sweep(
        bench,
        ["unilogit", "npo"],
        [1e-3],
        [1],
        out,
        train_options=TRAIN,
        progress=False,
        report=False,
    )
    assert len(count_unlearn) == 2 and again.ran == [] and len(again.skipped) == 2
    assert read_records(out / "results.jsonl") == records

    # a larger grid runs only the new combinations
    more = run_sweep(
        bench,
        ["unilogit", "npo"],
        [1e-3, 2e-3],
        [1],
        out,
        train_options=TRAIN,
        progress=False,
        report=False,
    )
    assert [c[:2] for c in count_unlearn[2:]] == [("unilogit", 2e-3), ("npo", 2e-3)]
    assert len(more.skipped) == 2 and len(_runs(out)) == 4
    assert json.loads((out / "sweep.json").read_text())["grid"]["lrs"]["npo"] == [1e-3, 2e-3]


def test_evaluates_after_every_epoch_without_changing_training(bench, tmp_path, count_unlearn):
    from unilogit.trainer import TrainConfig, unlearn

    out = tmp_path / "epochs"
    run_sweep(
        bench, ["graddiff"], [3e-3], [3], out, train_options=TRAIN, progress=False, report=False
    )
    runs = _runs(out)
    assert [(r["epoch"], r["final"]) for r in runs] == [(1, False), (2, False), (3, True)]
    # each evaluation saw the weights at the end of its epoch (the trainer's own log says so)
    assert [r["train/epoch"] for r in runs] == [1.0, 2.0, 3.0]
    assert len({r["forget/probability"] for r in runs}) == 3
    # evaluating inside the loop does not change the training: same weights as a plain run
    ((_, _, swept, _),) = count_unlearn
    plain, _ = unlearn(
        bench.load_model("target").train(),
        bench.tok,
        bench.forget(),
        bench.retain(),
        method="graddiff",
        config=TrainConfig(**TRAIN, lr=3e-3, epochs=3),
    )
    for (name, a), (_, b) in zip(
        swept.state_dict().items(), plain.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


def test_interrupted_run_is_run_again(bench, tmp_path, monkeypatch):
    out = tmp_path / "interrupted"
    real = runner.default_train_fn

    def crash(*args, **kwargs):
        record = kwargs["on_step_end"]

        def crash_at_epoch_2(model, step, history):
            if step == history.total_steps:  # epoch 1 was evaluated and recorded, then we "crash"
                raise KeyboardInterrupt
            record(model, step, history)

        return real(*args, **{**kwargs, "on_step_end": crash_at_epoch_2})

    monkeypatch.setattr(runner, "default_train_fn", crash)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(
            bench, ["simnpo"], [1e-3], [2], out, train_options=TRAIN, progress=False, report=False
        )
    assert [(r["epoch"], r["final"]) for r in _runs(out)] == [(1, False)]
    monkeypatch.setattr(runner, "default_train_fn", real)
    result = run_sweep(
        bench, ["simnpo"], [1e-3], [2], out, train_options=TRAIN, progress=False, report=False
    )
    assert result.ran == ["simnpo-lr0.001-ep2-s0"]
    assert [(r["epoch"], r["final"]) for r in _runs(out)] == [(1, False), (2, True)]


def test_refuses_a_different_configuration(bench, tmp_path, count_unlearn):
    out = tmp_path / "cfg"
    run_sweep(bench, ["ga"], [1e-3], [1], out, train_options=TRAIN, progress=False, report=False)
    with pytest.raises(ConfigError, match="different configuration.*train"):
        run_sweep(
            bench,
            ["ga"],
            [1e-3],
            [1],
            out,
            train_options={**TRAIN, "batch_size": 4},
            progress=False,
            report=False,
        )
    with pytest.raises(ConfigError, match="different configuration.*method_options"):
        run_sweep(
            bench,
            ["ga"],
            [1e-3],
            [1],
            out,
            train_options=TRAIN,
            method_options={"ga": {"retain_loss": "nll"}},
            progress=False,
            report=False,
        )
    other = copy.deepcopy(bench)
    with torch.no_grad():
        next(other.target.parameters()).add_(1.0)
    with pytest.raises(ConfigError, match="different configuration.*models"):
        run_sweep(
            other, ["ga"], [1e-3], [1], out, train_options=TRAIN, progress=False, report=False
        )
    assert len(count_unlearn) == 1
    # overwrite discards the old results (tracker files too) and starts again
    (out / "trackers" / "ga-lr0.001-ep1-s0").mkdir(parents=True)
    result = run_sweep(
        bench,
        ["ga"],
        [1e-3],
        [1],
        out,
        train_options={**TRAIN, "batch_size": 4},
        overwrite=True,
        progress=False,
        report=False,
    )
    assert result.ran == ["ga-lr0.001-ep1-s0"] and len(_runs(out)) == 1
    assert not (out / "trackers").exists()
    # a directory that is not a sweep is never written into
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not empty"):
        run_sweep(
            bench,
            ["ga"],
            [1e-3],
            [1],
            tmp_path / "mine",
            train_options=TRAIN,
            progress=False,
            report=False,
        )
    with pytest.raises(ConfigError, match="grid axis"):
        run_sweep(bench, ["ga"], [1e-3], [1], out, train_options={"lr": 1.0}, progress=False)
    with pytest.raises(ConfigError, match="unknown option"):
        run_sweep(
            bench, ["npo"], [1e-3], [1], out, method_options={"npo": {"betta": 1}}, progress=False
        )


def test_a_new_method_joins_a_folder_with_its_own_options(bench, tmp_path, count_unlearn):
    """Adding a method to a comparison reuses the finished runs; a method that already has
    runs there must keep its options."""
    out = tmp_path / "grow"

    def sweep(methods, method_options=None):
        return run_sweep(
            bench,
            methods,
            [1e-3],
            [1],
            out,
            train_options=TRAIN,
            method_options=method_options,
            progress=False,
            report=False,
        )

    sweep(["ga"])
    result = sweep(["ga", "npo"], {"npo": {"beta": 0.2}})
    assert result.ran == ["npo-lr0.001-ep1-s0"] and result.skipped == ["ga-lr0.001-ep1-s0"]
    saved = json.loads((out / "sweep.json").read_text())
    assert saved["method_options"]["npo"]["beta"] == 0.2
    assert saved["grid"]["methods"] == ["ga", "npo"]
    with pytest.raises(ConfigError, match="different configuration.*method_options.*npo"):
        sweep(["npo"], {"npo": {"beta": 0.3}})
    assert len(count_unlearn) == 2


# ------------------------------------------------------------------------------ world


@pytest.fixture(scope="module")
def small_world(tmp_path_factory):
    """The quick world preset, trained for fewer epochs (the test checks the plumbing, not the
    numbers), built once for this module."""
    from unilogit.benchmarks import WorldConfig, build_world

    cache = tmp_path_factory.mktemp("world-cache")
    config = WorldConfig.preset("quick", epochs=6)
    world = build_world(config, cache, splits=("forget10",), progress=False)
    return config, cache, world


def test_demo_quick_end_to_end(small_world, tmp_path, capsys):
    config, cache, _ = small_world
    out = tmp_path / "demo"
    result = run_demo(
        out, "world", quick=True, cache_dir=cache, world_config=config, progress=False
    )
    assert f"report: {out / 'report.md'}" in capsys.readouterr().out
    methods = {r["method"] for r in result.records if r["kind"] == "run"}
    assert {"unilogit", "npo", "undial", "graddiff", "simnpo"} <= methods
    md = (out / "report.md").read_text(encoding="utf-8")
    for m in methods:
        assert f"| {m} lr=" in md
    for png in ("pareto.png", "forget_quality_epochs.png", "kl_to_gold.png"):
        assert (out / png).stat().st_size > 5000
    assert (out / "report.html").is_file()
    # a second demo reuses everything
    again = run_demo(out, "world", quick=True, cache_dir=cache, world_config=config, progress=False)
    assert again.ran == [] and len(again.skipped) == len(result.ran)


def test_eval_and_bench_commands_on_the_world(small_world, tmp_path, monkeypatch):
    config, cache, world = small_world
    # the CLI builds the world from its preset name: point the quick preset at this build
    from unilogit.benchmarks import world_data

    quick = world_data._PRESETS["quick"]
    monkeypatch.setitem(world_data._PRESETS, "quick", {**quick, "epochs": config.epochs})
    out = tmp_path / "eval.json"
    world_args = ["--benchmark", "world", "--preset", "quick", "--cache-dir", str(cache)]
    eval_args = ["eval", *world_args, "--model", str(world.target_dir), "--output", str(out)]
    code = cli_main([*eval_args, "--max-rows", "6", "--no-progress"])
    assert code == 0
    res = json.loads(out.read_text())
    assert res["benchmark"]["name"] == "world" and 0 <= res["forget_quality"] <= 1
    assert res["splits"]["forget"]["kl_to_gold"] > 0 and "model_utility" in res
    assert cli_main([*eval_args, "--no-progress"]) == 2  # exists: refused
    bench_out = tmp_path / "bench"
    code = cli_main(
        ["bench", *world_args, "--methods", "unilogit", "--lrs", "1e-3", "--epochs", "1"]
        + ["--batch-size", "6", "--output", str(bench_out), "--max-rows", "6", "--no-progress"]
    )
    assert code == 0
    assert [r["method"] for r in _runs(bench_out)] == ["unilogit"]
    assert (bench_out / "report.md").is_file()
