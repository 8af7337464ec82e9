"""Evaluation metrics as pure functions of numbers.

Nothing here runs a model: inputs are per-token log-probabilities (``np.ndarray`` of shape
``(n_tokens,)``), per-question scalars, or generated strings; outputs are Python floats or numpy
arrays. The definitions follow ``docs/metrics.md`` (TOFU, MUSE, membership-inference attacks,
KL to gold, fluency); each docstring states the formula and, where the literature disagrees,
which convention is used.

Notation: ``lp`` = the log-probabilities of the scored tokens of one answer or text, so
``-lp.mean()`` is its mean token negative log-likelihood (NLL) and ``exp(lp.mean())`` its
length-normalised probability P(a|q)^(1/|a|).

Sign conventions (chosen once, used everywhere):

* ``roc_auc(members, nonmembers)`` is P(score_member > score_nonmember) + ½ P(tie); every
  membership score below is oriented so that HIGHER = "looks like a member", hence AUC > 0.5 means
  the attack recognises members.
* ``privleak`` takes two such membership AUCs and converts them to MUSE's published orientation
  (see its docstring): fine-tuned model ≈ -100, retain model 0, over-unlearning > 0.
"""

from __future__ import annotations

import math
import re
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np

from unilogit.errors import DataError
from unilogit.extras import require

__all__ = [
    "KSResult",
    "RougeL",
    "fluency",
    "forget_quality",
    "harmonic_mean",
    "kl_to_gold",
    "truth_ratio_true_better",
    "knowmem",
    "length_normalised_probability",
    "loss_score",
    "mean_nll",
    "mia_aucs",
    "mia_scores",
    "min_k_plus_plus_score",
    "min_k_score",
    "model_utility",
    "ngram_entropy",
    "normalised_probability",
    "privleak",
    "probability",
    "roc_auc",
    "rouge_l",
    "truth_ratio",
    "truth_ratio_forget_summary",
    "truth_ratio_utility",
    "truth_ratios",
    "verbmem",
    "zlib_score",
]

# log R is clipped to ±_MAX_LOG so that exp() stays finite (JSON has no Infinity);
# a ratio of e^700 is "infinitely" far from 1 for every summary used here.
_MAX_LOG = 700.0


def _as_logprobs(lp: Sequence[float] | np.ndarray, what: str = "log-probabilities") -> np.ndarray:
    arr = np.asarray(lp, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise DataError(f"{what}: no scored tokens (empty answer or text?)")
    if np.isnan(arr).any():
        raise DataError(f"{what}: contains NaN")
    return arr


# --------------------------------------------------------------------------------------------
# Per-answer probabilities (TOFU "Probability")
# --------------------------------------------------------------------------------------------


def mean_nll(lp: Sequence[float] | np.ndarray) -> float:
    """Mean token negative log-likelihood ``-mean_t lp_t`` of one answer/text (nats)."""
    return float(-_as_logprobs(lp).mean())


def length_normalised_probability(lp: Sequence[float] | np.ndarray) -> float:
    """P(a|q)^(1/|a|) = exp(mean_t lp_t) for one answer with token log-probs ``lp``."""
    return float(math.exp(-mean_nll(lp)))


def probability(answer_logprobs: Sequence[np.ndarray]) -> float:
    """TOFU Probability on forget / retain QA: mean over questions of P(a|q)^(1/|a|)."""
    if len(answer_logprobs) == 0:
        raise DataError("probability: no questions")
    return float(np.mean([length_normalised_probability(lp) for lp in answer_logprobs]))


def normalised_probability(
    true_mean_nll: Sequence[float] | np.ndarray,
    perturbed_mean_nll: Sequence[Sequence[float]],
    epsilon: float = 0.0,
) -> np.ndarray:
    """TOFU Probability on real-authors / world-facts, per question.

    p(a) = exp(-mean NLL of a) (length-normalised), and the score of one question is
    ``p(a) / (p(a) + Σ_{a' ∈ A_pert} p(a'))`` (the gold answer is part of the normaliser).
    Computed in log space (logsumexp), so tiny probabilities do not underflow to 0/0; with
    ``epsilon`` > 0 (open-unlearning: 1e-10) as ``p(a) / (p(a) + Σ p(a') + ε)`` in linear space.

    Args:
        true_mean_nll: ``(N,)`` mean token NLL of each gold answer.
        perturbed_mean_nll: N sequences, the mean token NLLs of that question's perturbed answers.

    Returns:
        ``(N,)`` array of per-question normalised probabilities; average it for the metric.
    """
    true = np.asarray(true_mean_nll, dtype=np.float64).reshape(-1)
    if len(true) != len(perturbed_mean_nll):
        raise DataError(
            f"normalised_probability: {len(true)} gold answers but "
            f"{len(perturbed_mean_nll)} perturbed-answer lists"
        )
    out = np.empty(len(true))
    for i, (t, pert) in enumerate(zip(true, perturbed_mean_nll, strict=True)):
        logs = np.concatenate([[-t], -np.asarray(pert, dtype=np.float64).reshape(-1)])
        if epsilon > 0.0:
            p = np.exp(logs)
            out[i] = float(p[0] / (p.sum() + epsilon))
        else:
            out[i] = math.exp(-t - _logsumexp(logs))
    return out


def _logsumexp(x: np.ndarray) -> float:
    m = float(np.max(x))
    return m + math.log(float(np.sum(np.exp(x - m))))


# --------------------------------------------------------------------------------------------
# Truth ratio and Forget Quality
# --------------------------------------------------------------------------------------------


def truth_ratio(
    true_mean_nll: float, perturbed_mean_nlls: Sequence[float] | np.ndarray, epsilon: float = 0.0
) -> float:
    """Truth ratio R of one question, GEOMETRIC-mean convention (open-unlearning's).

    ``P_true = exp(-NLL(ã))`` with NLL the mean token NLL of the paraphrased (forget/retain) or
    gold (real authors / world facts) answer ã; ``P_pert = exp(-mean_j NLL(â_j))``, the geometric
    mean of the perturbed answers' length-normalised probabilities (the TOFU paper wrote an
    arithmetic mean instead). ``R = P_pert / P_true = exp(NLL(ã) - mean_j NLL(â_j))``.

    Worked example: ã has token log-probs [-1, -1] -> NLL(ã) = 1, P_true = e^-1.
    Two perturbed answers with mean NLL 2 and 4 -> P_pert = sqrt(e^-2 · e^-4) = e^-3.
    R = e^-3 / e^-1 = e^-2 ≈ 0.1353. (The arithmetic mean would give
    ((e^-2 + e^-4)/2) / e^-1 ≈ 0.2088.)

    R < 1: the model prefers the true answer; R ≈ 1: it cannot tell true from false.
    log R is clipped to ±700 so R stays finite.

    ``epsilon`` > 0 (open-unlearning's convention, 1e-10): ``R = P_pert / (P_true + ε)``
    computed in linear space, so once both probabilities fall far below ε (a collapsed model,
    NLL ≳ 23 nats/token) R underflows towards 0 instead of staying near its exact value.
    """
    pert = np.asarray(perturbed_mean_nlls, dtype=np.float64).reshape(-1)
    if pert.size == 0:
        raise DataError("truth_ratio: no perturbed answers")
    if epsilon > 0.0:
        return float(np.exp(-pert.mean()) / (np.exp(-float(true_mean_nll)) + epsilon))
    log_r = float(true_mean_nll) - float(pert.mean())
    return float(math.exp(min(max(log_r, -_MAX_LOG), _MAX_LOG)))


def truth_ratios(
    true_mean_nll: Sequence[float] | np.ndarray,
    perturbed_mean_nll: Sequence[Sequence[float]],
    epsilon: float = 0.0,
) -> np.ndarray:
    """Vector form of :func:`truth_ratio`: ``(N,)`` true NLLs, N lists of perturbed NLLs."""
    true = np.asarray(true_mean_nll, dtype=np.float64).reshape(-1)
    if len(true) != len(perturbed_mean_nll):
        raise DataError(
            f"truth_ratios: {len(true)} true answers but {len(perturbed_mean_nll)} "
            "perturbed-answer lists"
        )
    return np.array(
        [truth_ratio(t, p, epsilon) for t, p in zip(true, perturbed_mean_nll, strict=True)],
        dtype=np.float64,
    )


def truth_ratio_utility(ratios: Sequence[float] | np.ndarray) -> float:
    """Truth ratio reported as a utility (retain / real authors / world facts): mean max(0, 1-R)
    (open-unlearning's "true_better" aggregator)."""
    r = _nonempty(ratios, "truth_ratio_utility")
    return float(np.mean(np.maximum(0.0, 1.0 - r)))


#: open-unlearning's name for :func:`truth_ratio_utility` (its ``true_better`` aggregator).
truth_ratio_true_better = truth_ratio_utility


def truth_ratio_forget_summary(ratios: Sequence[float] | np.ndarray, epsilon: float = 0.0) -> float:
    """Forget-set summary ("closer to 1 better"): mean of min(R, 1/(R + ε)) (1 = cannot tell
    true from false answers); ε = 0 is exact, open-unlearning uses 1e-10."""
    r = _nonempty(ratios, "truth_ratio_forget_summary")
    if epsilon > 0.0:
        return float(np.mean(np.minimum(r, 1.0 / (r + epsilon))))
    with np.errstate(divide="ignore"):
        return float(np.mean(np.exp(-np.abs(np.log(r)))))


class KSResult(NamedTuple):
    """Forget Quality: KS p-value, its log10 (values span 1e-300 … 1), and the KS statistic."""

    p_value: float
    log10_p_value: float
    statistic: float


def forget_quality(
    unlearned_ratios: Sequence[float] | np.ndarray,
    retain_ratios: Sequence[float] | np.ndarray,
) -> KSResult:
    """TOFU Forget Quality: two-sample Kolmogorov–Smirnov test between per-question truth ratios.

    ``scipy.stats.ks_2samp(unlearned, retain)`` with its defaults (two-sided, ``method="auto"``:
    exact for small samples). High p (e.g. > 0.05) = the unlearned model's truth ratios on the
    forget set are indistinguishable from those of the retain model. KS depends only on ranks, so
    R and 1/R give the same p-value. A p-value that underflows to 0 is reported with
    log10 = log10 of the smallest positive double (≈ -323.3) so the output stays finite.
    """
    a = _nonempty(unlearned_ratios, "forget_quality (unlearned)")
    b = _nonempty(retain_ratios, "forget_quality (retain)")
    res = _stats().ks_2samp(a, b)
    p = float(res.pvalue)
    log10 = math.log10(max(p, np.nextafter(0.0, 1.0)))
    return KSResult(p_value=p, log10_p_value=log10, statistic=float(res.statistic))


# --------------------------------------------------------------------------------------------
# Model Utility
# --------------------------------------------------------------------------------------------


def harmonic_mean(values: Sequence[float] | np.ndarray) -> float:
    """Harmonic mean n / Σ 1/x_i of non-negative numbers; 0 if any value is 0.

    Example: harmonic_mean([1, 0.5, 0.25]) = 3 / (1 + 2 + 4) = 3/7.
    """
    x = _nonempty(values, "harmonic_mean")
    if (x < 0).any():
        raise DataError(f"harmonic_mean: negative value {float(x.min())}")
    if (x == 0).any():
        return 0.0
    return float(len(x) / np.sum(1.0 / x))


def model_utility(components: Mapping[str, float]) -> float:
    """TOFU Model Utility: harmonic mean of the named components that exist.

    On full TOFU the nine components are {probability, rouge, truth-ratio utility} ×
    {retain, real authors, world facts}; with fewer sets it is the harmonic mean of what
    exists (the caller keeps the names next to the number).
    """
    if not components:
        raise DataError("model_utility: no components")
    return harmonic_mean(list(components.values()))


# --------------------------------------------------------------------------------------------
# ROUGE-L (TOFU ROUGE, MUSE VerbMem / KnowMem)
# --------------------------------------------------------------------------------------------


class RougeL(NamedTuple):
    """Per-pair ROUGE-L recall and F1, each an ``(N,)`` array."""

    recall: np.ndarray
    f1: np.ndarray


def _stats():
    """scipy.stats (the ``eval`` extra), imported on first use."""
    return require("scipy.stats", "Forget Quality and membership AUCs")


class _MemoTokenizer:
    """rouge-score's tokenizer with a memo: each distinct text is tokenized (and Porter-stemmed,
    the slow part) once per process. An evaluation scores every greedy answer against up to 7
    references, and every evaluation of a sweep against the same references; tokenizing is a
    pure function of the text, so the scores are unchanged. At most ``max_items`` texts are kept
    (then the memo starts again)."""

    def __init__(self, inner: Any, max_items: int = 200_000) -> None:
        self.inner = inner
        self.max_items = max_items
        self._memo: dict[str, tuple[str, ...]] = {}

    def tokenize(self, text: str) -> list[str]:
        tokens = self._memo.get(text)
        if tokens is None:
            if len(self._memo) >= self.max_items:
                self._memo.clear()
            tokens = self._memo[text] = tuple(self.inner.tokenize(text))
        return list(tokens)


@lru_cache(maxsize=2)
def _rouge_scorer(stemmer: bool = True):
    rouge_scorer = require("rouge_score.rouge_scorer", "ROUGE")
    tokenizers = require("rouge_score.tokenizers", "ROUGE")

    tokenizer = _MemoTokenizer(tokenizers.DefaultTokenizer(use_stemmer=stemmer))
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=stemmer, tokenizer=tokenizer)


def rouge_l(
    predictions: Sequence[str], references: Sequence[str], *, stemmer: bool = True
) -> RougeL:
    """ROUGE-L of each prediction against its reference (Google ``rouge-score``; Porter
    stemming on unless ``stemmer=False``, as in the original MUSE code).

    Recall = LCS / |reference tokens| (TOFU's ROUGE), F1 as reported by MUSE. Example:
    reference "the cat sat on the mat", prediction "the cat is on the mat" -> LCS "the cat on the
    mat" = 5 of 6 reference tokens, recall 5/6.
    """
    if len(predictions) != len(references):
        raise DataError(f"rouge_l: {len(predictions)} predictions but {len(references)} references")
    scorer = _rouge_scorer(stemmer)
    recall = np.empty(len(predictions))
    f1 = np.empty(len(predictions))
    for i, (pred, ref) in enumerate(zip(predictions, references, strict=True)):
        s = scorer.score(target=ref, prediction=pred)["rougeL"]
        recall[i], f1[i] = s.recall, s.fmeasure
    return RougeL(recall=recall, f1=f1)


def verbmem(
    continuations: Sequence[str], true_continuations: Sequence[str], *, stemmer: bool = True
) -> float:
    """MUSE VerbMem: mean ROUGE-L F1 between greedy continuations and the true continuations."""
    if len(continuations) == 0:
        raise DataError("verbmem: no continuations")
    return float(rouge_l(continuations, true_continuations, stemmer=stemmer).f1.mean())


def knowmem(answers: Sequence[str], gold_answers: Sequence[str], *, stemmer: bool = True) -> float:
    """MUSE KnowMem: mean ROUGE-L F1 between greedy (ICL-prompted) answers and gold answers."""
    if len(answers) == 0:
        raise DataError("knowmem: no answers")
    return float(rouge_l(answers, gold_answers, stemmer=stemmer).f1.mean())


# --------------------------------------------------------------------------------------------
# Membership-inference attacks
# --------------------------------------------------------------------------------------------


def _k_lowest_mean(x: np.ndarray, k: float) -> float:
    if not 0.0 < k <= 1.0:
        raise DataError(f"min-k: k must be in (0, 1], got {k}")
    n = max(1, int(k * len(x)))  # floor, at least one token
    return float(np.sort(x)[:n].mean())


def loss_score(lp: Sequence[float] | np.ndarray) -> float:
    """LOSS attack statistic: mean token NLL (LOWER = more member-like)."""
    return mean_nll(lp)


def zlib_score(lp: Sequence[float] | np.ndarray, text: str) -> float:
    """zlib attack statistic: mean token NLL / len(zlib.compress(text as UTF-8)) in bytes.

    LOWER = more member-like. Example: NLL 2.0 on a text that compresses to 40 bytes -> 0.05.
    """
    n_bytes = len(zlib.compress(text.encode("utf-8")))
    return mean_nll(lp) / n_bytes


def min_k_score(lp: Sequence[float] | np.ndarray, k: float = 0.2) -> float:
    """Min-K% Prob: mean of the ``max(1, floor(k·n))`` lowest token log-probs (HIGHER = member).

    Example: lp = [-0.1, -3, -0.5, -2, -0.2], k = 0.4 -> 2 lowest = [-3, -2] -> -2.5.
    """
    return _k_lowest_mean(_as_logprobs(lp), k)


def min_k_plus_plus_score(
    lp: Sequence[float] | np.ndarray,
    mu: Sequence[float] | np.ndarray,
    sigma: Sequence[float] | np.ndarray,
    k: float = 0.2,
    sigma_floor: float = 1e-6,
) -> float:
    """Min-K%++: mean of the k% lowest ``(lp_t - μ_t) / max(σ_t, sigma_floor)`` (HIGHER = member).

    μ_t = E_{z~p_t}[log p_t(z)] and σ_t² = E_{z~p_t}[(log p_t(z))²] - μ_t² over the model's
    next-token distribution at position t (see ``scoring.token_stats``). σ_t is floored (a
    one-hot distribution would otherwise divide by zero): at 1e-6 exactly, at 1e-3 by
    open-unlearning (which floors the variance at 1e-6).
    """
    lp = _as_logprobs(lp)
    mu = np.asarray(mu, dtype=np.float64).reshape(-1)
    sigma = np.asarray(sigma, dtype=np.float64).reshape(-1)
    if not (lp.shape == mu.shape == sigma.shape):
        raise DataError(
            f"min_k_plus_plus_score: shapes differ: lp {lp.shape}, mu {mu.shape}, "
            f"sigma {sigma.shape}"
        )
    z = (lp - mu) / np.maximum(sigma, sigma_floor)
    return _k_lowest_mean(z, k)


def mia_scores(
    logprobs: Sequence[np.ndarray],
    *,
    texts: Sequence[str] | None = None,
    mu: Sequence[np.ndarray] | None = None,
    sigma: Sequence[np.ndarray] | None = None,
    k: float = 0.4,
    sigma_floor: float = 1e-6,
    drop_last_token: bool = False,
    reference_nll: Sequence[float] | np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Membership scores of N texts for every attack the inputs allow, ORIENTED: higher = member.

    Keys: ``loss`` (= -mean NLL), ``zlib`` (= -NLL/zlib bytes, needs ``texts``),
    ``min_k`` (Min-K% with this ``k``), ``min_k_plus_plus`` (needs ``mu`` and ``sigma``;
    σ floored at ``sigma_floor``), ``reference`` (= -(NLL - NLL_ref), needs the reference
    model's mean NLLs ``reference_nll``; Carlini et al.'s reference-model attack).
    ``drop_last_token``: Min-K% / Min-K%++ ignore each text's last scored token (the EOS;
    open-unlearning's convention); a text left with no token scores 0, as there.
    """
    cut = _drop_last if drop_last_token else _keep
    out: dict[str, np.ndarray] = {
        "loss": np.array([-loss_score(lp) for lp in logprobs]),
        "min_k": np.array([min_k_score(cut(lp), k) if cut(lp).size else 0.0 for lp in logprobs]),
    }
    if texts is not None:
        out["zlib"] = np.array([-zlib_score(lp, t) for lp, t in zip(logprobs, texts, strict=True)])
    if mu is not None and sigma is not None:
        out["min_k_plus_plus"] = np.array(
            [
                min_k_plus_plus_score(cut(lp), cut(m), cut(s), k, sigma_floor)
                if cut(lp).size
                else 0.0
                for lp, m, s in zip(logprobs, mu, sigma, strict=True)
            ]
        )
    if reference_nll is not None:
        ref = np.asarray(reference_nll, dtype=np.float64).reshape(-1)
        if ref.size != len(logprobs):
            raise DataError(f"mia_scores: {len(logprobs)} texts but {ref.size} reference NLLs")
        out["reference"] = np.array(
            [-(loss_score(lp) - r) for lp, r in zip(logprobs, ref, strict=True)]
        )
    return out


def _keep(x: Sequence[float] | np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).reshape(-1)


def _drop_last(x: Sequence[float] | np.ndarray) -> np.ndarray:
    return _keep(x)[:-1]


def roc_auc(
    member_scores: Sequence[float] | np.ndarray, nonmember_scores: Sequence[float] | np.ndarray
) -> float:
    """ROC AUC of a membership attack: P(s_member > s_nonmember) + ½ P(tie).

    Computed from ranks (Mann–Whitney U): with average ranks over the pooled scores,
    U = Σ rank(members) - m(m+1)/2 and AUC = U / (m·n); average ranks count ties as ½.
    Scores must be oriented higher = member, so 1.0 = perfect attack, 0.0 = perfectly reversed,
    0.5 = chance (or all tied).
    """
    pos = _nonempty(member_scores, "roc_auc (members)")
    neg = _nonempty(nonmember_scores, "roc_auc (non-members)")
    ranks = _stats().rankdata(np.concatenate([pos, neg]), method="average")
    m, n = len(pos), len(neg)
    u = float(ranks[:m].sum()) - m * (m + 1) / 2.0
    return u / (m * n)


def mia_aucs(
    member: Mapping[str, np.ndarray], nonmember: Mapping[str, np.ndarray]
) -> dict[str, float]:
    """AUC per attack for two outputs of :func:`mia_scores` (attacks present in both)."""
    return {name: roc_auc(member[name], nonmember[name]) for name in member if name in nonmember}


def privleak(auc_unlearned: float, auc_retain: float, epsilon: float = 0.0) -> float:
    """MUSE PrivLeak in percent, from two membership AUCs oriented as :func:`roc_auc`.

    MUSE computes its AUC with the attack score as a NON-membership score (Min-K% as
    -mean of lowest log-probs, forget texts as positives), i.e. ``AUC_muse = 1 - AUC`` in this
    module's orientation. Then

        PrivLeak = (AUC_muse(unlearned) - AUC_muse(retain)) / AUC_muse(retain) × 100
                 = ((1 - A_unl) - (1 - A_ret)) / (1 - A_ret) × 100.

    Check: a fine-tuned model recognises D_f perfectly (A_unl ≈ 1) while the retain model is at
    chance (A_ret ≈ 0.5) -> (0 - 0.5)/0.5 × 100 = -100, matching MUSE's tables (target ≈ -99.8).
    The retain model against itself gives 0. An over-unlearned model that makes D_f look LESS
    familiar than unseen text (A_unl < A_ret) gives a positive value. open-unlearning divides
    by ``AUC_muse(retain) + ε`` with ε = 1e-10 (``epsilon``).
    """
    a_unl, a_ret = 1.0 - float(auc_unlearned), 1.0 - float(auc_retain)
    if a_ret + epsilon <= 0.0:
        raise DataError(
            "privleak: the retain model's membership AUC is 1 (non-membership AUC 0); "
            "PrivLeak is undefined"
        )
    return (a_unl - a_ret) / (a_ret + epsilon) * 100.0


# --------------------------------------------------------------------------------------------
# KL to gold, fluency
# --------------------------------------------------------------------------------------------


def kl_to_gold(per_token_kl: Sequence[np.ndarray]) -> float:
    """KL to gold: mean over ALL answer tokens (token-weighted, not per question) of
    KL(p_retain ‖ p_unlearned), given per-question arrays of per-token KL values."""
    arrays = [np.asarray(k, dtype=np.float64).reshape(-1) for k in per_token_kl]
    total = sum(a.size for a in arrays)
    if total == 0:
        raise DataError("kl_to_gold: no answer tokens")
    return float(sum(a.sum() for a in arrays) / total)


_WORD = re.compile(r"\w+|[^\w\s]")


def ngram_entropy(text: str, n: int) -> float:
    """Entropy in bits of the n-gram frequency distribution of one text.

    Tokens are words and punctuation marks (``\\w+|[^\\w\\s]``), lower-cased. A text with fewer
    than n tokens has entropy 0. Example: "a b a b" has bigrams {ab: 2, ba: 1} ->
    H = -(2/3 log2 2/3 + 1/3 log2 1/3) ≈ 0.918 bits.
    """
    tokens = _WORD.findall(text.lower())
    grams = Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    total = sum(grams.values())
    if total == 0:
        return 0.0
    p = np.array(list(grams.values()), dtype=np.float64) / total
    return float(-(p * np.log2(p)).sum())


def fluency(
    texts: Sequence[str],
    ns: Sequence[int] = (2, 3),
    weights: Sequence[float] = (2 / 3, 4 / 3),
) -> float:
    """Fluency of generated text: mean over texts of the weighted mean n-gram entropy (bits).

    Per text: ``Σ_n w_n H_n / Σ_n w_n`` with H_n from :func:`ngram_entropy`; the default bigram /
    trigram weights 2/3 and 4/3 follow the ROME-style convention of weighting longer n-grams
    more. Low values mean repetitive or degenerate text.
    """
    if len(texts) == 0:
        raise DataError("fluency: no texts")
    if len(ns) != len(weights):
        raise DataError("fluency: ns and weights must have the same length")
    w = np.asarray(weights, dtype=np.float64)
    per_text = [float(np.dot(w, [ngram_entropy(t, n) for n in ns]) / w.sum()) for t in texts]
    return float(np.mean(per_text))


def _nonempty(values: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise DataError(f"{what}: no values")
    if np.isnan(x).any():
        raise DataError(f"{what}: contains NaN")
    return x
