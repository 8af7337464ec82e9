"""Resume (issue #11): a checkpoint carries the fingerprint of its run, and --resume refuses
another method, learning rate, batch size, data set or input model, naming the differences;
``finetune`` checkpoints and resumes like ``unlearn``."""

from __future__ import annotations

import json
import shutil

import pytest

from safety_kit import FAST, make_inputs
from unilogit import recipes, trainer
from unilogit.errors import ConfigError, Interrupted
from unilogit.models import load_model, save_model, weights_sha256
from unilogit.record import verify


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return make_inputs(tmp_path_factory.mktemp("inputs"))


@pytest.fixture
def interrupt_after_first_checkpoint(monkeypatch):
    """Ctrl-C right after the first checkpoint is written (as a user would press it)."""
    real = trainer._save_checkpoint

    def save_then_stop(*a, **k):
        real(*a, **k)
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "_save_checkpoint", save_then_stop)
    return monkeypatch


def unlearn(
    inputs, output, *, resume=False, forget=None, method="unilogit", overwrite=False, **train
):
    return recipes.unlearn_to_disk(
        model=str(inputs["model"]),
        overwrite=overwrite,
        forget=str(forget or inputs["forget"]),
        retain=str(inputs["retain"]),
        method=method,
        output=output,
        train_options={**FAST, "epochs": 3, "checkpoint_every": 2, "resume": resume, **train},
    )


def finetune(inputs, output, *, resume=False, **train):
    return recipes.finetune_to_disk(
        model=str(inputs["model"]),
        data=str(inputs["retain"]),
        output=output,
        train_options={**FAST, "epochs": 2, "checkpoint_every": 3, "resume": resume, **train},
    )


def weights(path):
    return weights_sha256(load_model(path)[0])


def test_resume_refuses_a_checkpoint_of_another_run(
    inputs, tmp_path, interrupt_after_first_checkpoint
):
    """Before: another method, lr, batch size or data set was silently mixed in."""
    out = tmp_path / "o"
    with pytest.raises(Interrupted, match=r"last checkpoint \(step 2\) .*--resume"):
        unlearn(inputs, out)
    interrupt_after_first_checkpoint.undo()
    other = tmp_path / "other.jsonl"
    other.write_text(inputs["forget"].read_text().replace("Paris", "Lyon"))
    cases = [
        ({"lr": 2e-3}, ["train.lr: checkpoint 0.001, now 0.002"]),
        ({"batch_size": 4}, ["train.batch_size"]),
        ({"method": "ga"}, ["method.method: checkpoint 'unilogit', now 'ga'"]),
        ({"forget": other}, ["data.forget.rows_sha256"]),
        ({"lr": 2e-3, "seed": 1}, ["train.lr", "train.seed"]),
    ]
    for change, named in cases:
        with pytest.raises(ConfigError, match="written by a different run") as e:
            unlearn(inputs, out, resume=True, **change)
        assert all(n in str(e.value) for n in named), str(e.value)
        assert not out.exists()
    unlearn(inputs, out, resume=True, progress=True)  # progress does not change the result
    full = unlearn(inputs, tmp_path / "full")
    assert weights(out) == weights(full)
    record = json.loads((out / "unlearn_record.json").read_text())
    assert record["resumed"] is True and verify(out)["ok"]


def test_a_changed_input_model_is_refused(inputs, tmp_path, interrupt_after_first_checkpoint):
    model = tmp_path / "m"
    shutil.copytree(inputs["model"], model)
    with pytest.raises(Interrupted):
        unlearn({**inputs, "model": model}, tmp_path / "o")
    interrupt_after_first_checkpoint.undo()
    net, tok = load_model(model)
    for p in net.parameters():
        p.data.mul_(1.5)
    shutil.rmtree(model)
    save_model(net, tok, model)  # the same path, other weights
    with pytest.raises(ConfigError, match="input_model_weights_sha256"):
        unlearn({**inputs, "model": model}, tmp_path / "o", resume=True)


def test_a_fresh_run_does_not_discard_an_interrupted_one(
    inputs, tmp_path, interrupt_after_first_checkpoint
):
    with pytest.raises(Interrupted):
        unlearn(inputs, tmp_path / "o")
    interrupt_after_first_checkpoint.undo()
    with pytest.raises(ConfigError, match="pass --resume to continue it, or --overwrite"):
        unlearn(inputs, tmp_path / "o")
    assert (tmp_path / ".o.checkpoints" / "checkpoint").is_dir()
    unlearn(inputs, tmp_path / "o", overwrite=True)  # --overwrite discards it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]


def test_finetune_checkpoints_and_resumes(inputs, tmp_path, interrupt_after_first_checkpoint):
    """Before: finetune accepted --checkpoint-every / --resume and ignored them."""
    out = tmp_path / "o"
    with pytest.raises(Interrupted, match=r"step 3"):
        finetune(inputs, out)
    assert not out.exists()
    interrupt_after_first_checkpoint.undo()
    with pytest.raises(ConfigError, match="train.lr"):
        finetune(inputs, out, resume=True, lr=5e-3)
    finetune(inputs, out, resume=True)
    full = finetune(inputs, tmp_path / "full")
    assert weights(out) == weights(full)
    steps = [
        json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()
    ]
    assert steps == list(range(1, 21))  # 20 rows / batch 2 × 2 epochs, each step once
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full", "o"]
