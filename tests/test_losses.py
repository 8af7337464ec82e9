"""Tests of unilogit.losses against literal float64 computations of each definition.

Tolerances:
* float64 inputs: 1e-10 (values and gradients). Our code and the literal references differ
  only in the order of float64 operations (errors ~1e-15 per operation).
* bf16 inputs: the literal reference runs in float64 on the SAME (bf16-representable) values,
  so the only differences are (a) our float32 arithmetic: sums over at most 50 terms of
  magnitude ≤ ~20, relative error ~1e-6, hence BF16_VALUE = rtol 1e-5 / atol 1e-5; (b) the
  gradient is returned in bf16 (the input's dtype), i.e. rounded to 8 significant bits: a
  relative error of at most 2^-9, and one ulp (2^-8) covers a float32 value that sits on a
  rounding boundary. Hence BF16_GRAD = rtol 2^-8 with an atol of 1e-5 × max|grad| for entries
  where the float32 error dominates the tiny bf16 ulp.
"""

from __future__ import annotations

import math

import pytest
import torch

from unilogit import losses
from unilogit.errors import ConfigError

F64 = {"rtol": 1e-10, "atol": 1e-10}
BF16_VALUE = {"rtol": 1e-5, "atol": 1e-5}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# --------------------------------------------------------------------------------------------
# literal float64 definitions (explicit exp / sum / loops, no library log-softmax)
# --------------------------------------------------------------------------------------------


def lit_softmax(z: torch.Tensor) -> torch.Tensor:
    e = torch.exp(z)
    return e / e.sum(dim=-1, keepdim=True)


def lit_token_logps(z: torch.Tensor, t: torch.Tensor) -> list[tuple[tuple[int, ...], object]]:
    """[(index, log p_k)] for every supervised position, by explicit softmax."""
    out = []
    for idx in torch.nonzero(t != -100).tolist():
        idx = tuple(idx)
        k = int(t[idx])
        out.append((idx, torch.log(lit_softmax(z[idx])[k])))
    return out


def lit_nll(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    terms = [-lp for _, lp in lit_token_logps(z, t)]
    return torch.stack(terms).mean()


def lit_unilogit(
    z: torch.Tensor, t: torch.Tensor, ref: torch.Tensor | None = None, forward: bool = False
) -> torch.Tensor:
    """Steps 1-4 of methods.md, one position at a time."""
    V = z.shape[-1]
    terms = []
    for idx in torch.nonzero(t != -100).tolist():
        idx = tuple(idx)
        k = int(t[idx])
        src = (z if ref is None else ref)[idx].detach().clone()
        others = torch.cat([src[:k], src[k + 1 :]])
        src[k] = torch.log(torch.exp(others).sum()) - math.log(V - 1)
        p_tilde = lit_softmax(src)
        p = lit_softmax(z[idx])
        if forward:
            terms.append((p_tilde * (torch.log(p_tilde) - torch.log(p))).sum())
        else:
            terms.append((p * (torch.log(p) - torch.log(p_tilde))).sum())
    return torch.stack(terms).mean()


def lit_undial(z: torch.Tensor, ref: torch.Tensor, t: torch.Tensor, gamma: float) -> torch.Tensor:
    terms = []
    for idx in torch.nonzero(t != -100).tolist():
        idx = tuple(idx)
        zr = ref[idx].detach().clone()
        zr[int(t[idx])] -= gamma
        q = lit_softmax(zr)
        terms.append(-(q * torch.log(lit_softmax(z[idx]))).sum())
    return torch.stack(terms).mean()


def lit_kl(z: torch.Tensor, ref: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    terms = []
    for idx in torch.nonzero(t != -100).tolist():
        idx = tuple(idx)
        pr = lit_softmax(ref[idx].detach())
        terms.append((pr * (torch.log(pr) - torch.log(lit_softmax(z[idx])))).sum())
    return torch.stack(terms).mean()


def lit_sigmoid(x: torch.Tensor) -> torch.Tensor:
    return 1.0 / (1.0 + torch.exp(-x))


def random_case(shape=(3, 5), V=11, dtype=torch.float64, scale=3.0, p_ignore=0.3):
    z = (torch.randn(*shape, V, dtype=torch.float64) * scale).to(dtype).requires_grad_()
    t = torch.randint(0, V, shape)
    t[torch.rand(shape) < p_ignore] = -100
    t.view(-1)[0] = 1  # at least one supervised position
    return z, t


def as_f64_leaf(x: torch.Tensor) -> torch.Tensor:
    return x.detach().double().requires_grad_()


def check_value_and_grad(fn, lit, inputs, dtype):
    """fn(*inputs) vs lit(*float64 copies): values and gradients w.r.t. every leaf input."""
    value = fn(*inputs)
    leaves = [x for x in inputs if isinstance(x, torch.Tensor) and x.requires_grad]
    grads = torch.autograd.grad(value, leaves)
    ref_inputs = [as_f64_leaf(x) if any(x is leaf for leaf in leaves) else x for x in inputs]
    ref_leaves = [x for x in ref_inputs if isinstance(x, torch.Tensor) and x.requires_grad]
    ref_value = lit(*ref_inputs)
    ref_grads = torch.autograd.grad(ref_value, ref_leaves)
    if dtype == torch.float64:
        torch.testing.assert_close(value, ref_value, **F64)
        for g, r in zip(grads, ref_grads, strict=True):
            torch.testing.assert_close(g, r, **F64)
    else:
        assert value.dtype == torch.float32
        torch.testing.assert_close(value.double(), ref_value, **BF16_VALUE)
        for g, r in zip(grads, ref_grads, strict=True):
            assert g.dtype == dtype
            atol = 1e-5 * float(r.abs().max())
            torch.testing.assert_close(g.double(), r, rtol=2**-8, atol=atol)


DTYPES = [torch.float64, torch.bfloat16]


# --------------------------------------------------------------------------------------------
# alignment, log-likelihoods
# --------------------------------------------------------------------------------------------


def test_shift_labels_aligns_next_token() -> None:
    logits = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    labels = torch.tensor([[-100, 5, 6, 7], [-100, -100, 8, -100]])
    lg, lb = losses.shift_labels(logits, labels)
    assert lg.shape == (2, 3, 3) and lb.shape == (2, 3)
    assert torch.equal(lg, logits[:, :3]) and torch.equal(lb, labels[:, 1:])
    with pytest.raises(ValueError):
        losses.shift_labels(logits, labels[:, :3])


@pytest.mark.parametrize("dtype", DTYPES)
def test_token_logps_literal(dtype: torch.dtype) -> None:
    z, t = random_case(dtype=dtype)

    def literal(z64, t):
        out = torch.zeros(t.shape, dtype=torch.float64)
        for idx, lp in lit_token_logps(z64, t):
            out[idx] = lp
        return out

    lp = losses.token_logps(z, t)
    assert (lp[t == -100] == 0).all()
    # a scalar function of every entry, so the gradient checks each position
    weights = torch.randn(t.shape, dtype=torch.float64)
    check_value_and_grad(
        lambda z, t: (losses.token_logps(z, t) * weights.to(losses.token_logps(z, t).dtype)).sum(),
        lambda z, t: (literal(z, t) * weights).sum(),
        [z, t],
        dtype,
    )


def test_sequence_logps_sums_supervised_tokens() -> None:
    z, t = random_case(shape=(4, 6))
    t[2] = -100  # a sequence without supervised tokens
    sums, counts = losses.sequence_logps(z, t)
    assert sums.shape == (4,) and counts.tolist() == (t != -100).sum(1).tolist()
    expected = torch.zeros(4, dtype=torch.float64)
    for (b, _), lp in lit_token_logps(z, t):
        expected[b] += lp.detach()
    torch.testing.assert_close(sums.detach(), expected, **F64)
    assert sums[2] == 0


@pytest.mark.parametrize("dtype", DTYPES)
def test_nll_and_ga_literal(dtype: torch.dtype) -> None:
    z, t = random_case(dtype=dtype)
    check_value_and_grad(losses.nll_loss, lit_nll, [z, t], dtype)
    check_value_and_grad(losses.ga_loss, lambda z, t: -lit_nll(z, t), [z, t], dtype)


def test_nll_hand_computed() -> None:
    """z = [0, log 3], k = 1: p = [1/4, 3/4], NLL = -log(3/4) = log(4/3) = 0.2876821."""
    z = torch.tensor([[0.0, math.log(3.0)]], dtype=torch.float64)
    assert losses.nll_loss(z, torch.tensor([1])).item() == pytest.approx(math.log(4 / 3), 1e-12)
    assert losses.ga_loss(z, torch.tensor([1])).item() == pytest.approx(-0.2876820724517809)


# --------------------------------------------------------------------------------------------
# Unilogit
# --------------------------------------------------------------------------------------------

UNILOGIT_VARIANTS = [
    ("fast", "reverse", False),
    ("reference", "reverse", False),
    ("fast", "forward", False),
    ("reference", "forward", False),
    ("fast", "reverse", True),
    ("reference", "reverse", True),
    ("reference", "forward", True),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("implementation,divergence,use_ref", UNILOGIT_VARIANTS)
def test_unilogit_literal(dtype, implementation, divergence, use_ref) -> None:
    z, t = random_case(dtype=dtype)
    forward = divergence == "forward"
    if use_ref:
        ref = (torch.randn(z.shape, dtype=torch.float64) * 3).to(dtype)
        check_value_and_grad(
            lambda z, t, r: losses.unilogit_loss(
                z, t, implementation=implementation, divergence=divergence, ref_logits=r
            ),
            lambda z, t, r: lit_unilogit(z, t, ref=r.double(), forward=forward),
            [z, t, ref],
            dtype,
        )
    else:
        check_value_and_grad(
            lambda z, t: losses.unilogit_loss(
                z, t, implementation=implementation, divergence=divergence
            ),
            lambda z, t: lit_unilogit(z, t, forward=forward),
            [z, t],
            dtype,
        )


@pytest.mark.parametrize("implementation", ["fast", "reference"])
def test_unilogit_hand_computed_v2(implementation: str) -> None:
    """V = 2, z = [log 3, 0], k = 0, so p = [3/4, 1/4].

    Target: z̃_0 = log(e^0) - log(V - 1) = 0 - 0 = 0, so p̃ = [1/2, 1/2].
    KL(p ‖ p̃) = 3/4 log(3/2) + 1/4 log(1/2) = 0.3040988 - 0.1732868 = 0.1308120.
    Closed form: w = p_k log(p_k (V-1)/(1-p_k)) = 3/4 · log 3 = 0.8239592, and
    ∂L/∂z = -w (p - e_k) = -0.8239592 · [-1/4, 1/4] = [0.2059898, -0.2059898].
    """
    z = torch.tensor([[math.log(3.0), 0.0]], dtype=torch.float64, requires_grad=True)
    loss = losses.unilogit_loss(z, torch.tensor([0]), implementation=implementation)
    assert loss.item() == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5), abs=1e-12)
    assert loss.item() == pytest.approx(0.1308120, abs=1e-7)
    (grad,) = torch.autograd.grad(loss, z)
    w = 0.75 * math.log(3.0)
    torch.testing.assert_close(grad, torch.tensor([[w / 4, -w / 4]], dtype=torch.float64), **F64)
    assert grad[0, 0].item() == pytest.approx(0.2059898, abs=1e-7)


def test_unilogit_zero_when_gold_already_uniform() -> None:
    """All logits equal: p_k = 1/V already, p̃ = p, so KL = 0 and w = 0 (no gradient)."""
    z = torch.zeros(2, 7, dtype=torch.float64, requires_grad=True)
    loss = losses.unilogit_loss(z, torch.tensor([3, 0]))
    (grad,) = torch.autograd.grad(loss, z)
    assert abs(loss.item()) < 1e-15 and grad.abs().max().item() < 1e-15


@pytest.mark.parametrize("scale", [1.0, 5.0, 30.0])
def test_target_logits_uniform_property(scale: float) -> None:
    V = 17
    z = torch.randn(6, V, dtype=torch.float64) * scale
    t = torch.randint(0, V, (6,))
    t[5] = -100
    zt = losses.unilogit_target_logits(z, t)
    p, pt = lit_softmax(z), lit_softmax(zt)
    for row in range(5):
        k = int(t[row])
        assert abs(pt[row, k].item() - 1 / V) < 1e-12
        others = [i for i in range(V) if i != k]
        ratio_t = pt[row, others][:, None] / pt[row, others][None, :]
        ratio = p[row, others][:, None] / p[row, others][None, :]
        torch.testing.assert_close(ratio_t, ratio, rtol=1e-12, atol=0)
        expected = p[row, others] * (1 - 1 / V) / (1 - p[row, k])
        torch.testing.assert_close(pt[row, others], expected, rtol=1e-12, atol=1e-300)
        assert torch.equal(zt[row, others], z[row, others])
    assert torch.equal(zt[5], z[5])  # ignored position unchanged


def extreme_logits(V: int, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows: ±1e4 with gold on +1e4 (p_k = 1/m); ±1e4 with gold on -1e4 (p_k = 0); gold +60
    (p_k rounds to 1 in float32); gold -60 (p_k → 0); moderate; gold 1e4 over N(0,1)
    (p_k = 1, log(1-p_k) ≈ -1e4); all equal (p_k = 1/V); a random ignored position."""
    n = 8
    z = torch.randn(n, V, dtype=torch.float64)
    t = torch.randint(0, V, (n,))
    signs = torch.where(torch.rand(2, V) < 0.5, 1e4, -1e4).double()
    signs[0, 0], signs[1, 0] = 1e4, -1e4
    signs[0, 1], signs[1, 1] = -1e4, 1e4
    z[:2] = signs
    t[0], t[1] = 0, 0
    z[2, t[2]] = 60.0
    z[3, t[3]] = -60.0
    z[4] *= 3
    z[5, t[5]] = 1e4
    z[6] = 2.5
    t[7] = -100
    return z.to(dtype).requires_grad_(), t


def rounding_noise(
    z64: torch.Tensor, t: torch.Tensor, eps: float, reference: bool = False
) -> torch.Tensor:
    """Elementwise size of rounding errors (unit roundoff ``eps``) in a Unilogit gradient, (N, V).

    The gradient is -w · (p - e_k) / n. Two error sources, both present in any float
    implementation (including the float64 reference itself):

    * w (or, in the reference, p_i (log p_i - log p̃_i - L)) is built from log-quantities of
      size K = log V + |log p_k| + |log(1 - p_k)| (+ |log p_i|), each rounded to ~eps · K, so
      an entry is off by ~eps · K · |p_i - δ_ik| / n. This dominates where the exact gradient
      is tiny, e.g. at p_k = 1/V where w = 0.
    * each softmax entry is rounded to ~eps · p_i; at the gold entry p_k - 1 is formed from a
      rounded p_k, so it is off by ~eps · p_k (a large RELATIVE error when p_k ≈ 1):
      ~eps · |w| · p_i / n.

    ``reference=True`` gives the literal reference's noise: it stores z̃_k ≈ max z, rounded by
    up to eps · max|z| (added to K), and it sums V-term products (Σ p (log p - log p̃)) whose
    pairwise-summation error grows like log2 V (a factor 1 + log2 V). The fast path forms
    neither.
    """
    mask = t != -100
    gold = torch.where(mask, t, 0)
    logp = torch.log_softmax(z64.detach(), dim=-1)  # (N, V)
    p = logp.exp()
    a = logp.gather(1, gold[:, None])  # (N, 1)
    b = torch.logsumexp(logp.scatter(1, gold[:, None], -math.inf), dim=1, keepdim=True)
    vocab = z64.shape[-1]
    k_row = math.log(vocab) + a.abs() + b.abs()  # (N, 1)
    if reference:
        k_row = k_row + z64.detach().abs().amax(dim=1, keepdim=True)
        k_row = k_row * (1 + math.log2(vocab))
    w = a.exp() * (a - b + math.log(vocab - 1))  # (N, 1)
    onehot = torch.nn.functional.one_hot(gold, vocab).double()
    noise = k_row * (p - onehot).abs() + torch.special.xlogy(p, p).abs() + w.abs() * p
    return 4 * eps * noise * mask[:, None] / mask.sum()


def assert_grad_close(g, g_ref, rtol, floor):
    err = (g.double() - g_ref).abs()
    bound = rtol * g_ref.abs() + floor
    bad = err > bound
    assert not bad.any(), f"{int(bad.sum())} entries off, worst {(err - bound).max().item():.3g}"


@pytest.mark.parametrize("V", [2, 3, 50, 32000, 128256])
def test_unilogit_fast_matches_reference_on_extremes(V: int) -> None:
    """Fast (float32) vs reference (float32) vs reference in float64 on the same values.

    Values: the closed form only needs log p_k and log(1 - p_k), both accurate to a few
    float32 ulps thanks to the max shift, so fast32 is within 1e-6 (relative) of the float64
    reference. The float32 reference builds z̃_k ≈ 1e4 + O(log V) in float32 (ulp 2^-10), so
    it is only good to ~1e-3 on the ±1e4 rows: 2e-3.

    Gradients, elementwise: |g - g_ref64| ≤ rtol · |g_ref64| + floor, with floor =
    :func:`rounding_noise` of the tested dtype plus that of the float64 reference (on the
    p_k → 0 rows the true gradient is ~1e-25 and the float64 reference subtracts two O(1/V)
    numbers to get it).
    fast32: rtol 1e-4. ref32: rtol 1e-2 and a floor that includes the rounding of z̃_k.
    The p_k → 1 row (gold logit 60: p_k rounds to 1 in float32, 1 - p_k ≈ V e^-60) is
    checked with the same relative tolerance, which needs log(1 - p_k) computed accurately.
    """
    z, t = extreme_logits(V)
    z64 = z.detach().double().requires_grad_()
    ref64 = losses.unilogit_loss(z64, t, implementation="reference")
    (g_ref64,) = torch.autograd.grad(ref64, z64)
    fast = losses.unilogit_loss(z, t, implementation="fast")
    (g_fast,) = torch.autograd.grad(fast, z)
    ref = losses.unilogit_loss(z, t, implementation="reference")
    (g_ref,) = torch.autograd.grad(ref, z)
    for value, grad in ((fast, g_fast), (ref, g_ref), (ref64, g_ref64)):
        assert torch.isfinite(value) and torch.isfinite(grad).all()
    assert fast.item() == pytest.approx(ref64.item(), rel=1e-6)
    assert ref.item() == pytest.approx(ref64.item(), rel=2e-3)
    eps32, eps64 = torch.finfo(torch.float32).eps, torch.finfo(torch.float64).eps
    noise64 = rounding_noise(z64, t, eps64, reference=True)  # the float64 reference's own
    assert_grad_close(g_fast, g_ref64, 1e-4, rounding_noise(z64, t, eps32) + noise64)
    noise32_ref = rounding_noise(z64, t, eps32, reference=True)
    assert_grad_close(g_ref, g_ref64, 1e-2, noise32_ref + noise64)
    assert g_ref64[2].abs().max() > 0  # p_k -> 1 row has a (tiny) gradient, matched above
    # float64 fast vs float64 reference: the same mathematics, tight
    fast64 = losses.unilogit_loss(z64, t, implementation="fast")
    (g_fast64,) = torch.autograd.grad(fast64, z64)
    torch.testing.assert_close(fast64, ref64, rtol=1e-10, atol=1e-10)
    assert_grad_close(g_fast64, g_ref64, 1e-8, rounding_noise(z64, t, eps64) + noise64)
    assert (g_fast[7] == 0).all()


def test_unilogit_bf16_extremes_finite() -> None:
    z, t = extreme_logits(50, torch.bfloat16)
    for implementation in ("fast", "reference"):
        loss = losses.unilogit_loss(z, t, implementation=implementation)
        (grad,) = torch.autograd.grad(loss, z)
        assert torch.isfinite(loss) and torch.isfinite(grad).all()
    z64 = z.detach().double().requires_grad_()
    ref = losses.unilogit_loss(z64, t, implementation="reference")
    fast = losses.unilogit_loss(z, t)
    assert fast.item() == pytest.approx(ref.item(), rel=1e-6)


def test_unilogit_gradient_is_weighted_ce_ascent() -> None:
    """∂L/∂z = -w · ∂CE/∂z with w = p_k log(p_k (V-1)/(1-p_k)), per position."""
    V, n = 13, 9
    z = (torch.randn(n, V, dtype=torch.float64) * 4).requires_grad_()
    z.data[0, 0] = 20.0  # p_k close to 1: w large
    z.data[1, 1] = -20.0  # p_k below 1/V: w < 0 (descent)
    t = torch.randint(0, V, (n,))
    t[0], t[1] = 0, 1
    (grad,) = torch.autograd.grad(losses.unilogit_loss(z, t) * n, z)
    p = lit_softmax(z.detach())
    pk = p[torch.arange(n), t]
    w = pk * torch.log(pk * (V - 1) / (1 - pk))
    ce_grad = p - torch.nn.functional.one_hot(t, V).double()
    torch.testing.assert_close(grad, -w[:, None] * ce_grad, **F64)
    assert w[0] > 0 and w[1] < 0


@pytest.mark.parametrize("kind", ["unilogit", "cross_entropy"])
def test_closed_form_loss_chunks_and_no_grad(kind: str, monkeypatch) -> None:
    """Row chunks (3 rows of 7 logits each here), shifted (non-contiguous) logits, no-grad
    mode and a bf16 input give the same value as the unchunked computation; gradients match
    the autograd definitions."""
    V = 7
    full = (torch.randn(4, 6, V, dtype=torch.float64) * 3).requires_grad_()
    labels = torch.randint(0, V, (4, 6))
    labels[1, 3:] = -100
    z, t = losses.shift_labels(full, labels)  # (4, 5, V) view, not viewable as (20, V)
    if kind == "unilogit":
        expected = losses.unilogit_loss(z, t, implementation="reference")
    else:
        expected = losses.nll_loss(z, t)
    (expected_grad,) = torch.autograd.grad(expected, full)
    monkeypatch.setattr(losses, "_CHUNK_ELEMENTS", 3 * V)
    value = losses.closed_form_loss(z, t, kind)
    (grad,) = torch.autograd.grad(value, full)
    torch.testing.assert_close(value, expected, **F64)
    torch.testing.assert_close(grad, expected_grad, **F64)
    with torch.no_grad():
        torch.testing.assert_close(losses.closed_form_loss(z, t, kind), expected, **F64)
    assert losses.closed_form_loss(z.detach(), t, kind).grad_fn is None
    z16 = z.detach().bfloat16().requires_grad_()
    value16 = losses.closed_form_loss(z16, t, kind)
    (grad16,) = torch.autograd.grad(value16, z16)
    assert value16.dtype == torch.float32 and grad16.dtype == torch.bfloat16


def test_unilogit_closed_form_edge_values() -> None:
    """p_k = 1: value = log V, w finite; p_k = 0: value = log(V/(V-1)), w = 0."""
    V = 5
    logp = torch.tensor([0.0, -math.inf, math.log(0.2)], dtype=torch.float64)
    log1m = torch.tensor([-math.inf, 0.0, math.log(0.8)], dtype=torch.float64)
    value, weight = losses.unilogit_closed_form(logp, log1m, V)
    assert torch.isfinite(value).all() and torch.isfinite(weight).all()
    torch.testing.assert_close(
        value, torch.tensor([math.log(V), math.log(V / (V - 1)), 0.0], dtype=torch.float64)
    )
    assert weight[1] == 0 and abs(weight[2].item()) < 1e-15


# --------------------------------------------------------------------------------------------
# ignored positions, empty batches, errors
# --------------------------------------------------------------------------------------------

TOKEN_LOSSES = {
    "nll": lambda z, r, t: losses.nll_loss(z, t),
    "ga": lambda z, r, t: losses.ga_loss(z, t),
    "token_logps": lambda z, r, t: losses.token_logps(z, t).sum(),
    "sequence_logps": lambda z, r, t: losses.sequence_logps(z, t)[0].sum(),
    "unilogit_fast": lambda z, r, t: losses.unilogit_loss(z, t),
    "unilogit_reference": lambda z, r, t: losses.unilogit_loss(z, t, implementation="reference"),
    "unilogit_forward": lambda z, r, t: losses.unilogit_loss(z, t, divergence="forward"),
    "unilogit_ref_logits": lambda z, r, t: losses.unilogit_loss(z, t, ref_logits=r),
    "undial": lambda z, r, t: losses.undial_loss(z, r, t),
    "kl_retain": lambda z, r, t: losses.kl_retain_loss(z, r, t),
}


@pytest.mark.parametrize("name", sorted(TOKEN_LOSSES))
def test_ignored_positions_do_not_contribute(name: str) -> None:
    fn = TOKEN_LOSSES[name]
    z, t = random_case(shape=(3, 6), V=9, p_ignore=0.4)
    r = torch.randn(z.shape, dtype=torch.float64)
    loss = fn(z, r, t)
    (grad,) = torch.autograd.grad(loss, z)
    assert (grad[t == -100] == 0).all()
    # changing the logits at ignored positions changes nothing
    z2 = z.detach().clone()
    z2[t == -100] = torch.randn_like(z2[t == -100]) * 10
    torch.testing.assert_close(fn(z2, r, t), loss.detach(), **F64)
    # all ignored: 0, still on the graph, zero gradient
    z3 = z.detach().clone().requires_grad_()
    empty = fn(z3, r, torch.full_like(t, -100))
    assert empty.item() == 0 and empty.grad_fn is not None
    empty.backward()
    assert z3.grad is not None and (z3.grad == 0).all()


def test_empty_sequence_and_activation_losses_are_zero_on_graph() -> None:
    x = torch.zeros(0, dtype=torch.float64, requires_grad=True)
    for loss in (
        losses.npo_loss(x, x.detach()),
        losses.simnpo_loss(x, torch.zeros(0)),
        losses.dpo_loss(x, x, x.detach(), x.detach()),
    ):
        assert loss.item() == 0 and loss.grad_fn is not None
        loss.backward()
    h = torch.randn(2, 3, 4, requires_grad=True)
    mask = torch.zeros(2, 3, dtype=torch.bool)
    for loss in (losses.rmu_loss(h, torch.ones(4), mask), losses.rmu_retain_loss(h, h, mask)):
        assert loss.item() == 0 and loss.grad_fn is not None
        loss.backward()
    assert (h.grad == 0).all()


def test_bad_options_raise_clear_errors() -> None:
    z, t = random_case()
    with pytest.raises(ConfigError, match="implementation"):
        losses.unilogit_loss(z, t, implementation="quick")
    with pytest.raises(ConfigError, match="divergence"):
        losses.unilogit_loss(z, t, divergence="js")
    with pytest.raises(ValueError, match="at least 2"):
        losses.unilogit_loss(torch.zeros(2, 1), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="targets must have shape"):
        losses.nll_loss(z, t[:, :2])
    with pytest.raises(ValueError, match="same shape"):
        losses.kl_retain_loss(z, z[:, :2], t)
    with pytest.raises(ConfigError, match="beta"):
        losses.npo_loss(torch.zeros(2), torch.zeros(2), beta=0.0)


# --------------------------------------------------------------------------------------------
# NPO, SimNPO, DPO
# --------------------------------------------------------------------------------------------


def seq_inputs(dtype: torch.dtype, n: int = 6, requires_grad: bool = True) -> torch.Tensor:
    x = (-torch.rand(n, dtype=torch.float64) * 40).to(dtype)
    return x.requires_grad_(requires_grad)


@pytest.mark.parametrize("dtype", DTYPES)
def test_npo_literal(dtype: torch.dtype) -> None:
    beta = 0.1
    policy, ref = seq_inputs(dtype), seq_inputs(dtype, requires_grad=False)

    def literal(pi, r):  # (2/β) log(1 + (π/π_ref)^β)
        return ((2 / beta) * torch.log(1 + torch.exp(beta * (pi - r.double())))).mean()

    check_value_and_grad(
        lambda p, r: losses.npo_loss(p, r, beta=beta), literal, [policy, ref], dtype
    )


def test_npo_hand_computed() -> None:
    """π = π_ref: (2/β) log(1 + 1) = (2/0.1) · 0.6931472 = 13.862944."""
    x = torch.tensor([-3.0, -7.0], dtype=torch.float64)
    assert losses.npo_loss(x, x, beta=0.1).item() == pytest.approx(20 * math.log(2), abs=1e-12)
    assert losses.npo_loss(x, x, beta=0.1).item() == pytest.approx(13.862944, abs=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_simnpo_literal(dtype: torch.dtype) -> None:
    beta, gamma = 4.5, 0.3
    policy = seq_inputs(dtype)
    lengths = torch.tensor([1, 3, 7, 12, 20, 0])

    def literal(pi, n):
        n = n.double().clamp_min(1)
        return (-(2 / beta) * torch.log(lit_sigmoid(-(beta / n) * pi - gamma))).mean()

    check_value_and_grad(
        lambda p, n: losses.simnpo_loss(p, n, beta=beta, gamma=gamma),
        literal,
        [policy, lengths],
        dtype,
    )


def test_simnpo_hand_computed() -> None:
    """log π = -6, |y| = 3, β = 2, γ = 0: -(2/2) log σ((2/3)·6) = log(1 + e^-4) = 0.0181499."""
    value = losses.simnpo_loss(
        torch.tensor([-6.0], dtype=torch.float64), torch.tensor([3]), beta=2.0
    )
    assert value.item() == pytest.approx(math.log1p(math.exp(-4)), abs=1e-12)
    assert value.item() == pytest.approx(0.0181499, abs=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dpo_literal(dtype: torch.dtype) -> None:
    beta = 0.1
    chosen, rejected = seq_inputs(dtype), seq_inputs(dtype)
    ref_c, ref_r = seq_inputs(dtype, requires_grad=False), seq_inputs(dtype, requires_grad=False)

    def literal(c, r, rc, rr):
        margin = (c - rc.double()) - (r - rr.double())
        return (-(2 / beta) * torch.log(lit_sigmoid(beta * margin))).mean()

    check_value_and_grad(
        lambda c, r, rc, rr: losses.dpo_loss(c, r, rc, rr, beta=beta),
        literal,
        [chosen, rejected, ref_c, ref_r],
        dtype,
    )


def test_dpo_hand_computed() -> None:
    """π_c - ref_c = 1, π_r - ref_r = -1, β = 0.5: -(2/0.5) log σ(0.5 · 2) = 4 log(1 + e^-1)
    = 4 · 0.3132617 = 1.2530467."""
    one = torch.tensor([1.0], dtype=torch.float64)
    zero = torch.tensor([0.0], dtype=torch.float64)
    value = losses.dpo_loss(one, -one, zero, zero, beta=0.5)
    assert value.item() == pytest.approx(4 * math.log1p(math.exp(-1)), abs=1e-12)
    assert value.item() == pytest.approx(1.2530467, abs=1e-7)


# --------------------------------------------------------------------------------------------
# UnDIAL, KL retain
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_undial_literal(dtype: torch.dtype) -> None:
    z, t = random_case(dtype=dtype)
    ref = (torch.randn(z.shape, dtype=torch.float64) * 3).to(dtype)
    check_value_and_grad(
        lambda z, r, t: losses.undial_loss(z, r, t, gamma=3.0),
        lambda z, r, t: lit_undial(z, r.double(), t, 3.0),
        [z, ref, t],
        dtype,
    )


def test_undial_hand_computed() -> None:
    """z_ref = [0, 0], k = 0, γ = log 3: q = softmax([-log 3, 0]) = [1/4, 3/4].
    Policy z = [0, 0]: p = [1/2, 1/2], CE = -(1/4 + 3/4) log(1/2) = log 2 = 0.6931472.
    Policy z = [log 3, 0]: p = [3/4, 1/4],
    CE = -(1/4 log 3/4 + 3/4 log 1/4) = 1/4 · 0.2876821 + 3/4 · 1.3862944 = 1.1116413."""
    t = torch.tensor([0])
    zero = torch.zeros(1, 2, dtype=torch.float64)
    assert losses.undial_loss(zero, zero, t, gamma=math.log(3)).item() == pytest.approx(
        math.log(2), abs=1e-12
    )
    z = torch.tensor([[math.log(3.0), 0.0]], dtype=torch.float64)
    expected = -(0.25 * math.log(0.75) + 0.75 * math.log(0.25))
    assert losses.undial_loss(z, zero, t, gamma=math.log(3)).item() == pytest.approx(expected)
    assert expected == pytest.approx(1.1116413, abs=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
def test_kl_retain_literal(dtype: torch.dtype) -> None:
    z, t = random_case(dtype=dtype)
    ref = (torch.randn(z.shape, dtype=torch.float64) * 3).to(dtype)
    check_value_and_grad(
        losses.kl_retain_loss, lambda z, r, t: lit_kl(z, r.double(), t), [z, ref, t], dtype
    )


def test_kl_retain_hand_computed() -> None:
    """p_ref = [3/4, 1/4], p_θ = [1/2, 1/2]: KL = 3/4 log(3/2) + 1/4 log(1/2) = 0.1308120."""
    ref = torch.tensor([[math.log(3.0), 0.0]], dtype=torch.float64)
    value = losses.kl_retain_loss(torch.zeros(1, 2, dtype=torch.float64), ref, torch.tensor([1]))
    assert value.item() == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5), abs=1e-12)
    assert value.item() == pytest.approx(0.1308120, abs=1e-7)


# --------------------------------------------------------------------------------------------
# RMU
# --------------------------------------------------------------------------------------------


def lit_masked_mse(h: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    terms = []
    B, T, H = h.shape
    for b in range(B):
        for t in range(T):
            if mask[b, t]:
                tgt = target if target.dim() == 1 else target[b, t]
                terms.append(sum((h[b, t, i] - tgt[i]) ** 2 for i in range(H)) / H)
    return torch.stack(terms).mean()


@pytest.mark.parametrize("dtype", DTYPES)
def test_rmu_losses_literal(dtype: torch.dtype) -> None:
    h = torch.randn(2, 5, 6, dtype=torch.float64).to(dtype).requires_grad_()
    mask = torch.rand(2, 5) < 0.6
    mask[0, 0] = True
    control = (torch.rand(6, dtype=torch.float64) * 5).to(dtype)
    ref = torch.randn(2, 5, 6, dtype=torch.float64).to(dtype)
    check_value_and_grad(
        losses.rmu_loss, lambda h, c, m: lit_masked_mse(h, c.double(), m), [h, control, mask], dtype
    )
    check_value_and_grad(
        losses.rmu_retain_loss,
        lambda h, r, m: lit_masked_mse(h, r.double(), m),
        [h, ref, mask],
        dtype,
    )


def test_rmu_hand_computed() -> None:
    """h = [[1, 2], [3, 4]], control = [1, 1]: per position (0² + 1²)/2 = 0.5 and
    (2² + 3²)/2 = 6.5; with both positions kept the mean is 3.5, with only the first 0.5."""
    h = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]], dtype=torch.float64)
    c = torch.ones(2, dtype=torch.float64)
    assert losses.rmu_loss(h, c, torch.tensor([[True, True]])).item() == pytest.approx(3.5)
    assert losses.rmu_loss(h, c, torch.tensor([[1, 0]])).item() == pytest.approx(0.5)
