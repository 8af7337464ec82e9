"""The one training loop, for every unlearning method and for fine-tuning.

Built on Hugging Face Accelerate, so ``accelerate launch`` gives DDP / FSDP / DeepSpeed with
no code change. Read top to bottom:

1. encode the forget (and retain) examples once;
2. the batch order is a pure function of (seed, epoch) — so a resumed run sees exactly the
   batches an uninterrupted one would, and N processes see the rows one process would;
3. each optimizer step sums ``grad_accum`` micro-batches; every loss term is weighted by its
   share of the step's supervised tokens (or sequences) across micro-batches and processes,
   so batch 4 × 1 step == batch 1 × 4 accumulation == 2 processes × batch 2;
4. clip, step, schedule, log a JSONL line, checkpoint atomically every N steps.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import math
import os
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from . import data as data_lib
from . import losses
from .errors import ConfigError, DataError, TrainingError
from .methods import (
    DEFAULT_REFUSALS,
    Method,
    Reference,
    StepBatch,
    aligned,
    get_method,
    pick_refusals,
)
from .prompts import PromptFormat

if TYPE_CHECKING:
    from .autostop import AutoStop

#: TrainConfig fields added after runs were recorded, with the value that reproduces those runs.
ADDED_LATER: dict[str, Any] = {"group_by_length": False}

#: The allowed values of ``TrainConfig.mixed_precision``.
MIXED_PRECISION = ("auto", "no", "bf16", "fp16")


@dataclass
class TrainConfig:
    """Optimisation settings shared by ``unlearn`` and ``finetune``; validated on creation
    (``ConfigError`` naming the field), so a bad value fails before any model loads."""

    epochs: float = 5  # passes over the forget set (fractions allowed: 0.5 = half an epoch)
    lr: float = 1e-5  # peak learning rate of AdamW (safe for real models; tiny ones want ~1e-3)
    batch_size: int = 4  # forget rows per micro-batch and process
    retain_batch_size: int | None = None  # retain rows per micro-batch, process (None: batch_size)
    grad_accum: int = 1  # micro-batches summed into one optimizer step
    warmup_ratio: float = 0.1  # fraction of steps with a linear warmup from 0, in [0, 1]
    weight_decay: float = 0.0  # AdamW's decoupled weight decay (>= 0)
    max_grad_norm: float = 1.0  # gradient clipping (0 = off)
    max_length: int = 512  # tokens per sequence; longer rows are truncated with a warning
    seed: int = 0  # data order, refusal choice, LoRA init and everything else random
    mixed_precision: str = "auto"  # "no" | "bf16" | "fp16" | "auto" (bf16 where CUDA has it)
    chat_template: bool | None = None  # None: use the tokenizer's chat template if it has one
    prompt_format: PromptFormat | None = None  # system prompt / template / date; wins if set
    lora: bool = False  # train LoRA adapters (peft) instead of all weights
    lora_r: int = 8  # LoRA rank
    lora_alpha: int = 16  # LoRA scale numerator (scale = alpha / r)
    lora_dropout: float = 0.0
    lora_target_modules: list[str] | None = None  # None: peft's default for the architecture
    precompute_reference: bool = True  # NPO/IdkDPO: reference log-probs once, no 2nd model
    log_file: str | None = None  # JSONL file receiving one line of loss terms per step
    checkpoint_dir: str | None = None  # where checkpoints go (required for checkpoint_every)
    checkpoint_every: int = 0  # save a resumable checkpoint every N optimizer steps (0 = off)
    resume: bool = False  # continue from the latest checkpoint in checkpoint_dir
    progress: bool = True  # tqdm progress bar
    allow_overlap: bool = False  # forget/retain rows in common: warn instead of refusing
    group_by_length: bool = False  # batch rows of similar length (less padding, same rows/epoch)

    def __post_init__(self) -> None:
        _check_number(self, "epochs", low=0.0, low_open=True)
        _check_number(self, "lr", low=0.0, low_open=True)
        _check_int(self, "batch_size", 1)
        if self.retain_batch_size is not None:
            _check_int(self, "retain_batch_size", 1)
        _check_int(self, "grad_accum", 1)
        _check_number(self, "warmup_ratio", low=0.0, high=1.0)
        _check_number(self, "weight_decay", low=0.0)
        _check_number(self, "max_grad_norm", low=0.0, note=" (0 = no clipping)")
        _check_int(self, "max_length", 1)
        _check_int(self, "checkpoint_every", 0)
        _check_int(self, "lora_r", 1)
        _check_number(self, "lora_dropout", low=0.0, high=1.0)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ConfigError(f"training option 'seed' must be an integer, got {self.seed!r}")
        if isinstance(self.prompt_format, dict):  # read back from a recorded config
            self.prompt_format = PromptFormat(**self.prompt_format)
        if not isinstance(self.prompt_format, (PromptFormat, type(None))):
            raise ConfigError(
                f"training option 'prompt_format' must be a PromptFormat, got "
                f"{self.prompt_format!r}"
            )
        if self.mixed_precision not in MIXED_PRECISION:
            raise ConfigError(
                f"training option 'mixed_precision' must be one of {', '.join(MIXED_PRECISION)}, "
                f"got {self.mixed_precision!r}"
            )

    @classmethod
    def field_names(cls) -> frozenset[str]:
        return frozenset(f.name for f in fields(cls))

    def recorded(self) -> dict[str, Any]:
        """The fields as a dict for fingerprints, without a field of :data:`ADDED_LATER` at the
        value that reproduces runs recorded before it existed (their fingerprints stay valid)."""
        return {
            k: v for k, v in asdict(self).items() if not (k in ADDED_LATER and v == ADDED_LATER[k])
        }

    @classmethod
    def from_options(cls, config: TrainConfig | None, options: dict[str, Any]) -> TrainConfig:
        """``config`` (default: the defaults) with the fields in ``options`` replaced.

        Every key of ``options`` must be a TrainConfig field (else ``ConfigError`` naming the
        unknown keys): method options are never taken from it. The keys are removed from
        ``options`` (it is left empty), as earlier callers expect.
        """
        unknown = sorted(set(options) - cls.field_names())
        if unknown:
            raise ConfigError(
                f"unknown training option(s) {unknown}; the training options are: "
                f"{', '.join(sorted(cls.field_names()))}"
            )
        chosen = {k: options.pop(k) for k in list(options)}
        return replace(config or cls(), **chosen)


def _check_number(
    cfg: TrainConfig,
    name: str,
    *,
    low: float,
    high: float | None = None,
    low_open: bool = False,
    note: str = "",
) -> None:
    """``cfg.name`` is a finite real number in [low, high] (``(low, high]`` with ``low_open``)."""
    value = getattr(cfg, name)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low) and (high is None or value <= high)
    if not ok:
        where = f"> {low:g}" if low_open else f">= {low:g}"
        where = f"in [{low:g}, {high:g}]" if high is not None else where
        raise ConfigError(
            f"training option '{name}' must be a finite number {where}{note}, got {value!r}"
        )


def _check_int(cfg: TrainConfig, name: str, low: int) -> None:
    value = getattr(cfg, name)
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"training option '{name}' must be an integer >= {low}, got {value!r}")


@dataclass
class History:
    """Per-step records (also written to ``log_file``) and run facts."""

    steps: list[dict[str, float]] = field(default_factory=list)
    total_steps: int = 0
    seconds: float = 0.0
    truncated_rows: list[str] = field(default_factory=list)
    #: with ``stopping``: :meth:`AutoStop.summary` (which step was kept and why, every reading)
    #: and ``stopped_at`` (the last step run); None without a meter
    stop: dict[str, Any] | None = None

    def last(self, key: str) -> float:
        return self.steps[-1][key]


class _FineTune(Method):
    """NLL on the given examples (plus, with a retain set, its KL term to the starting model):
    how ``finetune`` uses the same loop."""

    name = "finetune"
    default_retain = None

    def forget_loss(self, step: StepBatch) -> Tensor:
        return losses.nll_loss(*aligned(step.model, step.forget["forget"]))


def process_rank() -> int:
    """This process's global rank under ``accelerate launch`` / torchrun / DeepSpeed / MPI,
    read from the launcher's environment (0 when not launched), so it is known before an
    Accelerator exists."""
    for key in ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    return 0


#: ``on_epoch_end(model, epoch)`` callback of :func:`unlearn`.
EpochHook = Callable[[nn.Module, int], None]
#: ``on_step_end(model, step, history)`` callback of :func:`unlearn` (step counts from 1).
StepHook = Callable[[nn.Module, int, "History"], None]


def unlearn(
    model: nn.Module,
    tokenizer: Any,
    forget: Any,
    retain: Any = None,
    method: str | Method = "unilogit",
    *,
    config: TrainConfig | None = None,
    method_options: dict[str, Any] | None = None,
    refusals: Sequence[str] | None = None,
    on_epoch_end: EpochHook | None = None,
    on_step_end: StepHook | None = None,
    stopping: AutoStop | None = None,
    **options: Any,
) -> tuple[nn.Module, History]:
    """Unlearn ``forget`` from ``model`` (trained in place and returned) with ``method``.

    ``forget`` / ``retain``: anything :func:`unilogit.data.load_examples` accepts (a path,
    ``hf:NAME:CONFIG:SPLIT``, a list of dicts, a list of Examples).
    ``method``: a registered name, built with ``method_options``, or a :class:`Method` instance
    (used as is: then no method options may be given).
    ``config``: the training settings; ``options`` are shortcuts routed by name: a
    :class:`TrainConfig` field (``epochs``, ``lr``, ``seed`` ...) replaces that field of
    ``config``, any other key is a method option (``beta``, ``retain_weight`` ...). A method
    option that shares its name with a training field (RMU's ``seed``) can only be given in
    ``method_options``.
    ``on_epoch_end(model, epoch)``: called on every process after the last optimizer step of
    each whole epoch (1, 2, ...), with the unwrapped model in training mode; e.g. to evaluate.
    ``on_step_end(model, step, history)``: the same after every optimizer step (1, 2, ...;
    ``history.steps[-1]`` is that step's log line), before ``on_epoch_end``.
    ``stopping``: a :class:`~unilogit.autostop.AutoStop`: the forgetting meter is read before
    training and every N steps (its values join the step's log line); with its ``stop`` the run
    ends when its rule says so (epochs are then a maximum) and the returned model holds the
    kept step's weights; ``history.stop`` says which step was kept and why.
    """
    cfg, method_obj = _split_options(config, method, method_options, options)
    forget_examples = _as_examples(forget, "forget")
    retain_examples = _as_examples(retain, "retain") if retain is not None else []
    if method_obj.retain_kind is not None and not retain_examples:
        raise ConfigError(
            f"method {method_obj.name!r} uses a retain term ({method_obj.retain_kind!r}) but no "
            "retain set was given; pass retain=... or retain=None / --retain-weight 0"
        )
    _check_overlap(forget_examples, retain_examples, cfg.allow_overlap)
    drawn = _Schedule(len(forget_examples), len(retain_examples), cfg, 1).retain_rows_per_epoch
    if method_obj.retain_kind is not None and len(retain_examples) < drawn:
        warnings.warn(
            f"an epoch pairs the forget set ({len(forget_examples)} rows) with {drawn} retain "
            f"rows, more than the retain set has ({len(retain_examples)}): retain rows are "
            "reused within an epoch",
            stacklevel=2,
        )
    return _train(
        model,
        tokenizer,
        method_obj,
        forget_examples,
        retain_examples,
        cfg,
        refusals,
        on_epoch_end,
        on_step_end,
        stopping,
    )


def _split_options(
    config: TrainConfig | None,
    method: str | Method,
    method_options: dict[str, Any] | None,
    options: dict[str, Any],
) -> tuple[TrainConfig, Method]:
    """(training config, method object) from :func:`unlearn`'s arguments; see its docstring."""
    train_keys = TrainConfig.field_names()
    shortcuts = {k: v for k, v in options.items() if k not in train_keys}
    both = sorted(set(shortcuts) & set(method_options or {}))
    if both:
        raise ConfigError(f"method option(s) {both} given both in method_options and as keywords")
    cfg = TrainConfig.from_options(config, {k: v for k, v in options.items() if k in train_keys})
    return cfg, get_method(method, **{**(method_options or {}), **shortcuts})


def finetune(
    model: nn.Module,
    tokenizer: Any,
    examples: Any,
    *,
    retain: Any = None,
    retain_weight: float = 1.0,
    config: TrainConfig | None = None,
    on_step_end: StepHook | None = None,
    **options: Any,
) -> tuple[nn.Module, History]:
    """Fine-tune ``model`` on ``examples`` (NLL on answers / texts) with the same loop.

    ``retain``: optional examples on which the model is held to its starting self: each step
    adds ``retain_weight`` x KL(π_start ‖ π_θ) on a batch of their answer tokens, π_start a
    frozen copy of ``model`` as given (soft-label self-distillation; retain rows are paired
    with each batch as in :func:`unlearn`). ``options``: :class:`TrainConfig` fields replacing
    those of ``config``; ``on_step_end`` as in :func:`unlearn`."""
    cfg = TrainConfig.from_options(config, dict(options))
    examples = _as_examples(examples, "data")
    kept = _as_examples(retain, "retain") if retain is not None else []
    method = _FineTune(retain_loss="kl" if kept else None, retain_weight=retain_weight)
    return _train(model, tokenizer, method, examples, kept, cfg, None, on_step_end=on_step_end)


def _as_examples(source: Any, name: str) -> list[data_lib.Example]:
    if isinstance(source, list) and source and isinstance(source[0], data_lib.Example):
        return source
    examples = data_lib.load_examples(source, name=name)
    if not examples:
        raise DataError(
            f"the {name} set is empty",
            file=str(source) if isinstance(source, (str, Path)) else None,
        )
    return examples


def _check_overlap(forget: list, retain: list, allow: bool) -> None:
    keys = {(e.prompt.strip(), e.response.strip()) for e in retain}
    both = [e.row_id for e in forget if (e.prompt.strip(), e.response.strip()) in keys]
    if not both:
        return
    msg = (
        f"{len(both)} forget row(s) also appear in the retain set (same question and answer), "
        f"e.g. {', '.join(both[:3])}"
    )
    if not allow:
        raise DataError(msg + "; remove them or pass allow_overlap=True / --allow-overlap")
    warnings.warn(msg, stacklevel=3)


# --------------------------------------------------------------------------- the schedule


@functools.lru_cache(maxsize=4)
def _permutation(n: int, seed: int, salt: int) -> tuple[int, ...]:
    """A seeded permutation of ``range(n)``; cached, since every step of an epoch (and every
    retain row of a cycle) asks for the same one."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + salt)
    return tuple(torch.randperm(n, generator=gen).tolist())


#: Length grouping sorts windows of this many micro-batches of the shuffled order.
GROUP_WINDOW = 16


def _grouped_by_length(perm: Sequence[int], lengths: Sequence[int], window: int) -> list[int]:
    """``perm`` cut into windows of ``window`` rows, each sorted by length (longest first;
    ties keep the shuffled order): consecutive micro-batches hold rows of similar length, so
    little padding is computed, and every row still comes once per epoch in a seeded order."""
    out: list[int] = []
    for start in range(0, len(perm), window):
        out += sorted(perm[start : start + window], key=lambda r: -lengths[r])
    return out


class _Schedule:
    """Which rows each (step, micro-batch, process) uses: a pure function of the seed.

    Forget rows are shuffled once per epoch (``cfg.group_by_length``: then grouped by
    ``lengths``, :func:`_grouped_by_length`); the retain set is cycled with its own shuffle
    per cycle, so each forget micro-batch is paired with a fresh retain micro-batch (as many
    rows as the forget micro-batch, or ``retain_batch_size`` per process where it is set).
    """

    def __init__(
        self,
        n_forget: int,
        n_retain: int,
        cfg: TrainConfig,
        world: int,
        lengths: Sequence[int] | None = None,
    ) -> None:
        self.n_forget, self.n_retain, self.cfg, self.world = n_forget, n_retain, cfg, world
        if lengths is not None and len(lengths) != n_forget:
            raise ValueError(f"{len(lengths)} lengths for {n_forget} forget rows")
        self.lengths = lengths
        self._order: tuple[int, Sequence[int]] | None = None  # (epoch, its forget order)
        self.global_batch = cfg.batch_size * world  # rows per micro-batch, all processes
        self.retain_batch = (cfg.retain_batch_size or cfg.batch_size) * world
        self.micro_per_epoch = math.ceil(n_forget / self.global_batch)
        self.steps_per_epoch = math.ceil(self.micro_per_epoch / cfg.grad_accum)
        self.total_steps = max(1, math.ceil(cfg.epochs * self.steps_per_epoch))

    @property
    def retain_rows_per_epoch(self) -> int:
        """Retain rows drawn per epoch, all processes (as many as forget rows by default)."""
        if self.cfg.retain_batch_size is None:
            return self.n_forget
        return self.micro_per_epoch * self.retain_batch

    def micro_batches(self, step: int) -> list[tuple[int, list[int], list[int]]]:
        """[(epoch, global forget rows, global retain rows)] for optimizer step ``step``."""
        epoch, k = divmod(step, self.steps_per_epoch)
        perm = self._forget_order(epoch)
        out = []
        first = k * self.cfg.grad_accum
        for micro in range(first, min(first + self.cfg.grad_accum, self.micro_per_epoch)):
            rows = list(perm[micro * self.global_batch : (micro + 1) * self.global_batch])
            size = self.retain_batch if self.cfg.retain_batch_size else len(rows)
            out.append((epoch, rows, self._retain_rows(epoch * self.micro_per_epoch + micro, size)))
        return out

    def _forget_order(self, epoch: int) -> Sequence[int]:
        """The epoch's forget rows in order: shuffled, then grouped by length where asked;
        computed once per epoch (steps ask in order)."""
        if self._order is None or self._order[0] != epoch:
            perm: Sequence[int] = _permutation(self.n_forget, self.cfg.seed, epoch)
            if self.cfg.group_by_length:
                if self.lengths is None:
                    raise ValueError("group_by_length needs the length of every forget row")
                perm = _grouped_by_length(perm, self.lengths, GROUP_WINDOW * self.global_batch)
            self._order = (epoch, perm)
        return self._order[1]

    def _retain_rows(self, global_micro: int, size: int) -> list[int]:
        if self.n_retain == 0:
            return []
        start = global_micro * self.retain_batch
        rows = []
        for pos in range(start, start + size):
            cycle, offset = divmod(pos, self.n_retain)
            rows.append(_permutation(self.n_retain, self.cfg.seed, 10_000 + cycle)[offset])
        return rows

    def shard(self, rows: list[int], rank: int) -> list[int]:
        """This process's slice of a global micro-batch (contiguous, possibly empty)."""
        per = math.ceil(len(rows) / self.world)
        return rows[rank * per : (rank + 1) * per]


# --------------------------------------------------------------------------- the loop


def _encode_all(
    examples: list[data_lib.Example], tokenizer: Any, cfg: TrainConfig, history: History
) -> list[Any]:
    """Tokenise once (one warning summarises truncated rows, which the history keeps)."""
    fmt = cfg.prompt_format if cfg.prompt_format is not None else cfg.chat_template
    encoded = data_lib.encode_examples(
        tokenizer, examples, prompt_format=fmt, max_length=cfg.max_length
    )
    history.truncated_rows += [e.row_id for e in encoded if e.truncated]
    return encoded


def _resolve_mixed_precision(choice: str) -> str:
    if choice != "auto":
        if choice not in ("no", "bf16", "fp16"):
            raise ConfigError(f"mixed_precision must be no|bf16|fp16|auto, got {choice!r}")
        return choice
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "no"


def _wrap_lora(model: nn.Module, cfg: TrainConfig) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    lora_cfg = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.lora_target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora_cfg)


@dataclass
class _Run:
    """What the loop needs, built once by the ``_setup_*`` helpers."""

    accelerator: Any
    model: nn.Module  # prepared by accelerate (DDP / FSDP / DeepSpeed wrapper, or the model)
    method: Method
    cfg: TrainConfig
    forget: list[data_lib.Example]
    views: dict[str, list[Any]]  # encoded forget views: "forget" (+ "chosen" for IdkDPO)
    retain: list[Any]  # encoded retain rows
    reference: Reference | None
    reference_logps: dict[str, Tensor] | None
    schedule: _Schedule
    params: list[nn.Parameter]  # the trainable ones
    optimizer: Any
    scheduler: Any
    pad: int
    term_keys: list[str]  # loss terms every process logs: "forget" (+ "retain")


def _train(
    model: nn.Module,
    tokenizer: Any,
    method: Method,
    forget: list[data_lib.Example],
    retain: list[data_lib.Example],
    cfg: TrainConfig,
    refusals: Sequence[str] | None,
    on_epoch_end: EpochHook | None = None,
    on_step_end: StepHook | None = None,
    stopping: AutoStop | None = None,
) -> tuple[nn.Module, History]:
    """Set up, then run optimizer steps ``start_step .. total_steps - 1`` (see module doc)."""
    if cfg.checkpoint_every and not cfg.checkpoint_dir:
        raise ConfigError("checkpoint_every needs checkpoint_dir")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    accelerator = _setup_accelerator(cfg)
    history = History()
    started = time.perf_counter()
    views, retain_encoded = _setup_views(method, forget, retain, tokenizer, cfg, refusals, history)
    if cfg.lora:
        model = _wrap_lora(model, cfg)
    reference, reference_logps = _setup_reference(
        model, method, views, tokenizer.pad_token_id, cfg, accelerator.device
    )
    frozen_now = [p for p in method.frozen_parameters(model) if p.requires_grad]
    for p in frozen_now:
        p.requires_grad_(False)
    log: Any = None
    bar: Any = None
    try:  # from here on, the finally below hands the frozen parameters back
        run = _setup_optimization(
            accelerator, model, method, cfg, forget, views, retain_encoded, tokenizer.pad_token_id
        )
        run.reference, run.reference_logps = reference, reference_logps
        history.total_steps = run.schedule.total_steps
        start_step = _load_checkpoint(accelerator, run.scheduler, cfg) if cfg.resume else 0
        _start_meter(run, stopping, start_step)
        log = _setup_log(cfg, accelerator)
        bar = _setup_bar(cfg, accelerator, method, run.schedule.total_steps, start_step)
        for step in range(start_step, run.schedule.total_steps):
            record = _train_step(run, step)
            if stopping is not None and stopping.due(
                step + 1, run.schedule.total_steps, run.schedule.steps_per_epoch
            ):
                unwrapped = accelerator.unwrap_model(run.model)
                record.update(stopping.observe(unwrapped, step + 1).log_fields())
            history.steps.append(record)
            _report_step(record, log, bar)
            _after_step(run, step + 1, history, on_step_end, on_epoch_end, stopping)
            if stopping is not None and stopping.should_stop():
                break
    finally:
        if bar is not None:
            bar.close()
        if log is not None:
            log.close()
        for p in frozen_now:  # the caller gets its model back as trainable as it was
            p.requires_grad_(True)
    accelerator.wait_for_everyone()
    history.seconds = time.perf_counter() - started
    model = accelerator.unwrap_model(run.model)
    if stopping is not None:
        stopping.restore(model)
        last = history.steps[-1]["step"] if history.steps else start_step
        history.stop = {**stopping.summary(), "stopped_at": last}
    model.eval()
    return model, history


def _start_meter(run: _Run, stopping: AutoStop | None, start_step: int) -> None:
    """First reading (step 0, before any update), or the meter's state saved with the
    checkpoint a resumed run starts from."""
    if stopping is None:
        return
    if start_step == 0:
        stopping.observe(run.accelerator.unwrap_model(run.model), 0)
        return
    path = _checkpoint_path(run.cfg) / AUTOSTOP_STATE
    if not path.is_file():
        raise ConfigError(
            f"resume with a forgetting meter: {path} is missing (the checkpoint was written "
            "by a run without one)"
        )
    stopping.load_state_dict(torch.load(path, weights_only=True))


# ------------------------------------------------------------------------------ set-up


def _setup_accelerator(cfg: TrainConfig) -> Any:
    """The Accelerator (mixed precision, processes), then every RNG seeded from ``cfg.seed``."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    accelerator = Accelerator(mixed_precision=_resolve_mixed_precision(cfg.mixed_precision))
    if accelerator.distributed_type == "DEEPSPEED" and cfg.grad_accum > 1:
        # accelerate lets the DeepSpeed engine step inside every backward() unless its own
        # accumulate() is used; our loop accumulates by hand, so it would step per micro-batch.
        raise ConfigError("grad_accum > 1 is not supported under DeepSpeed; raise batch_size")
    set_seed(cfg.seed)
    return accelerator


def _setup_views(
    method: Method,
    forget: list[data_lib.Example],
    retain: list[data_lib.Example],
    tokenizer: Any,
    cfg: TrainConfig,
    refusals: Sequence[str] | None,
    history: History,
) -> tuple[dict[str, list[Any]], list[Any]]:
    """Encode once. Forget "views": the rows themselves and, for IdkDPO, refusals."""
    views: dict[str, list[Any]] = {"forget": _encode_all(forget, tokenizer, cfg, history)}
    if method.needs_refusals:
        answers = pick_refusals(len(forget), list(refusals or DEFAULT_REFUSALS), cfg.seed)
        chosen = [
            data_lib.Example(e.prompt, a, e.kind, e.row_id + ":refusal", {}, messages=e.messages)
            for e, a in zip(forget, answers, strict=True)
        ]
        views["chosen"] = _encode_all(chosen, tokenizer, cfg, history)
    retain_encoded = _encode_all(retain, tokenizer, cfg, history) if retain else []
    return views, retain_encoded


def _setup_reference(
    model: nn.Module,
    method: Method,
    views: dict[str, list[Any]],
    pad: int,
    cfg: TrainConfig,
    device: torch.device,
) -> tuple[Reference | None, dict[str, Tensor] | None]:
    """Precomputed sequence log-probs when that is all the method needs, the LoRA base with
    adapters disabled, or a frozen copy of the model; (None, None) without a reference."""
    if not method.needs_reference:
        return None, None
    use_precomputed = (
        cfg.precompute_reference
        and method.reference_is_sequence_logps
        and method.retain_kind != "kl"
    )
    if use_precomputed:
        return None, _precompute_sequence_logps(model, views, pad, cfg, device)
    if cfg.lora:
        return Reference(model, disable_adapter=True), None
    frozen = copy.deepcopy(model).eval().requires_grad_(False)
    return Reference(frozen.to(device)), None


def _setup_optimization(
    accelerator: Any,
    model: nn.Module,
    method: Method,
    cfg: TrainConfig,
    forget: list[data_lib.Example],
    views: dict[str, list[Any]],
    retain: list[Any],
    pad: int,
) -> _Run:
    """Schedule, AdamW over the trainable parameters, linear warmup/decay, ``prepare``."""
    from transformers import get_linear_schedule_with_warmup

    lengths = [len(e.input_ids) for e in views["forget"]]
    schedule = _Schedule(len(forget), len(retain), cfg, accelerator.num_processes, lengths)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = get_linear_schedule_with_warmup(
        optimizer, int(cfg.warmup_ratio * schedule.total_steps), schedule.total_steps
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    return _Run(
        accelerator=accelerator,
        model=model,
        method=method,
        cfg=cfg,
        forget=forget,
        views=views,
        retain=retain,
        reference=None,
        reference_logps=None,
        schedule=schedule,
        params=params,
        optimizer=optimizer,
        scheduler=scheduler,
        pad=pad,
        term_keys=["forget"] + (["retain"] if method.retain_kind and retain else []),
    )


def _setup_log(cfg: TrainConfig, accelerator: Any) -> Any:
    """The JSONL step log (main process only; appended to when resuming), or None."""
    if not (cfg.log_file and accelerator.is_main_process):
        return None
    return open(cfg.log_file, "a" if cfg.resume else "w")  # noqa: SIM115


def _setup_bar(
    cfg: TrainConfig, accelerator: Any, method: Method, total: int, start_step: int
) -> Any:
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=start_step,
        desc=f"{method.name}",
        disable=not (cfg.progress and accelerator.is_local_main_process),
    )


# ------------------------------------------------------------------------------ one step


def _train_step(run: _Run, step: int) -> dict[str, float]:
    """One optimizer step (``step`` counts from 0): accumulate every micro-batch's gradients,
    clip, step, schedule; returns the step's log line."""
    micro = run.schedule.micro_batches(step)
    rank = run.accelerator.process_index
    shards = [
        (epoch, run.schedule.shard(f, rank), run.schedule.shard(r, rank)) for epoch, f, r in micro
    ]
    # A process without rows in a micro-batch (tail of an epoch) runs the global micro-batch's
    # first row as a stand-in with weight 0: DDP joins the gradient all-reduce (and broadcasts
    # buffers) only from its own forward, so every process must make the same forward/backward
    # calls or the collectives deadlock.
    batches = [
        _step_batch(
            run.views,
            run.retain,
            f or gf[:1],
            r or gr[:1],
            run.pad,
            run.accelerator.device,
            run.reference_logps,
        )
        for (_, f, r), (_, gf, gr) in zip(shards, micro, strict=True)
    ]
    logged = _accumulate(run, step, shards, batches)
    grad_norm = _clip_gradients(run, step, shards)
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    weights = {"forget": run.method.forget_weight, "retain": run.method.retain_weight}
    return {
        "step": step + 1,
        "epoch": round((step + 1) / run.schedule.steps_per_epoch, 4),
        "lr": run.scheduler.get_last_lr()[0],
        "loss": sum(v * weights[k] for k, v in logged.items()),
        **{f"loss_{k}": v for k, v in logged.items()},
        "grad_norm": grad_norm,
    }


def _accumulate(
    run: _Run, step: int, shards: list[tuple[int, list[int], list[int]]], batches: list[Any]
) -> dict[str, float]:
    """Forward and backward every micro-batch, each term weighted by its share of the step's
    units (all micro-batches, all processes); returns the step's mean loss terms."""
    accelerator, method = run.accelerator, run.method
    # Counts come from the labels alone, so each micro-batch's terms can be weighted by their
    # share of the whole step before any forward pass.
    counts = [
        method.counts(b["forget"]["forget"], b["retain"]) if f else {}
        for b, (_, f, _) in zip(batches, shards, strict=True)
    ]
    # Same keys on every process (even one without rows), so the all-reduces line up.
    totals: dict[str, float] = dict.fromkeys(run.term_keys, 0.0)
    for c in counts:
        for k, v in c.items():
            totals[k] = totals.get(k, 0.0) + v
    totals = _all_reduce_counts(accelerator, totals)
    logged: dict[str, float] = dict.fromkeys(run.term_keys, 0.0)
    for i, (batch, count) in enumerate(zip(batches, counts, strict=True)):
        last = i == len(batches) - 1
        # DDP divides gradients by the process count; scale by it to undo that.
        scale = {
            k: count.get(k, 0.0) * accelerator.num_processes / max(totals[k], 1.0) for k in totals
        }  # all 0 for a stand-in
        # Gradients are synchronised across processes only on the last micro-batch.
        with accelerator.no_sync(run.model) if not last else contextlib.nullcontext():
            with accelerator.autocast():
                terms = method.loss(StepBatch(model=run.model, reference=run.reference, **batch))
                loss = terms.total(scale)
            _check_loss(terms.values, loss, step, shards[i], run.forget)
            accelerator.backward(loss)
        for k, v in terms.values.items():
            logged[k] += float(v.detach()) * scale[k] / accelerator.num_processes
    return _all_reduce_counts(accelerator, logged)


def _check_loss(
    values: dict[str, Tensor],
    loss: Tensor,
    step: int,
    shard: tuple[int, list[int], list[int]],
    forget: list[data_lib.Example],
) -> None:
    """Stop (TrainingError) before a backward pass through a NaN or ±inf: each loss term is
    checked, not only the weighted total (where 0 · inf or inf - inf would hide which term
    failed), and the message names the step, the terms and the batch's forget rows."""
    parts = [v.detach().float().reshape(-1) for v in values.values()]
    if bool(torch.isfinite(torch.cat([*parts, loss.detach().float().reshape(-1)])).all()):
        return
    total = float(loss.detach())
    bad = [f"{k} = {float(v.detach())}" for k, v in values.items() if not torch.isfinite(v).all()]
    what = ", ".join(bad) if bad else f"total = {total}"
    names = ", ".join(forget[j].row_id for j in shard[1][:8]) or "(none on this process)"
    raise TrainingError(
        f"loss became {total} ({what}) at step {step + 1} (epoch {shard[0] + 1}); forget rows "
        f"in the batch: {names}"
    )


def _clip_gradients(run: _Run, step: int, shards: list[tuple[int, list[int], list[int]]]) -> float:
    """The step's total gradient norm, clipped to ``max_grad_norm`` (0: measured, not clipped:
    a max norm of infinity leaves the gradients bit-identical); a NaN / ±inf norm stops the run
    before the optimizer step, with clipping on or off."""
    max_norm = run.cfg.max_grad_norm if run.cfg.max_grad_norm > 0 else math.inf
    norm = run.accelerator.clip_grad_norm_(run.params, max_norm)
    if norm is None:  # DeepSpeed clips inside its engine and returns nothing
        return float("nan")
    grad_norm = float(norm)
    _check_grad_norm(grad_norm, step, shards, run.forget)
    return grad_norm


def _check_grad_norm(
    grad_norm: float,
    step: int,
    shards: list[tuple[int, list[int], list[int]]],
    forget: list[data_lib.Example],
) -> None:
    """Stop the run when the gradient norm is not finite, naming the step and rows."""
    if not math.isfinite(grad_norm):
        raise TrainingError(
            f"gradient norm became {grad_norm} at step {step + 1}; forget rows: "
            + ", ".join(forget[j].row_id for _, f, _ in shards for j in f[:8])
        )


def _report_step(record: dict[str, float], log: Any, bar: Any) -> None:
    """Append the step's line to the JSONL log (flushed) and advance the progress bar."""
    if log is not None:
        log.write(json.dumps(record) + "\n")
        log.flush()
    shown = ("loss", "meter_auc", "meter_loss_ratio")
    bar.set_postfix(
        {k.removeprefix("meter_"): f"{v:.4g}" for k, v in record.items() if k.startswith(shown)}
    )
    bar.update(1)


def _after_step(
    run: _Run,
    done: int,
    history: History,
    on_step_end: StepHook | None,
    on_epoch_end: EpochHook | None,
    stopping: AutoStop | None = None,
) -> None:
    """After optimizer step ``done`` (from 1): checkpoint every N steps (not after the last;
    with the meter's state), then the step hook, then the epoch hook at whole epochs."""
    if run.cfg.checkpoint_every and done % run.cfg.checkpoint_every == 0:
        if done < run.schedule.total_steps:
            extra = None if stopping is None else stopping.state_dict()
            _save_checkpoint(run.accelerator, run.scheduler, run.cfg, done, extra)
    if on_step_end is not None:
        on_step_end(run.accelerator.unwrap_model(run.model), done, history)
    epoch_done, within = divmod(done, run.schedule.steps_per_epoch)
    if on_epoch_end is not None and within == 0:
        on_epoch_end(run.accelerator.unwrap_model(run.model), epoch_done)


def _all_reduce_counts(accelerator: Any, totals: dict[str, float]) -> dict[str, float]:
    if accelerator.num_processes == 1 or not totals:
        return totals
    keys = sorted(totals)
    t = torch.tensor([totals[k] for k in keys], dtype=torch.float64, device=accelerator.device)
    t = accelerator.reduce(t, reduction="sum")
    return dict(zip(keys, t.tolist(), strict=True))


def _step_batch(
    views: dict[str, list[Any]],
    retain: list[Any],
    forget_rows: list[int],
    retain_rows: list[int],
    pad: int,
    device: torch.device,
    reference_logps: dict[str, Tensor] | None,
) -> dict[str, Any]:
    def batch(items: list[Any]) -> dict[str, Tensor]:
        return {k: v.to(device) for k, v in data_lib.collate(items, pad).items()}

    out: dict[str, Any] = {
        "forget": {name: batch([enc[j] for j in forget_rows]) for name, enc in views.items()}
        if forget_rows
        else {},
        "retain": batch([retain[j] for j in retain_rows]) if retain_rows else None,
    }
    if reference_logps is not None and forget_rows:
        idx = torch.tensor(forget_rows)
        out["reference_logps"] = {k: v[idx].to(device) for k, v in reference_logps.items()}
    return out


@torch.no_grad()
def _precompute_sequence_logps(
    model: nn.Module, views: dict[str, list[Any]], pad: int, cfg: TrainConfig, device: torch.device
) -> dict[str, Tensor]:
    """Summed answer log-probs of every forget view under the model before training."""
    from . import losses
    from .methods import aligned

    was_training = model.training
    model.eval().to(device)
    out = {}
    for name, encoded in views.items():
        values = []
        for start in range(0, len(encoded), max(cfg.batch_size, 8)):
            items = encoded[start : start + max(cfg.batch_size, 8)]
            batch = {k: v.to(device) for k, v in data_lib.collate(items, pad).items()}
            values.append(losses.sequence_logps(*aligned(model, batch))[0].float().cpu())
        out[name] = torch.cat(values)
    model.train(was_training)
    return out


# --------------------------------------------------------------------------- checkpoints


def _checkpoint_path(cfg: TrainConfig) -> Path:
    assert cfg.checkpoint_dir is not None
    return Path(cfg.checkpoint_dir) / "checkpoint"


#: The forgetting meter's state in a checkpoint (readings, kept step's weights).
AUTOSTOP_STATE = "autostop.pt"


def _save_checkpoint(
    accelerator: Any, scheduler: Any, cfg: TrainConfig, step: int, extra: Any = None
) -> None:
    """Write to a temporary directory, then rename over the previous checkpoint (atomic);
    ``extra``: the forgetting meter's state (saved as ``AUTOSTOP_STATE``) or None."""
    final = _checkpoint_path(cfg)
    tmp = final.with_name(f".checkpoint-tmp-{os.getpid()}")
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    if accelerator.is_main_process:
        torch.save(scheduler.state_dict(), tmp / "lr_schedule.pt")
        if extra is not None:
            torch.save(extra, tmp / AUTOSTOP_STATE)
        (tmp / "trainer_state.json").write_text(json.dumps({"step": step}))
        old = final.with_name(".checkpoint-old")
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        if old.exists():
            shutil.rmtree(old)
    accelerator.wait_for_everyone()


def _load_checkpoint(accelerator: Any, scheduler: Any, cfg: TrainConfig) -> int:
    path = _checkpoint_path(cfg) if cfg.checkpoint_dir else None
    if path is None or not (path / "trainer_state.json").exists():
        raise ConfigError(f"resume: no checkpoint found in {cfg.checkpoint_dir}")
    accelerator.load_state(str(path))
    scheduler.load_state_dict(torch.load(path / "lr_schedule.pt", weights_only=True))
    return int(json.loads((path / "trainer_state.json").read_text())["step"])
