"""``reduction="sum"`` of every loss against literal float64 sums (values and gradients).

The sum is what token-weighted gradient accumulation needs (Hugging Face's
``num_items_in_batch``): ``Σ_micro sum(micro) / N_total`` equals the mean over one big batch.
Tolerance 1e-10 in float64: our code and the literal sums differ only in the order of float64
operations (~1e-15 each).
"""

from __future__ import annotations

import math

import pytest
import torch

from unilogit import losses
from unilogit.errors import ConfigError

F64 = {"rtol": 1e-10, "atol": 1e-10}
B, T, V = 3, 5, 7


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    z = (3 * torch.randn(B, T, V, dtype=torch.float64)).requires_grad_()
    ref = 3 * torch.randn(B, T, V, dtype=torch.float64)
    t = torch.randint(0, V, (B, T))
    t[0, :2] = -100  # a prompt
    t[2, 3:] = -100  # padding
    return z, ref, t


def _positions(t: torch.Tensor) -> list[tuple[int, int]]:
    return [tuple(i) for i in torch.nonzero(t != -100).tolist()]


def _softmax(x: torch.Tensor) -> torch.Tensor:
    e = torch.exp(x)
    return e / e.sum()


def lit_nll_sum(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return torch.stack([-torch.log(_softmax(z[i])[t[i]]) for i in _positions(t)]).sum()


def lit_unilogit_sum(z: torch.Tensor, t: torch.Tensor, forward: bool = False) -> torch.Tensor:
    terms = []
    for i in _positions(t):
        k = int(t[i])
        src = z[i].detach().clone()
        others = torch.cat([src[:k], src[k + 1 :]])
        src[k] = torch.log(torch.exp(others).sum()) - math.log(V - 1)
        q, p = _softmax(src), _softmax(z[i])
        kl = (q * (q.log() - p.log())) if forward else (p * (p.log() - q.log()))
        terms.append(kl.sum())
    return torch.stack(terms).sum()


def lit_undial_sum(z: torch.Tensor, ref: torch.Tensor, t: torch.Tensor, gamma: float):
    terms = []
    for i in _positions(t):
        teacher = ref[i].clone()
        teacher[t[i]] -= gamma
        terms.append(-(_softmax(teacher) * torch.log(_softmax(z[i]))).sum())
    return torch.stack(terms).sum()


def lit_kl_sum(z: torch.Tensor, ref: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    terms = []
    for i in _positions(t):
        q, p = _softmax(ref[i]), _softmax(z[i])
        terms.append((q * (q.log() - p.log())).sum())
    return torch.stack(terms).sum()


def _check(ours: torch.Tensor, literal: torch.Tensor, x: torch.Tensor) -> None:
    torch.testing.assert_close(ours, literal, **F64)
    (g_ours,) = torch.autograd.grad(ours, x)
    (g_lit,) = torch.autograd.grad(literal, x)
    torch.testing.assert_close(g_ours, g_lit, **F64)


def test_token_losses_sum_is_the_literal_sum():
    z, ref, t = _inputs()
    _check(losses.nll_loss(z, t, reduction="sum"), lit_nll_sum(z, t), z)
    _check(losses.ga_loss(z, t, reduction="sum"), -lit_nll_sum(z, t), z)
    for impl in ("fast", "reference"):
        ours = losses.unilogit_loss(z, t, implementation=impl, reduction="sum")
        _check(ours, lit_unilogit_sum(z, t), z)
    ours = losses.unilogit_loss(z, t, divergence="forward", reduction="sum")
    _check(ours, lit_unilogit_sum(z, t, forward=True), z)
    _check(
        losses.undial_loss(z, ref, t, gamma=3.0, reduction="sum"),
        lit_undial_sum(z, ref, t, 3.0),
        z,
    )
    _check(losses.kl_retain_loss(z, ref, t, reduction="sum"), lit_kl_sum(z, ref, t), z)


def test_sum_is_mean_times_count_and_accumulates_to_the_big_batch_mean():
    """Two micro-batches' sums divided by the total count = the mean over both at once."""
    z, _, t = _inputs()
    n = int((t != -100).sum())
    mean = losses.unilogit_loss(z, t)
    torch.testing.assert_close(losses.unilogit_loss(z, t, reduction="sum"), mean * n, **F64)
    parts = [losses.unilogit_loss(z[a:b], t[a:b], reduction="sum") for a, b in ((0, 1), (1, 3))]
    torch.testing.assert_close((parts[0] + parts[1]) / n, mean, **F64)


def test_sequence_losses_sum_over_sequences():
    pol = torch.randn(4, dtype=torch.float64, requires_grad=True)
    ref = torch.randn(4, dtype=torch.float64)
    lengths = torch.tensor([3, 1, 0, 5])

    def logsig(x: torch.Tensor) -> torch.Tensor:
        return -torch.log(1 + torch.exp(-x))

    lit = (-(2 / 0.5) * logsig(-0.5 * (pol - ref))).sum()
    _check(losses.npo_loss(pol, ref, beta=0.5, reduction="sum"), lit, pol)
    n = lengths.clamp_min(1).double()
    lit = (-(2 / 2.5) * logsig(-(2.5 / n) * pol - 0.3)).sum()
    ours = losses.simnpo_loss(pol, lengths, beta=2.5, gamma=0.3, reduction="sum")
    _check(ours, lit, pol)
    rej = torch.randn(4, dtype=torch.float64)
    ref_rej = torch.randn(4, dtype=torch.float64)
    lit = (-(2 / 0.1) * logsig(0.1 * ((pol - ref) - (rej - ref_rej)))).sum()
    _check(losses.dpo_loss(pol, rej, ref, ref_rej, beta=0.1, reduction="sum"), lit, pol)


def test_rmu_losses_sum_over_masked_positions():
    h = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    target = torch.randn(2, 3, 4, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    lit = sum(((h[b, s] - target[b, s]) ** 2).mean() for b, s in [(0, 0), (0, 1), (1, 0)])
    _check(losses.rmu_retain_loss(h, target, mask, reduction="sum"), lit, h)
    control = torch.randn(4, dtype=torch.float64)
    lit = sum(((h[b, s] - control) ** 2).mean() for b, s in [(0, 0), (0, 1), (1, 0)])
    _check(losses.rmu_loss(h, control, mask, reduction="sum"), lit, h)


def test_empty_sum_is_a_connected_zero_and_bad_reduction_is_refused():
    z = torch.randn(2, 3, V, dtype=torch.float64, requires_grad=True)
    t = torch.full((2, 3), -100)
    loss = losses.unilogit_loss(z, t, reduction="sum")
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.equal(z.grad, torch.zeros_like(z))
    with pytest.raises(ConfigError, match="reduction must be"):
        losses.nll_loss(z, t, reduction="none")
    with pytest.raises(ConfigError, match="reduction must be"):
        losses.npo_loss(torch.zeros(2), torch.zeros(2), reduction="avg")


def test_bf16_sum_gradient_matches_float64():
    """The low-precision path stores gradients unscaled for the sum (one bf16 rounding)."""
    z, _, t = _inputs()
    zb = z.detach().to(torch.bfloat16).requires_grad_()
    z64 = zb.detach().double().requires_grad_()
    losses.nll_loss(zb, t, reduction="sum").backward()
    lit_nll_sum(z64, t).backward()
    torch.testing.assert_close(zb.grad.double(), z64.grad, rtol=2**-8, atol=1e-5)
