"""What the TOFU-style QA benchmarks (TOFU, world) share on top of the benchmark contract:
evaluation with :func:`unilogit.eval.evaluate_qa`, the Forget Quality reference (the retain
model's per-question forget truth ratios), the gold baseline, the flat summary and the report's
columns and curves."""

from __future__ import annotations

import abc
import os
from collections.abc import Mapping
from typing import Any, ClassVar

from unilogit.errors import ConfigError, DataError

from .base import Benchmark, Column, Curve, Reference

__all__ = ["QA_COLUMNS", "QA_CURVES", "QABenchmark", "summarize_qa"]

#: Per-split metrics of :func:`unilogit.eval.evaluate_qa` copied into the flat summary.
SPLIT_METRICS = (
    "probability",
    "rouge_l_recall",
    "rouge_l_recall_paraphrased",
    "rouge_l_recall_perturbed",
    "truth_ratio",
    "kl_to_gold",
    "fluency",
    "exact_memorization",
    "extraction_strength",
)
TOP_METRICS = (
    "forget_quality",
    "forget_quality_log10",
    "forget_quality_ks_statistic",
    "model_utility",
    "privleak",
)
QA_COLUMNS = (
    Column("forget_quality", "Forget Quality", True, "p"),
    Column("model_utility", "Model Utility", True, ".3f"),
    Column("forget/kl_to_gold", "KL→gold forget", False, ".3g"),
    Column("retain/kl_to_gold", "KL→gold retain", False, ".3g"),
    Column("forget/probability", "P(forget)", None, ".3f"),
    Column("forget/rouge_l_recall", "ROUGE forget", None, ".3f"),
    Column("forget/truth_ratio", "TR forget", None, ".3f"),
    Column("mia/min_k", "MIA AUC", None, ".3f"),
)
QA_CURVES = (
    Curve(
        "forget_quality_log10",
        "model_utility",
        "Forget quality vs model utility",
        "Forget Quality, log10 KS p-value vs retain model  (→ better)",
        "Model Utility  (↑ better)",
    ),
)
#: How many generations per split :meth:`QABenchmark.evaluate` copies into ``"examples"``.
N_EXAMPLES = 3


def summarize_qa(result: Mapping[str, Any]) -> dict[str, float]:
    """The flat numbers of an :func:`~unilogit.eval.evaluate_qa` result: ``forget_quality``,
    ``forget_quality_log10``, ``model_utility``, ``"<split>/<metric>"`` for every split and
    metric in :data:`SPLIT_METRICS`, and ``"mia/<attack>"`` AUCs."""
    out: dict[str, Any] = {k: result[k] for k in TOP_METRICS if k in result}
    for split, s in (result.get("splits") or {}).items():
        for m in SPLIT_METRICS:
            if m in s and isinstance(s[m], (int, float)):
                out[f"{split}/{m}"] = s[m]
    for attack, auc in (result.get("mia") or {}).items():
        out[f"mia/{attack}"] = auc
    out.update(setup_labels(result))
    return out


def setup_labels(result: Mapping[str, Any]) -> dict[str, str]:
    """How an evaluation was made, as short strings for a record (the report's set-up
    section): ``metrics_convention`` (its name) and ``prompt_format`` (where it came from)."""
    out = {}
    conv = result.get("metrics_convention")
    if isinstance(conv, Mapping) and isinstance(conv.get("name"), str):
        out["metrics_convention"] = conv["name"]
    fmt = result.get("prompt_format")
    if isinstance(fmt, Mapping):
        parts = [str(fmt.get("source", "given"))]
        parts += [f"{k}={fmt[k]!r}" for k in ("system_prompt", "date_string") if fmt.get(k)]
        out["prompt_format"] = ", ".join(parts)
    return out


class QABenchmark(Benchmark):
    """A TOFU-style QA benchmark with a gold (retain) model. Subclasses give the data
    (:meth:`eval_splits`, ``utility_splits``, ``kl_splits``) and may complete the result
    (:meth:`complete`)."""

    has_gold = True
    columns = QA_COLUMNS
    curves = QA_CURVES
    #: The splits of :meth:`eval_splits` that make up Model Utility.
    utility_splits: ClassVar[tuple[str, ...]] = ()
    #: The metrics convention (:mod:`unilogit.eval.conventions`) unless the caller names one.
    default_metrics_convention: ClassVar[str] = "exact"

    @abc.abstractmethod
    def eval_splits(self) -> dict[str, list[Any]]:
        """Evaluation sets keyed ``forget``, ``holdout`` and the utility splits."""

    def holdout(self) -> list[Any] | None:
        return self.eval_splits().get("holdout")

    def complete(self, result: dict[str, Any], splits: Mapping[str, list[Any]]) -> None:
        """Add benchmark-specific entries to an evaluation (default: nothing)."""

    def evaluate(
        self,
        model: Any,
        tokenizer: Any,
        *,
        reference: Any = None,
        gold_model: Any = None,
        progress: bool = True,
        prompt_format: Any = None,
        metrics_convention: str | None = None,
        batch_size: int | None = None,
        max_new_tokens: int | None = None,
        generate: bool = True,
        **options: Any,
    ) -> dict[str, Any]:
        """QA metrics of ``model`` (:func:`unilogit.eval.evaluate_qa`) plus ``"benchmark"``,
        ``"reference"`` and ``"examples"`` (a few greedy answers per split).

        ``reference``: see :meth:`resolve_reference` (also an open-unlearning
        ``TOFU_EVAL.json``) -> Forget Quality, PrivLeak. ``gold_model``: the retain model ->
        ``kl_to_gold`` on ``kl_splits`` and the reference-model attack. ``prompt_format``: a
        :class:`unilogit.prompts.PromptFormat` (``None``: open-unlearning's for the model's
        family). ``metrics_convention``: default :attr:`default_metrics_convention`.
        ``batch_size`` / ``max_new_tokens``: default ``default_eval_options``' (else 32 / 200).
        ``options``: more ``evaluate_qa`` arguments (``mia_k``, ``mia_gradnorm``,
        ``keep_generations``).
        """
        from unilogit.eval.prompt_defaults import resolve_prompt_format
        from unilogit.eval.suites import evaluate_qa

        self.check_options(options, ("mia_k", "mia_gradnorm", "keep_generations"))
        defaults = {"batch_size": 32, "max_new_tokens": 200, **self.default_eval_options}
        batch_size = batch_size or defaults["batch_size"]
        max_new_tokens = max_new_tokens or defaults["max_new_tokens"]
        fmt, fmt_source = resolve_prompt_format(prompt_format, model, tokenizer)
        common = dict(
            prompt_format=fmt,
            metrics_convention=metrics_convention or self.default_metrics_convention,
            batch_size=batch_size,
            progress=progress,
        )
        ref = self.resolve_reference(reference, tokenizer, **common)
        splits = self.eval_splits()
        result = evaluate_qa(
            model,
            tokenizer,
            {k: v for k, v in splits.items() if k in self._scored_splits()},
            reference=ref.evaluation if ref is not None else None,
            gold_model=gold_model,
            forget_split="forget",
            holdout_split="holdout",
            utility_splits=list(self.utility_splits),
            kl_splits=list(self.kl_splits),
            max_new_tokens=max_new_tokens,
            generate=generate,
            **common,
            **options,
        )
        result["prompt_format"]["source"] = fmt_source
        self.complete(result, splits)
        examples = _examples(result, splits)
        return {
            "benchmark": self.describe(),
            "reference": ref.info if ref is not None else None,
            **result,
            **({"examples": examples} if examples else {}),
        }

    def _scored_splits(self) -> tuple[str, ...]:
        """The splits scored by ``evaluate_qa`` (others are derived in :meth:`complete`)."""
        return ("forget", *self.utility_splits, "holdout")

    def evaluate_reference(self, model: Any, tokenizer: Any, **common: Any) -> dict[str, Any]:
        """The reference model scored on the forget split (its truth ratios) and the holdout
        split (its Min-K% AUC, for PrivLeak), with :meth:`evaluate`'s default convention."""
        from unilogit.eval.suites import evaluate_qa

        common.setdefault("metrics_convention", self.default_metrics_convention)
        splits = self.eval_splits()
        result = evaluate_qa(
            model,
            tokenizer,
            {k: splits[k] for k in ("forget", "holdout") if k in splits},
            forget_split="forget",
            holdout_split="holdout" if "holdout" in splits else None,
            utility_splits=[],
            generate=False,
            **common,
        )
        return {"benchmark": self.describe(), **result}

    def resolve_reference(
        self, reference: Any, tokenizer: Any = None, **options: Any
    ) -> Reference | None:
        """As :meth:`Benchmark.resolve_reference`, and an open-unlearning evaluation log
        (``TOFU_EVAL.json``, path or dict) is read as the reference: its per-question forget
        truth ratios and Min-K% AUC (:func:`unilogit.eval.ou_names.from_ou_log`)."""
        from unilogit.eval.conventions import get_convention

        # the rows a reference must cover: the convention may evaluate only the first N
        self._reference_rows = get_convention(options.get("metrics_convention")).tofu_max_rows
        converted = _ou_reference(self, reference)
        if converted is None:
            return super().resolve_reference(reference, tokenizer, **options)
        ref = super().resolve_reference(converted[0], tokenizer, **options)
        assert ref is not None
        return Reference(ref.evaluation, {**ref.info, **converted[1]})

    def check_reference(self, evaluation: Mapping[str, Any], file: str | None) -> dict[str, Any]:
        """The reference must hold per-question truth ratios on its forget split, one per
        forget question of this benchmark."""
        try:
            ratios = evaluation["splits"][evaluation["forget_split"]]["truth_ratios"]
            if not isinstance(ratios, list) or not ratios:
                raise TypeError
        except (KeyError, TypeError):
            raise DataError(
                "reference is not a QA evaluation of the retain model: it has no per-question "
                "truth ratios on its forget split (['splits'][forget_split]['truth_ratios'])",
                file=file,
                field="truth_ratios",
            ) from None
        n = len(self.eval_splits()["forget"][: getattr(self, "_reference_rows", None)])
        if len(ratios) != n:
            raise ConfigError(
                f"reference has {len(ratios)} forget questions, this evaluation {n} (different "
                "max_rows?): Forget Quality must compare the same questions"
            )
        return {"n_forget": len(ratios)}

    def summarize(self, result: Mapping[str, Any]) -> dict[str, float]:
        return summarize_qa(result)

    def gold_baseline(self, result: Mapping[str, Any]) -> dict[str, Any]:
        """The gold model's evaluation as the reference row: its Forget Quality is the KS test
        of its forget truth ratios against themselves (p = 1), and its KL to itself is 0 by
        definition on every split in ``kl_splits``."""
        from unilogit.eval.metrics import forget_quality

        out = {**result, "splits": {k: dict(v) for k, v in result["splits"].items()}}
        ratios = out["splits"][out["forget_split"]]["truth_ratios"]
        ks = forget_quality(ratios, ratios)
        out.update(
            forget_quality=ks.p_value,
            forget_quality_log10=ks.log10_p_value,
            forget_quality_ks_statistic=ks.statistic,
            reference={"kind": "self"},
        )
        for name in self.kl_splits:
            if name in out["splits"]:
                out["splits"][name]["kl_to_gold"] = 0.0
        return out


def _ou_reference(bench: Benchmark, reference: Any) -> tuple[dict, dict] | None:
    """``(our-layout evaluation, info)`` when ``reference`` is an open-unlearning log (a dict
    or the path of one); None otherwise. The log records no benchmark identity: it is given
    this benchmark's, and the row count is checked by ``check_reference``."""
    from unilogit.eval.ou_names import from_ou_log, is_ou_log

    from .source import load_reference

    file = None
    if isinstance(reference, (str, os.PathLike)):
        file = str(reference)
        reference = load_reference(reference)
    if not is_ou_log(reference):
        return None
    evaluation = {**from_ou_log(reference, file), "benchmark": bench.identity()}
    return evaluation, {"kind": "open-unlearning log", **({"path": file} if file else {})}


def _examples(result: Mapping[str, Any], splits: Mapping[str, list[Any]]) -> list[dict]:
    """The first :data:`N_EXAMPLES` greedy answers of each split that kept its generations."""
    out = []
    for name, s in result["splits"].items():
        gens = s.get("generations")
        if not gens or name not in splits:
            continue
        for ex, gen in list(zip(splits[name], gens, strict=False))[:N_EXAMPLES]:
            out.append(
                {"kind": name, "prompt": ex.prompt, "answer_key": ex.response, "generation": gen}
            )
    return out
