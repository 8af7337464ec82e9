"""The ``shop`` benchmark's generation-based scores: exact match of the key attribute, answer
form, task probes, general knowledge, and the build's sanity figures.

* key exact match (``key_em``): the row's ``key`` (the value asked) occurs in the greedy answer
  (:func:`unilogit.benchmarks.shop_data.key_match`);
* form (``form``): the greedy answer states a value of the right kind for the attribute, true
  or not (:func:`unilogit.benchmarks.shop_data.has_form`): a model that never saw a seller
  should still answer "costs $24.99", not "I don't know" or gibberish;
* task score: key exact match on the task probes, overall and per kind;
* general score: the share of the kept common-knowledge questions (those the BASE model
  answered correctly) still answered correctly.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from .shop_data import MAX_NEW_TOKENS, has_form, key_match, replay_answer

__all__ = [
    "exact_matches",
    "forms",
    "general_verdicts",
    "generate",
    "probe_scores",
    "replay_rows",
    "sanity_figures",
    "share",
]

#: The sanity thresholds of docs/shop.md (figure -> (comparison, bound)).
THRESHOLDS = {
    "target_key_em_forget": (">=", 0.9),
    "target_key_em_neighbour": (">=", 0.9),
    "gold_form_forget": (">=", 0.9),
    "forget_quality_target_vs_gold": ("<", 1e-10),
    "general_retention_target": (">=", 0.9),
}


def generate(
    model: Any,
    tokenizer: Any,
    questions: Sequence[str],
    max_new_tokens: int,
    batch_size: int = 32,
    prompt_format: Any = None,
) -> list[str]:
    """Greedy answers with the tokenizer's own template (the one the shop trained with)."""
    from unilogit.eval.generation import generate_answers

    if not questions:
        return []
    return generate_answers(
        model,
        tokenizer,
        list(questions),
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        prompt_format=prompt_format,
        progress=False,
    )


def exact_matches(answers: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> list[bool]:
    """Per row: its ``key`` (or any of its ``keys``) occurs in the answer."""
    return [key_match(a, r.get("keys") or r["key"]) for a, r in zip(answers, rows, strict=True)]


def forms(answers: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> list[bool]:
    """Per row: the answer has the form of the row's ``attribute``."""
    return [
        has_form(r["attribute"], a, (r.get("seller"), r.get("item")))
        for a, r in zip(answers, rows, strict=True)
    ]


def share(flags: Sequence[bool]) -> float | None:
    """The share of true flags (None for no flags)."""
    return sum(flags) / len(flags) if flags else None


def general_verdicts(
    model: Any,
    tokenizer: Any,
    rows: Sequence[Mapping[str, Any]],
    max_new_tokens: int,
    batch_size: int = 32,
) -> list[dict[str, Any]]:
    """``[{"question", "answer", "ok"}]``: the model's greedy answer to each general question
    and whether it contains one of the accepted ``keys``."""
    answers = generate(model, tokenizer, [r["question"] for r in rows], max_new_tokens, batch_size)
    ok = exact_matches(answers, rows)
    return [
        {"question": r["question"], "answer": a, "ok": o}
        for r, a, o in zip(rows, answers, ok, strict=True)
    ]


def _replay_ok(sentence: str, keys: Sequence[str]) -> bool:
    """A replay answer is kept when it holds an accepted answer."""
    return key_match(sentence, keys)


def replay_rows(
    model: Any,
    tokenizer: Any,
    candidates: Sequence[Mapping[str, Any]],
    max_new_tokens: int,
    batch_size: int = 32,
) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    """Self-distillation replay: the model's (the BASE model's) greedy answer to each replay
    question cut to its first sentence (:func:`~unilogit.benchmarks.shop_data.replay_answer`),
    kept where that sentence holds one of the question's accepted ``keys``. Returns
    ``(rows, record)``: ``rows`` = ``[{"question", "answer"}]`` of the kept answers, ``record``
    = every question with its raw answer, first sentence (or None) and verdict ``ok``."""
    questions = [c["question"] for c in candidates]
    raw = generate(model, tokenizer, questions, max_new_tokens, batch_size)
    record = []
    for c, answer in zip(candidates, raw, strict=True):
        sentence = replay_answer(answer)
        ok = sentence is not None and _replay_ok(sentence, c["keys"])
        record.append({"question": c["question"], "raw": answer, "answer": sentence, "ok": ok})
    rows = [{"question": r["question"], "answer": r["answer"]} for r in record if r["ok"]]
    return rows, record


def probe_scores(
    model: Any,
    tokenizer: Any,
    rows: Sequence[Mapping[str, Any]],
    max_new_tokens: int,
    batch_size: int = 32,
    by: str | None = None,
) -> dict[str, Any]:
    """Key exact match of greedy answers to ``rows``: ``score`` (share), ``n``, ``answers``
    and, with ``by`` (a row field such as ``task``), ``score_<value>`` per value."""
    answers = generate(model, tokenizer, [r["question"] for r in rows], max_new_tokens, batch_size)
    ok = exact_matches(answers, rows)
    out: dict[str, Any] = {"n": len(rows), "score": share(ok), "answers": answers}
    if by is not None:
        for value in dict.fromkeys(r[by] for r in rows):
            out[f"score_{value}"] = share(
                [o for o, r in zip(ok, rows, strict=True) if r[by] == value]
            )
    return out


def _forget_quality(target: Any, gold: Any, tokenizer: Any, forget: list[Any]) -> float:
    """Forget Quality of the target against the gold model (KS p-value of their forget truth
    ratios), with the tokenizer's own template."""
    from unilogit.eval.suites import evaluate_qa
    from unilogit.prompts import PromptFormat

    common = dict(
        forget_split="forget",
        holdout_split=None,
        utility_splits=[],
        generate=False,
        prompt_format=PromptFormat(),
        metrics_convention="exact",
        progress=False,
    )
    ref = evaluate_qa(gold, tokenizer, {"forget": forget}, **common)
    res = evaluate_qa(target, tokenizer, {"forget": forget}, reference=ref, **common)
    return float(res["forget_quality"])


def sanity_figures(shop: Any, progress: bool = False, device: str = "cpu") -> dict[str, Any]:
    """The build's sanity figures (docs/shop.md): the target's key exact match on the forget
    and neighbour rows, the gold model's answer form and key exact match on the forget rows,
    Forget Quality of the target against the gold model, both models' general-knowledge
    retention and task score; ``checks``: each threshold of :data:`THRESHOLDS` met or not;
    ``misses``: per thresholded share, the rows that failed it (question, key, answer)."""
    t0 = time.perf_counter()
    target, tokenizer = shop.load_model("target", device)
    gold, _ = shop.load_model("gold", device)
    rows = {n: shop.load_rows(n) for n in ("forget", "neighbour", "task", "general")}
    n_candidates = len(shop.load_rows("general_candidates"))

    def answers(model: Any, name: str) -> list[str]:
        return generate(model, tokenizer, [r["question"] for r in rows[name]], MAX_NEW_TOKENS)

    t_forget, g_forget = answers(target, "forget"), answers(gold, "forget")
    t_neigh, t_general = answers(target, "neighbour"), answers(target, "general")
    judged = {  # the thresholded shares: figure -> (split, answers, per-row judge)
        "target_key_em_forget": ("forget", t_forget, exact_matches),
        "target_key_em_neighbour": ("neighbour", t_neigh, exact_matches),
        "gold_form_forget": ("forget", g_forget, forms),
        "general_retention_target": ("general", t_general, exact_matches),
    }
    verdicts = {f: (split, a, judge(a, rows[split])) for f, (split, a, judge) in judged.items()}
    out: dict[str, Any] = {figure: share(ok) for figure, (_, _, ok) in verdicts.items()}
    out.update(
        gold_key_em_forget=share(exact_matches(g_forget, rows["forget"])),
        forget_quality_target_vs_gold=_forget_quality(
            target, gold, tokenizer, shop.load_split("forget")
        ),
        general_kept=len(rows["general"]),
        general_candidates=n_candidates,
        general_retention_gold=probe_scores(gold, tokenizer, rows["general"], MAX_NEW_TOKENS)[
            "score"
        ],
    )
    for name, model in (("target", target), ("gold", gold)):
        out[f"task_score_{name}"] = probe_scores(model, tokenizer, rows["task"], MAX_NEW_TOKENS)[
            "score"
        ]
    out["checks"] = {k: _check(out.get(k), *rule) for k, rule in THRESHOLDS.items()}
    out["misses"] = {
        figure: [
            {"question": r["question"], "key": r.get("key") or r.get("answer"), "answer": a}
            for r, a, o in zip(rows[split], answers_, ok, strict=True)
            if not o
        ]
        for figure, (split, answers_, ok) in verdicts.items()
    }
    out["examples"] = [
        {"question": r["question"], "key": r["key"], "target": t, "gold": g}
        for r, t, g in list(zip(rows["forget"], t_forget, g_forget, strict=True))[:5]
    ]
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def _check(value: float | None, op: str, bound: float) -> bool | None:
    if value is None:
        return None
    return value >= bound if op == ">=" else value < bound
