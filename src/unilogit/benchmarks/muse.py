"""MUSE-News (Shi et al. 2024): unlearn BBC news articles; KnowMem, VerbMem, PrivLeak.

The data comes either from the Hugging Face Hub dataset ``muse-bench/MUSE-News`` (configs
``knowmem``, ``verbmem``, ``privleak``, ``raw``, read with ``datasets.load_dataset``) or from a
local folder laid out like the authors' evaluation data (e.g. ``../shared/data/muse-news``).
Both routes produce the raw rows of one part and share everything after that.

Parts, their Hub (config, split) and local file; the authors' pre-release copy names the retain
sets ``retain2*``, the final Hub release ``retain*``: both are accepted on both routes::

    part                Hub config / split       local file (under data_dir)     rows
    knowmem_forget      knowmem / forget_qa      knowmem/forget_qa.json          question, answer
    knowmem_forget_icl  knowmem / forget_qa_icl  knowmem/forget_qa_icl.json      10 ICL examples
    knowmem_retain      knowmem / retain_qa      knowmem/retain_qa.json          question, answer
                                  (retain2_qa)           (retain2_qa.json)
    knowmem_retain_icl  knowmem / retain_qa_icl  knowmem/retain_qa_icl.json      10 ICL examples
                                  (retain2_qa_icl)       (retain2_qa_icl.json)
    verbmem_forget      verbmem / forget         verbmem/forget.json             prompt, gt
    privleak_forget     privleak / forget        privleak/forget.json            texts (members)
    privleak_holdout    privleak / holdout       privleak/holdout.json           texts (unseen)
    privleak_retain     privleak / retain        privleak/retain.json            texts
                                   (retain2)              (retain2.json)
    raw_forget          raw / forget             raw/forget.json(l)              full articles
    raw_retain          raw / retain1            raw/retain1.json(l)             full articles

Training sets: :meth:`MuseBenchmark.forget` / :meth:`MuseBenchmark.retain` return raw-text
examples. With ``corpus="privleak"`` (default; works with the evaluation files alone) they are
the ``privleak`` forget / retain texts (100 chunks each); with ``corpus="raw"`` the full ``raw``
forget / retain1 corpora the MUSE authors unlearn with (Hub, or ``raw/*.json`` locally).
Caveat: the ``privleak`` retain texts come from ``retain2``, the articles KnowMem-retain asks
about, so training on them flatters ``knowmem_r``; prefer ``corpus="raw"`` for reported numbers.

Evaluation (:meth:`MuseBenchmark.evaluate`) runs :func:`unilogit.eval.evaluate_muse`:
``knowmem_f``, ``knowmem_r``, ``verbmem_f`` and ``privleak`` (needs the RETAIN model's
Min-K% AUC: a saved evaluation of it, or the model itself).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from unilogit.data import Example, load_examples
from unilogit.errors import ConfigError, DataError

from .base import Benchmark, Column, Curve
from .source import BenchmarkSource, read_json_file

__all__ = ["EVAL_PARTS", "MUSE_NEWS_REPO", "PARTS", "MuseBenchmark", "MusePart"]

MUSE_NEWS_REPO = "muse-bench/MUSE-News"


@dataclass(frozen=True)
class MusePart:
    """One MUSE file: its Hub config, accepted Hub split names and local paths, and row kind
    (``"qa"`` = {question, answer}, ``"text"`` = strings / {text}, ``"prompt"`` = {prompt, gt})."""

    config: str
    hub_splits: tuple[str, ...]
    files: tuple[str, ...]
    kind: str
    limited: bool = True  # max_rows applies (not to the in-context examples)


PARTS: dict[str, MusePart] = {
    "knowmem_forget": MusePart("knowmem", ("forget_qa",), ("knowmem/forget_qa.json",), "qa"),
    "knowmem_forget_icl": MusePart(
        "knowmem", ("forget_qa_icl",), ("knowmem/forget_qa_icl.json",), "qa", limited=False
    ),
    "knowmem_retain": MusePart(
        "knowmem",
        ("retain_qa", "retain2_qa"),
        ("knowmem/retain_qa.json", "knowmem/retain2_qa.json"),
        "qa",
    ),
    "knowmem_retain_icl": MusePart(
        "knowmem",
        ("retain_qa_icl", "retain2_qa_icl"),
        ("knowmem/retain_qa_icl.json", "knowmem/retain2_qa_icl.json"),
        "qa",
        limited=False,
    ),
    "verbmem_forget": MusePart("verbmem", ("forget",), ("verbmem/forget.json",), "prompt"),
    "privleak_forget": MusePart("privleak", ("forget",), ("privleak/forget.json",), "text"),
    "privleak_holdout": MusePart("privleak", ("holdout",), ("privleak/holdout.json",), "text"),
    "privleak_retain": MusePart(
        "privleak",
        ("retain", "retain2"),
        ("privleak/retain.json", "privleak/retain2.json"),
        "text",
    ),
    "raw_forget": MusePart("raw", ("forget",), ("raw/forget.json", "raw/forget.jsonl"), "text"),
    "raw_retain": MusePart("raw", ("retain1",), ("raw/retain1.json", "raw/retain1.jsonl"), "text"),
}
EVAL_PARTS = (
    "knowmem_forget",
    "knowmem_forget_icl",
    "knowmem_retain",
    "knowmem_retain_icl",
    "verbmem_forget",
    "privleak_forget",
    "privleak_holdout",
)
_CORPORA = {"privleak": ("privleak_forget", "privleak_retain"), "raw": ("raw_forget", "raw_retain")}

# (part name, MusePart) -> (display name, anything load_examples reads / raw rows)
Loader = Callable[[str, MusePart], tuple[str, Any]]


class MuseBenchmark(BenchmarkSource, Benchmark):
    """MUSE-News from the Hub (``data_dir=None``) or a local folder.

    Args:
        data_dir: a folder with ``knowmem/``, ``verbmem/``, ``privleak/`` (and optionally
            ``raw/``); ``None`` = the Hub dataset ``repo``.
        max_rows: keep only the first ``max_rows`` rows of every part except the in-context
            examples (quick runs, tests).
        corpus: ``"privleak"`` or ``"raw"``: where :meth:`forget` / :meth:`retain` come from.
        repo / hub_options: the Hub dataset and extra ``datasets.load_dataset`` arguments.
        loader: ``(part name, MusePart) -> (display name, rows)`` replacing both routes.
    """

    name = "muse-news"
    what = "MUSE"
    columns = (
        Column("knowmem_f", "KnowMem forget", False, ".3f"),
        Column("verbmem_f", "VerbMem forget", False, ".3f"),
        Column("knowmem_r", "KnowMem retain", True, ".3f"),
        Column("privleak", "PrivLeak", None, ".1f"),
        Column("privleak_auc", "Min-K% AUC", None, ".3f"),
    )
    curves = (
        Curve(
            "knowmem_f",
            "knowmem_r",
            "KnowMem: forget vs retain",
            "KnowMem on the forget set  (← better)",
            "KnowMem on the retain set  (↑ better)",
            x_higher_is_better=False,
        ),
        Curve(
            "verbmem_f",
            "knowmem_r",
            "VerbMem forget vs KnowMem retain",
            "VerbMem on the forget set  (← better)",
            "KnowMem on the retain set  (↑ better)",
            x_higher_is_better=False,
        ),
    )

    def __init__(
        self,
        data_dir: str | os.PathLike | None = None,
        max_rows: int | None = None,
        *,
        corpus: str = "privleak",
        repo: str = MUSE_NEWS_REPO,
        hub_options: Mapping[str, Any] | None = None,
        loader: Loader | None = None,
    ) -> None:
        if corpus not in _CORPORA:
            raise ConfigError(
                f"unknown MUSE training corpus {corpus!r}; choose one of {', '.join(_CORPORA)}"
            )
        super().__init__(data_dir, max_rows, repo, hub_options, loader)
        self.corpus = corpus
        self._hub_cache: dict[str, Any] = {}
        self._cache: dict[str, list[Any]] = {}

    def __repr__(self) -> str:
        return (
            f"MuseBenchmark(source={self.source_name!r}, max_rows={self.max_rows!r}, "
            f"corpus={self.corpus!r})"
        )

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "max_rows": self.max_rows,
            "corpus": self.corpus,
            "source": self.source_name,
        }

    # ----------------------------------------------------------------------------------------
    # Raw rows: the only Hub / local difference
    # ----------------------------------------------------------------------------------------

    def _local(self, part: str, spec: MusePart) -> tuple[str, Any]:
        assert self.data_dir is not None
        for rel in spec.files:
            path = self.data_dir / rel
            if path.is_file():
                if spec.kind == "prompt":
                    return str(path), read_json_file(path, "MUSE file", list)
                return str(path), path
        names = " or ".join(spec.files)
        raise DataError(
            f"file not found: MUSE part {part!r} needs {names} in {self.data_dir}",
            file=self.data_dir / spec.files[0],
        )

    def _hub(self, part: str, spec: MusePart) -> tuple[str, Any]:
        splits = self._hub_config(spec.config)
        for split in spec.hub_splits:
            if split in splits:
                return f"hf:{self.repo}:{spec.config}:{split}", splits[split]
        raise DataError(
            f"MUSE part {part!r}: the config has no split {' or '.join(spec.hub_splits)}; "
            f"it has: {', '.join(sorted(splits))}",
            file=f"hf:{self.repo}:{spec.config}",
        )

    def _hub_config(self, config: str) -> Any:
        """All splits of one Hub config (a ``DatasetDict``), loaded once."""
        if config not in self._hub_cache:
            import datasets

            try:
                loaded = datasets.load_dataset(self.repo, config, **self.hub_options)
            except Exception as e:  # network, unknown config, ...: a DataError for the user
                offline = ""
                if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE"):
                    offline = " (offline mode is on: the dataset must be in the local cache)"
                raise DataError(
                    f"could not load Hugging Face dataset {self.repo!r}, config {config!r}: "
                    f"{type(e).__name__}: {' '.join(str(e).split())[:300]}{offline}; or pass "
                    "data_dir= a local copy",
                    file=f"hf:{self.repo}:{config}",
                ) from e
            if not isinstance(loaded, Mapping):
                raise DataError(
                    f"expected a dataset with named splits, got {type(loaded).__name__}",
                    file=f"hf:{self.repo}:{config}",
                )
            self._hub_cache[config] = loaded
        return self._hub_cache[config]

    def _raw(self, part: str) -> tuple[str, Any]:
        spec = PARTS[part]
        if self.loader is not None:
            return self.loader(part, spec)
        if self.data_dir is not None:
            return self._local(part, spec)
        return self._hub(part, spec)

    # ----------------------------------------------------------------------------------------
    # Shared: raw rows -> checked, limited rows
    # ----------------------------------------------------------------------------------------

    def load(self, part: str) -> list[Any]:
        """One part (see :data:`PARTS`): QA / raw-text parts as :class:`Example`, ``verbmem``
        as ``{"prompt", "gt", "row_id"}`` dicts; cut to ``max_rows`` unless in-context."""
        if part not in PARTS:
            raise DataError(f"unknown MUSE part {part!r}; valid parts: {', '.join(PARTS)}")
        if part not in self._cache:
            spec = PARTS[part]
            display, source = self._raw(part)
            if spec.kind == "prompt":
                rows: list[Any] = _prompt_rows(display, source)
            else:
                rows = load_examples(source, kind=spec.kind, name=display)
            if self.max_rows is not None and spec.limited:
                rows = rows[: self.max_rows]
            self._cache[part] = rows
        return list(self._cache[part])

    def forget(self) -> list[Example]:
        """Raw-text forget examples (``prompt=""``, ``response`` = text)."""
        return self.load(_CORPORA[self.corpus][0])

    def retain(self) -> list[Example]:
        """Raw-text retain examples (see the module docstring's caveat for ``"privleak"``)."""
        return self.load(_CORPORA[self.corpus][1])

    def eval_data(self) -> dict[str, list[Any]]:
        """Everything :func:`unilogit.eval.evaluate_muse` takes, keyed as it expects."""
        return {part: self.load(part) for part in EVAL_PARTS}

    # ----------------------------------------------------------------------------------------
    # Evaluation
    # ----------------------------------------------------------------------------------------

    def holdout(self) -> list[Example]:
        """The PrivLeak holdout texts (never trained on)."""
        return self.load("privleak_holdout")

    # ----------------------------------------------------------------------------------------
    # Evaluation
    # ----------------------------------------------------------------------------------------

    def evaluate(
        self,
        model: Any,
        tokenizer: Any,
        *,
        reference: Any = None,
        gold_model: Any = None,
        progress: bool = True,
        batch_size: int = 32,
        k: float = 0.4,
        metrics_convention: str | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """``knowmem_f``, ``knowmem_r``, ``verbmem_f``, ``privleak`` (+ AUCs, generations;
        output of :func:`unilogit.eval.evaluate_muse` plus ``"benchmark"`` / ``"reference"``).

        Args:
            reference: the RETAIN model's saved evaluation (dict returned by this method or the
                path of its JSON; see :meth:`resolve_reference`) or the retain model itself
                (scored here on the PrivLeak texts). ``None``: ``privleak`` is None (the AUCs
                are still reported).
            gold_model: must be None: MUSE has no KL to a gold model.
            k: the Min-K% fraction of the PrivLeak attack (MUSE: 0.4); a reference must use
                the same.
            metrics_convention: ``open-unlearning`` (default) | ``muse`` | ``tofu`` | ``exact``;
                a reference must use the same. An open-unlearning ``MUSE_EVAL.json`` is read
                as a reference (its ``mia_min_k`` AUC).
            options: more :func:`evaluate_muse` arguments (``knowmem_max_new_tokens``,
                ``verbmem_max_new_tokens``, ``keep_generations``).
        """
        from unilogit.eval.suites import evaluate_muse

        if gold_model is not None:
            raise ConfigError("MUSE has no KL to gold: a gold model is for TOFU / world")
        self.check_options(
            options, ("knowmem_max_new_tokens", "verbmem_max_new_tokens", "keep_generations")
        )
        from unilogit.eval.conventions import get_convention
        from unilogit.eval.suites import check_same_setup

        conv = get_convention(metrics_convention or "open-unlearning")
        ref = self.resolve_reference(
            _ou_reference(self, reference),
            tokenizer,
            batch_size=batch_size,
            k=k,
            progress=progress,
            metrics_convention=conv,
        )
        if ref is not None:
            _check_same_k(ref.evaluation, k)
            check_same_setup(
                {"splits": {}, "metrics_convention": conv.describe()}, ref.evaluation, None
            )
        result = evaluate_muse(
            model,
            tokenizer,
            self.eval_data(),
            reference=ref.evaluation if ref is not None else None,
            batch_size=batch_size,
            k=k,
            metrics_convention=conv,
            progress=progress,
            **options,
        )
        info = ref.info if ref is not None else None
        return {"benchmark": self.describe(), "reference": info, **result}

    def evaluate_reference(self, model: Any, tokenizer: Any, **options: Any) -> dict[str, Any]:
        """The reference model scored on the PrivLeak texts only (its Min-K% AUC)."""
        from unilogit.eval.suites import evaluate_muse

        data = self.eval_data()
        parts = {p: data[p] for p in ("privleak_forget", "privleak_holdout")}
        return {"benchmark": self.describe(), **evaluate_muse(model, tokenizer, parts, **options)}

    def check_reference(self, evaluation: Mapping[str, Any], file: str | None) -> dict[str, Any]:
        auc = evaluation.get("privleak_auc")
        if isinstance(auc, bool) or not isinstance(auc, (int, float)):
            raise DataError(
                "reference has no numeric 'privleak_auc' (expected the retain model's MUSE "
                "evaluation)",
                file=file,
                field="privleak_auc",
            )
        return {"privleak_auc": float(auc)}

    def summarize(self, result: Mapping[str, Any]) -> dict[str, float]:
        """``knowmem_f``, ``knowmem_r``, ``verbmem_f``, ``privleak``, ``privleak_auc`` and
        ``"mia/<attack>"`` AUCs (those present and numeric)."""
        keys = ("knowmem_f", "knowmem_r", "verbmem_f", "privleak", "privleak_auc")
        keys += ("extraction_strength", "exact_memorization")
        out = {k: result[k] for k in keys if _is_number(result.get(k))}
        for attack, auc in (result.get("mia") or {}).items():
            out[f"mia/{attack}"] = auc
        if isinstance(result.get("metrics_convention"), Mapping):
            out["metrics_convention"] = result["metrics_convention"].get("name")
        return out


def _ou_reference(bench: MuseBenchmark, reference: Any) -> Any:
    """An open-unlearning ``MUSE_EVAL.json`` (path or dict) in our layout, given this
    benchmark's identity (the log records none); any other reference unchanged."""
    from unilogit.eval.ou_names import from_ou_log, is_ou_log

    from .source import load_reference

    value = reference
    if isinstance(reference, (str, os.PathLike)) and str(reference).endswith(".json"):
        value = load_reference(reference)
    if not is_ou_log(value):
        return reference
    return {**from_ou_log(value, str(reference)), "benchmark": bench.identity()}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_same_k(reference: Mapping[str, Any], k: float) -> None:
    ref_k = reference.get("privleak_k")
    if _is_number(ref_k) and abs(float(ref_k) - k) > 1e-12:
        raise ConfigError(
            f"reference used Min-K% k={ref_k}, this evaluation k={k}: PrivLeak must compare "
            "the same attack"
        )


def _prompt_rows(display: str, rows: Any) -> list[dict[str, str]]:
    """VerbMem rows: ``{"prompt", "gt"}`` (non-empty strings), plus a ``row_id``."""
    out = []
    for i, row in enumerate(rows, start=1):
        if not isinstance(row, Mapping):
            raise DataError(
                f"row {i}: expected an object with 'prompt' and 'gt', got {type(row).__name__}",
                file=display,
            )
        for key in ("prompt", "gt"):
            value = row.get(key)
            if not isinstance(value, str) or not value.strip():
                problem = "missing" if value is None else "must be a non-empty string"
                raise DataError(
                    f"row {i}: {problem} (VerbMem rows need 'prompt' and 'gt')",
                    file=display,
                    field=key,
                )
        out.append({"prompt": row["prompt"], "gt": row["gt"], "row_id": f"{display}:{i}"})
    if not out:
        raise DataError("contains no rows", file=display)
    return out
