"""``--report-to`` on ``bench`` and ``eval`` (issue 16): TensorBoard event files read back and
compared with what the command recorded (``results.jsonl``, the runs' train logs, the
evaluation JSON). ``unlearn``'s tracking is tested in test_hf_outputs.py."""

from __future__ import annotations

import json

import pytest

from test_hf_outputs import read_scalars
from tiny_bench import TinyBench
from unilogit.cli import main
from unilogit.report import read_records
from unilogit.trackers import record_scalars

pytest.importorskip("tensorboard")


@pytest.fixture
def bench(monkeypatch):
    from unilogit.cli import options

    bench = TinyBench()
    monkeypatch.setattr(options, "get_benchmark", lambda *a, **k: bench)
    return bench


def test_bench_tracks_every_run_step_and_evaluation(bench, tmp_path):
    """One TensorBoard run per training run (named by its run id) holding every step of its
    train log and every evaluation record's numbers at its step; the baselines have a run of
    their own. Before: `bench` had no --report-to (argparse error, exit 2)."""
    out = tmp_path / "bench"
    argv = ["bench", "--methods", "ga,npo", "--lrs", "3e-3", "--epochs", "2", "--eval-every", "1"]
    argv += ["--batch-size", "2", "--max-length", "32", "--output", str(out), "--no-progress"]
    assert main([*argv, "--report-to", "tensorboard"]) == 0
    records = read_records(out / "results.jsonl")
    run_ids = sorted({r["run_id"] for r in records})
    assert run_ids == ["ga-lr0.003-ep2-s0", "npo-lr0.003-ep2-s0", "retain", "target"]
    assert sorted(p.name for p in (out / "trackers").iterdir()) == run_ids
    for run_id in run_ids:
        scalars = read_scalars(out / "trackers" / run_id)
        mine = [r for r in records if r["run_id"] == run_id]
        for key in record_scalars(mine[0]):  # every number of every evaluation, at its step
            expected = [(r["step"], pytest.approx(r[key], rel=1e-6)) for r in mine]
            assert sorted(scalars[f"eval/{key}"]) == expected, key
        assert "eval/forget_quality" in scalars and "eval/lr" not in scalars
        if run_id in ("retain", "target"):
            assert not any(tag.startswith("train/") for tag in scalars)
            continue
        log_file = out / "logs" / f"{run_id}.jsonl"
        log = [json.loads(line) for line in log_file.read_text().splitlines()]
        assert len(log) == 4 == len(mine)  # 4 forget rows, batch 2, 2 epochs; --eval-every 1
        for key in ("loss", "loss_forget", "lr", "grad_norm"):
            assert sorted(scalars[f"train/{key}"]) == [
                (line["step"], pytest.approx(line[key], rel=1e-6)) for line in log
            ]
        hparams = next((out / "trackers" / run_id).rglob("hparams.yml")).read_text()
        assert f"run/run_id: {run_id}" in hparams and "train/batch_size: 2" in hparams

    # resumed: the reused runs are not tracked again
    stamp = {p: p.stat().st_mtime_ns for p in (out / "trackers").rglob("*") if p.is_file()}
    assert main([*argv, "--report-to", "tensorboard"]) == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "trackers").rglob("*") if p.is_file()} == stamp


def test_eval_tracks_the_evaluation(bench, tmp_path, capsys):
    """`eval --report-to tensorboard`: the summary printed and saved, as `eval/...` scalars of
    one TensorBoard run named after the output file. Before: no --report-to on `eval`."""
    model, tok = bench.target_model()
    saved = tmp_path / "model"
    model.save_pretrained(saved)
    tok.save_pretrained(saved)
    out = tmp_path / "res" / "eval.json"
    out.parent.mkdir()
    argv = ["eval", "--model", str(saved), "--output", str(out), "--no-progress"]
    assert main([*argv, "--report-to", "tensorboard"]) == 0, capsys.readouterr().err
    summary = bench.summarize(json.loads(out.read_text()))
    scalars = read_scalars(out.parent / "trackers" / "eval")
    numbers = {k: v for k, v in summary.items() if isinstance(v, float)}
    assert numbers and "forget_quality" in numbers
    for key, value in numbers.items():
        assert scalars[f"eval/{key}"] == [(0, pytest.approx(value, rel=1e-6))]
    capsys.readouterr()
    assert main([*argv, "--overwrite", "--report-to", "tensorbored"]) == 2
    assert "--report-to 'tensorbored': unknown tracker" in capsys.readouterr().err
