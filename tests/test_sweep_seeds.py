"""A seeded comparison on the tiny benchmark: both Unilogit weightings as their own runs, two
seeds, evaluations along each run, the seed section of the report, resume."""

from __future__ import annotations

from tiny_bench import TinyBench
from unilogit.report import read_records
from unilogit.sweep import run_sweep

TRAIN = {"batch_size": 1, "mixed_precision": "no", "progress": False, "max_length": 32}


def test_two_weightings_two_seeds_along_the_run_and_resume(tmp_path):
    bench, out = TinyBench(), tmp_path / "fair"
    args = (bench, ["unilogit", "unilogit-authors"], [1e-3], [1], out)
    kw = {"seeds": [0, 1], "eval_every": 2, "train_options": TRAIN, "progress": False}
    result = run_sweep(*args, **kw)
    assert result.ran == [
        "unilogit-lr0.001-ep1-s0",
        "unilogit-lr0.001-ep1-s1",
        "unilogit-authors-lr0.001-ep1-s0",
        "unilogit-authors-lr0.001-ep1-s1",
    ]
    runs = [r for r in read_records(out / "results.jsonl") if r["kind"] == "run"]
    by_run: dict[str, list] = {}
    for r in runs:
        by_run.setdefault(r["run_id"], []).append(r)
    for run_id, evals in by_run.items():
        # 4 forget rows, batch 1: 4 steps; evaluated at steps 2 and 4 (epoch 0.5 and 1)
        assert [(e["step"], e["epoch"]) for e in evals] == [(2, 0.5), (4, 1)], run_id
    options = {r["method"]: r["options"]["kl_mean"] for r in runs}
    assert options == {"unilogit": "positions", "unilogit-authors": "elements"}
    # the authors' forget loss is ours / V in the training log (same seed, same first batch)
    first = {r["method"]: r["train/loss_forget"] for r in runs if r["seed"] == 0 and r["step"] == 2}
    assert first["unilogit-authors"] < first["unilogit"] / 10
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "## Seeds: median and spread" in md and "## Hypervolume per method" in md
    for method in ("unilogit", "unilogit-authors"):
        assert f"| {method} lr=1e-3 | 2 | 0.5 | 2 |" in md  # median row: step 2, two seeds
    assert (out / "seeds_pareto_1.png").is_file()
    again = run_sweep(*args, **kw)
    assert again.ran == [] and len(again.skipped) == 4
