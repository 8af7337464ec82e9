"""Report statistics against hand-computed cases: hypervolume, normalised FQ, seed medians and
spread, the forget-probability gap to the gold model."""

from __future__ import annotations

import math

import pytest

from unilogit.report_stats import (
    FQ_LOG10_FLOOR,
    HYPERVOLUMES,
    P_GAP_KEY,
    add_gold_gap,
    hypervolume_2d,
    max_seeds,
    normalised_fq,
    seed_medians,
)


def test_hypervolume_2d_hand_cases():
    # three staircase points: 0.2*1 + (0.5-0.2)*0.5 + (1-0.5)*0.2 = 0.45
    assert hypervolume_2d([(0.2, 1.0), (0.5, 0.5), (1.0, 0.2)]) == pytest.approx(0.45)
    # a dominated point and points on the reference axes add nothing; order does not matter
    pts = [(1.0, 0.2), (0.4, 0.4), (0.2, 1.0), (0.5, 0.5), (0.0, 3.0), (0.7, 0.0)]
    assert hypervolume_2d(pts) == pytest.approx(0.45)
    assert hypervolume_2d([]) == 0.0
    assert hypervolume_2d([(1.0, 1.0)]) == 1.0


def test_normalised_fq_is_linear_in_log10_and_clipped():
    assert FQ_LOG10_FLOOR == -10.0
    assert normalised_fq(0.0) == 1.0
    assert normalised_fq(-5.0) == pytest.approx(0.5)
    assert normalised_fq(-10.0) == 0.0
    assert normalised_fq(-30.0) == 0.0  # below the floor: clipped


def test_fq_mu_hypervolume_three_points_by_hand():
    """(log10 FQ, MU) = (-8, 0.5), (-5, 0.4), (-1, 0.1) -> u = 0.2, 0.5, 0.9 (log10 FQ from
    [-10, 0] onto [0, 1]), v = MU. Sorted by u from the right:
    (0.9 - 0.5)·0.1 + (0.5 - 0.2)·0.4 + (0.2 - 0)·0.5 = 0.04 + 0.12 + 0.10 = 0.26.
    A dominated point (-6, 0.3) -> (0.4, 0.3) and one below the floor add nothing."""
    hv = HYPERVOLUMES["fq_mu"]
    rows = [
        {"forget_quality_log10": -8.0, "model_utility": 0.5},
        {"forget_quality_log10": -5.0, "model_utility": 0.4},
        {"forget_quality_log10": -1.0, "model_utility": 0.1},
    ]
    assert hv.of(rows) == pytest.approx(0.26)
    more = [*rows, {"forget_quality_log10": -6.0, "model_utility": 0.3}]
    more.append({"forget_quality_log10": -14.0, "model_utility": 0.95})
    assert hv.of(more) == pytest.approx(0.26)
    assert hv.of([{"model_utility": 0.5}]) is None  # no point has both keys
    # the gold model (FQ = 1) scores its own MU
    assert hv.of([{"forget_quality_log10": 0.0, "model_utility": 0.59}]) == pytest.approx(0.59)


def test_kl_hypervolume_by_hand():
    """(KL forget, KL retain) = (ln 2, 0) -> (0.5, 1) and (0, ln 4) -> (1, 0.25):
    (1 - 0.5)·0.25 + 0.5·1 = 0.625; the gold model (0, 0) scores 1."""
    hv = HYPERVOLUMES["kl"]
    rows = [
        {"forget/kl_to_gold": math.log(2), "retain/kl_to_gold": 0.0},
        {"forget/kl_to_gold": 0.0, "retain/kl_to_gold": math.log(4)},
    ]
    assert hv.of(rows) == pytest.approx(0.625)
    assert hv.of([{"forget/kl_to_gold": 0.0, "retain/kl_to_gold": 0.0}]) == 1.0


def _run(seed, step, log_fq, mu, **extra):
    return {
        "kind": "run",
        "method": "npo",
        "lr": 1e-3,
        "epochs": 2,
        "seed": seed,
        "run_id": f"npo-lr0.001-ep2-s{seed}",
        "step": step,
        "epoch": step / 2,
        "final": step == 4,
        "forget_quality": 10**log_fq,
        "forget_quality_log10": log_fq,
        "model_utility": mu,
        "options": {"method": "npo"},
        **extra,
    }


def test_seed_medians_and_spread_by_hand():
    """3 seeds at steps 2 and 4: log10 FQ (-3, -1, -2) -> median -2, FQ 1e-2, spread
    [1e-3, 1e-1]; MU (0.5, 0.7, 0.6) -> 0.6 [0.5, 0.7]. An auto-stop evaluation (seed 1,
    step 3) and a step only two seeds have (5) are left out."""
    records = [
        _run(0, 2, -3.0, 0.5),
        _run(1, 2, -1.0, 0.7),
        _run(2, 2, -2.0, 0.6),
        _run(0, 4, -4.0, 0.3, extra_metric=1.0),
        _run(1, 4, -5.0, 0.2, extra_metric=3.0),
        _run(2, 4, -6.0, 0.4),  # no extra_metric: not summarised at step 4
        _run(1, 3, -0.5, 0.9, autostop_eval=True),
        _run(0, 5, -1.0, 0.1),
        _run(1, 5, -1.0, 0.1),
        {"kind": "baseline", "method": "target", "step": 0, "model_utility": 0.6},
    ]
    assert max_seeds(records) == 3
    rows = {r["step"]: r for r in seed_medians(records)}
    assert sorted(rows) == [2, 4]
    two = rows[2]
    assert two["kind"] == "median" and two["n_seeds"] == 3 and two["seeds"] == [0, 1, 2]
    assert two["forget_quality_log10"] == -2.0
    assert two["forget_quality"] == pytest.approx(1e-2)
    assert two["spread"]["forget_quality"] == pytest.approx([1e-3, 1e-1])
    assert two["model_utility"] == pytest.approx(0.6)
    assert two["spread"]["model_utility"] == [0.5, 0.7]
    assert two["epoch"] == 1.0 and two["final"] is False
    four = rows[4]
    assert four["final"] is True and four["forget_quality_log10"] == -5.0
    assert "extra_metric" not in four  # one seed lacks it


def test_even_seed_count_median_of_log_fq():
    """Two seeds: the median is the mean of the two; FQ = 10^median(log10 FQ) = 1e-3 (not the
    mean of the p-values, 5.05e-3)."""
    rows = seed_medians([_run(0, 2, -4.0, 0.2), _run(1, 2, -2.0, 0.5)])
    assert rows[0]["forget_quality_log10"] == -3.0
    assert rows[0]["forget_quality"] == pytest.approx(1e-3)
    assert rows[0]["model_utility"] == pytest.approx(0.35)


def test_gold_gap_is_the_ratio_to_the_gold_probability():
    """P_gold = 0.4: a run at 0.2 -> 0.5 (over-forgotten), the target at 0.8 -> 2 (under-
    forgotten), the gold model itself -> 1; records without P get nothing."""
    records = [
        {"kind": "baseline", "method": "target", "forget/probability": 0.8},
        {"kind": "baseline", "method": "retain", "forget/probability": 0.4},
        {"kind": "run", "method": "npo", "forget/probability": 0.2},
        {"kind": "run", "method": "npo"},
    ]
    assert add_gold_gap(records) == 0.4
    assert [r.get(P_GAP_KEY) for r in records] == [2.0, 1.0, 0.5, None]
    no_gold = [{"kind": "run", "method": "npo", "forget/probability": 0.2}]
    assert add_gold_gap(no_gold) is None and P_GAP_KEY not in no_gold[0]
