"""The `unilogit` command line on the real pretrained stories260K model: unlearn a handful of
its own stories from a JSONL file, verify the audit record, refuse bad input, resume a run
killed by a signal."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from safety_kit import ctrl_c_default
from unilogit.cli import main
from unilogit.models import load_model

PROMPTS = [
    "Once upon a time, there was a little girl named Lily.",
    "Tom had a big red ball.",
    "One day, a cat went to the park.",
    "Sue and her mom baked a cake.",
    "The dog was very hungry.",
    "Max found a shiny rock.",
    "Anna liked to sing songs.",
]


@pytest.fixture(scope="module")
def stories(shared_dir, tmp_path_factory):
    """The model's own greedy stories: 3 to forget, 4 to keep, as JSONL files."""
    gguf = shared_dir / "models" / "stories260K.gguf"
    model, tok = load_model(gguf)
    texts = []
    for prompt in PROMPTS:
        ids = tok(prompt, return_tensors="pt").input_ids
        out = model.generate(ids, max_new_tokens=40, do_sample=False)
        texts.append(tok.decode(out[0], skip_special_tokens=True))
    root = tmp_path_factory.mktemp("stories")
    for name, rows in [("forget", texts[:3]), ("retain", texts[3:])]:
        with open(root / f"{name}.jsonl", "w") as f:
            for text in rows:
                f.write(json.dumps({"text": text}) + "\n")
    return gguf, root, texts


def mean_loss(model, tok, texts) -> float:
    values = []
    for text in texts:
        ids = tok(text, return_tensors="pt").input_ids
        with torch.no_grad():
            values.append(model(input_ids=ids, labels=ids).loss.item())
    return sum(values) / len(values)


def test_unlearn_stories_from_the_cli(stories, tmp_path, capsys):
    """Unilogit makes the model's loss on 3 of its own stories rise at least 3x (0.6 → ~4 nats
    per token), while the kept stories' loss may rise by at most 0.3 nats (the NLL retain term
    in practice lowers it)."""
    gguf, root, texts = stories
    from unilogit.record import sha256_file

    input_digest = sha256_file(gguf)
    out = tmp_path / "forgot"
    code = main(
        [
            "unlearn",
            "--model",
            str(gguf),
            "--forget",
            str(root / "forget.jsonl"),
            "--retain",
            str(root / "retain.jsonl"),
            "--method",
            "unilogit",
            "--epochs",
            "10",
            "--batch-size",
            "3",
            "--lr",
            "1e-3",
            "--warmup-ratio",
            "0",
            "--output",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert sha256_file(gguf) == input_digest  # the input model is never modified
    before, tok = load_model(gguf)
    after, _ = load_model(out)
    assert mean_loss(after, tok, texts[:3]) > 3 * mean_loss(before, tok, texts[:3])
    assert mean_loss(after, tok, texts[3:]) < mean_loss(before, tok, texts[3:]) + 0.3

    names = {p.name for p in out.iterdir()}
    assert {
        "model.safetensors",
        "unlearn_config.json",
        "unlearn_record.json",
        "train_log.jsonl",
    } <= names
    record = json.loads((out / "unlearn_record.json").read_text())
    assert record["data"]["forget"]["rows"] == 3
    assert len(record["data"]["forget"]["sha256"]) == 64
    assert record["config"]["method"]["method"] == "unilogit"
    assert record["input_model"]["weights_sha256"] != record["output_model"]["weights_sha256"]
    assert len((out / "train_log.jsonl").read_text().splitlines()) == 10

    assert main(["verify", str(out)]) == 0
    with torch.no_grad():
        after.model.norm.weight[0] += 1.0
    after.save_pretrained(out, safe_serialization=True)  # tamper with the saved weights
    assert main(["verify", str(out)]) == 1


def test_refuses_existing_output(stories, tmp_path, capsys):
    gguf, root, _ = stories
    out = tmp_path / "taken"
    out.mkdir()
    (out / "x").write_text("keep")
    args = [
        "unlearn",
        "--model",
        str(gguf),
        "--forget",
        str(root / "forget.jsonl"),
        "--output",
        str(out),
    ]
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "x").read_text() == "keep"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"--method": "forgetful"},
            "valid methods: ga, graddiff, idkdpo, npo, rmu, simnpo, undial, unilogit",
        ),
        ({"--model": "missing/dir/model"}, "model path does not exist"),
        ({"--forget": "nope.jsonl"}, "nope.jsonl: file not found"),
        ({"--option": "beta"}, "KEY=VALUE"),
    ],
)
def test_bad_arguments_give_one_clear_line(stories, tmp_path, capsys, change, message):
    gguf, root, _ = stories
    args = {
        "--model": str(gguf),
        "--forget": str(root / "forget.jsonl"),
        "--output": str(tmp_path / "o"),
    }
    args.update(change)
    assert main(["unlearn", *[x for kv in args.items() for x in kv]]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last
    assert "Traceback" not in err


def test_help_and_methods(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["unlearn", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "--forget" in text and "--retain-weight" in text and "unilogit" in text
    assert main(["methods"]) == 0
    listing = capsys.readouterr().out
    for name in ["unilogit", "npo", "undial", "rmu", "idkdpo", "simnpo", "ga", "graddiff"]:
        assert name in listing


def _weights(path: Path) -> torch.Tensor:
    model, _ = load_model(path)
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_resume_after_kill_gives_the_same_weights(stories, tmp_path):
    """Kill a run with SIGKILL after its first checkpoint, resume it, and compare with an
    uninterrupted run: the schedule, optimizer and LR state all come back, so weights match."""
    gguf, root, _ = stories
    common = [
        sys.executable,
        "-m",
        "unilogit.cli",
        "unlearn",
        "--model",
        str(gguf),
        "--forget",
        str(root / "forget.jsonl"),
        "--retain",
        str(root / "retain.jsonl"),
        "--epochs",
        "15",
        "--batch-size",
        "1",
        "--lr",
        "1e-3",
        "--no-progress",
        "--checkpoint-every",
        "5",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    full = tmp_path / "full"
    subprocess.run([*common, "--output", str(full)], check=True, env=env, capture_output=True)

    killed = tmp_path / "killed"
    state = tmp_path / ".killed.checkpoints" / "checkpoint" / "trainer_state.json"
    proc = subprocess.Popen([*common, "--output", str(killed)], env=env, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not killed.exists()  # nothing half-written where the model goes
    step = json.loads(state.read_text())["step"]
    assert 0 < step < 45
    subprocess.run(
        [*common, "--output", str(killed), "--resume"], check=True, env=env, capture_output=True
    )
    torch.testing.assert_close(_weights(killed), _weights(full), atol=1e-6, rtol=1e-5)
    assert len((killed / "train_log.jsonl").read_text().splitlines()) >= 45


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_says_how_to_resume_and_that_command_resumes(stories, tmp_path, stop):
    """SIGINT (Ctrl-C) or SIGTERM (a scheduler's stop) after the first checkpoint: exit 130,
    one line on stderr naming the checkpoint and the exact command that resumes; running that
    command finishes the run."""
    gguf, root, _ = stories
    out = tmp_path / "run"
    args = ["unlearn", "--model", str(gguf), "--forget", str(root / "forget.jsonl")]
    args += ["--retain", str(root / "retain.jsonl"), "--epochs", "15", "--batch-size", "1"]
    args += ["--lr", "1e-3", "--no-progress", "--checkpoint-every", "5", "--output", str(out)]
    module = [sys.executable, "-m", "unilogit.cli"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    state = tmp_path / ".run.checkpoints" / "checkpoint" / "trainer_state.json"
    proc = subprocess.Popen(
        [*module, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ctrl_c_default,  # SIGINT not inherited as ignored (suite run in background)
    )
    deadline = time.time() + 300
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(stop)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"interrupted; last checkpoint: {state.parent} (step ")
    command = shlex.split(last.partition("resume with: ")[2])
    assert command == ["unilogit", *args, "--resume"]
    assert not out.exists()
    done = subprocess.run([*module, *command[1:]], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert len((out / "train_log.jsonl").read_text().splitlines()) >= 45


def test_benchmark_data_for_unlearn_and_finetune(shared_dir, tmp_path, capsys):
    """`--benchmark tofu --split forget01` takes TOFU's forget01 and its retain99 partner."""
    gguf = str(shared_dir / "models" / "stories260K.gguf")
    tofu = [
        "--benchmark",
        "tofu",
        "--data-dir",
        str(shared_dir / "data" / "tofu"),
        "--max-rows",
        "4",
    ]
    quick = ["--epochs", "1", "--lr", "1e-4", "--no-progress"]
    tuned = tmp_path / "tuned"
    assert main(["finetune", "--model", gguf, *tofu, "--output", str(tuned), *quick]) == 0
    out = tmp_path / "out"
    code = main(
        [
            "unlearn",
            "--model",
            str(tuned),
            *tofu,
            "--split",
            "forget01",
            "--output",
            str(out),
            "--evaluate",
            *quick,
        ]
    )
    assert code == 0, capsys.readouterr().err
    record = json.loads((out / "unlearn_record.json").read_text())
    before, after = record["evaluation"]["before"], record["evaluation"]["after"]
    assert 0 < after["splits"]["forget"]["probability"] < 1
    assert before["splits"]["forget"]["probability"] != after["splits"]["forget"]["probability"]
    assert record["data"]["forget"]["rows"] == 4
    assert "forget01.jsonl:1" in record["data"]["forget"]["source"]
    assert "retain99.jsonl:1" in record["data"]["retain"]["source"]
    assert record["config"]["method"]["retain_loss"] == "nll"
    assert (
        main(
            [
                "unlearn",
                "--model",
                gguf,
                *tofu,
                "--split",
                "forget07",
                "--output",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    assert "forget01" in capsys.readouterr().err
