"""Knowledge probes scored by teacher forcing: "would greedy decoding give the answer?".

A probe is a prompt and one or more accepted answers (the answer and its aliases). Two formats:

- ``chat``: the question as the user turn of the tokenizer's chat template (plain
  ``Question: ...\\nAnswer:`` without one, see :func:`unilogit.data.encode_prompt`), then an
  optional answer lead-in in the assistant turn (``"The capital of France is"``), then the answer;
- ``text``: raw text completion (fill-in-the-blank): ``[BOS] + prompt``, then the answer.

The answer is joined to what precedes it with one space, unless that ends in whitespace or an
opening quote or bracket, or is the start of the assistant turn. Its tokens ``a_1..a_m`` follow
the prompt tokens ``x``.

**Greedy-correct.** A probe is answered correctly iff for some accepted answer every answer token
is the arg-max of the model's next-token distribution given the prompt and the previous answer
tokens: ``a_j = argmax_v p(v | x, a_<j)`` for all j. That is exactly "greedy decoding from ``x``
starts with ``a``" (greedy decoding appends the arg-max at each step, and while it agrees with
``a`` its context is ``x, a_<j``), computed by ONE teacher-forced forward pass per batch instead
of m decoding steps. Ties in the arg-max are broken to the lowest token id, as ``torch.argmax``
and greedy ``generate`` both do.

**Probability.** Also the main answer's per-token geometric-mean probability
``exp(mean_j log p(a_j | x, a_<j))``: a continuous score for curves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from unilogit.data import _bos, _tokenize, collate, encode_prompt
from unilogit.errors import DataError
from unilogit.eval.scoring import _Feature, _model_device, _pad_id, eval_mode

__all__ = ["Probe", "ProbeScore", "encode_probe", "score_probes", "summarize_scores"]

FORMATS = ("chat", "text")


@dataclass(frozen=True)
class Probe:
    """One knowledge probe. ``answers``: the answer first, then accepted aliases.

    ``kind`` is the probe's group (``forget``, ``neighbour``, ``utility``), ``level`` its forget
    level (``fb``, ``qa``, ``adv``; empty for others), ``target`` the target id it belongs to or
    neighbours (empty for utility), ``lead`` the assistant-turn lead-in (``chat`` only).
    """

    id: str
    prompt: str
    answers: tuple[str, ...]
    format: str = "chat"
    lead: str = ""
    kind: str = ""
    level: str = ""
    target: str = ""
    note: str = field(default="", compare=False)


@dataclass(frozen=True)
class ProbeScore:
    """``correct``: greedy-correct for some accepted answer; ``prob``: the main answer's per-token
    geometric-mean probability; ``matched``: the first accepted answer that was greedy-correct
    (None if none)."""

    correct: bool
    prob: float
    matched: str | None


_NO_SPACE_AFTER = "\"'([“‘"


def _join(context: str, answer: str) -> str:
    """The answer as it follows ``context``: after one space, unless ``context`` is empty or ends
    in whitespace or an opening quote or bracket."""
    return (
        answer
        if not context or context[-1].isspace() or context[-1] in _NO_SPACE_AFTER
        else " " + answer
    )


def encode_probe(
    tokenizer, probe: Probe, *, prompt_format=None
) -> tuple[list[int], list[list[int]]]:
    """Prompt token ids and the token ids of each accepted answer (see the module docstring);
    ``prompt_format``: a :class:`unilogit.prompts.PromptFormat` or bare ``chat_template``."""
    if probe.format == "chat":
        prompt = encode_prompt(tokenizer, probe.prompt, prompt_format=prompt_format)
        context = probe.lead
        if probe.lead:
            prompt = prompt + _tokenize(tokenizer, probe.lead)
    elif probe.format == "text":
        prompt = _bos(tokenizer) + _tokenize(tokenizer, probe.prompt)
        context = probe.prompt
    else:
        raise DataError(f"probe {probe.id}: format must be one of {FORMATS}, got {probe.format!r}")
    answers = [_tokenize(tokenizer, _join(context, a)) for a in probe.answers]
    if not prompt or any(not a for a in answers):
        raise DataError(f"probe {probe.id}: the prompt or an answer encodes to zero tokens")
    return prompt, answers


def _features(prompt: list[int], answer: list[int]) -> _Feature:
    return _Feature(prompt + answer, [-100] * len(prompt) + answer)


@torch.no_grad()
def _score_rows(model, tokenizer, feats: list[_Feature], batch_size: int, progress: bool):
    """Per row: (every answer token is the arg-max, mean answer-token log-prob, the arg-max at
    the first answer position)."""
    from tqdm.auto import tqdm

    device, pad = _model_device(model), _pad_id(tokenizer)
    order = sorted(range(len(feats)), key=lambda i: -len(feats[i].input_ids))
    hits, means, firsts = [False] * len(feats), [0.0] * len(feats), [-1] * len(feats)
    bar = tqdm(total=len(feats), desc="probes", disable=not progress, leave=False)
    with eval_mode(model), bar:
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            batch = collate([feats[i] for i in idx], pad, padding_side="right")
            targets = batch["labels"][:, 1:].to(device)  # (B, T-1): token t+1 of position t
            mask = targets != -100
            logits = _answer_logits(
                model, batch["input_ids"].to(device), batch["attention_mask"].to(device), mask
            )  # (N, V): answer positions only
            tgt = targets[mask]  # (N,)
            best = logits.argmax(-1)  # (N,)
            lp = torch.log_softmax(logits, -1).gather(-1, tgt[:, None])[:, 0]  # (N,)
            start = 0
            for row, n in zip(idx, mask.sum(1).tolist(), strict=True):
                hits[row] = bool((best[start : start + n] == tgt[start : start + n]).all())
                means[row] = float(lp[start : start + n].mean())
                firsts[row] = int(best[start])
                start += n
            bar.update(len(idx))
    return hits, means, firsts


def score_probes(
    model: torch.nn.Module,
    tokenizer,
    probes: Sequence[Probe],
    *,
    batch_size: int = 16,
    prompt_format=None,
    progress: bool = False,
) -> list[ProbeScore]:
    """Greedy-correctness and answer probability of every probe (module docstring), in order.

    Pass 1 scores each probe's main answer. An alias can only be greedy-correct if its first
    token is the arg-max after the prompt (known from pass 1), so pass 2 scores just those
    aliases of the probes pass 1 found wrong. ``prob`` is the main answer's probability.

    Any causal LM works; with Hugging Face's ``get_decoder`` / ``get_output_embeddings`` (Llama,
    Qwen, Mistral, ..., also under peft) the LM head runs only on answer positions.
    """
    if batch_size < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}")
    if not probes:
        return []
    net = model
    encoded = [encode_probe(tokenizer, p, prompt_format=prompt_format) for p in probes]
    main = [_features(prompt, answers[0]) for prompt, answers in encoded]
    hits, means, firsts = _score_rows(net, tokenizer, main, batch_size, progress)
    matched: list[str | None] = [
        p.answers[0] if h else None for p, h in zip(probes, hits, strict=True)
    ]
    extra, owner = [], []  # pass 2: aliases that start with the greedy first token
    for i, (prompt, answers) in enumerate(encoded):
        if hits[i]:
            continue
        for k, ans in enumerate(answers[1:], start=1):
            if ans[0] == firsts[i]:
                extra.append(_features(prompt, ans))
                owner.append((i, k))
    if extra:
        hits2, _, _ = _score_rows(net, tokenizer, extra, batch_size, progress)
        for (i, k), hit in zip(owner, hits2, strict=True):
            if hit and matched[i] is None:
                matched[i] = probes[i].answers[k]
    return [
        ProbeScore(correct=m is not None, prob=float(np.exp(lp)), matched=m)
        for m, lp in zip(matched, means, strict=True)
    ]


def _answer_logits(model, input_ids, attention_mask, mask) -> torch.Tensor:
    """Logits ``(N, V)`` at the positions where ``mask`` ``(B, T-1)`` is set (position t
    predicts token t+1). Hugging Face LMs with a decoder (``get_decoder``) and an output
    embedding run the head on those positions only; other models run whole."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft
    decoder = inner.get_decoder() if hasattr(inner, "get_decoder") else None
    head = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    if isinstance(decoder, nn.Module) and isinstance(head, nn.Module):
        out = decoder(input_ids=input_ids, attention_mask=attention_mask)
        hidden = out.last_hidden_state[:, :-1]  # (B, T-1, H)
        return head(hidden[mask]).float()  # (N, V)
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1]
    return logits[mask].float()  # (N, V)


def summarize_scores(scores: Sequence[ProbeScore]) -> dict[str, float]:
    """``score``: fraction greedy-correct; ``prob``: mean answer probability; ``n``."""
    if not scores:
        return {"score": float("nan"), "prob": float("nan"), "n": 0}
    return {
        "score": float(np.mean([s.correct for s in scores])),
        "prob": float(np.mean([s.prob for s in scores])),
        "n": len(scores),
    }
