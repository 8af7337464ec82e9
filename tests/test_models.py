"""Model loading (directory, Hub id, GGUF) and atomic, non-destructive saving."""

from __future__ import annotations

import shutil

import pytest
import torch

from tiny import tiny_llama, word_tokenizer
from unilogit.errors import ConfigError
from unilogit.models import load_model, prepare_output_dir, save_model, weights_sha256


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory):
    tok = word_tokenizer()
    model = tiny_llama(len(tok))
    path = tmp_path_factory.mktemp("models") / "tiny"
    save_model(model, tok, path)
    return path, weights_sha256(model)


def test_directory_round_trip(saved_tiny):
    path, digest = saved_tiny
    model, tok = load_model(path)
    assert weights_sha256(model) == digest
    assert (path / "model.safetensors").is_file()
    assert tok.pad_token_id is not None


def test_hub_id_loads_through_the_hub_cache(saved_tiny, tmp_path):
    """The Hub code path, offline: a cache laid out as huggingface_hub writes it."""
    path, digest = saved_tiny
    repo = tmp_path / "hub" / "models--acme--tiny"
    snapshot = repo / "snapshots" / ("0" * 40)
    shutil.copytree(path, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    model, _ = load_model("acme/tiny", cache_dir=tmp_path / "hub")
    assert weights_sha256(model) == digest
    with pytest.raises(
        ConfigError, match="could not load 'acme/missing' from the Hugging Face Hub"
    ):
        load_model("acme/missing", cache_dir=tmp_path / "hub")


def test_gguf_loads_into_a_saveable_model(shared_dir, tmp_path):
    model, tok = load_model(shared_dir / "models" / "stories260K.gguf")
    assert sum(p.numel() for p in model.parameters()) == 292_800  # as shared/README.md says
    ids = tok("Once upon a time", return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=8, do_sample=False)
    assert "there was a little" in tok.decode(out[0])
    saved = save_model(model, tok, tmp_path / "stories")
    again, _ = load_model(saved)
    assert weights_sha256(again) == weights_sha256(model)


def test_pickle_weights_refused_unless_allowed(tmp_path):
    tok = word_tokenizer()
    model = tiny_llama(len(tok))
    # transformers 5 no longer writes pickle checkpoints: write the classic layout by hand
    model.config.save_pretrained(tmp_path / "pickled")
    torch.save(model.state_dict(), tmp_path / "pickled" / "pytorch_model.bin")
    tok.save_pretrained(tmp_path / "pickled")
    with pytest.raises(ConfigError, match="pickle"):
        load_model(tmp_path / "pickled")
    loaded, _ = load_model(tmp_path / "pickled", allow_pickle=True)
    assert weights_sha256(loaded) == weights_sha256(model)


def test_bad_model_specs(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_model(tmp_path / "nope")
    with pytest.raises(ConfigError, match="Hub id"):
        load_model("not a model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no model weights"):
        load_model(tmp_path / "empty")
    (tmp_path / "x.bin").write_bytes(b"")
    with pytest.raises(ConfigError, match=".gguf"):
        load_model(tmp_path / "x.bin")


def test_output_directory_is_never_overwritten_unless_asked(saved_tiny, tmp_path):
    path, digest = saved_tiny
    model, tok = load_model(path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(ConfigError, match="already exists"):
        save_model(model, tok, out)
    assert (out / "keep.txt").read_text() == "precious"
    save_model(model, tok, out, overwrite=True)
    assert not (out / "keep.txt").exists()
    assert prepare_output_dir(tmp_path / "fresh", overwrite=False) == tmp_path / "fresh"
    assert not list(tmp_path.glob(".out.tmp-*"))  # no temporary directory left behind


def test_save_refuses_to_write_into_the_input_model(saved_tiny):
    path, _ = saved_tiny
    model, tok = load_model(path)
    with pytest.raises(ConfigError, match="overlaps the input model"):
        save_model(model, tok, path / "inside", protect=[path])


def test_json_files_cannot_escape(saved_tiny, tmp_path):
    path, _ = saved_tiny
    model, tok = load_model(path)
    with pytest.raises(ConfigError, match="escape"):
        save_model(model, tok, tmp_path / "o", json_files={"../evil.json": {}})
    assert not (tmp_path / "evil.json").exists()
    assert not (tmp_path / "o").exists()


def test_weights_hash_changes_with_any_weight(saved_tiny):
    path, digest = saved_tiny
    model, _ = load_model(path)
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 1e-6
    assert weights_sha256(model) != digest


def test_default_device_is_this_process_gpu(monkeypatch):
    """Under accelerate launch / torchrun each process loads onto its own GPU (LOCAL_RANK)."""
    from unilogit.models import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert resolve_device(None) == torch.device("cuda", 3)
    monkeypatch.delenv("LOCAL_RANK")
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cpu") == torch.device("cpu")


def test_check_output_file_never_replaces_a_model_or_input(saved_tiny, tmp_path, monkeypatch):
    """`eval --output FILE --overwrite` replaced the input model file; the CLI calls this."""
    from unilogit.models import check_output_file

    path, _ = saved_tiny
    weights = path / "model.safetensors"
    with pytest.raises(ConfigError, match="overlaps the run's input"):
        check_output_file(weights, overwrite=True, protect=[path])
    data = tmp_path / "forget.jsonl"
    data.write_text("{}\n")
    with pytest.raises(ConfigError, match="overlaps the run's input"):
        check_output_file(data, overwrite=True, protect=[data])
    with pytest.raises(ConfigError, match="is a directory"):
        check_output_file(tmp_path, overwrite=True)
    (tmp_path / "eval.json").write_text("{}")
    with pytest.raises(ConfigError, match="exists; pass --overwrite"):
        check_output_file(tmp_path / "eval.json", overwrite=False)
    assert check_output_file(tmp_path / "eval.json", overwrite=True) == tmp_path / "eval.json"
    monkeypatch.chdir(tmp_path)
    assert check_output_file("new.json", overwrite=False) == (tmp_path / "new.json").resolve()
