"""Batched, no-grad scoring: per-token log-probabilities of answers and texts, and KL to a
reference model.

QA pairs are encoded with :func:`unilogit.data.encode_example`, the same function training uses,
so the scored tokens are exactly the supervised tokens of training (answer tokens + EOS, prompt
formatted with the chat template if any). Sequences are sorted by length (longest first) before
batching, so batches hold sequences of similar length, and results come back in input order.
Batches are RIGHT-padded: with causal attention the logits at real positions never see the
padding after them, so batched scores equal one-by-one scores (up to float rounding).

Returned arrays are float64 numpy arrays of shape ``(n_scored_tokens,)`` per item.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from unilogit.data import Example, collate, encode_example
from unilogit.errors import DataError

__all__ = [
    "TokenScores",
    "answer_logprobs",
    "answer_token_scores",
    "completion_token_scores",
    "kl_to_reference",
    "text_logprobs",
    "token_stats",
]

# Upper bound on the number of (position × vocab) float32 elements materialised at once when
# turning selected logits into log-probs (2^27 floats = 512 MiB).
_MAX_CHUNK_ELEMENTS = 1 << 27


@dataclass
class TokenScores:
    """Scores of the scored tokens of one answer or text, each ``(n_tokens,)`` float64.

    ``logprobs[t]`` = log p(x_t | x_<t); ``mu[t]``, ``sigma[t]`` = mean and standard deviation
    of log p_t(z) under z ~ p_t (the model's distribution at that position), for Min-K%++.
    ``mu``/``sigma`` are None when not requested. ``top1[t]``: the target token is the arg-max
    at that position (exact memorization, extraction strength); None when not computed.
    """

    logprobs: np.ndarray
    mu: np.ndarray | None = None
    sigma: np.ndarray | None = None
    top1: np.ndarray | None = None


def token_stats(
    logits: torch.Tensor, targets: torch.Tensor, *, with_stats: bool = True, uncentred: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Per-position log-prob of the target token and the Min-K%++ moments, in float32.

    Args:
        logits: ``(N, V)`` logits of N already-aligned positions (any float dtype).
        targets: ``(N,)`` target token ids.
        with_stats: also return μ and σ.

    Returns:
        ``(logprobs, mu, sigma)``, each ``(N,)`` float32, with
        ``logprobs[i] = log softmax(logits[i])[targets[i]]``,
        ``mu[i] = Σ_z p_i(z) log p_i(z)`` and
        ``sigma[i] = sqrt(Σ_z p_i(z) (log p_i(z))² - mu[i]²)``, computed in the centred form
        ``sqrt(Σ_z p_i(z) (log p_i(z) - mu[i])²)``, or as written (``uncentred``, negative
        differences clipped to 0; open-unlearning's float32 arithmetic).
    """
    logp = torch.log_softmax(logits.float(), dim=-1)  # (N, V)
    lp = logp.gather(-1, targets.long().unsqueeze(-1)).squeeze(-1)  # (N,)
    if not with_stats:
        return lp, None, None
    p = logp.exp()  # (N, V)
    # 0 · log 0: log_softmax gives -inf only for -inf logits; p·logp is then nan -> treat as 0
    mu = torch.nan_to_num(p * logp, nan=0.0).sum(-1)  # (N,)
    if uncentred:
        second = torch.nan_to_num(p * logp * logp, nan=0.0).sum(-1)  # (N,)
        return lp, mu, (second - mu * mu).clamp_min(0.0).sqrt()
    # Centred form Σ p (log p - μ)² (= E[(log p)²] - μ²): the uncentred difference loses ~1e-5
    # to cancellation in float32 when σ ≪ |μ| (near-uniform distributions over large V).
    centred = logp - mu.unsqueeze(-1)  # (N, V)
    var = torch.nan_to_num(p * centred * centred, nan=0.0).sum(-1)  # (N,)
    sigma = var.clamp_min(0.0).sqrt()
    return lp, mu, sigma


@contextlib.contextmanager
def eval_mode(*models: torch.nn.Module) -> Iterator[None]:
    """Put models in eval mode (no dropout) for the block, then restore their training flags."""
    flags = [m.training for m in models]
    try:
        for m in models:
            m.eval()
        with torch.inference_mode():
            yield
    finally:
        for m, flag in zip(models, flags, strict=True):
            m.train(flag)


def _model_device(model: torch.nn.Module) -> torch.device:
    dev = getattr(model, "device", None)
    if isinstance(dev, torch.device):
        return dev
    return next(model.parameters()).device


def _pad_id(tokenizer) -> int:
    for tid in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if tid is not None:
            return int(tid)
    return 0


def _max_positions(model: torch.nn.Module) -> int | None:
    n = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return int(n) if isinstance(n, int) and n > 0 else None


def _length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first, stable)."""
    if batch_size < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


class _Feature:
    """Minimal encoded sequence (``input_ids``/``labels`` lists) handed to ``data.collate``."""

    __slots__ = ("input_ids", "labels")

    def __init__(self, input_ids: list[int], labels: list[int]) -> None:
        self.input_ids = input_ids
        self.labels = labels


def _encode_qa(
    tokenizer, questions: Sequence[str], answers: Sequence[str], prompt_format: Any
) -> list[_Feature]:
    if len(questions) != len(answers):
        raise DataError(f"{len(questions)} questions but {len(answers)} answers")
    feats = []
    for i, (q, a) in enumerate(zip(questions, answers, strict=True)):
        ex = Example(prompt=q, response=a, kind="qa", row_id=str(i), extras={})
        enc = encode_example(tokenizer, ex, prompt_format=prompt_format)
        feats.append(_Feature(list(enc.input_ids), list(enc.labels)))
    return feats


def _encode_texts(tokenizer, texts: Sequence[str], max_length: int | None) -> list[_Feature]:
    feats = []
    for t in texts:
        ids = list(tokenizer(t, add_special_tokens=True)["input_ids"])
        if max_length is not None:
            ids = ids[:max_length]
        feats.append(_Feature(ids, list(ids)))
    return feats


def _forward_selected(
    model: torch.nn.Module, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run the model; return the logits of supervised positions ``(N, V)``, their targets ``(N,)``
    and the number of supervised positions per row ``(B,)``."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logits = logits[:, :-1]  # (B, T-1, V): position t predicts token t+1
    targets = batch["labels"][:, 1:]  # (B, T-1)
    mask = targets != -100
    return logits[mask], targets[mask], mask.sum(1)


def _chunks(n_rows: int, vocab: int) -> Iterator[slice]:
    step = max(1, _MAX_CHUNK_ELEMENTS // max(1, vocab))
    for s in range(0, n_rows, step):
        yield slice(s, min(n_rows, s + step))


def _batches(
    feats: list[_Feature],
    tokenizer,
    batch_size: int,
    device: torch.device,
    desc: str,
    progress: bool,
) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
    pad = _pad_id(tokenizer)
    batches = _length_sorted_batches([len(f.input_ids) for f in feats], batch_size)
    with tqdm(total=len(feats), desc=desc, disable=not progress, leave=False) as bar:
        for idx in batches:
            batch = collate([feats[i] for i in idx], pad, padding_side="right")
            yield idx, {k: v.to(device) for k, v in batch.items()}
            bar.update(len(idx))


def _score(
    model: torch.nn.Module,
    tokenizer,
    feats: list[_Feature],
    *,
    batch_size: int,
    with_stats: bool,
    progress: bool,
    desc: str,
    uncentred: bool = False,
) -> list[TokenScores]:
    out: list[TokenScores | None] = [None] * len(feats)
    device = _model_device(model)
    with eval_mode(model):
        for idx, batch in _batches(feats, tokenizer, batch_size, device, desc, progress):
            sel, targets, counts = _forward_selected(model, batch)
            parts: list[list[torch.Tensor]] = [[], [], [], []]
            for sl in _chunks(sel.shape[0], sel.shape[-1]):
                stats = token_stats(
                    sel[sl], targets[sl], with_stats=with_stats, uncentred=uncentred
                )
                top1 = sel[sl].argmax(-1) == targets[sl]
                for store, val in zip(parts, (*stats, top1), strict=True):
                    if val is not None:
                        store.append(val.cpu() if val.dtype == torch.bool else val.double().cpu())
            cols = [torch.cat(p).numpy() if p else None for p in parts]
            bounds = np.concatenate([[0], np.cumsum(counts.cpu().numpy())])
            for j, i in enumerate(idx):
                a, b = bounds[j], bounds[j + 1]
                lp, mu, sd, hit = (None if c is None else c[a:b].copy() for c in cols)
                out[i] = TokenScores(logprobs=lp, mu=mu, sigma=sd, top1=hit)
    return out  # type: ignore[return-value]


def answer_token_scores(
    model: torch.nn.Module,
    tokenizer,
    questions: Sequence[str],
    answers: Sequence[str],
    *,
    batch_size: int = 32,
    prompt_format: Any = None,
    with_stats: bool = False,
    uncentred: bool = False,
    progress: bool = False,
) -> list[TokenScores]:
    """Per-token scores of each answer given its question (answer tokens + EOS, as trained).

    ``prompt_format``: a :class:`unilogit.prompts.PromptFormat` or a bare ``chat_template``
    value. Set ``with_stats=True`` for the Min-K%++ moments μ_t, σ_t as well (``uncentred``:
    see :func:`token_stats`).
    """
    feats = _encode_qa(tokenizer, questions, answers, prompt_format)
    return _score(
        model,
        tokenizer,
        feats,
        batch_size=batch_size,
        with_stats=with_stats,
        progress=progress,
        desc="scoring answers",
        uncentred=uncentred,
    )


def answer_logprobs(
    model: torch.nn.Module,
    tokenizer,
    questions: Sequence[str],
    answers: Sequence[str],
    *,
    batch_size: int = 32,
    prompt_format: Any = None,
    progress: bool = False,
) -> list[np.ndarray]:
    """Per-token log-probs ``log p(a_t | q, a_<t)`` of each answer's tokens, ``(|a|,)`` each.

    The prompt is formatted exactly as in training (``unilogit.data.encode_example``); the
    answer's scored tokens include the EOS that training supervises.
    """
    scores = answer_token_scores(
        model,
        tokenizer,
        questions,
        answers,
        batch_size=batch_size,
        prompt_format=prompt_format,
        progress=progress,
    )
    return [s.logprobs for s in scores]


def text_logprobs(
    model: torch.nn.Module,
    tokenizer,
    texts: Sequence[str],
    *,
    batch_size: int = 32,
    max_length: int | None = None,
    with_stats: bool = True,
    uncentred: bool = False,
    progress: bool = False,
) -> list[TokenScores]:
    """Per-token scores of raw texts (for membership-inference attacks).

    Each text is tokenised with the tokenizer's special tokens (BOS if it adds one); every token
    after the first is scored. Texts are cut to ``max_length`` tokens (default: the model's
    ``max_position_embeddings`` when known). With ``with_stats`` (default) μ_t and σ_t for
    Min-K%++ are returned too.
    """
    max_length = max_length if max_length is not None else _max_positions(model)
    feats = _encode_texts(tokenizer, texts, max_length)
    return _score(
        model,
        tokenizer,
        feats,
        batch_size=batch_size,
        with_stats=with_stats,
        progress=progress,
        desc="scoring texts",
        uncentred=uncentred,
    )


def completion_token_scores(
    model: torch.nn.Module,
    tokenizer,
    prefixes: Sequence[str],
    texts: Sequence[str],
    *,
    batch_size: int = 32,
    max_length: int | None = None,
    insert_space: bool = False,
    progress: bool = False,
) -> list[TokenScores]:
    """Per-token scores of each ``text`` after its ``prefix`` (MUSE VerbMem continuations).

    ``tokenizer(prefix + text)`` (with one space between them if ``insert_space``) with
    special tokens, the first ``len(tokenizer(prefix))`` tokens unscored (open-unlearning's
    ``preprocess_pretraining_instance``); the text part cut to ``max_length`` tokens. An item
    whose text adds no token raises :class:`DataError`.
    """
    if len(prefixes) != len(texts):
        raise DataError(f"{len(prefixes)} prefixes but {len(texts)} texts")
    feats = []
    for i, (prefix, text) in enumerate(zip(prefixes, texts, strict=True)):
        n = len(tokenizer(prefix, add_special_tokens=True)["input_ids"])
        joined = prefix + (" " if insert_space else "") + text
        ids = list(tokenizer(joined, add_special_tokens=True)["input_ids"])
        ids = ids[: n + max_length] if max_length is not None else ids
        if len(ids) <= max(n, 1):
            raise DataError(f"completion {i}: the text adds no token after its prefix")
        feats.append(_Feature(ids, [-100] * max(n, 1) + ids[max(n, 1) :]))
    return _score(
        model,
        tokenizer,
        feats,
        batch_size=batch_size,
        with_stats=False,
        progress=progress,
        desc="scoring completions",
    )


def kl_to_reference(
    model: torch.nn.Module,
    ref_model: torch.nn.Module,
    tokenizer,
    questions: Sequence[str],
    answers: Sequence[str],
    *,
    batch_size: int = 32,
    prompt_format: Any = None,
    reduction: str = "mean",
    progress: bool = False,
) -> float | list[np.ndarray]:
    """KL(p_ref ‖ p_model) = Σ_z p_ref(z) (log p_ref(z) - log p_model(z)) at each answer token.

    Both models must share the tokenizer (the vocabulary axes are compared index by index).

    Args:
        reduction: ``"mean"`` -> one float, the mean over ALL answer tokens (token-weighted);
            ``"none"`` -> per question, an ``(|a|,)`` array of per-token KL values.
    """
    if reduction not in ("mean", "none"):
        raise DataError(f"kl_to_reference: reduction must be 'mean' or 'none', got {reduction!r}")
    feats = _encode_qa(tokenizer, questions, answers, prompt_format)
    out: list[np.ndarray | None] = [None] * len(feats)
    device, ref_device = _model_device(model), _model_device(ref_model)
    with eval_mode(model, ref_model):
        for idx, batch in _batches(
            feats, tokenizer, batch_size, device, "KL to reference", progress
        ):
            sel, _, counts = _forward_selected(model, batch)
            ref_batch = {k: v.to(ref_device) for k, v in batch.items()}
            ref_sel, _, _ = _forward_selected(ref_model, ref_batch)
            if ref_sel.shape[-1] != sel.shape[-1]:
                raise DataError(
                    f"kl_to_reference: vocabulary sizes differ ({ref_sel.shape[-1]} in the "
                    f"reference, {sel.shape[-1]} in the model)"
                )
            ref_sel = ref_sel.to(sel.device)
            kls = []
            for sl in _chunks(sel.shape[0], sel.shape[-1]):
                logq = torch.log_softmax(sel[sl].float(), dim=-1)  # (n, V) model
                logp = torch.log_softmax(ref_sel[sl].float(), dim=-1)  # (n, V) reference
                kl = torch.nan_to_num(logp.exp() * (logp - logq), nan=0.0).sum(-1)  # (n,)
                kls.append(kl.clamp_min(0.0).double().cpu())
            flat = torch.cat(kls).numpy()
            bounds = np.concatenate([[0], np.cumsum(counts.cpu().numpy())])
            for j, i in enumerate(idx):
                out[i] = flat[bounds[j] : bounds[j + 1]].copy()
    if reduction == "none":
        return out  # type: ignore[return-value]
    total = sum(a.size for a in out)  # type: ignore[union-attr]
    if total == 0:
        raise DataError("kl_to_reference: no answer tokens")
    return float(sum(a.sum() for a in out) / total)  # type: ignore[union-attr]
