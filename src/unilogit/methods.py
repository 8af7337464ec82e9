"""Unlearning methods: a registry of small objects = forget loss + retain term + needs.

A method sees a :class:`StepBatch` (forget views, an optional retain batch, the model and,
when it declared one, a frozen reference) and returns :class:`LossTerms`. Each term comes
with a *count* (supervised tokens or sequences) so the trainer can weight micro-batches and
processes exactly as one big batch would (token-weighted gradient accumulation).

Adding a method = one subclass decorated with ``@register("name")`` plus a test.
"""

from __future__ import annotations

import inspect
import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from . import fused, losses
from .errors import ConfigError

Batch = dict[str, Tensor]  # input_ids, attention_mask, labels (B, T)

METHODS: dict[str, type[Method]] = {}


def register(name: str) -> Callable[[type[Method]], type[Method]]:
    """Class decorator adding a method to :data:`METHODS` under ``name``."""

    def add(cls: type[Method]) -> type[Method]:
        if name in METHODS:
            raise ValueError(f"method {name!r} is already registered")
        cls.name = name
        METHODS[name] = cls
        return cls

    return add


def get_method_class(name: str) -> type[Method]:
    """The registered class called ``name``; unknown names list the valid ones."""
    try:
        return METHODS[name]
    except KeyError:
        valid = ", ".join(sorted(METHODS))
        raise ConfigError(f"unknown method {name!r}; valid methods: {valid}") from None


def get_method(name: str | Method, **options: Any) -> Method:
    """Build a registered method by name; unknown names list the valid ones."""
    if isinstance(name, Method):
        if options:
            raise ConfigError("options cannot be given together with a Method instance")
        return name
    return get_method_class(name)(**options)


#: The options every method takes (:class:`Method`'s keywords) and their defaults.
BASE_OPTIONS: dict[str, Any] = {
    "retain_loss": "default",
    "retain_weight": 1.0,
    "forget_weight": 1.0,
}


def _option_kind(default: Any) -> str:
    """The type an option's default gives it: bool | integer | number | text | any (None)."""
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "integer"
    if isinstance(default, float):
        return "number"
    return "text" if isinstance(default, str) else "any"


_EXPECTS = {
    "bool": "true or false",
    "integer": "an integer",
    "number": "a number",
    "text": "a string",
}


def _option_error(method: str, key: str, kind: str, value: Any) -> ConfigError:
    return ConfigError(
        f"option {key!r} of method {method!r} expects {_EXPECTS[kind]}, got {value!r}"
    )


def check_option(method: str, key: str, value: Any, default: Any) -> None:
    """Raise ConfigError unless ``value`` has the type of the option's ``default`` (an int
    passes for a float; None passes for a text option such as ``retain_loss``)."""
    kind = _option_kind(default)
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = {
        "bool": isinstance(value, bool),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": number and math.isfinite(value),
        "text": value is None or isinstance(value, str),
    }.get(kind, True)
    if not ok:
        raise _option_error(method, key, kind, value)


def parse_option(method: str | type[Method], key: str, text: str) -> Any:
    """The value of option ``key`` of ``method`` written as text (``-O key=text``), typed by the
    option's default: ``true``/``false``; integers; numbers; text as is. Options whose default
    is None (and unknown keys, which the method then refuses) take JSON or else the text."""
    cls = get_method_class(method) if isinstance(method, str) else method
    defaults = cls.option_defaults()
    kind = _option_kind(defaults[key]) if key in defaults else "any"
    text = text.strip()
    if kind == "text":
        return text
    if kind == "bool":
        flag = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
        if text.lower() not in flag:
            raise _option_error(cls.name, key, kind, text)
        return flag[text.lower()]
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
    if kind == "number" and isinstance(value, str):
        try:
            value = float(text)
        except ValueError:
            raise _option_error(cls.name, key, kind, text) from None
    if kind in ("number", "integer"):
        check_option(cls.name, key, value, defaults[key])
    return value


@dataclass
class StepBatch:
    """Everything one micro-batch of a method may use."""

    model: nn.Module
    forget: dict[str, Batch]  # view name -> batch ("forget"; "chosen" for IdkDPO)
    retain: Batch | None = None
    reference: Reference | None = None
    # Precomputed reference sequence log-probs per forget view, aligned with the batch rows.
    reference_logps: dict[str, Tensor] | None = None


@dataclass
class LossTerms:
    """A weighted sum of mean losses; ``counts`` say how many units each mean averages."""

    values: dict[str, Tensor] = field(default_factory=dict)
    counts: dict[str, float] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, value: Tensor, count: float, weight: float = 1.0) -> None:
        self.values[name] = value
        self.counts[name] = float(count)
        self.weights[name] = weight

    def total(self, scale: dict[str, float] | None = None) -> Tensor:
        """Σ weight · value · scale (scale = this micro-batch's share of the step's count)."""
        scale = scale or {}
        parts = [self.weights[k] * v * scale.get(k, 1.0) for k, v in self.values.items()]
        return torch.stack(parts).sum()


class Reference:
    """A frozen copy of the model before unlearning (or the LoRA base with adapters off)."""

    def __init__(self, module: nn.Module, *, disable_adapter: bool = False) -> None:
        self.module = module
        self.disable_adapter = disable_adapter

    @torch.no_grad()
    def logits(self, batch: Batch) -> Tensor:
        if self.disable_adapter:
            with self.module.disable_adapter():
                return forward_logits(self.module, batch).detach()
        return forward_logits(self.module, batch).detach()

    @torch.no_grad()
    def hidden(self, batch: Batch, layer: int) -> Tensor:
        if self.disable_adapter:
            with self.module.disable_adapter():
                return forward_hidden(self.module, batch, layer).detach()
        return forward_hidden(self.module, batch, layer).detach()


def forward_logits(model: nn.Module, batch: Batch) -> Tensor:
    """(B, T, V) logits of a causal LM."""
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    return out.logits


def inner_model(model: nn.Module, *, fused: bool = False) -> nn.Module:
    """The Hugging Face model inside DDP / DeepSpeed (``.module``) and peft wrappers.

    ``fused``: refuse FSDP, which shards the LM-head weight the fused loss needs whole."""
    inner = model
    for _ in range(8):  # wrappers nest a few levels at most (DDP(PeftModel(LlamaForCausalLM)))
        name = type(inner).__name__
        if fused and ("FullyShardedDataParallel" in name or name.startswith("FSDP")):
            raise ConfigError(
                "fused=True needs the full LM-head weight on every process; FSDP shards it. "
                "Use DDP or DeepSpeed ZeRO-2 (configs/accelerate/ddp.yaml, deepspeed_zero2.yaml), "
                "or fused=False under FSDP"
            )
        if callable(getattr(inner, "get_base_model", None)):  # peft.PeftModel
            inner = inner.get_base_model()
        elif isinstance(getattr(inner, "module", None), nn.Module):  # DDP, DeepSpeedEngine
            inner = inner.module
        else:
            return inner
    raise ConfigError(f"could not unwrap the model ({type(model).__name__})")


def forward_final_hidden(model: nn.Module, batch: Batch) -> tuple[Tensor, Tensor, Tensor | None]:
    """Final (post-norm) hidden states and the LM head of a causal LM, without (B, T, V) logits.

    The forward pass still goes through ``model`` itself (not its inner decoder), so the wrappers
    that act in ``forward`` keep working: DDP's gradient synchronisation, accelerate's autocast,
    peft adapters. A forward hook on ``get_decoder()`` captures its ``last_hidden_state`` and
    ``logits_to_keep=1`` keeps the LM head to one position per row (B, 1, V).

    Assumes ``logits = lm_head(last_hidden_state)`` (true of Llama, Mistral, Qwen, Gemma 1,
    Phi-3, OLMo ...); models that soft-cap or scale the logits are refused.

    Returns:
        ``(hidden, weight, bias)``: (B, T, H) hidden states (graph-connected), the (V, H) LM-head
        weight and its (V,) bias or None.
    """
    inner = inner_model(model, fused=True)
    get_decoder = getattr(inner, "get_decoder", None)
    head = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    decoder = get_decoder() if callable(get_decoder) else None
    if decoder is None or decoder is inner or head is None:
        raise ConfigError(
            f"fused=True needs a Hugging Face causal LM with get_decoder() and an LM head; "
            f"{type(inner).__name__} has none. Use fused=False"
        )
    if type(head) is not nn.Linear:  # a peft LoRA / modules_to_save wrapper, a tensor-parallel..
        raise ConfigError(
            f"fused=True needs a plain nn.Linear LM head, got {type(head).__name__} (LoRA or "
            "modules_to_save on lm_head?); leave lm_head out of the adapters or use fused=False"
        )
    config = getattr(inner, "config", None)
    if getattr(config, "final_logit_softcapping", None) or getattr(config, "logit_scale", None):
        raise ConfigError(
            f"fused=True: {type(inner).__name__} soft-caps or scales its logits, which the fused "
            "loss does not model; use fused=False"
        )
    weight = head.weight  # (V, H)
    hidden_size = getattr(config, "hidden_size", weight.shape[-1])
    if weight.dim() != 2 or weight.shape[1] != hidden_size or type(weight) is not nn.Parameter:
        raise ConfigError(
            f"fused=True: the LM-head weight is sharded or partitioned (shape "
            f"{tuple(weight.shape)}, {type(weight).__name__}: FSDP / ZeRO-3?); use DDP or "
            "ZeRO-2, or fused=False"
        )
    captured: list[Tensor] = []

    def keep(module: nn.Module, args: Any, output: Any) -> None:
        captured.append(output[0])  # last_hidden_state of a ModelOutput or a tuple

    kwargs: dict[str, Any] = {}
    if "logits_to_keep" in inspect.signature(inner.forward).parameters:
        kwargs["logits_to_keep"] = 1  # (B, 1, V) logits instead of (B, T, V)
    handle = decoder.register_forward_hook(keep)
    try:
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **kwargs)
    finally:
        handle.remove()
    if len(captured) != 1:
        raise ConfigError(f"fused=True: the decoder ran {len(captured)} times in one forward pass")
    return captured[0], weight, head.bias  # (B, T, H), (V, H), (V,) | None


def _fused_aligned_loss(kind: str, model: nn.Module, batch: Batch, chunk_size: int) -> Tensor:
    """Chunked linear + loss (``unilogit`` or ``cross_entropy``) on a batch with HF labels."""
    hidden, weight, bias = forward_final_hidden(model, batch)  # (B, T, H)
    loss_fn = {
        "unilogit": fused.fused_linear_unilogit_loss,
        "cross_entropy": fused.fused_linear_cross_entropy,
    }[kind]
    # The fused loss computes in float32 itself; autocast would turn its matmuls into bf16.
    with torch.autocast(device_type=hidden.device.type, enabled=False):
        return loss_fn(
            hidden[:, :-1], weight, batch["labels"][:, 1:], bias=bias, chunk_size=chunk_size
        )  # row t predicts token t + 1


def forward_hidden(model: nn.Module, batch: Batch, layer: int) -> Tensor:
    """(B, T, H) output of decoder layer ``layer`` (0-based; hidden_states[layer + 1])."""
    out = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        output_hidden_states=True,
    )
    return out.hidden_states[layer + 1]


def aligned(model: nn.Module, batch: Batch) -> tuple[Tensor, Tensor]:
    """Aligned (logits (B, T-1, V), targets (B, T-1)) for a batch with HF-style labels."""
    return losses.shift_labels(forward_logits(model, batch), batch["labels"])


def unit_count(batch: Batch, unit: str) -> int:
    """How many units a mean over ``batch`` averages: supervised next-token ``tokens``,
    ``sequences``, or attended ``positions`` (activation losses)."""
    if unit == "tokens":
        return int((batch["labels"][:, 1:] != -100).sum())
    if unit == "sequences":
        return int(batch["labels"].shape[0])
    if unit == "positions":
        return int(batch["attention_mask"].sum())
    raise ValueError(f"unknown unit {unit!r}")


class Method:
    """Base class. Subclasses set ``hyperparameters`` and implement :meth:`forget_loss`.

    Args:
        retain_loss: ``"nll"`` (NLL on the retain batch), ``"kl"`` (KL(π_ref ‖ π_θ) on retain
            answer tokens; needs a reference model) or ``None`` (no retain term).
            ``"default"`` picks the method's own default.
        retain_weight: α, the weight of the retain term.
        forget_weight: γ, the weight of the forget term.
        **hyperparameters: method-specific (see each class's ``hyperparameters``).
    """

    name: ClassVar[str] = ""
    hyperparameters: ClassVar[dict[str, Any]] = {}
    forget_needs_reference: ClassVar[bool] = False
    default_retain: ClassVar[str | None] = "nll"
    #: Forget views beyond "forget" that the data pipeline must build (e.g. refusals).
    needs_refusals: ClassVar[bool] = False
    #: True when the reference is needed only for sequence log-probs of the forget views,
    #: which can then be computed once before training instead of keeping a second model.
    reference_is_sequence_logps: ClassVar[bool] = False
    #: What the forget / retain means average over (see :func:`unit_count`).
    forget_unit: ClassVar[str] = "tokens"
    retain_unit: ClassVar[str] = "tokens"

    def __init__(
        self,
        retain_loss: str | None = "default",
        retain_weight: float = 1.0,
        forget_weight: float = 1.0,
        **hyperparameters: Any,
    ) -> None:
        if retain_loss == "default":
            retain_loss = self.default_retain
        if retain_loss not in ("nll", "kl", None, "none"):
            raise ConfigError(f"retain_loss must be 'nll', 'kl' or None, got {retain_loss!r}")
        self.retain_kind = None if retain_loss == "none" else retain_loss
        check_option(self.name, "retain_weight", retain_weight, 1.0)
        check_option(self.name, "forget_weight", forget_weight, 1.0)
        self.retain_weight = float(retain_weight)
        self.forget_weight = float(forget_weight)
        unknown = set(hyperparameters) - set(self.hyperparameters)
        if unknown:
            valid = ", ".join(sorted(self.hyperparameters)) or "none"
            raise ConfigError(
                f"method {self.name!r} got unknown option(s) {sorted(unknown)}; "
                f"its options are: {valid}"
            )
        for key, value in hyperparameters.items():
            check_option(self.name, key, value, self.hyperparameters[key])
        self.hp = {**self.hyperparameters, **hyperparameters}

    @classmethod
    def option_defaults(cls) -> dict[str, Any]:
        """Every option the method takes (the shared ones first) with its default value."""
        return {**BASE_OPTIONS, **cls.hyperparameters}

    @property
    def needs_reference(self) -> bool:
        """Whether a frozen reference model must be available during training."""
        return self.forget_needs_reference or self.retain_kind == "kl"

    def frozen_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        """Parameters the objective cannot change (no gradient path reaches them). The trainer
        freezes them for the run: the same updates (AdamW skips parameters without a
        gradient), and DDP, which waits for a gradient of every trainable parameter, works."""
        return []

    def config(self) -> dict[str, Any]:
        """Everything that defines the objective (recorded in unlearn_config.json)."""
        return {
            "method": self.name,
            "retain_loss": self.retain_kind,
            "retain_weight": self.retain_weight,
            "forget_weight": self.forget_weight,
            **self.hp,
        }

    def forget_loss(self, step: StepBatch) -> Tensor:
        """Mean forget loss over this micro-batch's ``forget_unit``s."""
        raise NotImplementedError

    def retain_loss(self, step: StepBatch) -> Tensor:
        assert step.retain is not None
        logits, targets = aligned(step.model, step.retain)
        if self.retain_kind == "nll":
            return losses.nll_loss(logits, targets)
        assert step.reference is not None, "retain='kl' needs a reference model"
        ref_logits, _ = losses.shift_labels(
            step.reference.logits(step.retain), step.retain["labels"]
        )
        return losses.kl_retain_loss(logits, ref_logits, targets)

    def loss(self, step: StepBatch) -> LossTerms:
        terms = LossTerms()
        count = unit_count(step.forget["forget"], self.forget_unit)
        terms.add("forget", self.forget_loss(step), count, self.forget_weight)
        if self.retain_kind is not None and step.retain is not None:
            count = unit_count(step.retain, self.retain_unit)
            terms.add("retain", self.retain_loss(step), count, self.retain_weight)
        return terms

    def counts(self, forget: Batch, retain: Batch | None) -> dict[str, float]:
        """The units each term of :meth:`loss` averages over, known before any forward."""
        out = {"forget": float(unit_count(forget, self.forget_unit))}
        if self.retain_kind is not None and retain is not None:
            out["retain"] = float(unit_count(retain, self.retain_unit))
        return out

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "method")
        return f"{type(self).__name__}({opts})"


#: Unilogit's ``kl_mean`` settings: the factor (of the vocabulary size V) on the forget loss
#: that :func:`unilogit.losses.unilogit_loss` returns (the mean over answer tokens).
KL_MEANS: dict[str, Callable[[int], float]] = {
    "positions": lambda vocab: 1.0,  # ours: mean over answer tokens of the KL summed over V
    "elements": lambda vocab: 1.0 / vocab,  # F.kl_div(reduction="mean"): also divided by V
}


def _vocab_size(model: nn.Module) -> int:
    """V: the rows of the model's LM head (the fused path never builds (B, T, V) logits)."""
    return int(inner_model(model).get_output_embeddings().weight.shape[0])


@register("unilogit")
class Unilogit(Method):
    """Unilogit (Vasilev et al. 2025): reverse KL to the current logits with the gold token
    set to probability 1/V. No reference model unless ``target="reference"`` or retain="kl".

    Options: ``divergence`` ("reverse" | "forward"), ``target`` ("current" | "reference":
    the ablation that builds targets from the original model), ``implementation``
    ("fast" closed form | "reference" literal target tensor), ``fused`` (True: LM head and
    loss in one chunked pass, see :mod:`unilogit.fused`, so the (B, T, V) logits never exist;
    the NLL retain term is fused too; needs the default reverse / current / fast settings)
    and ``chunk_size`` (positions per chunk when fused: memory ~ chunk_size × V floats).
    ``kl_mean`` (:data:`KL_MEANS`): ``"positions"`` (ours: the per-position KL, summed over
    the vocabulary, averaged over answer tokens) or ``"elements"`` (the authors' ``F.kl_div``
    default reduction, which also divides by the V vocabulary entries: ours / V, V read from
    the logits' last dimension; registered as ``unilogit-authors``).
    """

    hyperparameters: ClassVar[dict[str, Any]] = {
        "divergence": "reverse",
        "target": "current",
        "implementation": "fast",
        "fused": False,
        "chunk_size": 1024,
        "kl_mean": "positions",
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.hp["kl_mean"] not in KL_MEANS:
            raise ConfigError(
                f"unilogit kl_mean must be one of {sorted(KL_MEANS)}, got {self.hp['kl_mean']!r}"
            )
        if not isinstance(self.hp["fused"], bool):
            raise ConfigError(f"unilogit fused must be true or false, got {self.hp['fused']!r}")
        if self.hp["fused"]:
            unsupported = {
                k: self.hp[k]
                for k, default in (
                    ("divergence", "reverse"),
                    ("target", "current"),
                    ("implementation", "fast"),
                )
                if self.hp[k] != default
            }
            if unsupported:
                raise ConfigError(
                    f"unilogit fused=True computes the closed form (divergence='reverse', "
                    f"target='current'); it cannot be combined with {unsupported}"
                )

    @property
    def needs_reference(self) -> bool:
        return self.hp["target"] == "reference" or self.retain_kind == "kl"

    def forget_loss(self, step: StepBatch) -> Tensor:
        batch = step.forget["forget"]
        per_entry = KL_MEANS[self.hp["kl_mean"]]
        if self.hp["fused"]:
            value = _fused_aligned_loss("unilogit", step.model, batch, self.hp["chunk_size"])
            return value * per_entry(_vocab_size(step.model))
        logits, targets = aligned(step.model, batch)
        ref_logits = None
        if self.hp["target"] == "reference":
            assert step.reference is not None
            ref_logits, _ = losses.shift_labels(step.reference.logits(batch), batch["labels"])
        elif self.hp["target"] != "current":
            raise ConfigError(
                f"unilogit target must be 'current' or 'reference', got {self.hp['target']!r}"
            )
        value = losses.unilogit_loss(
            logits,
            targets,
            implementation=self.hp["implementation"],
            ref_logits=ref_logits,
            divergence=self.hp["divergence"],
        )
        return value * per_entry(logits.shape[-1])  # (B, T-1, V): V = logits.shape[-1]

    def retain_loss(self, step: StepBatch) -> Tensor:
        if self.hp["fused"] and self.retain_kind == "nll":
            assert step.retain is not None
            return _fused_aligned_loss(
                "cross_entropy", step.model, step.retain, self.hp["chunk_size"]
            )
        return super().retain_loss(step)


@register("unilogit-authors")
class UnilogitAuthors(Unilogit):
    """Unilogit weighted as in the authors' code: forget term = ours / V against the retain NLL.

    Their ``F.kl_div(..., reduction="mean")`` (PyTorch's default) divides the summed KL by
    every element, (answer tokens) × V, so their forget term is :class:`Unilogit`'s divided by
    the vocabulary size V (read from the model's logits, so it is right for any model): the
    same as ``unilogit -O kl_mean=elements``, under its own name so that a comparison keeps
    the two weightings apart.
    """

    hyperparameters: ClassVar[dict[str, Any]] = {**Unilogit.hyperparameters, "kl_mean": "elements"}


@register("ga")
class GradientAscent(Method):
    """GA: maximise the forget NLL (minimise mean log p_k). No retain term by default."""

    default_retain: ClassVar[str | None] = None

    def forget_loss(self, step: StepBatch) -> Tensor:
        batch = step.forget["forget"]
        return losses.ga_loss(*aligned(step.model, batch))


@register("graddiff")
class GradDiff(GradientAscent):
    """GradDiff: −NLL_f + α · NLL_r."""

    default_retain: ClassVar[str | None] = "nll"


def _sequence_logps(model: nn.Module, batch: Batch) -> tuple[Tensor, Tensor]:
    logits, targets = aligned(model, batch)
    return losses.sequence_logps(logits, targets)


def _reference_sequence_logps(step: StepBatch, view: str) -> Tensor:
    if step.reference_logps is not None and view in step.reference_logps:
        return step.reference_logps[view]
    assert step.reference is not None, "this method needs a reference model"
    batch = step.forget[view]
    ref_logits, targets = losses.shift_labels(step.reference.logits(batch), batch["labels"])
    return losses.sequence_logps(ref_logits, targets)[0]


@register("npo")
class NPO(Method):
    """NPO (Zhang et al. 2024): (2/β)·log(1 + (π_θ/π_ref)^β) on summed sequence log-probs."""

    forget_unit: ClassVar[str] = "sequences"
    hyperparameters: ClassVar[dict[str, Any]] = {"beta": 0.1}
    forget_needs_reference: ClassVar[bool] = True
    reference_is_sequence_logps: ClassVar[bool] = True

    def forget_loss(self, step: StepBatch) -> Tensor:
        batch = step.forget["forget"]
        policy, _ = _sequence_logps(step.model, batch)
        ref = _reference_sequence_logps(step, "forget")
        return losses.npo_loss(policy, ref, beta=self.hp["beta"])


@register("simnpo")
class SimNPO(Method):
    """SimNPO (Fan et al. 2024): reference-free, length-normalised NPO."""

    forget_unit: ClassVar[str] = "sequences"
    hyperparameters: ClassVar[dict[str, Any]] = {"beta": 4.5, "gamma": 0.0}

    def forget_loss(self, step: StepBatch) -> Tensor:
        batch = step.forget["forget"]
        policy, lengths = _sequence_logps(step.model, batch)
        value = losses.simnpo_loss(policy, lengths, beta=self.hp["beta"], gamma=self.hp["gamma"])
        return value


@register("undial")
class UnDIAL(Method):
    """UnDIAL (Dong et al. 2024): CE to softmax(z_ref − γ·onehot(k)) from the frozen
    original model; no retain term by default."""

    hyperparameters: ClassVar[dict[str, Any]] = {"gamma": 10.0}
    forget_needs_reference: ClassVar[bool] = True
    default_retain: ClassVar[str | None] = None

    def forget_loss(self, step: StepBatch) -> Tensor:
        batch = step.forget["forget"]
        assert step.reference is not None
        logits, targets = aligned(step.model, batch)
        ref_logits, _ = losses.shift_labels(step.reference.logits(batch), batch["labels"])
        value = losses.undial_loss(logits, ref_logits, targets, gamma=self.hp["gamma"])
        return value


@register("idkdpo")
class IdkDPO(Method):
    """IdkDPO: DPO with a refusal as the chosen answer and the forget answer as rejected."""

    forget_unit: ClassVar[str] = "sequences"
    hyperparameters: ClassVar[dict[str, Any]] = {"beta": 0.1}
    forget_needs_reference: ClassVar[bool] = True
    needs_refusals: ClassVar[bool] = True
    reference_is_sequence_logps: ClassVar[bool] = True

    def forget_loss(self, step: StepBatch) -> Tensor:
        rejected_batch, chosen_batch = step.forget["forget"], step.forget["chosen"]
        rejected, _ = _sequence_logps(step.model, rejected_batch)
        chosen, _ = _sequence_logps(step.model, chosen_batch)
        value = losses.dpo_loss(
            chosen,
            rejected,
            _reference_sequence_logps(step, "chosen"),
            _reference_sequence_logps(step, "forget"),
            beta=self.hp["beta"],
        )
        return value


@register("rmu")
class RMU(Method):
    """RMU (Li et al. 2024): push layer-ℓ activations on forget data towards c·u (u a fixed
    random unit vector), keep retain activations equal to the reference's (MSE).

    ``layer`` None → round(7/16 · n_layers) (layer 7 of Llama-3.2-1B's 16). RMU's retain term is
    always the activation MSE to the reference (any ``retain`` other than None selects it).
    """

    forget_unit: ClassVar[str] = "positions"
    retain_unit: ClassVar[str] = "positions"
    hyperparameters: ClassVar[dict[str, Any]] = {"layer": None, "steering_coeff": 20.0, "seed": 0}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.retain_kind is not None:
            self.retain_kind = "activations"
        self._control: Tensor | None = None

    @property
    def needs_reference(self) -> bool:
        return self.retain_kind is not None

    def resolve_layer(self, model: nn.Module) -> int:
        if self.hp["layer"] is not None:
            return int(self.hp["layer"])
        n_layers = int(getattr(inner_model(model).config, "num_hidden_layers", 2))
        return min(n_layers - 1, max(0, math.floor(7 / 16 * n_layers + 0.5)))

    def frozen_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        """Everything after decoder layer ℓ (later layers, final norm, LM head): both terms
        only read layer ℓ's output. Nothing is frozen when the layers cannot be found."""
        inner = inner_model(model)
        get_decoder = getattr(inner, "get_decoder", None)
        decoder = get_decoder() if callable(get_decoder) else None
        layers = getattr(decoder, "layers", None)
        if not isinstance(layers, nn.ModuleList) or not hasattr(inner, "get_input_embeddings"):
            return []
        layer = self.resolve_layer(inner)
        upstream = [inner.get_input_embeddings(), *layers[: layer + 1]]
        if layer == len(layers) - 1 and isinstance(getattr(decoder, "norm", None), nn.Module):
            upstream.append(decoder.norm)  # the last hidden state is taken after the final norm
        keep = {id(p) for module in upstream for p in module.parameters()}
        return [p for p in inner.parameters() if id(p) not in keep]

    def control(self, hidden_size: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        if self._control is None or self._control.shape[-1] != hidden_size:
            gen = torch.Generator().manual_seed(int(self.hp["seed"]))
            u = torch.rand(hidden_size, generator=gen, dtype=torch.float64)
            self._control = (u / u.norm() * float(self.hp["steering_coeff"])).float()
        return self._control.to(device=device, dtype=dtype)

    def forget_loss(self, step: StepBatch) -> Tensor:
        batch = step.forget["forget"]
        layer = self.resolve_layer(step.model)
        h = forward_hidden(step.model, batch, layer)  # (B, T, H)
        mask = batch["attention_mask"].bool()
        value = losses.rmu_loss(h, self.control(h.shape[-1], h.device, h.dtype), mask)
        return value

    def retain_loss(self, step: StepBatch) -> Tensor:
        assert step.retain is not None and step.reference is not None
        layer = self.resolve_layer(step.model)
        h = forward_hidden(step.model, step.retain, layer)
        ref = step.reference.hidden(step.retain, layer)
        mask = step.retain["attention_mask"].bool()
        return losses.rmu_retain_loss(h, ref, mask)


def pick_refusals(n: int, refusals: list[str], seed: int) -> list[str]:
    """Deterministically assign one refusal answer to each of ``n`` forget rows."""
    rng = random.Random(seed)
    return [rng.choice(refusals) for _ in range(n)]


DEFAULT_REFUSALS = [
    "I don't know.",
    "I'm not sure about that.",
    "I have no information about that.",
    "I can't answer that.",
    "That is not something I know.",
]
