"""The forgetting meter, the stopping rule, and auto-stop inside the training loop (issue 13)."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch

from tiny import qa_rows, tiny_llama, word_tokenizer
from unilogit import data as data_lib
from unilogit import finetune, unlearn
from unilogit.autostop import AutoStop
from unilogit.errors import ConfigError
from unilogit.eval.scoring import TokenScores
from unilogit.stopping import (
    ForgettingMeter,
    MeterReading,
    StopRule,
    auc_null_se,
    reading_from_scores,
)

FAST = {"warmup_ratio": 0.0, "progress": False}
ROWS = qa_rows()
FORGET, RETAIN = ROWS[:4], ROWS[4:]


def _rows(lps: list[list[float]]) -> list[TokenScores]:
    """Hand-made token scores: μ = -1, σ = 1 at every token, so Min-K%++ = Min-K% + 1."""
    out = []
    for lp in lps:
        a = np.array(lp, dtype=float)
        out.append(TokenScores(logprobs=a, mu=np.full_like(a, -1.0), sigma=np.ones_like(a)))
    return out


# ------------------------------------------------------------------------------ the meter


def test_meter_auc_one_half_zero_on_hand_made_losses():
    """forget rows at NLL 0.1 / 0.2 vs holdout rows at NLL 2 / 3: every forget row is more
    likely than every holdout row -> AUC 1; swapped -> 0; the same rows on both sides -> 0.5
    (all pairs tied or symmetric). loss ratio: mean NLL 0.15 / 2.5 = 0.06."""
    low = _rows([[-0.1, -0.1], [-0.2, -0.2]])  # member-like
    high = _rows([[-2.0, -2.0], [-3.0, -3.0]])
    members = reading_from_scores(7, low, high, retain_loss=1.5)
    assert members.auc == {"loss": 1.0, "min_k_plus_plus": 1.0}
    assert members.loss_ratio == pytest.approx(0.15 / 2.5)
    assert members.step == 7 and members.n_forget == 2 and members.n_holdout == 2
    assert reading_from_scores(1, high, low).auc == {"loss": 0.0, "min_k_plus_plus": 0.0}
    same = reading_from_scores(1, high, high)
    assert same.auc == {"loss": 0.5, "min_k_plus_plus": 0.5}
    assert same.loss_ratio == pytest.approx(1.0)
    fields = members.log_fields()
    assert fields["meter_auc_loss"] == 1.0 and fields["meter_retain_loss"] == 1.5
    assert members.retain_auc is None and members.n_retain == 0
    known = reading_from_scores(2, high, high, retain=low)  # retain rows: member-like
    assert known.retain_auc == {"loss": 1.0, "min_k_plus_plus": 1.0} and known.n_retain == 2
    assert known.log_fields()["meter_retain_auc_loss"] == 1.0
    assert MeterReading.from_dict(known.to_dict()) == known
    assert MeterReading.from_dict(members.to_dict()) == members


def test_auc_null_se_is_the_spread_of_auc_between_exchangeable_sets():
    """(m + n + 1) / (12 m n): 4 x 5 rows -> sqrt(10 / 240); and the AUC of 20 vs 30 rows drawn
    from ONE distribution has that standard deviation (5000 simulated draws, within 3%)."""
    from unilogit.eval.metrics import roc_auc

    assert auc_null_se(4, 5) == pytest.approx(math.sqrt(10 / 240))
    rng = np.random.default_rng(0)
    aucs = [roc_auc(rng.normal(size=20), rng.normal(size=30)) for _ in range(5000)]
    assert np.std(aucs) == pytest.approx(auc_null_se(20, 30), rel=0.03)
    assert np.mean(aucs) == pytest.approx(0.5, abs=0.003)
    with pytest.raises(ConfigError):
        auc_null_se(0, 5)


# ------------------------------------------------------------------------------ the rule


def _reading(step: int, loss: float, mkpp: float | None = None, retain: float | None = None):
    auc = {"loss": loss, "min_k_plus_plus": loss if mkpp is None else mkpp}
    return MeterReading(step, auc, 1.0, 1.0, retain, 40, 40)


def test_rule_stops_at_the_first_forgotten_reading():
    rule = StopRule(tolerance=0.05)
    readings = [_reading(s, a) for s, a in [(0, 0.95), (5, 0.8), (10, 0.6), (15, 0.53), (20, 0.5)]]
    d = rule.decide(readings)
    assert (d.stop, d.kept_step, d.reason) == (True, 15, "forgotten")
    assert [r.step for r in d.readings] == [0, 5, 10, 15]  # nothing after the stop
    # every attack must be inside the band: Min-K%++ still at 0.7 keeps the run going
    held = [_reading(0, 0.9), _reading(5, 0.52, mkpp=0.7), _reading(10, 0.49, mkpp=0.54)]
    d = rule.decide(held)
    assert (d.stop, d.kept_step, d.reason) == (True, 10, "forgotten")


def test_rule_stops_when_overshooting_and_keeps_the_closest_step():
    """0.8 -> 0.58 -> 0.3: the last reading is below 0.5 - 0.05 (over-forgotten); |0.58 - 0.5|
    = 0.08 < |0.3 - 0.5| = 0.2, so step 4 is kept."""
    rule = StopRule(tolerance=0.05)
    d = rule.decide([_reading(0, 0.95), _reading(2, 0.8), _reading(4, 0.58), _reading(6, 0.3)])
    assert (d.stop, d.kept_step, d.reason) == (True, 4, "over-forgotten")
    assert "kept step 4" in d.explain() and "LESS likely" in d.explain()


def test_rule_without_stop_keeps_the_closest_ties_by_retain_loss_then_step():
    rule = StopRule(tolerance=0.05)
    d = rule.decide([_reading(0, 0.9, retain=1.0), _reading(3, 0.7, retain=2.0)])
    assert (d.stop, d.kept_step, d.reason) == (False, 3, "budget")
    tie = [_reading(0, 0.9), _reading(3, 0.6, retain=2.0), _reading(6, 0.4, retain=1.0)]
    assert StopRule(tolerance=0.01).decide(tie).kept_step == 6  # same distance, lower retain
    assert StopRule(tolerance=0.01).decide(tie[:2]).stop is False
    both = [_reading(1, 0.7, retain=1.0), _reading(2, 0.7, retain=1.0)]
    assert rule.decide(both).kept_step == 1


def test_saturated_aucs_tie_break_on_the_loss_ratio_not_on_the_untouched_model():
    """Seen on the TOFU CPU recipe (GradDiff): the loss AUC stays at 1.0 while Min-K%++ falls
    below the band, so every reading is 0.5 from 0.5. The retain-loss tie-break then kept step
    0, the untouched model; the forget / holdout loss ratio still says how far apart the sets
    are, and now breaks the tie."""

    def saturated(step: int, forget_loss: float, mkpp: float, retain: float) -> MeterReading:
        return MeterReading(step, {"loss": 1.0, "min_k_plus_plus": mkpp}, forget_loss, 2.0,
                            retain, 40, 40)  # fmt: skip

    readings = [saturated(0, 0.2, 1.0, 0.3), saturated(4, 0.9, 0.8, 0.5),
                saturated(8, 1.6, 0.6, 0.9), saturated(12, 1.7, 0.2, 1.4)]  # fmt: skip
    d = StopRule(tolerance=0.1).decide(readings)
    assert (d.stop, d.reason, d.kept_step) == (True, "over-forgotten", 12)  # ratio 0.85
    assert StopRule(tolerance=0.1).decide(readings[:3]).kept_step == 8  # budget: ratio 0.8
    readings[3] = saturated(12, 4.0, 0.2, 1.4)  # ratio 2.0: |log 2| > |log 0.8|
    assert StopRule(tolerance=0.1).decide(readings).kept_step == 8


def _known(step: int, loss: float, retain_auc: float | None, n_retain: int = 40):
    auc = {"loss": loss, "min_k_plus_plus": loss}
    known = None if retain_auc is None else {"loss": retain_auc, "min_k_plus_plus": 0.5}
    return MeterReading(step, auc, 1.0, 1.0, None, 40, 40, known, n_retain)


def test_damage_guard_stops_when_the_retain_set_looks_never_seen():
    """Forget AUC 0.95 -> 0.8 -> 0.52 (forgotten), but at the third reading no attack tells the
    retain rows from the holdout (0.54 <= 0.5 + 0.05): damaged, so the run stops there and the
    kept step is chosen among the readings before (step 4, closest to 0.5 of 0 and 4); without
    the guard the rule keeps the damaged step 8 as forgotten."""
    rule = StopRule(tolerance=0.05)
    readings = [_known(0, 0.95, 1.0), _known(4, 0.8, 0.9), _known(8, 0.52, 0.54)]
    d = rule.decide(readings)
    assert (d.stop, d.kept_step, d.reason) == (True, 4, "damaged")
    assert "retain set became indistinguishable" in d.explain()
    unguarded = StopRule(tolerance=0.05, damage_guard=False).decide(readings)
    assert (unguarded.kept_step, unguarded.reason) == (8, "forgotten")
    # the guard needs a signal before unlearning, and retain AUCs at all
    assert rule.decide([_known(0, 0.95, 0.53), _known(4, 0.52, 0.5)]).reason == "forgotten"
    assert rule.decide([_known(0, 0.95, None), _known(4, 0.52, None)]).reason == "forgotten"
    # its band comes from the retain and holdout row counts: 10 x 40 rows -> 1.96 SE0 = 0.202
    default = StopRule()
    assert default.knows_retain(_known(4, 0.9, 0.71, n_retain=10)) is True
    assert default.knows_retain(_known(4, 0.9, 0.69, n_retain=10)) is False
    assert default.knows_retain(_known(4, 0.9, 0.69, n_retain=40)) is True  # 40 x 40: 0.127
    # without a forget signal (undetectable) damage still stops the run: the last good step
    blind = [_known(0, 0.52, 1.0), _known(3, 0.5, 0.9), _known(6, 0.5, 0.5)]
    assert (rule.decide(blind).kept_step, rule.decide(blind).reason) == (3, "damaged")
    assert rule.decide(blind[:2]).reason == "undetectable"


def test_damage_guard_on_the_retain_loss():
    """Uniform damage (measured on shop with RMU at 1e-3: every set's loss grows, so the retain
    rows stay as separable from the holdout as the forget rows): the retain rows' mean loss
    (0.1 -> 1.5 -> 2.5) passes the holdout rows' mean loss before unlearning (2.0) at step 6,
    which is damaged; the forget AUC (0.6) alone would have said forgotten there."""

    def uniform(step: int, forget_auc: float, retain_loss: float) -> MeterReading:
        known = {"loss": 0.9, "min_k_plus_plus": 0.9}
        auc = {"loss": forget_auc, "min_k_plus_plus": forget_auc}
        return MeterReading(step, auc, 1.0, 2.0 + step, retain_loss, 40, 40, known, 40)

    readings = [uniform(0, 0.95, 0.1), uniform(3, 0.8, 1.5), uniform(6, 0.6, 2.5)]
    rule = StopRule(tolerance=0.15)
    d = rule.decide(readings)
    assert (d.stop, d.kept_step, d.reason) == (True, 3, "damaged")
    assert StopRule(tolerance=0.15, damage_guard=False).decide(readings).reason == "forgotten"
    # no signal when the retain rows were no better than the holdout rows to begin with
    readings[0] = uniform(0, 0.95, 2.1)
    assert rule.decide(readings).reason == "forgotten"


def test_rule_default_tolerance_comes_from_the_row_counts():
    first, r = _reading(0, 0.95), _reading(5, 0.6)  # 40 x 40 rows: 1.96 * sqrt(81 / 19200)
    assert StopRule().tolerance_for(r) == pytest.approx(1.96 * math.sqrt(81 / 19200))
    assert StopRule().decide([first, r]).stop  # 0.1 < 0.127: indistinguishable at 40 x 40
    assert StopRule(z=1.0).decide([first, r]).stop is False
    with pytest.raises(ConfigError):
        StopRule(tolerance=0.7)


def test_rule_without_signal_before_unlearning_never_stops_and_keeps_the_last_step():
    """The untouched model already reads inside the band (too few rows): the meter cannot tell
    forgotten from remembered, so it must not claim "forgotten" at step 0; the budget runs."""
    rule = StopRule(tolerance=0.2)
    readings = [_reading(0, 0.68), _reading(3, 0.6), _reading(6, 0.1)]
    d = rule.decide(readings)
    assert (d.stop, d.kept_step, d.reason) == (False, 6, "undetectable")
    assert "cannot judge" in d.explain()
    assert rule.decide(readings[:2]).kept_step == 3  # the last step seen so far
    assert rule.decide([_reading(0, 0.75), _reading(3, 0.6)]).reason == "forgotten"


def test_decision_on_a_prefix_never_depends_on_later_readings():
    rule = StopRule(tolerance=0.04)
    aucs = [0.97, 0.9, 0.83, 0.7, 0.62, 0.47, 0.2, 0.1]
    readings = [_reading(i, a) for i, a in enumerate(aucs)]
    full = rule.decide(readings)
    stop_at = len(full.readings)
    assert rule.decide(readings[:stop_at]).to_dict() == full.to_dict()
    assert full.kept_step == 5


# ------------------------------------------------------------------------------ in the loop


class ScriptedMeter:
    """A meter whose loss AUC at each step is given (the rule is what is under test)."""

    def __init__(self, aucs: dict[int, float]) -> None:
        self.aucs, self.calls = aucs, []

    def measure(self, model, step):
        self.calls.append((step, model.training))
        a = self.aucs.get(step, 0.9)
        return MeterReading(step, {"loss": a, "min_k_plus_plus": a}, 1.0, 1.0, None, 40, 40)


SCRIPT = {0: 0.95, 2: 0.8, 4: 0.57, 6: 0.2}  # stops at 6 (over-forgotten), keeps 4


@pytest.fixture(scope="module")
def memorised():
    tokenizer = word_tokenizer()
    model = tiny_llama(len(tokenizer))
    model, _ = finetune(model, tokenizer, ROWS, epochs=20, lr=3e-3, batch_size=8, **FAST)
    return tokenizer, model


class StopByHand(Exception):
    pass


def _run(memorised, stopping=None, stop_at=None, **kw):
    tokenizer, trained = memorised

    def hook(model, step, history):
        if step == stop_at:
            raise StopByHand

    model = copy.deepcopy(trained)
    options = {"epochs": 5, "batch_size": 2, "lr": 1e-3, **FAST, **kw}
    try:
        model, history = unlearn(
            model, tokenizer, FORGET, RETAIN, stopping=stopping, on_step_end=hook, **options
        )
    except StopByHand:
        return model, None
    return model, history


def _params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_kept_checkpoint_equals_a_run_stopped_there_by_hand(memorised, tmp_path):
    meter = ScriptedMeter(SCRIPT)
    log = tmp_path / "log.jsonl"
    stop = AutoStop(meter, every=2, rule=StopRule(tolerance=0.05))
    auto, history = _run(memorised, stop, log_file=str(log))
    assert history.stop["kept_step"] == 4 and history.stop["stopped_at"] == 6
    assert history.stop["reason"] == "over-forgotten"
    assert [s for s, _ in meter.calls] == [0, 2, 4, 6]  # 10 steps budgeted, stopped at 6
    assert all(training for _, training in meter.calls[1:])  # the loop's mode, not eval
    by_hand, _ = _run(memorised, stop_at=4)
    assert torch.equal(_params(auto), _params(by_hand))
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 4, 5, 6]
    assert lines[3]["meter_auc_loss"] == 0.57 and "meter_auc_loss" not in lines[2]


def test_meter_without_stop_reports_and_keeps_the_budget(memorised):
    meter = ScriptedMeter(SCRIPT)
    model, history = _run(memorised, AutoStop(meter, every=2, stop=False))
    full, _ = _run(memorised)
    assert torch.equal(_params(model), _params(full))  # nothing restored
    assert history.stop["stopped_at"] == 10 and history.stop["kept_step"] == 4


def test_resume_in_the_middle_of_an_auto_stop_run(memorised, tmp_path):
    """Interrupted at step 5 (last checkpoint: step 4, with the meter's state), then resumed:
    the same decision and the same kept weights as the uninterrupted run."""
    rule = StopRule(tolerance=0.05)
    whole, h_whole = _run(memorised, AutoStop(ScriptedMeter(SCRIPT), every=2, rule=rule))
    ck = {"checkpoint_dir": str(tmp_path), "checkpoint_every": 2}
    _, none = _run(memorised, AutoStop(ScriptedMeter(SCRIPT), every=2, rule=rule), 5, **ck)
    assert none is None and (tmp_path / "checkpoint" / "autostop.pt").is_file()
    meter = ScriptedMeter(SCRIPT)
    resumed, h_res = _run(memorised, AutoStop(meter, every=2, rule=rule), resume=True, **ck)
    assert [s for s, _ in meter.calls] == [6]  # readings 0, 2, 4 came from the checkpoint
    assert torch.equal(_params(resumed), _params(whole))
    assert h_res.stop == h_whole.stop


def test_resume_without_meter_state_is_an_error(memorised, tmp_path):
    ck = {"checkpoint_dir": str(tmp_path), "checkpoint_every": 2}
    _run(memorised, None, 3, **ck)
    with pytest.raises(ConfigError, match="autostop.pt"):
        _run(memorised, AutoStop(ScriptedMeter(SCRIPT), every=2), resume=True, **ck)


def test_real_meter_tells_trained_rows_from_unseen_ones():
    """Fine-tune on 12 rows, never on 12 others: those 12 look like members (loss AUC 1)."""
    tokenizer = word_tokenizer()
    rows = data_lib.load_examples(ROWS)
    seen, unseen = rows[::2], rows[1::2]
    model = tiny_llama(len(tokenizer))
    model, _ = finetune(model, tokenizer, seen, epochs=15, lr=3e-3, batch_size=4, **FAST)
    model.train()
    meter = ForgettingMeter(tokenizer, seen, unseen, retain=seen[:3], max_rows=50)
    r = meter.measure(model, 3)
    assert model.training  # mode restored
    assert r.auc["loss"] > 0.95 and r.loss_ratio < 0.5 and r.n_forget == 12
    assert r.retain_loss is not None and r.retain_loss < r.holdout_loss
    same = ForgettingMeter(tokenizer, unseen, unseen).measure(model, 0)
    assert same.auc["loss"] == 0.5
    capped = ForgettingMeter(tokenizer, seen, unseen, max_rows=5)
    assert capped.measure(model, 0).n_forget == 5


def test_meter_refuses_a_holdout_of_another_kind():
    tokenizer = word_tokenizer()
    qa = data_lib.load_examples(ROWS[:2])
    text = data_lib.load_examples([{"text": "Arlo lives in Paris."}])
    with pytest.raises(ConfigError, match="same kind"):
        ForgettingMeter(tokenizer, qa, text)
    with pytest.raises(ConfigError, match="holdout"):
        ForgettingMeter(tokenizer, qa, [])
    with pytest.raises(ConfigError, match="meter_every"):
        AutoStop(ScriptedMeter({}), every=0)


# ------------------------------------------------------------------------------ the CLI


@pytest.fixture(scope="module")
def cli_inputs(tmp_path_factory):
    from safety_kit import make_inputs

    root = tmp_path_factory.mktemp("cli")
    inputs = make_inputs(root)
    inputs["holdout"] = root / "h.jsonl"
    inputs["holdout"].write_text("".join(json.dumps(r) + "\n" for r in ROWS[12:20]))
    return inputs


def _cli_args(inputs, out, *extra):
    from safety_kit import unlearn_args

    return [*unlearn_args(inputs, str(out), "--lr", "1e-3"), *extra]


def test_cli_without_holdout_says_it_ran_a_fixed_budget(cli_inputs, tmp_path, capsys):
    from unilogit.cli import main
    from unilogit.record import RECORD_FILE

    assert main(_cli_args(cli_inputs, tmp_path / "o")) == 0
    out = capsys.readouterr().out
    assert "ran a fixed budget" in out and "--holdout FILE" in out
    record = json.loads((tmp_path / "o" / RECORD_FILE).read_text())
    assert record["stopping"]["holdout"] is None
    assert "cannot tell whether the forget set is forgotten" in record["stopping"]["note"]


def test_cli_stop_when_forgotten_needs_a_holdout(cli_inputs, tmp_path, capsys):
    from unilogit.cli import main

    assert main(_cli_args(cli_inputs, tmp_path / "o", "--stop-when", "forgotten")) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: ") and "--holdout FILE" in last
    assert not (tmp_path / "o").exists()


def test_cli_auto_stop_records_the_kept_step_and_the_readings(cli_inputs, tmp_path, capsys):
    """Read every step; the run stops at the first reading within the 4 x 8-row tolerance,
    which is then the kept (closest) one; record, log and printed line agree."""
    from unilogit.cli import main
    from unilogit.record import RECORD_FILE

    extra = ["--stop-when", "forgotten", "--holdout", str(cli_inputs["holdout"])]
    log = tmp_path / "log.jsonl"
    args = _cli_args(cli_inputs, tmp_path / "o", *extra, "--meter-every", "1", "--epochs", "3")
    assert main([*args, "--log-file", str(log)]) == 0
    block = json.loads((tmp_path / "o" / RECORD_FILE).read_text())["stopping"]
    assert f"auto-stop: kept step {block['kept_step']}:" in capsys.readouterr().out
    assert block["holdout"]["rows"] == 8 and block["reason"] == "forgotten"
    assert block["tolerance"] == pytest.approx(1.96 * auc_null_se(4, 8))
    steps = [r["step"] for r in block["readings"]]
    assert block["kept_step"] == block["stopped_at"] == steps[-1] < 6  # 6 = 3 epochs x 2
    assert steps == list(range(len(steps)))
    far = [max(abs(a - 0.5) for a in r["auc"].values()) for r in block["readings"]]
    assert far[-1] <= block["tolerance"] < min(far[:-1], default=1.0)
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [x["meter_auc_loss"] for x in lines] == [r["auc"]["loss"] for r in block["readings"][1:]]


# ------------------------------------------------------------------------------ bench

BENCH_TRAIN = {"batch_size": 2, "mixed_precision": "no", "progress": False, "max_length": 32}


@pytest.fixture(scope="module")
def holdout_bench():
    from tiny_bench import TinyBench

    class WithHoldout(TinyBench):
        """Its target has learned forget + retain (rows 8..15 never: the holdout)."""

        def __init__(self):
            super().__init__()
            seen = self.rows[:8] + self.rows[-4:]
            self.target, _ = finetune(self.target, self.tok, seen, epochs=25, lr=3e-3, **FAST)

        def eval_splits(self):
            return {**super().eval_splits(), "holdout": self.rows[8:16]}

    return WithHoldout()


def test_bench_auto_stop_point_is_what_unlearn_stop_when_forgotten_saves(holdout_bench, tmp_path):
    """bench reads the meter every step (the target's reading stored with the target baseline),
    evaluates the kept step (not on the evaluation schedule: steps 4 and 8 only) and names it in
    the final record; `unlearn(..., stopping=AutoStop(...))` with the same settings keeps the
    same step and returns a model with the same evaluation; the report shows the point."""
    from unilogit.experiment import Grid, run_experiment
    from unilogit.methods import get_method
    from unilogit.report import autostop_points, read_records

    bench, out = holdout_bench, tmp_path / "sweep"
    run_experiment(
        bench,
        Grid.make(["npo"], [2e-2], [4]),
        out,
        train_options=BENCH_TRAIN,
        eval_every=4,
        eval_epochs=False,
        autostop={"every": 1},
        progress=False,
    )
    records = read_records(out / "results.jsonl")
    target = next(r for r in records if r.get("method") == "target")
    assert target["meter_auc_loss"] > 0.9  # the target knows the forget rows
    runs = sorted((r for r in records if r.get("kind") == "run"), key=lambda r: r["step"])
    final = runs[-1]
    kept = final["autostop_step"]
    # NPO at 2e-2 wrecks this tiny model: by step 2 its retain loss (4.0) exceeds what the
    # holdout rows had before (2.7) and no attack tells retain rows from holdout ones any more
    assert final["final"] and final["autostop_reason"] == "damaged"
    assert 0 < kept < 8 and final["autostop_tolerance"] == pytest.approx(1.96 * auc_null_se(4, 8))
    kept_record = next(r for r in runs if r["step"] == kept)
    assert kept_record.get("autostop_eval") is (None if kept == 4 else True)
    assert [r["step"] for r in runs if not r.get("autostop_eval")] == [4, 8]
    saved = json.loads((out / "autostop" / f"{final['run_id']}.json").read_text())
    readings = [MeterReading.from_dict(r) for r in saved["readings"]]
    assert [r.step for r in readings][:2] == [0, 1]  # the target's reading, then every step
    assert saved["kept_step"] == StopRule().decide(readings).kept_step == kept
    unguarded = StopRule(damage_guard=False).decide(readings)  # what the rule did before
    assert unguarded.reason == "forgotten" and unguarded.kept_step > kept

    meter = ForgettingMeter(
        bench.tok, bench.forget(), bench.holdout(), bench.retain(), max_length=32
    )
    live, history = unlearn(
        copy.deepcopy(bench.target).train(),
        bench.tok,
        bench.forget(),
        bench.retain(),
        method=get_method("npo"),
        lr=2e-2,
        epochs=4,
        seed=0,
        stopping=AutoStop(meter, every=1),
        **BENCH_TRAIN,
    )
    assert history.stop["kept_step"] == kept and history.stop["stopped_at"] < 8
    assert kept_record["meter_auc_loss"] == history.stop["readings"][kept]["auc"]["loss"]
    res = bench.summarize(
        bench.evaluate(live, bench.tok, progress=False, **bench.default_eval_options)
    )
    for key in ("forget/probability", "retain/probability", "model_utility"):
        assert kept_record[key] == pytest.approx(res[key], rel=1e-5), key
    points = autostop_points(records)
    assert [(p["method"], p["step"], p["autostop"]) for p in points] == [("npo", kept, True)]
    assert "Auto-stop point of every run" in (out / "report.md").read_text()


def test_bench_autostop_option_turns_the_damage_guard_off(holdout_bench):
    from unilogit.experiment.runner import _meter

    args = (holdout_bench.forget(), holdout_bench.retain(), holdout_bench.tok, BENCH_TRAIN)
    _, rule, config = _meter(holdout_bench, {"damage_guard": False}, *args)
    assert rule.damage_guard is False and config["damage_guard"] is False
    assert _meter(holdout_bench, True, *args)[1].damage_guard is True
    with pytest.raises(ConfigError, match="damage_guard"):
        _meter(holdout_bench, {"guard": False}, *args)
