"""``unilogit-authors``: Unilogit weighted as the authors' ``F.kl_div(reduction="mean")``,
i.e. forget term = ours / V, as its own registered method (label, run id, results).

Tolerances. With V a power of two (128) dividing by V is exact in every float format, so value
and gradients must equal ours / V bit for bit. With V = 97 the loss (float64) matches to 1e-13
relative; the gradients to 1e-6 of their largest entry, because the tiny Llama's RMSNorm
computes in float32 even in a float64 model (measured 1.1e-7: float32 rounding of a gradient
scaled by 1/97). A wrong factor (V - 1, the token count, 1) is off by at least 1 %.
"""

from __future__ import annotations

import pytest
import torch

from tiny import tiny_llama
from unilogit.errors import ConfigError
from unilogit.experiment.grid import Grid
from unilogit.methods import METHODS, StepBatch, get_method, parse_option


def _model(vocab: int, seed: int = 0) -> torch.nn.Module:
    """A float64 tiny Llama whose LM head is sharpened so that p_k spans (0, 1)."""
    model = tiny_llama(vocab, seed=seed).to(torch.float64).train()
    with torch.no_grad():
        model.lm_head.weight.mul_(20.0)
    return model


def _batch(vocab: int, seed: int, rows: int = 3, length: int = 11) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, vocab, (rows, length), generator=gen)
    attention = torch.ones_like(ids)
    attention[1, length - 3 :] = 0
    labels = ids.clone()
    labels[:, :4] = -100
    labels[attention == 0] = -100
    return {"input_ids": ids, "attention_mask": attention, "labels": labels}


def _terms_and_grads(name: str, retain: bool, vocab: int = 97, **options):
    model = _model(vocab)
    method = get_method(name, retain_loss="nll" if retain else None, **options)
    retain_batch = _batch(vocab, 2) if retain else None
    step = StepBatch(model=model, forget={"forget": _batch(vocab, 1)}, retain=retain_batch)
    terms = method.loss(step)
    terms.total().backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return {k: v.detach() for k, v in terms.values.items()}, grads


def _close(actual: torch.Tensor, expected: torch.Tensor, rel: float = 1e-13) -> None:
    scale = expected.abs().max().clamp_min(1e-300)
    assert float((actual - expected).abs().max()) <= rel * float(scale)


def test_registered_with_its_own_name_and_option():
    assert "unilogit-authors" in METHODS and "unilogit" in METHODS
    authors = get_method("unilogit-authors")
    assert authors.config()["method"] == "unilogit-authors"
    assert authors.config()["kl_mean"] == "elements"
    assert get_method("unilogit").config()["kl_mean"] == "positions"
    assert authors.retain_kind == "nll" and not authors.needs_reference
    assert parse_option("unilogit", "kl_mean", "elements") == "elements"
    with pytest.raises(ConfigError, match="kl_mean"):
        get_method("unilogit", kl_mean="tokens")


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize(("vocab", "grad_rel"), [(128, 0.0), (97, 1e-6)])
def test_forget_term_and_gradient_are_ours_over_v(fused, vocab, grad_rel):
    """Forget only: value_authors = value_ours / V and every parameter gradient likewise."""
    opts = {"fused": fused, "chunk_size": 4, "vocab": vocab}
    ours, g_ours = _terms_and_grads("unilogit", False, **opts)
    theirs, g_theirs = _terms_and_grads("unilogit-authors", False, **opts)
    assert float(ours["forget"]) > 1e-3  # far from 0 (float64), so the ratio is a real check
    _close(theirs["forget"], ours["forget"] / vocab, 0.0 if vocab == 128 else 1e-13)
    assert g_ours.keys() == g_theirs.keys()
    for name in g_ours:
        _close(g_theirs[name], g_ours[name] / vocab, grad_rel)


def test_same_as_the_option_on_unilogit_and_retain_term_unchanged():
    """With the NLL retain term: the retain term is the same, only the forget term is / V;
    ``unilogit -O kl_mean=elements`` is the same objective as ``unilogit-authors``."""
    ours, _ = _terms_and_grads("unilogit", True)
    theirs, g_theirs = _terms_and_grads("unilogit-authors", True)
    option, g_option = _terms_and_grads("unilogit", True, kl_mean="elements")
    _close(theirs["retain"], ours["retain"], 0.0)
    _close(theirs["forget"], ours["forget"] / 97)
    for name in g_theirs:
        torch.testing.assert_close(g_option[name], g_theirs[name], rtol=0, atol=0)


def test_grid_and_run_ids_keep_the_two_weightings_apart():
    grid = Grid.make("unilogit,unilogit-authors", [1e-3], [1], [0, 1])
    runs = grid.runs()
    assert len(runs) == 4
    assert len({r.run_id for r in runs}) == 4 and len({r.key for r in runs}) == 4
    assert {r.method for r in runs} == {"unilogit", "unilogit-authors"}
    assert runs[2].run_id == "unilogit-authors-lr0.001-ep1-s0"


def test_methods_command_lists_it(capsys):
    from unilogit.cli.main import main

    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("unilogit-authors "))
    assert "/ V" in line
