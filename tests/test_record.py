"""The audit record and ``verify`` (issue #11): every file of the saved model is covered, the
record's own hash is checked, data checks that cannot run are reported, recorded relative data
paths are found from another directory, and version-1 records still verify (weights only)."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from safety_kit import FAST, make_inputs
from unilogit import recipes
from unilogit.data import describe_source
from unilogit.errors import ConfigError
from unilogit.record import RECORD_FILE, RECORD_HASH_FILE, describe_data, sha256_file, verify


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """An unlearn output made from relative data paths (cwd = the inputs' folder)."""
    root = tmp_path_factory.mktemp("run")
    inputs = make_inputs(root)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        out = recipes.unlearn_to_disk(
            model="m", forget="f.jsonl", retain="r.jsonl", output="o", train_options=dict(FAST)
        )
    finally:
        os.chdir(cwd)
    return out, inputs


@pytest.fixture
def copy(saved, tmp_path):
    out = tmp_path / "o"
    shutil.copytree(saved[0], out)
    return out


def failed(result) -> list[str]:
    return [c["check"] for c in result["checks"] if c["ok"] is False]


def test_a_fresh_output_verifies_completely(saved, tmp_path, monkeypatch):
    out, _ = saved
    monkeypatch.chdir(tmp_path)  # another directory: relative data paths are still found
    result = verify(out)
    assert result["ok"] and result["complete"], result
    names = {c["check"] for c in result["checks"]}
    assert {"record sha256", "file config.json", "file tokenizer.json", "weights_sha256"} <= names
    assert {"forget data sha256", "retain data sha256"} <= names
    record = json.loads((out / RECORD_FILE).read_text())
    assert record["unilogit_record_version"] == 2
    assert record["data"]["forget"]["source"] == "f.jsonl"
    assert os.path.isabs(record["data"]["forget"]["path"])


@pytest.mark.parametrize(
    ("tamper", "check"),
    [
        (lambda o: _edit_json(o / "config.json", "rms_norm_eps", 1e-3), "file config.json"),
        (
            lambda o: _edit_json(o / "tokenizer_config.json", "eos_token", "<s>"),
            "file tokenizer_config.json",
        ),
        (
            lambda o: (o / "pytorch_model.bin").write_bytes(b"\x80\x02}q\x00."),
            "no unrecorded files",
        ),
        (lambda o: (o / "generation_config.json").unlink(), "file generation_config.json"),
        (lambda o: _edit_json(o / RECORD_FILE, "seed", 7), "record sha256"),
        (lambda o: (o / RECORD_HASH_FILE).unlink(), "record sha256"),
    ],
    ids=["config", "tokenizer", "extra pickle", "missing file", "edited record", "no record hash"],
)
def test_any_change_to_the_saved_directory_fails(copy, tamper, check):
    """Before: only the weights were hashed; all of these passed."""
    tamper(copy)
    result = verify(copy)
    assert not result["ok"] and check in failed(result), result["checks"]


def _edit_json(path, key, value):
    data = json.loads(path.read_text())
    data[key] = value
    path.write_text(json.dumps(data, indent=2))


def test_a_data_file_not_found_is_reported_not_skipped(copy, tmp_path, monkeypatch):
    record = json.loads((copy / RECORD_FILE).read_text())
    for info in record["data"].values():
        info.update(source="gone.jsonl", path=str(tmp_path / "gone.jsonl"), cwd=str(tmp_path))
    (copy / RECORD_FILE).write_text(json.dumps(record))
    import hashlib

    digest = hashlib.sha256((copy / RECORD_FILE).read_bytes()).hexdigest()
    (copy / RECORD_HASH_FILE).write_text(f"{digest}  {RECORD_FILE}\n")
    result = verify(copy)
    assert result["ok"] and not result["complete"]
    statuses = [c.get("status") for c in result["checks"] if c["check"].endswith("data sha256")]
    assert statuses == ["not checked: file not found"] * 2


def test_a_changed_data_file_fails(saved, tmp_path):
    out, inputs = saved
    original = inputs["forget"].read_bytes()
    try:
        inputs["forget"].write_bytes(original + b"\n")
        assert "forget data sha256" in failed(verify(out))
    finally:
        inputs["forget"].write_bytes(original)


def test_version_1_records_verify_the_weights_only_and_say_so(copy):
    record = json.loads((copy / RECORD_FILE).read_text())
    record["unilogit_record_version"] = 1
    del record["output_model"]["files"]
    (copy / RECORD_FILE).write_text(json.dumps(record))
    (copy / RECORD_HASH_FILE).unlink()
    result = verify(copy)
    assert result["ok"] and not result["complete"]
    assert [c["check"] for c in result["checks"]] == ["record version", "weights_sha256"]
    assert "only the weights" in result["checks"][0]["status"]


def test_no_record_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="no unlearn_record.json"):
        verify(tmp_path)


def test_one_data_identity_for_records_and_describe_source(saved):
    """describe_source (data) and describe_data (record) hashed rows differently; now one."""
    _, inputs = saved
    from unilogit.data import load_examples

    rows = load_examples(inputs["forget"])
    assert describe_source(inputs["forget"]) == describe_data(inputs["forget"], rows)
    in_memory = describe_data([{"question": "q"}], rows, name="forget")
    assert in_memory["rows_sha256"] == describe_data(inputs["forget"], rows)["rows_sha256"]
    assert in_memory["sha256_of"] == "rows" and in_memory["sha256"] == in_memory["rows_sha256"]
    assert describe_data(inputs["forget"], rows)["sha256"] == sha256_file(inputs["forget"])
