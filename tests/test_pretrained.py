"""The SmolLM2 conversion cache (:mod:`unilogit.pretrained`) without the real GGUF file: the
cache key holds the transformers release series, so a directory written by one series is not
handed to another (a transformers-5 conversion failed to load in 4.x)."""

from __future__ import annotations

import pytest
import transformers

from unilogit import models, pretrained


def test_cache_name_changes_with_the_transformers_series(monkeypatch):
    sha = "ab" * 32
    assert pretrained.cache_name(sha, "5.24.0") == f"smollm2-135m-instruct-{sha[:12]}-tf5.24"
    assert pretrained.cache_name(sha, "5.24.1") == pretrained.cache_name(sha, "5.24.0.dev0")
    assert pretrained.cache_name(sha, "4.50.3") != pretrained.cache_name(sha, "5.24.0")
    monkeypatch.setattr(transformers, "__version__", "4.57.1")
    assert pretrained.cache_name(sha) == f"smollm2-135m-instruct-{sha[:12]}-tf4.57"


class Converting(Exception):
    pass


def test_a_conversion_of_another_series_is_not_reused(monkeypatch, tmp_path):
    """Before: the directory was keyed by the GGUF hash alone, so transformers 4.57 got the
    directory transformers 5 wrote."""
    gguf = tmp_path / "fake.gguf"
    gguf.write_bytes(b"not really a gguf")
    monkeypatch.setattr(pretrained, "smollm2_gguf", lambda: gguf)

    def convert(*args, **kwargs):
        raise Converting

    monkeypatch.setattr(models, "load_model", convert)
    monkeypatch.setattr(transformers, "__version__", "5.24.0")
    sha = pretrained._sha256(gguf)
    written = tmp_path / "cache" / "models" / pretrained.cache_name(sha)
    written.mkdir(parents=True)
    (written / pretrained._MANIFEST).write_text("{}")
    assert pretrained.smollm2_dir(tmp_path / "cache", progress=False) == written  # reused
    monkeypatch.setattr(transformers, "__version__", "4.57.1")
    with pytest.raises(Converting):  # another series converts again
        pretrained.smollm2_dir(tmp_path / "cache", progress=False)
