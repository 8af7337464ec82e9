"""lm-evaluation-harness on our in-memory model, offline: tasks defined in the test on local
JSON Lines files (``dataset_path: json``), a tiny model fine-tuned on the correct answers.

The harness's own tasks (mmlu, arc_easy, ...) download their data from the Hub, which these
tests cannot reach; the local tasks exercise the same path (HFLM wrapping our model, the
harness's log-likelihood ranking of the choices, its metrics).
"""

from __future__ import annotations

import json

import pytest

from tiny import COLORS, NAMES, qa_rows, tiny_llama, word_tokenizer
from unilogit import finetune
from unilogit.cli import main
from unilogit.errors import ConfigError

pytest.importorskip("lm_eval")
pytestmark = pytest.mark.slow  # ~2 min on 2 CPU cores: fine-tuning, importing the harness

TASK = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {path}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{{target}}}}}"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    """Two tasks on the same 12 colour questions (3 choices each): ``colors`` scores the
    correct answer as the target, ``colors_wrong`` a wrong one."""
    root = tmp_path_factory.mktemp("lm_eval_tasks")
    rows = []
    for i, (name, color) in enumerate(zip(NAMES, COLORS, strict=True)):
        others = [c for c in COLORS if c != color]
        choices = [f"{name} likes {c}." for c in (others[i % 5], color, others[(i + 5) % 11])]
        rows.append(
            {"question": f"What color does {name} like?", "choices": choices, "label": 1, "bad": 0}
        )
    data = root / "colors.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for name, target in (("colors", "label"), ("colors_wrong", "bad")):
        (root / f"{name}.yaml").write_text(TASK.format(name=name, path=data, target=target))
    return root


@pytest.fixture(scope="module")
def memorised():
    tokenizer = word_tokenizer()
    model = tiny_llama(len(tokenizer))
    model, _ = finetune(
        model,
        tokenizer,
        qa_rows(),
        epochs=40,
        lr=3e-3,
        batch_size=8,
        progress=False,
        warmup_ratio=0.0,
    )
    return model, tokenizer


def test_harness_scores_our_model_on_local_tasks(memorised, tasks):
    from unilogit.eval.lm_eval import run_lm_eval

    model, tokenizer = memorised
    model.train()
    out = run_lm_eval(model, tokenizer, "colors, colors_wrong", include_path=tasks)
    assert out["tasks"]["colors"]["acc"] == 1.0  # the memorised answer wins every question
    assert out["tasks"]["colors_wrong"]["acc"] == 0.0  # ... so a wrong target never does
    assert out["n_samples"]["colors"]["effective"] == 12
    assert model.training  # the caller's mode is restored
    limited = run_lm_eval(model, tokenizer, ["colors"], include_path=tasks, limit=5)
    assert limited["n_samples"]["colors"]["effective"] == 5 and limited["limit"] == 5


def test_unknown_task_and_empty_list_are_config_errors(memorised, tasks):
    from unilogit.eval.lm_eval import run_lm_eval

    model, tokenizer = memorised
    with pytest.raises(ConfigError, match=r"unknown lm-eval task\(s\) \['nope'\]"):
        run_lm_eval(model, tokenizer, "colors,nope", include_path=tasks)
    with pytest.raises(ConfigError, match="no lm-eval task given"):
        run_lm_eval(model, tokenizer, " , ", include_path=tasks)


def test_cli_eval_lm_eval_only(memorised, tasks, tmp_path, capsys):
    model, tokenizer = memorised
    saved = tmp_path / "model"
    model.save_pretrained(saved)
    tokenizer.save_pretrained(saved)
    out = tmp_path / "utility.json"
    argv = ["eval", "--model", str(saved), "--benchmark", "none", "--output", str(out)]
    code = main(argv + ["--lm-eval-tasks", "colors", "--lm-eval-include", str(tasks)])
    assert code == 0, capsys.readouterr().err
    result = json.loads(out.read_text())
    assert result["lm_eval"]["tasks"]["colors"]["acc"] == 1.0
    assert main(argv + ["--overwrite"]) == 2
    assert "--benchmark none needs --lm-eval-tasks" in capsys.readouterr().err


def test_unlearn_records_harness_results_before_and_after(memorised, tasks, tmp_path, capsys):
    """``unlearn --lm-eval-tasks``: the audit record holds the harness's accuracy before (1.0:
    memorised) and after unlearning the colour answers with Unilogit (lower)."""
    model, tokenizer = memorised
    saved = tmp_path / "model"
    model.save_pretrained(saved)
    tokenizer.save_pretrained(saved)
    forget = tmp_path / "forget.jsonl"
    colors = [r for r in qa_rows() if "color" in r["question"]]
    forget.write_text("".join(json.dumps(r) + "\n" for r in colors))
    out = tmp_path / "forgot"
    argv = ["unlearn", "--model", str(saved), "--forget", str(forget), "--output", str(out)]
    argv += ["--epochs", "5", "--lr", "3e-3", "--batch-size", "4", "--no-progress"]
    argv += ["--lm-eval-tasks", "colors", "--lm-eval-include", str(tasks)]
    assert main(argv) == 0, capsys.readouterr().err
    record = json.loads((out / "unlearn_record.json").read_text())["evaluation"]
    before = record["before"]["lm_eval"]["tasks"]["colors"]["acc"]
    after = record["after"]["lm_eval"]["tasks"]["colors"]["acc"]
    assert before == 1.0 and after < 0.75, (before, after)


# ------------------------------------------------------------------------------ bench


@pytest.fixture
def tiny_bench_cli(monkeypatch):
    """`unilogit bench` on tests/tiny_bench.py's benchmark; the trained models are kept."""
    from tiny_bench import TinyBench
    from unilogit.cli import options
    from unilogit.experiment import runner

    bench = TinyBench()
    monkeypatch.setattr(options, "get_benchmark", lambda *a, **k: bench)
    trained = []
    real = runner.default_train_fn

    def keep(*args, **kwargs):
        model, history = real(*args, **kwargs)
        trained.append(model)
        return model, history

    monkeypatch.setattr(runner, "default_train_fn", keep)
    return bench, trained


def test_bench_scores_the_original_model_and_every_final_evaluation(
    tiny_bench_cli, tasks, tmp_path, monkeypatch
):
    """`bench --lm-eval-tasks`: the target model is scored once (its baseline record), every
    run at its final evaluation only; the scores equal the harness on those very models; a
    reused run is not scored again; the report has the table. Before: `bench` had no
    --lm-eval-tasks (argparse error, exit 2)."""
    from unilogit.eval import lm_eval
    from unilogit.report import read_records

    bench, trained = tiny_bench_cli
    calls = []
    real = lm_eval.run_lm_eval

    def counted(*args, **kwargs):
        calls.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(lm_eval, "run_lm_eval", counted)
    out = tmp_path / "bench"
    argv = ["bench", "--methods", "ga,npo", "--lrs", "3e-3", "--epochs", "1", "--eval-every", "1"]
    argv += ["--batch-size", "2", "--max-length", "32", "--output", str(out), "--no-progress"]
    argv += ["--lm-eval-tasks", "colors", "--lm-eval-include", str(tasks)]
    assert main(argv) == 0
    assert len(calls) == 3  # the original model, and each of the two runs' last step
    records = read_records(out / "results.jsonl")
    target = next(r for r in records if r["kind"] == "baseline" and r["method"] == "target")
    original = real(bench.target_model()[0], bench.tok, ["colors"], include_path=tasks)
    assert target["lm_eval/colors/acc"] == original["tasks"]["colors"]["acc"]
    runs = [r for r in records if r["kind"] == "run"]
    finals = [r for r in runs if r["final"]]
    assert len(finals) == 2 and len(runs) > 2  # --eval-every 1: earlier evaluations too
    for r in runs:
        assert ("lm_eval/colors/acc" in r) == r["final"]
    for r, model in zip(finals, trained, strict=True):
        direct = real(model, bench.tok, ["colors"], include_path=tasks)
        assert r["lm_eval/colors/acc"] == direct["tasks"]["colors"]["acc"]
    saved = json.loads((out / "sweep.json").read_text())
    assert saved["hooks"]["lm_eval"]["tasks"] == ["colors"]
    md = (out / "report.md").read_text()
    assert "## General utility (lm-evaluation-harness)" in md
    before = f"{target['lm_eval/colors/acc']:.3f}"
    assert f"| original model | 0 | {before} |" in md
    for r in finals:
        assert f"| {r['method']} lr=3e-3 | {r['step']} | {before} → " in md
        assert f"→ {r['lm_eval/colors/acc']:.3f} |" in md

    # the same sweep again: every run reused, nothing scored
    assert main(argv) == 0 and len(calls) == 3
    # other harness settings would mix scores: refused
    assert main([*argv, "--lm-eval-limit", "5"]) == 2


def test_lm_eval_blocks_rows_and_auto_stop_point():
    """The report table from records alone: one row for the original model, one per scored
    evaluation (the auto-stop point labelled), before → after per task/metric."""
    from unilogit.report_lm_eval import lm_eval_blocks

    records = [
        {"kind": "baseline", "method": "target", "step": 0, "lm_eval/a/acc": 0.75},
        {"kind": "run", "method": "npo", "lr": 1e-3, "run_id": "r", "step": 3,
         "lm_eval/a/acc": 0.5, "autostop_eval": True},
        {"kind": "run", "method": "npo", "lr": 1e-3, "run_id": "r", "step": 4, "final": True,
         "lm_eval/a/acc": 0.25},
        {"kind": "run", "method": "npo", "lr": 1e-3, "run_id": "r", "step": 2},
    ]  # fmt: skip
    (_, title), _, (_, headers, rows) = lm_eval_blocks(records)
    assert title == "General utility (lm-evaluation-harness)" and headers[2:] == ["a/acc"]
    assert rows == [
        ["original model", "0", "0.750"],
        ["npo lr=1e-3 (auto-stop point)", "3", "0.750 → 0.500"],
        ["npo lr=1e-3", "4", "0.750 → 0.250"],
    ]
    assert lm_eval_blocks(records[3:]) == []
