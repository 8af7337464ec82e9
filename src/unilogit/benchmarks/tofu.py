"""TOFU (Maini et al. 2024): forget fictitious authors, keep the rest.

The data comes either from the Hugging Face Hub dataset ``locuslab/TOFU`` (one config per file,
split ``"train"``, read with ``datasets.load_dataset``) or from a local folder holding the same
files as ``<config>.jsonl`` (e.g. ``../shared/data/tofu``; a ``<config>.json`` file, as in a clone
of the Hub repository, is read with the ``datasets`` JSON builder). Both routes produce the raw
rows of one config and share everything after that (:func:`unilogit.data.load_examples`, row
limits, field checks), so the local files exercise exactly the code the Hub route runs.

Which config plays which role, for ``split="forgetNN"`` (NN in 01, 05, 10)::

    forget()                 forgetNN                 (training forget set)
    retain()                 retain{100-NN}           forget01<->retain99, forget05<->retain95,
                                                      forget10<->retain90 (training retain set)
    eval_splits()["forget"]        forgetNN_perturbed     ã = paraphrased_answer, 5 perturbed
    eval_splits()["retain"]        retain_perturbed       ã = paraphrased_answer, 5 perturbed
    eval_splits()["real_authors"]  real_authors_perturbed ã = the gold answer, 3 perturbed
    eval_splits()["world_facts"]   world_facts_perturbed  ã = the gold answer, 3 perturbed
    eval_splits()["holdout"]       holdoutNN              never trained on (membership attacks)

``forgetNN`` is the LAST ``NN``% of ``full`` and ``retain{100-NN}`` the rows before it.

Evaluation (:meth:`TofuBenchmark.evaluate`, shared with the world benchmark in
:class:`unilogit.benchmarks.qa.QABenchmark`) runs :func:`unilogit.eval.evaluate_qa` with the
metrics of ``docs/metrics.md``: Model Utility = harmonic mean of {Probability, ROUGE-L recall,
truth-ratio utility} x {retain, real authors, world facts} (nine numbers), and Forget Quality =
KS p-value of the forget-set truth ratios against those of the RETAIN model (a saved evaluation
of it, or the model itself). Example::

    bench = TofuBenchmark("forget10", data_dir="../shared/data/tofu")
    ref = bench.evaluate(retain_model, tokenizer)            # save this: json.dump(ref, f)
    res = bench.evaluate(unlearned, tokenizer, reference="retain_eval.json",
                         gold_model=retain_model)
    res["forget_quality"], res["model_utility"]
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from unilogit.data import Example, load_examples
from unilogit.errors import DataError

from .qa import QABenchmark
from .source import BenchmarkSource, load_reference

__all__ = [
    "EVAL_SPLITS",
    "FORGET_SPLITS",
    "TOFU_REPO",
    "UTILITY_SPLITS",
    "TofuBenchmark",
    "load_reference",
]

TOFU_REPO = "locuslab/TOFU"
HUB_SPLIT = "train"
FORGET_SPLITS = ("forget01", "forget05", "forget10")
EVAL_SPLITS = ("forget", "retain", "real_authors", "world_facts", "holdout")
UTILITY_SPLITS = ("retain", "real_authors", "world_facts")
# Eval splits whose "true" answer ã is the gold answer (metrics.md): any paraphrase is dropped.
_GOLD_TRUE_ANSWER = ("real_authors", "world_facts")
_REQUIRED_EXTRAS = {
    "forget": ("paraphrased_answer", "perturbed_answer"),
    "retain": ("paraphrased_answer", "perturbed_answer"),
    "real_authors": ("perturbed_answer",),
    "world_facts": ("perturbed_answer",),
    "holdout": (),
}

# config name -> anything unilogit.data.load_examples reads (path, hf: spec, Dataset, list)
Loader = Callable[[str], Any]


class TofuBenchmark(BenchmarkSource, QABenchmark):
    """TOFU for one forget split (``"forget01"``, ``"forget05"`` or ``"forget10"``).

    Args:
        split: the forget split; the matching retain split is chosen automatically.
        data_dir: a folder with ``<config>.jsonl`` files; ``None`` = the Hub dataset ``repo``.
        max_rows: keep only the first ``max_rows`` rows of every set (quick runs, tests).
        repo: the Hub dataset (default ``locuslab/TOFU``).
        hub_options: extra ``datasets.load_dataset`` arguments (``revision``, ``cache_dir``, ...).
        loader: ``config name -> source`` replacing both routes (a path, ``"hf:..."`` spec,
            ``datasets.Dataset`` or list of dicts: anything ``load_examples`` reads).

    Loaded configs are cached on the instance. Unknown splits and missing files raise
    :class:`DataError` (naming the valid splits / the file).
    """

    name = "tofu"
    what = "TOFU"
    utility_splits = UTILITY_SPLITS
    kl_splits = ("forget", *UTILITY_SPLITS)
    default_metrics_convention = "open-unlearning"

    def __init__(
        self,
        split: str = "forget10",
        data_dir: str | os.PathLike | None = None,
        max_rows: int | None = None,
        *,
        repo: str = TOFU_REPO,
        hub_options: Mapping[str, Any] | None = None,
        loader: Loader | None = None,
    ) -> None:
        if split not in FORGET_SPLITS:
            raise DataError(
                f"unknown TOFU split {split!r}; valid splits: {', '.join(FORGET_SPLITS)}"
            )
        self.split = split
        self.percent = int(split[len("forget") :])
        super().__init__(data_dir, max_rows, repo, hub_options, loader)
        self._cache: dict[str, list[Example]] = {}

    def __repr__(self) -> str:
        return (
            f"TofuBenchmark({self.split!r}, source={self.source_name!r}, "
            f"max_rows={self.max_rows!r})"
        )

    # ----------------------------------------------------------------------------------------
    # Which config is which
    # ----------------------------------------------------------------------------------------

    @property
    def retain_split(self) -> str:
        """The training retain config matching the forget split (forget10 -> retain90)."""
        return f"retain{100 - self.percent:02d}"

    @property
    def holdout_split(self) -> str:
        return f"holdout{self.percent:02d}"

    @property
    def configs(self) -> dict[str, str]:
        """Role -> TOFU config name (``"train_forget"``, ``"train_retain"``, eval splits)."""
        return {
            "train_forget": self.split,
            "train_retain": self.retain_split,
            "forget": f"{self.split}_perturbed",
            "retain": "retain_perturbed",
            "real_authors": "real_authors_perturbed",
            "world_facts": "world_facts_perturbed",
            "holdout": self.holdout_split,
        }

    def describe(self) -> dict[str, Any]:
        """What an evaluation records about the benchmark (plain JSON)."""
        return {
            "name": self.name,
            "split": self.split,
            "retain_split": self.retain_split,
            "max_rows": self.max_rows,
            "source": self.source_name,
            "configs": self.configs,
        }

    # ----------------------------------------------------------------------------------------
    # Loading
    # ----------------------------------------------------------------------------------------

    def _source(self, config: str) -> Any:
        """Where the raw rows of ``config`` come from (the only Hub/local difference)."""
        if self.loader is not None:
            return self.loader(config)
        if self.data_dir is not None:
            path = self.data_dir / f"{config}.jsonl"
            if path.is_file():
                return path
            alt = self.data_dir / f"{config}.json"  # a clone of the Hub repo: JSON Lines as .json
            if alt.is_file():
                return f"hf:json:{alt}"
            raise DataError(
                f"file not found: TOFU config {config!r} must be {config}.jsonl (or .json) in "
                f"{self.data_dir} (the files of the Hub dataset {self.repo}, one JSON object "
                "per line)",
                file=path,
            )
        return f"hf:{self.repo}:{config}:{HUB_SPLIT}"

    def load(self, config: str) -> list[Example]:
        """The QA examples of any TOFU config (``"full"``, ``"retain90"``, ...), cut to
        ``max_rows``."""
        if config not in self._cache:
            source = self._source(config)
            options: dict[str, Any] = {}
            if isinstance(source, str) and source.startswith("hf:json:"):
                options = {k: v for k, v in self.hub_options.items() if k == "cache_dir"}
            elif isinstance(source, str) and source.startswith("hf:"):
                options = self.hub_options
            examples = load_examples(source, kind="qa", name=f"tofu:{config}", **options)
            if self.max_rows is not None:
                examples = examples[: self.max_rows]
            self._cache[config] = examples
        return list(self._cache[config])

    def forget(self) -> list[Example]:
        """The training forget set (``forgetNN``)."""
        return self.load(self.split)

    def retain(self) -> list[Example]:
        """The training retain set (``retain{100-NN}``)."""
        return self.load(self.retain_split)

    def eval_splits(self) -> dict[str, list[Example]]:
        """The evaluation sets, keyed as :func:`unilogit.eval.evaluate_qa` expects.

        ``forget`` / ``retain`` rows carry ``paraphrased_answer`` (ã of the truth ratio) and
        ``perturbed_answer`` (5); ``real_authors`` / ``world_facts`` rows carry
        ``perturbed_answer`` (3) and NO ``paraphrased_answer`` (dropped if a source has one), so
        the suite uses the gold answer as ã and normalises their Probability by the perturbed
        answers, as in ``docs/metrics.md``. ``holdout`` is plain QA.
        """
        configs = self.configs
        out: dict[str, list[Example]] = {}
        for role in EVAL_SPLITS:
            examples = self.load(configs[role])
            if role in _GOLD_TRUE_ANSWER:
                examples = [without_paraphrase(ex) for ex in examples]
            _check_extras(role, configs[role], examples)
            out[role] = examples
        return out


def without_paraphrase(example: Example) -> Example:
    if "paraphrased_answer" not in example.extras:
        return example
    extras = {k: v for k, v in example.extras.items() if k != "paraphrased_answer"}
    return dataclasses.replace(example, extras=extras)


def _check_extras(role: str, config: str, examples: Sequence[Example]) -> None:
    """Every row of an eval split has the columns its metrics need, of the right type."""
    for ex in examples:
        for key in _REQUIRED_EXTRAS[role]:
            value = ex.extras.get(key)
            if key == "perturbed_answer":
                ok = (
                    isinstance(value, (list, tuple))
                    and len(value) > 0
                    and all(isinstance(v, str) and v.strip() for v in value)
                )
                need = "a non-empty list of non-empty strings"
            else:
                ok = isinstance(value, str) and bool(value.strip())
                need = "a non-empty string"
            if not ok:
                problem = "missing" if value is None else f"must be {need}"
                raise DataError(
                    f"{problem} (TOFU {config!r} rows need {', '.join(_REQUIRED_EXTRAS[role])} "
                    f"for the {role!r} evaluation split)",
                    file=ex.source or ex.row_id,
                    line=ex.line if ex.source else None,
                    field=key,
                )
