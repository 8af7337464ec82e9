"""Load causal LMs (local directory, Hub id, GGUF file) safely, and save them atomically.

Safety defaults: weights only from safetensors or GGUF (pickle ``.bin`` refused unless
``allow_pickle``), ``trust_remote_code`` off unless asked, outputs never overwrite an
existing directory unless ``overwrite``, and every save goes to a temporary directory that is
renamed into place only when complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import ConfigError

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
_DTYPES = {
    "auto": "auto",
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def resolve_dtype(name: str | torch.dtype | None) -> Any:
    if name is None or isinstance(name, torch.dtype):
        return name
    try:
        return _DTYPES[name]
    except KeyError:
        raise ConfigError(f"unknown dtype {name!r}; choose one of {', '.join(_DTYPES)}") from None


def resolve_device(name: str | None) -> torch.device:
    """``None``/"auto" → CUDA if available, else MPS, else CPU."""
    if name in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def _is_local_spec(spec: str) -> bool:
    return (
        spec.startswith((".", "/", "~"))
        or spec.endswith(".gguf")
        or os.sep in spec.rstrip(os.sep)
        and not _HUB_ID.match(spec)
        or Path(spec).exists()
    )


def _check_weights_format(directory: Path, allow_pickle: bool) -> None:
    files = {p.name for p in directory.iterdir()}
    safe = any(n.endswith(".safetensors") or n.endswith(".safetensors.index.json") for n in files)
    pickled = [n for n in files if n.endswith((".bin", ".pt", ".pth", ".ckpt"))]
    if not safe and pickled and not allow_pickle:
        raise ConfigError(
            f"{directory}: only pickle weights ({', '.join(sorted(pickled))}) were found. Pickle "
            "files can run arbitrary code when loaded; convert them to safetensors, or pass "
            "--allow-pickle if you trust their origin"
        )
    if not safe and not pickled:
        raise ConfigError(f"{directory}: no model weights (*.safetensors) found")


def load_model(
    spec: str | os.PathLike[str],
    *,
    dtype: str | torch.dtype | None = "float32",
    device: str | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
) -> tuple[nn.Module, Any]:
    """Load ``(model, tokenizer)`` from a local directory, a Hub id or a ``.gguf`` file.

    GGUF weights are dequantised and moved into a plain model of the same config, so the
    result can be trained and saved like any other. The tokenizer gets a pad token (EOS) if
    it has none. ``cache_dir``: the Hub cache to use (default: Hugging Face's).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = str(spec)
    torch_dtype = resolve_dtype(dtype)
    common: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if _is_local_spec(spec):
        path = Path(spec).expanduser()
        if not path.exists():
            raise ConfigError(f"model path does not exist: {spec}")
        if path.is_file():
            if path.suffix != ".gguf":
                raise ConfigError(
                    f"{spec}: a model file must be .gguf; otherwise give the model's directory"
                )
            tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name, **common)
            gguf_model = AutoModelForCausalLM.from_pretrained(
                path.parent, gguf_file=path.name, **common
            )
            model = _plain_copy(gguf_model)
        else:
            _check_weights_format(path, allow_pickle)
            tokenizer = AutoTokenizer.from_pretrained(path, **common)
            model = AutoModelForCausalLM.from_pretrained(
                path, use_safetensors=not allow_pickle or None, **common
            )
    else:
        if not _HUB_ID.match(spec):
            raise ConfigError(
                f"model {spec!r} is neither an existing path nor a Hub id like 'org/name'"
            )
        common["revision"] = revision
        common["cache_dir"] = cache_dir
        try:
            tokenizer = AutoTokenizer.from_pretrained(spec, **common)
            model = AutoModelForCausalLM.from_pretrained(
                spec, use_safetensors=not allow_pickle or None, **common
            )
        except OSError as e:
            offline = os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True")
            hint = " (HF_HUB_OFFLINE is set: only cached models load)" if offline else ""
            raise ConfigError(
                f"could not load {spec!r} from the Hugging Face Hub{hint}: {str(e).splitlines()[0]}"
            ) from None
    if torch_dtype not in (None, "auto"):
        model = model.to(torch_dtype)
    model = model.to(resolve_device(device))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return model, tokenizer


def _plain_copy(model: nn.Module) -> nn.Module:
    """A regular (saveable) model with the weights of a GGUF-loaded one."""
    from transformers import AutoModelForCausalLM

    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(model.state_dict())
    plain.generation_config = model.generation_config
    return plain


def weights_sha256(model: nn.Module) -> str:
    """SHA-256 over every parameter and buffer (name, dtype, shape, bytes), in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def prepare_output_dir(output_dir: str | os.PathLike[str], *, overwrite: bool) -> Path:
    """Refuse to reuse an existing, non-empty output directory unless ``overwrite``."""
    out = Path(output_dir)
    if out.exists() and (out.is_file() or any(out.iterdir())) and not overwrite:
        raise ConfigError(
            f"output directory {out} already exists and is not empty; choose another path or "
            "pass --overwrite"
        )
    return out


def save_model(
    model: nn.Module,
    tokenizer: Any,
    output_dir: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    merge_lora: bool = True,
    json_files: dict[str, Any] | None = None,
    protect: list[str | os.PathLike[str]] | None = None,
) -> Path:
    """Save model (safetensors), tokenizer and ``json_files`` atomically into ``output_dir``.

    A peft model is merged into its base weights when ``merge_lora`` (else adapters only).
    ``protect``: paths (e.g. the input model) that the output must not be or lie inside.
    """
    out = prepare_output_dir(output_dir, overwrite=overwrite).resolve()
    for p in protect or []:
        p = Path(p).resolve()
        if out == p or p in out.parents or out in p.parents:
            raise ConfigError(f"refusing to write {out}: it overlaps the input model at {p}")
    if merge_lora and hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        for name, payload in (json_files or {}).items():
            if Path(name).name != name:
                raise ConfigError(f"file name {name!r} would escape the output directory")
            (tmp / name).write_text(json.dumps(payload, indent=2, default=str) + "\n")
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out
