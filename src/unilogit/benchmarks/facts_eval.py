"""One evaluation of the ``facts`` benchmark (see :mod:`.facts`) and its flat summary.

Cost on 2 CPU cores is dominated by the probe forward passes (one teacher-forced pass per probe,
:mod:`unilogit.eval.probes`); generation runs only for fluency (a few open instructions) and the
before/after examples.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from unilogit.eval.probes import Probe, ProbeScore, encode_probe, score_probes, summarize_scores

__all__ = ["run_evaluation", "summarize_result"]

LEVELS = ("fb", "qa", "adv")


def _group(probes: Sequence[Probe], scores: Sequence[ProbeScore]) -> dict[str, Any]:
    out: dict[str, Any] = summarize_scores(scores)
    if any(p.level for p in probes):
        out["levels"] = {
            lv: summarize_scores([s for p, s in zip(probes, scores, strict=True) if p.level == lv])
            for lv in LEVELS
        }
    if any(p.target for p in probes):
        targets = dict.fromkeys(p.target for p in probes)
        out["targets"] = {
            t: summarize_scores([s for p, s in zip(probes, scores, strict=True) if p.target == t])
            for t in targets
        }
    return out


def _fluency(model, tokenizer, prompts: Sequence[str], opts: Mapping[str, Any], progress: bool):
    from unilogit.eval.generation import generate_answers
    from unilogit.eval.metrics import fluency
    from unilogit.eval.text_stats import repetition

    chosen = list(prompts[: int(opts["fluency_prompts"])])
    if not chosen:
        return None
    texts = generate_answers(
        model,
        tokenizer,
        chosen,
        max_new_tokens=int(opts["fluency_tokens"]),
        batch_size=len(chosen),
        progress=progress,
    )
    return {
        "entropy": fluency(texts),
        "repetition": repetition(texts),
        "generations": [{"prompt": p, "text": t} for p, t in zip(chosen, texts, strict=True)],
    }


def _mia(model, tokenizer, members: Sequence[str], nonmembers: Sequence[str], batch_size: int):
    from unilogit.eval.metrics import mia_aucs, mia_scores
    from unilogit.eval.scoring import text_logprobs

    if not members or not nonmembers:
        return None
    scored = {}
    for name, texts in (("member", members), ("nonmember", nonmembers)):
        s = text_logprobs(model, tokenizer, texts, batch_size=batch_size, with_stats=False)
        scored[name] = mia_scores([x.logprobs for x in s], texts=texts)
    aucs = mia_aucs(scored["member"], scored["nonmember"])
    return {f"{k}_auc": v for k, v in aucs.items()} | {
        "n_member": len(members),
        "n_nonmember": len(nonmembers),
    }


def _examples(model, tokenizer, kept: Mapping[str, list[Probe]], opts: Mapping[str, Any]):
    from unilogit.eval.generation import generate_from_ids

    chosen = [(k, p) for k, ps in kept.items() for p in ps[: int(opts["examples"])]]
    if not chosen:
        return []
    ids = [encode_probe(tokenizer, p)[0] for _, p in chosen]
    texts = generate_from_ids(
        model,
        tokenizer,
        ids,
        max_new_tokens=int(opts["example_tokens"]),
        batch_size=len(ids),
        progress=False,
    )
    return [
        {
            "kind": k,
            "id": p.id,
            "prompt": p.prompt,
            "lead": p.lead,
            "answer_key": p.answers[0],
            "generation": t,
        }
        for (k, p), t in zip(chosen, texts, strict=True)
    ]


def run_evaluation(
    model,
    tokenizer,
    state: Mapping[str, Any],
    fluency_prompts: Sequence[str],
    opts: Mapping[str, Any],
    progress: bool,
) -> dict[str, Any]:
    """The full result (``evaluate``'s docstring); ``state`` = the prepared benchmark."""
    t0 = time.perf_counter()
    kept: dict[str, list[Probe]] = state["kept"]
    everything = [p for kind in ("forget", "neighbour", "utility") for p in kept[kind]]
    scores = score_probes(
        model, tokenizer, everything, batch_size=int(opts["batch_size"]), progress=progress
    )
    result: dict[str, Any] = {}
    start = 0
    for kind in ("forget", "neighbour", "utility"):
        part = scores[start : start + len(kept[kind])]
        result[kind] = _group(kept[kind], part)
        start += len(kept[kind])
    result["probes"] = [
        {
            "id": p.id,
            "kind": p.kind,
            "level": p.level,
            "target": p.target,
            "correct": s.correct,
            "prob": round(s.prob, 6),
            "matched": s.matched,
        }
        for p, s in zip(everything, scores, strict=True)
    ]
    t_probes = time.perf_counter() - t0
    result["fluency"] = _fluency(model, tokenizer, fluency_prompts, opts, progress)
    texts = state["texts"]
    result["mia"] = (
        _mia(model, tokenizer, texts["forget"], texts["holdout"], int(opts["batch_size"]))
        if opts["mia"]
        else None
    )
    result["examples"] = _examples(model, tokenizer, kept, opts) if opts["examples"] else []
    result["seconds"] = {"probes": round(t_probes, 2), "total": round(time.perf_counter() - t0, 2)}
    return result


def summarize_result(result: Mapping[str, Any]) -> dict[str, float]:
    """Flat numbers: ``forget/score|prob|fb|qa|adv``, ``neighbour/score|prob``,
    ``utility/score|prob``, ``fluency/entropy|repetition``, ``mia/<attack>_auc``."""
    out: dict[str, float] = {}
    for kind in ("forget", "neighbour", "utility"):
        part = result[kind]
        out[f"{kind}/score"] = float(part["score"])
        out[f"{kind}/prob"] = float(part["prob"])
    for level, part in result["forget"].get("levels", {}).items():
        if part["n"]:
            out[f"forget/{level}"] = float(part["score"])
    if result.get("fluency"):
        out["fluency/entropy"] = float(result["fluency"]["entropy"])
        out["fluency/repetition"] = float(result["fluency"]["repetition"])
    for key, value in (result.get("mia") or {}).items():
        if key.endswith("_auc"):
            out[f"mia/{key}"] = float(value)
    return {k: v for k, v in out.items() if np.isfinite(v)}
