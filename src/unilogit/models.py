"""Load causal LMs (local directory, Hub id, GGUF file) safely, and save them atomically.

Safety defaults: weights only from safetensors or GGUF (pickle ``.bin`` refused unless
``allow_pickle``), ``trust_remote_code`` off unless asked, outputs never overwrite an
existing directory unless ``overwrite``, and every save goes to a temporary directory that is
renamed into place only when complete.

LoRA adapter directories (what ``unilogit unlearn --lora --save-adapter`` or
``save_model(peft_model, ..., merge_lora=False)`` write: ``adapter_config.json`` +
``adapter_model.safetensors``) load like any model directory: the base model named in
``adapter_config.json`` (``base_model_name_or_path``) is loaded with the same rules, then the
adapters on top (``merge_lora=True`` folds them into the weights).
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
from .extras import require

#: ``org/name`` or an org-less id (``gpt2``); never ``..``-relative or absolute.
_HUB_ID = re.compile(r"^(?:[A-Za-z0-9][\w.\-]*/)?[A-Za-z0-9][\w.\-]*$")
_DTYPES = {
    "auto": "auto",
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}
ADAPTER_CONFIG = "adapter_config.json"
_MAX_ADAPTER_CHAIN = 8  # adapters whose base is itself an adapter directory, and so on


def resolve_dtype(name: str | torch.dtype | None) -> Any:
    if name is None or isinstance(name, torch.dtype):
        return name
    try:
        return _DTYPES[name]
    except KeyError:
        raise ConfigError(f"unknown dtype {name!r}; choose one of {', '.join(_DTYPES)}") from None


def resolve_device(name: str | None) -> torch.device:
    """``None``/"auto" → CUDA if available (``cuda:$LOCAL_RANK`` under ``accelerate launch`` /
    torchrun, so each process loads onto its own GPU), else MPS, else CPU."""
    if name in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def load_placement(dtype: Any, device: torch.device) -> dict[str, Any]:
    """``from_pretrained`` keywords that load the weights in ``dtype`` onto ``device``
    (``dtype``; ``torch_dtype`` before transformers 4.56) and ``device_map``."""
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    key = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
    out: dict[str, Any] = {"device_map": str(device)}
    if dtype is not None:
        out[key] = dtype
    return out


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
    merge_lora: bool = False,
    base_model: str | os.PathLike[str] | None = None,
) -> tuple[nn.Module, Any]:
    """Load ``(model, tokenizer)`` from a local directory, a Hub id or a ``.gguf`` file.

    GGUF weights are dequantised and moved into a plain model of the same config, so the
    result can be trained and saved like any other. The tokenizer gets a pad token (EOS) if
    it has none. ``cache_dir``: the Hub cache to use (default: Hugging Face's).

    A LoRA adapter directory (``adapter_config.json`` + ``adapter_model.safetensors``) loads its
    base model (``base_model_name_or_path`` of the adapter config, or ``base_model`` to
    override it, e.g. when the base has moved) with the same safety options, then the adapters
    with ``peft.PeftModel.from_pretrained``: the result is that ``PeftModel`` (frozen, the same
    weights, names and hash as the model that was saved), or with ``merge_lora`` a plain model
    with the adapters merged into its weights. The tokenizer comes from the adapter directory
    when it holds one, else from the base. The model's ``name_or_path`` is set to the absolute
    path it was loaded from, so adapters trained on it later record a base that loads again.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = str(spec)
    torch_dtype = resolve_dtype(dtype)
    target = resolve_device(device)
    common: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    # Weights are created in their dtype on their device (no float32 copy on the host first).
    placement = load_placement(torch_dtype, target)
    if _is_local_spec(spec):
        path = Path(spec).expanduser()
        if not path.exists():
            raise ConfigError(f"model path does not exist: {spec}")
        if path.is_dir() and (path / ADAPTER_CONFIG).is_file():
            model, tokenizer = _load_adapter_dir(
                path,
                chain=(),
                merge_lora=merge_lora,
                base_model=base_model,
                dtype=dtype,
                revision=revision,
                trust_remote_code=trust_remote_code,
                allow_pickle=allow_pickle,
                cache_dir=cache_dir,
            )
        elif path.is_file():
            if path.suffix != ".gguf":
                raise ConfigError(
                    f"{spec}: a model file must be .gguf; otherwise give the model's directory"
                )
            require("gguf", "loading a .gguf file")
            tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name, **common)
            _gguf_special_tokens(tokenizer, path)
            modern_sentencepiece(tokenizer)
            gguf_model = AutoModelForCausalLM.from_pretrained(
                path.parent, gguf_file=path.name, **common
            )
            model = _plain_copy(gguf_model)
            _set_name_or_path(model, str(path.resolve()))
        else:
            _check_weights_format(path, allow_pickle)
            tokenizer = AutoTokenizer.from_pretrained(path, **common)
            model = AutoModelForCausalLM.from_pretrained(
                path, use_safetensors=not allow_pickle or None, **common, **placement
            )
            _set_name_or_path(model, str(path.resolve()))
    else:
        if not _HUB_ID.match(spec):
            raise ConfigError(
                f"model {spec!r} is neither an existing path nor a Hub id like 'org/name' or 'gpt2'"
            )
        common["revision"] = revision
        common["cache_dir"] = cache_dir
        try:
            tokenizer = AutoTokenizer.from_pretrained(spec, **common)
            model = AutoModelForCausalLM.from_pretrained(
                spec, use_safetensors=not allow_pickle or None, **common, **placement
            )
        except OSError as e:
            offline = os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True")
            hint = " (HF_HUB_OFFLINE is set: only cached models load)" if offline else ""
            raise ConfigError(
                f"could not load {spec!r} from the Hugging Face Hub{hint} (and no local path "
                f"{spec!r} exists): {str(e).splitlines()[0]}"
            ) from None
    if torch_dtype not in (None, "auto"):  # a no-op unless loaded another way (GGUF, adapters)
        model = model.to(torch_dtype)
    model = model.to(target)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return model, tokenizer


def _set_name_or_path(model: nn.Module, name: str) -> None:
    """Record where ``model`` came from where peft reads it (``base_model_name_or_path``)."""
    model.name_or_path = name
    if getattr(model, "config", None) is not None:
        model.config._name_or_path = name


def is_adapter_dir(path: str | os.PathLike[str]) -> bool:
    """True for a directory holding a peft adapter (``adapter_config.json``)."""
    p = Path(path).expanduser()
    return p.is_dir() and (p / ADAPTER_CONFIG).is_file()


def _read_adapter_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads((path / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path / ADAPTER_CONFIG}: cannot read the adapter config: {e}") from None
    if not isinstance(config, dict) or not config.get("peft_type"):
        raise ConfigError(f"{path / ADAPTER_CONFIG}: not a peft adapter config (no peft_type)")
    return config


def _check_adapter_weights(path: Path, allow_pickle: bool) -> None:
    if (path / "adapter_model.safetensors").is_file():
        return
    if (path / "adapter_model.bin").is_file():
        if allow_pickle:
            return
        raise ConfigError(
            f"{path}: the adapter weights are a pickle file (adapter_model.bin), which can run "
            "arbitrary code when loaded; convert it to safetensors, or pass --allow-pickle if "
            "you trust its origin"
        )
    raise ConfigError(f"{path}: no adapter weights (adapter_model.safetensors) found")


def _resolve_base(base: str, adapter_dir: Path) -> str:
    """The base model spec of an adapter: a Hub id as is; a local path as given, or relative
    to the adapter directory when it does not exist relative to the working directory."""
    as_given = Path(base).expanduser()
    if as_given.exists():
        return str(as_given)
    if not as_given.is_absolute() and (adapter_dir / as_given).exists():
        return str(adapter_dir / as_given)
    if _is_local_spec(base):
        raise ConfigError(
            f"{adapter_dir / ADAPTER_CONFIG}: its base model {base!r} does not exist; pass the "
            "base model's current location (load_model(..., base_model=PATH))"
        )
    return base


def _load_adapter_dir(
    path: Path,
    *,
    chain: tuple[Path, ...],
    merge_lora: bool,
    base_model: str | os.PathLike[str] | None,
    dtype: str | torch.dtype | None,
    revision: str | None,
    trust_remote_code: bool,
    allow_pickle: bool,
    cache_dir: str | os.PathLike[str] | None,
) -> tuple[nn.Module, Any]:
    """Base model (itself possibly an adapter directory, merged) + the adapters of ``path``."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    resolved = path.resolve()
    if resolved in chain or len(chain) >= _MAX_ADAPTER_CHAIN:
        raise ConfigError(
            f"{path}: adapter base models form a loop or a chain deeper than "
            f"{_MAX_ADAPTER_CHAIN}: {' -> '.join(str(p) for p in (*chain, resolved))}"
        )
    config = _read_adapter_config(path)
    _check_adapter_weights(path, allow_pickle)
    base = str(base_model) if base_model is not None else config.get("base_model_name_or_path")
    if not base:
        raise ConfigError(
            f"{path / ADAPTER_CONFIG} does not name its base model (base_model_name_or_path); "
            "pass it: load_model(..., base_model=PATH_OR_HUB_ID)"
        )
    base_spec = _resolve_base(base, path)
    options: dict[str, Any] = {
        "dtype": dtype,
        "revision": config.get("revision") or revision,
        "trust_remote_code": trust_remote_code,
        "allow_pickle": allow_pickle,
        "cache_dir": cache_dir,
    }
    if is_adapter_dir(base_spec):
        net, tokenizer = _load_adapter_dir(
            Path(base_spec).expanduser(),
            chain=(*chain, resolved),
            merge_lora=True,
            base_model=None,
            **options,
        )
    else:
        net, tokenizer = load_model(base_spec, device="cpu", **options)
    if (path / "tokenizer_config.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    model = PeftModel.from_pretrained(net, path, is_trainable=False)
    if merge_lora:
        model = merged(model)
        _set_name_or_path(model, str(resolved))
    return model, tokenizer


def _gguf_special_tokens(tokenizer: Any, path: Path) -> None:
    """Set the tokenizer's BOS / EOS / UNK / PAD tokens to the ids the GGUF file names
    (``tokenizer.ggml.bos_token_id`` ...). transformers 4.50 converted the EOS of stories260K as
    ``<s>`` (the file: ``</s>``) and of SmolLM2 as ``<|im_start|>`` (the file: ``<|im_end|>``);
    transformers 5 reads them right."""
    from gguf import GGUFReader

    fields = GGUFReader(path).fields
    keys = {"bos": "bos", "eos": "eos", "unk": "unknown", "pad": "padding"}
    for name, key in keys.items():
        field = fields.get(f"tokenizer.ggml.{key}_token_id")
        if field is None or not field.data:
            continue
        token = tokenizer.convert_ids_to_tokens(int(field.parts[field.data[0]][0]))
        if isinstance(token, str) and getattr(tokenizer, f"{name}_token") != token:
            setattr(tokenizer, f"{name}_token", token)


def modern_sentencepiece(tokenizer: Any) -> bool:
    """Make a "legacy" SentencePiece fast tokenizer behave as transformers 5 builds it; returns
    whether it changed. transformers 4.x converts a GGUF SentencePiece vocabulary with the
    normalizer ``Prepend("▁") + Replace(" ", "▁")``, which prepends ``▁`` to EVERY separately
    encoded text, so an answer encoded after its prompt gets an extra token (``" The"`` ->
    ``▁``, ``▁The``). transformers 5 (and sentencepiece itself) use
    ``Metaspace("▁", prepend_scheme="first")``, which does not prepend when the text already
    starts with a space: ``" The"`` -> ``▁The``. Texts without a leading space encode the same."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    normalizer = getattr(backend, "normalizer", None)
    if normalizer is None or backend.pre_tokenizer is not None:
        return False
    if normalizer.normalize_str(" a") != "\u2581\u2581a" or normalizer.normalize_str("a b") != (
        "\u2581a\u2581b"
    ):
        return False  # not the legacy prepend-always normalizer
    from tokenizers import pre_tokenizers

    backend.normalizer = None
    backend.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement="\u2581", prepend_scheme="first", split=False
    )
    return True


def merged(model: nn.Module) -> nn.Module:
    """``model.merge_and_unload()``: the base model with the LoRA weights folded in, without the
    ``peft_config`` attribute peft < 0.13 leaves on it (it would pass for a peft model)."""
    plain = model.merge_and_unload()
    if "peft_config" in vars(plain):
        del plain.peft_config
    return plain


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


#: Files that mark a directory as a previous unilogit output (what --overwrite may replace).
OUTPUT_MARKERS = ("unlearn_record.json", "finetune_config.json")


def is_unilogit_output(path: str | os.PathLike[str]) -> bool:
    """True for a directory holding an audit record or a fine-tune config written by unilogit."""
    p = Path(path)
    return p.is_dir() and any((p / name).is_file() for name in OUTPUT_MARKERS)


def _refuse_unsafe_target(target: Path, what: str, inputs: list[Path]) -> None:
    """``target`` (resolved) must not be the working directory, a parent of it, the file-system
    root, an input, inside an input's directory, or hold an input."""
    cwd = Path.cwd().resolve()
    if target == cwd or target in cwd.parents:
        raise ConfigError(
            f"refusing to write {what} {target}: it is the working directory or holds it"
        )
    for p in inputs:
        if target == p or p in target.parents or target in p.parents:
            raise ConfigError(f"refusing to write {what} {target}: it overlaps the run's input {p}")


def check_output_dir(
    output_dir: str | os.PathLike[str],
    *,
    overwrite: bool,
    inputs: list[str | os.PathLike[str]] | None = None,
    require_marker: bool = True,
) -> Path:
    """Check, before any work, that a model may be saved to ``output_dir``; returns it resolved.

    Refused (ConfigError): the working directory or a parent of it; a path that is, lies inside
    or contains one of ``inputs`` (input model, data files); an existing file; an existing
    non-empty directory unless ``overwrite``, and with ``overwrite`` one that is not a previous
    unilogit output (:func:`is_unilogit_output`) when ``require_marker``.
    """
    out = Path(output_dir).expanduser().resolve()
    _refuse_unsafe_target(out, "the output", [Path(p).expanduser().resolve() for p in inputs or []])
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output {out} exists and is not a directory; choose another path")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ConfigError(
                f"output directory {out} already exists and is not empty; choose another path "
                "or pass --overwrite"
            )
        if require_marker and not is_unilogit_output(out):
            raise ConfigError(
                f"--overwrite replaces only a previous unilogit output (a directory with "
                f"{' or '.join(OUTPUT_MARKERS)}); {out} is not one, so it is left alone"
            )
    return out


def check_output_file(
    path: str | os.PathLike[str],
    *,
    overwrite: bool,
    protect: list[str | os.PathLike[str]] | None = None,
) -> Path:
    """Check, before any work, that a results file may be written to ``path``; returns it.

    Refused (ConfigError): a directory; the working directory or a parent of it; a path that
    is, lies inside or contains one of ``protect`` (e.g. the model evaluated, data files); an
    existing file unless ``overwrite``.
    """
    out = Path(path).expanduser().resolve()
    _refuse_unsafe_target(
        out, "results to", [Path(p).expanduser().resolve() for p in protect or []]
    )
    if out.is_dir():
        raise ConfigError(f"{out} is a directory; give a file name for the results")
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} exists; pass --overwrite to replace it")
    return out


def prepare_output_dir(output_dir: str | os.PathLike[str], *, overwrite: bool) -> Path:
    """Refuse to reuse an existing, non-empty output directory unless ``overwrite``."""
    check_output_dir(output_dir, overwrite=overwrite, require_marker=False)
    return Path(output_dir)


def write_model_files(
    model: nn.Module,
    tokenizer: Any,
    directory: str | os.PathLike[str],
    *,
    merge_lora: bool = True,
    json_files: dict[str, Any] | None = None,
) -> Path:
    """Write model (safetensors), tokenizer and ``json_files`` into the existing ``directory``.

    A peft model is merged into its base weights when ``merge_lora``; else only its adapters
    are written (``adapter_config.json`` naming the base model + ``adapter_model.safetensors``).
    """
    from .files import atomic_write_json, fault_point

    directory = Path(directory)
    for name in json_files or {}:
        if Path(name).name != name:
            raise ConfigError(f"file name {name!r} would escape the output directory")
    if merge_lora and hasattr(model, "merge_and_unload"):
        model = merged(model)
    elif hasattr(model, "peft_config"):
        _warn_if_no_base(model)
    _save_weights(model, directory)
    fault_point("weights-saved")
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
    for name, payload in (json_files or {}).items():
        atomic_write_json(directory / name, payload)
    return directory


def _save_weights(model: nn.Module, directory: Path) -> None:
    """``save_pretrained`` (safetensors); an I/O failure inside safetensors' writer (its own
    exception type) becomes the OSError it is, naming the file."""
    from safetensors import SafetensorError

    try:
        model.save_pretrained(directory, safe_serialization=True)
    except SafetensorError as e:
        found = re.search(r"os error (\d+)", str(e))
        if found is None:
            raise
        code = int(found.group(1))
        raise OSError(code, os.strerror(code), str(directory / "model.safetensors")) from e


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

    Everything is written to a temporary sibling directory, which then replaces ``output_dir``
    in one step (:func:`unilogit.files.publish_dir`): a failure or a kill at any point leaves
    the previous output complete and no partial new one.
    A peft model is merged into its base weights when ``merge_lora``; else only its adapters
    are written (``adapter_config.json`` naming the base model + ``adapter_model.safetensors``),
    which :func:`load_model` reads back on top of that base.
    ``protect``: paths (e.g. the input model) that the output must not be or lie inside.
    """
    from .files import publish_dir

    out = prepare_output_dir(output_dir, overwrite=overwrite).resolve()
    for p in protect or []:
        p = Path(p).resolve()
        if out == p or p in out.parents or out in p.parents:
            raise ConfigError(f"refusing to write {out}: it overlaps the input model at {p}")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        write_model_files(model, tokenizer, tmp, merge_lora=merge_lora, json_files=json_files)
        publish_dir(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out


def _warn_if_no_base(model: nn.Module) -> None:
    import warnings

    configs = getattr(model, "peft_config", {}) or {}
    if any(not getattr(c, "base_model_name_or_path", None) for c in configs.values()):
        warnings.warn(
            "saving LoRA adapters whose base model has no name or path (a model built in memory?):"
            " load them with load_model(DIR, base_model=...)",
            UserWarning,
            stacklevel=3,
        )
