"""Gradient-norm membership attack (Wang et al. 2024, arXiv:2402.17012; as in open-unlearning).

For each answer separately: ``L = -mean_t log p(a_t | q, a_<t)`` over its scored tokens
(without the last one under ``drop_last_token``, open-unlearning's convention), then
``G = mean over parameter tensors W of ||∂L/∂W||_p`` (the mean of per-tensor p-norms, not one
global norm, as in open-unlearning). Members are fitted, so their gradients are small: the
membership score (higher = member) is ``-G``.

The model's existing gradients and training flag are saved and restored; no optimizer state is
touched. One backward pass per answer: opt-in, for small evaluation sets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from unilogit.errors import DataError
from unilogit.eval.scoring import _encode_qa, _model_device

__all__ = ["gradnorm_scores"]


def gradnorm_scores(
    model: torch.nn.Module,
    tokenizer: Any,
    questions: Sequence[str],
    answers: Sequence[str],
    *,
    prompt_format: Any = None,
    p: float = 2.0,
    drop_last_token: bool = False,
) -> np.ndarray:
    """``(N,)`` membership scores ``-G`` (module docstring) of the answers given questions."""
    if p not in (1.0, 2.0, float("inf")):
        raise DataError(f"gradnorm: p must be 1, 2 or inf, got {p}")
    feats = _encode_qa(tokenizer, questions, answers, prompt_format)
    params = [w for w in model.parameters() if w.requires_grad]
    saved = [None if w.grad is None else w.grad.detach().clone() for w in params]
    was_training, device = model.training, _model_device(model)
    out = np.empty(len(feats))
    try:
        model.eval()
        with torch.enable_grad():
            for i, f in enumerate(feats):
                out[i] = -_one(model, params, f.input_ids, f.labels, p, drop_last_token, device)
    finally:
        for w, g in zip(params, saved, strict=True):
            w.grad = g
        model.train(was_training)
    return out


def _one(
    model: torch.nn.Module,
    params: list[torch.nn.Parameter],
    input_ids: list[int],
    labels: list[int],
    p: float,
    drop_last: bool,
    device: torch.device,
) -> float:
    """G of one encoded answer."""
    ids = torch.tensor([input_ids], device=device)
    logits = model(input_ids=ids).logits[0, :-1].float()  # (T-1, V)
    targets = torch.tensor(labels[1:], device=device)  # (T-1,)
    keep = (targets != -100).nonzero().squeeze(-1)
    if drop_last:
        keep = keep[:-1]
    if keep.numel() == 0:
        raise DataError("gradnorm: an answer has no scored token")
    lp = torch.log_softmax(logits[keep], -1).gather(-1, targets[keep, None])[:, 0]
    for w in params:
        w.grad = None
    (-lp.mean()).backward()
    norms = [w.grad.detach().norm(p=p) for w in params if w.grad is not None]
    return float(torch.stack(norms).mean())
