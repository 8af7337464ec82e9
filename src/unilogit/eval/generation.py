"""Batched greedy generation with LEFT padding.

Prompts are sorted by length (longest first) so each batch holds prompts of similar length, padded
on the left (so every row's next token comes from the last column), decoded greedily with
``model.generate`` (position ids come from the attention mask, so padding does not shift
positions), and returned in input order. Each output is cut at the first EOS (any of the
tokenizer's and the model's generation-config EOS ids), decoded without special tokens, cut at the
first stop string and stripped of surrounding whitespace.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

from unilogit.data import encode_prompt
from unilogit.errors import DataError
from unilogit.eval.scoring import _length_sorted_batches, _max_positions, _model_device, _pad_id
from unilogit.eval.scoring import eval_mode as _eval_mode

__all__ = ["generate_answers", "generate_continuations", "generate_from_ids"]


def _eos_ids(model: torch.nn.Module, tokenizer) -> list[int]:
    ids: set[int] = set()
    for src in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if src is None:
            continue
        ids.update(int(i) for i in (src if isinstance(src, (list, tuple)) else [src]))
    return sorted(ids)


def _cut_at_stop(text: str, stop_strings: Sequence[str] | None) -> str:
    for s in stop_strings or ():
        pos = text.find(s)
        if pos != -1:
            text = text[:pos]
    return text


class _StopOnStrings(StoppingCriteria):
    """Per-row stop once the newly generated text contains any stop string."""

    def __init__(self, tokenizer, prompt_len: int, stop_strings: Sequence[str]) -> None:
        self.tokenizer = tokenizer
        self.prompt_len = prompt_len
        self.stop_strings = list(stop_strings)

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        new = input_ids[:, self.prompt_len :].tolist()
        texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        done = [any(s in t for s in self.stop_strings) for t in texts]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def generate_from_ids(
    model: torch.nn.Module,
    tokenizer,
    prompt_ids: Sequence[Sequence[int]],
    *,
    max_new_tokens: int | Sequence[int] = 200,
    batch_size: int = 32,
    stop_strings: Sequence[str] | None = None,
    progress: bool = True,
    desc: str = "generating",
) -> list[str]:
    """Greedy continuations of already-tokenised prompts.

    Args:
        prompt_ids: one list of token ids per prompt (non-empty).
        max_new_tokens: a limit for all prompts, or one per prompt (a batch generates up to its
            largest limit and each row is cut to its own; greedy decoding makes that identical
            to generating each row alone). A row never runs past the model's
            ``max_position_embeddings`` (when declared): its limit is capped at that minus its
            prompt length.
        stop_strings: generation of a row stops at the first of these (they are not returned).
        progress: show a tqdm bar.

    Returns:
        The decoded new text of each prompt, in input order.
    """
    n = len(prompt_ids)
    limits = (
        [int(max_new_tokens)] * n
        if isinstance(max_new_tokens, int)
        else [int(m) for m in max_new_tokens]
    )
    if len(limits) != n:
        raise DataError(f"{n} prompts but {len(limits)} max_new_tokens values")
    if any(len(p) == 0 for p in prompt_ids):
        raise DataError("generation: a prompt encodes to zero tokens")
    n_pos = _max_positions(model)
    if n_pos is not None:  # never generate past the model's declared context (per row)
        limits = [
            max(0, min(lim, n_pos - len(p))) for lim, p in zip(limits, prompt_ids, strict=True)
        ]
    out: list[str | None] = [None] * n
    batches = _length_sorted_batches([len(p) for p in prompt_ids], batch_size)
    with _eval_mode(model), tqdm(total=n, desc=desc, disable=not progress, leave=False) as bar:
        for idx in batches:
            texts = _generate_batch(
                model, tokenizer, [prompt_ids[i] for i in idx], [limits[i] for i in idx],
                stop_strings,
            )  # fmt: skip
            for i, text in zip(idx, texts, strict=True):
                out[i] = text
            bar.update(len(idx))
    return out  # type: ignore[return-value]


def generate_answers(
    model: torch.nn.Module,
    tokenizer,
    questions: Sequence[str],
    *,
    max_new_tokens: int = 200,
    batch_size: int = 32,
    prompt_format: Any = None,
    stop_strings: Sequence[str] | None = None,
    max_length_counts_prompt: bool = False,
    progress: bool = True,
) -> list[str]:
    """Greedy answers to QA questions, the prompt formatted as in training
    (:func:`unilogit.data.encode_prompt` with ``prompt_format``, a
    :class:`unilogit.prompts.PromptFormat` or bare ``chat_template`` value); each answer cut at
    EOS (TOFU ROUGE: 200 new tokens). ``max_length_counts_prompt``: ``max_new_tokens`` is a
    total length that includes the prompt (the original TOFU's ``max_length=200``)."""
    prompts = [encode_prompt(tokenizer, q, prompt_format=prompt_format) for q in questions]
    limits: int | list[int] = max_new_tokens
    if max_length_counts_prompt:
        limits = [max(0, max_new_tokens - len(p)) for p in prompts]
    return generate_from_ids(
        model,
        tokenizer,
        prompts,
        max_new_tokens=limits,
        batch_size=batch_size,
        stop_strings=stop_strings,
        progress=progress,
        desc="generating answers",
    )


def generate_continuations(
    model: torch.nn.Module,
    tokenizer,
    prompts: Sequence[str],
    *,
    max_new_tokens: int | Sequence[int] = 128,
    batch_size: int = 32,
    stop_strings: Sequence[str] | None = None,
    max_prompt_length: int | None = None,
    progress: bool = True,
) -> list[str]:
    """Greedy continuations of raw-text prompts (MUSE VerbMem, ICL-prompted KnowMem).

    Prompts are tokenised with the tokenizer's special tokens (BOS if it adds one). A prompt
    longer than ``max_prompt_length`` keeps its LAST tokens (the ones the continuation depends
    on; a leading BOS is kept); the default is the model's ``max_position_embeddings`` minus
    the largest ``max_new_tokens``, when the model declares one.
    """
    if max_prompt_length is None:
        n_pos = _max_positions(model)
        longest = (
            max_new_tokens if isinstance(max_new_tokens, int) else max(max_new_tokens, default=0)
        )
        if n_pos is not None:
            max_prompt_length = max(1, n_pos - int(longest))
    ids = []
    for p in prompts:
        toks = list(tokenizer(p, add_special_tokens=True)["input_ids"])
        if max_prompt_length is not None and len(toks) > max_prompt_length:
            bos = tokenizer.bos_token_id
            if bos is not None and toks[0] == bos and max_prompt_length > 1:
                toks = [bos] + toks[len(toks) - max_prompt_length + 1 :]  # keep the BOS
            else:
                toks = toks[-max_prompt_length:]
        ids.append(toks)
    return generate_from_ids(
        model,
        tokenizer,
        ids,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        stop_strings=stop_strings,
        progress=progress,
        desc="generating continuations",
    )


def _generate_batch(
    model: torch.nn.Module,
    tokenizer,
    prompts: Sequence[Sequence[int]],
    limits: Sequence[int],
    stop_strings: Sequence[str] | None,
) -> list[str]:
    """Greedy continuations of one batch of prompts (left-padded), each cut to its own limit,
    at the first EOS and at the first stop string."""
    pad, eos = _pad_id(tokenizer), _eos_ids(model, tokenizer)
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)  # (B, T)
    for row, p in enumerate(prompts):
        ids[row, width - len(p) :] = torch.tensor(list(p), dtype=torch.long)
        mask[row, width - len(p) :] = 1
    budget = max(limits)
    if budget <= 0:
        return [""] * len(prompts)
    # Plain greedy: every logits processor that a model's own generation_config could switch
    # on (unset fields are filled from it) is set to its neutral value here.
    config = GenerationConfig(
        max_new_tokens=budget,
        min_new_tokens=0,
        do_sample=False,
        num_beams=1,
        repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        pad_token_id=pad,
        eos_token_id=eos or None,
    )
    criteria = (
        StoppingCriteriaList([_StopOnStrings(tokenizer, width, stop_strings)])
        if stop_strings
        else None
    )
    device = _model_device(model)
    gen = model.generate(
        input_ids=ids.to(device),
        attention_mask=mask.to(device),
        generation_config=config,
        stopping_criteria=criteria,
        **_no_model_defaults(model),
    )
    new = gen[:, width:].tolist()  # (B, <= budget)
    texts = []
    for row, limit in enumerate(limits):
        toks = new[row][:limit]
        for j, t in enumerate(toks):
            if t in eos:
                toks = toks[:j]
                break
        text = tokenizer.decode(toks, skip_special_tokens=True)
        texts.append(_cut_at_stop(text, stop_strings).strip())
    return texts


def _no_model_defaults(model: Any) -> dict[str, Any]:
    """transformers 4.50-4.57 replace every field of a given GenerationConfig that equals the
    library default (``do_sample=False`` included) with the model's own value unless
    ``use_model_defaults=False``; later versions have no such argument."""
    import inspect

    params = inspect.signature(model.generate).parameters
    return {"use_model_defaults": False} if "use_model_defaults" in params else {}
