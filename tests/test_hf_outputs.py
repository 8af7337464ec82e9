"""What a saved run offers the Hugging Face stack (issue 16): a model card, experiment tracking
through accelerate's trackers (TensorBoard, read back from its event files) and
``--push-to-hub`` (against a local stand-in of the Hub's HTTP API, :mod:`hub_stub`)."""

from __future__ import annotations

import json
import os

import pytest
import torch

from hub_stub import HubStub
from safety_kit import FAST, cli, make_inputs, tree, unlearn_args
from unilogit import recipes
from unilogit.data import load_examples
from unilogit.record import verify


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return make_inputs(tmp_path_factory.mktemp("inputs"))


def forget_nll(model, tokenizer, rows) -> float:
    """Mean NLL of the forget rows' full texts (the evaluation given to the recipe)."""
    values = []
    for row in rows:
        ids = tokenizer(row.prompt + " " + row.response, return_tensors="pt").input_ids
        with torch.no_grad():
            values.append(model(input_ids=ids, labels=ids).loss.item())
    return sum(values) / len(values)


@pytest.fixture(scope="module")
def tracked(inputs, tmp_path_factory):
    """An evaluated NPO run reporting to TensorBoard."""
    rows = load_examples(str(inputs["forget"]))
    calls = []

    def evaluate(model, tokenizer):
        calls.append(forget_nll(model, tokenizer, rows))
        return {"forget": {"nll": calls[-1]}, "note": "texts are dropped"}

    out = recipes.unlearn_to_disk(
        model=str(inputs["model"]),
        forget=str(inputs["forget"]),
        retain=str(inputs["retain"]),
        method="npo",
        method_options={"beta": 0.2},
        output=tmp_path_factory.mktemp("runs") / "tracked",
        train_options={**FAST, "batch_size": 1},
        evaluate=evaluate,
        report_to="tensorboard",
    )
    return out, calls


def read_scalars(folder) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = [p.parent for p in folder.rglob("events.out.tfevents.*")]
    out: dict[str, list[tuple[int, float]]] = {}
    for run in runs:
        acc = EventAccumulator(str(run))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return out


def test_tensorboard_gets_every_step_and_both_evaluations(tracked):
    """Before: `report_to` did not exist (no tracker was ever created)."""
    out, calls = tracked
    scalars = read_scalars(out / "trackers")
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 4  # 4 forget rows, batch 1
    for key in ("loss", "loss_forget", "loss_retain", "lr", "grad_norm"):
        logged = sorted(scalars[f"train/{key}"])
        assert [s for s, _ in logged] == [line["step"] for line in log]
        assert [v for _, v in logged] == pytest.approx([line[key] for line in log], rel=1e-6)
    assert scalars["eval_before/forget/nll"] == [(0, pytest.approx(calls[0], rel=1e-6))]
    assert scalars["eval_after/forget/nll"] == [(4, pytest.approx(calls[1], rel=1e-6))]
    assert calls[1] > calls[0]  # NPO raised the forget rows' loss
    hparams = list((out / "trackers").rglob("hparams.yml"))
    assert hparams and "method/beta: 0.2" in hparams[0].read_text()
    assert verify(out)["ok"]  # the tracker files are part of the verified output


def test_the_model_card_describes_the_run(tracked):
    """Before: no README.md was written."""
    from huggingface_hub import ModelCard

    out, calls = tracked
    card = ModelCard.load(out / "README.md")
    assert {"unilogit", "unlearning", "npo"} <= set(card.data.tags)
    assert card.data.base_model is None  # a local model: no Hub base_model metadata
    record = json.loads((out / "unlearn_record.json").read_text())
    assert record["data"]["forget"]["sha256"] in card.text
    assert record["data"]["retain"]["sha256"] in card.text
    assert '"beta": 0.2' in card.text and '"lr": 0.001' in card.text
    assert f"| forget.nll | {calls[0]:.4g} | {calls[1]:.4g} |" in card.text
    assert "README.md" in record["output_model"]["files"]


def test_a_finetuned_model_gets_a_card_with_its_hub_base(inputs, tmp_path):
    from huggingface_hub import ModelCard

    from unilogit.card import model_card

    out = recipes.finetune_to_disk(
        model=str(inputs["model"]),
        data=str(inputs["forget"]),
        output=tmp_path / "ft",
        train_options=dict(FAST),
    )
    card = ModelCard.load(out / "README.md")
    assert "finetune" in card.data.tags and "unlearning" not in card.data.tags
    config = json.loads((out / "finetune_config.json").read_text())
    assert config["data"]["sha256"] in card.text
    assert model_card({**config, "model": "HuggingFaceTB/SmolLM2-135M"}).data.base_model == (
        "HuggingFaceTB/SmolLM2-135M"
    )


@pytest.fixture
def hub():
    with HubStub() as stub:
        yield stub


def hub_env(stub: HubStub) -> dict[str, str]:
    return {"HF_ENDPOINT": stub.url, "HF_TOKEN": "hf_test", "HF_HUB_OFFLINE": "0"}


def test_push_to_hub_uploads_model_card_and_record(inputs, tmp_path, hub):
    """Before: --push-to-hub did not exist."""
    args = unlearn_args(inputs, "o", "--push-to-hub", "me/forgot", "--private")
    res = cli(*args, cwd=tmp_path, env=hub_env(hub))
    assert res.returncode == 0, res.stderr
    assert f"pushed to {hub.url}/me/forgot/commit/" in res.stdout
    (created,) = hub.created
    assert (created["organization"], created["name"]) == ("me", "forgot")
    # huggingface_hub >= 1.0 sends "visibility", older versions "private"
    assert created.get("visibility") == "private" or created.get("private") is True
    assert all(t == "Bearer hf_test" for t in hub.tokens)
    local = tree(tmp_path / "o")
    assert hub.repos["me/forgot"] == local  # every file, byte for byte
    assert {"model.safetensors", "README.md", "unlearn_record.json"} <= set(local)


@pytest.mark.parametrize(
    "env, message",
    [
        ({"HF_HUB_OFFLINE": "1", "HF_TOKEN": "hf_test"}, "HF_HUB_OFFLINE is set"),
        ({"HF_HUB_OFFLINE": "0", "HF_TOKEN": "", "HF_HOME": "{tmp}/hf"}, "no Hugging Face token"),
    ],
)
def test_push_to_hub_is_refused_before_any_work(inputs, tmp_path, env, message):
    env = {k: v.replace("{tmp}", str(tmp_path)) for k, v in env.items()}
    res = cli(*unlearn_args(inputs, "o", "--push-to-hub", "me/x"), cwd=tmp_path, env=env)
    assert res.returncode == 2 and message in res.stderr
    assert res.stderr.strip().count("\n") == 0 and not (tmp_path / "o").exists()


def test_a_failed_push_keeps_the_saved_model(inputs, tmp_path, hub):
    env = {**hub_env(hub), "HF_ENDPOINT": hub.url + "/nowhere"}
    res = cli(*unlearn_args(inputs, "o", "--push-to-hub", "me/x"), cwd=tmp_path, env=env)
    assert res.returncode == 2 and "the model is saved in" in res.stderr
    assert verify(tmp_path / "o")["ok"]


def test_report_to_names_a_missing_or_unknown_tracker(inputs, tmp_path):
    res = cli(*unlearn_args(inputs, "o", "--report-to", "tensorbored"), cwd=tmp_path)
    assert res.returncode == 2 and "unknown tracker" in res.stderr
    assert not os.path.exists(tmp_path / "o")


def wandb_records(run_file) -> list[dict[str, str]]:
    """The history rows (key -> JSON text) of an offline W&B run file: a LevelDB-style log
    (7-byte header, 32 KiB blocks of CRC/length/type records) of ``Record`` protobufs."""
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    raw, pos, block, part, rows = run_file.read_bytes(), 7, 32768, b"", []
    while pos + 7 <= len(raw):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", raw[pos : pos + 7])
        if kind == 0 and length == 0:
            break
        part, pos = part + raw[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind in (1, 4):  # FULL or LAST: a whole record
            record = pb.Record()
            record.ParseFromString(part)
            if record.WhichOneof("record_type") == "history":
                rows.append(
                    {i.key or "/".join(i.nested_key): i.value_json for i in record.history.item}
                )
            part = b""
    return rows


def test_wandb_offline_gets_every_step_and_both_evaluations(inputs, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = recipes.unlearn_to_disk(
        model=str(inputs["model"]),
        forget=str(inputs["forget"]),
        retain=str(inputs["retain"]),
        output=tmp_path / "o",
        train_options=dict(FAST),
        evaluate=lambda model, tokenizer: {"probe": 1.5},
        report_to="wandb",
    )
    rows = wandb_records(next((tmp_path / "wandb").rglob("run-*.wandb")))
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [int(r["_step"]) for r in rows] == [0, 1, 2]
    assert rows[0]["eval_before/probe"] == "1.5" and rows[-1]["eval_after/probe"] == "1.5"
    for row, line in zip(rows[1:], log, strict=True):
        assert float(row["train/loss"]) == pytest.approx(line["loss"], rel=1e-9)
