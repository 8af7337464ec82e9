"""Scoring, generation and suites on tiny Llama models built in the test (CPU, seconds)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from transformers import LlamaForCausalLM

from tiny import tiny_llama
from unilogit.data import Example, encode_example
from unilogit.eval import generation, scoring, suites
from unilogit.eval import metrics as M

QUESTIONS = [
    "What is the capital of France?",
    "Who?",
    "Machine unlearning removes the influence of what from a trained model?",
    "Where was the author Hsiao Yun-Hwa born?",
    "Name a girl.",
]
ANSWERS = [
    "Paris.",
    "The author's full name is Hsiao Yun-Hwa, born in Taipei, Taiwan.",
    "A forget set",
    "Taipei",
    "Lily, who loved to play outside.",
]


def tiny_model(vocab_size: int, seed: int = 0) -> LlamaForCausalLM:
    return tiny_llama(vocab_size, seed=seed, hidden=32, max_positions=256)


@pytest.fixture
def model(tiny_tokenizer):
    return tiny_model(len(tiny_tokenizer))


# --------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["tiny_tokenizer", "chat_tokenizer"])
def test_answer_logprobs_match_literal_forward(fixture, request):
    """Each answer's scores = log_softmax of an unpadded forward at the supervised positions of
    unilogit.data.encode_example (chat template included), i.e. exactly the trained tokens."""
    tok = request.getfixturevalue(fixture)
    model = tiny_model(len(tok))
    got = scoring.answer_logprobs(model, tok, QUESTIONS, ANSWERS, batch_size=2)
    for q, a, lp in zip(QUESTIONS, ANSWERS, got, strict=True):
        enc = encode_example(tok, Example(q, a, "qa", "r", {}))
        ids = torch.tensor([enc.input_ids])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
        labels = torch.tensor(enc.labels[1:])
        pos = (labels != -100).nonzero().squeeze(-1)
        expected = logp[pos, labels[pos]].double().numpy()
        assert lp.shape == expected.shape
        assert len(lp) == sum(label != -100 for label in enc.labels)  # answer tokens + EOS
        np.testing.assert_allclose(lp, expected, atol=1e-5)


def test_batched_scores_equal_one_by_one(tiny_tokenizer, model):
    """Padding (right, length-sorted batches) must not change any score; order is restored."""
    batched = scoring.answer_token_scores(
        model, tiny_tokenizer, QUESTIONS, ANSWERS, batch_size=3, with_stats=True
    )
    for i, (q, a) in enumerate(zip(QUESTIONS, ANSWERS, strict=True)):
        single = scoring.answer_token_scores(
            model, tiny_tokenizer, [q], [a], batch_size=1, with_stats=True
        )[0]
        for field in ("logprobs", "mu", "sigma"):
            np.testing.assert_allclose(
                getattr(batched[i], field), getattr(single, field), atol=1e-5, err_msg=field
            )
    texts = [q + " " + a for q, a in zip(QUESTIONS, ANSWERS, strict=True)]
    batched_t = scoring.text_logprobs(model, tiny_tokenizer, texts, batch_size=4)
    for text, b in zip(texts, batched_t, strict=True):
        s = scoring.text_logprobs(model, tiny_tokenizer, [text], batch_size=1)[0]
        np.testing.assert_allclose(b.logprobs, s.logprobs, atol=1e-5)
        np.testing.assert_allclose(b.sigma, s.sigma, atol=1e-5)


def test_token_stats_literal_min_k_plus_plus():
    """μ_t = Σ_z p log p, σ_t² = Σ_z p (log p)² - μ_t², checked with explicit loops over a
    (3, 5) logits tensor, then Min-K%++ of the resulting per-token values."""
    logits = torch.tensor(
        [[2.0, 0.5, -1.0, 0.0, 1.0], [0.1, 0.2, 0.3, 0.4, 0.5], [5.0, -5.0, 0.0, 1.0, -2.0]]
    )
    targets = torch.tensor([0, 3, 1])
    lp, mu, sigma = scoring.token_stats(logits, targets)
    z_literal = []
    for t in range(3):
        exps = [math.exp(v) for v in logits[t].tolist()]
        total = sum(exps)
        logps = [math.log(e / total) for e in exps]
        m = sum(math.exp(v) * v for v in logps)
        s = math.sqrt(sum(math.exp(v) * v * v for v in logps) - m * m)
        assert lp[t].item() == pytest.approx(logps[targets[t]], abs=1e-5)
        assert mu[t].item() == pytest.approx(m, abs=1e-5)
        assert sigma[t].item() == pytest.approx(s, abs=1e-5)
        z_literal.append((logps[targets[t]] - m) / s)
    expected = sorted(z_literal)[0]  # k = 0.34 of 3 tokens -> the single lowest
    got = M.min_k_plus_plus_score(lp.numpy(), mu.numpy(), sigma.numpy(), k=0.34)
    assert got == pytest.approx(expected, abs=1e-5)


def test_text_stats_match_full_forward(tiny_tokenizer, model):
    text = "Once upon a time, there was a little girl named Lily."
    got = scoring.text_logprobs(model, tiny_tokenizer, [text])[0]
    ids = torch.tensor([tiny_tokenizer(text)["input_ids"]])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, :-1]
    lp, mu, sigma = scoring.token_stats(logits, ids[0, 1:])
    np.testing.assert_allclose(got.logprobs, lp.numpy(), atol=1e-5)
    np.testing.assert_allclose(got.mu, mu.numpy(), atol=1e-5)
    np.testing.assert_allclose(got.sigma, sigma.numpy(), atol=1e-5)


def test_kl_to_reference(tiny_tokenizer, model):
    assert scoring.kl_to_reference(model, model, tiny_tokenizer, QUESTIONS, ANSWERS) == (
        pytest.approx(0.0, abs=1e-6)
    )
    other = tiny_model(len(tiny_tokenizer), seed=1)
    per_q = scoring.kl_to_reference(
        other, model, tiny_tokenizer, QUESTIONS, ANSWERS, batch_size=2, reduction="none"
    )
    assert [len(k) for k in per_q] == [
        len(x) for x in scoring.answer_logprobs(model, tiny_tokenizer, QUESTIONS, ANSWERS)
    ]
    assert all((k > 0).all() for k in per_q)
    mean = scoring.kl_to_reference(other, model, tiny_tokenizer, QUESTIONS, ANSWERS)
    assert mean == pytest.approx(M.kl_to_gold(per_q), rel=1e-5)
    # KL(p_ref ‖ p_model) literally, for the first answer token of question 0
    enc = encode_example(tiny_tokenizer, Example(QUESTIONS[0], ANSWERS[0], "qa", "r", {}))
    t = enc.labels.index(next(x for x in enc.labels if x != -100)) - 1
    ids = torch.tensor([enc.input_ids])
    with torch.no_grad():
        log_model = torch.log_softmax(other(input_ids=ids).logits[0, t], -1)
        log_ref = torch.log_softmax(model(input_ids=ids).logits[0, t], -1)
    literal = float((log_ref.exp() * (log_ref - log_model)).sum())
    assert per_q[0][0] == pytest.approx(literal, abs=1e-5)


def test_scoring_restores_training_mode(tiny_tokenizer, model):
    model.train()
    scoring.answer_logprobs(model, tiny_tokenizer, QUESTIONS[:1], ANSWERS[:1])
    assert model.training


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------


def test_batched_left_padded_generation_equals_one_by_one(tiny_tokenizer, model):
    batched = generation.generate_answers(
        model, tiny_tokenizer, QUESTIONS, max_new_tokens=12, batch_size=5, progress=False
    )
    single = [
        generation.generate_answers(
            model, tiny_tokenizer, [q], max_new_tokens=12, batch_size=1, progress=False
        )[0]
        for q in QUESTIONS
    ]
    assert batched == single
    assert any(batched)


def test_continuations_per_prompt_limits_and_stop_strings(tiny_tokenizer, model):
    prompts = ["Once upon a time", "The capital of France is", "Machine unlearning"]
    full = generation.generate_continuations(
        model, tiny_tokenizer, prompts, max_new_tokens=10, batch_size=3, progress=False
    )
    short = generation.generate_continuations(
        model, tiny_tokenizer, prompts, max_new_tokens=[10, 3, 1], batch_size=3, progress=False
    )
    one = [
        generation.generate_continuations(
            model, tiny_tokenizer, [p], max_new_tokens=n, progress=False
        )[0]
        for p, n in zip(prompts, [10, 3, 1], strict=True)
    ]
    assert short == one
    assert short[0] == full[0]
    # a stop string taken from the middle of the first continuation cuts it there
    text = full[0]
    assert len(text) >= 4
    stop = text[2:4]
    cut = generation.generate_continuations(
        model,
        tiny_tokenizer,
        prompts[:1],
        max_new_tokens=10,
        stop_strings=[stop],
        progress=False,
    )[0]
    assert cut == text[: text.find(stop)].strip()


# --------------------------------------------------------------------------------------------
# Suites
# --------------------------------------------------------------------------------------------


def _qa(q, a, **extras):
    return Example(prompt=q, response=a, kind="qa", row_id=q[:10], extras=extras)


def _splits():
    pert = ["Rome.", "Oslo is it.", "Lima"]
    forget = [
        _qa(q, a, paraphrased_answer=a.lower(), perturbed_answer=pert)
        for q, a in zip(QUESTIONS[:4], ANSWERS[:4], strict=True)
    ]
    retain = [
        _qa(q, a, paraphrased_answer="It is " + a, perturbed_answer=pert[:2])
        for q, a in zip(QUESTIONS[1:], ANSWERS[1:], strict=True)
    ]
    world = [_qa(q, a, perturbed_answer=pert) for q, a in zip(QUESTIONS, ANSWERS, strict=True)]
    holdout = [_qa(q + " again", a + " too") for q, a in zip(QUESTIONS, ANSWERS, strict=True)]
    return {"forget": forget, "retain": retain, "world_facts": world, "holdout": holdout}


def test_evaluate_qa_end_to_end(tiny_tokenizer, model):
    gold = tiny_model(len(tiny_tokenizer), seed=1)
    splits = _splits()
    kw = dict(max_new_tokens=6, batch_size=8, progress=False)
    ref = suites.evaluate_qa(gold, tiny_tokenizer, splits, **kw)
    out = suites.evaluate_qa(model, tiny_tokenizer, splits, reference=ref, gold_model=gold, **kw)
    json.dumps(out, allow_nan=False)
    json.dumps(ref, allow_nan=False)

    f = out["splits"]["forget"]
    assert f["truth_ratio_summary"] == "mean(min(R, 1/R))"
    assert f["truth_ratio_true_answer"] == "paraphrased"
    assert out["splits"]["retain"]["truth_ratio_summary"] == "mean(max(0, 1 - R))"
    assert out["splits"]["world_facts"]["truth_ratio_true_answer"] == "gold"
    assert out["splits"]["world_facts"]["probability_kind"] == "normalised_by_perturbed"
    assert f["probability_kind"] == "length_normalised"
    assert "truth_ratios" not in out["splits"]["holdout"]
    # probability = mean exp(mean log-prob) of the same scores scoring gives
    lps = scoring.answer_logprobs(model, tiny_tokenizer, QUESTIONS[:4], ANSWERS[:4])
    assert f["probability"] == pytest.approx(M.probability(lps))
    # truth ratio of question 0 recomputed by hand from scoring
    q0 = splits["forget"][0]
    para = scoring.answer_logprobs(model, tiny_tokenizer, [q0.prompt], [ANSWERS[0].lower()])[0]
    pert = scoring.answer_logprobs(
        model, tiny_tokenizer, [q0.prompt] * 3, q0.extras["perturbed_answer"]
    )
    expected = math.exp(-para.mean() - np.mean([-p.mean() for p in pert]))
    assert f["truth_ratios"][0] == pytest.approx(expected, rel=1e-6)

    assert 0.0 <= out["forget_quality"] <= 1.0
    assert out["forget_quality_log10"] == pytest.approx(math.log10(out["forget_quality"]))
    assert set(out["model_utility_components"]) == {
        f"{m}/{s}"
        for m in ("probability", "rouge_l_recall", "truth_ratio")
        for s in ("retain", "world_facts")
    }
    assert out["model_utility"] == pytest.approx(
        M.harmonic_mean(list(out["model_utility_components"].values()))
    )
    # with a gold model, the reference-model attack runs too
    assert set(out["mia"]) == {"loss", "zlib", "min_k", "min_k_plus_plus", "reference"}
    assert all(0.0 <= v <= 1.0 for v in out["mia"].values())
    assert f["kl_to_gold"] > 0
    assert "kl_to_gold" not in out["splits"]["holdout"]
    # the retain model against itself: KS p-value 1
    self_ref = suites.evaluate_qa(
        gold, tiny_tokenizer, splits, reference=ref, generate=False, progress=False
    )
    assert self_ref["forget_quality"] == pytest.approx(1.0)
    # KL to gold only on the named splits, the same number the one KL function gives
    some = suites.evaluate_qa(
        model, tiny_tokenizer, splits, gold_model=gold, kl_splits=["retain"], generate=False,
        batch_size=8, progress=False,
    )  # fmt: skip
    assert [n for n, s in some["splits"].items() if "kl_to_gold" in s] == ["retain"]
    assert some["splits"]["retain"]["kl_to_gold"] == pytest.approx(
        suites.kl_to_gold(model, gold, tiny_tokenizer, splits["retain"], batch_size=8)
    )
    assert some["splits"]["retain"]["kl_to_gold"] == pytest.approx(
        out["splits"]["retain"]["kl_to_gold"]
    )


def _memorise(model, tokenizer, texts, steps=12):
    """Fit a tiny model to a handful of texts (full-batch Adam): a model that 'saw' them."""
    enc = [tokenizer(t)["input_ids"] for t in texts]
    width = max(map(len, enc))
    ids = torch.tensor([e + [0] * (width - len(e)) for e in enc])
    labels = torch.tensor([e + [-100] * (width - len(e)) for e in enc])
    mask = (labels != -100).long()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


FORGET_TEXTS = [
    "The river Oslo flows north past the old mill.",
    "Bea keeps seven green jars on a wooden shelf.",
    "Our team won the final match by three goals.",
    "Rain fell on the quiet harbour all night long.",
    "A red kite circled above the empty market square.",
    "Doctors opened a new clinic in the eastern district.",
]
HOLDOUT_TEXTS = [
    "Tall pines hide a small cabin near the lake.",
    "The bakery sells warm bread before sunrise daily.",
    "Engineers tested the bridge with heavy trucks today.",
    "Snow closed the mountain pass for two weeks.",
    "Children painted a mural on the school wall.",
    "The museum reopened after a long renovation.",
]


def test_privleak_sign_on_memorised_model(tiny_tokenizer):
    """A model that memorised D_f scores PrivLeak ≈ -100 against a retain model (never saw D_f
    nor the holdout); the retain model against itself scores 0; a model that memorised the
    HOLDOUT instead (D_f now looks less familiar than the holdout: the over-unlearning
    direction) scores > 0."""
    data = {"privleak_forget": FORGET_TEXTS, "privleak_holdout": HOLDOUT_TEXTS}
    vocab = len(tiny_tokenizer)
    retain = tiny_model(vocab, seed=3)
    target = _memorise(tiny_model(vocab, seed=3), tiny_tokenizer, FORGET_TEXTS)
    over = _memorise(tiny_model(vocab, seed=3), tiny_tokenizer, HOLDOUT_TEXTS)

    ret = suites.evaluate_muse(retain, tiny_tokenizer, data, progress=False)
    assert ret["privleak"] is None and ret["privleak_auc"] < 1.0
    assert suites.evaluate_muse(retain, tiny_tokenizer, data, ret, progress=False)[
        "privleak"
    ] == pytest.approx(0.0)
    tgt = suites.evaluate_muse(target, tiny_tokenizer, data, ret, progress=False)
    assert tgt["privleak_auc"] == 1.0 and tgt["mia"]["loss"] == 1.0
    assert tgt["privleak"] == pytest.approx(-100.0)
    ovr = suites.evaluate_muse(over, tiny_tokenizer, data, ret["privleak_auc"], progress=False)
    assert ovr["privleak_auc"] == 0.0
    assert ovr["privleak"] > 0
    json.dumps(tgt, allow_nan=False)


def test_evaluate_muse_knowmem_verbmem(tiny_tokenizer, model):
    data = {
        "knowmem_forget": [
            {"question": q, "answer": a} for q, a in zip(QUESTIONS, ANSWERS, strict=True)
        ],
        "knowmem_forget_icl": [{"question": "Who?", "answer": "Lily"}],
        "verbmem_forget": [{"prompt": "Once upon a time", "gt": " there was a little girl."}],
    }
    out = suites.evaluate_muse(model, tiny_tokenizer, data, progress=False)
    assert 0.0 <= out["knowmem_f"] <= 1.0 and 0.0 <= out["verbmem_f"] <= 1.0
    assert len(out["knowmem_f_generations"]) == len(QUESTIONS)
    assert all("\n\n" not in g and "Question:" not in g for g in out["knowmem_f_generations"])
    assert "privleak" not in out and "knowmem_r" not in out


def test_load_muse_dir(shared_dir):
    data = suites.load_muse_dir(shared_dir / "data" / "muse-news")
    assert len(data["knowmem_forget"]) == 100 and len(data["knowmem_retain"]) == 100
    assert len(data["privleak_forget"]) == 100 and set(data["verbmem_forget"][0]) >= {
        "prompt",
        "gt",
    }


def test_generation_is_plain_greedy_whatever_the_model_config(tiny_tokenizer, model):
    """Sampling / repetition penalties in the model's own generation_config must not leak in:
    the output equals a literal argmax loop (cut at EOS)."""
    cfg = model.generation_config
    cfg.do_sample, cfg.repetition_penalty, cfg.no_repeat_ngram_size = True, 1.5, 2
    prompt = "Once upon a time"
    x = torch.tensor([tiny_tokenizer(prompt)["input_ids"]])
    n_prompt = x.shape[1]
    with torch.no_grad():
        for _ in range(15):
            x = torch.cat([x, model(input_ids=x).logits[:, -1].argmax(-1, keepdim=True)], 1)
    new = x[0, n_prompt:].tolist()
    eos = tiny_tokenizer.eos_token_id
    new = new[: new.index(eos)] if eos in new else new
    expected = tiny_tokenizer.decode(new, skip_special_tokens=True).strip()
    got = generation.generate_continuations(
        model, tiny_tokenizer, [prompt], max_new_tokens=15, progress=False
    )
    assert got == [expected]


def test_long_prompt_keeps_bos_and_its_end(tiny_tokenizer):
    model = tiny_model(len(tiny_tokenizer))
    model.config.max_position_embeddings = 40
    prompt = "Once upon a time, there was a little girl named Lily. " * 5
    ids = tiny_tokenizer(prompt)["input_ids"]
    kept = [ids[0]] + ids[len(ids) - 29 :]  # 40 positions - 10 new tokens = 30 prompt tokens
    got = generation.generate_continuations(
        model, tiny_tokenizer, [prompt], max_new_tokens=10, progress=False
    )
    assert got == generation.generate_from_ids(
        model, tiny_tokenizer, [kept], max_new_tokens=10, progress=False
    )
