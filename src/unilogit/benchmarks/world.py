"""The built-in ``world`` benchmark: a TOFU-like world, its tokenizer and its models, built here.

::

    from unilogit.benchmarks import WorldConfig, build_world

    world = build_world(WorldConfig.preset("quick"), splits=("forget10",))
    forget = world.load_split("forget10")          # list[unilogit.data.Example]
    model = world.load_model("target")             # trained on full + general
    gold = world.load_model("forget10")            # the retain model: trained without forget10

The data comes from :func:`unilogit.benchmarks.world_data.generate_world` (pure). Building
trains a byte-level BPE tokenizer on all of the world's text and two small Llama models from
scratch with :func:`unilogit.trainer.finetune`: the TARGET model on ``full`` + ``general`` and,
per requested split, the RETAIN model on ``retainNN`` + ``general``. Everything is cached under
``$UNILOGIT_CACHE/world/<hash>`` (default ``~/.cache/unilogit/world/<hash>``), keyed by a hash of
the configuration; each artefact is written to a temporary directory and moved into place with
``os.replace``, so an interrupted build leaves nothing half-written behind.

Layout of a built world::

    <root>/world.json                  config, hash, file list, format version
    <root>/full.jsonl, forget01/05/10.jsonl, forgetNN_perturbed.jsonl, retain90/95/99.jsonl,
           retain_perturbed.jsonl, holdout01/05/10(_perturbed).jsonl,
           neighbour(_perturbed).jsonl (= forget10's), neighbour01/05/10(_perturbed).jsonl,
           general(_perturbed).jsonl
    <root>/tokenizer/                  tokenizer.json (+ config)
    <root>/target/                     model.safetensors, config.json, tokenizer, train.json
    <root>/retain-forget10/            same, trained without forget10
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unilogit.errors import ConfigError
from unilogit.files import atomic_write_json, atomic_write_text, read_jsonl

from .build_jobs import parallel_plan, run_jobs
from .world_data import FORGET_PERCENTS, WorldConfig, generate_world

__all__ = ["FORMAT_VERSION", "World", "WorldConfig", "build_world", "world_root"]

FORMAT_VERSION = 2
SPLITS = tuple(f"forget{p}" for p in FORGET_PERCENTS)
SPECIAL_TOKENS = {"pad": "<pad>", "bos": "<bos>", "eos": "<eos>"}
_ALIASES = {"forget": "forget10", "retain": "retain90", "holdout": "holdout10"}


def _log(progress: bool, msg: str) -> None:
    if progress:
        print(f"[unilogit world] {msg}", file=sys.stderr, flush=True)


def config_hash(config: WorldConfig) -> str:
    """16 hex digits identifying everything a build depends on (the preset's ``name`` is only a
    label and does not count)."""
    fields = {k: v for k, v in config.to_dict().items() if k != "name"}
    if not fields["n_background"]:
        del fields["n_background"]  # added later: worlds without background keep their hash
    blob = json.dumps({"format": FORMAT_VERSION, **fields}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    """``$UNILOGIT_CACHE``, else ``~/.cache/unilogit``."""
    base = os.environ.get("UNILOGIT_CACHE")
    if base:
        return Path(base).expanduser()
    try:
        return Path.home() / ".cache" / "unilogit"
    except RuntimeError as e:  # no HOME and no password entry
        raise ConfigError(
            f"no cache folder: the home directory is unknown ({e}); set UNILOGIT_CACHE to a "
            "writable folder"
        ) from None


def check_cache_dir(base: Path) -> Path:
    """``base`` created if needed; a :class:`ConfigError` naming the path when it is a file or
    cannot be created or written (set ``UNILOGIT_CACHE`` / ``--cache-dir`` elsewhere)."""
    hint = "set UNILOGIT_CACHE (or --cache-dir) to a writable folder"
    if base.exists() and not base.is_dir():
        raise ConfigError(f"cache folder {base} is a file, not a folder; {hint}")
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create cache folder {base}: {e.strerror or e}; {hint}") from None
    if not os.access(base, os.W_OK | os.X_OK):
        raise ConfigError(f"cache folder {base} is not writable; {hint}")
    return base


def world_root(config: WorldConfig, cache_dir: str | Path | None = None) -> Path:
    """Where ``config``'s world lives: ``<cache_dir>/world/<hash>``."""
    base = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return base / "world" / config_hash(config)


def split_percent(split: str) -> str:
    split = _ALIASES.get(split, split)
    if split not in SPLITS:
        raise ConfigError(f"unknown world split {split!r}; choose one of {', '.join(SPLITS)}")
    return split[len("forget") :]


# --------------------------------------------------------------------------------- the result


@dataclass
class World:
    """A built world: paths to its files and models, and loaders (the benchmark object over
    one of its splits is :class:`unilogit.benchmarks.world_split.WorldBenchmark`)."""

    root: Path
    config: WorldConfig
    data_files: dict[str, Path]
    splits: tuple[str, ...] = field(default_factory=tuple)

    @property
    def tokenizer_dir(self) -> Path:
        return self.root / "tokenizer"

    @property
    def target_dir(self) -> Path:
        return self.root / "target"

    def retain_dir(self, split: str = "forget10") -> Path:
        """The retain (gold-standard) model trained without ``split`` (e.g. ``"forget10"``)."""
        return self.root / f"retain-forget{split_percent(split)}"

    def path(self, name: str) -> Path:
        name = _ALIASES.get(name, name)
        if name not in self.data_files:
            raise ConfigError(
                f"unknown world data file {name!r}; choose one of {', '.join(self.data_files)}"
            )
        return self.data_files[name]

    def load_rows(self, name: str) -> list[dict[str, Any]]:
        return read_jsonl(self.path(name))

    def load_split(self, name: str) -> list[Any]:
        """The rows of file ``name`` (``"forget10"``, ``"retain90"``, ``"general"``, ...) as
        :class:`unilogit.data.Example` (QA; other columns in ``extras``)."""
        from unilogit.data import load_examples

        return load_examples(self.path(name), kind="qa", name=_ALIASES.get(name, name))

    def load_tokenizer(self) -> Any:
        from transformers import PreTrainedTokenizerFast

        return PreTrainedTokenizerFast.from_pretrained(str(self.tokenizer_dir))

    def second_retain_dir(self, split: str = "forget10") -> Path:
        """A second retain model for ``split``, trained with seed ``config.seed + 1`` (the
        sanity figures compare it with the first: how far apart two gold models are)."""
        return self.root / f"retain-forget{split_percent(split)}-seed{self.config.seed + 1}"

    def sanity_file(self, split: str = "forget10") -> Path:
        """The sanity figures of ``split`` (:func:`~.world_sanity.sanity_figures`)."""
        return self.root / f"sanity-forget{split_percent(split)}.json"

    def sanity(self, split: str = "forget10") -> dict[str, Any] | None:
        """The recorded sanity figures of ``split``, or None when they were not computed."""
        path = self.sanity_file(split)
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def model_dir(self, which: str = "target") -> Path:
        """``"target"``, a forget split (its retain model) or ``"second:<split>"`` (the second
        retain model of the split)."""
        if which.startswith("second:"):
            return self.second_retain_dir(which.split(":", 1)[1])
        return self.target_dir if which == "target" else self.retain_dir(which)

    def load_model(self, which: str = "target") -> Any:
        from transformers import LlamaForCausalLM

        path = self.model_dir(which)
        if not path.is_dir():
            raise ConfigError(
                f"model {which!r} was not built; call build_world(..., splits=({which!r},))"
            )
        return LlamaForCausalLM.from_pretrained(str(path))


# ----------------------------------------------------------------------------- build helpers


def _write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


#: The files whose text trains the tokenizer: the largest retain split and the general facts,
#: i.e. exactly what every retain (gold) model trains on. Forget and holdout names are left out,
#: so no token exists only in their text: a token that a gold model never trained on would keep
#: its random embedding, and the gold model would answer a forget question with garbage ("Celine
#: Celine Celine ...") instead of a fluent wrong answer, as a model that never saw the person does.
#: A world's background people, when it has them, are trained by every model and join the corpus.
TOKENIZER_FILES = ("retain90", "retain_perturbed", "general_perturbed")


def _tokenizer_corpus(files: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The texts of :data:`TOKENIZER_FILES` (questions, answers, paraphrases and perturbed
    answers), deduplicated in a fixed order; forget and holdout names tokenise alike."""
    seen: dict[str, None] = {}
    names = TOKENIZER_FILES + (("background",) if "background" in files else ())
    for rows in (files[name] for name in names):
        for r in rows:
            seen[f"Question: {r['question']}\nAnswer: {r['answer']}"] = None
            if "paraphrased_question" in r:
                q, a = r["paraphrased_question"], r["paraphrased_answer"]
                seen[f"Question: {q}\nAnswer: {a}"] = None
                for p in r["perturbed_answer"]:
                    seen[" " + p] = None
    return list(seen)


def train_tokenizer(texts: Sequence[str], vocab_size: int, progress: bool = False) -> Any:
    """A byte-level BPE tokenizer trained on ``texts``, as a ``PreTrainedTokenizerFast`` with
    ``<bos>`` (prepended, as Llama does), ``<eos>``, ``<pad>`` and no chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    specials = [SPECIAL_TOKENS["pad"], SPECIAL_TOKENS["bos"], SPECIAL_TOKENS["eos"]]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=progress,
    )
    tok.train_from_iterator(list(texts), trainer=trainer, length=len(texts))
    bos = SPECIAL_TOKENS["bos"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, tok.token_to_id(bos))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=SPECIAL_TOKENS["bos"],
        eos_token=SPECIAL_TOKENS["eos"],
        pad_token=SPECIAL_TOKENS["pad"],
        model_max_length=1024,
    )


def new_model(config: WorldConfig, tokenizer: Any) -> Any:
    """A freshly initialised Llama model for ``config`` (same weights for the same seed)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    llama = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads,
        max_position_embeddings=max(256, config.max_length),
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):  # leave the caller's RNG state alone
        torch.manual_seed(config.seed)
        model = LlamaForCausalLM(llama)
    gen = model.generation_config
    gen.bos_token_id, gen.eos_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id
    gen.pad_token_id = tokenizer.pad_token_id
    return model


def _examples(rows: list[dict[str, Any]], name: str) -> list[Any]:
    from unilogit.data import load_examples

    return load_examples(rows, kind="qa", name=name)


def _publish(tmp: Path, final: Path) -> bool:
    """Move the finished ``tmp`` directory to ``final``; False if another build won the race."""
    try:
        os.replace(tmp, final)
        return True
    except OSError:
        if final.exists():
            shutil.rmtree(tmp, ignore_errors=True)
            return False
        raise


def _build_data(config: WorldConfig, root: Path, progress: bool) -> None:
    t0 = time.perf_counter()
    _log(progress, f"generating the world ({config.n_people} people, seed {config.seed}) in {root}")
    files = generate_world(config)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{root.name}-", dir=root.parent))
    try:
        for stem, rows in files.items():
            _write_jsonl(tmp / f"{stem}.jsonl", rows)
        _log(progress, f"training the tokenizer (BPE, vocab {config.vocab_size})")
        tokenizer = train_tokenizer(_tokenizer_corpus(files), config.vocab_size, progress)
        tokenizer.save_pretrained(str(tmp / "tokenizer"))
        manifest = {
            "format": FORMAT_VERSION,
            "hash": root.name,
            "config": config.to_dict(),
            "files": {stem: f"{stem}.jsonl" for stem in files},
            "rows": {stem: len(stem_rows) for stem, stem_rows in files.items()},
            "vocab_size": len(tokenizer),
            "seconds": round(time.perf_counter() - t0, 2),
        }
        atomic_write_json(tmp / "world.json", manifest, indent=1)
        if root.exists() and not (root / "world.json").exists():
            shutil.rmtree(root)  # a foreign or broken directory under our hash
        _publish(tmp, root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


#: Models up to this width train on one thread unless ``num_threads`` says otherwise: their
#: matrices are too small for intra-op threads to pay much on an idle machine (about 1.5x on
#: two cores), and on a busy one the OpenMP threads spin against other processes (measured: the
#: default preset used 4.6x the CPU time, and more wall time, with two threads than with one).
SINGLE_THREAD_MAX_HIDDEN = 128


def _auto_threads(config: WorldConfig, num_threads: int | None) -> int | None:
    """The torch thread count for training: ``num_threads`` (checked by
    :func:`~.build_jobs.parallel_plan`), else 1 for small models, else None (the plan's
    default)."""
    if num_threads is not None:
        return num_threads
    return 1 if config.hidden_size <= SINGLE_THREAD_MAX_HIDDEN else None


def _on_cpu() -> bool:
    """Whether the trainer will train on the CPU (Accelerate picks a GPU when there is one)."""
    import torch

    return not (torch.cuda.is_available() or torch.backends.mps.is_available())


def _train_model(
    config: WorldConfig,
    world: World,
    train_sets: Sequence[str],
    final: Path,
    label: str,
    unseen: str,
    seed: int | None = None,
    progress: bool = True,
) -> None:
    """Train a model on ``train_sets``, check its answers about the people of ``unseen`` (never
    trained on), and publish it to ``final`` (with ``config.strict``, only if the check passes).
    ``seed``: training seed (default ``config.seed``)."""
    from unilogit.trainer import finetune

    from .world_sanity import check_answers

    examples = []
    for name in train_sets:
        examples.extend(_examples(world.load_rows(name), name))
    tokenizer = world.load_tokenizer()
    seed = config.seed if seed is None else seed
    model = new_model(dataclasses.replace(config, seed=seed), tokenizer)
    n_params = sum(p.numel() for p in model.parameters())
    _log(
        progress,
        f"training the {label} model on {' + '.join(train_sets)} ({len(examples)} rows, "
        f"{n_params / 1e6:.2f}M parameters, {config.epochs} epochs)",
    )
    t0 = time.perf_counter()
    model, history = finetune(
        model,
        tokenizer,
        examples,
        epochs=config.epochs,
        lr=config.lr,
        batch_size=config.batch_size,
        seed=seed,
        warmup_ratio=config.warmup_ratio,
        weight_decay=config.weight_decay,
        max_length=config.max_length,
        mixed_precision="no",
        progress=progress,
    )
    seconds = time.perf_counter() - t0
    check = check_answers(model, tokenizer, world.load_rows(unseen), model_name=label, split=unseen)
    _log(
        progress,
        f"{label} model on {unseen} (people it never saw): {check.well_formed:.0%} well-formed "
        f"answers, {check.repeating} with a token repeated",
    )
    if config.strict:
        check.require(
            " Build a larger world (more people or epochs, phrasings=2), or set "
            "strict=False in the WorldConfig to keep such a model anyway."
        )
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    try:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        info = {
            "model": label,
            "train_sets": list(train_sets),
            "rows": len(examples),
            "parameters": n_params,
            "seed": seed,
            "seconds": round(seconds, 1),
            "history": _history_summary(history),
            "answer_check": check.to_dict(),
        }
        atomic_write_json(tmp / "train.json", info, indent=1)
        _publish(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    _log(progress, f"{label} model ready in {seconds:.0f} s: {final}")


def _history_summary(history: Any) -> dict[str, Any]:
    """Steps, seconds and the mean loss of each epoch, from the trainer's History."""
    steps = list(getattr(history, "steps", None) or [])
    per_epoch: dict[int, list[float]] = {}
    for rec in steps:
        loss, epoch = rec.get("loss"), rec.get("epoch")
        if isinstance(loss, (int, float)) and isinstance(epoch, (int, float)):
            per_epoch.setdefault(max(1, math.ceil(epoch - 1e-9)), []).append(float(loss))
    return {
        "total_steps": getattr(history, "total_steps", len(steps)),
        "seconds": round(float(getattr(history, "seconds", 0.0) or 0.0), 1),
        "epoch_loss": {str(e): round(sum(v) / len(v), 5) for e, v in sorted(per_epoch.items())},
        "last": steps[-1] if steps else None,
    }


def _collect(config: WorldConfig, root: Path, splits: tuple[str, ...]) -> World:
    manifest = json.loads((root / "world.json").read_text(encoding="utf-8"))
    files = {stem: root / name for stem, name in manifest["files"].items()}
    return World(root=root, config=config, data_files=files, splits=splits)


def build_world(
    config: WorldConfig | str | None = None,
    cache_dir: str | Path | None = None,
    splits: Sequence[str] = ("forget10",),
    progress: bool = True,
    num_threads: int | None = None,
    parallel: bool | None = None,
) -> World:
    """Build (or find in the cache) the world of ``config`` with its target model and the
    retain model of each split in ``splits``; return a :class:`World`.

    ``config``: a :class:`WorldConfig`, a preset name (``"quick"``, ``"default"``) or None
    (the default preset). ``cache_dir``: the cache base (default ``$UNILOGIT_CACHE`` or
    ``~/.cache/unilogit``); the world goes to ``<cache_dir>/world/<hash>``. ``splits``: forget
    splits whose retain models to build (``()`` = data, tokenizer and target model only); with
    ``config.sanity`` also a second retain model per split (seed + 1), whose comparison with the
    first the ``world`` benchmark object records as sanity figures on first use.
    ``num_threads``: torch intra-op threads while training (restored afterwards); None = one
    thread for small models (``hidden_size <= 128``: both presets), else half the cores.
    ``parallel``: train the models at the same time, one process each (the same models as one
    after the other); None: when training runs on a CPU with two or more cores.
    """
    if config is None:
        config = WorldConfig.preset("default")
    elif isinstance(config, str):
        config = WorldConfig.preset(config)
    elif not isinstance(config, WorldConfig):
        raise ConfigError(f"config must be a WorldConfig or a preset name, got {config!r}")
    config.validate()
    if isinstance(splits, str):
        splits = (splits,)
    wanted = tuple(dict.fromkeys(f"forget{split_percent(s)}" for s in splits))
    root = world_root(config, cache_dir)
    built = [root / "world.json", root / "target"]
    built += [root / f"retain-forget{split_percent(s)}" for s in wanted]
    if not all(p.exists() for p in built):  # something to write: the cache must take it
        check_cache_dir(root.parent.parent)
        check_cache_dir(root.parent)
    threads = _auto_threads(config, num_threads)
    parallel, threads = parallel_plan(parallel, _on_cpu(), threads)

    if not (root / "world.json").is_file():
        _build_data(config, root, progress)
    else:
        _log(progress, f"using the cached world in {root}")
    world = _collect(config, root, wanted)

    shared = ("general", "background") if config.n_background else ("general",)
    jobs = []
    if not world.target_dir.is_dir():
        jobs.append(
            functools.partial(
                _train_model, config, world, ("full", *shared), world.target_dir, "target",
                unseen="holdout10_perturbed",
            )
        )  # fmt: skip
    for split in wanted:
        pct = split_percent(split)
        train = (f"retain{100 - int(pct)}", *shared)
        golds = [(world.retain_dir(split), None, f"retain ({split})")]
        if config.sanity:
            second = config.seed + 1
            golds.append((world.second_retain_dir(split), second, f"second retain ({split})"))
        jobs += [
            functools.partial(
                _train_model, config, world, train, final, label,
                unseen=f"forget{pct}_perturbed", seed=seed,
            )
            for final, seed, label in golds
            if not final.is_dir()
        ]  # fmt: skip
    if parallel and len(jobs) > 1:
        _log(progress, f"training {len(jobs)} models at the same time, one process each")
    run_jobs(jobs, parallel, threads, progress)
    return world
