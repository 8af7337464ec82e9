"""TOFU benchmark: loaders on the real files in ../shared/data/tofu, the Hub code path (pointed at
the same local files), split pairing, errors, and every metric of the suite on a tiny model."""

from __future__ import annotations

import json
import math
import shutil

import pytest

from tiny import tiny_llama
from unilogit.benchmarks.registry import available_benchmarks, get_benchmark
from unilogit.benchmarks.tofu import FORGET_SPLITS, TofuBenchmark
from unilogit.data import Example
from unilogit.errors import ConfigError, DataError


def tiny(vocab_size: int, seed: int):
    return tiny_llama(vocab_size, seed=seed, hidden=32, max_positions=512)


@pytest.fixture
def tofu_dir(shared_dir):
    path = shared_dir / "data" / "tofu"
    if not path.is_dir():
        pytest.skip(f"TOFU files not found: {path}")
    return path


def _content(examples: list[Example]) -> list[tuple]:
    """What must not depend on the route the rows came by (row ids name the source)."""
    return [(e.prompt, e.response, e.kind, json.dumps(e.extras, sort_keys=True)) for e in examples]


# --------------------------------------------------------------------------------------------
# Loading the real files
# --------------------------------------------------------------------------------------------


def test_row_counts_and_field_mapping(tofu_dir):
    bench = TofuBenchmark("forget10", data_dir=tofu_dir)
    forget, retain = bench.forget(), bench.retain()
    assert (len(forget), len(retain)) == (400, 3600)
    assert all(e.kind == "qa" and e.prompt and e.response for e in forget + retain)
    assert forget[0].row_id.endswith("forget10.jsonl:1")

    ev = bench.eval_splits()
    assert list(ev) == ["forget", "retain", "real_authors", "world_facts", "holdout"]
    assert {k: len(v) for k, v in ev.items()} == {
        "forget": 400,
        "retain": 400,
        "real_authors": 100,
        "world_facts": 117,
        "holdout": 400,
    }
    for name in ("forget", "retain"):  # ã = paraphrased answer, 5 perturbed answers
        for e in ev[name]:
            assert isinstance(e.extras["paraphrased_answer"], str)
            assert len(e.extras["perturbed_answer"]) == 5
    for name in ("real_authors", "world_facts"):  # ã = gold answer, 3 perturbed answers
        for e in ev[name]:
            assert "paraphrased_answer" not in e.extras
            assert len(e.extras["perturbed_answer"]) == 3
    assert all(e.extras == {} for e in ev["holdout"])
    # the perturbed forget set asks the same questions as the training forget set
    assert [e.prompt for e in ev["forget"]] == [e.prompt for e in forget]
    assert [e.response for e in ev["forget"]] == [e.response for e in forget]

    small = TofuBenchmark("forget01", data_dir=tofu_dir)
    assert len(small.forget()) == 40
    assert len(small.eval_splits()["holdout"]) == 40
    assert small.eval_splits()["holdout"][0].row_id.endswith("holdout01.jsonl:1")


def test_split_pairing_and_full(tofu_dir):
    pairs = {"forget01": "retain99", "forget05": "retain95", "forget10": "retain90"}
    assert tuple(pairs) == FORGET_SPLITS
    for split, retain in pairs.items():
        bench = TofuBenchmark(split, data_dir=tofu_dir)
        assert bench.retain_split == retain
        assert bench.configs["forget"] == f"{split}_perturbed"
        assert bench.configs["holdout"] == "holdout" + split[-2:]

    bench = TofuBenchmark("forget10", data_dir=tofu_dir)
    full = [(e.prompt, e.response) for e in bench.load("full")]
    forget = [(e.prompt, e.response) for e in bench.forget()]
    retain = [(e.prompt, e.response) for e in bench.retain()]
    assert len(full) == 4000
    assert forget == full[-400:]  # forget rows = the last rows of full
    assert retain == full[:3600]
    assert not {q for q, _ in forget} & {q for q, _ in retain}


def test_max_rows_keeps_first_rows(tofu_dir):
    bench = TofuBenchmark("forget05", data_dir=tofu_dir, max_rows=3)
    full = TofuBenchmark("forget05", data_dir=tofu_dir)
    assert _content(bench.forget()) == _content(full.forget()[:3])
    assert {k: len(v) for k, v in bench.eval_splits().items()} == dict.fromkeys(
        ["forget", "retain", "real_authors", "world_facts", "holdout"], 3
    )
    assert bench.describe()["max_rows"] == 3


# --------------------------------------------------------------------------------------------
# The Hub route, exercised on the local files
# --------------------------------------------------------------------------------------------


def test_hub_route_matches_local_files(tofu_dir, tmp_path, monkeypatch):
    """The real Hub branch (``datasets.load_dataset("locuslab/TOFU", config, split="train")``)
    with load_dataset redirected to the same files: identical examples to the local branch."""
    import datasets

    real_load = datasets.load_dataset
    calls = []

    def fake_load_dataset(path, name=None, *, split=None, data_files=None, **kw):
        calls.append((path, name, split))
        assert path == "locuslab/TOFU" and split == "train" and data_files is None
        return real_load(
            "json",
            data_files=str(tofu_dir / f"{name}.jsonl"),
            split="train",
            cache_dir=str(tmp_path / "hf-cache"),
        )

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    hub = TofuBenchmark("forget01", max_rows=20)
    local = TofuBenchmark("forget01", data_dir=tofu_dir, max_rows=20)
    assert hub.describe()["source"] == "hf:locuslab/TOFU"
    assert _content(hub.forget()) == _content(local.forget())
    assert hub.forget()[0].row_id == "hf:locuslab/TOFU:forget01:train:1"
    hub_ev, local_ev = hub.eval_splits(), local.eval_splits()
    for name in local_ev:
        assert _content(hub_ev[name]) == _content(local_ev[name]), name
    configs = {c for _, c, _ in calls}
    assert configs == {
        "forget01",
        "forget01_perturbed",
        "retain_perturbed",
        "real_authors_perturbed",
        "world_facts_perturbed",
        "holdout01",
    }
    n_calls = len(calls)
    hub.eval_splits()
    assert len(calls) == n_calls  # cached per instance


def test_loader_hook_and_paraphrase_dropped_for_gold_splits(tofu_dir):
    """A source whose real-authors rows carry a paraphrase: the gold answer stays ã."""

    def loader(config):
        rows = [json.loads(line) for line in open(tofu_dir / f"{config}.jsonl", encoding="utf-8")]
        if config in ("real_authors_perturbed", "world_facts_perturbed"):
            rows = [{**r, "paraphrased_answer": "a paraphrase"} for r in rows]
        return rows

    bench = TofuBenchmark("forget01", loader=loader, max_rows=5)
    ev = bench.eval_splits()
    assert all("paraphrased_answer" not in e.extras for e in ev["real_authors"])
    assert all("paraphrased_answer" not in e.extras for e in ev["world_facts"])
    assert all(e.extras["paraphrased_answer"] for e in ev["forget"])
    assert ev["forget"][0].row_id == "tofu:forget01_perturbed:1"


def test_hub_unreachable_is_a_data_error(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'locuslab/TOFU' on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match=r"hf:locuslab/TOFU:forget10:train.*reach"):
        TofuBenchmark("forget10").forget()


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


def test_unknown_split_lists_valid_ones(tofu_dir):
    with pytest.raises(DataError, match="forget01, forget05, forget10") as err:
        TofuBenchmark("forget20", data_dir=tofu_dir)
    assert "forget20" in str(err.value)


def test_missing_file_names_the_file(tofu_dir, tmp_path):
    shutil.copy(tofu_dir / "forget01.jsonl", tmp_path / "forget01.jsonl")
    bench = TofuBenchmark("forget01", data_dir=tmp_path)
    assert len(bench.forget()) == 40
    with pytest.raises(DataError) as err:
        bench.retain()
    assert err.value.file == str(tmp_path / "retain99.jsonl")
    with pytest.raises(DataError, match="forget01_perturbed.jsonl"):
        bench.eval_splits()
    with pytest.raises(DataError, match="not found"):
        TofuBenchmark("forget01", data_dir=tmp_path / "nope")
    with pytest.raises(ConfigError, match="max_rows"):
        TofuBenchmark("forget01", data_dir=tmp_path, max_rows=0)


def test_hub_clone_json_files(tofu_dir, tmp_path):
    """``<config>.json`` (JSON Lines, as named in a clone of the Hub repo) is read too."""
    shutil.copy(tofu_dir / "forget01.jsonl", tmp_path / "forget01.json")
    bench = TofuBenchmark("forget01", data_dir=tmp_path, hub_options={"cache_dir": tmp_path / "c"})
    local = TofuBenchmark("forget01", data_dir=tofu_dir)
    assert _content(bench.forget()) == _content(local.forget())


def test_eval_split_without_perturbed_answers_is_rejected(tofu_dir, tmp_path):
    for f in tofu_dir.glob("*.jsonl"):
        if f.name != "retain_perturbed.jsonl" and f.stat().st_size < 800_000:
            shutil.copy(f, tmp_path / f.name)
    # a retain_perturbed.jsonl without the paraphrased / perturbed columns
    shutil.copy(tofu_dir / "forget01.jsonl", tmp_path / "retain_perturbed.jsonl")
    with pytest.raises(DataError) as err:
        TofuBenchmark("forget01", data_dir=tmp_path).eval_splits()
    assert err.value.file == str(tmp_path / "retain_perturbed.jsonl")
    assert err.value.line == 1 and err.value.field == "paraphrased_answer"


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


def test_registry(tofu_dir):
    assert {"tofu", "muse-news"} <= set(available_benchmarks())
    bench = get_benchmark("tofu:forget05", data_dir=tofu_dir, max_rows=2)
    assert isinstance(bench, TofuBenchmark)
    assert (bench.split, bench.retain_split, bench.max_rows) == ("forget05", "retain95", 2)
    assert get_benchmark("TOFU", data_dir=tofu_dir, split="forget01").retain_split == "retain99"
    assert get_benchmark("tofu", data_dir=tofu_dir).split == "forget10"
    with pytest.raises(ConfigError, match="available: .*tofu"):
        get_benchmark("tofuu")
    with pytest.raises(ConfigError, match="split given twice"):
        get_benchmark("tofu:forget01", data_dir=tofu_dir, split="forget05")
    with pytest.raises(DataError, match="forget01, forget05, forget10"):
        get_benchmark("tofu:forget3", data_dir=tofu_dir)


# --------------------------------------------------------------------------------------------
# Every metric on a tiny model
# --------------------------------------------------------------------------------------------


def _in_unit(x) -> bool:
    return isinstance(x, float) and math.isfinite(x) and 0.0 <= x <= 1.0


def test_evaluate_all_metrics_tiny_model(tofu_dir, tiny_tokenizer, tmp_path):
    tok = tiny_tokenizer
    model, retain_model = tiny(len(tok), seed=0), tiny(len(tok), seed=1)
    bench = TofuBenchmark("forget01", data_dir=tofu_dir, max_rows=4)

    res = bench.evaluate(
        model,
        tok,
        reference=retain_model,
        gold_model=retain_model,
        max_new_tokens=4,
        batch_size=8,
        progress=False,
    )
    json.dumps(res, allow_nan=False)  # plain, finite JSON
    assert res["benchmark"]["split"] == "forget01"
    assert res["reference"]["kind"] == "model"
    assert (res["forget_split"], res["holdout_split"]) == ("forget", "holdout")
    assert res["utility_splits"] == ["retain", "real_authors", "world_facts"]
    splits = res["splits"]
    for name in ("forget", "retain", "real_authors", "world_facts"):
        s = splits[name]
        assert s["n"] == 4
        assert _in_unit(s["probability"]) and s["probability"] > 0
        assert _in_unit(s["rouge_l_recall"])
        assert _in_unit(s["truth_ratio"])
        assert len(s["truth_ratios"]) == 4 and all(r > 0 for r in s["truth_ratios"])
        assert math.isfinite(s["kl_to_gold"]) and s["kl_to_gold"] >= 0
        assert len(s["generations"]) == 4
    assert splits["forget"]["truth_ratio_true_answer"] == "paraphrased"
    assert splits["retain"]["truth_ratio_true_answer"] == "paraphrased"
    for name in ("real_authors", "world_facts"):
        assert splits[name]["truth_ratio_true_answer"] == "gold"
        assert splits[name]["probability_kind"] == "normalised_by_perturbed"
    assert splits["forget"]["truth_ratio_summary"] == "mean(min(R, 1/R))"
    assert splits["retain"]["truth_ratio_summary"] == "mean(max(0, 1 - R))"
    assert "rouge_l_recall" not in splits["holdout"]

    assert _in_unit(res["forget_quality"])
    assert res["forget_quality_log10"] <= 0
    assert math.isclose(10 ** res["forget_quality_log10"], res["forget_quality"], rel_tol=1e-9)
    assert _in_unit(res["model_utility"])
    assert sorted(res["model_utility_components"]) == sorted(
        f"{m}/{s}"
        for m in ("probability", "rouge_l_recall", "truth_ratio")
        for s in ("retain", "real_authors", "world_facts")
    )
    assert set(res["mia"]) >= {"loss", "zlib", "min_k", "min_k_plus_plus"}
    assert all(_in_unit(v) for v in res["mia"].values())

    # The same evaluation saved to JSON serves as the reference: identical truth ratios -> FQ 1.
    path = tmp_path / "retain_eval.json"
    path.write_text(json.dumps(res), encoding="utf-8")
    again = bench.evaluate(model, tok, reference=str(path), generate=False, progress=False)
    assert again["reference"] == {
        "kind": "file",
        "path": str(path),
        "benchmark": res["benchmark"],
        "n_forget": 4,
    }
    assert again["forget_quality"] == pytest.approx(1.0)
    assert len(again["model_utility_components"]) == 6  # no ROUGE without generation

    other = dict(res, benchmark={**res["benchmark"], "split": "forget05"})
    with pytest.raises(ConfigError, match="forget05"):
        bench.evaluate(model, tok, reference=other, generate=False, progress=False)
    with pytest.raises(DataError, match="not found"):
        bench.evaluate(model, tok, reference=tmp_path / "missing.json", progress=False)
    with pytest.raises(DataError, match="truth ratios"):
        bench.evaluate(model, tok, reference={"knowmem_f": 0.3}, progress=False)
    # one strict reference resolution: a reference must be a complete saved evaluation of the
    # same benchmark, split and rows (a warning used to let a shorter one through)
    short = {"forget_split": "forget", "splits": {"forget": {"truth_ratios": [1.0, 2.0]}}}
    with pytest.raises(ConfigError, match="reference has 2 forget questions"):
        bench.resolve_reference(short)
    with pytest.raises(ConfigError, match="no evaluation option.*'k'.*keep_generations"):
        bench.evaluate(model, tok, k=0.4, progress=False)
    with pytest.raises(ConfigError, match="bare list of numbers"):
        bench.evaluate(model, tok, reference=[1.0, 2.0, 3.0, 4.0], progress=False)
    unnamed = {k: v for k, v in res.items() if k != "benchmark"}
    with pytest.raises(DataError, match="no 'benchmark' entry"):
        bench.resolve_reference(unnamed)
    bad = tmp_path / "bad.json"
    bad.write_text('{"forget_split": "forget",\n "splits": oops}', encoding="utf-8")
    with pytest.raises(DataError, match="not valid JSON") as err:
        bench.resolve_reference(bad)
    assert err.value.file == str(bad) and err.value.line == 2
