"""Unilogit with ``fused=True``: LM head + loss in one chunked pass, same numbers as unfused.

Tolerances. In float64 the two paths agree to ~1e-16 (measured): they compute the same
closed form, only in another order, so any real discrepancy (a wrong shift, a missed bias,
the wrong hidden states) would show up as an O(1) relative error. In float32 the paths differ
by rounding only: the chunked matmul and logsumexp sum in another order (error ~ sqrt(V)·eps
relative, eps = 1.2e-7) and the backward accumulates ~T·B rank-1 products into the LM-head
gradient in another order; measured worst case 5e-7 of the largest gradient entry, so we
allow 1e-5 relative (to the tensor's largest entry) — 20x margin, still 4-5 orders of
magnitude below any real bug.
"""

from __future__ import annotations

import copy

import pytest
import torch

from tiny import qa_rows, tiny_llama, word_tokenizer
from unilogit import unlearn
from unilogit.errors import ConfigError
from unilogit.methods import StepBatch, forward_final_hidden, get_method

VOCAB = 97


def _model(dtype: torch.dtype, *, sharpen: float = 20.0, seed: int = 0) -> torch.nn.Module:
    """A tiny Llama whose LM head is scaled up so that p_k spans (0, 1) instead of ~1/V: at
    random init every p_k ≈ 1/V, where the Unilogit loss and its gradient are ~0."""
    model = tiny_llama(VOCAB, seed=seed).to(dtype).train()
    with torch.no_grad():
        model.lm_head.weight.mul_(sharpen)
    return model


def _batch(seed: int, rows: int = 3, length: int = 13) -> dict[str, torch.Tensor]:
    """Random ids, a 4-token prompt (-100) and one right-padded row."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, VOCAB, (rows, length), generator=gen)
    attention = torch.ones_like(ids)
    attention[1, length - 3 :] = 0
    ids[attention == 0] = 0
    labels = ids.clone()
    labels[:, :4] = -100
    labels[attention == 0] = -100
    return {"input_ids": ids, "attention_mask": attention, "labels": labels}


@torch.no_grad()
def _confident_batch(model, seed: int) -> dict[str, torch.Tensor]:
    """:func:`_batch` whose first row's targets are the model's own argmax (p_k up to ~1, the
    branch where log(1 - p_k) needs care); the other rows keep random targets (p_k small)."""
    batch = _batch(seed)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    first = batch["labels"][0]
    first[1:] = torch.where(first[1:] != -100, logits[0, :-1].argmax(-1), -100)
    return batch


def _loss_and_grads(model, fused: bool, retain: bool, **options):
    method = get_method(
        "unilogit", fused=fused, retain_loss="nll" if retain else None, chunk_size=5, **options
    )
    forget = _confident_batch(model, 1)
    step = StepBatch(model=model, forget={"forget": forget}, retain=_batch(2) if retain else None)
    model.zero_grad(set_to_none=True)
    terms = method.loss(step)
    terms.total().backward()
    values = {k: v.detach() for k, v in terms.values.items()}
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return values, grads


def _assert_close_to_max(actual, expected, rel):
    """|a - e| <= rel · max|e| elementwise (a tolerance relative to the tensor's scale)."""
    scale = expected.abs().max().clamp_min(1e-30)
    assert float((actual - expected).abs().max()) <= rel * float(scale)


@pytest.mark.parametrize(("dtype", "rel"), [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("retain", [False, True])
def test_fused_matches_unfused(dtype, rel, retain):
    model = _model(dtype)
    ref_values, ref_grads = _loss_and_grads(model, False, retain)
    values, grads = _loss_and_grads(model, True, retain)
    assert set(values) == set(ref_values) == ({"forget", "retain"} if retain else {"forget"})
    assert float(ref_values["forget"]) > 0.3  # far from p_k = 1/V, where L and ∇L vanish
    for k in ref_values:
        torch.testing.assert_close(values[k], ref_values[k], rtol=rel, atol=0.0)
    assert grads.keys() == ref_grads.keys() and len(grads) == len(list(model.parameters()))
    for name in ref_grads:
        _assert_close_to_max(grads[name], ref_grads[name], rel)


def test_fused_never_builds_full_logits():
    """The LM head runs on one position per row (logits_to_keep=1), not on (B, T)."""
    model = _model(torch.float32)
    shapes = []
    model.lm_head.register_forward_hook(lambda m, a, out: shapes.append(tuple(out.shape)))
    get_method("unilogit", fused=True, retain_loss=None).loss(
        StepBatch(model=model, forget={"forget": _batch(1)})
    ).total().backward()
    assert shapes == [(3, 1, VOCAB)]


def test_fused_hidden_states_are_the_lm_head_inputs():
    model = _model(torch.float64)
    batch = _batch(3)
    hidden, weight, bias = forward_final_hidden(model, batch)
    assert weight is model.lm_head.weight and bias is None
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(hidden @ weight.T, logits)


def test_fused_through_peft_lora_matches_unfused():
    from peft import LoraConfig, get_peft_model

    base = _model(torch.float64)
    lora = LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    model = get_peft_model(base, lora)
    ref_values, ref_grads = _loss_and_grads(model, False, True)
    values, grads = _loss_and_grads(model, True, True)
    assert grads.keys() == ref_grads.keys() and all("lora" in n for n in grads)
    for k in ref_values:
        torch.testing.assert_close(values[k], ref_values[k], rtol=1e-12, atol=0.0)
    for name in ref_grads:
        _assert_close_to_max(grads[name], ref_grads[name], 1e-12)


def test_fused_refuses_lora_on_the_lm_head():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(_model(torch.float32), LoraConfig(r=2, target_modules=["lm_head"]))
    with pytest.raises(ConfigError, match="plain nn.Linear LM head"):
        _loss_and_grads(model, True, False)


def test_fused_refuses_a_model_without_decoder():
    class Bigram(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.table = torch.nn.Parameter(torch.randn(VOCAB, VOCAB))

    with pytest.raises(ConfigError, match="get_decoder"):
        forward_final_hidden(Bigram(), _batch(1))


@pytest.mark.parametrize(
    "options",
    [
        {"divergence": "forward"},
        {"target": "reference"},
        {"implementation": "reference"},
        {"fused": "yes"},
    ],
)
def test_fused_option_errors(options):
    with pytest.raises(ConfigError):
        get_method("unilogit", **{"fused": True, **options})


def test_fused_option_is_recorded():
    cfg = get_method("unilogit", fused=True).config()
    assert cfg["fused"] is True and cfg["chunk_size"] == 1024
    assert get_method("unilogit").config()["fused"] is False


def test_fused_unlearn_run_gives_the_same_weights():
    """Six AdamW steps (forget + NLL retain, clipping on) through the real trainer.

    Adam divides by sqrt(v): a parameter whose gradient is pure rounding noise would get a
    noise-sized step of ±lr. Here every gradient is far above the noise (rounding ~1e-6 of
    the largest entry) except exact zeros (embedding rows of unseen tokens), which are zero in
    both paths, so the weights agree to float32 rounding accumulated over 6 steps."""
    tokenizer = word_tokenizer()
    base = tiny_llama(len(tokenizer), seed=0)
    with torch.no_grad():
        base.lm_head.weight.mul_(20.0)
    runs = []
    for fused in (False, True):
        model, history = unlearn(
            copy.deepcopy(base),
            tokenizer,
            qa_rows()[:4],
            qa_rows()[4:],
            method="unilogit",
            fused=fused,
            chunk_size=7,
            epochs=3,
            batch_size=2,
            lr=1e-3,
            progress=False,
            warmup_ratio=0.0,
        )
        assert len(history.steps) == 6
        runs.append((history, torch.cat([p.detach().flatten() for p in model.parameters()])))
    (h0, p0), (h1, p1) = runs
    for a, b in zip(h0.steps, h1.steps, strict=True):
        assert a["loss_forget"] == pytest.approx(b["loss_forget"], rel=1e-5)
        assert a["loss_retain"] == pytest.approx(b["loss_retain"], rel=1e-5)
    assert not torch.equal(p0, torch.cat([p.flatten() for p in base.parameters()]))
    torch.testing.assert_close(p1, p0, atol=2e-5, rtol=1e-4)
