"""Unlearning losses as pure tensor functions (no trainer, model or accelerator state).

Conventions (see ``docs/CONTRACTS.md``):

* ``logits`` have shape ``(..., V)`` and ``targets`` the same leading shape ``(...)``, already
  aligned: ``logits[..., t, :]`` predicts ``targets[..., t]``. Use :func:`shift_labels` to turn
  HF-style unshifted ``labels`` into aligned targets.
* ``ignore_index`` (``-100``) marks positions that are not supervised (prompt, padding).
* Token-level losses are means over the supervised positions; sequence-level losses
  (NPO, SimNPO, DPO) are means over sequences. Every loss takes ``reduction="mean" | "sum"``:
  ``"sum"`` returns the sum over the same units (tokens, sequences or positions), for
  token-weighted gradient accumulation: divide the sum by the count of the whole accumulated
  batch (Hugging Face's ``num_items_in_batch``), not by each micro-batch's own count.
* Everything is computed in at least float32: bf16/fp16 inputs are upcast, float64 stays float64.
  The returned loss has that compute dtype; gradients flow back in the input's dtype.
* Empty inputs: when there is no supervised position (or no sequence), a loss returns ``0``
  that is still connected to its inputs' graph, so ``loss.backward()`` works and gives zero
  gradients instead of raising or producing NaN.

The mathematics is documented in ``docs/methods.md`` (shared docs); each docstring restates
the formula it implements.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from .errors import ConfigError

IGNORE_INDEX = -100

#: The closed-form losses upcast at most this many logits at a time (64 MiB in float32).
_CHUNK_ELEMENTS = 1 << 24


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for bf16/fp16/float32, float64 for float64."""
    return torch.promote_types(dtype, torch.float32)


def _upcast(x: Tensor) -> Tensor:
    """``x`` in its compute dtype (no copy when it already is float32/float64)."""
    return x.to(_compute_dtype(x.dtype))


def _check_targets(logits: Tensor, targets: Tensor, name: str = "logits") -> None:
    if targets.shape != logits.shape[:-1]:
        raise ValueError(
            f"targets must have shape {tuple(logits.shape[:-1])} (the leading dimensions of "
            f"{name} {tuple(logits.shape)}), got {tuple(targets.shape)}"
        )


def _check_same_shape(a: Tensor, b: Tensor, names: str) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{names} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def _check_beta(beta: float) -> None:
    if not beta > 0:
        raise ConfigError(f"beta must be > 0, got {beta!r}")


#: The reductions every loss accepts: the mean or the sum over its units.
REDUCTIONS = ("mean", "sum")


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ConfigError(f"reduction must be 'mean' or 'sum', got {reduction!r}")


def _masked_mean(values: Tensor, mask: Tensor, reduction: str = "mean") -> Tensor:
    """Mean (or, with ``reduction="sum"``, sum) of ``values`` over the ``True`` entries of
    ``mask`` (same shape).

    With no ``True`` entry the result is a zero that keeps ``values``' grad_fn.
    """
    _check_reduction(reduction)
    total = torch.where(mask, values, 0.0).sum()  # () ; masked entries never reach the sum
    return total if reduction == "sum" else total / mask.sum().clamp_min(1)


def _mean(values: Tensor, reduction: str = "mean") -> Tensor:
    """Mean (or sum) over a (B,) vector; 0 (still on the graph) for B = 0."""
    _check_reduction(reduction)
    return values.sum() if reduction == "sum" else values.sum() / max(values.numel(), 1)


def _gold_log_prob(logits: Tensor, targets: Tensor, ignore_index: int) -> tuple[Tensor, Tensor]:
    """log p_k at every position with the max-shift trick (one reduction and one gather).

    Shifting by the row maximum before exponentiating keeps log p_k accurate to relative
    precision even for logits of magnitude 1e4 (``z_k - logsumexp(z)`` would lose ~1e-3 in
    float32 there). No log-softmax over the vocabulary is materialised.

    Returns:
        logp_k: (...) log-probability of the target (graph-connected; garbage at ignored rows).
        mask: (...) bool, True at supervised positions.
    """
    _check_targets(logits, targets)
    z = _upcast(logits)  # (..., V)
    mask = targets != ignore_index  # (...)
    gold = torch.where(mask, targets, 0)  # (...) safe to gather
    shifted = z - z.detach().amax(dim=-1, keepdim=True)  # (..., V), row max is 0
    log_norm = shifted.exp().sum(dim=-1).log()  # (...)
    logp_k = shifted.gather(-1, gold.unsqueeze(-1)).squeeze(-1) - log_norm  # (...)
    return logp_k, mask


# --------------------------------------------------------------------------------------------
# Label alignment and log-likelihoods
# --------------------------------------------------------------------------------------------


def shift_labels(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Align HF-style unshifted labels with the logits that predict them.

    Args:
        logits: (B, T, V) causal-LM logits; position t predicts token t + 1.
        labels: (B, T) = input_ids with -100 on prompt and padding.

    Returns:
        ``(logits[:, :-1], labels[:, 1:])``: (B, T-1, V) and (B, T-1), views (no copy).
    """
    _check_targets(logits, labels)
    return logits[..., :-1, :], labels[..., 1:]


def token_logps(logits: Tensor, targets: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """log p_θ(target) at every position: ``log softmax(z)_k = z_k - logsumexp(z)``.

    Args:
        logits: (..., V); any float dtype, computed in at least float32.
        targets: (...) aligned target ids; ``ignore_index`` marks unsupervised positions.

    Returns:
        (...) log-probabilities in the compute dtype, exactly 0 at ignored positions.
    """
    logp_k, mask = _gold_log_prob(logits, targets, ignore_index)
    return torch.where(mask, logp_k, 0.0)  # (...)


def sequence_logps(
    logits: Tensor, targets: Tensor, ignore_index: int = IGNORE_INDEX
) -> tuple[Tensor, Tensor]:
    """Summed log-likelihood of each sequence's supervised tokens, log π(y|x) = Σ_t log p(y_t).

    Args:
        logits: (B, T, V) (more generally (..., T, V): the last leading dimension is time).
        targets: (B, T) aligned targets with ``ignore_index`` on unsupervised positions.

    Returns:
        ``(sum_logps, n_tokens)``: (B,) summed log-probs (0 for a sequence without supervised
        tokens) and (B,) int64 number of supervised tokens |y|.
    """
    logps = token_logps(logits, targets, ignore_index)  # (B, T)
    return logps.sum(dim=-1), (targets != ignore_index).sum(dim=-1)


def nll_loss(
    logits: Tensor, targets: Tensor, ignore_index: int = IGNORE_INDEX, *, reduction: str = "mean"
) -> Tensor:
    """Cross-entropy: ``mean_t -log p_θ(k_t)`` over supervised positions (``reduction="sum"``:
    ``Σ_t -log p_θ(k_t)``).

    Args: logits (..., V), targets (...). Returns a scalar (0 if nothing is supervised).
    Computed by :func:`closed_form_loss` (gradient ``softmax(z) - e_k`` in closed form).
    """
    return closed_form_loss(logits, targets, "cross_entropy", ignore_index, reduction=reduction)


def ga_loss(
    logits: Tensor, targets: Tensor, ignore_index: int = IGNORE_INDEX, *, reduction: str = "mean"
) -> Tensor:
    """Gradient ascent, as a loss to MINIMISE: ``-NLL = mean_t log p_θ(k_t)`` (or the sum).

    Unbounded below (it keeps pushing log p_k to -inf); see :func:`unilogit_loss` for a
    self-limiting alternative. Args as :func:`nll_loss`.
    """
    return -nll_loss(logits, targets, ignore_index, reduction=reduction)


# --------------------------------------------------------------------------------------------
# Unilogit
# --------------------------------------------------------------------------------------------


def unilogit_target_logits(
    logits: Tensor, targets: Tensor, ignore_index: int = IGNORE_INDEX
) -> Tensor:
    """Unilogit's adjusted target logits z̃ (step 2 of the method).

    ``z̃_k = log Σ_{i≠k} exp(z_i) - log(V - 1)`` and ``z̃_i = z_i`` for i ≠ k, so that
    ``softmax(z̃)_k = 1/V`` exactly and, for i, j ≠ k, ``p̃_i / p̃_j = p_i / p_j``
    (``p̃_i = p_i (1 - 1/V) / (1 - p_k)``).

    The function does not detach: Unilogit passes detached logits (the target carries no
    gradient). Ignored positions are returned unchanged.

    Args:
        logits: (..., V) with V ≥ 2; computed in at least float32.
        targets: (...) aligned target ids.

    Returns:
        (..., V) adjusted logits in the compute dtype (a new tensor).
    """
    _check_targets(logits, targets)
    vocab = logits.shape[-1]
    if vocab < 2:
        raise ValueError(f"Unilogit needs a vocabulary of at least 2 tokens, got V={vocab}")
    z = _upcast(logits)  # (..., V)
    mask = targets != ignore_index  # (...)
    gold = torch.where(mask, targets, 0).unsqueeze(-1)  # (..., 1)
    others = z.scatter(-1, gold, float("-inf"))  # (..., V) gold logit removed
    new_gold = torch.logsumexp(others, dim=-1, keepdim=True) - math.log(vocab - 1)  # (..., 1)
    new_gold = torch.where(mask.unsqueeze(-1), new_gold, z.gather(-1, gold))  # (..., 1)
    return z.scatter(-1, gold, new_gold)  # (..., V)


def unilogit_closed_form(
    logp_k: Tensor, log1m_p_k: Tensor, vocab_size: int
) -> tuple[Tensor, Tensor]:
    """Per-position Unilogit value and gradient weight in closed form (reverse KL, targets
    from the current logits). Pure elementwise math on (...) tensors; no gradient is implied.

    With a = log p_k and b = log(1 - p_k)::

        L = p_k · log(V p_k) + (1 - p_k) · log(V (1 - p_k) / (V - 1))
          = p_k (a + log V) + e^b (b + log V - log(V - 1))        (binary KL(Bern(p_k) ‖ Bern(1/V)))
        w = p_k · log(p_k (V - 1) / (1 - p_k)) = p_k (a + log(V - 1) - b)

    and, with the target held fixed, ``∂L/∂z = -w · ∂CE(z, k)/∂z = -w · (softmax(z) - e_k)``.

    Numerics: terms whose probability underflows to 0 are 0 (never 0·inf); w is clamped to
    the largest finite value, which only matters when b = -inf, i.e. every other probability
    is exactly 0 and so is the CE gradient it multiplies.

    Args:
        logp_k: (...) log p_k.
        log1m_p_k: (...) log(1 - p_k), computed accurately (not as log1p(-exp(a)) near p_k = 1).
        vocab_size: V ≥ 2.

    Returns:
        ``(value, weight)``, both (...).
    """
    if vocab_size < 2:
        raise ValueError(f"Unilogit needs a vocabulary of at least 2 tokens, got V={vocab_size}")
    log_v = math.log(vocab_size)
    log_v1 = math.log(vocab_size - 1)
    # log(V / (V - 1)) as one constant: (b + log V) - log(V - 1) would cancel to ~1/V in float32
    log_v_over_v1 = -math.log1p(-1.0 / vocab_size)
    p_k = logp_k.exp()  # (...)
    rest = log1m_p_k.exp()  # (...) 1 - p_k
    value = torch.where(p_k > 0, p_k * (logp_k + log_v), 0.0) + torch.where(
        rest > 0, rest * (log1m_p_k + log_v_over_v1), 0.0
    )  # (...)
    weight = torch.where(p_k > 0, p_k * ((logp_k - log1m_p_k) + log_v1), 0.0)  # (...)
    big = torch.finfo(weight.dtype).max
    return value, weight.clamp(-big, big)


def loss_and_logit_grad(
    logits: Tensor, targets: Tensor, kind: str, ignore_index: int = IGNORE_INDEX
) -> tuple[Tensor, Tensor]:
    """Summed loss and its gradient w.r.t. (C, V) logits, in closed form, in place.

    Cross-entropy and (fast) Unilogit both have gradients ``coef_t · (softmax(z_t) - e_k)``:
    cross-entropy with ``coef = 1``, Unilogit with ``coef = -w`` (see
    :func:`unilogit_closed_form`). ``1 - p_k`` is summed from the other probabilities, never
    taken as a difference, so it keeps full relative precision even when p_k rounds to 1.

    Args:
        logits: (C, V) logits in the compute dtype. OVERWRITTEN: the gradient is returned in
            this buffer.
        targets: (C,) target ids, ``ignore_index`` for unsupervised rows.
        kind: ``"cross_entropy"`` or ``"unilogit"``.

    Returns:
        ``(loss_sum, dlogits)``: the summed per-position loss over supervised rows (scalar) and
        (C, V) ``∂ loss_sum / ∂ logits`` (zero rows where ignored).
    """
    mask = targets != ignore_index  # (C,)
    gold = torch.where(mask, targets, 0).unsqueeze(1)  # (C, 1)
    logits.sub_(logits.amax(dim=1, keepdim=True))  # (C, V) shifted, row max 0
    logp_k = logits.gather(1, gold).squeeze(1)  # (C,) shifted gold logit for now
    probs = logits.exp_()  # (C, V) unnormalised, same buffer
    norm = probs.sum(dim=1)  # (C,)
    probs.div_(norm.unsqueeze(1))  # (C, V) softmax
    logp_k = logp_k - norm.log()  # (C,) log p_k
    probs.scatter_(1, gold, 0.0)  # (C, V) others only
    rest = probs.sum(dim=1, keepdim=True)  # (C, 1) Σ_{i≠k} p_i = 1 - p_k, no cancellation
    probs.scatter_(1, gold, -rest)  # (C, V) softmax - onehot: gold entry p_k - 1 = -(1 - p_k)
    if kind == "cross_entropy":
        loss = -logp_k  # (C,)
        coef = torch.ones_like(loss)  # (C,)
    else:
        loss, weight = unilogit_closed_form(logp_k, rest.squeeze(1).log(), probs.shape[1])  # (C,)
        coef = -weight  # (C,)
    loss = torch.where(mask, loss, 0.0).sum()  # ()
    dlogits = probs.mul_(torch.where(mask, coef, 0.0).unsqueeze(1))  # (C, V)
    return loss, dlogits


def _row_blocks(x: Tensor, offset: int = 0) -> Iterator[tuple[int, Tensor]]:
    """(offset, (n, V) view) blocks covering the rows of (..., V) ``x`` in order, without
    copying: e.g. ``logits[:, :-1]`` (not viewable as (N, V)) gives one block per sequence."""
    try:
        yield offset, x.view(-1, x.shape[-1])
    except RuntimeError:  # not viewable as one block: split the leading dimension
        rows_each = x[0].numel() // x.shape[-1] if x.shape[0] else 0
        for i in range(x.shape[0]):
            yield from _row_blocks(x[i], offset + i * rows_each)


class _ClosedFormLoss(torch.autograd.Function):
    """Mean closed-form loss over supervised positions of (N, V) logits.

    The forward pass walks row chunks of at most ``_CHUNK_ELEMENTS`` logits, upcasts each to
    the compute dtype and stores its gradient in the logits' own dtype: the only (N, V) tensor
    kept for the backward pass, which just scales it (first-order only).
    """

    @staticmethod
    def forward(
        ctx: Any, logits: Tensor, targets: Tensor, kind: str, ignore_index: int, total_sum: bool
    ) -> Tensor:
        compute = _compute_dtype(logits.dtype)
        vocab = logits.shape[-1]
        flat_targets = targets.reshape(-1)  # (N,)
        need_grad = ctx.needs_input_grad[0]
        # bf16/fp16 gradients are stored already divided by n (their one rounding; the usual
        # grad_output of 1 is then exact); float32/64 ones are scaled once, in backward.
        low_precision = logits.dtype != compute
        grad = (  # (N, V) in the logits' dtype
            torch.empty(flat_targets.numel(), vocab, dtype=logits.dtype, device=logits.device)
            if need_grad
            else None
        )
        n_supervised = (flat_targets != ignore_index).sum().clamp_min(1)  # ()
        scale = 1.0 / n_supervised.to(compute)  # () each chunk's sum / ALL supervised positions
        if total_sum:  # reduction="sum": no division at all
            scale = torch.ones_like(scale)
        total = torch.zeros((), dtype=compute, device=logits.device)
        rows = max(1, _CHUNK_ELEMENTS // vocab)
        for offset, block in _row_blocks(logits.detach()):  # views, never a copy of all logits
            for start in range(0, block.shape[0], rows):
                part = block[start : start + rows]  # (r, V) view of the logits
                at = slice(offset + start, offset + start + part.shape[0])
                if grad is not None and not low_precision:  # work in the gradient buffer
                    chunk = grad[at].copy_(part)
                else:
                    chunk = part.to(compute, copy=True)  # (r, V) owned buffer
                loss, dlogits = loss_and_logit_grad(chunk, flat_targets[at], kind, ignore_index)
                total += loss
                if grad is not None and low_precision:
                    grad[at] = dlogits.mul_(scale)
        if grad is not None:
            ctx.save_for_backward(grad, torch.ones_like(scale) if low_precision else scale)
            ctx.logits_shape = logits.shape
        return total * scale

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, ...]:
        grad, scale = ctx.saved_tensors
        factor = (grad_output * scale).to(grad.dtype)  # () one scalar: one rounding per element
        return (grad * factor).reshape(ctx.logits_shape), None, None, None, None


def closed_form_loss(
    logits: Tensor,
    targets: Tensor,
    kind: str,
    ignore_index: int = IGNORE_INDEX,
    *,
    reduction: str = "mean",
) -> Tensor:
    """Mean (``reduction="sum"``: sum) cross-entropy (``kind="cross_entropy"``) or fast
    Unilogit (``"unilogit"``) over the supervised positions of (..., V) logits, with the
    gradient from :func:`loss_and_logit_grad`: memory of one (..., V) gradient in the logits'
    dtype, no autograd graph over the vocabulary. Returns a scalar in the compute dtype."""
    _check_targets(logits, targets)
    _check_reduction(reduction)
    total_sum = reduction == "sum"
    if not (torch.is_grad_enabled() and logits.requires_grad):
        with torch.no_grad():
            return _ClosedFormLoss.forward(
                _NoGrad(), logits, targets, kind, ignore_index, total_sum
            )
    return _ClosedFormLoss.apply(logits, targets, kind, ignore_index, total_sum)


class _NoGrad:
    """Stand-in ``ctx`` for running :meth:`_ClosedFormLoss.forward` without autograd."""

    needs_input_grad = (False,)


def _unilogit_reference(
    logits: Tensor,
    targets: Tensor,
    ref_logits: Tensor | None,
    divergence: str,
    ignore_index: int,
    reduction: str = "mean",
) -> Tensor:
    """The paper's literal steps 1-4 with a (..., V) target distribution."""
    source = (logits if ref_logits is None else ref_logits).detach()  # step 1
    log_target = torch.log_softmax(
        unilogit_target_logits(source, targets, ignore_index), dim=-1
    )  # (..., V) log p̃, step 2
    log_p = torch.log_softmax(_upcast(logits), dim=-1)  # (..., V) log p_θ
    if divergence == "reverse":  # step 3: KL(p_θ ‖ p̃) = Σ p_θ (log p_θ - log p̃)
        per_position = (log_p.exp() * (log_p - log_target)).sum(dim=-1)  # (...)
    else:  # ablation: KL(p̃ ‖ p_θ) = Σ p̃ (log p̃ - log p_θ)
        per_position = (log_target.exp() * (log_target - log_p)).sum(dim=-1)  # (...)
    return _masked_mean(per_position, targets != ignore_index, reduction)  # step 4


def unilogit_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    implementation: str = "fast",
    ref_logits: Tensor | None = None,
    divergence: str = "reverse",
    ignore_index: int = IGNORE_INDEX,
    reduction: str = "mean",
) -> Tensor:
    """Unilogit (Vasilev et al., Findings of ACL 2025, arXiv 2505.06027).

    Self-distillation towards the current model's own distribution with the gold token moved
    to the uniform probability 1/V:

    1. take the current logits z, detached;
    2. ``z̃_k = log Σ_{i≠k} exp z_i - log(V - 1)``, ``z̃_i = z_i`` (i ≠ k), p̃ = softmax(z̃)
       (see :func:`unilogit_target_logits`);
    3. per supervised position the reverse KL ``KL(p_θ ‖ p̃) = Σ_i p_i (log p_i - log p̃_i)``;
    4. mean over the supervised positions (``reduction="sum"``: their sum).

    Reduction: the mean over supervised positions of the per-position KL summed over the
    vocabulary. The authors' code uses ``F.kl_div``'s default ``reduction="mean"``, which also
    divides by V: their loss (and gradient) is ours / V. To reproduce one of their runs with
    SGD use ``lr_ours = lr_theirs / V``; with Adam(W) the update is (almost) invariant to a
    constant loss scale, so the same learning rate applies (up to Adam's epsilon).

    Implementations:

    * ``"reference"``: the literal steps above with a (..., V) target distribution. Supports
      every combination of ``ref_logits`` and ``divergence``.
    * ``"fast"``: for the paper's setting (reverse KL, targets from the current logits) the
      closed form ``L = p_k log(V p_k) + (1 - p_k) log(V (1 - p_k)/(V - 1))`` (binary KL
      between Bernoulli(p_k) and Bernoulli(1/V)) whose autograd gradient is
      ``-w · ∂CE/∂z`` with ``w = p_k log(p_k (V - 1)/(1 - p_k))`` -- equal to the reference's
      value and gradient, with the memory of a cross-entropy (no target tensor). With
      ``ref_logits`` or ``divergence="forward"`` there is no such closed form and ``"fast"``
      falls back to the reference implementation.

    Args:
        logits: (..., V) current model logits, V ≥ 2; computed in at least float32.
        targets: (...) aligned gold token ids, ``ignore_index`` where unsupervised.
        implementation: ``"fast"`` or ``"reference"``.
        ref_logits: optional (..., V) logits of the ORIGINAL model: the ablation that builds the
            target from them instead of from the current logits.
        divergence: ``"reverse"`` (paper) KL(p_θ ‖ p̃) or ``"forward"`` (ablation)
            KL(p̃ ‖ p_θ); p̃ is detached in both.
        ignore_index: label of unsupervised positions.
        reduction: ``"mean"`` or ``"sum"`` over the supervised positions.

    Returns:
        Scalar loss in the compute dtype; 0 (with a grad_fn) if nothing is supervised.
    """
    _check_reduction(reduction)
    if implementation not in ("fast", "reference"):
        raise ConfigError(
            f"unilogit implementation must be 'fast' or 'reference', got {implementation!r}"
        )
    if divergence not in ("reverse", "forward"):
        raise ConfigError(f"unilogit divergence must be 'reverse' or 'forward', got {divergence!r}")
    _check_targets(logits, targets)
    if logits.shape[-1] < 2:
        raise ValueError(
            f"Unilogit needs a vocabulary of at least 2 tokens, got V={logits.shape[-1]}"
        )
    if ref_logits is not None:
        _check_same_shape(logits, ref_logits, "logits and ref_logits")
    if implementation == "fast" and ref_logits is None and divergence == "reverse":
        return closed_form_loss(logits, targets, "unilogit", ignore_index, reduction=reduction)
    return _unilogit_reference(logits, targets, ref_logits, divergence, ignore_index, reduction)


# --------------------------------------------------------------------------------------------
# Preference-style sequence losses
# --------------------------------------------------------------------------------------------


def npo_loss(
    policy_logps: Tensor, ref_logps: Tensor, *, beta: float = 0.1, reduction: str = "mean"
) -> Tensor:
    """Negative Preference Optimization (Zhang et al. 2024).

    ``L = mean_b (2/β) log(1 + (π_θ(y_b|x_b)/π_ref(y_b|x_b))^β)
        = mean_b -(2/β) log σ(-β (log π_θ - log π_ref))``

    At π_θ = π_ref the loss is (2/β) log 2 and its gradient is that of the NLL (times 1),
    whatever β; it vanishes as π_θ/π_ref → 0.

    Args:
        policy_logps: (B,) summed log-probs log π_θ(y|x) of the forget answers.
        ref_logps: (B,) the same under the frozen reference model (detached here).
        beta: β > 0.

    Returns:
        Scalar, mean (``reduction="sum"``: sum) over sequences; 0 (with a grad_fn) for B = 0.
    """
    _check_beta(beta)
    _check_same_shape(policy_logps, ref_logps, "policy_logps and ref_logps")
    log_ratio = _upcast(policy_logps) - _upcast(ref_logps).detach()  # (B,)
    return _mean(-(2.0 / beta) * F.logsigmoid(-beta * log_ratio), reduction)


def simnpo_loss(
    policy_logps: Tensor,
    lengths: Tensor,
    *,
    beta: float = 4.5,
    gamma: float = 0.0,
    reduction: str = "mean",
) -> Tensor:
    """SimNPO (Fan et al. 2024): reference-free, length-normalised NPO.

    ``L = mean_b -(2/β) log σ(-(β/|y_b|) log π_θ(y_b|x_b) - γ)``

    Args:
        policy_logps: (B,) summed log-probs log π_θ(y|x).
        lengths: (B,) number of supervised tokens |y| (int or float). A sequence with |y| = 0
            has log π = 0 and is treated as |y| = 1: it adds the constant -(2/β) log σ(-γ)
            and no gradient (instead of 0/0 = NaN).
        beta: β > 0 (2.5-4.5 in the paper).
        gamma: margin γ (0 by default).

    Returns:
        Scalar, mean (``reduction="sum"``: sum) over sequences; 0 (with a grad_fn) for B = 0.
    """
    _check_beta(beta)
    if lengths.shape != policy_logps.shape:
        raise ValueError(
            f"lengths must have shape {tuple(policy_logps.shape)}, got {tuple(lengths.shape)}"
        )
    logps = _upcast(policy_logps)  # (B,)
    n = lengths.to(device=logps.device, dtype=logps.dtype).clamp_min(1)  # (B,)
    return _mean(-(2.0 / beta) * F.logsigmoid(-(beta / n) * logps - gamma), reduction)


def dpo_loss(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
    reduction: str = "mean",
) -> Tensor:
    """DPO (Rafailov et al. 2023) with the unlearning field's 2/β scaling (IdkDPO uses a
    refusal as "chosen" and the forget answer as "rejected").

    ``L = mean_b -(2/β) log σ(β [(log π_θ(c) - log π_ref(c)) - (log π_θ(r) - log π_ref(r))])``

    The 2/β factor (as in NPO and open-unlearning) makes the loss (2/β) log 2 and the gradient
    β-independent at π_θ = π_ref; plain DPO is this loss times β/2.

    Args:
        chosen_logps, rejected_logps: (B,) summed log-probs under π_θ.
        ref_chosen_logps, ref_rejected_logps: (B,) the same under π_ref (detached here).
        beta: β > 0.

    Returns:
        Scalar, mean (``reduction="sum"``: sum) over pairs; 0 (with a grad_fn) for B = 0.
    """
    _check_beta(beta)
    for name, other in (
        ("rejected_logps", rejected_logps),
        ("ref_chosen_logps", ref_chosen_logps),
        ("ref_rejected_logps", ref_rejected_logps),
    ):
        _check_same_shape(chosen_logps, other, f"chosen_logps and {name}")
    chosen = _upcast(chosen_logps) - _upcast(ref_chosen_logps).detach()  # (B,)
    rejected = _upcast(rejected_logps) - _upcast(ref_rejected_logps).detach()  # (B,)
    return _mean(-(2.0 / beta) * F.logsigmoid(beta * (chosen - rejected)), reduction)


# --------------------------------------------------------------------------------------------
# Distillation-style token losses
# --------------------------------------------------------------------------------------------


def undial_loss(
    logits: Tensor,
    ref_logits: Tensor,
    targets: Tensor,
    *,
    gamma: float = 10.0,
    ignore_index: int = IGNORE_INDEX,
    reduction: str = "mean",
) -> Tensor:
    """UnDIAL (Dong et al. 2024): distil from the frozen original model with the gold logit
    lowered by a fixed γ.

    ``q = softmax(z_ref - γ · onehot(k))`` (detached), per position
    ``CE(q, p_θ) = -Σ_i q_i log p_θ,i`` (= KL(q ‖ p_θ) + H(q)), mean over SUPERVISED positions
    only (open-unlearning also averages over prompt and padding positions; we do not).

    Args:
        logits: (..., V) current model logits.
        ref_logits: (..., V) logits of the frozen original model (detached here).
        targets: (...) aligned gold ids, ``ignore_index`` where unsupervised.
        gamma: logit decrement γ (3, 10 or 30 in the paper).

    Returns:
        Scalar, mean (``reduction="sum"``: sum) over supervised positions; 0 if none.
    """
    _check_targets(logits, targets)
    _check_same_shape(logits, ref_logits, "logits and ref_logits")
    mask = targets != ignore_index  # (...)
    gold = torch.where(mask, targets, 0).unsqueeze(-1)  # (..., 1)
    teacher = _upcast(ref_logits.detach())  # (..., V)
    teacher = teacher.scatter_add(-1, gold, torch.full_like(teacher[..., :1], -gamma))  # (..., V)
    q = torch.softmax(teacher, dim=-1)  # (..., V)
    log_p = torch.log_softmax(_upcast(logits), dim=-1)  # (..., V)
    per_position = -(q * log_p).sum(dim=-1)  # (...)
    return _masked_mean(per_position, mask, reduction)


def kl_retain_loss(
    logits: Tensor,
    ref_logits: Tensor,
    targets: Tensor,
    ignore_index: int = IGNORE_INDEX,
    *,
    reduction: str = "mean",
) -> Tensor:
    """Retain term KL(π_ref ‖ π_θ) = Σ_i p_ref,i (log p_ref,i - log p_θ,i) per supervised
    position (retain ANSWER tokens; prompt and padding are masked), mean over those positions.

    Args:
        logits: (..., V) current model logits.
        ref_logits: (..., V) frozen reference logits (detached here).
        targets: (...) aligned targets; only their mask (``!= ignore_index``) is used.

    Returns:
        Scalar, mean (``reduction="sum"``: sum) over supervised positions; 0 if none.
    """
    _check_targets(logits, targets)
    _check_same_shape(logits, ref_logits, "logits and ref_logits")
    log_ref = torch.log_softmax(_upcast(ref_logits.detach()), dim=-1)  # (..., V)
    log_p = torch.log_softmax(_upcast(logits), dim=-1)  # (..., V)
    per_position = (log_ref.exp() * (log_ref - log_p)).sum(dim=-1)  # (...)
    return _masked_mean(per_position, targets != ignore_index, reduction)


# --------------------------------------------------------------------------------------------
# RMU (representation misdirection)
# --------------------------------------------------------------------------------------------


def _masked_mse(
    activations: Tensor, target: Tensor, mask: Tensor, reduction: str = "mean"
) -> Tensor:
    if mask.shape != activations.shape[:-1]:
        raise ValueError(
            f"mask must have shape {tuple(activations.shape[:-1])}, got {tuple(mask.shape)}"
        )
    per_position = (_upcast(activations) - _upcast(target)).pow(2).mean(dim=-1)  # (B, T)
    return _masked_mean(per_position, mask.bool(), reduction)


def rmu_loss(
    activations: Tensor, control: Tensor, mask: Tensor, *, reduction: str = "mean"
) -> Tensor:
    """RMU forget term (Li et al. 2024, WMDP): steer layer-ℓ activations on forget data to
    the control vector c·u (u a fixed random unit vector, c the steering coefficient).

    ``L = mean_{(b,t): mask} (1/H) Σ_h (a_{b,t,h} - control_h)^2``

    Args:
        activations: (B, T, H) layer output of the model being unlearned.
        control: (H,) (or broadcastable to (B, T, H)) the scaled random vector c·u.
        mask: (B, T) bool/int, True at positions that count (e.g. the attention mask).

    Returns:
        Scalar, mean (``reduction="sum"``: sum) over masked positions; 0 if none.
    """
    return _masked_mse(activations, control, mask, reduction)


def rmu_retain_loss(
    activations: Tensor, ref_activations: Tensor, mask: Tensor, *, reduction: str = "mean"
) -> Tensor:
    """RMU retain term: keep retain-data activations equal to the frozen reference's.

    ``L = mean_{(b,t): mask} (1/H) Σ_h (a_{b,t,h} - a^ref_{b,t,h})^2``

    Args:
        activations: (B, T, H) layer output of the model being unlearned.
        ref_activations: (B, T, H) same layer of the frozen reference (detached here).
        mask: (B, T) positions that count.

    Returns:
        Scalar, mean (``reduction="sum"``: sum) over masked positions; 0 if none.
    """
    _check_same_shape(activations, ref_activations, "activations and ref_activations")
    return _masked_mse(activations, ref_activations.detach(), mask, reduction)
