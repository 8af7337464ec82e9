"""Exact memorization, extraction strength, the reference-model and gradient-norm attacks:
hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tiny import tiny_llama
from unilogit.errors import DataError
from unilogit.eval import metrics as M
from unilogit.eval import scoring
from unilogit.eval.gradnorm import gradnorm_scores
from unilogit.eval.memorization import exact_memorization, extraction_strength


def test_exact_memorization_by_hand():
    assert exact_memorization([1, 0, 1, 1]) == pytest.approx(0.75)
    assert exact_memorization([0, 0]) == 0.0
    with pytest.raises(DataError):
        exact_memorization([])


@pytest.mark.parametrize(
    ("matches", "zero", "one_over_n"),
    [
        ([1, 1, 1, 1], 1.0, 1.0),  # fully extracted: k = 0
        ([0, 1, 0, 1, 1], 0.4, 0.4),  # suffix from k = 3 of 5
        ([0, 0, 1], 1 / 3, 1 / 3),  # only the last token: k = 2
        ([1, 1, 0], 0.0, 1 / 3),  # nothing: k = n exactly, n - 1 in open-unlearning
    ],
)
def test_extraction_strength_by_hand(matches, zero, one_over_n):
    assert extraction_strength(matches) == pytest.approx(zero)
    assert extraction_strength(matches, "one_over_n") == pytest.approx(one_over_n)


def test_extraction_strength_rejects_unknown_rule():
    with pytest.raises(DataError, match="no_match"):
        extraction_strength([1], "half")


def test_top1_matches_argmax(tiny_tokenizer):
    model = tiny_llama(len(tiny_tokenizer), seed=3)
    s = scoring.answer_token_scores(model, tiny_tokenizer, ["Who wrote it?"], ["Ann did."])[0]
    enc_ids = tiny_tokenizer("Ann did.")["input_ids"]
    assert s.top1.dtype == bool and s.top1.shape == s.logprobs.shape
    assert len(s.top1) >= len(enc_ids) - 1
    # recompute: argmax of a full forward pass at the scored positions
    from unilogit.data import Example, encode_example

    enc = encode_example(tiny_tokenizer, Example("Who wrote it?", "Ann did.", "qa", "r", {}))
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([enc.input_ids])).logits[0, :-1]
    labels = torch.tensor(enc.labels[1:])
    keep = labels != -100
    want = (logits[keep].argmax(-1) == labels[keep]).numpy()
    assert (s.top1 == want).all()


def test_reference_attack_by_hand():
    lp = [np.array([-1.0, -3.0]), np.array([-0.5, -0.5])]  # NLL 2.0 and 0.5
    out = M.mia_scores(lp, reference_nll=[1.5, 1.0])
    assert out["reference"] == pytest.approx([-(2.0 - 1.5), -(0.5 - 1.0)])
    with pytest.raises(DataError, match="reference NLLs"):
        M.mia_scores(lp, reference_nll=[1.0])


def test_gradnorm_matches_autograd_and_restores_grads(tiny_tokenizer):
    model = tiny_llama(len(tiny_tokenizer), seed=4)
    for w in model.parameters():
        w.grad = torch.full_like(w, 0.5)
    got = gradnorm_scores(model, tiny_tokenizer, ["Q one?", "Q two?"], ["A one.", "A b."])
    # grads and eval mode restored
    assert all(torch.equal(w.grad, torch.full_like(w, 0.5)) for w in model.parameters())
    assert not model.training
    from unilogit.data import Example, encode_example

    for i, (q, a) in enumerate([("Q one?", "A one."), ("Q two?", "A b.")]):
        enc = encode_example(tiny_tokenizer, Example(q, a, "qa", "r", {}))
        model.zero_grad()
        logits = model(input_ids=torch.tensor([enc.input_ids])).logits[0, :-1]
        labels = torch.tensor(enc.labels[1:])
        keep = labels != -100
        lp = torch.log_softmax(logits[keep], -1).gather(-1, labels[keep, None])
        (-lp.mean()).backward()
        want = torch.stack([w.grad.norm() for w in model.parameters()]).mean()
        assert got[i] == pytest.approx(-float(want), rel=1e-5)
    with pytest.raises(DataError, match="p must be"):
        gradnorm_scores(model, tiny_tokenizer, ["Q?"], ["A."], p=3)


def test_completion_scores_only_the_text(tiny_tokenizer):
    model = tiny_llama(len(tiny_tokenizer), seed=5)
    s = scoring.completion_token_scores(
        model, tiny_tokenizer, ["Once upon"], ["a time there was"], insert_space=True
    )[0]
    prefix = tiny_tokenizer("Once upon")["input_ids"]
    full = tiny_tokenizer("Once upon a time there was")["input_ids"]
    assert len(s.logprobs) == len(full) - len(prefix)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([full])).logits[0, :-1]
    lp = torch.log_softmax(logits, -1)[torch.arange(len(full) - 1), torch.tensor(full[1:])]
    assert np.allclose(s.logprobs, lp[len(prefix) - 1 :].numpy(), atol=1e-5)
    with pytest.raises(DataError, match="adds no token"):
        scoring.completion_token_scores(model, tiny_tokenizer, ["Once upon"], [""])
