"""The training loop: end-to-end unlearning for every method, invariants, guards, logging.

A tiny Llama first memorises 24 QA pairs (12 people x 2 facts); each method then unlearns the
4 pairs of the first 2 people with the other 20 as retain set.
"""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from tiny import qa_rows, tiny_llama, word_tokenizer
from unilogit import TrainConfig, finetune, unlearn
from unilogit import data as data_lib
from unilogit.errors import ConfigError, DataError, TrainingError
from unilogit.methods import METHODS, Method

FORGET, RETAIN = qa_rows()[:4], qa_rows()[4:]
FAST = {"progress": False, "seed": 0, "warmup_ratio": 0.0}


@torch.no_grad()
def answer_prob(model, tokenizer, rows) -> float:
    """Mean over rows of P(answer | question)^(1/|answer|) (TOFU's length-normalised prob)."""
    examples = data_lib.load_examples(rows)
    probs = []
    for ex in examples:
        enc = data_lib.encode_example(tokenizer, ex)
        ids = torch.tensor([enc.input_ids])
        labels = torch.tensor(enc.labels[1:])
        logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), -1)
        mask = labels != -100
        token_logp = logp[mask].gather(-1, labels[mask].unsqueeze(-1))
        probs.append(math.exp(float(token_logp.mean())))
    return sum(probs) / len(probs)


@pytest.fixture(scope="module")
def memorised():
    tokenizer = word_tokenizer()
    model = tiny_llama(len(tokenizer))
    model, history = finetune(model, tokenizer, qa_rows(), epochs=40, lr=3e-3, batch_size=8, **FAST)
    assert history.steps[-1]["loss"] < history.steps[0]["loss"]
    return tokenizer, model


def test_finetune_memorises(memorised):
    tokenizer, model = memorised
    assert answer_prob(model, tokenizer, qa_rows()) > 0.9


@torch.no_grad()
def kl_from(start, model, tokenizer, rows) -> float:
    """Mean over answer tokens of KL(start ‖ model), computed literally in float64."""
    total, count = 0.0, 0
    for ex in data_lib.load_examples(rows):
        enc = data_lib.encode_example(tokenizer, ex)
        ids = torch.tensor([enc.input_ids])
        mask = torch.tensor(enc.labels[1:]) != -100
        p = torch.softmax(start(input_ids=ids).logits[0, :-1][mask].double(), -1)
        q = torch.softmax(model(input_ids=ids).logits[0, :-1][mask].double(), -1)
        total += float((p * (p.log() - q.log())).sum())
        count += int(mask.sum())
    return total / count


def test_finetune_with_retain_holds_the_model_to_its_start(memorised):
    """``retain=``: KL(π_start ‖ π_θ) on the retain answers joins the loss (0 at the first
    step, where π_θ = π_start) and keeps the model nearer its start there than plain NLL."""
    tokenizer, start = memorised
    new_facts = [{**r, "answer": FORGET[(i + 2) % 4]["answer"]} for i, r in enumerate(FORGET)]
    options = {"epochs": 5, "lr": 3e-3, **FAST}
    plain, history = finetune(copy.deepcopy(start), tokenizer, new_facts, **options)
    assert "loss_retain" not in history.steps[0]
    held, history = finetune(
        copy.deepcopy(start), tokenizer, new_facts, retain=RETAIN, retain_weight=5.0, **options
    )
    assert history.steps[0]["loss_retain"] == 0.0 and history.steps[-1]["loss_retain"] > 0
    assert kl_from(start, held, tokenizer, RETAIN) < 0.5 * kl_from(start, plain, tokenizer, RETAIN)


# Per-method settings: the same budget (5 epochs over the 4 forget rows, batch 2 → 10 steps);
# lr picked from {3e-4, 1e-3, 3e-3} per method (scan in the issue notes). UnDIAL runs with an
# NLL retain term here: without one (its default) it needs lr 6e-4 and keeps only 0.62.
SETTINGS = {
    "unilogit": {"lr": 1e-3},
    "unilogit-authors": {"lr": 5e-3},  # forget term / V: 3e-3 forgets too little here
    "ga": {"lr": 1e-3},
    "graddiff": {"lr": 1e-3},
    "npo": {"lr": 1e-3},
    "simnpo": {"lr": 3e-3},
    "undial": {"lr": 1e-3, "retain_loss": "nll"},
    "idkdpo": {"lr": 2e-3},
    "rmu": {"lr": 3e-3, "retain_weight": 5.0},
}


@pytest.mark.parametrize("method", sorted(SETTINGS))
def test_every_method_forgets_and_keeps(memorised, method):
    """Forget-answer probability must at least halve; retain-answer probability must keep 65% of
    its value (0.92 → > 0.60). That bound fails for a method that forgets by breaking the model
    (GA at lr 3e-3 leaves 0.001 on the retain set) yet admits the collateral damage that 10
    steps cause in a 2-layer model whose 24 facts share every weight."""
    tokenizer, trained = memorised
    model = copy.deepcopy(trained)
    before_f = answer_prob(model, tokenizer, FORGET)
    before_r = answer_prob(model, tokenizer, RETAIN)
    model, history = unlearn(
        model,
        tokenizer,
        FORGET,
        RETAIN,
        method=method,
        epochs=5,
        batch_size=2,
        **FAST,
        **SETTINGS[method],
    )
    after_f = answer_prob(model, tokenizer, FORGET)
    after_r = answer_prob(model, tokenizer, RETAIN)
    assert len(history.steps) == 10
    assert after_f < 0.5 * before_f, (before_f, after_f)
    assert after_r > 0.65 * before_r, (before_r, after_r)


def test_unilogit_with_nll_retain_builds_no_reference(memorised, monkeypatch):
    tokenizer, trained = memorised
    model = copy.deepcopy(trained)
    import unilogit.trainer as trainer_module

    real_deepcopy = copy.deepcopy

    def fail(*args, **kwargs):
        raise AssertionError("a reference model was built")

    def deepcopy_no_models(obj, *args):
        if isinstance(obj, torch.nn.Module):
            fail()
        return real_deepcopy(obj, *args)

    monkeypatch.setattr(trainer_module, "Reference", fail)
    monkeypatch.setattr(trainer_module.copy, "deepcopy", deepcopy_no_models)
    unlearn(model, tokenizer, FORGET, RETAIN, epochs=1, batch_size=2, **FAST)


def test_npo_precomputed_reference_matches_live_reference(memorised):
    tokenizer, trained = memorised
    runs = []
    for precompute in (True, False):
        model, _ = unlearn(
            copy.deepcopy(trained),
            tokenizer,
            FORGET,
            RETAIN,
            method="npo",
            epochs=2,
            batch_size=2,
            lr=3e-3,
            precompute_reference=precompute,
            **FAST,
        )
        runs.append(torch.cat([p.flatten() for p in model.parameters()]))
    torch.testing.assert_close(runs[0], runs[1], atol=1e-5, rtol=1e-4)


def _params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_same_seed_same_weights(memorised):
    tokenizer, trained = memorised
    a, _ = unlearn(
        copy.deepcopy(trained), tokenizer, FORGET, RETAIN, epochs=2, batch_size=2, lr=1e-3, **FAST
    )
    b, _ = unlearn(
        copy.deepcopy(trained), tokenizer, FORGET, RETAIN, epochs=2, batch_size=2, lr=1e-3, **FAST
    )
    assert torch.equal(_params(a), _params(b))


@pytest.mark.parametrize("method", ["unilogit", "npo"])
def test_accumulation_equals_big_batch(memorised, method):
    """batch 4 x 1 step == batch 2 x 2 accumulation == batch 1 x 4 (token-weighted means)."""
    tokenizer, trained = memorised
    results = []
    for batch_size, accum in [(4, 1), (2, 2), (1, 4)]:
        model, history = unlearn(
            copy.deepcopy(trained),
            tokenizer,
            FORGET,
            RETAIN,
            method=method,
            epochs=3,
            batch_size=batch_size,
            grad_accum=accum,
            lr=1e-3,
            max_grad_norm=0.0,
            **FAST,
        )
        assert len(history.steps) == 3
        results.append(_params(model))
    torch.testing.assert_close(results[1], results[0], atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(results[2], results[0], atol=2e-5, rtol=1e-4)


def test_log_file_has_one_line_per_step(memorised, tmp_path):
    tokenizer, trained = memorised
    log = tmp_path / "log.jsonl"
    _, history = unlearn(
        copy.deepcopy(trained),
        tokenizer,
        FORGET,
        RETAIN,
        epochs=2,
        batch_size=2,
        lr=1e-3,
        log_file=str(log),
        **FAST,
    )
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == len(history.steps) == 4
    assert {"step", "loss", "loss_forget", "loss_retain", "lr", "grad_norm"} <= set(lines[0])
    assert math.isclose(lines[-1]["loss"], lines[-1]["loss_forget"] + lines[-1]["loss_retain"])


def test_on_epoch_end_sees_each_epochs_weights(memorised):
    """The hook runs after the last step of every epoch (here 2 optimizer steps of 2
    accumulated micro-batches each) with the live, unwrapped model in training mode."""
    tokenizer, trained = memorised
    seen = []

    def hook(model, epoch):
        assert model.training
        seen.append((epoch, _params(model).clone()))

    options = dict(batch_size=1, grad_accum=2, lr=1e-3, **FAST)
    final, history = unlearn(
        copy.deepcopy(trained), tokenizer, FORGET, RETAIN, epochs=3, on_epoch_end=hook, **options
    )
    assert [e for e, _ in seen] == [1, 2, 3] and len(history.steps) == 3 * math.ceil(
        len(FORGET) / 2
    )
    assert torch.equal(seen[-1][1], _params(final))
    assert not torch.equal(seen[0][1], seen[1][1])  # copies taken at different times


def test_on_step_end_sees_every_step_before_the_epoch_hook(memorised):
    """The step hook runs after every optimizer step, with the step's log line already in the
    history, and before the epoch hook of an epoch's last step."""
    tokenizer, trained = memorised
    calls = []

    def on_step(model, step, history):
        assert model.training and history.steps[-1]["step"] == step
        calls.append(("step", step))

    options = dict(batch_size=2, lr=1e-3, **FAST)
    _, history = unlearn(
        copy.deepcopy(trained),
        tokenizer,
        FORGET,
        RETAIN,
        epochs=2,
        on_step_end=on_step,
        on_epoch_end=lambda model, epoch: calls.append(("epoch", epoch)),
        **options,
    )
    per_epoch = math.ceil(len(FORGET) / 2)
    expected = []
    for epoch in (1, 2):
        expected += [("step", (epoch - 1) * per_epoch + k) for k in range(1, per_epoch + 1)]
        expected.append(("epoch", epoch))
    assert calls == expected and len(history.steps) == 2 * per_epoch


def test_lora_trains_adapters_only(memorised):
    tokenizer, trained = memorised
    model = copy.deepcopy(trained)
    before = _params(model).clone()
    model, _ = unlearn(
        model,
        tokenizer,
        FORGET,
        RETAIN,
        epochs=2,
        batch_size=2,
        lr=1e-2,
        lora=True,
        lora_target_modules=["q_proj", "v_proj"],
        **FAST,
    )
    merged = model.merge_and_unload()
    assert not torch.equal(_params(merged), before)
    assert answer_prob(merged, tokenizer, FORGET) < answer_prob(trained, tokenizer, FORGET)


def test_nan_loss_stops_with_step_and_rows(memorised):
    tokenizer, trained = memorised

    class NaNAfterTwo(Method):
        name = "nan-after-two"
        default_retain = None
        calls = 0

        def forget_loss(self, step):
            from unilogit import losses
            from unilogit.methods import aligned

            NaNAfterTwo.calls += 1
            value = losses.nll_loss(*aligned(step.model, step.forget["forget"]))
            return value * float("nan") if NaNAfterTwo.calls > 2 else value

    with pytest.raises(TrainingError, match=r"step 3 .*forget rows in the batch: \S+:\d+"):
        unlearn(
            copy.deepcopy(trained),
            tokenizer,
            FORGET,
            None,
            method=NaNAfterTwo(),
            epochs=5,
            batch_size=1,
            **FAST,
        )


def test_retain_term_without_retain_set_is_an_error(memorised):
    tokenizer, trained = memorised
    with pytest.raises(ConfigError, match="retain set"):
        unlearn(trained, tokenizer, FORGET, None, method="graddiff", **FAST)


def test_overlap_between_forget_and_retain(memorised):
    tokenizer, trained = memorised
    with pytest.raises(DataError, match="also appear in the retain set"):
        unlearn(trained, tokenizer, FORGET, FORGET + RETAIN, **FAST)
    with pytest.warns(UserWarning, match="also appear"):
        unlearn(
            copy.deepcopy(trained),
            tokenizer,
            FORGET,
            FORGET + RETAIN,
            epochs=1,
            allow_overlap=True,
            **FAST,
        )


def test_empty_forget_set_is_an_error(memorised):
    tokenizer, trained = memorised
    with pytest.raises(DataError):
        unlearn(trained, tokenizer, [], RETAIN, **FAST)


def test_config_fields_and_unknown_options(memorised):
    tokenizer, trained = memorised
    cfg = TrainConfig.from_options(None, {"lr": 0.5})
    assert cfg.lr == 0.5
    with pytest.raises(ConfigError, match=r"unknown training option\(s\) \['beta'\]"):
        TrainConfig.from_options(None, {"lr": 0.5, "beta": 1})  # method options stay out
    with pytest.raises(ConfigError, match="unknown option"):
        unlearn(trained, tokenizer, FORGET, RETAIN, method="unilogit", bogus=1, **FAST)


def test_every_registered_method_is_covered():
    assert set(SETTINGS) == set(METHODS)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("epochs", 0),
        ("epochs", float("inf")),
        ("lr", -1.0),
        ("lr", float("nan")),
        ("lr", 0.0),
        ("batch_size", 0),
        ("retain_batch_size", 0),
        ("retain_batch_size", 2.5),
        ("grad_accum", 0),
        ("warmup_ratio", 5.0),
        ("warmup_ratio", -0.1),
        ("max_grad_norm", -1.0),
        ("max_grad_norm", float("nan")),
        ("weight_decay", -0.5),
        ("max_length", 0),
        ("mixed_precision", "fp8"),
        ("checkpoint_every", -1),
        ("seed", 1.5),
    ],
)
def test_train_config_refuses_bad_values_naming_the_field(field, value):
    with pytest.raises(ConfigError, match=f"'{field}'"):
        TrainConfig(**{field: value})
    with pytest.raises(ConfigError, match=f"'{field}'"):  # and so does every copy
        TrainConfig.from_options(TrainConfig(), {field: value})


def test_train_config_accepts_the_edges():
    cfg = TrainConfig(warmup_ratio=1.0, max_grad_norm=0.0, weight_decay=0.0, epochs=0.5)
    assert (cfg.warmup_ratio, cfg.max_grad_norm, cfg.epochs) == (1.0, 0.0, 0.5)


def test_retain_batch_size_sets_the_retain_rows_of_every_micro_batch():
    """``retain_batch_size`` retain rows per micro-batch and process (also beside the epoch's
    short last forget micro-batch), cycling through the whole retain set; unset, as many as
    the forget micro-batch."""
    from unilogit.trainer import _Schedule

    def drawn(cfg, world=1):
        schedule = _Schedule(10, 5, cfg, world)
        steps = range(schedule.total_steps)
        return [r for s in steps for _, _, r in schedule.micro_batches(s)], schedule

    default, _ = drawn(TrainConfig(batch_size=4, epochs=2))
    assert [len(r) for r in default] == [4, 4, 2] * 2
    small, _ = drawn(TrainConfig(batch_size=4, retain_batch_size=2, epochs=2))
    assert [len(r) for r in small] == [2] * 6
    flat = [row for rows in small for row in rows]
    assert sorted(flat[:5]) == sorted(flat[5:10]) == list(range(5))  # whole cycles
    two, schedule = drawn(TrainConfig(batch_size=4, retain_batch_size=2, epochs=2), world=2)
    assert [len(r) for r in two] == [4] * 4  # 2 per process
    assert [len(schedule.shard(two[0], rank)) for rank in (0, 1)] == [2, 2]


def test_group_by_length_batches_similar_lengths_and_keeps_every_row_once_per_epoch():
    """Grouped, every epoch still holds each row once in a seeded order; each window of
    ``GROUP_WINDOW`` micro-batches is sorted longest first, so a batch pads far less; without
    grouping the order is the plain shuffle."""
    from unilogit.trainer import GROUP_WINDOW, _Schedule

    n, batch = 4 * GROUP_WINDOW * 3, 4
    lengths = [(7 * i) % 50 + 1 for i in range(n)]

    def order(group, seed=0):
        cfg = TrainConfig(batch_size=batch, epochs=2, seed=seed, group_by_length=group)
        schedule = _Schedule(n, 0, cfg, 1, lengths)
        steps = range(schedule.total_steps)
        return [rows for s in steps for _, rows, _ in schedule.micro_batches(s)]

    plain, grouped = order(False), order(True)
    per_epoch = n // batch
    for epoch in (0, 1):
        rows = [r for b in grouped[epoch * per_epoch : (epoch + 1) * per_epoch] for r in b]
        assert sorted(rows) == list(range(n))
        plain_rows = [r for b in plain[epoch * per_epoch : (epoch + 1) * per_epoch] for r in b]
        window = GROUP_WINDOW * batch
        for start in range(0, n, window):  # the same rows per window, sorted by length
            part = rows[start : start + window]
            assert sorted(part) == sorted(plain_rows[start : start + window])
            got = [lengths[r] for r in part]
            assert got == sorted(got, reverse=True)

    def padded(batches):
        return sum(len(b) * max(lengths[r] for r in b) for b in batches)

    assert padded(grouped) < 0.75 * padded(plain)
    assert order(True) == grouped and order(True, seed=1) != grouped
    assert grouped[0] != grouped[per_epoch]  # epochs differ
    with pytest.raises(ValueError, match="length"):
        _Schedule(n, 0, TrainConfig(group_by_length=True), 1).micro_batches(0)


def test_group_by_length_trains_and_stays_out_of_old_fingerprints(memorised):
    """A grouped run (fine-tuning, unlearning with a retain set) trains like any other;
    ``TrainConfig.recorded`` leaves the field out at its old value (earlier checkpoints and
    sweeps keep their fingerprint) and in otherwise."""
    tokenizer, trained = memorised
    assert "group_by_length" not in TrainConfig().recorded()
    assert TrainConfig(group_by_length=True).recorded()["group_by_length"] is True
    model, history = finetune(
        copy.deepcopy(trained), tokenizer, RETAIN, epochs=1, lr=1e-3, batch_size=4,
        group_by_length=True, **FAST,
    )  # fmt: skip
    assert history.total_steps == math.ceil(len(RETAIN) / 4)
    assert all(math.isfinite(s["loss"]) for s in history.steps)
    model, history = unlearn(
        copy.deepcopy(trained), tokenizer, FORGET, retain=RETAIN, method="graddiff", epochs=1,
        lr=1e-3, batch_size=2, group_by_length=True, **FAST,
    )  # fmt: skip
    assert history.total_steps == math.ceil(len(FORGET) / 2)


def test_retain_batch_size_reaches_the_loss_and_the_reuse_warning(memorised, monkeypatch):
    """The method's retain batch has ``retain_batch_size`` rows; the reuse warning counts the
    retain rows an epoch draws, not the forget rows."""
    import warnings

    tokenizer, trained = memorised
    method = METHODS["graddiff"](retain_loss="nll")
    sizes = []
    original = type(method).loss

    def spy(self, step):
        sizes.append(step.retain["input_ids"].shape[0])
        return original(self, step)

    monkeypatch.setattr(type(method), "loss", spy)
    options = dict(epochs=1, lr=1e-4, batch_size=4, progress=False, mixed_precision="no")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 4 forget rows draw 1 retain row: no reuse
        unlearn(copy.deepcopy(trained), tokenizer, FORGET, RETAIN[:1], method,
                retain_batch_size=1, **options)  # fmt: skip
    assert sizes == [1]
    with pytest.warns(UserWarning, match="pairs the forget set .4 rows. with 4 retain rows"):
        unlearn(copy.deepcopy(trained), tokenizer, FORGET, RETAIN[:1], method, **options)


def test_method_options_and_training_settings_stay_apart(memorised, monkeypatch):
    """RMU's own ``seed`` goes in method_options; a ``seed`` keyword is the training seed."""
    import unilogit.trainer as trainer_module

    tokenizer, trained = memorised
    seen = {}

    def capture(model, tokenizer, method, forget, retain, cfg, *rest):
        seen.update(method_seed=method.hp["seed"], train_seed=cfg.seed, lr=cfg.lr)
        return model, trainer_module.History()

    monkeypatch.setattr(trainer_module, "_train", capture)
    config = TrainConfig(lr=2e-3, seed=1)
    unlearn(trained, tokenizer, FORGET, RETAIN, "rmu", config=config, method_options={"seed": 3})
    assert seen == {"method_seed": 3, "train_seed": 1, "lr": 2e-3}
    unlearn(trained, tokenizer, FORGET, RETAIN, "rmu", seed=5, layer=0)
    assert seen["method_seed"] == 0 and seen["train_seed"] == 5
    with pytest.raises(ConfigError, match="both in method_options and as keywords"):
        unlearn(trained, tokenizer, FORGET, RETAIN, "npo", method_options={"beta": 1}, beta=2)
    with pytest.raises(ConfigError, match="Method instance"):
        unlearn(trained, tokenizer, FORGET, RETAIN, METHODS["npo"](), beta=2)
    with pytest.raises(ConfigError, match="unknown training option"):
        finetune(trained, tokenizer, FORGET, beta=2)
