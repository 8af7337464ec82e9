"""Tests of unilogit.fused: chunked linear + loss vs an unchunked plain-PyTorch reference.

The reference computes the full logits ``F.linear(h, W, b)`` in float32 (the same values the
fused code sees: bf16 inputs upcast), then the loss with ``F.cross_entropy`` or the literal
(reference) Unilogit implementation, and differentiates with autograd.

Tolerances:
* float64: 1e-10 -- only the summation order differs (chunked sums, accumulated weight grads).
* float32: value rtol 1e-5; gradients rtol 1e-4 with an absolute floor of 1e-5 × max|grad|:
  both sides accumulate the weight gradient over 141 positions in a different order
  (~sqrt(141) · 6e-8 relative) and the float32 reference Unilogit itself carries ~1e-6
  relative error (it subtracts O(log V) quantities), amplified where entries cancel.
* bf16: the loss is computed in float32 on both sides (rtol 1e-5, atol 1e-6); gradients are
  returned in bf16, so the float32 values are rounded to 8 significant bits (relative 2^-9),
  and two float32 values a few ulps apart can round to adjacent bf16 numbers (2^-8
  relative): rtol 2^-7 with a floor of 1e-3 × max|grad| for entries that suffer cancellation.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from unilogit import losses
from unilogit.errors import ConfigError
from unilogit.fused import fused_linear_cross_entropy, fused_linear_unilogit_loss

B, T, H, V = 3, 47, 31, 123  # odd shapes: 141 positions, chunk sizes below do not divide it

FUSED = {"cross_entropy": fused_linear_cross_entropy, "unilogit": fused_linear_unilogit_loss}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def reference_loss(kind: str, hidden, weight, targets, bias=None):
    logits = F.linear(
        hidden.to(torch.promote_types(hidden.dtype, torch.float32)),
        weight.to(torch.promote_types(weight.dtype, torch.float32)),
        None if bias is None else bias.to(torch.promote_types(bias.dtype, torch.float32)),
    )  # (..., V)
    if kind == "cross_entropy":
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    return losses.unilogit_loss(logits, targets, implementation="reference")


def make_inputs(dtype, with_bias=True, shape=(B, T), weight_scale=0.5):
    hidden = torch.randn(*shape, H, dtype=torch.float64).to(dtype).requires_grad_()
    weight = (torch.randn(V, H, dtype=torch.float64) * weight_scale).to(dtype).requires_grad_()
    bias = torch.randn(V, dtype=torch.float64).to(dtype).requires_grad_() if with_bias else None
    targets = torch.randint(0, V, shape)
    targets[torch.rand(shape) < 0.25] = -100
    return hidden, weight, bias, targets


def tolerances(dtype):
    if dtype == torch.float64:
        return {"rtol": 1e-10, "atol": 1e-10}, 1e-10, 1e-10
    if dtype == torch.float32:
        return {"rtol": 1e-5, "atol": 1e-6}, 1e-4, 1e-5
    return {"rtol": 1e-5, "atol": 1e-6}, 2**-7, 1e-3


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("kind", sorted(FUSED))
def test_fused_matches_unchunked(kind, with_bias, dtype) -> None:
    hidden, weight, bias, targets = make_inputs(dtype, with_bias)
    leaves = [x for x in (hidden, weight, bias) if x is not None]
    value = FUSED[kind](hidden, weight, targets, bias=bias, chunk_size=16)
    grads = torch.autograd.grad(value, leaves)
    expected = reference_loss(kind, hidden, weight, targets, bias)
    expected_grads = torch.autograd.grad(expected, leaves)
    value_tol, rtol, floor = tolerances(dtype)
    assert value.dtype == expected.dtype
    torch.testing.assert_close(value, expected, **value_tol)
    for g, e, leaf in zip(grads, expected_grads, leaves, strict=True):
        assert g.dtype == leaf.dtype and g.shape == leaf.shape
        torch.testing.assert_close(
            g.double(), e.double(), rtol=rtol, atol=floor * float(e.abs().max())
        )
    # the no-grad path computes the same value without building a graph
    with torch.no_grad():
        again = FUSED[kind](hidden, weight, targets, bias=bias, chunk_size=16)
    assert again.grad_fn is None
    torch.testing.assert_close(again, value.detach(), rtol=0, atol=0)


@pytest.mark.parametrize("chunk_size", [1, 7, 141, 1000])
def test_chunk_size_does_not_change_result(chunk_size: int) -> None:
    hidden, weight, bias, targets = make_inputs(torch.float64, shape=(141,))
    value = fused_linear_unilogit_loss(hidden, weight, targets, bias=bias, chunk_size=chunk_size)
    grads = torch.autograd.grad(value, (hidden, weight, bias))
    expected = losses.unilogit_loss(F.linear(hidden, weight, bias), targets)
    expected_grads = torch.autograd.grad(expected, (hidden, weight, bias))
    torch.testing.assert_close(value, expected, rtol=1e-10, atol=1e-10)
    for g, e in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-10)


def test_frozen_weight_and_grad_output_scaling() -> None:
    """Only the hidden states require grad (LoRA-style); grad_output multiplies the gradient."""
    hidden, weight, _, targets = make_inputs(torch.float64, with_bias=False)
    weight = weight.detach()
    loss = fused_linear_cross_entropy(hidden, weight, targets, chunk_size=10)
    (grad,) = torch.autograd.grad(3.0 * loss, hidden)
    expected = reference_loss("cross_entropy", hidden, weight, targets)
    (expected_grad,) = torch.autograd.grad(3.0 * expected, hidden)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-10)


def test_all_ignored_is_zero_with_zero_gradients() -> None:
    hidden, weight, bias, targets = make_inputs(torch.float32)
    targets = torch.full_like(targets, -100)
    for fn in FUSED.values():
        loss = fn(hidden, weight, targets, bias=bias, chunk_size=32)
        assert loss.item() == 0 and loss.grad_fn is not None
        grads = torch.autograd.grad(loss, (hidden, weight, bias))
        assert all((g == 0).all() for g in grads)


def test_ignored_rows_get_zero_hidden_gradient() -> None:
    hidden, weight, bias, targets = make_inputs(torch.float32)
    loss = fused_linear_unilogit_loss(hidden, weight, targets, bias=bias, chunk_size=20)
    (grad,) = torch.autograd.grad(loss, hidden)
    assert (grad[targets == -100] == 0).all()
    assert (grad[targets != -100].abs().sum(-1) > 0).all()


def test_fused_unilogit_extreme_logits_stay_finite() -> None:
    """Huge weights: logits of order ±1e3-1e4, p_k at 0 or 1 in float32."""
    hidden, weight, bias, targets = make_inputs(torch.float32, weight_scale=500.0)
    loss = fused_linear_unilogit_loss(hidden, weight, targets, bias=bias, chunk_size=16)
    grads = torch.autograd.grad(loss, (hidden, weight, bias))
    assert torch.isfinite(loss) and all(torch.isfinite(g).all() for g in grads)
    expected = losses.unilogit_loss(
        F.linear(hidden.double(), weight.double(), bias.double()), targets
    )
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_bad_arguments_raise() -> None:
    hidden, weight, bias, targets = make_inputs(torch.float32)
    with pytest.raises(ConfigError, match="chunk_size"):
        fused_linear_cross_entropy(hidden, weight, targets, chunk_size=0)
    with pytest.raises(ValueError, match="weight must have shape"):
        fused_linear_cross_entropy(hidden, weight[:, :5], targets)
    with pytest.raises(ValueError, match="targets must have shape"):
        fused_linear_cross_entropy(hidden, weight, targets[:, :3])
    with pytest.raises(ValueError, match="bias must have shape"):
        fused_linear_cross_entropy(hidden, weight, targets, bias=bias[:3])
    with pytest.raises(ValueError, match="at least 2"):
        fused_linear_unilogit_loss(hidden, weight[:1], torch.zeros_like(targets))


@pytest.mark.parametrize("kind", sorted(FUSED))
def test_sum_reduction_matches_the_unfused_sum(kind) -> None:
    """``reduction="sum"`` (float64): value and gradients equal the unfused losses' sum over
    supervised positions, i.e. the mean times their count. Before: no ``reduction`` argument
    (TypeError)."""
    hidden, weight, bias, targets = make_inputs(torch.float64, shape=(3, 47))
    leaves = (hidden, weight, bias)
    unfused = {"cross_entropy": losses.nll_loss, "unilogit": losses.unilogit_loss}[kind]
    value = FUSED[kind](hidden, weight, targets, bias=bias, chunk_size=31, reduction="sum")
    grads = torch.autograd.grad(value, leaves)
    expected = unfused(F.linear(hidden, weight, bias), targets, reduction="sum")
    expected_grads = torch.autograd.grad(expected, leaves)
    torch.testing.assert_close(value, expected, rtol=1e-10, atol=1e-10)
    for g, e in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-10)
    n = int((targets != -100).sum())
    mean = FUSED[kind](hidden, weight, targets, bias=bias, chunk_size=31)
    torch.testing.assert_close(value, mean * n, rtol=1e-12, atol=0)
    with torch.no_grad():  # the no-grad path too
        torch.testing.assert_close(
            FUSED[kind](hidden, weight, targets, bias=bias, reduction="sum"), value.detach()
        )
    with pytest.raises(ConfigError, match="reduction must be 'mean' or 'sum'"):
        FUSED[kind](hidden, weight, targets, reduction="none")
