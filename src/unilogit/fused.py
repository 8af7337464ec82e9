"""Chunked "linear + loss": the LM head and the loss in one pass, without (N, V) logits.

With a 128k vocabulary the logits of a modest batch (8 × 512 positions) take 2 GiB in
float32, and autograd keeps more copies for the backward pass. Here the forward pass walks
chunks of ``chunk_size`` positions: for each chunk it computes the chunk's logits in the compute
dtype (float32, or float64 for float64 inputs), the chunk's loss, and -- analytically -- the
gradient of the loss with respect to those logits; it then turns that into the chunk's
gradient w.r.t. the hidden states (stored) and accumulates the weight (and bias) gradients.
The backward pass only multiplies the stored gradients by ``grad_output``.

Peak extra memory: one chunk of logits (chunk_size × V), an upcast copy of the weight when it
is not already in the compute dtype, and the gradient buffers (V × H for the weight, only when
the weight requires a gradient). Under ``torch.no_grad()`` or when no input requires a gradient,
only the loss is computed.

Each chunk's summed loss (and gradient) is divided by the TOTAL number of supervised positions,
so the chunks add up to the unchunked mean exactly (up to summation order). With
``reduction="sum"`` nothing is divided: the sum over supervised positions, as the unfused losses
give it (for token-weighted gradient accumulation: divide once by the step's token count).

Usage (a causal LM; shift so that row t predicts token t + 1)::

    hidden = model.model(input_ids, attention_mask=mask).last_hidden_state  # (B, T, H)
    loss = fused_linear_unilogit_loss(
        hidden[:, :-1], model.lm_head.weight, labels[:, 1:], chunk_size=1024
    )
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .errors import ConfigError
from .losses import IGNORE_INDEX, _check_reduction, loss_and_logit_grad

_KINDS = ("cross_entropy", "unilogit")


def _fused_forward(
    hidden: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    targets: Tensor,
    kind: str,
    chunk_size: int,
    ignore_index: int,
    reduction: str,
    need: tuple[bool, bool, bool],
) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
    """Loss and the gradients in ``need`` = (hidden, weight, bias) that are requested.

    Shapes: hidden (N, H), weight (V, H), bias (V,) or None, targets (N,).
    Returns the scalar loss (compute dtype; ``reduction`` "mean" or "sum" over supervised
    positions) and gradients in the inputs' dtypes.
    """
    need_hidden, need_weight, need_bias = need
    compute = torch.promote_types(torch.promote_types(hidden.dtype, weight.dtype), torch.float32)
    w = weight.to(compute)  # (V, H), a copy only when upcasting
    b = bias.to(compute) if bias is not None else None  # (V,)
    n_rows, vocab = hidden.shape[0], weight.shape[0]
    total = torch.zeros((), dtype=compute, device=hidden.device)
    grad_hidden = torch.empty_like(hidden, dtype=compute) if need_hidden else None  # (N, H)
    grad_weight = torch.zeros_like(w) if need_weight else None  # (V, H)
    grad_bias = torch.zeros(vocab, dtype=compute, device=w.device) if need_bias else None  # (V,)
    for start in range(0, n_rows, chunk_size):
        stop = min(start + chunk_size, n_rows)
        h = hidden[start:stop].to(compute)  # (C, H)
        logits = h @ w.T if b is None else torch.addmm(b, h, w.T)  # (C, V)
        loss, dlogits = loss_and_logit_grad(logits, targets[start:stop], kind, ignore_index)
        total += loss
        if grad_hidden is not None:
            grad_hidden[start:stop] = dlogits @ w  # (C, H)
        if grad_weight is not None:
            grad_weight.addmm_(dlogits.T, h)  # (V, H) += (V, C) @ (C, H)
        if grad_bias is not None:
            grad_bias += dlogits.sum(dim=0)  # (V,)
    n_supervised = (targets != ignore_index).sum().clamp_min(1).to(compute)  # ()
    # () each chunk's sum / the TOTAL supervised token count; "sum": the sums themselves
    scale = torch.ones_like(n_supervised) if reduction == "sum" else 1.0 / n_supervised
    grads = (
        None if g is None else (g * scale).to(like.dtype)
        for g, like in ((grad_hidden, hidden), (grad_weight, weight), (grad_bias, bias))
    )
    return (total * scale, *grads)


class _FusedLinearLoss(torch.autograd.Function):
    """Autograd wrapper: gradients are computed in ``forward`` and scaled in ``backward``."""

    @staticmethod
    def forward(
        ctx: Any,
        hidden: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        targets: Tensor,
        options: tuple[str, int, int, str],
    ) -> Tensor:
        need = tuple(ctx.needs_input_grad[:3])
        loss, *grads = _fused_forward(hidden, weight, bias, targets, *options, need=need)
        ctx.save_for_backward(*grads)
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, ...]:
        grads = tuple(None if g is None else g * grad_output.to(g.dtype) for g in ctx.saved_tensors)
        return (*grads, None, None)  # no gradient for targets and options


def _fused_loss(
    kind: str,
    hidden: Tensor,
    weight: Tensor,
    targets: Tensor,
    bias: Tensor | None,
    chunk_size: int,
    ignore_index: int,
    reduction: str = "mean",
) -> Tensor:
    _check_reduction(reduction)
    if kind not in _KINDS:
        raise ConfigError(f"unknown fused loss {kind!r}; valid: {', '.join(_KINDS)}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    if weight.dim() != 2 or hidden.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"weight must have shape (V, H) with H = hidden.shape[-1] = {hidden.shape[-1]}, "
            f"got {tuple(weight.shape)}"
        )
    if targets.shape != hidden.shape[:-1]:
        raise ValueError(
            f"targets must have shape {tuple(hidden.shape[:-1])}, got {tuple(targets.shape)}"
        )
    if bias is not None and bias.shape != weight.shape[:1]:
        raise ValueError(f"bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
    if kind == "unilogit" and weight.shape[0] < 2:
        raise ValueError(
            f"Unilogit needs a vocabulary of at least 2 tokens, got V={weight.shape[0]}"
        )
    hidden_2d = hidden.reshape(-1, hidden.shape[-1])  # (N, H)
    targets_1d = targets.reshape(-1)  # (N,)
    options = (kind, chunk_size, ignore_index, reduction)
    inputs = (hidden, weight) if bias is None else (hidden, weight, bias)
    if torch.is_grad_enabled() and any(x.requires_grad for x in inputs):
        return _FusedLinearLoss.apply(hidden_2d, weight, bias, targets_1d, options)
    with torch.no_grad():
        loss, *_ = _fused_forward(
            hidden_2d, weight, bias, targets_1d, *options, need=(False, False, False)
        )
    return loss


def fused_linear_cross_entropy(
    hidden: Tensor,
    weight: Tensor,
    targets: Tensor,
    *,
    bias: Tensor | None = None,
    chunk_size: int = 1024,
    ignore_index: int = IGNORE_INDEX,
    reduction: str = "mean",
) -> Tensor:
    """Mean NLL of ``softmax(hidden @ weight.T + bias)`` over supervised positions, chunked.

    Equals ``unilogit.losses.nll_loss(F.linear(hidden, weight, bias), targets)`` (logits in
    float32) without materialising the (N, V) logits. Gradient per chunk:
    ``∂L/∂z = (softmax(z) - onehot(k)) / n_supervised``.

    Args:
        hidden: (N, H) or (B, T, H) final hidden states, ALREADY aligned with ``targets``
            (for a causal LM: ``hidden[:, :-1]`` with ``labels[:, 1:]``).
        weight: (V, H) LM-head weight.
        targets: (N,) or (B, T) target ids, ``ignore_index`` where unsupervised.
        bias: optional (V,) LM-head bias.
        chunk_size: positions per chunk (memory ~ chunk_size × V compute-dtype values).
        ignore_index: label of unsupervised positions.
        reduction: ``"mean"`` over supervised positions, or their ``"sum"`` (gradient
            ``softmax(z) - onehot(k)``, undivided).

    Returns:
        Scalar loss (float32, or float64 for float64 inputs); 0 if nothing is supervised.
    """
    return _fused_loss(
        "cross_entropy", hidden, weight, targets, bias, chunk_size, ignore_index, reduction
    )


def fused_linear_unilogit_loss(
    hidden: Tensor,
    weight: Tensor,
    targets: Tensor,
    *,
    bias: Tensor | None = None,
    chunk_size: int = 1024,
    ignore_index: int = IGNORE_INDEX,
    reduction: str = "mean",
) -> Tensor:
    """Unilogit (reverse KL, targets from the current logits) on ``hidden @ weight.T + bias``,
    chunked: equals ``unilogit.losses.unilogit_loss(F.linear(hidden, weight, bias), targets)``
    in value and gradient without materialising the (N, V) logits.

    Per position ``L = p_k log(V p_k) + (1 - p_k) log(V (1 - p_k)/(V - 1))`` and
    ``∂L/∂z = -w (softmax(z) - onehot(k))``, ``w = p_k log(p_k (V - 1)/(1 - p_k))``; the mean
    is over supervised positions (``reduction="sum"``: the sum, like
    ``unilogit_loss(..., reduction="sum")``). Arguments as :func:`fused_linear_cross_entropy`;
    V ≥ 2.
    """
    return _fused_loss(
        "unilogit", hidden, weight, targets, bias, chunk_size, ignore_index, reduction
    )
