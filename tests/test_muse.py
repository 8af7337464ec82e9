"""MUSE-News benchmark: loaders on the real files in ../shared/data/muse-news (pre-release names),
the final-release names, the Hub code path (pointed at the same files), errors, and every metric
of the suite on a tiny model."""

from __future__ import annotations

import json
import math
import shutil

import pytest

from tiny import tiny_llama
from unilogit.benchmarks.muse import EVAL_PARTS, PARTS, MuseBenchmark
from unilogit.benchmarks.registry import get_benchmark
from unilogit.data import Example
from unilogit.errors import ConfigError, DataError


def tiny(vocab_size: int, seed: int):
    return tiny_llama(vocab_size, seed=seed, hidden=32, max_positions=512)


@pytest.fixture
def muse_dir(shared_dir):
    path = shared_dir / "data" / "muse-news"
    if not path.is_dir():
        pytest.skip(f"MUSE-News files not found: {path}")
    return path


def _content(rows: list) -> list:
    """Row contents without the row ids (which name the source)."""
    out = []
    for r in rows:
        if isinstance(r, Example):
            out.append((r.prompt, r.response, r.kind, json.dumps(r.extras, sort_keys=True)))
        else:
            out.append((r["prompt"], r["gt"]))
    return out


def _final_release_copy(muse_dir, dest):
    """The local files renamed as in the final Hub release (retain2* -> retain*)."""
    renames = {
        "knowmem/retain2_qa.json": "knowmem/retain_qa.json",
        "knowmem/retain2_qa_icl.json": "knowmem/retain_qa_icl.json",
        "privleak/retain2.json": "privleak/retain.json",
    }
    for src in muse_dir.rglob("*.json"):
        rel = src.relative_to(muse_dir).as_posix()
        target = dest / renames.get(rel, rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, target)
    return dest


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def test_parts_from_real_files(muse_dir):
    bench = MuseBenchmark(data_dir=muse_dir)
    data = bench.eval_data()
    assert list(data) == list(EVAL_PARTS)
    assert {k: len(v) for k, v in data.items()} == {
        "knowmem_forget": 100,
        "knowmem_forget_icl": 10,
        "knowmem_retain": 100,
        "knowmem_retain_icl": 10,
        "verbmem_forget": 100,
        "privleak_forget": 100,
        "privleak_holdout": 100,
    }
    for part in ("knowmem_forget", "knowmem_retain", "knowmem_forget_icl", "knowmem_retain_icl"):
        assert all(e.kind == "qa" and e.prompt and e.response for e in data[part])
    assert data["knowmem_forget"][0].prompt.startswith("What year did the Orkney Islands")
    assert data["knowmem_forget"][0].response == "1472"
    assert data["knowmem_retain"][0].source.endswith("knowmem/retain2_qa.json")
    assert all(set(r) == {"prompt", "gt", "row_id"} for r in data["verbmem_forget"])
    assert all(r["prompt"] and r["gt"] for r in data["verbmem_forget"])
    for part in ("privleak_forget", "privleak_holdout"):
        assert all(
            e.kind == "text" and e.prompt == "" and len(e.response) > 1000 for e in data[part]
        )

    forget, retain = bench.forget(), bench.retain()
    assert len(forget) == len(retain) == 100
    assert all(e.kind == "text" and e.prompt == "" for e in forget + retain)
    assert _content(forget) == _content(data["privleak_forget"])
    assert retain[0].source.endswith("privleak/retain2.json")
    assert not {e.response for e in forget} & {e.response for e in retain}
    assert not {e.response for e in forget} & {e.response for e in data["privleak_holdout"]}


def test_max_rows_spares_the_icl_examples(muse_dir):
    bench = MuseBenchmark(data_dir=muse_dir, max_rows=3)
    lengths = {k: len(v) for k, v in bench.eval_data().items()}
    assert lengths["knowmem_forget_icl"] == lengths["knowmem_retain_icl"] == 10
    assert {lengths[k] for k in lengths if not k.endswith("_icl")} == {3}
    assert len(bench.forget()) == len(bench.retain()) == 3


def test_final_release_file_names(muse_dir, tmp_path):
    final = MuseBenchmark(data_dir=_final_release_copy(muse_dir, tmp_path))
    pre = MuseBenchmark(data_dir=muse_dir)
    for part in ("knowmem_retain", "knowmem_retain_icl", "privleak_retain"):
        rows = final.load(part)
        assert rows[0].source == str(tmp_path / PARTS[part].files[0])
        assert _content(rows) == _content(pre.load(part))


def _hub_from_local(muse_dir, split_names):
    """``config -> DatasetDict`` built from the local files, with the given retain split names."""
    import datasets

    def read(rel):
        return json.loads((muse_dir / rel).read_text(encoding="utf-8"))

    def texts(rel):
        return datasets.Dataset.from_dict({"text": read(rel)})

    retain_qa, retain_pl = split_names
    return {
        "knowmem": datasets.DatasetDict(
            {
                "forget_qa": datasets.Dataset.from_list(read("knowmem/forget_qa.json")),
                "forget_qa_icl": datasets.Dataset.from_list(read("knowmem/forget_qa_icl.json")),
                retain_qa: datasets.Dataset.from_list(read("knowmem/retain2_qa.json")),
                f"{retain_qa}_icl": datasets.Dataset.from_list(read("knowmem/retain2_qa_icl.json")),
            }
        ),
        "verbmem": datasets.DatasetDict(
            {"forget": datasets.Dataset.from_list(read("verbmem/forget.json"))}
        ),
        "privleak": datasets.DatasetDict(
            {
                "forget": texts("privleak/forget.json"),
                "holdout": texts("privleak/holdout.json"),
                retain_pl: texts("privleak/retain2.json"),
            }
        ),
    }


@pytest.mark.parametrize("names", [("retain_qa", "retain"), ("retain2_qa", "retain2")])
def test_hub_route_matches_local_files(muse_dir, monkeypatch, names):
    """The real Hub branch (``datasets.load_dataset("muse-bench/MUSE-News", config)``) with
    load_dataset redirected to the same files, under both retain naming schemes."""
    import datasets

    hub_data = _hub_from_local(muse_dir, names)
    calls = []

    def fake_load_dataset(path, name=None, **kw):
        calls.append((path, name))
        assert path == "muse-bench/MUSE-News"
        return hub_data[name]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    hub = MuseBenchmark(max_rows=5)
    local = MuseBenchmark(data_dir=muse_dir, max_rows=5)
    hub_data_, local_data = hub.eval_data(), local.eval_data()
    for part in EVAL_PARTS:
        assert _content(hub_data_[part]) == _content(local_data[part]), part
    assert _content(hub.retain()) == _content(local.retain())
    assert hub.load("knowmem_retain")[0].row_id == f"hf:muse-bench/MUSE-News:knowmem:{names[0]}:1"
    assert sorted(calls) == [  # one load per config
        ("muse-bench/MUSE-News", "knowmem"),
        ("muse-bench/MUSE-News", "privleak"),
        ("muse-bench/MUSE-News", "verbmem"),
    ]
    with pytest.raises(DataError, match="raw"):
        MuseBenchmark(corpus="raw").forget()  # no 'raw' config in this fake Hub


def test_hub_unreachable_is_a_data_error(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'muse-bench/MUSE-News' on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match=r"hf:muse-bench/MUSE-News:knowmem.*reach.*data_dir"):
        MuseBenchmark().load("knowmem_forget")


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


def test_missing_and_bad_files(muse_dir, tmp_path):
    (tmp_path / "verbmem").mkdir()
    bench = MuseBenchmark(data_dir=tmp_path)
    with pytest.raises(DataError, match="forget_qa.json") as err:
        bench.load("knowmem_forget")
    assert err.value.file == str(tmp_path / "knowmem/forget_qa.json")
    with pytest.raises(DataError, match="retain_qa.json or knowmem/retain2_qa.json"):
        bench.load("knowmem_retain")
    with pytest.raises(DataError, match="valid parts: knowmem_forget"):
        bench.load("knowmem_holdout")

    (tmp_path / "verbmem" / "forget.json").write_text(
        json.dumps([{"prompt": "a", "gt": "b"}, {"prompt": "c"}]), encoding="utf-8"
    )
    with pytest.raises(DataError, match="row 2") as err:
        bench.load("verbmem_forget")
    assert err.value.field == "gt" and err.value.file.endswith("forget.json")
    (tmp_path / "verbmem" / "forget.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(DataError, match="not valid JSON"):
        MuseBenchmark(data_dir=tmp_path).load("verbmem_forget")

    with pytest.raises(DataError, match="raw/forget.json"):
        MuseBenchmark(data_dir=muse_dir, corpus="raw").forget()
    with pytest.raises(ConfigError, match="privleak, raw"):
        MuseBenchmark(data_dir=muse_dir, corpus="books")
    with pytest.raises(DataError, match="not found"):
        MuseBenchmark(data_dir=tmp_path / "nope")


def test_raw_corpus_from_local_files(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "forget.json").write_text(json.dumps(["article one", "two"]), "utf-8")
    (tmp_path / "raw" / "retain1.json").write_text(json.dumps([{"text": "kept"}]), "utf-8")
    bench = MuseBenchmark(data_dir=tmp_path, corpus="raw")
    assert [e.response for e in bench.forget()] == ["article one", "two"]
    assert [e.response for e in bench.retain()] == ["kept"]


def test_registry(muse_dir):
    for name in ("muse-news", "MUSE", "muse_news"):
        bench = get_benchmark(name, data_dir=muse_dir, max_rows=2)
        assert isinstance(bench, MuseBenchmark) and bench.max_rows == 2
    with pytest.raises(ConfigError, match="no splits"):
        get_benchmark("muse-news:forget10", data_dir=muse_dir)


# --------------------------------------------------------------------------------------------
# Every metric on a tiny model
# --------------------------------------------------------------------------------------------


def test_evaluate_all_metrics_tiny_model(muse_dir, tiny_tokenizer, tmp_path):
    tok = tiny_tokenizer
    model, retain_model = tiny(len(tok), seed=0), tiny(len(tok), seed=1)
    bench = MuseBenchmark(data_dir=muse_dir, max_rows=6)
    opts = dict(knowmem_max_new_tokens=6, verbmem_max_new_tokens=8, batch_size=6, progress=False)

    ref = bench.evaluate(retain_model, tok, **opts)
    json.dumps(ref, allow_nan=False)
    assert ref["reference"] is None and ref["privleak"] is None
    for key in ("knowmem_f", "knowmem_r", "verbmem_f", "privleak_auc"):
        assert isinstance(ref[key], float) and 0.0 <= ref[key] <= 1.0, key
    assert len(ref["knowmem_f_generations"]) == len(ref["verbmem_f_generations"]) == 6
    assert set(ref["mia"]) >= {"loss", "zlib", "min_k", "min_k_plus_plus"}
    assert all(0.0 <= v <= 1.0 for v in ref["mia"].values())
    assert ref["privleak_k"] == 0.4

    path = tmp_path / "retain_eval.json"
    path.write_text(json.dumps(ref), encoding="utf-8")
    res = bench.evaluate(model, tok, reference=str(path), **opts)
    json.dumps(res, allow_nan=False)
    assert res["reference"]["kind"] == "file"
    assert res["privleak_retain_auc"] == ref["privleak_auc"]
    expected = ((1 - res["privleak_auc"]) - (1 - ref["privleak_auc"])) / (1 - ref["privleak_auc"])
    assert math.isfinite(res["privleak"])
    assert res["privleak"] == pytest.approx(100 * expected)

    # the retain model itself as reference: scored on the PrivLeak texts, same AUC as above
    resolved = bench.resolve_reference(retain_model, tok, batch_size=6, k=0.4, progress=False)
    auc = resolved.evaluation["privleak_auc"]
    assert auc == pytest.approx(ref["privleak_auc"])
    assert resolved.info == {"kind": "model", "benchmark": bench.describe(), "privleak_auc": auc}
    # a bare AUC is not a saved evaluation; another Min-K% k compares a different attack
    with pytest.raises(ConfigError, match="saved muse-news evaluation"):
        bench.evaluate(model, tok, reference=0.5, **opts)
    with pytest.raises(ConfigError, match="k=0.2"):
        bench.evaluate(model, tok, reference={**ref, "privleak_k": 0.2}, **opts)
    with pytest.raises(ConfigError, match="no evaluation option.*max_new_tokens"):
        bench.evaluate(model, tok, max_new_tokens=5, **opts)
    summary = bench.summarize(res)
    assert summary["knowmem_f"] == res["knowmem_f"] and summary["privleak"] == res["privleak"]
    assert {c.key for c in bench.columns} <= set(summary) and not bench.has_gold

    with pytest.raises(DataError, match="privleak_auc"):
        bench.evaluate(model, tok, reference={"knowmem_f": 0.3}, **opts)
    with pytest.raises(ConfigError, match="tofu"):
        bench.evaluate(
            model, tok, reference={"privleak_auc": 0.5, "benchmark": {"name": "tofu"}}, **opts
        )
