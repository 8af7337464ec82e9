"""LoRA adapter directories: save adapters only, load them back on their base model.

A tiny Llama is saved as the base, loaded through ``load_model`` (which records its absolute
path as ``name_or_path``), unlearned with ``lora=True``; the adapters saved with
``merge_lora=False`` must load back to the same outputs (and the same weights hash) as the
in-memory peft model, merged or not.
"""

from __future__ import annotations

import json
import shutil
import warnings

import pytest
import torch

from tiny import qa_rows, tiny_llama, word_tokenizer
from unilogit import unlearn
from unilogit.errors import ConfigError
from unilogit.models import is_adapter_dir, load_model, save_model, weights_sha256

FORGET, RETAIN = qa_rows()[:4], qa_rows()[4:]
FAST = {"progress": False, "seed": 0, "warmup_ratio": 0.0}
LORA = {"lora": True, "lora_target_modules": ["q_proj", "v_proj", "o_proj"]}


@torch.no_grad()
def logits(model, tokenizer) -> torch.Tensor:
    ids = tokenizer(
        ["Where does Arlo live? Arlo lives in Paris.", "What color does Kit like?"],
        return_tensors="pt",
        padding=True,
    )
    return model(**ids).logits.float()


def _unlearned(tmp_path, name="base"):
    """(base dir, tokenizer, in-memory peft model after GradDiff with LoRA)."""
    tok = word_tokenizer()
    base_dir = tmp_path / name
    save_model(tiny_llama(len(tok)), tok, base_dir)
    model, tok = load_model(base_dir)
    model, _ = unlearn(
        model, tok, FORGET, RETAIN, method="graddiff", epochs=2, lr=1e-2, batch_size=2,
        **LORA, **FAST,
    )  # fmt: skip
    model.eval()
    assert hasattr(model, "peft_config")
    return base_dir, tok, model


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    base_dir, tok, peft_model = _unlearned(root)
    expected = logits(peft_model, tok)
    base_logits = logits(load_model(base_dir)[0], tok)
    assert not torch.allclose(expected, base_logits, atol=1e-4), "the adapters changed nothing"
    digest = weights_sha256(peft_model)
    out = save_model(peft_model, tok, root / "adapter", merge_lora=False)
    return root, base_dir, out, tok, peft_model, expected, digest


def test_adapter_only_save_writes_adapters_and_names_the_base(adapter):
    _, base_dir, out, *_ = adapter
    names = {p.name for p in out.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= names
    assert "model.safetensors" not in names  # adapters only, not the full weights
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(base_dir.resolve())
    assert is_adapter_dir(out) and not is_adapter_dir(base_dir)


def test_adapter_dir_loads_to_the_same_model(adapter):
    _, _, out, tok, _, expected, digest = adapter
    model, tok2 = load_model(out)
    assert hasattr(model, "peft_config")  # a PeftModel, adapters kept separate
    assert not any(p.requires_grad for p in model.parameters())
    assert tok2.get_vocab() == tok.get_vocab()
    torch.testing.assert_close(logits(model, tok2), expected, rtol=0, atol=1e-6)
    assert weights_sha256(model) == digest  # what `unilogit verify` compares


def test_adapter_dir_loads_merged(adapter):
    _, _, out, tok, _, expected, _ = adapter
    model, _ = load_model(out, merge_lora=True)
    assert not hasattr(model, "peft_config")
    assert not any("lora" in name for name, _ in model.named_parameters())
    torch.testing.assert_close(logits(model, tok), expected, rtol=1e-5, atol=1e-5)
    assert model.name_or_path == str(out.resolve())  # later adapters on it name this dir


def test_merged_save_loads_to_the_same_outputs(tmp_path):
    _, tok, peft_model = _unlearned(tmp_path)
    expected = logits(peft_model, tok)
    out = save_model(peft_model, tok, tmp_path / "merged")  # merge_lora=True by default
    assert (out / "model.safetensors").is_file() and not is_adapter_dir(out)
    model, _ = load_model(out)
    torch.testing.assert_close(logits(model, tok), expected, rtol=1e-5, atol=1e-5)


def test_moved_base_is_named_and_can_be_overridden(adapter, tmp_path):
    root, base_dir, out, tok, _, expected, _ = adapter
    moved_adapter = tmp_path / "adapter"
    shutil.copytree(out, moved_adapter)
    config = json.loads((moved_adapter / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(tmp_path / "gone")
    (moved_adapter / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="does not exist.*base_model="):
        load_model(moved_adapter)
    model, _ = load_model(moved_adapter, base_model=base_dir)
    torch.testing.assert_close(logits(model, tok), expected, rtol=0, atol=1e-6)


def test_relative_base_resolves_against_the_adapter_dir(adapter, tmp_path, monkeypatch):
    _, base_dir, out, tok, _, expected, _ = adapter
    shutil.copytree(base_dir, tmp_path / "base")
    shutil.copytree(out, tmp_path / "runs" / "adapter")
    config_path = tmp_path / "runs" / "adapter" / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = "../../base"
    config_path.write_text(json.dumps(config))
    monkeypatch.chdir(tmp_path / "runs")  # "../../base" does not exist from here
    model, _ = load_model(tmp_path / "runs" / "adapter")
    torch.testing.assert_close(logits(model, tok), expected, rtol=0, atol=1e-6)


def test_pickle_adapters_refused_unless_allowed(adapter, tmp_path):
    _, _, out, tok, peft_model, expected, _ = adapter
    pickled = tmp_path / "pickled"
    shutil.copytree(out, pickled)
    from safetensors.torch import load_file

    state = load_file(pickled / "adapter_model.safetensors")
    (pickled / "adapter_model.safetensors").unlink()
    torch.save(state, pickled / "adapter_model.bin")
    with pytest.raises(ConfigError, match="pickle"):
        load_model(pickled)
    model, _ = load_model(pickled, allow_pickle=True)
    torch.testing.assert_close(logits(model, tok), expected, rtol=0, atol=1e-6)


def test_adapters_of_an_in_memory_base_need_base_model(tmp_path):
    tok = word_tokenizer()
    base = tiny_llama(len(tok))  # never saved: no name_or_path for peft to record
    base_dir = save_model(base, tok, tmp_path / "base")
    model, _ = unlearn(base, tok, FORGET, method="ga", epochs=1, lr=1e-2, **LORA, **FAST)
    model.eval()
    expected = logits(model, tok)
    with pytest.warns(UserWarning, match="base_model="):
        out = save_model(model, tok, tmp_path / "adapter", merge_lora=False)
    with pytest.raises(ConfigError, match="does not name its base model"):
        load_model(out)
    loaded, _ = load_model(out, base_model=base_dir)
    torch.testing.assert_close(logits(loaded, tok), expected, rtol=0, atol=1e-6)


def test_adapter_on_a_merged_adapter_loads_through_the_chain(adapter, tmp_path):
    _, _, out, tok, *_ = adapter
    first, _ = load_model(out, merge_lora=True)
    second, _ = unlearn(first, tok, FORGET, method="ga", epochs=1, lr=1e-2, **LORA, **FAST)
    second.eval()
    expected = logits(second, tok)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out2 = save_model(second, tok, tmp_path / "adapter2", merge_lora=False)
    assert not [w for w in caught if "base_model=" in str(w.message)]  # the base is named
    config = json.loads((out2 / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(out.resolve())
    model, _ = load_model(out2)
    torch.testing.assert_close(logits(model, tok), expected, rtol=1e-5, atol=1e-5)


def test_adapter_loop_is_refused(adapter, tmp_path):
    _, _, out, *_ = adapter
    looped = tmp_path / "looped"
    shutil.copytree(out, looped)
    config = json.loads((looped / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(looped)
    (looped / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="loop"):
        load_model(looped)


def test_cli_save_adapter_then_verify_and_load(adapter, tmp_path):
    from unilogit.cli import main

    _, base_dir, *_ = adapter
    forget, retain = tmp_path / "forget.jsonl", tmp_path / "retain.jsonl"
    for path, rows in [(forget, FORGET), (retain, RETAIN)]:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    args = ["unlearn", "--model", str(base_dir), "--forget", str(forget), "--retain", str(retain)]
    args += ["--method", "graddiff", "--epochs", "1", "--lr", "1e-2", "--batch-size", "2"]
    args += ["--lora", "--save-adapter", "--output", str(out), "--no-progress"]
    assert main(args) == 0
    assert is_adapter_dir(out) and not (out / "model.safetensors").exists()
    assert main(["verify", str(out)]) == 0  # the audit record's hash is the PeftModel's
    merged, tok = load_model(out, merge_lora=True)
    peft_model, _ = load_model(out)
    torch.testing.assert_close(logits(merged, tok), logits(peft_model, tok), rtol=1e-5, atol=1e-5)
