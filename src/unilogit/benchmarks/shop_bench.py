"""The ``shop`` benchmark object (:class:`ShopBenchmark`): remove one seller from a marketplace
model, keep the rest of the marketplace, the shop's tasks and the model's general knowledge.

The built shop (:func:`unilogit.benchmarks.shop.build_shop`) provides the data, the TARGET
model (fine-tuned on the whole marketplace) and the GOLD model (never saw the forget seller).
Evaluation splits (TOFU-style, :class:`~unilogit.benchmarks.qa.QABenchmark`)::

    forget     the forget seller(s)' rows (paraphrased + 5 perturbed answers)
    retain     the other sellers' rows (Model Utility)
    neighbour  rows of sellers whose items are near-duplicates of forget items (Model Utility;
               the paper's "neighbours" score: ROUGE and probability)
    holdout    sellers never trained on (membership attacks)

plus, by greedy generation: ``key_em`` (exact match of the key attribute) on forget /
neighbour / retain, ``form`` on forget (the answer states a value of the right kind),
``task`` (the shop's structured questions on items the model knows; the paper's "task" score)
and ``general`` (common-knowledge questions the base model answered correctly).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .base import Column, Curve
from .qa import QABenchmark, summarize_qa
from .shop import Shop, ShopConfig, build_shop
from .shop_data import MAX_NEW_TOKENS
from .shop_eval import exact_matches, forms, probe_scores, share

__all__ = ["ShopBenchmark"]

#: QA splits and the shop file each is read from.
SPLIT_FILES = {
    "forget": "forget",
    "retain": "other",
    "neighbour": "neighbour",
    "holdout": "holdout",
}
#: Splits whose generations get key exact match (and ``form``, on forget).
KEY_SPLITS = ("forget", "neighbour", "retain")


class ShopBenchmark(QABenchmark):
    """The ``shop`` benchmark (module docstring), built or found in the cache on first use.

    Args:
        preset: ``quick`` | ``small`` | ``default`` | ``nll-replay`` | ``distilled`` (ignored
            when ``config`` is given).
        cache_dir: cache base (default ``$UNILOGIT_CACHE`` or ``~/.cache/unilogit``).
        max_rows: use only the first N rows of every split (and of the task / general probes).
        config: a :class:`~unilogit.benchmarks.shop_data.ShopConfig`.
        shop: an already built :class:`~unilogit.benchmarks.shop.Shop`.
    """

    name = "shop"
    utility_splits = ("retain", "neighbour")
    kl_splits = ("forget", "neighbour")
    default_eval_options: Mapping[str, Any] = {"max_new_tokens": MAX_NEW_TOKENS, "batch_size": 32}
    columns = (
        Column("forget_quality", "Forget Quality", True, "p"),
        Column("forget/key_em", "key EM forget", False, ".3f"),
        Column("forget/kl_to_gold", "KL→gold forget", False, ".3g"),
        Column("neighbour/rouge_l_recall", "ROUGE neighbour", True, ".3f"),
        Column("neighbour/probability", "P(neighbour)", True, ".3f"),
        Column("neighbour/key_em", "key EM neighbour", True, ".3f"),
        Column("task/score", "task", True, ".3f"),
        Column("general/score", "general", True, ".3f"),
        Column("model_utility", "Model Utility", True, ".3f"),
        Column("forget/form", "form forget", True, ".3f"),
        Column("forget/fluency", "fluency forget", True, ".3f"),
        Column("mia/min_k", "MIA AUC", None, ".3f"),
    )
    curves = (
        Curve(
            "forget_quality_log10",
            "neighbour/rouge_l_recall",
            "Forget quality vs neighbours",
            "Forget Quality, log10 KS p-value vs gold model  (→ better)",
            "ROUGE-L recall on neighbour sellers  (↑ better)",
        ),
        Curve(
            "forget/key_em",
            "task/score",
            "Forgetting vs task score",
            "key exact match on the forget seller  (← better)",
            "task score  (↑ better)",
            x_higher_is_better=False,
        ),
        Curve(
            "forget/key_em",
            "general/score",
            "Forgetting vs general knowledge",
            "key exact match on the forget seller  (← better)",
            "general-knowledge questions still answered  (↑ better)",
            x_higher_is_better=False,
        ),
    )

    def __init__(
        self,
        preset: str = "default",
        cache_dir: str | os.PathLike | None = None,
        max_rows: int | None = None,
        *,
        config: ShopConfig | None = None,
        shop: Shop | None = None,
        progress: bool = True,
    ) -> None:
        if max_rows is not None and (
            isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1
        ):
            raise ConfigError(f"max_rows must be a positive integer or None, got {max_rows!r}")
        self.config = config if config is not None else ShopConfig.preset(preset)
        self.cache_dir, self.max_rows, self.progress = cache_dir, max_rows, progress
        self._shop = shop

    @property
    def shop(self) -> Shop:
        """The built :class:`~unilogit.benchmarks.shop.Shop` (built on first access)."""
        if self._shop is None:
            self._shop = build_shop(self.config, self.cache_dir, progress=self.progress)
        return self._shop

    def __repr__(self) -> str:
        return f"ShopBenchmark(preset={self.config.name!r}, max_rows={self.max_rows!r})"

    def describe(self) -> dict[str, Any]:
        """Identity (preset, hash, base model, LoRA, row limit) and the build's sanity
        figures as flat numbers (so that the report's set-up section shows them)."""
        shop = self.shop
        sanity = shop.sanity()
        out: dict[str, Any] = {
            "name": self.name,
            "preset": self.config.name,
            "shop_hash": Path(shop.root).name,
            "base_model": self.config.base_model,
            "fine_tuning": "LoRA" if self.config.lora else "full",
            "max_rows": self.max_rows,
            "files": dict(SPLIT_FILES),
        }
        for key in (
            "target_key_em_forget",
            "target_key_em_neighbour",
            "gold_form_forget",
            "forget_quality_target_vs_gold",
            "general_retention_target",
            "general_kept",
        ):
            out[f"sanity_{key}"] = sanity.get(key)
        return out

    def _rows(self, name: str) -> list[dict[str, Any]]:
        rows = self.shop.load_rows(name)
        return rows[: self.max_rows] if self.max_rows is not None else rows

    def _load(self, name: str) -> list[Any]:
        rows = self.shop.load_split(name)
        return rows[: self.max_rows] if self.max_rows is not None else rows

    def forget(self) -> list[Any]:
        return self._load("forget")

    def retain(self) -> list[Any]:
        """What the gold model was fine-tuned on (:data:`~unilogit.benchmarks.shop.MODELS`):
        every trained row but the forget seller's (neighbour + other sellers), the trained task
        probes and the replay rows (the base model's own general answers)."""
        return [e for name in self.shop.train_sets("gold") for e in self._load(name)]

    def eval_splits(self) -> dict[str, list[Any]]:
        return {role: self._load(stem) for role, stem in SPLIT_FILES.items()}

    def holdout(self) -> list[Any]:
        return self._load("holdout")

    def target_model(self) -> tuple[Any, Any]:
        return self.shop.load_model("target")

    def gold_model(self) -> tuple[Any, Any]:
        return self.shop.load_model("gold")

    def evaluate(self, model: Any, tokenizer: Any, **kwargs: Any) -> dict[str, Any]:
        """:meth:`QABenchmark.evaluate` (TOFU metrics, FQ and KL against the gold model, MIA
        against the holdout sellers) plus key exact match, answer form, task and general scores
        (module docstring). Without generation (``generate=False``) only the QA metrics."""
        result = super().evaluate(model, tokenizer, **kwargs)
        if kwargs.get("generate", True) is False:
            return result
        max_new = kwargs.get("max_new_tokens") or self.default_eval_options["max_new_tokens"]
        batch = kwargs.get("batch_size") or self.default_eval_options["batch_size"]
        for split in KEY_SPLITS:
            s = result["splits"].get(split, {})
            gens = s.get("generations")
            if gens is None:
                continue
            rows = self._rows(SPLIT_FILES[split])[: len(gens)]
            s["key_em"] = share(exact_matches(gens, rows))
            if split == "forget":
                s["form"] = share(forms(gens, rows))
        result["task"] = probe_scores(model, tokenizer, self._rows("task"), max_new, batch, "task")
        general = self._rows("general")
        result["general"] = (
            probe_scores(model, tokenizer, general, max_new, batch) if general else {"n": 0}
        )
        return result

    def summarize(self, result: Mapping[str, Any]) -> dict[str, float]:
        """:func:`~unilogit.benchmarks.qa.summarize_qa` plus ``<split>/key_em``,
        ``forget/form``, ``task/score`` (and ``task/score_<kind>``), ``general/score``."""
        out = summarize_qa(result)
        for split in KEY_SPLITS:
            for m in ("key_em", "form"):
                v = (result.get("splits") or {}).get(split, {}).get(m)
                if isinstance(v, (int, float)):
                    out[f"{split}/{m}"] = v
        for probe in ("task", "general"):
            for k, v in (result.get(probe) or {}).items():
                if k.startswith("score") and isinstance(v, (int, float)):
                    out[f"{probe}/{k}"] = v
        return out
