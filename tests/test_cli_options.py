"""The command line's options: one meaning per flag, validated before any model loads."""

from __future__ import annotations

import json

import pytest

from unilogit.cli import main
from unilogit.methods import RMU


@pytest.fixture
def forget_file(tmp_path):
    path = tmp_path / "forget.jsonl"
    rows = [{"text": "Once upon a time there was a cat."}, {"text": "Tom had a big red ball."}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_rmu_seed_option_is_the_method_seed_not_the_training_seed(
    shared_dir, forget_file, tmp_path, monkeypatch, capsys
):
    """`-O seed=3` with RMU: the control vector comes from seed 3, the training seed stays the
    default 0, and the audit record says exactly that (old code: training seed 3, RMU seed 0)."""
    used: list[int] = []
    real = RMU.control

    def spy(self, *args, **kwargs):
        used.append(int(self.hp["seed"]))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(RMU, "control", spy)
    out = tmp_path / "o"
    argv = ["unlearn", "--model", str(shared_dir / "models" / "stories260K.gguf")]
    argv += ["--forget", str(forget_file), "--method", "rmu", "-O", "seed=3", "-O", "layer=0"]
    argv += ["--epochs", "1", "--no-progress", "--output", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    assert used and set(used) == {3}
    record = json.loads((out / "unlearn_record.json").read_text())
    assert record["config"]["method"]["seed"] == 3
    assert record["config"]["train"]["seed"] == 0
    assert record["seed"] == 0
