"""unilogit.hf: the Unilogit loss / a registered method inside ``transformers.Trainer`` gives the
weights of our own loop (:func:`unilogit.trainer.unlearn`) for the same batches.

Both runs: a tiny float64 Llama on the CPU, the batches of our schedule in our order (the
Trainer samples sequentially), AdamW (torch's, lr 1e-3, no weight decay), a linear schedule
without warmup, clipping at 1.0, batch 2 × 2 accumulation steps over 10 rows (3 optimizer steps,
the last with one micro-batch; transformers 4.x: 12 rows, see ``PARTIAL_STEP``). The loops
differ only in the order of a few scalar operations (``sum / N`` vs ``mean · n / N``).
Float64, because Adam divides by √v: where a gradient entry
cancels to ~ε its rounding error is amplified to ~lr · relative error, which in float32 gave
max |Δw| = 8.8e-7 (for weights that move by 2e-3); in float64 we measured 1.1e-16
(``loss_func``) and exactly 0 (:class:`UnlearnTrainer`), so atol 1e-12 leaves four orders of
margin while a wrong scaling, order or batch moves the weights by ~1e-4 or more.
"""

from __future__ import annotations

import json

import pytest
import torch
import transformers

from tiny import qa_rows, tiny_llama, word_tokenizer
from unilogit import data as data_lib
from unilogit.errors import ConfigError
from unilogit.hf import ForgetRetainCollator, ForgetRetainDataset, UnlearnTrainer, loss_func
from unilogit.trainer import TrainConfig, _Schedule, unlearn

pytest.importorskip("accelerate")
ROWS = qa_rows()
#: transformers 5 runs a trailing partial accumulation as a last optimizer step, as our loop does;
#: 4.x (measured: 4.50) drops it (floor(micro-batches / accumulation) steps per epoch), so there
#: 12 forget rows (6 micro-batches, 3 full steps) keep the two loops comparable.
PARTIAL_STEP = int(transformers.__version__.split(".")[0]) >= 5
FORGET, RETAIN = ROWS[: 10 if PARTIAL_STEP else 12], ROWS[12:20]
SETTINGS = {"epochs": 1, "lr": 1e-3, "batch_size": 2, "grad_accum": 2, "warmup_ratio": 0.0}
ATOL = 1e-12
F64 = torch.float64


def _model(dtype: torch.dtype):
    return tiny_llama(word_tokenizer().vocab_size + 8).to(dtype)


def _ours(method: str, retain, dtype: torch.dtype = F64, **options):
    tokenizer = word_tokenizer()
    model = _model(dtype)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    model, _ = unlearn(
        model,
        tokenizer,
        FORGET,
        retain,
        method,
        mixed_precision="no",
        progress=False,
        allow_overlap=False,
        **SETTINGS,
        **options,
    )
    return start, model.state_dict()


def _order(n_retain: int, **options) -> tuple[list[int], list[int]]:
    """Forget and retain rows in the order our loop visits them (one process, one epoch)."""
    cfg = TrainConfig(**SETTINGS, **options)
    schedule = _Schedule(len(FORGET), n_retain, cfg, 1)
    forget, retain = [], []
    for step in range(schedule.total_steps):
        for _, f, r in schedule.micro_batches(step):
            forget += f
            retain += r
    return forget, retain


def _sequential() -> dict:
    """``train_sampling_strategy="sequential"`` (transformers >= 5); older versions have no
    such argument and get a sequential sampler from :func:`_sequential_before_v5`."""
    import dataclasses

    from transformers import TrainingArguments

    fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    return {"train_sampling_strategy": "sequential"} if "train_sampling_strategy" in fields else {}


@pytest.fixture(autouse=True)
def _sequential_before_v5(monkeypatch):
    """transformers 4.x: the Trainer samples sequentially (it shuffles by default)."""
    from transformers import Trainer

    if not _sequential():
        monkeypatch.setattr(
            Trainer,
            "_get_train_sampler",
            lambda self, *a, **k: torch.utils.data.SequentialSampler(self.train_dataset),
        )


def _args(tmp_path):
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=SETTINGS["batch_size"],
        gradient_accumulation_steps=SETTINGS["grad_accum"],
        num_train_epochs=SETTINGS["epochs"],
        learning_rate=SETTINGS["lr"],
        lr_scheduler_type="linear",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        optim="adamw_torch",
        **_sequential(),
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )


def _assert_same(start, ours, theirs) -> None:
    moved = max(float((ours[k] - start[k]).abs().max()) for k in start)
    assert moved > 1e-3  # the runs really trained
    for k in start:
        torch.testing.assert_close(theirs[k], ours[k], atol=ATOL, rtol=0, msg=k)


def test_unilogit_compute_loss_func_in_trainer_equals_our_loop(tmp_path):
    """The README example: Trainer(compute_loss_func=loss_func("unilogit")) on forget rows."""
    from transformers import Trainer

    start, ours = _ours("unilogit", None, retain_loss=None)
    tokenizer = word_tokenizer()
    model = _model(F64)
    order, _ = _order(0)
    rows = data_lib.load_examples([FORGET[i] for i in order])
    encoded = data_lib.encode_examples(tokenizer, rows, max_length=512)
    trainer = Trainer(
        model=model,
        args=_args(tmp_path),
        train_dataset=encoded,
        data_collator=lambda feats: data_lib.collate(feats, tokenizer.pad_token_id),
        compute_loss_func=loss_func("unilogit"),
    )
    trainer.args.remove_unused_columns = False
    trainer.train()
    _assert_same(start, ours, model.state_dict())


@pytest.mark.parametrize("method", ["unilogit", "npo"])
def test_unlearn_trainer_with_retain_equals_our_loop(tmp_path, method):
    """forget + NLL retain (NPO: a frozen reference copy in both; our loop's precomputed
    reference log-probs are stored in float32, see test_trainer for that path)."""
    start, ours = _ours(method, RETAIN, precompute_reference=False)
    forget_order, retain_order = _order(len(RETAIN))
    trainer, model, _ = _trainer(
        tmp_path,
        method,
        [FORGET[i] for i in forget_order],
        [RETAIN[i] for i in retain_order],  # item i pairs with retain row i
    )
    dataset = trainer.train_dataset
    assert len(dataset.retain) == len(dataset)
    trainer.train()
    _assert_same(start, ours, model.state_dict())


def test_collator_and_dataset_shapes(tiny_tokenizer):
    dataset = ForgetRetainDataset(tiny_tokenizer, FORGET[:3], RETAIN[:2], method="idkdpo")
    assert set(dataset[0]["forget"]) == {"forget", "chosen"}
    (row,) = dataset[2]["retain"]
    assert row is dataset.retain[0]  # row i with retain row i mod 2
    batch = ForgetRetainCollator(tiny_tokenizer.pad_token_id)([dataset[i] for i in range(3)])
    assert batch["forget"]["chosen"]["input_ids"].shape[0] == 3
    assert batch["retain"]["labels"].shape[0] == 3
    no_retain = ForgetRetainDataset(tiny_tokenizer, FORGET[:2])
    assert "retain" not in ForgetRetainCollator(0)([no_retain[0], no_retain[1]])


def test_retain_per_row_pairs_k_retain_rows_with_each_forget_row(tiny_tokenizer):
    dataset = ForgetRetainDataset(tiny_tokenizer, FORGET[:3], RETAIN[:5], retain_per_row=2)
    assert [[dataset.retain.index(r) for r in dataset[i]["retain"]] for i in range(3)] == [
        [0, 1],
        [2, 3],
        [4, 0],  # rows i*k ... i*k + k - 1, mod 5
    ]
    batch = ForgetRetainCollator(tiny_tokenizer.pad_token_id)([dataset[1], dataset[2]])
    assert batch["forget"]["forget"]["labels"].shape[0] == 2
    expected = data_lib.collate([dataset.retain[i] for i in (2, 3, 4, 0)], 0)["input_ids"]
    assert torch.equal(batch["retain"]["input_ids"], expected)
    for bad in (0, 1.5, True):
        with pytest.raises(ConfigError, match="retain_per_row"):
            ForgetRetainDataset(tiny_tokenizer, FORGET[:3], RETAIN[:5], retain_per_row=bad)


def test_unlearn_trainer_with_retain_per_row_equals_our_retain_batch_size(tmp_path):
    """Two retain rows per forget row in the Trainer = ``retain_batch_size`` 4 at batch size 2
    in our loop: the same retain rows in every micro-batch, the same weights."""
    start, ours = _ours("unilogit", RETAIN, retain_batch_size=4)
    forget_order, retain_order = _order(len(RETAIN), retain_batch_size=4)
    assert len(retain_order) == 2 * len(forget_order)
    tokenizer = word_tokenizer()
    model = _model(F64)
    dataset = ForgetRetainDataset(
        tokenizer,
        [FORGET[i] for i in forget_order],
        [RETAIN[i] for i in retain_order],  # item i pairs with retain rows 2i, 2i + 1
        retain_per_row=2,
    )
    trainer = UnlearnTrainer(
        model=model,
        args=_args(tmp_path),
        method="unilogit",
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    trainer.train()
    _assert_same(start, ours, model.state_dict())


def test_loss_func_mean_without_count_and_unknown_name():
    logits = torch.randn(2, 4, 5, dtype=torch.float64)
    labels = torch.tensor([[-100, 1, 2, 3], [-100, -100, 4, -100]])
    out = {"logits": logits}
    n = 4  # supervised next-token positions: labels[:, 1:] != -100
    mean = loss_func("nll")(out, labels)
    total = loss_func("nll")(out, labels, num_items_in_batch=2 * n)
    torch.testing.assert_close(total * 2, mean, rtol=1e-12, atol=1e-12)
    with pytest.raises(ConfigError, match="valid: ga, nll, unilogit"):
        loss_func("npo")


def _readme_block(heading: str) -> str:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text[text.index(heading) :]
    start = section.index("```python\n") + len("```python\n")
    return section[start : section.index("```", start)]


def test_readme_trainer_example_runs_and_equals_our_loop(tmp_path, monkeypatch):
    """The README's code, executed as written on 4 forget rows: each epoch is one optimizer
    step over all rows, so the Trainer's shuffling cannot change the batches (only the order of
    a float64 sum), and our loop with the same settings gives the same weights."""
    monkeypatch.chdir(tmp_path)
    rows = FORGET[:4]
    (tmp_path / "forget.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tokenizer = word_tokenizer()
    model = _model(F64)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    code = _readme_block("### Inside a `transformers.Trainer`")
    exec(compile(code, "README.md", "exec"), {"model": model, "tokenizer": tokenizer})
    ours, _ = unlearn(
        _model(F64),
        word_tokenizer(),
        rows,
        None,
        "unilogit",
        retain_loss=None,
        epochs=3,  # the Trainer's defaults: 3 epochs, no warmup, clipping at 1
        lr=1e-5,
        batch_size=4,
        grad_accum=4,
        warmup_ratio=0.0,
        mixed_precision="no",
        progress=False,
    )
    theirs, ours = model.state_dict(), ours.state_dict()
    assert max(float((ours[k] - start[k]).abs().max()) for k in start) > 1e-5
    for k in start:
        torch.testing.assert_close(theirs[k], ours[k], atol=ATOL, rtol=0, msg=k)


def _trainer(tmp_path, method, forget, retain, **kwargs):
    tokenizer = word_tokenizer()
    model = _model(F64)
    dataset = ForgetRetainDataset(tokenizer, forget, retain)
    trainer = UnlearnTrainer(
        model=model,
        args=_args(tmp_path),
        method=method,
        train_dataset=dataset,
        processing_class=tokenizer,
        **kwargs,
    )
    return trainer, model, tokenizer


def test_unlearn_trainer_freezes_what_rmu_cannot_change(tmp_path):
    """RMU only reads layer ℓ's activations: the parameters after it are frozen for the run
    (kept out of the optimizer, as in our loop) and handed back trainable; the weights equal
    our loop's. Before: they were in the Trainer's optimizer."""
    from unilogit.methods import get_method

    start, ours = _ours("rmu", RETAIN, precompute_reference=False)
    forget_order, retain_order = _order(len(RETAIN))
    forget = [FORGET[i] for i in forget_order]
    trainer, model, _ = _trainer(tmp_path, "rmu", forget, [RETAIN[i] for i in retain_order])
    frozen = {id(p) for p in get_method("rmu").frozen_parameters(model)}
    assert frozen and len(frozen) < len(list(model.parameters()))
    trainer.train()
    _assert_same(start, ours, model.state_dict())
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert optimized and not optimized & frozen
    assert optimized | frozen == {id(p) for p in model.parameters()}
    assert all(p.requires_grad for p in model.parameters())  # handed back trainable


@pytest.mark.parametrize("method", ["unilogit", "npo"])
def test_unlearn_trainer_evaluate_gives_the_methods_loss_on_the_whole_set(tmp_path, method):
    """``Trainer.evaluate`` on a ForgetRetainDataset, in batches of 3 over 10 rows: eval_loss and
    each term equal the method's loss on the whole set as one batch. Before: evaluate() failed
    (the Trainer called the model on the nested forget/retain batch)."""
    from unilogit.methods import StepBatch

    trainer, model, tokenizer = _trainer(tmp_path, method, FORGET, RETAIN)
    trainer.args.per_device_eval_batch_size = 3
    eval_set = ForgetRetainDataset(tokenizer, FORGET, RETAIN)
    metrics = trainer.evaluate(eval_dataset=eval_set)
    whole = ForgetRetainCollator(tokenizer.pad_token_id)(
        [eval_set[i] for i in range(len(eval_set))]
    )
    with torch.no_grad():
        step = StepBatch(model, whole["forget"], whole["retain"], trainer.reference)
        terms = trainer.method.loss(step)
    assert set(terms.values) == {"forget", "retain"}
    for name, value in terms.values.items():
        assert metrics[f"eval_loss_{name}"] == pytest.approx(float(value), rel=1e-10)
    assert metrics["eval_loss"] == pytest.approx(float(terms.total()), rel=1e-10)
    other = trainer.evaluate(eval_dataset=eval_set, metric_key_prefix="forget_set")
    assert other["forget_set_loss"] == pytest.approx(metrics["eval_loss"], rel=1e-12)


def test_unlearn_trainer_groups_by_the_forget_rows_lengths(tmp_path):
    """``group_by_length``: the Trainer cannot read lengths from our nested items (it raised
    ValueError); UnlearnTrainer groups by the forget rows' token counts and trains."""
    import dataclasses

    from transformers import TrainingArguments
    from transformers.trainer_pt_utils import LengthGroupedSampler

    fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    grouped = (
        {"train_sampling_strategy": "group_by_length"}
        if "train_sampling_strategy" in fields
        else {"group_by_length": True}
    )
    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=2, num_train_epochs=1,
        learning_rate=1e-3, report_to="none", save_strategy="no", use_cpu=True,
        disable_tqdm=True, **grouped,
    )  # fmt: skip
    tokenizer = word_tokenizer()
    # answers of 0-3 repeated names more: rows of different lengths
    forget = [dict(r, answer=r["answer"] + f" {r['answer'].split()[0]}" * (i % 4))
              for i, r in enumerate(FORGET)]  # fmt: skip
    dataset = ForgetRetainDataset(tokenizer, forget, RETAIN)
    assert dataset.lengths == [len(e.input_ids) for e in dataset.views["forget"]]
    assert len(set(dataset.lengths)) == 4  # something to group
    model = _model(F64)
    trainer = UnlearnTrainer(
        model=model, args=args, method="npo", train_dataset=dataset, processing_class=tokenizer
    )
    sampler = trainer._get_train_sampler()
    assert isinstance(sampler, LengthGroupedSampler)
    assert sampler.lengths == dataset.lengths
    order = [dataset.lengths[i] for i in sampler]
    assert sorted(order) == sorted(dataset.lengths)  # every row once
    assert order[0] == max(dataset.lengths)  # HF's grouping puts the longest batch first
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer.train()
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
