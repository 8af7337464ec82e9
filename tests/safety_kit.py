"""Shared set-up of the output-safety tests: a tiny model and QA files on disk, and the CLI
run as a real process (so signals, locks and resource limits act on a real run)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tiny import qa_rows, tiny_llama, word_tokenizer
from unilogit.models import save_model

FAST = {"epochs": 1, "batch_size": 2, "lr": 1e-3, "warmup_ratio": 0.0, "progress": False}


def make_inputs(root: Path) -> dict[str, Path]:
    """``root/m`` (tiny Llama + tokenizer), ``root/f.jsonl`` (4 rows), ``root/r.jsonl`` (20)."""
    tok = word_tokenizer()
    save_model(tiny_llama(len(tok)), tok, root / "m")
    rows = qa_rows()
    for name, part in [("f.jsonl", rows[:4]), ("r.jsonl", rows[4:])]:
        (root / name).write_text("".join(json.dumps(r) + "\n" for r in part))
    return {"model": root / "m", "forget": root / "f.jsonl", "retain": root / "r.jsonl"}


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None, **kw):
    """``python -m unilogit.cli ARGS`` in ``cwd`` (this checkout's sources first)."""
    src = str(Path(__file__).resolve().parents[1] / "src")
    full_env = {**os.environ, "PYTHONPATH": src, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "unilogit.cli", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=600,
        **kw,
    )


def ctrl_c_default() -> None:
    """Popen ``preexec_fn``: SIGINT back to its default in the child. A suite started as a
    background job (``make test &`` without job control) inherits SIGINT *ignored*, and Python
    then never turns it into KeyboardInterrupt, so a Ctrl-C test would see the run finish."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def popen(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """:func:`cli` started in the background (a run to send signals to)."""
    src = str(Path(__file__).resolve().parents[1] / "src")
    full_env = {**os.environ, "PYTHONPATH": src, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "unilogit.cli", *args],
        cwd=cwd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ctrl_c_default,
    )


def unlearn_args(inputs: dict[str, Path], output: str, *extra: str) -> list[str]:
    return [
        "unlearn",
        "--model",
        str(inputs["model"]),
        "--forget",
        str(inputs["forget"]),
        "--epochs",
        "1",
        "--batch-size",
        "2",
        "--no-progress",
        "--output",
        output,
        *extra,
    ]


def tree(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` with its bytes (to compare before/after)."""
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }
