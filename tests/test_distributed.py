"""1 process x batch 4 == 2 processes x batch 2 (DDP over gloo on the CPU), through the real
``accelerate launch`` with the shipped ``configs/accelerate/cpu_2proc.yaml``.

The runs (see ``tests/ddp_script.py``): Unilogit with NLL retain, the same with ``fused=True``
(its forward goes through the DDP wrapper, so gradients are synchronised), NPO with 2
accumulation steps and RMU (whose later layers get no gradient: frozen for the run). 5 forget
rows with a global batch of 4 leave a 1-row tail micro-batch, so one process has no rows there:
it must still take part in DDP's collectives.

Tolerance: the two runs differ only in float32 rounding (other matmul shapes, padding to other
lengths, gradients summed by all-reduce instead of in one batch), amplified a little by Adam's
division by sqrt(v); the same bound as the accumulation invariant in test_trainer.py.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ddp_script

ROOT = Path(__file__).resolve().parents[1]
ACCELERATE = Path(sys.executable).with_name("accelerate")


def _launch_env() -> dict[str, str]:
    return {
        **os.environ,
        "ACCELERATE_USE_CPU": "1",  # gloo CPU processes (see the config file's comment)
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }


def _launch(*args: str) -> list[str]:
    config = ROOT / "configs" / "accelerate" / "cpu_2proc.yaml"
    port = str(_free_port())
    return [
        str(ACCELERATE),
        "launch",
        "--config_file",
        str(config),
        "--main_process_port",
        port,
        *args,
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not ACCELERATE.exists(), reason="accelerate CLI not installed in this env")
def test_two_processes_equal_one_process(tmp_path):
    out = tmp_path / "ddp.pt"
    env = _launch_env()
    cmd = _launch(str(ROOT / "tests" / "ddp_script.py"), str(out), "--batch-size", "2")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        single = ddp_script.run(batch_size=4)  # meanwhile, in this process
        log, _ = proc.communicate(timeout=100)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, log.decode(errors="replace")[-4000:]
    double = torch.load(out, weights_only=True)
    assert double.keys() == single.keys() == ddp_script.RUNS.keys()
    initial = ddp_script.run_initial_state()
    for name in single:
        one, two = single[name], double[name]
        assert one.keys() == two.keys()
        torch.testing.assert_close(
            two.pop("__losses__"), one.pop("__losses__"), rtol=1e-4, atol=1e-6
        )
        flat_one = torch.cat([v.flatten() for v in one.values()])
        flat_two = torch.cat([v.flatten() for v in two.values()])
        assert not torch.equal(flat_one, initial), f"{name}: the weights did not move"
        torch.testing.assert_close(flat_two, flat_one, atol=2e-5, rtol=1e-4, msg=name)


@pytest.mark.skipif(not ACCELERATE.exists(), reason="accelerate CLI not installed in this env")
def test_cli_under_two_processes_writes_one_output(shared_dir, tmp_path):
    """`accelerate launch -m unilogit.cli unlearn ...`: both processes train, the main process
    alone saves the model, its step log and the audit record, which `unilogit verify` accepts."""
    from unilogit.cli import main

    texts = [
        f"Once upon a time there was a {w} who liked to play." for w in "cat dog bird fox".split()
    ]
    for name, rows in (("forget", texts[:2]), ("retain", texts[2:])):
        (tmp_path / f"{name}.jsonl").write_text(
            "".join(json.dumps({"text": t}) + "\n" for t in rows)
        )
    out = tmp_path / "out"
    cmd = _launch(
        "-m", "unilogit.cli", "unlearn",
        "--model", str(shared_dir / "models" / "stories260K.gguf"),
        "--forget", str(tmp_path / "forget.jsonl"),
        "--retain", str(tmp_path / "retain.jsonl"),
        "--output", str(out),
        "--epochs", "3", "--batch-size", "1", "--no-progress",
    )  # fmt: skip
    proc = subprocess.run(cmd, env=_launch_env(), capture_output=True, text=True, timeout=200)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.count("saved to") == 1, proc.stdout
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]  # 2 forget rows = 1 global batch of 2, 3 epochs
    record = json.loads((out / "unlearn_record.json").read_text())
    assert record["steps"] == 3 and record["data"]["forget"]["rows"] == 2
    assert main(["verify", str(out)]) == 0
    assert not list(tmp_path.glob(".out.*")), "temporary files left behind"
