"""Reports from synthetic sweep records: Pareto front, tables, CSV, plots (no models)."""

from __future__ import annotations

import csv
import json
import math

import pytest

from unilogit.errors import DataError
from unilogit.report import ID_COLUMNS, pareto_front, read_records, write_csv, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------ Pareto front


def test_pareto_front_hand_points():
    # (0.2, 0.2) is dominated by (0.5, 0.5); (0.5, 0.4) by (0.5, 0.5) (equal x, lower y);
    # the NaN point never counts; order is by x.
    points = [(0, 1), (1, 0), (0.5, 0.5), (0.2, 0.2), (0.5, 0.4), (math.nan, 9.0)]
    assert pareto_front(points) == [0, 2, 1]


def test_pareto_front_ties_and_edge_cases():
    assert pareto_front([]) == []
    assert pareto_front([(1, 1)]) == [0]
    # equal points do not dominate each other: both stay
    assert pareto_front([(1, 1), (1, 1), (0, 0)]) == [0, 1]
    # one point better on both axes dominates everything
    assert pareto_front([(0, 0), (3, 3), (1, 2), (2, 1)]) == [1]
    # None / inf coordinates are ignored
    assert pareto_front([(None, 5), (math.inf, 1), (0, 0)]) == [2]


def test_pareto_front_minimising_an_axis():
    # minimise x (e.g. KL), maximise y: (0, 0) vs (1, 1) are incomparable, (2, 0.5) dominated
    points = [(0, 0), (1, 1), (2, 0.5)]
    assert set(pareto_front(points, maximize=(False, True))) == {0, 1}
    assert pareto_front(points) == [1, 2]


# ------------------------------------------------------------------------------ records


def _records():
    """2 methods x 2 lrs x 3 epochs + target and retain baselines; hand-made numbers with a
    known front: npo lr=1e-3 epoch 3 has the best FQ, unilogit lr=1e-3 epoch 2 the best
    MU at high FQ; the other unilogit lr is dominated everywhere."""
    recs = [
        {
            "kind": "baseline",
            "method": "target",
            "epoch": 0,
            "final": True,
            "run_id": "target",
            "forget_quality": 1e-6,
            "forget_quality_log10": -6.0,
            "model_utility": 0.60,
            "forget/kl_to_gold": 2.5,
            "retain/kl_to_gold": 0.02,
            "mia/min_k": 0.99,
        },
        {
            "kind": "baseline",
            "method": "retain",
            "epoch": 0,
            "final": True,
            "run_id": "retain",
            "forget_quality": 1.0,
            "forget_quality_log10": 0.0,
            "model_utility": 0.59,
            "forget/kl_to_gold": 0.0,
            "retain/kl_to_gold": 0.0,
            "mia/min_k": 0.5,
        },
    ]
    table = {
        ("unilogit", 1e-3): [(-3.0, 0.58), (-1.0, 0.57), (-0.8, 0.50)],
        ("unilogit", 3e-3): [(-4.0, 0.40), (-3.0, 0.30), (-2.0, 0.20)],
        ("npo", 1e-3): [(-2.5, 0.55), (-1.5, 0.45), (-0.5, 0.35)],
        ("npo", 3e-3): [(-5.0, 0.56), (-4.0, 0.52), (-3.5, 0.41)],
    }
    for (method, lr), evals in table.items():
        for epoch, (fq_log, mu) in enumerate(evals, 1):
            recs.append(
                {
                    "kind": "run",
                    "method": method,
                    "lr": lr,
                    "epochs": 3,
                    "seed": 0,
                    "epoch": epoch,
                    "final": epoch == 3,
                    "run_id": f"{method}-lr{lr:g}-ep3-s0",
                    "forget_quality": 10**fq_log,
                    "forget_quality_log10": fq_log,
                    "model_utility": mu,
                    "forget/kl_to_gold": 1.0 / epoch,
                    "retain/kl_to_gold": 0.05 * epoch,
                    "forget/probability": 0.9 / epoch,
                    "mia/min_k": 0.9,
                    "options": {"method": method, "retain_weight": 1.0},
                }
            )
    return recs


def test_write_report_lists_every_run_and_draws_plots(tmp_path):
    records = _records()
    paths = write_report(
        records, tmp_path, meta={"benchmark": {"name": "world", "split": "forget10"}}
    )
    for key in ("pareto", "epochs", "kl"):
        data = paths[key].read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000, key
    md = paths["md"].read_text(encoding="utf-8")
    assert md.startswith("# Unlearning report: world forget10")
    for name in ("pareto.png", "forget_quality_epochs.png", "kl_to_gold.png"):
        assert f"]({name})" in md
    # every evaluation of every run has a row, and the baselines are there
    for r in records:
        if r["kind"] == "run":
            label = f"| {r['method']} lr={'1e-3' if r['lr'] == 1e-3 else '3e-3'} | "
            assert f"{label}{r['epoch']}/3 |" in md, (label, r["epoch"])
    assert "| target | – |" in md and "| retain | – |" in md
    # the dominated unilogit lr=3e-3 run is listed too (no cherry-picking) but never starred
    rows = [ln for ln in md.splitlines() if ln.startswith("| unilogit lr=3e-3")]
    assert len(rows) >= 4 and not any("★" in ln for ln in rows)
    html = paths["html"].read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") == 3 and "npo lr=3e-3" in html


def test_pareto_stars_match_pareto_front(tmp_path):
    records = _records()
    md = write_report(records, tmp_path)["md"].read_text(encoding="utf-8")
    runs = [r for r in records if r["kind"] == "run"]
    front = pareto_front([(r["forget_quality_log10"], r["model_utility"]) for r in runs])
    expected = {(runs[i]["method"], runs[i]["lr"], runs[i]["epoch"]) for i in front}
    # hand check of the synthetic numbers: these four are non-dominated
    assert expected == {
        ("unilogit", 1e-3, 1),
        ("unilogit", 1e-3, 2),
        ("unilogit", 1e-3, 3),
        ("npo", 1e-3, 3),
    }
    every = md.split("## Every evaluation")[1].split("## Set-up")[0]
    starred = {
        ln.split(" | ")[0] + " ep" + ln.split(" | ")[1]
        for ln in every.splitlines()
        if ln.endswith("★ |")
    }
    assert starred == {
        "| unilogit lr=1e-3 ep1/3",
        "| unilogit lr=1e-3 ep2/3",
        "| unilogit lr=1e-3 ep3/3",
        "| npo lr=1e-3 ep3/3",
    }
    assert "Pareto-optimal evaluations by method (4 in all): unilogit: 3, npo: 1." in md


def test_csv_columns_and_rows(tmp_path):
    records = _records()
    path = write_csv(records, tmp_path / "r.csv")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    header = list(rows[0].keys())
    assert tuple(header[: len(ID_COLUMNS)]) == ID_COLUMNS
    metrics = header[len(ID_COLUMNS) :]
    assert metrics == sorted(metrics)
    assert {"forget_quality", "model_utility", "forget/kl_to_gold", "mia/min_k"} <= set(metrics)
    assert len(rows) == len(records)
    assert [r["method"] for r in rows[:2]] == ["target", "retain"]  # baselines first
    first_run = rows[2]
    assert json.loads(first_run["options"])["method"] == first_run["method"]
    assert rows[0]["lr"] == ""  # missing values are empty cells


def test_reference_argument_adds_the_gold_row(tmp_path):
    records = [r for r in _records() if r["method"] != "retain"]
    reference = {"forget_quality": 1.0, "forget_quality_log10": 0.0, "model_utility": 0.59}
    md = write_report(records, tmp_path, reference=reference, html_report=False)["md"]
    assert "| retain | – | 1 | 0.590 |" in md.read_text(encoding="utf-8")
    assert not (tmp_path / "report.html").exists()


def test_report_without_runs_or_metrics(tmp_path):
    # only baselines, one of them without numbers: still a report, no crash
    records = [
        {"kind": "baseline", "method": "target", "epoch": 0},
        {"kind": "baseline", "method": "retain", "epoch": 0, "model_utility": 0.5},
    ]
    paths = write_report(records, tmp_path)
    assert paths["md"].is_file() and paths["pareto"].read_bytes().startswith(PNG_MAGIC)
    with pytest.raises(DataError):
        write_report([], tmp_path)


def test_read_records_roundtrip_and_errors(tmp_path):
    p = tmp_path / "results.jsonl"
    p.write_text(json.dumps({"a": 1}) + "\n\n" + json.dumps({"b": 2}) + "\n")
    assert read_records(p) == [{"a": 1}, {"b": 2}]
    p.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(DataError, match="results.jsonl:2"):
        read_records(p)
    p.write_text('{"a": 1}\n{oops\n')
    with pytest.raises(DataError, match="invalid JSON"):
        read_records(p)


def test_best_per_method_uses_one_rule(tmp_path):
    records = _records()
    # FQ = 1 exactly (log10 0) must beat every other npo evaluation, even with a low utility
    records.append(
        {
            **records[-1],
            "epoch": 4,
            "epochs": 4,
            "run_id": "npo-lr0.003-ep4-s0",
            "forget_quality": 1.0,
            "forget_quality_log10": 0.0,
            "model_utility": 0.1,
        }
    )
    md = write_report(records, tmp_path, html_report=False)["md"].read_text(encoding="utf-8")
    best = md.split("## Best evaluation per method")[1].split("## Over epochs")[0]
    rows = [ln for ln in best.splitlines() if ln.startswith("| npo") or ln.startswith("| uni")]
    assert rows[0].startswith("| npo lr=3e-3 | 4/4 | 1 | 0.100 |")
    assert rows[1].startswith("| unilogit lr=1e-3 | 3/3 | 0.16 |")  # 10**-0.8, its best FQ


# ------------------------------------------------------------------------------ layout


def test_declared_columns_and_curves_drive_the_report(tmp_path):
    """A benchmark without a gold model declares its own columns and curves (here in the
    sweep's saved layout): the tables use them, each curve gets a Pareto plot, the front is
    taken with the declared directions, and the QA columns (FQ, KL) are absent."""
    from unilogit.benchmarks.base import Column, Curve

    def rec(method, step, forget, utility, final=False):
        return {
            "kind": "run", "method": method, "lr": 1e-3, "epochs": 1, "seed": 0,
            "epoch": step / 4, "step": step, "final": final, "run_id": f"{method}-x",
            "forget/score": forget, "utility/score": utility, "neighbour/score": utility - 0.1,
        }  # fmt: skip

    records = [
        {"kind": "baseline", "method": "target", "epoch": 0, "step": 0,
         "forget/score": 1.0, "utility/score": 0.9, "neighbour/score": 0.8},
        rec("ga", 2, 0.6, 0.8), rec("ga", 4, 0.1, 0.3, True),
        rec("npo", 2, 0.5, 0.85), rec("npo", 4, 0.2, 0.2, True),
    ]  # fmt: skip
    layout = {
        "columns": [
            {"key": "forget/score", "label": "forget", "higher_is_better": False, "fmt": ".2f"},
            {"key": "utility/score", "label": "utility", "higher_is_better": True, "fmt": ".2f"},
        ],
        "curves": [
            {"x_key": "forget/score", "y_key": "utility/score", "title": "forget vs utility",
             "x_higher_is_better": False},
            {"x_key": "forget/score", "y_key": "neighbour/score", "title": "forget vs neighbour",
             "x_higher_is_better": False},
        ],
    }  # fmt: skip
    paths = write_report(records, tmp_path, meta={"benchmark": {"name": "facts"}, "layout": layout})
    md = paths["md"].read_text(encoding="utf-8")
    assert "| Model / run | epoch | forget ↓ | utility ↑ | Pareto |" in md
    assert "Forget Quality" not in md and "KL" not in md and "kl" not in paths
    assert "## forget vs utility" in md and "## forget vs neighbour" in md
    for key in ("pareto", "pareto_2", "epochs"):
        assert paths[key].read_bytes().startswith(PNG_MAGIC)
    # minimising forget, maximising utility (hand check): npo step 2 (0.5, 0.85) dominates
    # ga step 2 (0.6, 0.8); ga step 4 (0.1, 0.3) dominates npo step 4 (0.2, 0.2)
    every = md.split("## Every evaluation")[1].split("## Set-up")[0]
    starred = [ln.split(" | ")[:2] for ln in every.splitlines() if ln.endswith("★ |")]
    assert sorted(starred) == [["| ga lr=1e-3", "1/1"], ["| npo lr=1e-3", "0.5/1"]]
    # best per method: the lowest forget score (declared direction)
    best = md.split("## Best evaluation per method")[1].split("## Over epochs")[0]
    assert "| ga lr=1e-3 | 1/1 | 0.10 |" in best and "| npo lr=1e-3 | 1/1 | 0.20 |" in best
    # the same layout given directly instead of through meta
    again = write_report(
        records,
        tmp_path / "direct",
        columns=[Column(**c) for c in layout["columns"]],
        curves=[Curve(**c) for c in layout["curves"]],
    )
    assert (
        again["md"].read_text(encoding="utf-8").split("## Set-up")[0]
        == md.replace("Unlearning report: facts", "Unlearning report").split("## Set-up")[0]
    )


def test_examples_section_shows_before_and_after(tmp_path):
    records = _records()
    examples = [
        {"kind": "forget", "prompt": "Where was Ada born?", "answer_key": "In Oslo.",
         "generation": "In Oslo."},
        {"kind": "retain", "prompt": "Where was Bo born?", "answer_key": "In Rome.",
         "generation": "In Rome."},
    ]  # fmt: skip
    (tmp_path / "evals").mkdir()
    for r in records:
        if r["kind"] == "baseline" or (r["method"] == "npo" and r["lr"] == 1e-3):
            name = f"{r['run_id']}-{r['epoch']}.json"
            gen = "In Oslo." if r["kind"] == "baseline" else "lies lies lies"
            exs = [{**e, "generation": gen if e["kind"] == "forget" else e["generation"]}
                   for e in examples]  # fmt: skip
            (tmp_path / "evals" / name).write_text(json.dumps({"examples": exs}))
            r["eval_file"] = f"evals/{name}"
    md = write_report(records, tmp_path, html_report=False)["md"].read_text(encoding="utf-8")
    section = md.split("## Examples")[1].split("## Every evaluation")[0]
    assert "### forget" in section and "### retain" in section
    # columns: before, the gold model, each method's best evaluation (npo: lr 1e-3 epoch 3;
    # unilogit's has no saved evaluation here: "–")
    head = (
        "| prompt | answer key | target | retain (gold) | npo lr=1e-3 ep3 | unilogit lr=1e-3 ep3 |"
    )
    assert head in section
    assert (
        "| Where was Ada born? | In Oslo. | In Oslo. | In Oslo. | lies lies lies | – |" in section
    )
    # a report without saved evaluations has no such section
    plain = write_report(_records(), tmp_path / "plain", html_report=False)["md"]
    assert "## Examples" not in plain.read_text(encoding="utf-8")


def test_benchmark_notes_are_printed_in_the_setup_section(tmp_path):
    note = "World sanity (forget10; docs/world.md): gold model ... NOT MET"
    meta = {"benchmark": {"name": "world", "split": "forget10", "notes": [note], "sanity": {}}}
    md = write_report(_records(), tmp_path, meta=meta)["md"].read_text(encoding="utf-8")
    setup = md.split("\n## Set-up\n", 1)[1].split("\n## ", 1)[0]
    assert note in setup
