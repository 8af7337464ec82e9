"""evaluate_qa / evaluate_muse under a metrics convention: recorded, applied (row limit,
generation length, PrivLeak, ROUGE on paraphrased / perturbed answers, OU names), and a
reference made another way refused."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from tiny import tiny_llama
from unilogit.data import Example, encode_prompt
from unilogit.errors import ConfigError
from unilogit.eval import generation, suites
from unilogit.eval import metrics as M
from unilogit.eval.conventions import CONVENTIONS
from unilogit.prompts import PromptFormat

QS = ["Where is Ann?", "Who is Bo?", "What is Cy?", "When is Di?"]
AS = ["In Rome.", "A baker.", "A cat.", "At noon."]
PERT = ["Oslo.", "A dog is it.", "Lima"]
KW = dict(max_new_tokens=5, batch_size=8, progress=False)


def _qa(q, a, **extras):
    return Example(prompt=q, response=a, kind="qa", row_id=q[:8], extras=extras)


def _splits():
    pairs = list(zip(QS, AS, strict=True))
    forget = [_qa(q, a, paraphrased_answer=a.upper(), perturbed_answer=PERT) for q, a in pairs]
    retain = [_qa(q, a, paraphrased_answer="So " + a, perturbed_answer=PERT[:2]) for q, a in pairs]
    holdout = [_qa(q + " Now?", "Not " + a) for q, a in zip(QS, AS, strict=True)]
    return {"forget": forget, "retain": retain, "holdout": holdout}


@pytest.fixture
def models(tiny_tokenizer):
    return tiny_llama(len(tiny_tokenizer), seed=0), tiny_llama(len(tiny_tokenizer), seed=1)


def test_recorded_and_applied(tiny_tokenizer, models):
    model, gold = models
    ref = suites.evaluate_qa(gold, tiny_tokenizer, _splits(), **KW)
    out = suites.evaluate_qa(model, tiny_tokenizer, _splits(), reference=ref, **KW)
    json.dumps(out, allow_nan=False)
    assert out["metrics_convention"] == CONVENTIONS["open-unlearning"].describe()
    assert out["prompt_format"]["source"] == "default"
    assert out["prompt_format"]["system_prompt"] is None
    # TOFU PrivLeak against the reference's Min-K% AUC, with OU's ε
    want = M.privleak(out["mia"]["min_k"], ref["mia"]["min_k"], 1e-10)
    assert out["privleak"] == pytest.approx(want)
    assert out["privleak_retain_auc"] == ref["mia"]["min_k"]
    f = out["splits"]["forget"]
    # ROUGE of the same greedy answers against the paraphrased / each perturbed answer
    gens = f["generations"]
    para = M.rouge_l(gens, [a.upper() for a in AS]).recall.mean()
    assert f["rouge_l_recall_paraphrased"] == pytest.approx(para)
    pert = np.mean([M.rouge_l([g] * 3, PERT).recall.mean() for g in gens])
    assert f["rouge_l_recall_perturbed"] == pytest.approx(pert)
    assert 0.0 <= f["extraction_strength"] <= 1.0 and 0.0 <= f["exact_memorization"] <= 1.0
    assert f["truth_ratio"] == f["truth_ratio_closer_to_1"]
    assert (
        out["splits"]["retain"]["truth_ratio"] == out["splits"]["retain"]["truth_ratio_true_better"]
    )
    names = out["ou_names"]
    assert names["forget_quality"] == out["forget_quality"]
    assert names["forget_truth_ratio"] == f["truth_ratio"]
    assert names["forget_Q_A_PARA_ROUGE"] == f["rouge_l_recall_paraphrased"]
    assert names["retain_Truth_Ratio"] == out["splits"]["retain"]["truth_ratio"]
    assert names["mia_min_k"] == out["mia"]["min_k"] and names["privleak"] == out["privleak"]
    assert names["extraction_strength"] == f["extraction_strength"]


def test_tofu_convention_cuts_rows(tiny_tokenizer, models):
    conv = dataclasses.replace(CONVENTIONS["tofu"], tofu_max_rows=2)
    out = suites.evaluate_qa(
        models[0], tiny_tokenizer, _splits(), metrics_convention=conv, generate=False,
        progress=False,
    )  # fmt: skip
    assert {s["n"] for s in out["splits"].values()} == {2}
    assert out["metrics_convention"]["name"] == "tofu"


def test_max_length_counts_the_prompt(tiny_tokenizer, models, monkeypatch):
    seen = {}

    def fake(model, tokenizer, prompts, *, max_new_tokens, **kw):
        seen["limits"] = max_new_tokens
        return [""] * len(prompts)

    monkeypatch.setattr(generation, "generate_from_ids", fake)
    lengths = [len(encode_prompt(tiny_tokenizer, q)) for q in QS[:2]]
    generation.generate_answers(models[0], tiny_tokenizer, QS[:2], max_new_tokens=200)
    assert seen["limits"] == 200
    generation.generate_answers(
        models[0], tiny_tokenizer, QS[:2], max_new_tokens=200, max_length_counts_prompt=True
    )
    assert seen["limits"] == [200 - n for n in lengths]


def test_reference_made_another_way_is_refused(tiny_tokenizer, models):
    model, gold = models
    kw = dict(generate=False, progress=False)
    ref = suites.evaluate_qa(gold, tiny_tokenizer, _splits(), metrics_convention="exact", **kw)
    with pytest.raises(ConfigError, match="another convention.*epsilon"):
        suites.evaluate_qa(model, tiny_tokenizer, _splits(), reference=ref, **kw)
    ref = suites.evaluate_qa(gold, tiny_tokenizer, _splits(), **kw)
    other = {**ref, "prompt_format": {**ref["prompt_format"], "system_prompt": "Be brief."}}
    with pytest.raises(ConfigError, match="another prompt format.*system_prompt"):
        suites.evaluate_qa(model, tiny_tokenizer, _splits(), reference=other, **kw)
    rows = _splits()
    rows["forget"] = rows["forget"][::-1]
    with pytest.raises(ConfigError, match="other forget rows"):
        suites.evaluate_qa(model, tiny_tokenizer, rows, reference=ref, **kw)
    # the same set-up is accepted
    out = suites.evaluate_qa(model, tiny_tokenizer, _splits(), reference=ref, **kw)
    assert 0.0 <= out["forget_quality"] <= 1.0


def test_prompt_format_is_used_and_recorded(chat_tokenizer):
    model = tiny_llama(len(chat_tokenizer), seed=0)
    fmt = PromptFormat(system_prompt="Be brief.")
    out = suites.evaluate_qa(
        model, chat_tokenizer, _splits(), prompt_format=fmt, generate=False, progress=False
    )
    assert out["prompt_format"]["system_prompt"] == "Be brief."
    assert out["prompt_format"]["source"] == "given"
    plain = suites.evaluate_qa(model, chat_tokenizer, _splits(), generate=False, progress=False)
    assert out["splits"]["forget"]["probabilities"] != plain["splits"]["forget"]["probabilities"]


def test_muse_convention_prompt_and_stop(tiny_tokenizer, models, monkeypatch):
    seen = []

    def fake(model, tokenizer, prompts, *, max_new_tokens, stop_strings=None, **kw):
        seen.append((list(prompts), stop_strings))
        return ["the talks"] * len(prompts)

    monkeypatch.setattr(suites, "generate_continuations", fake)
    data = {
        "knowmem_forget": [{"question": "Q?", "answer": "The talk"}],
        "knowmem_forget_icl": [{"question": "Who?", "answer": "Ann"}],
    }
    out = suites.evaluate_muse(models[0], tiny_tokenizer, data, progress=False)
    assert seen[-1][0][0].endswith("Question: Q?\nAnswer: ")
    assert tuple(seen[-1][1]) == ("\n\n", "\nQuestion", "Question:")
    assert out["knowmem_f"] == pytest.approx(1.0)  # stemmed: "talks" -> "talk"
    assert out["ou_names"]["forget_knowmem_ROUGE"] == out["knowmem_f"]
    out = suites.evaluate_muse(
        models[0], tiny_tokenizer, data, metrics_convention="muse", progress=False
    )
    assert out["knowmem_f"] == pytest.approx(0.5)  # no stemmer: only "the" matches
    assert out["metrics_convention"]["name"] == "muse"
    suites.evaluate_muse(
        models[0], tiny_tokenizer, data, metrics_convention="exact", progress=False
    )
    assert seen[-1][0][0].endswith("Answer:") and "\nQuestion" not in seen[-1][1]


def test_report_names_the_convention(tmp_path):
    from unilogit.benchmarks.qa import summarize_qa
    from unilogit.report import write_report

    result = {
        "forget_quality": 0.2,
        "model_utility": 0.5,
        "splits": {},
        "metrics_convention": CONVENTIONS["open-unlearning"].describe(),
        "prompt_format": {
            "source": "open-unlearning:x",
            "system_prompt": "Hi.",
            "date_string": None,
        },
    }
    summary = summarize_qa(result)
    assert summary["metrics_convention"] == "open-unlearning"
    assert summary["prompt_format"] == "open-unlearning:x, system_prompt='Hi.'"
    rec = {"kind": "run", "method": "ga", "run_id": "ga-1", "epoch": 1, "step": 1, "final": True}
    paths = write_report([{**rec, **summary}], tmp_path, html_report=False)
    md = paths["md"].read_text()
    assert "Metrics convention: open-unlearning (docs/metrics.md)" in md
    assert "Prompts: open-unlearning:x, system_prompt='Hi.'" in md


def test_muse_verbmem_memorization_and_ou_log_reference(shared_dir, tiny_tokenizer):
    from unilogit.benchmarks.muse import MuseBenchmark

    path = shared_dir / "data" / "muse-news"
    if not path.is_dir():
        pytest.skip(f"MUSE-News files not found: {path}")
    bench = MuseBenchmark(data_dir=path, max_rows=2)
    model = tiny_llama(len(tiny_tokenizer), seed=0, max_positions=4096)
    opts = dict(
        progress=False, knowmem_max_new_tokens=2, verbmem_max_new_tokens=2,
        keep_generations=False,
    )  # fmt: skip
    log = {"mia_min_k": {"agg_value": 0.5}, "forget_knowmem_ROUGE": {"agg_value": 0.1}}
    res = bench.evaluate(model, tiny_tokenizer, reference=log, **opts)
    assert res["reference"]["privleak_auc"] == 0.5
    assert res["privleak"] == pytest.approx(M.privleak(res["privleak_auc"], 0.5, 1e-10))
    assert 0.0 <= res["extraction_strength"] <= 1.0
    assert res["ou_names"]["extraction_strength"] == res["extraction_strength"]
    assert bench.summarize(res)["metrics_convention"] == "open-unlearning"
    with pytest.raises(ConfigError, match="another convention"):
        bench.evaluate(model, tiny_tokenizer, reference=log, metrics_convention="muse", **opts)


def test_tofu_row_limit_with_a_benchmark_reference(shared_dir, tiny_tokenizer):
    from unilogit.benchmarks.tofu import TofuBenchmark

    path = shared_dir / "data" / "tofu"
    if not path.is_dir():
        pytest.skip(f"TOFU files not found: {path}")
    bench = TofuBenchmark("forget10", data_dir=path, max_rows=3)
    conv = dataclasses.replace(CONVENTIONS["tofu"], tofu_max_rows=2)
    model = tiny_llama(len(tiny_tokenizer), seed=0, max_positions=512)
    kw = dict(metrics_convention=conv, generate=False, progress=False)
    ref = bench.evaluate(model, tiny_tokenizer, **kw)
    assert ref["splits"]["forget"]["n"] == 2
    out = bench.evaluate(model, tiny_tokenizer, reference=ref, **kw)
    assert out["forget_quality"] == pytest.approx(1.0)
    assert out["reference"]["n_forget"] == 2
