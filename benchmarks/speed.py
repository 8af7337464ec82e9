"""Step time and peak memory of unlearning objectives, relative to plain fine-tuning.

Not run in CI (``tests/test_speed_smoke.py`` only checks that it runs). Two tables:

1. **Training step** (default): a Llama-architecture model built from a config (random weights,
   no download), one optimizer step = forward + loss + backward + AdamW through the real
   ``unilogit`` method objects, for each variant in :data:`VARIANTS`. Reported: median step time
   after warmup, peak memory above the process's baseline (weights + AdamW states + activations
   + logits), and both as ratios to plain fine-tuning (cross-entropy).
2. **Loss only** (``--loss-only``): the LM head + loss + backward on (N, H) hidden states for a
   few vocabulary sizes: the naive path (materialised (N, V) logits) against the chunked fused
   path of :mod:`unilogit.fused`. Reported: extra peak memory over the inputs, and time.

Each measurement runs in its own subprocess (``--no-isolate`` keeps it in-process), so peak
memory is that process's own: on CUDA ``torch.cuda.max_memory_allocated``; on the CPU the peak
resident set size (Linux ``VmHWM``, reset before the measured region through
``/proc/self/clear_refs``; ``ru_maxrss`` where that is not possible). Step times come from one
more process that runs all variants on one model, interleaved step by step (``--paired``, the
default), and the time ratio is the median over rounds of t_variant / t_finetune: on a shared,
noisy machine a load change then hits all variants alike. ``--rounds`` repeats everything.

Examples::

    OMP_NUM_THREADS=2 python benchmarks/speed.py --vocab 32000 --hidden 256 --layers 4 \\
        --seq-len 512 --batch 4 --steps 5
    OMP_NUM_THREADS=2 python benchmarks/speed.py --loss-only --tokens 2048 --hidden 512 \\
        --vocabs 32000 128256
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

#: name -> (what it is, method name, method options, how the reference is provided)
#: reference: None (no reference), "precomputed" (sequence log-probs computed once before
#: training, the trainer's default for NPO) or "live" (a frozen copy of the model run every step).
VARIANTS: dict[str, tuple[str, str, dict[str, Any], str | None]] = {
    "finetune": ("plain fine-tuning: cross-entropy (unilogit.finetune)", "finetune", {}, None),
    "finetune_torch": (
        "plain fine-tuning: torch F.cross_entropy, as HF models compute it",
        "finetune_torch",
        {},
        None,
    ),
    "unilogit": ("Unilogit, closed form (default)", "unilogit", {}, None),
    "unilogit_fused": ("Unilogit, fused LM head + loss", "unilogit", {"fused": True}, None),
    "unilogit_reference": (
        "Unilogit, literal (B,T,V) target",
        "unilogit",
        {"implementation": "reference"},
        None,
    ),
    "npo": ("NPO, reference log-probs precomputed", "npo", {}, "precomputed"),
    "npo_live_reference": ("NPO, live reference model", "npo", {}, "live"),
    "undial": ("UnDIAL (needs a live reference model)", "undial", {}, "live"),
    "graddiff": ("GradDiff: forget + retain batch (2 passes)", "graddiff", {}, None),
}

#: name -> (what it is, function of (hidden, weight, targets, chunk_size) -> scalar loss)
LOSS_PATHS: dict[str, str] = {
    "ce_naive": "cross-entropy on (N, V) logits",
    "ce_torch_naive": "torch F.cross_entropy on (N, V) logits",
    "unilogit_naive": "Unilogit closed form on (N, V) logits",
    "unilogit_reference_naive": "Unilogit literal target on (N, V) logits",
    "ce_fused": "chunked fused cross-entropy",
    "unilogit_fused": "chunked fused Unilogit",
}


def _flag(help_text: str, default: Any = None, **kwargs: Any) -> Any:
    """A dataclass field whose ``help`` becomes the command-line flag's help."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help_text, **kwargs})
    return field(default=default, metadata={"help": help_text, **kwargs})


@dataclass
class SpeedConfig:
    """What to measure (every field is a command-line flag: ``--seq-len`` for ``seq_len``)."""

    vocab: int = _flag("vocabulary size V of the model", 32000)
    hidden: int = _flag("hidden size H (intermediate size = 8H/3, rounded to 64)", 256)
    layers: int = _flag("decoder layers", 4)
    heads: int = _flag("attention heads (H must be divisible by it)", 4)
    seq_len: int = _flag("tokens per row (a quarter of them are prompt, not supervised)", 512)
    batch: int = _flag("rows per step (GradDiff also gets a retain batch of the same size)", 4)
    steps: int = _flag("timed optimizer steps per variant (median reported)", 5)
    warmup: int = _flag("untimed steps first (allocator, AdamW states, caches)", 1)
    dtype: str = _flag("weights' dtype: float32 | bfloat16", "float32")
    device: str = _flag("cpu | cuda | auto (cuda if available)", "auto")
    threads: int = _flag("torch threads per measuring process (0: torch's default)", 0)
    rounds: int = _flag("repeat all variants this many times, interleaved (median kept)", 1)
    paired: bool = _flag(
        "time the variants interleaved step by step in one process (robust to a noisy machine); "
        "the per-variant processes then measure memory only (1 step)",
        True,
    )
    variants: list[str] = _flag(
        "variants to run (default all): " + ", ".join(VARIANTS), list(VARIANTS), nargs="+"
    )
    chunk_size: int = _flag("positions per chunk of the fused paths", 1024)
    seed: int = _flag("seed of the weights and the batches", 0)
    isolate: bool = _flag("one subprocess per measurement (off: in-process, less exact)", True)
    # loss-only table
    loss_only: bool = _flag("measure the loss alone (table 2) instead of training steps", False)
    tokens: int = _flag("loss-only: positions N (e.g. 4 rows x 512)", 2048)
    vocabs: list[int] = _flag("loss-only: vocabulary sizes", [32000, 128256], nargs="+", type=int)
    paths: list[str] = _flag(
        "loss-only paths (default all): " + ", ".join(LOSS_PATHS), list(LOSS_PATHS), nargs="+"
    )


# --------------------------------------------------------------------------- memory


class PeakMemory:
    """Peak memory of a region of code, in bytes above :meth:`start`'s level.

    CUDA: the caching allocator's statistics (exact, tensors only). CPU: the process's resident
    set size; its high-water mark is reset through ``/proc/self/clear_refs`` (Linux >= 4.0),
    else the lifetime ``ru_maxrss`` is used (then run each measurement in its own process).
    """

    def __init__(self, device: torch.device, *, collect: bool = True) -> None:
        self.cuda = device.type == "cuda"
        self.collect = collect  # gc.collect() first (~0.4 s with torch + transformers loaded)
        self.baseline = 0

    @staticmethod
    def _status(key: str) -> int | None:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024  # kB
        except OSError:
            return None
        return None

    def current(self) -> int:
        if self.cuda:
            return torch.cuda.memory_allocated()
        rss = self._status("VmRSS")
        return rss if rss is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def start(self) -> None:
        """Forget the peak so far; later peaks are measured from the current level."""
        if self.collect:
            gc.collect()
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            try:
                Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to VmRSS
            except OSError:
                pass
        self.baseline = self.current()

    def peak(self) -> int:
        """Highest level since :meth:`start`, minus the level at :meth:`start` (>= 0)."""
        if self.cuda:
            torch.cuda.synchronize()
            top = torch.cuda.max_memory_allocated()
        else:
            top = self._status("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return max(0, top - self.baseline)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _dtype(name: str) -> torch.dtype:
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}[name]
    except KeyError:
        raise SystemExit(f"--dtype must be float32 or bfloat16, got {name!r}") from None


# --------------------------------------------------------------------------- training step


def build_model(cfg: SpeedConfig) -> torch.nn.Module:
    """A Llama-architecture causal LM from a config (random weights, untied LM head)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(cfg.seed)
    config = LlamaConfig(
        vocab_size=cfg.vocab,
        hidden_size=cfg.hidden,
        intermediate_size=max(64, round(cfg.hidden * 8 / 3 / 64) * 64),
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        num_key_value_heads=cfg.heads,
        max_position_embeddings=max(cfg.seq_len, 128),
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config)


def make_batch(cfg: SpeedConfig, salt: int, device: torch.device) -> dict[str, torch.Tensor]:
    """(batch, seq_len) random ids; the first quarter of each row is an unsupervised prompt."""
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + salt)
    ids = torch.randint(0, cfg.vocab, (cfg.batch, cfg.seq_len), generator=gen)
    labels = ids.clone()
    labels[:, : cfg.seq_len // 4] = -100
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    return {k: v.to(device) for k, v in batch.items()}


def _method(name: str, options: dict[str, Any], chunk_size: int) -> Any:
    from unilogit.methods import get_method
    from unilogit.trainer import _FineTune  # the objective unilogit.finetune trains with

    if name == "finetune":
        return _FineTune()
    if name == "finetune_torch":
        return _TorchCrossEntropy()
    options = dict(options)
    if options.get("fused"):
        options["chunk_size"] = chunk_size
    retain = "nll" if name == "graddiff" else None  # one forget batch for everything else
    return get_method(name, retain_loss=retain, **options)


def _torch_cross_entropy(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Plain fine-tuning the way HF causal LMs compute their loss (F.cross_entropy)."""
    import torch.nn.functional as F

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return F.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), batch["labels"][:, 1:].flatten(), ignore_index=-100
    )


def _TorchCrossEntropy() -> Any:  # noqa: N802 (a class built on first use: lazy imports)
    from unilogit.trainer import _FineTune

    class TorchCrossEntropy(_FineTune):
        name = "finetune_torch"

        def forget_loss(self, step: Any) -> torch.Tensor:
            return _torch_cross_entropy(step.model, step.forget["forget"])

    return TorchCrossEntropy()


def _step_fn(
    cfg: SpeedConfig,
    variant: str,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    frozen: Callable[[], torch.nn.Module],
) -> Callable[[], float]:
    """A function doing one timed optimizer step of ``variant`` (returns seconds).

    ``frozen()`` gives the frozen reference copy of the model (built on first use)."""
    from unilogit import losses
    from unilogit.methods import Reference, StepBatch, aligned

    _, method_name, options, reference_kind = VARIANTS[variant]
    method = _method(method_name, options, cfg.chunk_size)
    forget = make_batch(cfg, 1, device)
    retain = make_batch(cfg, 2, device) if method.retain_kind is not None else None
    reference = reference_logps = None
    if reference_kind == "live":
        reference = Reference(frozen())
    elif reference_kind == "precomputed":
        with torch.no_grad():
            reference_logps = {"forget": losses.sequence_logps(*aligned(model, forget))[0]}

    def step() -> float:
        _sync(device)
        start = time.perf_counter()
        terms = method.loss(
            StepBatch(
                model=model,
                forget={"forget": forget},
                retain=retain,
                reference=reference,
                reference_logps=reference_logps,
            )
        )
        terms.total().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _sync(device)
        return time.perf_counter() - start

    return step


def _setup(cfg: SpeedConfig) -> tuple[torch.device, torch.nn.Module, Any, Callable[[], Any]]:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = _device(cfg.device)
    model = build_model(cfg).to(device=device, dtype=_dtype(cfg.dtype)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    copies: list[torch.nn.Module] = []

    def frozen() -> torch.nn.Module:
        if not copies:
            copies.append(copy.deepcopy(model).eval().requires_grad_(False))
        return copies[0]

    return device, model, optimizer, frozen


def measure_step(cfg: SpeedConfig, variant: str, *, prime: bool = True) -> dict[str, Any]:
    """Median optimizer-step time and peak memory of one variant alone in its process.

    ``prime``: first run the same variant on a miniature model, so that lazy imports, thread
    pools and first-call set-up are in the baseline rather than in the measured peak.
    """
    if prime:
        mini = dataclasses.replace(
            cfg, vocab=64, hidden=32, layers=1, heads=2, seq_len=16, batch=2, steps=1, warmup=1
        )
        measure_step(mini, variant, prime=False)
    memory = PeakMemory(_device(cfg.device), collect=cfg.isolate)
    memory.start()  # the process before the model: interpreter + libraries, warmed up
    device, model, optimizer, frozen = _setup(cfg)
    step = _step_fn(cfg, variant, model, optimizer, device, frozen)
    for _ in range(cfg.warmup):
        step()
    static = max(0, memory.current() - memory.baseline)
    times = [step() for _ in range(cfg.steps)]
    return {
        "variant": variant,
        "seconds": statistics.median(times),
        "peak_bytes": memory.peak(),  # above the interpreter + libraries
        "static_bytes": static,  # weights, AdamW states, reference copy (after warmup)
        "device": str(device),
        "threads": torch.get_num_threads(),
    }


def measure_paired_times(cfg: SpeedConfig, variants: list[str]) -> dict[str, dict[str, float]]:
    """Step times of all variants interleaved in ONE process on one model: round r times one
    step of each variant (order rotated every round), so that a load change on a shared machine
    hits every variant alike. Returns {variant: {"seconds": median, "ratio": median over
    rounds of t_variant / t_finetune, "torch_ratio": the same against finetune_torch}} (each
    only when that baseline is among the variants)."""
    device, model, optimizer, frozen = _setup(cfg)
    steps = {v: _step_fn(cfg, v, model, optimizer, device, frozen) for v in variants}
    for _ in range(cfg.warmup):
        for step in steps.values():
            step()
    times: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(cfg.steps):
        order = variants[r % len(variants) :] + variants[: r % len(variants)]
        for v in order:
            times[v].append(steps[v]())
    out: dict[str, dict[str, float]] = {}
    for v in variants:
        out[v] = {"seconds": statistics.median(times[v])}
        for base, key in (("finetune", "ratio"), ("finetune_torch", "torch_ratio")):
            if base in times:
                ratios = [a / b for a, b in zip(times[v], times[base], strict=True)]
                out[v][key] = statistics.median(ratios)
    return out


# --------------------------------------------------------------------------- loss only


def _loss_fn(path: str) -> Callable[..., torch.Tensor]:
    from unilogit import fused, losses

    def naive(kind: str) -> Callable[..., torch.Tensor]:
        def fn(hidden, weight, targets, chunk_size):
            logits = hidden @ weight.T  # (N, V) materialised
            if kind == "ce":
                return losses.nll_loss(logits, targets)
            if kind == "ce_torch":
                return torch.nn.functional.cross_entropy(logits.float(), targets)
            return losses.unilogit_loss(logits, targets, implementation=kind)

        return fn

    def chunked(fn):
        return lambda hidden, weight, targets, chunk_size: fn(
            hidden, weight, targets, chunk_size=chunk_size
        )

    return {
        "ce_naive": naive("ce"),
        "ce_torch_naive": naive("ce_torch"),
        "unilogit_naive": naive("fast"),
        "unilogit_reference_naive": naive("reference"),
        "ce_fused": chunked(fused.fused_linear_cross_entropy),
        "unilogit_fused": chunked(fused.fused_linear_unilogit_loss),
    }[path]


def measure_loss(cfg: SpeedConfig, path: str, vocab: int) -> dict[str, Any]:
    """Extra peak memory (over the inputs) and median time of loss + backward on (N, H)."""
    fn = _loss_fn(path)  # imports before any measurement
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = _device(cfg.device)
    dtype = _dtype(cfg.dtype)
    gen = torch.Generator().manual_seed(cfg.seed)
    hidden = torch.randn(cfg.tokens, cfg.hidden, generator=gen).to(device, dtype)  # (N, H)
    weight = (torch.randn(vocab, cfg.hidden, generator=gen) / cfg.hidden**0.5).to(device, dtype)
    targets = torch.randint(0, vocab, (cfg.tokens,), generator=gen).to(device)  # (N,)
    hidden.requires_grad_(True)
    weight.requires_grad_(True)
    memory = PeakMemory(device, collect=cfg.isolate)

    def run() -> float:
        hidden.grad = weight.grad = None
        _sync(device)
        start = time.perf_counter()
        fn(hidden, weight, targets, cfg.chunk_size).backward()
        _sync(device)
        return time.perf_counter() - start

    for _ in range(cfg.warmup):
        run()
    hidden.grad = weight.grad = None
    memory.start()  # the inputs are in the baseline; their gradients are part of the peak
    times = [run() for _ in range(cfg.steps)]
    return {
        "path": path,
        "vocab": vocab,
        "seconds": statistics.median(times),
        "peak_bytes": memory.peak(),
        "logits_bytes": cfg.tokens * vocab * 4,  # one float32 (N, V) tensor, for scale
        "device": str(device),
    }


# --------------------------------------------------------------------------- driver


def _worker_command(cfg: SpeedConfig, job: dict[str, Any]) -> list[str]:
    payload = json.dumps({"config": dataclasses.asdict(cfg), "job": job})
    return [sys.executable, str(Path(__file__).resolve()), "--worker", payload]


def _run_job(cfg: SpeedConfig, job: dict[str, Any]) -> dict[str, Any]:
    if not cfg.isolate:
        return _do_job(cfg, job)
    started = time.perf_counter()
    proc = subprocess.run(_worker_command(cfg, job), capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark worker {job} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(lines[-1][len("RESULT ") :])
    summary = (
        {v: round(t.get("ratio", t["seconds"]), 3) for v, t in result["times"].items()}
        if "times" in result
        else f"{result['seconds']:.3f} s, peak {_mb(result['peak_bytes'])} MiB"
    )
    print(
        f"  {job}: {summary} ({time.perf_counter() - started:.0f} s with start-up)",
        file=sys.stderr,
        flush=True,
    )
    return result


def _do_job(cfg: SpeedConfig, job: dict[str, Any]) -> dict[str, Any]:
    if job["kind"] == "step":  # in-process runs share one warmed-up process: no priming
        return measure_step(cfg, job["variant"], prime=cfg.isolate)
    if job["kind"] == "paired":
        return {"times": measure_paired_times(cfg, job["variants"])}
    return measure_loss(cfg, job["path"], job["vocab"])


def _combine(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Median time over rounds; the largest peak (memory hardly varies; stay conservative)."""
    out = dict(results[0])
    out["seconds"] = statistics.median(r["seconds"] for r in results)
    for key in ("peak_bytes", "static_bytes"):
        if key in out:
            out[key] = max(r[key] for r in results)
    return out


def run_step_benchmark(cfg: SpeedConfig) -> list[dict[str, Any]]:
    """One row per variant (rounds interleaved), with ratios to ``finetune`` when measured."""
    unknown = set(cfg.variants) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variant(s) {sorted(unknown)}; valid: {', '.join(VARIANTS)}")
    memory_cfg = dataclasses.replace(cfg, steps=1) if cfg.paired else cfg
    by_variant: dict[str, list[dict[str, Any]]] = {v: [] for v in cfg.variants}
    paired: list[dict[str, dict[str, float]]] = []
    for _ in range(max(1, cfg.rounds)):
        for variant in cfg.variants:
            job = {"kind": "step", "variant": variant}
            by_variant[variant].append(_run_job(memory_cfg, job))
        if cfg.paired:
            paired.append(_run_job(cfg, {"kind": "paired", "variants": cfg.variants})["times"])
    rows = [_combine(results) for results in by_variant.values()]
    base = next((r for r in rows if r["variant"] == "finetune"), None)
    torch_base = next((r for r in rows if r["variant"] == "finetune_torch"), None)
    for row in rows:
        if torch_base is not None:
            row["torch_peak_ratio"] = row["peak_bytes"] / max(torch_base["peak_bytes"], 1)
            row["torch_time_ratio"] = (
                statistics.median(p[row["variant"]]["torch_ratio"] for p in paired)
                if paired
                else row["seconds"] / torch_base["seconds"]
            )
        v = row["variant"]
        row["description"] = VARIANTS[v][0]
        if paired:
            row["seconds"] = statistics.median(p[v]["seconds"] for p in paired)
            if base is not None:
                row["time_ratio"] = statistics.median(p[v]["ratio"] for p in paired)
        elif base is not None:
            row["time_ratio"] = row["seconds"] / base["seconds"]
        if base is not None:
            row["peak_ratio"] = row["peak_bytes"] / max(base["peak_bytes"], 1)
    return rows


def run_loss_benchmark(cfg: SpeedConfig) -> list[dict[str, Any]]:
    """One row per (vocab, path), with memory saved relative to the naive path of each loss."""
    unknown = set(cfg.paths) - set(LOSS_PATHS)
    if unknown:
        raise SystemExit(f"unknown path(s) {sorted(unknown)}; valid: {', '.join(LOSS_PATHS)}")
    jobs = [{"kind": "loss", "path": p, "vocab": v} for v in cfg.vocabs for p in cfg.paths]
    results: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for _ in range(max(1, cfg.rounds)):
        for job in jobs:
            results.setdefault((job["vocab"], job["path"]), []).append(_run_job(cfg, job))
    rows = [_combine(r) for r in results.values()]
    naive = {(r["vocab"], r["path"]): r for r in rows}
    for row in rows:
        if row["path"].endswith("_fused"):
            ref = naive.get((row["vocab"], row["path"].replace("_fused", "_naive")))
            if ref is not None:
                row["saved_bytes"] = ref["peak_bytes"] - row["peak_bytes"]
                row["peak_ratio"] = row["peak_bytes"] / max(ref["peak_bytes"], 1)
                row["time_ratio"] = row["seconds"] / ref["seconds"]
    return rows


def _mb(n: float) -> str:
    return f"{n / 2**20:,.0f}"


def format_step_table(cfg: SpeedConfig, rows: list[dict[str, Any]]) -> str:
    head = (
        f"Training step: Llama V={cfg.vocab} H={cfg.hidden} L={cfg.layers}, batch {cfg.batch} x "
        f"{cfg.seq_len} tokens, {cfg.dtype}, {rows[0]['device']} ({rows[0]['threads']} threads), "
        f"AdamW; median of {cfg.steps} steps after {cfg.warmup} warmup, {cfg.rounds} round(s)"
        f"{', variants interleaved step by step in one process (time)' if cfg.paired else ''}\n"
        "peak = peak memory above the bare interpreter (weights + AdamW + reference + step); "
        "ratios to plain fine-tuning (unilogit.finetune's NLL, and torch's F.cross_entropy as HF "
        "models use it)\n\n"
    )
    lines = [
        "| variant | step s | × finetune | × torch CE | peak MiB | × finetune | × torch CE "
        "| of which static MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    nan = float("nan")
    for r in rows:
        lines.append(
            f"| {r['variant']} ({r['description']}) | {r['seconds']:.3f} | "
            f"{r.get('time_ratio', nan):.2f} | {r.get('torch_time_ratio', nan):.2f} | "
            f"{_mb(r['peak_bytes'])} | {r.get('peak_ratio', nan):.2f} | "
            f"{r.get('torch_peak_ratio', nan):.2f} | {_mb(r['static_bytes'])} |"
        )
    return head + "\n".join(lines)


def format_loss_table(cfg: SpeedConfig, rows: list[dict[str, Any]]) -> str:
    head = (
        f"Loss only: LM head + loss + backward, N={cfg.tokens} positions, H={cfg.hidden}, "
        f"{cfg.dtype}, {rows[0]['device']}, fused chunk_size={cfg.chunk_size}; peak = memory "
        "above the inputs (includes the V x H weight gradient)\n\n"
    )
    lines = [
        "| V | path | time s | peak MiB | (N,V) fp32 MiB | fused vs naive peak | saved MiB |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(rows, key=lambda r: (r["vocab"], list(LOSS_PATHS).index(r["path"]))):
        ratio = f"{r['peak_ratio']:.2f}x" if "peak_ratio" in r else ""
        saved = _mb(r["saved_bytes"]) if "saved_bytes" in r else ""
        lines.append(
            f"| {r['vocab']} | {r['path']} | {r['seconds']:.3f} | {_mb(r['peak_bytes'])} | "
            f"{_mb(r['logits_bytes'])} | {ratio} | {saved} |"
        )
    return head + "\n".join(lines)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for f in dataclasses.fields(SpeedConfig):
        flag = "--" + f.name.replace("_", "-")
        meta = dict(f.metadata)
        help_text = meta.pop("help")
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        if isinstance(default, bool):
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=default, help=help_text
            )
        else:
            kind = meta.pop("type", type(default) if not isinstance(default, list) else str)
            parser.add_argument(flag, type=kind, default=default, help=help_text, **meta)
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one measurement
    return parser


def main(cfg: SpeedConfig, json_path: str | None = None) -> list[dict[str, Any]]:
    """Run the requested table, print it, return its rows."""
    if cfg.loss_only:
        rows = run_loss_benchmark(cfg)
        print(format_loss_table(cfg, rows))
    else:
        rows = run_step_benchmark(cfg)
        print(format_step_table(cfg, rows))
    if json_path:
        Path(json_path).write_text(json.dumps(rows, indent=2) + "\n")
    return rows


def cli(argv: Sequence[str] | None = None) -> None:
    args = vars(make_parser().parse_args(argv))
    worker, json_path = args.pop("worker"), args.pop("json")
    if worker:  # a measuring subprocess: one JSON line back to the parent
        payload = json.loads(worker)
        result = _do_job(SpeedConfig(**payload["config"]), payload["job"])
        print("RESULT " + json.dumps(result), flush=True)
        return
    main(SpeedConfig(**args), json_path)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cli()
