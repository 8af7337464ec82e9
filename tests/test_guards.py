"""The trainer's non-finite guards, one by one (issue #11): a loss term that becomes ±inf
stops the run at that step, naming the term and the rows, before its backward pass; a
non-finite gradient norm stops it before the optimizer step, with clipping on or off."""

from __future__ import annotations

import copy
import re

import pytest
import torch

from tiny import qa_rows, tiny_llama, word_tokenizer
from unilogit import losses, unlearn
from unilogit.errors import TrainingError
from unilogit.methods import Method, aligned

FORGET, RETAIN = qa_rows()[:4], qa_rows()[4:]
FAST = {"progress": False, "seed": 0, "warmup_ratio": 0.0, "batch_size": 1, "epochs": 3}


@pytest.fixture(scope="module")
def tiny():
    tok = word_tokenizer()
    return tok, tiny_llama(len(tok))


def _weights(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in model.parameters()])


class _FromStep(Method):
    """NLL forget term that turns bad from the ``bad_from``-th call on (see subclasses)."""

    name = "test-guard"
    default_retain = None
    bad_from = 3

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.calls = 0

    def forget_loss(self, step):
        self.calls += 1
        value = losses.nll_loss(*aligned(step.model, step.forget["forget"]))
        return self.spoil(value) if self.calls >= self.bad_from else value

    def spoil(self, value):
        raise NotImplementedError


class _InfLoss(_FromStep):
    def spoil(self, value):
        return value + float("inf")


class _InfRetain(_FromStep):
    """The retain term is +inf; with retain_weight=0 the total is 0 · inf = NaN, which
    blamed no term: the term is now named."""

    default_retain = "nll"

    def forget_loss(self, step):
        return losses.nll_loss(*aligned(step.model, step.forget["forget"]))

    def retain_loss(self, step):
        self.calls += 1
        value = super().retain_loss(step)
        return value + float("inf") if self.calls >= self.bad_from else value


class _InfGrad(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by inf."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


class _InfGradient(_FromStep):
    """A finite loss whose gradient is infinite."""

    def spoil(self, value):
        return _InfGrad.apply(value)


def _run(tiny, method, **options):
    tok, model = tiny
    model = copy.deepcopy(model)
    seen = {}

    def remember(m, step, history):
        seen[step] = _weights(m)

    with pytest.raises(TrainingError) as err:
        unlearn(
            model, tok, FORGET, RETAIN, method=method, on_step_end=remember, **{**FAST, **options}
        )
    return str(err.value), seen, model


def test_an_inf_loss_stops_at_its_step_before_any_update(tiny):
    message, seen, model = _run(tiny, _InfLoss())
    assert "loss became inf" in message and "at step 3 " in message
    assert re.search(r"forget rows in the batch: \S+", message)
    assert sorted(seen) == [1, 2]
    torch.testing.assert_close(_weights(model), seen[2], rtol=0, atol=0)  # step 3 never applied


def test_an_inf_term_hidden_by_a_zero_weight_is_named(tiny):
    message, seen, _ = _run(tiny, _InfRetain(retain_weight=0.0))
    assert "retain = inf" in message and "at step 3 " in message
    assert sorted(seen) == [1, 2]


@pytest.mark.parametrize("max_grad_norm", [1.0, 0.0])
def test_an_infinite_gradient_stops_the_run(tiny, max_grad_norm):
    """Clipping on: the norm that clip_grad_norm_ returns is checked. Clipping off
    (max_grad_norm=0): before, the norm was not even computed and inf gradients reached AdamW."""
    message, seen, model = _run(tiny, _InfGradient(), max_grad_norm=max_grad_norm)
    assert "gradient norm became" in message and "at step 3" in message
    assert sorted(seen) == [1, 2]
    assert torch.isfinite(_weights(model)).all()
    torch.testing.assert_close(_weights(model), seen[2], rtol=0, atol=0)


def test_clipping_off_still_logs_the_gradient_norm(tiny):
    tok, model = tiny
    _, history = unlearn(
        copy.deepcopy(model), tok, FORGET, RETAIN, method="ga", max_grad_norm=0.0, **FAST
    )
    assert all(step["grad_norm"] > 0 for step in history.steps)
