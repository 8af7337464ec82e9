"""Unlearning inside a Hugging Face ``transformers.Trainer`` loop (or a TRL trainer built on it).

Two entry points, for people who already have a Trainer set-up:

* :func:`loss_func` -- a ``compute_loss_func`` for ``Trainer(compute_loss_func=...)``: a token
  loss (``"unilogit"``, ``"ga"``, ``"nll"``) on the model's logits and HF-style labels. With
  gradient accumulation the Trainer passes ``num_items_in_batch`` (the supervised tokens of the
  whole accumulated step) and the loss is ``sum / num_items_in_batch`` (``reduction="sum"``), so
  any batch size × accumulation gives the update of one big batch::

      trainer = Trainer(model=model, args=args, train_dataset=forget_rows,
                        data_collator=collator, compute_loss_func=loss_func("unilogit"))

* :class:`UnlearnTrainer` -- a ``Trainer`` whose ``compute_loss`` runs any registered method
  (:mod:`unilogit.methods`: forget term + retain term + frozen reference), with the same
  per-term token weighting as :func:`unilogit.trainer.unlearn`. Its data are a
  :class:`ForgetRetainDataset` (forget row i paired with retain row i mod n_retain, or with
  ``retain_per_row`` of them) and
  :class:`ForgetRetainCollator`.

With the same batches in the same order and the same optimizer settings (AdamW, linear
schedule, clipping) both give the weights of :func:`unilogit.trainer.unlearn` (tested).
Differences to keep in mind: HF rounds a fractional warmup up (ours rounds down) and by default
excludes biases and norms from weight decay (ours decays every trainable parameter).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from transformers import Trainer

from . import data as data_lib
from . import losses
from .errors import ConfigError
from .methods import DEFAULT_REFUSALS, Method, Reference, StepBatch, get_method, pick_refusals
from .prompts import PromptFormat

__all__ = [
    "LOSS_FUNCS",
    "ForgetRetainCollator",
    "ForgetRetainDataset",
    "UnlearnTrainer",
    "loss_func",
]

#: Token losses usable as ``compute_loss_func``: f(logits, targets, *, reduction, **options).
LOSS_FUNCS: dict[str, Callable[..., Tensor]] = {
    "unilogit": losses.unilogit_loss,
    "ga": losses.ga_loss,
    "nll": losses.nll_loss,
}


def loss_func(name: str = "unilogit", **options: Any) -> Callable[..., Tensor]:
    """A ``compute_loss_func(outputs, labels, num_items_in_batch=None)`` for ``Trainer``.

    ``loss = L_sum(shift(logits), shift(labels)) / num_items_in_batch`` where ``L_sum`` is the
    ``name`` loss with ``reduction="sum"`` (supervised next-token positions, ``labels != -100``);
    without ``num_items_in_batch`` the per-batch mean. ``options`` go to the loss (e.g.
    ``implementation="reference"`` for Unilogit). Unknown names list the valid ones.
    """
    if name not in LOSS_FUNCS:
        raise ConfigError(
            f"unknown loss {name!r} for compute_loss_func; valid: {', '.join(sorted(LOSS_FUNCS))}"
        )
    fn = LOSS_FUNCS[name]

    def compute_loss_func(outputs: Any, labels: Tensor, num_items_in_batch: Any = None) -> Tensor:
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs.logits  # (B, T, V)
        logits, targets = losses.shift_labels(logits, labels.to(logits.device))  # (B, T-1, ·)
        if num_items_in_batch is None:
            return fn(logits, targets, reduction="mean", **options)
        total = fn(logits, targets, reduction="sum", **options)
        return total / torch.as_tensor(num_items_in_batch, device=total.device).to(total.dtype)

    compute_loss_func.__name__ = f"{name}_compute_loss_func"
    return compute_loss_func


class ForgetRetainDataset(torch.utils.data.Dataset):
    """Encoded forget rows, each paired with ``retain_per_row`` retain rows (row i with retain
    rows i·k, ..., i·k + k − 1, mod n_retain).

    ``forget`` / ``retain``: anything :func:`unilogit.data.load_examples` reads. Rows are
    encoded once as training encodes them (``prompt_format``, ``max_length``). ``method``:
    a method that needs refusals (IdkDPO) adds a ``"chosen"`` view with one refusal per row
    (``refusals``, picked with ``seed``). ``retain_per_row`` (k): retain rows per forget row, so
    a batch of B forget rows carries B·k retain rows (our loop's ``retain_batch_size`` = k ·
    ``batch_size``). Item i is ``{"forget": {view: EncodedExample}, "retain": (EncodedExample,
    ...)}`` (k retain rows; no ``"retain"`` key without a retain set).
    """

    def __init__(
        self,
        tokenizer: Any,
        forget: Any,
        retain: Any = None,
        *,
        method: str | Method | None = None,
        prompt_format: PromptFormat | bool | str | None = None,
        max_length: int | None = 512,
        refusals: Sequence[str] | None = None,
        seed: int = 0,
        retain_per_row: int = 1,
    ) -> None:
        k = retain_per_row
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"retain_per_row must be an integer >= 1, got {k!r}")
        self.retain_per_row = retain_per_row

        def encode(rows: list[data_lib.Example]) -> list[data_lib.EncodedExample]:
            return data_lib.encode_examples(
                tokenizer, rows, prompt_format=prompt_format, max_length=max_length
            )

        forget_rows = data_lib.load_examples(forget, name="forget")
        self.views: dict[str, list[data_lib.EncodedExample]] = {"forget": encode(forget_rows)}
        method_obj = get_method(method) if method is not None else None
        if method_obj is not None and method_obj.needs_refusals:
            answers = pick_refusals(len(forget_rows), list(refusals or DEFAULT_REFUSALS), seed)
            chosen = [
                data_lib.Example(e.prompt, a, e.kind, e.row_id + ":refusal", messages=e.messages)
                for e, a in zip(forget_rows, answers, strict=True)
            ]
            self.views["chosen"] = encode(chosen)
        retain_rows = data_lib.load_examples(retain, name="retain") if retain is not None else []
        self.retain = encode(retain_rows) if retain_rows else []

    def __len__(self) -> int:
        return len(self.views["forget"])

    @property
    def lengths(self) -> list[int]:
        """Tokens of each forget row (prompt + answer), for length-grouped sampling."""
        return [len(e.input_ids) for e in self.views["forget"]]

    def __getitem__(self, i: int) -> dict[str, Any]:
        item: dict[str, Any] = {"forget": {k: v[i] for k, v in self.views.items()}}
        if self.retain:
            k, n = self.retain_per_row, len(self.retain)
            item["retain"] = tuple(self.retain[(i * k + j) % n] for j in range(k))
        return item


class ForgetRetainCollator:
    """Pads a list of :class:`ForgetRetainDataset` items into ``{"forget": {view: batch},
    "retain": batch}`` (each batch: ``input_ids``, ``attention_mask``, ``labels`` (rows, T), see
    :func:`unilogit.data.collate`; the retain batch holds every item's retain rows in order)."""

    def __init__(self, pad_token_id: int) -> None:
        if pad_token_id is None:
            raise ConfigError("pad_token_id is None: set tokenizer.pad_token (e.g. to EOS)")
        self.pad_token_id = int(pad_token_id)

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, Any]:
        views = features[0]["forget"].keys()
        out: dict[str, Any] = {
            "forget": {
                v: data_lib.collate([f["forget"][v] for f in features], self.pad_token_id)
                for v in views
            }
        }
        if "retain" in features[0]:
            rows = [row for f in features for row in f["retain"]]
            out["retain"] = data_lib.collate(rows, self.pad_token_id)
        return out


class UnlearnTrainer(Trainer):
    """``transformers.Trainer`` running a registered unlearning method.

    ``method`` / ``method_options``: as in :func:`unilogit.trainer.unlearn`. ``ref_model``: the
    frozen reference for methods that need one (default: a frozen copy of ``model`` taken when
    the trainer is built). ``data_collator`` defaults to :class:`ForgetRetainCollator` with the
    ``processing_class``'s pad id. ``train_dataset``: a :class:`ForgetRetainDataset` (or
    items of its shape).

    Loss of an optimizer step = Σ_terms weight · Σ_micro sum_term(micro) / N_term, with N_term
    the term's units (supervised tokens, sequences or positions) over every micro-batch and
    process of the step (:meth:`get_batch_samples` counts them before any forward pass), as in
    :func:`unilogit.trainer.unlearn`.

    :meth:`train` freezes, for the run, what the method cannot change
    (:meth:`~unilogit.methods.Method.frozen_parameters`: RMU's layers after its layer ℓ), as our
    loop does: they stay out of the optimizer (no weight decay, DDP waits for no gradient of
    theirs) and are handed back trainable afterwards. ``Trainer.evaluate(eval_dataset)`` on a
    :class:`ForgetRetainDataset` gives the method's loss on the whole evaluation set:
    ``eval_loss = Σ_terms weight · Σ_batches sum_term / Σ_batches units_term`` (each term's mean
    over all its units, as one big batch would give it) and ``eval_loss_<term>`` per term.
    """

    loss_is_scaled_for_ga = True  # compute_loss already divides by the whole step's counts

    def __init__(
        self,
        model: nn.Module | None = None,
        args: Any = None,
        *,
        method: str | Method = "unilogit",
        method_options: dict[str, Any] | None = None,
        ref_model: nn.Module | None = None,
        data_collator: Any = None,
        processing_class: Any = None,
        **kwargs: Any,
    ) -> None:
        self.method = get_method(method, **(method_options or {}))
        if data_collator is None:
            pad = getattr(processing_class, "pad_token_id", None)
            if pad is None:
                pad = getattr(processing_class, "eos_token_id", None)
            data_collator = ForgetRetainCollator(pad)
        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator,
            processing_class=processing_class,
            **kwargs,
        )
        # Our items are nested dicts ("forget", "retain"): never drop them as unused columns.
        self.args.remove_unused_columns = False
        self.reference: Reference | None = None
        self._eval_terms: dict[str, list[float]] = {}  # name -> [sum, units, weight]
        if self.method.needs_reference:
            frozen = ref_model if ref_model is not None else copy.deepcopy(self.model)
            frozen = frozen.eval().requires_grad_(False).to(self.args.device)
            self.reference = Reference(frozen)

    def train(self, *args: Any, **kwargs: Any) -> Any:
        """``Trainer.train`` with the method's frozen parameters frozen for the run."""
        frozen = [p for p in self.method.frozen_parameters(self.model) if p.requires_grad]
        for p in frozen:
            p.requires_grad_(False)
        try:
            return super().train(*args, **kwargs)
        finally:
            for p in frozen:  # the caller gets its model back as trainable as it was
                p.requires_grad_(True)

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        """Length grouping (``train_sampling_strategy="group_by_length"``, or
        ``group_by_length=True`` before transformers 5) by the forget rows' lengths, which the
        Trainer cannot read from our nested items; every other sampling is the Trainer's."""
        from transformers.trainer_pt_utils import LengthGroupedSampler

        dataset = train_dataset if train_dataset is not None else self.train_dataset
        strategy = getattr(self.args, "train_sampling_strategy", None)
        grouped = strategy == "group_by_length" or getattr(self.args, "group_by_length", False)
        if grouped and isinstance(dataset, ForgetRetainDataset):
            batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
            return LengthGroupedSampler(batch, lengths=dataset.lengths)
        if train_dataset is None:
            return super()._get_train_sampler()
        return super()._get_train_sampler(train_dataset)

    def prediction_step(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        prediction_loss_only: bool,
        ignore_keys: Any = None,
    ) -> tuple[Tensor, None, None]:
        """The method's loss terms on one evaluation batch (their sums and units are kept for
        :meth:`evaluation_loop`); no logits or labels."""
        inputs = self._prepare_inputs(inputs)
        step = StepBatch(
            model=model,
            forget=inputs["forget"],
            retain=inputs.get("retain"),
            reference=self.reference,
        )
        with torch.no_grad():
            terms = self.method.loss(step)
        for name, value in terms.values.items():
            acc = self._eval_terms.setdefault(name, [0.0, 0.0, terms.weights[name]])
            acc[0] += float(value) * terms.counts[name]  # the term's sum over its units
            acc[1] += terms.counts[name]
        return terms.total().detach(), None, None

    def evaluation_loop(self, *args: Any, **kwargs: Any) -> Any:
        """``Trainer.evaluation_loop`` with ``<prefix>_loss`` the method's loss over the whole
        set (each term's mean over all its units) and ``<prefix>_loss_<term>`` per term."""
        prefix = kwargs.get("metric_key_prefix", args[4] if len(args) > 4 else "eval")
        self._eval_terms = {}
        output = super().evaluation_loop(*args, **kwargs)
        names = sorted(self._eval_terms)
        sums = torch.tensor([self._eval_terms[k][:2] for k in names], dtype=torch.float64)
        if self.accelerator.num_processes > 1 and names:
            sums = self.accelerator.reduce(sums.to(self.accelerator.device), reduction="sum").cpu()
        total = 0.0
        for name, (value, units) in zip(names, sums.tolist(), strict=True):
            mean = value / max(units, 1.0)
            output.metrics[f"{prefix}_loss_{name}"] = mean
            total += self._eval_terms[name][2] * mean
        if names:
            output.metrics[f"{prefix}_loss"] = total
        return output

    def _counts(self, inputs: dict[str, Any]) -> dict[str, float]:
        counts = {"forget": 0.0, "retain": 0.0}
        counts.update(self.method.counts(inputs["forget"]["forget"], inputs.get("retain")))
        return counts

    def get_batch_samples(self, epoch_iterator: Any, num_batches: int, device: Any) -> tuple:
        """The step's micro-batches and ``{term: units over all of them and all processes}``."""
        batches = []
        for _ in range(num_batches):
            try:
                batches.append(next(epoch_iterator))
            except StopIteration:
                break
        totals = {"forget": 0.0, "retain": 0.0}
        for b in batches:
            for k, v in self._counts(b).items():
                totals[k] += v
        if self.accelerator.num_processes > 1:
            t = torch.tensor([totals["forget"], totals["retain"]], dtype=torch.float64)
            t = self.accelerator.reduce(t.to(self.accelerator.device), reduction="sum")
            totals = {"forget": float(t[0]), "retain": float(t[1])}
        return batches, totals

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        """Σ weight · mean_term · (this micro-batch's units / the step's units) × processes
        (DDP averages gradients over processes; the factor undoes that)."""
        counts = self._counts(inputs)
        if isinstance(num_items_in_batch, dict):
            totals, world = num_items_in_batch, self.accelerator.num_processes
        else:  # outside training_step: this batch alone, a plain mean
            totals, world = counts, 1
        scale = {k: counts[k] * world / max(totals[k], 1.0) for k in counts}
        step = StepBatch(
            model=model,
            forget=inputs["forget"],
            retain=inputs.get("retain"),
            reference=self.reference,
        )
        terms = self.method.loss(step)
        loss = terms.total(scale)
        return (loss, dict(terms.values)) if return_outputs else loss
