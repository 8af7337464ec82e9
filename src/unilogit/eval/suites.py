"""What a benchmark runs: TOFU-style QA evaluation and MUSE evaluation.

Both functions run the model only through :mod:`unilogit.eval.scoring` and
:mod:`unilogit.eval.generation` (batched) and compute numbers with :mod:`unilogit.eval.metrics`.
Their output is plain JSON (dicts, lists, floats, strings): save the output of the RETAIN model
and pass it back as ``reference`` when evaluating an unlearned model, to get Forget Quality (TOFU)
and PrivLeak (MUSE).

Example::

    splits = {"forget": load_examples("forget10_perturbed.jsonl"),
              "retain": load_examples("retain_perturbed.jsonl"),
              "real_authors": load_examples("real_authors_perturbed.jsonl"),
              "world_facts": load_examples("world_facts_perturbed.jsonl"),
              "holdout": load_examples("holdout10.jsonl")}
    retain_eval = evaluate_qa(retain_model, tokenizer, splits)
    result = evaluate_qa(unlearned, tokenizer, splits, reference=retain_eval,
                         gold_model=retain_model)
    result["forget_quality"], result["model_utility"]
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unilogit.data import Example, load_examples
from unilogit.errors import ConfigError, DataError
from unilogit.eval import metrics as M
from unilogit.eval.conventions import MetricConvention, get_convention
from unilogit.eval.generation import generate_answers, generate_continuations
from unilogit.eval.memorization import exact_memorization, extraction_strength
from unilogit.eval.ou_names import muse_ou_names, qa_ou_names
from unilogit.eval.prompt_defaults import resolve_prompt_format
from unilogit.eval.scoring import answer_token_scores, kl_to_reference, text_logprobs

__all__ = ["evaluate_muse", "evaluate_qa", "kl_to_gold", "load_muse_dir"]

TRUTH_RATIO_CONVENTION = "geometric"  # P_pert = geometric mean over perturbed answers


# --------------------------------------------------------------------------------------------
# TOFU-style QA
# --------------------------------------------------------------------------------------------


def _as_examples(name: str, rows: Any) -> list[Example]:
    if isinstance(rows, (list, tuple)) and rows and all(isinstance(r, Example) for r in rows):
        examples = list(rows)
    else:
        examples = load_examples(rows, kind="qa", name=name)
    if not examples:
        raise DataError(f"split {name!r} is empty")
    for ex in examples:
        if ex.kind != "qa":
            raise DataError(f"split {name!r}: row {ex.row_id} is raw text, expected QA")
    return examples


def _pick_split(splits: Mapping[str, Any], wanted: str | None, prefix: str) -> str | None:
    """``wanted`` if it is a split; else the only split whose name starts with ``prefix``."""
    if wanted is not None and wanted in splits:
        return wanted
    matches = [k for k in splits if k.startswith(prefix)]
    return matches[0] if len(matches) == 1 else None


def _perturbed_lists(name: str, examples: list[Example]) -> list[list[str]] | None:
    """Each row's perturbed answers, or None when the split has none (all rows must agree)."""
    have = ["perturbed_answer" in ex.extras for ex in examples]
    if not any(have):
        return None
    if not all(have):
        row = examples[have.index(False)].row_id
        raise DataError(
            f"split {name!r}: some rows have 'perturbed_answer' and {row} has not",
            field="perturbed_answer",
        )
    out = []
    for ex in examples:
        pert = ex.extras["perturbed_answer"]
        pert = [pert] if isinstance(pert, str) else list(pert)
        if not pert or not all(isinstance(p, str) and p for p in pert):
            raise DataError(
                f"split {name!r}: row {ex.row_id}: must be a non-empty list of non-empty strings",
                field="perturbed_answer",
            )
        out.append(pert)
    return out


def _mean_nlls(
    model, tokenizer, questions: Sequence[str], answers: Sequence[str], **kw: Any
) -> np.ndarray:
    scores = answer_token_scores(model, tokenizer, questions, answers, **kw)
    return np.array([M.mean_nll(s.logprobs) for s in scores])


def _floats(x: np.ndarray | Sequence[float]) -> list[float]:
    return [float(v) for v in x]


def evaluate_qa(
    model: torch.nn.Module,
    tokenizer: Any,
    splits: Mapping[str, Sequence[Example] | Any],
    *,
    reference: Mapping[str, Any] | Sequence[float] | None = None,
    gold_model: torch.nn.Module | None = None,
    forget_split: str | None = "forget",
    holdout_split: str | None = "holdout",
    utility_splits: Sequence[str] | None = None,
    kl_splits: Sequence[str] | None = None,
    prompt_format: Any = None,
    metrics_convention: str | MetricConvention | None = None,
    batch_size: int = 32,
    max_new_tokens: int = 200,
    generate: bool = True,
    mia_k: float = 0.4,
    mia_gradnorm: bool = False,
    keep_generations: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """TOFU metrics on QA splits (see ``docs/metrics.md``).

    Args:
        splits: name -> QA examples (or anything :func:`unilogit.data.load_examples` reads).
            Roles: the FORGET split is ``forget_split`` (default ``"forget"``; else the only
            split whose name starts with "forget"); the HOLDOUT split (never trained on, for
            membership attacks) likewise with ``holdout_split``/"holdout"; all others are
            utility splits unless ``utility_splits`` names them.
        reference: the RETAIN model's output of this function (or directly its per-question
            forget-set truth ratios) -> ``forget_quality``.
        gold_model: the retain model -> ``kl_to_gold`` on ``kl_splits`` (default: every split
            but the holdout).
        generate: greedy-decode answers for ROUGE (the slow part); off = no ROUGE.
        mia_k: k of Min-K% / Min-K%++ for the forget-vs-holdout attacks.
        prompt_format: a :class:`unilogit.prompts.PromptFormat` (or bare ``chat_template``);
            ``None``: :func:`unilogit.eval.prompt_defaults.resolve_prompt_format`. Recorded.
        metrics_convention: :mod:`unilogit.eval.conventions` (default open-unlearning).
        mia_gradnorm: also run the gradient-norm attack (one backward pass per answer).

    Per split (``result["splits"][name]``; definitions in ``docs/metrics.md``): ``probability``
    (``probability_kind``), ``truth_ratios`` / ``truth_ratio`` (``truth_ratio_summary``; ã =
    ``paraphrased_answer`` if present, else the gold answer), ``exact_memorization``,
    ``extraction_strength``, ``kl_to_gold`` (with ``gold_model``, on ``kl_splits``); with
    ``generate``: ``rouge_l_recall`` (+ ``_paraphrased`` / ``_perturbed``), ``fluency``,
    ``generations``. Top level: ``forget_quality`` (+ ``_log10``), ``model_utility`` (of
    ``model_utility_components``), ``mia`` (AUC per attack, forget vs holdout), ``privleak``,
    ``metrics_convention``, ``prompt_format``, ``ou_names`` (open-unlearning's names).
    """
    if not splits:
        raise DataError("evaluate_qa: no splits")
    conv = get_convention(metrics_convention)
    fmt, fmt_source = resolve_prompt_format(prompt_format, model, tokenizer)
    data = {name: _as_examples(name, rows)[: conv.tofu_max_rows] for name, rows in splits.items()}
    forget, holdout, utility = _qa_roles(data, forget_split, holdout_split, utility_splits)
    kl_names = [n for n in data if n != holdout] if kl_splits is None else list(kl_splits)
    common = dict(batch_size=batch_size, prompt_format=fmt, progress=progress)
    want_mia = forget is not None and holdout is not None
    result: dict[str, Any] = {
        "forget_split": forget,
        "holdout_split": holdout,
        "utility_splits": utility,
        "truth_ratio_convention": TRUTH_RATIO_CONVENTION,
        "metrics_convention": conv.describe(),
        "prompt_format": {**fmt.describe(tokenizer), "source": fmt_source},
        "splits": {},
    }
    if isinstance(reference, Mapping):  # refuse a reference made another way before any work
        _check_early(result, reference, data, forget)
    result["splits"], mia_inputs = _score_splits(
        model, tokenizer, data, roles=(forget, holdout), want_mia=want_mia, mia_k=mia_k,
        generation=(max_new_tokens, keep_generations) if generate else None,
        gold=(gold_model, kl_names), common=common, conv=conv,
    )  # fmt: skip
    if want_mia:
        runs = (model, tokenizer, gold_model, mia_gradnorm)
        result["mia"] = _membership(mia_inputs, data, (forget, holdout), runs, common, conv)
        result["mia_k"] = mia_k
    if reference is not None:
        result.update(_forget_quality(result["splits"], forget, reference))
        result.update(_qa_privleak(result.get("mia"), reference, conv))
    result.update(_model_utility(result["splits"], utility))
    result["ou_names"] = qa_ou_names(result)
    return result


def _membership(
    mia_inputs: dict[str, dict[str, np.ndarray]],
    data: Mapping[str, list[Example]],
    roles: tuple[str | None, str | None],
    runs: tuple[torch.nn.Module, Any, torch.nn.Module | None, bool],
    common: Mapping[str, Any],
    conv: MetricConvention,
) -> dict[str, float]:
    """AUC per attack, forget (members) vs holdout; ``runs`` = (model, tokenizer, gold model
    for the reference-model attack or None, whether to run the gradient-norm attack)."""
    model, tokenizer, gold_model, gradnorm = runs
    if gold_model is not None:
        _add_reference_attack(mia_inputs, data, roles, gold_model, tokenizer, common)
    if gradnorm:
        fmt = common.get("prompt_format")
        _add_gradnorm(mia_inputs, data, roles, model, tokenizer, fmt, conv)
    forget, holdout = roles
    return M.mia_aucs(mia_inputs[forget], mia_inputs[holdout])  # type: ignore[index]


def _check_early(
    result: Mapping[str, Any],
    reference: Mapping[str, Any],
    data: Mapping[str, list[Example]],
    forget: str | None,
) -> None:
    """:func:`check_same_setup` before scoring (the forget questions' fingerprint only)."""
    mine = {}
    if forget is not None:
        mine[forget] = {"questions_sha256": questions_hash([e.prompt for e in data[forget]])}
    check_same_setup({**result, "splits": mine}, reference, forget)


def _add_reference_attack(
    mia_inputs: dict[str, dict[str, np.ndarray]],
    data: Mapping[str, list[Example]],
    roles: tuple[str | None, str | None],
    gold_model: torch.nn.Module,
    tokenizer: Any,
    common: Mapping[str, Any],
) -> None:
    """Reference-model attack: -(NLL_model - NLL_gold) per answer of the forget/holdout sets."""
    for name in roles:
        examples = data[name]  # type: ignore[index]
        qs, ans = [ex.prompt for ex in examples], [ex.response for ex in examples]
        ref_nll = _mean_nlls(gold_model, tokenizer, qs, ans, **common)
        nll = -mia_inputs[name]["loss"]  # type: ignore[index]
        mia_inputs[name]["reference"] = -(nll - ref_nll)  # type: ignore[index]


def _add_gradnorm(
    mia_inputs: dict[str, dict[str, np.ndarray]],
    data: Mapping[str, list[Example]],
    roles: tuple[str | None, str | None],
    model: torch.nn.Module,
    tokenizer: Any,
    fmt: Any,
    conv: MetricConvention,
) -> None:
    """Gradient-norm attack scores of the forget and holdout answers."""
    from unilogit.eval.gradnorm import gradnorm_scores

    for name in roles:
        examples = data[name]  # type: ignore[index]
        mia_inputs[name]["gradnorm"] = gradnorm_scores(  # type: ignore[index]
            model,
            tokenizer,
            [ex.prompt for ex in examples],
            [ex.response for ex in examples],
            prompt_format=fmt,
            drop_last_token=conv.drop_last_token,
        )


def _qa_privleak(
    mia: Mapping[str, float] | None, reference: Any, conv: MetricConvention
) -> dict[str, Any]:
    """TOFU PrivLeak: the Min-K% AUC against the reference (retain) model's, when both exist."""
    ref_auc = None
    if isinstance(reference, Mapping):
        ref_auc = (reference.get("mia") or {}).get("min_k")
    if not mia or "min_k" not in mia or not isinstance(ref_auc, (int, float)):
        return {}
    out: dict[str, Any] = {"privleak_retain_auc": float(ref_auc)}
    try:
        out["privleak"] = M.privleak(mia["min_k"], float(ref_auc), conv.epsilon)
    except DataError as e:  # the retain model separates the sets perfectly (tiny splits)
        out["privleak"], out["privleak_undefined"] = None, str(e)
    return out


def _score_splits(
    model: torch.nn.Module,
    tokenizer: Any,
    data: Mapping[str, list[Example]],
    *,
    roles: tuple[str | None, str | None],
    want_mia: bool,
    mia_k: float,
    generation: tuple[int, bool] | None,
    gold: tuple[torch.nn.Module | None, Sequence[str]],
    common: Mapping[str, Any],
    conv: MetricConvention,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, np.ndarray]]]:
    """Every split's numbers (see :func:`evaluate_qa`) and the membership scores of the
    forget and holdout splits. ``roles``: (forget, holdout) split names; ``generation``:
    (max_new_tokens, keep_generations) or None; ``gold``: (gold model, KL split names)."""
    forget, holdout = roles
    gold_model, kl_names = gold
    out: dict[str, dict[str, Any]] = {}
    mia_inputs: dict[str, dict[str, np.ndarray]] = {}
    for name, examples in data.items():
        split, mia = _score_split(
            model,
            tokenizer,
            examples,
            name=name,
            is_forget=name == forget,
            is_holdout=name == holdout,
            with_stats=want_mia and name in (forget, holdout),
            mia_k=mia_k,
            common=common,
            conv=conv,
        )
        if generation is not None and name != holdout:
            split.update(_generation_metrics(model, tokenizer, examples, *generation, common, conv))
        if gold_model is not None and name in kl_names and name != holdout:
            split["kl_to_gold"] = kl_to_gold(model, gold_model, tokenizer, examples, **common)
        if mia is not None:
            mia_inputs[name] = mia
        out[name] = split
    return out, mia_inputs


def kl_to_gold(
    model: torch.nn.Module,
    gold_model: torch.nn.Module,
    tokenizer: Any,
    examples: Sequence[Example],
    **common: Any,
) -> float:
    """Mean per answer token KL(p_gold ‖ p_model) on QA ``examples``: the one KL-to-gold
    computation (:func:`unilogit.eval.scoring.kl_to_reference`)."""
    questions = [ex.prompt for ex in examples]
    answers = [ex.response for ex in examples]
    return float(kl_to_reference(model, gold_model, tokenizer, questions, answers, **common))


def _qa_roles(
    data: Mapping[str, list[Example]],
    forget_split: str | None,
    holdout_split: str | None,
    utility_splits: Sequence[str] | None,
) -> tuple[str | None, str | None, list[str]]:
    """The forget split, the holdout split and the utility splits of ``data``."""
    forget = _pick_split(data, forget_split, "forget")
    holdout = _pick_split(data, holdout_split, "holdout")
    if utility_splits is None:
        return forget, holdout, [n for n in data if n not in (forget, holdout)]
    missing = [n for n in utility_splits if n not in data]
    if missing:
        raise DataError(f"utility_splits {missing} are not among the splits {list(data)}")
    return forget, holdout, list(utility_splits)


def _score_split(
    model: torch.nn.Module,
    tokenizer: Any,
    examples: list[Example],
    *,
    name: str,
    is_forget: bool,
    is_holdout: bool,
    with_stats: bool,
    mia_k: float,
    common: Mapping[str, Any],
    conv: MetricConvention,
) -> tuple[dict[str, Any], dict[str, np.ndarray] | None]:
    """Probability, truth ratios (and membership scores) of one split, without generation."""
    questions = [ex.prompt for ex in examples]
    answers = [ex.response for ex in examples]
    out: dict[str, Any] = {
        "n": len(examples),
        "row_ids": [ex.row_id for ex in examples],
        "questions_sha256": questions_hash(questions),
    }
    gold = answer_token_scores(
        model,
        tokenizer,
        questions,
        answers,
        with_stats=with_stats,
        uncentred=conv.minkpp_uncentred,
        **common,
    )
    gold_nll = np.array([M.mean_nll(s.logprobs) for s in gold])
    out.update(_memorization(gold, conv))
    mia = None
    if with_stats:
        mia = M.mia_scores(
            [s.logprobs for s in gold],
            texts=answers,
            mu=[s.mu for s in gold],
            sigma=[s.sigma for s in gold],
            k=mia_k,
            sigma_floor=conv.minkpp_sigma_floor,
            drop_last_token=conv.drop_last_token,
        )
    perturbed = None if is_holdout else _perturbed_lists(name, examples)
    pert_nll = None
    if perturbed is not None:
        flat_q = [q for q, ps in zip(questions, perturbed, strict=True) for _ in ps]
        flat = _mean_nlls(model, tokenizer, flat_q, [p for ps in perturbed for p in ps], **common)
        bounds = np.cumsum([0] + [len(ps) for ps in perturbed])
        pert_nll = [flat[bounds[i] : bounds[i + 1]] for i in range(len(perturbed))]
    paraphrased = perturbed is not None and all(
        isinstance(ex.extras.get("paraphrased_answer"), str) for ex in examples
    )
    if pert_nll is not None and not paraphrased:
        probs = M.normalised_probability(gold_nll, pert_nll, conv.epsilon)
        out["probability_kind"] = "normalised_by_perturbed"
    else:
        probs = np.exp(-gold_nll)
        out["probability_kind"] = "length_normalised"
    out["probability"] = float(probs.mean())
    out["probabilities"] = _floats(probs)
    if pert_nll is not None:
        true_nll = gold_nll
        if paraphrased:
            para = [ex.extras["paraphrased_answer"] for ex in examples]
            true_nll = _mean_nlls(model, tokenizer, questions, para, **common)
        out.update(_truth_ratio_block(true_nll, pert_nll, paraphrased, is_forget, conv.epsilon))
    return out, mia


def _memorization(scores: Sequence[Any], conv: MetricConvention) -> dict[str, Any]:
    """Mean exact memorization and extraction strength of the answers (teacher-forced arg-max
    matches; the last token dropped under ``conv.drop_last_token``)."""
    em, es = [], []
    for s in scores:
        hits = s.top1[:-1] if conv.drop_last_token and len(s.top1) > 1 else s.top1
        em.append(exact_memorization(hits))
        es.append(extraction_strength(hits, conv.es_no_match))
    return {
        "exact_memorization": float(np.mean(em)),
        "extraction_strength": float(np.mean(es)),
    }


def _truth_ratio_block(
    true_nll: np.ndarray,
    pert_nll: list[np.ndarray],
    paraphrased: bool,
    is_forget: bool,
    epsilon: float = 0.0,
) -> dict[str, Any]:
    """Per-question truth ratios R = P_pert / (P_true + ε) and their summary (forget: mean
    min(R, 1/(R + ε)); elsewhere: mean max(0, 1 - R)); both aggregators are also given by
    name (``truth_ratio_closer_to_1``, ``truth_ratio_true_better``)."""
    ratios = M.truth_ratios(true_nll, pert_nll, epsilon)
    closer = M.truth_ratio_forget_summary(ratios, epsilon)
    true_better = M.truth_ratio_true_better(ratios)
    out: dict[str, Any] = {
        "truth_ratio_true_answer": "paraphrased" if paraphrased else "gold",
        "truth_ratios": _floats(ratios),
        "truth_ratio_closer_to_1": closer,
        "truth_ratio_true_better": true_better,
    }
    if is_forget:
        out["truth_ratio"] = closer
        out["truth_ratio_summary"] = "mean(min(R, 1/R))"
    else:
        out["truth_ratio"] = true_better
        out["truth_ratio_summary"] = "mean(max(0, 1 - R))"
    return out


def _generation_metrics(
    model: torch.nn.Module,
    tokenizer: Any,
    examples: list[Example],
    max_new_tokens: int,
    keep_generations: bool,
    common: Mapping[str, Any],
    conv: MetricConvention,
) -> dict[str, Any]:
    """Greedy answers: ROUGE-L recall against the gold answers (and the paraphrased answer and
    the perturbed answers, when the rows have them), fluency (and the answers)."""
    questions = [ex.prompt for ex in examples]
    gens = generate_answers(
        model,
        tokenizer,
        questions,
        max_new_tokens=max_new_tokens,
        max_length_counts_prompt=conv.max_length_counts_prompt,
        **common,
    )
    recall = M.rouge_l(gens, [ex.response for ex in examples]).recall
    out: dict[str, Any] = {
        "rouge_l_recall": float(recall.mean()),
        "rouge_l_recalls": _floats(recall),
        "fluency": M.fluency(gens),
    }
    if all(isinstance(ex.extras.get("paraphrased_answer"), str) for ex in examples):
        para = M.rouge_l(gens, [ex.extras["paraphrased_answer"] for ex in examples]).recall
        out["rouge_l_recall_paraphrased"] = float(para.mean())
    pert = _perturbed_lists("rouge", examples) if _has_perturbed(examples) else None
    if pert is not None:
        per_row = [
            float(M.rouge_l([g] * len(ps), ps).recall.mean())
            for g, ps in zip(gens, pert, strict=True)
        ]
        out["rouge_l_recall_perturbed"] = float(np.mean(per_row))
    if keep_generations:
        out["generations"] = gens
    return out


def questions_hash(questions: Sequence[str]) -> str:
    """A fingerprint of a row set: sha256 of the questions joined by NUL (first 16 hex)."""
    return hashlib.sha256("\0".join(questions).encode("utf-8")).hexdigest()[:16]


def check_same_setup(result: Mapping[str, Any], reference: Mapping[str, Any], forget: Any) -> None:
    """Refuse a Forget Quality / PrivLeak reference evaluated on other rows, with another
    prompt format or under another metrics convention (each checked when the reference
    records it; a reference read from open-unlearning's logs records none of them)."""
    theirs_split = (reference.get("splits") or {}).get(reference.get("forget_split")) or {}
    mine_split = result["splits"].get(forget) or {}
    if "questions_sha256" in theirs_split and "questions_sha256" in mine_split:
        if theirs_split["questions_sha256"] != mine_split["questions_sha256"]:
            raise ConfigError(
                "reference was evaluated on other forget rows (questions fingerprint "
                f"{theirs_split['questions_sha256']} vs {mine_split['questions_sha256']}): "
                "Forget Quality / PrivLeak must compare the same questions"
            )
    for key, what in (("prompt_format", "prompt format"), ("metrics_convention", "convention")):
        theirs, mine = reference.get(key), result.get(key)
        if isinstance(theirs, Mapping) and isinstance(mine, Mapping):
            a = {k: v for k, v in theirs.items() if k != "source"}
            b = {k: v for k, v in mine.items() if k != "source"}
            if a != b:
                diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
                details = ", ".join(f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in diff)
                raise ConfigError(
                    f"reference was evaluated with another {what} ({details}): Forget Quality "
                    "/ PrivLeak must compare evaluations made the same way"
                )


def _has_perturbed(examples: Sequence[Example]) -> bool:
    return all("perturbed_answer" in ex.extras for ex in examples)


def _forget_quality(
    splits: Mapping[str, Mapping[str, Any]],
    forget: str | None,
    reference: Mapping[str, Any] | Sequence[float],
) -> dict[str, float]:
    """KS test of the forget truth ratios against the reference (retain) model's."""
    if forget is None or "truth_ratios" not in splits[forget]:
        raise DataError(
            "evaluate_qa: forget_quality needs a forget split with 'perturbed_answer' "
            "(and 'paraphrased_answer') columns"
        )
    ks = M.forget_quality(splits[forget]["truth_ratios"], _reference_ratios(reference))
    return {
        "forget_quality": ks.p_value,
        "forget_quality_log10": ks.log10_p_value,
        "forget_quality_ks_statistic": ks.statistic,
    }


def _model_utility(splits: Mapping[str, Mapping[str, Any]], utility: Sequence[str]) -> dict:
    """Harmonic mean of {probability, ROUGE-L recall, truth ratio} over the utility splits."""
    components: dict[str, float] = {}
    for name in utility:
        s = splits[name]
        components[f"probability/{name}"] = s["probability"]
        if "rouge_l_recall" in s:
            components[f"rouge_l_recall/{name}"] = s["rouge_l_recall"]
        if "truth_ratio" in s:
            components[f"truth_ratio/{name}"] = s["truth_ratio"]
    if not components:
        return {}
    return {
        "model_utility": M.model_utility(components),
        "model_utility_components": components,
    }


def _reference_ratios(reference: Mapping[str, Any] | Sequence[float]) -> list[float]:
    if isinstance(reference, Mapping):
        split = reference.get("forget_split")
        try:
            return list(reference["splits"][split]["truth_ratios"])
        except (KeyError, TypeError):
            raise DataError(
                "reference: expected the output of evaluate_qa for the retain model, with "
                "per-question truth ratios on its forget split"
            ) from None
    return [float(r) for r in reference]


# --------------------------------------------------------------------------------------------
# MUSE
# --------------------------------------------------------------------------------------------


def load_muse_dir(path: str | Path) -> dict[str, list]:
    """Read a MUSE evaluation folder (``knowmem/``, ``verbmem/``, ``privleak/``) into the dict
    :func:`evaluate_muse` takes. ``retain_qa`` / ``retain`` files may be named ``retain2_*``
    (the authors' pre-release naming)."""
    root = Path(path)

    def first(*names: str) -> Any:
        for n in names:
            p = root / n
            if p.is_file():
                try:
                    return json.loads(p.read_text(encoding="utf-8"))
                except (OSError, json.JSONDecodeError) as e:
                    raise DataError(f"cannot read MUSE file: {e}", file=p) from None
        return None

    found = {
        "knowmem_forget": first("knowmem/forget_qa.json"),
        "knowmem_forget_icl": first("knowmem/forget_qa_icl.json"),
        "knowmem_retain": first("knowmem/retain_qa.json", "knowmem/retain2_qa.json"),
        "knowmem_retain_icl": first("knowmem/retain_qa_icl.json", "knowmem/retain2_qa_icl.json"),
        "verbmem_forget": first("verbmem/forget.json"),
        "privleak_forget": first("privleak/forget.json"),
        "privleak_holdout": first("privleak/holdout.json"),
    }
    data = {k: v for k, v in found.items() if v is not None}
    if not data:
        raise DataError("no MUSE files (knowmem/, verbmem/, privleak/) found", file=root)
    return data


def _pairs(key: str, rows: Sequence[Any], first: str, second: str) -> list[tuple[str, str]]:
    """(prompt, answer) of Examples or of mappings with string fields ``first``/``second``."""
    out = []
    for i, r in enumerate(rows):
        if isinstance(r, Example):
            out.append((r.prompt, r.response))
        elif (
            isinstance(r, Mapping)
            and isinstance(r.get(first), str)
            and isinstance(r.get(second), str)
        ):
            out.append((r[first], r[second]))
        else:
            raise DataError(f"expected {{'{first}': str, '{second}': str}}", file=key, line=i + 1)
    return out


def _qa_pairs(key: str, rows: Sequence[Any]) -> list[tuple[str, str]]:
    return _pairs(key, rows, "question", "answer")


def _prompt_pairs(key: str, rows: Sequence[Any]) -> list[tuple[str, str]]:
    return _pairs(key, rows, "prompt", "gt")


def _texts(key: str, rows: Sequence[Any]) -> list[str]:
    out = []
    for i, r in enumerate(rows):
        if isinstance(r, str):
            out.append(r)
        elif isinstance(r, Example):
            out.append(r.response)
        elif isinstance(r, Mapping) and isinstance(r.get("text"), str):
            out.append(r["text"])
        else:
            raise DataError("expected a string (or {'text': str})", file=key, line=i + 1)
    if not out:
        raise DataError("no texts", file=key)
    return out


def _icl_prompt(
    icl: Sequence[tuple[str, str]], question: str, answer_prefix: str = "Answer:"
) -> str:
    """``Question: q\nAnswer: a\n\n`` per in-context example, then ``Question: {question}\n``
    and ``answer_prefix`` ("Answer: " in MUSE and open-unlearning, "Answer:" under exact)."""
    prefix = "".join(f"Question: {q}\nAnswer: {a}\n\n" for q, a in icl)
    return prefix + f"Question: {question}\n{answer_prefix}"


def evaluate_muse(
    model: torch.nn.Module,
    tokenizer: Any,
    data: Mapping[str, Sequence[Any]],
    reference: Mapping[str, Any] | float | None = None,
    *,
    batch_size: int = 32,
    k: float = 0.4,
    knowmem_max_new_tokens: int = 32,
    verbmem_max_new_tokens: int = 128,
    metrics_convention: str | MetricConvention | None = None,
    keep_generations: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """MUSE metrics (Shi et al. 2024; ``docs/metrics.md``) on whatever parts ``data`` holds.

    Args:
        data: keys (each optional; see :func:`load_muse_dir`):
            ``knowmem_forget`` / ``knowmem_retain`` (QA dicts or Examples) with their
            ``*_icl`` in-context examples; ``verbmem_forget`` (``{"prompt", "gt"}``);
            ``privleak_forget`` / ``privleak_holdout`` (texts).
        reference: the RETAIN model's output of this function (or its ``privleak_auc``) ->
            ``privleak``. Without it, ``privleak`` is None (the AUCs are still reported).
        k: Min-K% fraction for PrivLeak (MUSE: 40 %).
        metrics_convention: ``open-unlearning`` (default) | ``muse`` | ``tofu`` | ``exact``:
            KnowMem prompt ending and stop strings, ROUGE stemming, Min-K% tokens, PrivLeak ε.

    Returns:
        ``knowmem_f`` / ``knowmem_r``: mean ROUGE-L F1 of greedy ICL answers (≤ 32 new tokens,
        stop at a blank line or "Question:"); ``verbmem_f``: mean ROUGE-L F1 of greedy
        continuations (≤ min(128, |true continuation| tokens)); ``privleak_auc``: Min-K% AUC of
        forget (members) vs holdout texts, > 0.5 = members recognised; ``privleak``:
        (AUC_muse(model) - AUC_muse(retain)) / AUC_muse(retain) × 100 with AUC_muse = 1 - AUC
        (MUSE's orientation: fine-tuned ≈ -100, retain 0, over-unlearned > 0); ``mia``: AUC of
        every attack.
    """
    conv = get_convention(metrics_convention)
    result: dict[str, Any] = {"metrics_convention": conv.describe()}
    common = dict(batch_size=batch_size, progress=progress)
    for split, short in (("forget", "f"), ("retain", "r")):
        if f"knowmem_{split}" in data:
            gens, score = _knowmem(
                model, tokenizer, data, split, knowmem_max_new_tokens, common, conv
            )
            result[f"knowmem_{short}"] = score
            if keep_generations:
                result[f"knowmem_{short}_generations"] = gens
    if "verbmem_forget" in data:
        gens, score = _verbmem(model, tokenizer, data, verbmem_max_new_tokens, common, conv)
        result["verbmem_f"] = score
        if keep_generations:
            result["verbmem_f_generations"] = gens
        result.update(_verbmem_memorization(model, tokenizer, data, common, conv))
    if "privleak_forget" in data and "privleak_holdout" in data:
        result.update(_privleak(model, tokenizer, data, reference, k, common, conv))
    result["ou_names"] = muse_ou_names(result)
    return result


def _knowmem(
    model: torch.nn.Module,
    tokenizer: Any,
    data: Mapping[str, Sequence[Any]],
    split: str,
    max_new_tokens: int,
    common: Mapping[str, Any],
    conv: MetricConvention,
) -> tuple[list[str], float]:
    """Greedy in-context answers to the KnowMem questions of ``split`` and their ROUGE-L F1."""
    key = f"knowmem_{split}"
    pairs = _qa_pairs(key, data[key])
    icl = _qa_pairs(f"{key}_icl", data.get(f"{key}_icl", []))
    prompts = [_icl_prompt(icl, q, conv.knowmem_answer_prefix) for q, _ in pairs]
    gens = generate_continuations(
        model,
        tokenizer,
        prompts,
        max_new_tokens=max_new_tokens,
        stop_strings=conv.knowmem_stop,
        **common,
    )
    return gens, M.knowmem(gens, [a for _, a in pairs], stemmer=conv.muse_rouge_stemmer)


def _verbmem(
    model: torch.nn.Module,
    tokenizer: Any,
    data: Mapping[str, Sequence[Any]],
    max_new_tokens: int,
    common: Mapping[str, Any],
    conv: MetricConvention,
) -> tuple[list[str], float]:
    """Greedy continuations (≤ min(max_new_tokens, |gt| tokens)) and their ROUGE-L F1."""
    pairs = _prompt_pairs("verbmem_forget", data["verbmem_forget"])
    limits = [
        min(max_new_tokens, max(1, len(tokenizer(gt, add_special_tokens=False)["input_ids"])))
        for _, gt in pairs
    ]
    gens = generate_continuations(
        model, tokenizer, [p for p, _ in pairs], max_new_tokens=limits, **common
    )
    return gens, M.verbmem(gens, [gt for _, gt in pairs], stemmer=conv.muse_rouge_stemmer)


def _verbmem_memorization(
    model: torch.nn.Module,
    tokenizer: Any,
    data: Mapping[str, Sequence[Any]],
    common: Mapping[str, Any],
    conv: MetricConvention,
) -> dict[str, float]:
    """Exact memorization and extraction strength of the VerbMem true continuations given
    their prompts (teacher forcing; open-unlearning's MUSE ``extraction_strength``)."""
    from unilogit.eval.scoring import completion_token_scores

    pairs = _prompt_pairs("verbmem_forget", data["verbmem_forget"])
    prefixes, texts = [p for p, _ in pairs], [gt for _, gt in pairs]
    scores = completion_token_scores(
        model, tokenizer, prefixes, texts, max_length=2048, insert_space=True, **common
    )
    return _memorization(scores, conv)


def _privleak(
    model: torch.nn.Module,
    tokenizer: Any,
    data: Mapping[str, Sequence[Any]],
    reference: Mapping[str, Any] | float | None,
    k: float,
    common: Mapping[str, Any],
    conv: MetricConvention,
) -> dict[str, Any]:
    """Membership AUCs of forget vs holdout texts and PrivLeak against the reference's AUC."""
    scores = {}
    for split in ("forget", "holdout"):
        texts = _texts(f"privleak_{split}", data[f"privleak_{split}"])
        ts = text_logprobs(
            model, tokenizer, texts, with_stats=True, uncentred=conv.minkpp_uncentred, **common
        )
        scores[split] = M.mia_scores(
            [s.logprobs for s in ts],
            texts=texts,
            mu=[s.mu for s in ts],
            sigma=[s.sigma for s in ts],
            k=k,
            sigma_floor=conv.minkpp_sigma_floor,
            drop_last_token=conv.drop_last_token,
        )
    aucs = M.mia_aucs(scores["forget"], scores["holdout"])
    auc = aucs["min_k"]
    ref_auc = None
    if isinstance(reference, Mapping):
        ref_auc = reference.get("privleak_auc")
    elif reference is not None:
        ref_auc = float(reference)
    return {
        "mia": aucs,
        "privleak_auc": auc,
        "privleak_auc_muse": 1.0 - auc,
        "privleak_k": k,
        "privleak_retain_auc": ref_auc,
        "privleak": None if ref_auc is None else M.privleak(auc, ref_auc, conv.epsilon),
    }
