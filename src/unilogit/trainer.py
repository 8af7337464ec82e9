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
import json
import math
import os
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

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


@dataclass
class TrainConfig:
    """Optimisation settings shared by ``unlearn`` and ``finetune``."""

    epochs: float = 5  # passes over the forget set (fractions allowed: 0.5 = half an epoch)
    lr: float = 1e-5  # peak learning rate of AdamW
    batch_size: int = 4  # forget rows per micro-batch and process (retain batch: same size)
    grad_accum: int = 1  # micro-batches summed into one optimizer step
    warmup_ratio: float = 0.1  # fraction of steps with a linear warmup from 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0  # gradient clipping (0 = off)
    max_length: int = 512  # tokens per sequence; longer rows are truncated with a warning
    seed: int = 0  # data order, refusal choice, LoRA init and everything else random
    mixed_precision: str = "auto"  # "no" | "bf16" | "fp16" | "auto" (bf16 where CUDA has it)
    chat_template: bool | None = None  # None: use the tokenizer's chat template if it has one
    lora: bool = False  # train LoRA adapters (peft) instead of all weights
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_target_modules: list[str] | None = None  # None: peft's default for the architecture
    precompute_reference: bool = True  # NPO/IdkDPO: reference log-probs once, no 2nd model
    log_file: str | None = None  # JSONL file receiving one line of loss terms per step
    checkpoint_dir: str | None = None  # where checkpoints go (required for checkpoint_every)
    checkpoint_every: int = 0  # save a resumable checkpoint every N optimizer steps (0 = off)
    resume: bool = False  # continue from the latest checkpoint in checkpoint_dir
    progress: bool = True  # tqdm progress bar
    allow_overlap: bool = False  # forget/retain rows in common: warn instead of refusing

    @classmethod
    def from_options(cls, config: TrainConfig | None, options: dict[str, Any]) -> TrainConfig:
        """Copy ``config`` with the TrainConfig fields found in ``options`` (popped)."""
        names = {f.name for f in fields(cls)}
        chosen = {k: options.pop(k) for k in list(options) if k in names}
        return cls(**{**asdict(config or cls()), **chosen})


@dataclass
class History:
    """Per-step records (also written to ``log_file``) and run facts."""

    steps: list[dict[str, float]] = field(default_factory=list)
    total_steps: int = 0
    seconds: float = 0.0
    truncated_rows: list[str] = field(default_factory=list)

    def last(self, key: str) -> float:
        return self.steps[-1][key]


class _FineTune(Method):
    """Plain NLL on the given examples: how ``finetune`` uses the same loop."""

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
    refusals: Sequence[str] | None = None,
    on_epoch_end: EpochHook | None = None,
    on_step_end: StepHook | None = None,
    **options: Any,
) -> tuple[nn.Module, History]:
    """Unlearn ``forget`` from ``model`` (trained in place and returned) with ``method``.

    ``forget`` / ``retain``: anything :func:`unilogit.data.load_examples` accepts (a path,
    ``hf:NAME:CONFIG:SPLIT``, a list of dicts, a list of Examples). ``options`` are TrainConfig
    fields (``epochs``, ``lr``, ...) and the method's own (``retain_weight``, ``beta``, ...).
    ``on_epoch_end(model, epoch)``: called on every process after the last optimizer step of
    each whole epoch (1, 2, ...), with the unwrapped model in training mode; e.g. to evaluate.
    ``on_step_end(model, step, history)``: the same after every optimizer step (1, 2, ...;
    ``history.steps[-1]`` is that step's log line), before ``on_epoch_end``.
    """
    options = dict(options)
    cfg = TrainConfig.from_options(config, options)
    method_obj = get_method(method, **options)
    forget_examples = _as_examples(forget, "forget")
    retain_examples = _as_examples(retain, "retain") if retain is not None else []
    if method_obj.retain_kind is not None and not retain_examples:
        raise ConfigError(
            f"method {method_obj.name!r} uses a retain term ({method_obj.retain_kind!r}) but no "
            "retain set was given; pass retain=... or retain=None / --retain-weight 0"
        )
    _check_overlap(forget_examples, retain_examples, cfg.allow_overlap)
    if method_obj.retain_kind is not None and len(retain_examples) < len(forget_examples):
        warnings.warn(
            f"the forget set ({len(forget_examples)} rows) is larger than the retain set "
            f"({len(retain_examples)} rows): retain rows are reused several times per epoch",
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
    )


def finetune(
    model: nn.Module,
    tokenizer: Any,
    examples: Any,
    *,
    config: TrainConfig | None = None,
    **options: Any,
) -> tuple[nn.Module, History]:
    """Fine-tune ``model`` on ``examples`` (NLL on answers / texts) with the same loop."""
    options = dict(options)
    cfg = TrainConfig.from_options(config, options)
    if options:
        raise ConfigError(f"unknown finetune option(s): {sorted(options)}")
    examples = _as_examples(examples, "data")
    return _train(model, tokenizer, _FineTune(), examples, [], cfg, None)


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


def _permutation(n: int, seed: int, salt: int) -> list[int]:
    gen = torch.Generator().manual_seed(seed * 1_000_003 + salt)
    return torch.randperm(n, generator=gen).tolist()


class _Schedule:
    """Which rows each (step, micro-batch, process) uses: a pure function of the seed.

    Forget rows are shuffled once per epoch; the retain set is cycled with its own shuffle
    per cycle, so each forget micro-batch is paired with a fresh retain micro-batch.
    """

    def __init__(self, n_forget: int, n_retain: int, cfg: TrainConfig, world: int) -> None:
        self.n_forget, self.n_retain, self.cfg, self.world = n_forget, n_retain, cfg, world
        self.global_batch = cfg.batch_size * world  # rows per micro-batch, all processes
        self.micro_per_epoch = math.ceil(n_forget / self.global_batch)
        self.steps_per_epoch = math.ceil(self.micro_per_epoch / cfg.grad_accum)
        self.total_steps = max(1, math.ceil(cfg.epochs * self.steps_per_epoch))

    def micro_batches(self, step: int) -> list[tuple[int, list[int], list[int]]]:
        """[(epoch, global forget rows, global retain rows)] for optimizer step ``step``."""
        epoch, k = divmod(step, self.steps_per_epoch)
        perm = _permutation(self.n_forget, self.cfg.seed, epoch)
        out = []
        first = k * self.cfg.grad_accum
        for micro in range(first, min(first + self.cfg.grad_accum, self.micro_per_epoch)):
            rows = perm[micro * self.global_batch : (micro + 1) * self.global_batch]
            out.append(
                (epoch, rows, self._retain_rows(epoch * self.micro_per_epoch + micro, len(rows)))
            )
        return out

    def _retain_rows(self, global_micro: int, size: int) -> list[int]:
        if self.n_retain == 0:
            return []
        start = global_micro * self.global_batch
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
    encoded = data_lib.encode_examples(
        tokenizer, examples, chat_template=cfg.chat_template, max_length=cfg.max_length
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
) -> tuple[nn.Module, History]:
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    if cfg.batch_size < 1 or cfg.grad_accum < 1:
        raise ConfigError("batch_size and grad_accum must be >= 1")
    if cfg.epochs <= 0:
        raise ConfigError(f"epochs must be > 0, got {cfg.epochs}")
    if cfg.checkpoint_every and not cfg.checkpoint_dir:
        raise ConfigError("checkpoint_every needs checkpoint_dir")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token

    accelerator = Accelerator(mixed_precision=_resolve_mixed_precision(cfg.mixed_precision))
    if accelerator.distributed_type == "DEEPSPEED" and cfg.grad_accum > 1:
        # accelerate lets the DeepSpeed engine step inside every backward() unless its own
        # accumulate() is used; our loop accumulates by hand, so it would step per micro-batch.
        raise ConfigError("grad_accum > 1 is not supported under DeepSpeed; raise batch_size")
    set_seed(cfg.seed)
    history = History()
    started = time.perf_counter()

    # 1. Encode once. Forget "views": the rows themselves and, for IdkDPO, refusals.
    views: dict[str, list[Any]] = {"forget": _encode_all(forget, tokenizer, cfg, history)}
    if method.needs_refusals:
        answers = pick_refusals(len(forget), list(refusals or DEFAULT_REFUSALS), cfg.seed)
        chosen = [
            data_lib.Example(
                prompt=e.prompt, response=a, kind=e.kind, row_id=e.row_id + ":refusal", extras={}
            )
            for e, a in zip(forget, answers, strict=True)
        ]
        views["chosen"] = _encode_all(chosen, tokenizer, cfg, history)
    retain_encoded = _encode_all(retain, tokenizer, cfg, history) if retain else []

    # 2. Reference: precomputed sequence log-probs when that is all the method needs,
    #    the LoRA base with adapters disabled, or a frozen copy of the model.
    if cfg.lora:
        model = _wrap_lora(model, cfg)
    reference_logps: dict[str, Tensor] | None = None
    reference: Reference | None = None
    if method.needs_reference:
        use_precomputed = (
            cfg.precompute_reference
            and method.reference_is_sequence_logps
            and method.retain_kind != "kl"
        )
        if use_precomputed:
            reference_logps = _precompute_sequence_logps(
                model, views, tokenizer.pad_token_id, cfg, accelerator.device
            )
        elif cfg.lora:
            reference = Reference(model, disable_adapter=True)
        else:
            frozen = copy.deepcopy(model).eval().requires_grad_(False)
            reference = Reference(frozen.to(accelerator.device))

    frozen_now = [p for p in method.frozen_parameters(model) if p.requires_grad]
    for p in frozen_now:
        p.requires_grad_(False)
    log: Any = None
    bar: Any = None
    try:  # from here on, the finally below hands the frozen parameters back
        schedule = _Schedule(len(forget), len(retain_encoded), cfg, accelerator.num_processes)
        history.total_steps = schedule.total_steps
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        scheduler = get_linear_schedule_with_warmup(
            optimizer, int(cfg.warmup_ratio * schedule.total_steps), schedule.total_steps
        )
        model, optimizer = accelerator.prepare(model, optimizer)
        model.train()

        start_step = 0
        if cfg.resume:
            start_step = _load_checkpoint(accelerator, scheduler, cfg)
        log = (
            open(cfg.log_file, "a" if cfg.resume else "w")
            if cfg.log_file and accelerator.is_main_process
            else None
        )  # noqa: SIM115
        bar = tqdm(
            total=schedule.total_steps,
            initial=start_step,
            desc=f"{method.name}",
            disable=not (cfg.progress and accelerator.is_local_main_process),
        )
        pad = tokenizer.pad_token_id
        rank = accelerator.process_index
        weights = {"forget": method.forget_weight, "retain": method.retain_weight}
        term_keys = ["forget"] + (["retain"] if method.retain_kind and retain_encoded else [])
        for step in range(start_step, schedule.total_steps):
            micro = schedule.micro_batches(step)
            shards = [
                (epoch, schedule.shard(f, rank), schedule.shard(r, rank)) for epoch, f, r in micro
            ]
            # A process without rows in a micro-batch (tail of an epoch) runs the global
            # micro-batch's first row as a stand-in with weight 0: DDP joins the gradient
            # all-reduce (and broadcasts buffers) only from its own forward, so every process
            # must make the same forward/backward calls or the collectives deadlock.
            batches = [
                _step_batch(
                    views,
                    retain_encoded,
                    f or gf[:1],
                    r or gr[:1],
                    pad,
                    accelerator.device,
                    reference_logps,
                )
                for (_, f, r), (_, gf, gr) in zip(shards, micro, strict=True)
            ]
            # Counts come from the labels alone, so each micro-batch's terms can be weighted by
            # their share of the whole step (all micro-batches, all processes) before forward.
            counts = [
                method.counts(b["forget"]["forget"], b["retain"]) if f else {}
                for b, (_, f, _) in zip(batches, shards, strict=True)
            ]
            # Same keys on every process (even one without rows), so the all-reduces line up.
            totals: dict[str, float] = dict.fromkeys(term_keys, 0.0)
            for c in counts:
                for k, v in c.items():
                    totals[k] = totals.get(k, 0.0) + v
            totals = _all_reduce_counts(accelerator, totals)
            logged: dict[str, float] = dict.fromkeys(term_keys, 0.0)
            for i, (batch, count) in enumerate(zip(batches, counts, strict=True)):
                last = i == len(batches) - 1
                # DDP divides gradients by the process count; scale by it to undo that.
                scale = {
                    k: count.get(k, 0.0) * accelerator.num_processes / max(totals[k], 1.0)
                    for k in totals
                }  # all 0 for a stand-in
                with accelerator.no_sync(model) if not last else contextlib.nullcontext():
                    with accelerator.autocast():
                        terms = method.loss(StepBatch(model=model, reference=reference, **batch))
                        loss = terms.total(scale)
                    _check_finite_loss(
                        terms.values, loss, step + 1, shards[i][0] + 1, forget, shards[i][1]
                    )
                    accelerator.backward(loss)
                for k, v in terms.values.items():
                    share = scale[k] / accelerator.num_processes
                    logged[k] += float(v.detach()) * share
            logged = _all_reduce_counts(accelerator, logged)
            grad_norm = _checked_grad_norm(accelerator, params, cfg, step + 1, forget, shards)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)

            record = {
                "step": step + 1,
                "epoch": round((step + 1) / schedule.steps_per_epoch, 4),
                "lr": scheduler.get_last_lr()[0],
                "loss": sum(v * weights[k] for k, v in logged.items()),
                **{f"loss_{k}": v for k, v in logged.items()},
                "grad_norm": grad_norm,
            }
            history.steps.append(record)
            if log is not None:
                log.write(json.dumps(record) + "\n")
                log.flush()
            bar.set_postfix({k: f"{v:.4g}" for k, v in record.items() if k.startswith("loss")})
            bar.update(1)
            if (
                cfg.checkpoint_every
                and (step + 1) % cfg.checkpoint_every == 0
                and step + 1 < schedule.total_steps
            ):
                _save_checkpoint(accelerator, scheduler, cfg, step + 1)
            if on_step_end is not None:
                on_step_end(accelerator.unwrap_model(model), step + 1, history)
            epoch_done, within = divmod(step + 1, schedule.steps_per_epoch)
            if on_epoch_end is not None and within == 0:
                on_epoch_end(accelerator.unwrap_model(model), epoch_done)
    finally:
        if bar is not None:
            bar.close()
        if log is not None:
            log.close()
        for p in frozen_now:  # the caller gets its model back as trainable as it was
            p.requires_grad_(True)
    accelerator.wait_for_everyone()
    history.seconds = time.perf_counter() - started
    model = accelerator.unwrap_model(model)
    model.eval()
    return model, history


def _check_finite_loss(
    values: dict[str, Tensor],
    loss: Tensor,
    step: int,
    epoch: int,
    forget: list[data_lib.Example],
    rows: list[int],
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
    names = ", ".join(forget[j].row_id for j in rows[:8]) or "(none on this process)"
    raise TrainingError(
        f"loss became {total} ({what}) at step {step} (epoch {epoch}); forget rows in the "
        f"batch: {names}"
    )


def _checked_grad_norm(
    accelerator: Any,
    params: list[nn.Parameter],
    cfg: TrainConfig,
    step: int,
    forget: list[data_lib.Example],
    shards: list[tuple[int, list[int], list[int]]],
) -> float:
    """The step's total gradient norm, clipped to ``max_grad_norm`` (0: measured, not clipped);
    a NaN / ±inf norm stops the run before the optimizer step (TrainingError naming the rows)."""
    max_norm = cfg.max_grad_norm if cfg.max_grad_norm > 0 else math.inf
    norm = accelerator.clip_grad_norm_(params, max_norm)
    if norm is None:  # DeepSpeed clips inside its engine and returns nothing
        return float("nan")
    grad_norm = float(norm)
    if not math.isfinite(grad_norm):
        raise TrainingError(
            f"gradient norm became {grad_norm} at step {step}; forget rows: "
            + ", ".join(forget[j].row_id for _, f, _ in shards for j in f[:8])
        )
    return grad_norm


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


def _save_checkpoint(accelerator: Any, scheduler: Any, cfg: TrainConfig, step: int) -> None:
    """Write to a temporary directory, then rename over the previous checkpoint (atomic)."""
    final = _checkpoint_path(cfg)
    tmp = final.with_name(f".checkpoint-tmp-{os.getpid()}")
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    if accelerator.is_main_process:
        torch.save(scheduler.state_dict(), tmp / "lr_schedule.pt")
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
