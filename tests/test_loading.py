"""Loading (issue 16): the dtype and device go to ``from_pretrained`` (weights are created in
place, not copied afterwards), org-less Hub ids (``gpt2``) load, and a local path that does not
exist is still told apart from a Hub id."""

from __future__ import annotations

import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM

from tiny import tiny_llama, word_tokenizer
from unilogit.errors import ConfigError
from unilogit.models import load_model, save_model, weights_sha256


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory):
    tok = word_tokenizer()
    model = tiny_llama(len(tok))
    path = tmp_path_factory.mktemp("models") / "tiny"
    save_model(model, tok, path)
    return path, model


def hub_cache(root, repo_dir: str, source) -> None:
    """A Hub cache laid out as huggingface_hub writes it (offline loads read it)."""
    repo = root / repo_dir
    shutil.copytree(source, repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)


def test_an_org_less_hub_id_loads(saved_tiny, tmp_path):
    """Before: 'tinyllm' was refused ("neither an existing path nor a Hub id like 'org/name'")."""
    path, model = saved_tiny
    hub_cache(tmp_path / "hub", "models--tinyllm", path)
    loaded, _ = load_model("tinyllm", cache_dir=tmp_path / "hub")
    assert weights_sha256(loaded) == weights_sha256(model)
    with pytest.raises(ConfigError, match=r"Hub.*no local path 'gpt-none' exists"):
        load_model("gpt-none", cache_dir=tmp_path / "hub")


@pytest.mark.parametrize("spec", ["./missing", "runs/../missing", "/no/such/dir", "~/no/such"])
def test_a_missing_local_path_is_not_taken_for_a_hub_id(spec):
    with pytest.raises(ConfigError, match="model path does not exist"):
        load_model(spec)


def test_dtype_and_device_are_passed_to_from_pretrained(saved_tiny, monkeypatch):
    """Before: from_pretrained got neither (the model was loaded, then .to(dtype).to(device))."""
    path, model = saved_tiny
    seen = {}
    original = AutoModelForCausalLM.from_pretrained

    def spy(*args, **kwargs):
        seen.update(kwargs)
        loaded = original(*args, **kwargs)
        seen["loaded_dtype"] = next(loaded.parameters()).dtype
        return loaded

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", spy)
    loaded, _ = load_model(path, dtype="bfloat16", device="cpu")
    given = seen.get("dtype", seen.get("torch_dtype"))  # torch_dtype before transformers 4.56
    assert given is torch.bfloat16 and seen["device_map"] == "cpu"
    assert seen["loaded_dtype"] is torch.bfloat16  # created so, not cast afterwards
    assert next(loaded.parameters()).dtype is torch.bfloat16
    expected = model.lm_head.weight.to(torch.bfloat16)
    assert torch.equal(loaded.lm_head.weight, expected)


def test_gguf_special_tokens_are_the_files(shared_dir):
    """BOS / EOS / UNK of a GGUF model are the ids its file names. Before: transformers 4.50
    (the declared minimum) converted stories260K's EOS as ``<s>`` (the file: ``</s>``, id 2),
    so every answer was trained and scored ending with BOS."""
    pytest.importorskip("gguf")
    from gguf import GGUFReader

    path = shared_dir / "models" / "stories260K.gguf"
    if not path.is_file():
        pytest.skip("stories260K.gguf is missing")
    fields = GGUFReader(path).fields
    _, tok = load_model(str(path))
    for name, key in (("bos", "bos"), ("eos", "eos"), ("unk", "unknown")):
        field = fields[f"tokenizer.ggml.{key}_token_id"]
        assert getattr(tok, f"{name}_token_id") == int(field.parts[field.data[0]][0]), name
    assert tok.eos_token == "</s>" and tok.bos_token == "<s>"


def _sentencepiece_like(legacy: bool):
    """A tiny SentencePiece-style fast tokenizer: legacy (transformers 4.x's GGUF conversion:
    prepend ``▁`` always) or modern (transformers 5: Metaspace, prepend only at the start)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "\u2581": 1, "\u2581The": 2, "\u2581c": 3, "at": 4, "\u2581Paris": 5}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="<unk>", continuing_subword_prefix=""))
    if legacy:
        tok.normalizer = normalizers.Sequence(
            [normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")]
        )
    else:
        tok.pre_tokenizer = pre_tokenizers.Metaspace("\u2581", prepend_scheme="first", split=False)
    tok.decoder = decoders.Metaspace("\u2581", prepend_scheme="first", split=False)
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")


def test_legacy_sentencepiece_is_made_modern():
    """transformers 4.x's GGUF tokenizer prepends ▁ to every separately encoded text, so an
    answer after its prompt got an extra token; made modern, it encodes as transformers 5's."""
    from unilogit.models import modern_sentencepiece

    legacy, modern = _sentencepiece_like(True), _sentencepiece_like(False)
    assert legacy.tokenize(" The") == ["\u2581", "\u2581The"]  # the bug
    assert modern_sentencepiece(legacy) is True
    for text in (" The", "The cat", " Paris", "The Paris"):
        assert legacy.tokenize(text) == modern.tokenize(text), text
    assert legacy.tokenize(" The") == ["\u2581The"]
    assert modern_sentencepiece(legacy) is False and modern_sentencepiece(modern) is False
    assert modern_sentencepiece(word_tokenizer()) is False  # not SentencePiece-like: untouched
