"""Hand-computed tests of unilogit.eval.metrics (pure functions of numbers, no models)."""

from __future__ import annotations

import itertools
import json
import math
import zlib

import numpy as np
import pytest
from scipy import stats

from unilogit.errors import DataError
from unilogit.eval import metrics as M

# --------------------------------------------------------------------------------------------
# Probabilities and truth ratio
# --------------------------------------------------------------------------------------------


def test_length_normalised_probability():
    """lp = [ln 0.5, ln 0.125] -> mean = ln(0.25) -> P^(1/|a|) = 0.25; mean NLL = ln 4."""
    lp = [math.log(0.5), math.log(0.125)]
    assert M.length_normalised_probability(lp) == pytest.approx(0.25)
    assert M.mean_nll(lp) == pytest.approx(math.log(4))
    assert M.probability([np.array(lp), np.array([0.0])]) == pytest.approx((0.25 + 1.0) / 2)


def test_normalised_probability_includes_gold_in_denominator():
    """p(a) = 0.5 (NLL ln 2), two perturbed answers at 0.25 (NLL ln 4):
    0.5 / (0.5 + 0.25 + 0.25) = 0.5. Second question: p(a) = 1, one perturbed 1 -> 0.5."""
    out = M.normalised_probability([math.log(2), 0.0], [[math.log(4), math.log(4)], [0.0]])
    np.testing.assert_allclose(out, [0.5, 0.5])


def test_truth_ratio_geometric_two_answers():
    """ã has token log-probs [-1, -1] -> NLL 1 -> P_true = e^-1.
    Perturbed answers with mean NLL 2 and 4 -> P_pert = sqrt(e^-2 · e^-4) = e^-3 (GEOMETRIC).
    R = e^-3 / e^-1 = e^-2 ≈ 0.1353; the arithmetic mean would give ≈ 0.2088."""
    true_nll = M.mean_nll([-1.0, -1.0])
    r = M.truth_ratio(true_nll, [2.0, 4.0])
    assert r == pytest.approx(math.exp(-2))
    arithmetic = ((math.exp(-2) + math.exp(-4)) / 2) / math.exp(-1)
    assert arithmetic == pytest.approx(0.2088, abs=1e-4)
    assert abs(r - arithmetic) > 0.05
    np.testing.assert_allclose(M.truth_ratios([1.0, 0.0], [[2.0, 4.0], [0.0]]), [math.exp(-2), 1])


def test_truth_ratio_summaries():
    """R = [0.5, 2]: utility = mean(max(0, 1-R)) = (0.5 + 0) / 2 = 0.25;
    forget summary = mean(min(R, 1/R)) = (0.5 + 0.5) / 2 = 0.5."""
    assert M.truth_ratio_utility([0.5, 2.0]) == pytest.approx(0.25)
    assert M.truth_ratio_forget_summary([0.5, 2.0]) == pytest.approx(0.5)
    assert M.truth_ratio_forget_summary([1.0]) == pytest.approx(1.0)


def test_truth_ratio_stays_finite():
    assert math.isfinite(M.truth_ratio(5000.0, [0.0]))
    assert M.truth_ratio(0.0, [5000.0]) > 0


# --------------------------------------------------------------------------------------------
# Forget Quality (KS test)
# --------------------------------------------------------------------------------------------


def test_forget_quality_hand_worked():
    """x = [1, 2, 3], y = [4, 5, 6]: the empirical CDFs differ by D = 1 at 3. With n = m = 3 the
    exact two-sided p-value is P(D >= 1) = 2 / C(6, 3) = 2 / 20 = 0.1 (only the two orderings
    'all x before all y' and 'all y before all x' reach D = 1)."""
    res = M.forget_quality([1, 2, 3], [4, 5, 6])
    assert res.statistic == pytest.approx(1.0)
    assert res.p_value == pytest.approx(0.1)
    assert res.log10_p_value == pytest.approx(-1.0)
    assert M.forget_quality([1, 2, 3, 4], [1, 2, 3, 4]).p_value == pytest.approx(1.0)


def test_forget_quality_matches_scipy_and_is_invariant_to_inversion():
    rng = np.random.default_rng(0)
    a, b = rng.lognormal(0, 1, 40), rng.lognormal(0.5, 1, 35)
    res = M.forget_quality(a, b)
    ref = stats.ks_2samp(a, b)
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-12)
    assert res.log10_p_value == pytest.approx(math.log10(ref.pvalue))
    # R versus 1/R: KS only depends on ranks (a monotone map applied to both samples).
    assert M.forget_quality(1 / a, 1 / b).p_value == pytest.approx(ref.pvalue, rel=1e-9)


def test_forget_quality_tiny_p_value_is_finite():
    res = M.forget_quality(np.arange(400.0), np.arange(400.0) + 1000)
    assert 0 <= res.p_value < 1e-100
    assert math.isfinite(res.log10_p_value) and res.log10_p_value < -100


# --------------------------------------------------------------------------------------------
# Model Utility
# --------------------------------------------------------------------------------------------


def test_harmonic_mean_and_model_utility():
    """H(1, 0.5, 0.25) = 3 / (1 + 2 + 4) = 3/7; any zero component -> 0."""
    assert M.harmonic_mean([1.0, 0.5, 0.25]) == pytest.approx(3 / 7)
    assert M.harmonic_mean([0.3, 0.0]) == 0.0
    assert M.model_utility({"probability/retain": 1.0, "rouge/retain": 0.5}) == pytest.approx(2 / 3)
    with pytest.raises(DataError):
        M.model_utility({})


# --------------------------------------------------------------------------------------------
# ROUGE-L and MUSE aggregation
# --------------------------------------------------------------------------------------------


def test_rouge_l_recall_hand_pair():
    """Reference 'the cat sat on the mat' (6 tokens), prediction 'the cat is on the mat':
    LCS = 'the cat on the mat' (5) -> recall 5/6, precision 5/6, F1 5/6."""
    r = M.rouge_l(["the cat is on the mat"], ["the cat sat on the mat"])
    assert r.recall[0] == pytest.approx(5 / 6)
    assert r.f1[0] == pytest.approx(5 / 6)
    # recall ignores extra predicted words; F1 does not: LCS 2, recall 2/2, precision 2/4.
    r = M.rouge_l(["Paris is lovely indeed"], ["Paris is"])
    assert r.recall[0] == pytest.approx(1.0)
    assert r.f1[0] == pytest.approx(2 * 0.5 * 1 / 1.5)


def test_rouge_l_uses_stemming():
    assert M.rouge_l(["cats running"], ["cat runs"]).recall[0] == pytest.approx(1.0)


def test_verbmem_knowmem_are_mean_f1():
    preds, golds = ["the cat is on the mat", "x"], ["the cat sat on the mat", "y"]
    assert M.verbmem(preds, golds) == pytest.approx((5 / 6 + 0) / 2)
    assert M.knowmem(preds, golds) == pytest.approx((5 / 6 + 0) / 2)


# --------------------------------------------------------------------------------------------
# Membership-inference attacks
# --------------------------------------------------------------------------------------------


def test_roc_auc_perfect_reversed_tied():
    assert M.roc_auc([3, 4, 5], [0, 1, 2]) == 1.0
    assert M.roc_auc([0, 1, 2], [3, 4, 5]) == 0.0
    assert M.roc_auc([1, 1, 1], [1, 1]) == 0.5


def test_roc_auc_hand_case_with_tie():
    """members [0.8, 0.4], non-members [0.5, 0.4]: pairs (0.8,0.5)=1, (0.8,0.4)=1,
    (0.4,0.5)=0, (0.4,0.4)=½ -> 2.5 / 4 = 0.625."""
    assert M.roc_auc([0.8, 0.4], [0.5, 0.4]) == pytest.approx(0.625)


def test_roc_auc_matches_pairwise_definition():
    rng = np.random.default_rng(1)
    pos = rng.integers(0, 6, 17).astype(float)  # many ties
    neg = rng.integers(0, 6, 13).astype(float)
    pairs = [1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg)]
    assert M.roc_auc(pos, neg) == pytest.approx(np.mean(pairs))


def test_min_k_hand_list():
    """lp = [-0.1, -3, -0.5, -2, -0.2], k = 0.4 -> floor(0.4·5) = 2 lowest = [-3, -2] -> -2.5;
    k = 0.2 -> 1 lowest -> -3; k = 0.01 -> still at least one token -> -3."""
    lp = [-0.1, -3.0, -0.5, -2.0, -0.2]
    assert M.min_k_score(lp, 0.4) == pytest.approx(-2.5)
    assert M.min_k_score(lp, 0.2) == pytest.approx(-3.0)
    assert M.min_k_score(lp, 0.01) == pytest.approx(-3.0)
    assert M.min_k_score(lp, 1.0) == pytest.approx(np.mean(lp))


def test_min_k_plus_plus_hand_list():
    """z = (lp - mu) / sigma = [(-1+1)/1, (-3+1)/2, (-2-0)/0.5] = [0, -1, -4];
    k = 0.67 -> floor(2.01) = 2 lowest = [-4, -1] -> -2.5."""
    score = M.min_k_plus_plus_score([-1.0, -3.0, -2.0], [-1.0, -1.0, 0.0], [1.0, 2.0, 0.5], 0.67)
    assert score == pytest.approx(-2.5)


def test_zlib_and_loss_scores():
    text = "hello hello hello hello"
    n_bytes = len(zlib.compress(text.encode("utf-8")))
    lp = [-1.0, -3.0]  # mean NLL 2
    assert M.loss_score(lp) == pytest.approx(2.0)
    assert M.zlib_score(lp, text) == pytest.approx(2.0 / n_bytes)


def test_mia_scores_are_oriented_members_high():
    """A member (low NLL) must score HIGHER than a non-member under every attack."""
    member = M.mia_scores(
        [np.array([-0.1, -0.2, -0.1])],
        texts=["abc def"],
        mu=[np.full(3, -1.0)],
        sigma=[np.ones(3)],
        k=0.4,
    )
    nonmember = M.mia_scores(
        [np.array([-3.0, -4.0, -2.0])],
        texts=["abc def"],
        mu=[np.full(3, -1.0)],
        sigma=[np.ones(3)],
        k=0.4,
    )
    assert set(member) == {"loss", "zlib", "min_k", "min_k_plus_plus"}
    for name in member:
        assert member[name][0] > nonmember[name][0], name
    assert M.mia_aucs(member, nonmember) == dict.fromkeys(member, 1.0)


def test_privleak_sign_convention():
    """Membership AUCs: fine-tuned model recognises D_f (A = 1), retain model at chance (0.5)
    -> ((1-1) - (1-0.5)) / (1-0.5) × 100 = -100. Retain vs itself = 0. Over-unlearning
    (A = 0.25 < 0.5: D_f looks less familiar than unseen text) -> (0.75-0.5)/0.5 × 100 = +50."""
    assert M.privleak(1.0, 0.5) == pytest.approx(-100.0)
    assert M.privleak(0.5, 0.5) == pytest.approx(0.0)
    assert M.privleak(0.25, 0.5) == pytest.approx(50.0)
    assert M.privleak(0.6, 0.6) == pytest.approx(0.0)
    with pytest.raises(DataError):
        M.privleak(0.9, 1.0)


# --------------------------------------------------------------------------------------------
# KL to gold, fluency, input checks
# --------------------------------------------------------------------------------------------


def test_kl_to_gold_is_token_weighted():
    """[[1, 1, 1], [4]] -> (1 + 1 + 1 + 4) / 4 tokens = 1.75 (not the per-question mean 2.5)."""
    assert M.kl_to_gold([np.array([1.0, 1.0, 1.0]), np.array([4.0])]) == pytest.approx(1.75)


def test_ngram_entropy_and_fluency():
    """'a b a b' bigrams {ab: 2, ba: 1}: H = -(2/3 log2 2/3 + 1/3 log2 1/3) ≈ 0.9183 bits;
    trigrams {aba, bab}: H = 1 bit. Weighted (2/3, 4/3): (2/3·0.9183 + 4/3·1) / 2 ≈ 0.9728."""
    h2 = -(2 / 3 * math.log2(2 / 3) + 1 / 3 * math.log2(1 / 3))
    assert M.ngram_entropy("a b a b", 2) == pytest.approx(h2)
    assert M.ngram_entropy("a b a b", 3) == pytest.approx(1.0)
    assert M.fluency(["a b a b"]) == pytest.approx((2 / 3 * h2 + 4 / 3 * 1.0) / 2)
    assert M.fluency(["the the the the the the"]) == 0.0
    varied = "the quick brown fox jumps over the lazy dog near a quiet river bank"
    assert M.fluency([varied]) > M.fluency(["a b a b a b a b a b a b"])


def test_bad_inputs_raise_data_error():
    with pytest.raises(DataError):
        M.mean_nll([])
    with pytest.raises(DataError):
        M.roc_auc([], [1.0])
    with pytest.raises(DataError):
        M.roc_auc([float("nan")], [1.0])
    with pytest.raises(DataError):
        M.min_k_score([-1.0], 0.0)
    with pytest.raises(DataError):
        M.rouge_l(["a"], [])


def test_outputs_are_json_serialisable():
    json.dumps(
        {
            "fq": M.forget_quality([1, 2, 3], [4, 5, 6])._asdict(),
            "auc": M.roc_auc([1.0], [0.0]),
            "tr": M.truth_ratios([1.0], [[2.0]]).tolist(),
        },
        allow_nan=False,
    )
