"""Metric conventions: the registry, and a hand-computed case for every difference between
open-unlearning's numbers and the exact ones (docs/metrics.md, "Conventions")."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from scipy import stats

from unilogit.errors import ConfigError, DataError
from unilogit.eval import metrics as M
from unilogit.eval import scoring, suites
from unilogit.eval.conventions import CONVENTIONS, DEFAULT_CONVENTION, get_convention

OU, EXACT = CONVENTIONS["open-unlearning"], CONVENTIONS["exact"]


def test_registry_names_and_lookup():
    assert set(CONVENTIONS) == {"open-unlearning", "tofu", "muse", "exact"}
    assert DEFAULT_CONVENTION == "open-unlearning"
    assert get_convention(None) is OU
    assert get_convention(" Exact ") is EXACT
    assert get_convention(OU) is OU
    with pytest.raises(ConfigError, match="unknown metrics convention 'lm-eval'.*exact"):
        get_convention("lm-eval")
    with pytest.raises(dataclasses.FrozenInstanceError):
        OU.epsilon = 0.0  # type: ignore[misc]
    for conv in CONVENTIONS.values():
        d = conv.describe()
        assert json.loads(json.dumps(d)) == d and d["name"] == conv.name


def test_each_convention_names_its_values():
    assert (OU.epsilon, EXACT.epsilon, CONVENTIONS["tofu"].epsilon) == (1e-10, 0.0, 0.0)
    assert (OU.minkpp_sigma_floor, EXACT.minkpp_sigma_floor) == (1e-3, 1e-6)
    assert OU.drop_last_token and not EXACT.drop_last_token
    assert OU.muse_rouge_stemmer and not CONVENTIONS["muse"].muse_rouge_stemmer
    assert OU.knowmem_answer_prefix == "Answer: " and EXACT.knowmem_answer_prefix == "Answer:"
    assert "\nQuestion" in OU.knowmem_stop and "\nQuestion" not in EXACT.knowmem_stop
    tofu = CONVENTIONS["tofu"]
    assert tofu.tofu_max_rows == 300 and tofu.max_length_counts_prompt
    assert OU.tofu_max_rows is None and not OU.max_length_counts_prompt


# ------------------------------------------------------------------------ 1. truth-ratio epsilon


def test_truth_ratio_epsilon_by_hand():
    # NLL 30 for the true and both perturbed answers: exactly R = 1.
    assert M.truth_ratio(30.0, [30.0, 30.0]) == pytest.approx(1.0)
    # open-unlearning: e^-30 / (e^-30 + 1e-10)
    p = math.exp(-30.0)
    assert M.truth_ratio(30.0, [30.0, 30.0], 1e-10) == pytest.approx(p / (p + 1e-10), rel=1e-12)
    assert p / (p + 1e-10) < 1e-3
    # an ordinary answer (NLL 1, perturbed 2 and 4): ε changes R by a relative ~e·1e-10
    assert M.truth_ratio(1.0, [2.0, 4.0], 1e-10) == pytest.approx(math.exp(-2), rel=1e-9)
    # the forget summary min(R, 1/(R + ε)) and R = 0
    assert M.truth_ratio_forget_summary([0.0, 1.0], 1e-10) == pytest.approx(0.5)
    assert M.truth_ratio_forget_summary([0.5, 2.0]) == pytest.approx(0.5)


def _collapsed_vs_retain(epsilon: float) -> M.KSResult:
    """400 forget questions. Retain model: true NLL 2 + u_i, perturbed 2 + v_i. Collapsed
    model: the same differences 40 nats further out (true 42 + u_i, perturbed 42 + v_i)."""
    u = np.linspace(0.0, 1.0, 400)
    v = np.linspace(1.0, 0.0, 400) ** 2
    retain = M.truth_ratios(2.0 + u, [[2.0 + x] for x in v], epsilon)
    collapsed = M.truth_ratios(42.0 + u, [[42.0 + x] for x in v], epsilon)
    return M.forget_quality(collapsed, retain)


def test_collapsed_model_forget_quality_ou_vs_exact():
    # exact: R depends only on NLL differences, identical for both models -> KS p = 1
    assert _collapsed_vs_retain(0.0).p_value == pytest.approx(1.0)
    # open-unlearning: every collapsed R ≈ e^-42·e^-v/1e-10 < 1e-7 lies below every retain R
    # (≥ e^-1), so KS D = 1 and the exact two-sided p is 2 / C(800, 400) ≈ 1.06e-239.
    ks = _collapsed_vs_retain(1e-10)
    assert ks.statistic == 1.0
    assert ks.p_value == pytest.approx(2 / math.comb(800, 400), rel=1e-9)
    assert ks.log10_p_value == pytest.approx(-238.973, abs=1e-3)


def test_forget_truth_ratio_summary_collapsed_ou_vs_exact():
    nll = 40.0 + np.zeros(5)
    pert = [[40.0, 40.0]] * 5
    assert M.truth_ratio_forget_summary(M.truth_ratios(nll, pert)) == pytest.approx(1.0)
    ou = M.truth_ratios(nll, pert, 1e-10)
    assert M.truth_ratio_forget_summary(ou, 1e-10) == pytest.approx(ou[0])
    assert ou[0] < 1e-7


def test_normalised_probability_and_privleak_epsilon():
    # gold and 3 perturbed answers all at NLL 30: exactly 1/4; OU p/(4p + 1e-10)
    p = math.exp(-30.0)
    assert M.normalised_probability([30.0], [[30.0] * 3])[0] == pytest.approx(0.25)
    got = M.normalised_probability([30.0], [[30.0] * 3], 1e-10)[0]
    assert got == pytest.approx(p / (4 * p + 1e-10), rel=1e-12)
    # PrivLeak: AUC 0.9 vs retain 0.5 -> (0.1 - 0.5)/0.5·100 = -80, and /(0.5 + 1e-10) with ε
    assert M.privleak(0.9, 0.5) == pytest.approx(-80.0)
    assert M.privleak(0.9, 0.5, 1e-10) == pytest.approx(-0.4 / (0.5 + 1e-10) * 100, rel=1e-15)
    # retain AUC 1: undefined exactly, OU divides by 1e-10
    with pytest.raises(DataError, match="undefined"):
        M.privleak(0.9, 1.0)
    assert M.privleak(0.9, 1.0, 1e-10) == pytest.approx(0.1 / 1e-10 * 100)


# -------------------------------------------------------------- 5./6. Min-K%++ floor, last token


def test_min_k_plus_plus_sigma_floor_by_hand():
    lp, mu, sigma = [-2.0, -1.0], [-1.0, -1.0], [0.0, 0.5]
    # exact floor 1e-6: z = [-1/1e-6, 0] -> lowest 1 (k = 0.5) = -1e6
    assert M.min_k_plus_plus_score(lp, mu, sigma, k=0.5) == pytest.approx(-1e6)
    # OU floors the variance at 1e-6, σ at 1e-3: z = -1/1e-3 = -1000
    assert M.min_k_plus_plus_score(lp, mu, sigma, k=0.5, sigma_floor=1e-3) == pytest.approx(-1e3)


def test_uncentred_sigma_matches_the_formula():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    targets = torch.tensor([0, 1])
    _, mu, sigma = scoring.token_stats(logits, targets, uncentred=True)
    logp = torch.log_softmax(logits, -1).double()
    p = logp.exp()
    m = (p * logp).sum(-1)
    var = (p * logp * logp).sum(-1) - m * m  # σ² = E[(log p)²] - μ², as written
    assert torch.allclose(sigma.double() ** 2, var.clamp_min(0), atol=1e-6)
    assert torch.allclose(mu.double(), m, atol=1e-6)
    assert float(sigma[1]) ** 2 == pytest.approx(0.0, abs=1e-6)  # uniform: σ = 0


def test_min_k_drops_the_last_token_under_ou():
    lp = [np.array([-0.1, -3.0, -0.5, -2.0, -9.0])]  # the last (EOS) token is the least likely
    keep = M.mia_scores(lp, k=0.4)["min_k"][0]
    drop = M.mia_scores(lp, k=0.4, drop_last_token=True)["min_k"][0]
    assert keep == pytest.approx((-9.0 - 3.0) / 2)  # 2 lowest of 5
    assert drop == pytest.approx(-3.0)  # floor(0.4 · 4) = 1 lowest of the first 4
    # LOSS keeps every token under both conventions
    assert M.mia_scores(lp, drop_last_token=True)["loss"][0] == pytest.approx(np.mean(lp[0]))
    # a text left without tokens scores 0, as in open-unlearning
    assert M.mia_scores([np.array([-1.0])], drop_last_token=True)["min_k"][0] == 0.0


# ------------------------------------------------------------- 3./4. MUSE prompt, stop, stemming


def test_knowmem_prompt_ending():
    icl = [("Who?", "Ann")]
    assert suites._icl_prompt(icl, "Where?", OU.knowmem_answer_prefix) == (
        "Question: Who?\nAnswer: Ann\n\nQuestion: Where?\nAnswer: "
    )
    assert suites._icl_prompt(icl, "Where?", EXACT.knowmem_answer_prefix).endswith("Answer:")


def test_muse_stemming_moves_knowmem_items():
    # "Peace talks" vs gold "The talk": stemmed LCS "talk" = 1 of 2 tokens each side -> F1 0.5;
    # unstemmed "talks" != "talk" -> 0 (the original MUSE code has no stemmer).
    assert M.knowmem(["Peace talks"], ["The talk"]) == pytest.approx(0.5)
    assert M.knowmem(["Peace talks"], ["The talk"], stemmer=False) == pytest.approx(0.0)


def test_truth_ratio_true_better_is_the_utility_aggregator():
    assert M.truth_ratio_true_better([0.25, 2.0]) == pytest.approx((0.75 + 0.0) / 2)


def test_ks_is_rank_based_so_tofu_1_over_r_gives_the_same_p():
    a, b = np.array([0.1, 0.5, 2.0, 3.0]), np.array([0.2, 0.3, 0.4, 5.0])
    assert stats.ks_2samp(a, b).pvalue == pytest.approx(stats.ks_2samp(1 / a, 1 / b).pvalue)
