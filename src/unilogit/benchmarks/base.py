"""The benchmark contract: what every benchmark declares and does, so that the experiment
pipeline (:mod:`unilogit.experiment`), ``unilogit eval`` and the report use benchmarks without
probing them (no ``hasattr``, no name checks). A new benchmark is one subclass plus its data::

    class MyBench(Benchmark):
        name = "mine"
        columns = (Column("forget/score", "forget score", higher_is_better=False),)
        curves = (Curve("forget/score", "utility/score", "forgetting vs utility",
                        x_higher_is_better=False),)
        def describe(self): ...
        def forget(self): ...
        def evaluate(self, model, tokenizer, *, reference=None, gold_model=None,
                     progress=True, **options): ...
        def summarize(self, result): ...

Benchmarks with a gold model (``has_gold``: a model trained without the forget set exists, e.g.
TOFU, world) also give Forget Quality and KL to gold; the gold model's own evaluation becomes
the reference row through :meth:`Benchmark.gold_baseline`. Benchmarks without one (MUSE, facts)
run through the same pipeline with only the target model as a baseline. A benchmark that
stands for several separate unlearning problems (facts ``single``: RWKU's single-target setting)
returns them from :meth:`Benchmark.parts`; a sweep runs its grid on each and averages them
(:mod:`unilogit.experiment.parts`).

One reference resolution for all (:meth:`Benchmark.resolve_reference`): a reference is a
complete saved evaluation (a dict, or the path of its JSON file) of the SAME benchmark, split and
row set, or the reference model itself (scored here by :meth:`Benchmark.evaluate_reference`).
Anything else (a bare list of numbers, another benchmark's evaluation, a cut-down dict) is
refused with a :class:`~unilogit.errors.ConfigError` / :class:`~unilogit.errors.DataError`.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from unilogit.errors import ConfigError, DataError

__all__ = ["Benchmark", "Column", "Curve", "Reference"]


@dataclass(frozen=True)
class Column:
    """One column of the report's tables: the record key, its header and which way is better
    (``None``: neither). ``fmt`` is a format spec, or ``"p"`` for p-values."""

    key: str
    label: str
    higher_is_better: bool | None = None
    fmt: str = ".3f"

    @property
    def header(self) -> str:
        arrow = {True: " ↑", False: " ↓", None: ""}[self.higher_is_better]
        return self.label + arrow


@dataclass(frozen=True)
class Curve:
    """A Pareto plot of the report: ``x_key`` (how much was forgotten) against ``y_key`` (what
    must survive) over every evaluation of every run, with each method's Pareto front."""

    x_key: str
    y_key: str
    title: str
    x_label: str = ""
    y_label: str = ""
    x_higher_is_better: bool = True
    y_higher_is_better: bool = True
    #: Both axes on a symmetric log scale (linear within 0.01 of 0), for quantities that span
    #: orders of magnitude and can be 0 (KL): otherwise a collapsed run squeezes the rest.
    symlog: bool = False


@dataclass(frozen=True)
class Reference:
    """A resolved reference: the complete evaluation it came from and a JSON description of
    where it came from (``kind``: ``"model"`` | ``"file"`` | ``"dict"``, ``path``, ...)."""

    evaluation: Mapping[str, Any]
    info: dict[str, Any]


class Benchmark(abc.ABC):
    """The contract every benchmark implements (see the module docstring)."""

    #: Registry name ("tofu", "world", "muse-news", "facts").
    name: ClassVar[str]
    #: A gold (retain) model exists: Forget Quality and KL to gold can be computed.
    has_gold: ClassVar[bool] = False
    #: ``evaluate`` options used unless the caller gives others.
    default_eval_options: ClassVar[Mapping[str, Any]] = {}
    #: Evaluation splits that get KL to the gold model.
    kl_splits: ClassVar[tuple[str, ...]] = ()
    #: The report's table columns and Pareto plots (keys of :meth:`summarize`).
    columns: ClassVar[tuple[Column, ...]] = ()
    curves: ClassVar[tuple[Curve, ...]] = ()

    # ----------------------------------------------------------------------------- data

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """JSON identity (name, split, row limit, data hashes) for fingerprints and references."""

    @abc.abstractmethod
    def forget(self) -> list[Any]:
        """The training forget set."""

    def retain(self) -> list[Any] | None:
        """The training retain set; ``None``: the benchmark has no retain data."""
        return None

    def holdout(self) -> list[Any] | None:
        """Rows of the same kind never trained on (membership attacks); ``None`` if none."""
        return None

    def parts(self) -> list[Benchmark] | None:
        """The separate unlearning problems this benchmark stands for, or ``None`` (one).
        RWKU's single-target setting is one part per target, each unlearned alone from the
        original model; a sweep runs its grid on every part and averages the results."""
        return None

    def identity(self) -> dict[str, Any]:
        """What a reference must share with this benchmark: :meth:`describe` without where the
        data was read from (``source``), which may differ between machines."""
        return {k: v for k, v in self.describe().items() if k != "source"}

    # ----------------------------------------------------------------------------- models

    def target_model(self) -> tuple[Any, Any] | None:
        """The benchmark's own target model and tokenizer, or ``None`` (bring your own)."""
        return None

    def gold_model(self) -> tuple[Any, Any] | None:
        """The benchmark's own gold (retain) model and tokenizer, or ``None``. Only
        benchmarks with ``has_gold`` have one."""
        return None

    # ----------------------------------------------------------------------------- evaluation

    @abc.abstractmethod
    def evaluate(
        self,
        model: Any,
        tokenizer: Any,
        *,
        reference: Any = None,
        gold_model: Any = None,
        progress: bool = True,
        **options: Any,
    ) -> dict[str, Any]:
        """The full, JSON-able evaluation of ``model`` (with a ``"benchmark"`` entry =
        :meth:`describe` and a ``"reference"`` entry = the resolved reference's info)."""

    @abc.abstractmethod
    def summarize(self, result: Mapping[str, Any]) -> dict[str, float]:
        """The flat numbers of an evaluation, the keys ``columns`` and ``curves`` name."""

    def gold_baseline(self, result: Mapping[str, Any]) -> dict[str, Any]:
        """The gold model's own evaluation (run with ``reference=None``) completed as the
        reference row. Only for benchmarks with ``has_gold``."""
        raise ConfigError(f"benchmark {self.name!r} has no gold model")

    def check_options(self, options: Mapping[str, Any], allowed: Sequence[str]) -> None:
        """Refuse evaluation options this benchmark does not take (one clear error instead of
        a TypeError deep in the evaluation)."""
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise ConfigError(
                f"benchmark {self.name!r} has no evaluation option(s) {unknown}; it takes: "
                f"{', '.join(sorted(allowed)) or 'none'}"
            )

    # ----------------------------------------------------------------------------- reference

    def evaluate_reference(self, model: Any, tokenizer: Any, **options: Any) -> dict[str, Any]:
        """Evaluate a reference model on what the reference needs (default: everything)."""
        return self.evaluate(model, tokenizer, **options)

    def check_reference(self, evaluation: Mapping[str, Any], file: str | None) -> dict[str, Any]:
        """Check that ``evaluation`` holds what this benchmark takes from a reference (raise
        :class:`DataError` naming the missing field); return facts for the info entry."""
        return {}

    def resolve_reference(
        self, reference: Any, tokenizer: Any = None, **options: Any
    ) -> Reference | None:
        """The one place where a reference becomes usable (see the module docstring).

        ``reference``: ``None``; the path of a saved evaluation (JSON object); a saved
        evaluation as a dict; or the reference model (evaluated here with ``tokenizer`` and
        ``options``). The evaluation must be complete, of this benchmark's :meth:`identity`.
        """
        from .source import is_model, load_reference

        if reference is None:
            return None
        if is_model(reference):
            evaluation = self.evaluate_reference(reference, tokenizer, **options)
            info: dict[str, Any] = {"kind": "model"}
            file = None
        elif isinstance(reference, (str, os.PathLike)):
            evaluation = load_reference(reference)
            info = {"kind": "file", "path": str(reference)}
            file = str(reference)
        elif isinstance(reference, Mapping):
            evaluation, info, file = reference, {"kind": "dict"}, None
        else:
            raise ConfigError(
                f"reference must be a saved {self.name} evaluation (a JSON object, or the path "
                f"of its file) or the reference model itself; got {type(reference).__name__}"
                + (" (a bare list of numbers is not an evaluation)" if _is_list(reference) else "")
            )
        facts = self.check_reference(evaluation, file)
        self._check_identity(evaluation, file)
        info = {**info, "benchmark": dict(evaluation["benchmark"]), **facts}
        return Reference(evaluation, info)

    def _check_identity(self, evaluation: Mapping[str, Any], file: str | None) -> None:
        bench = evaluation.get("benchmark")
        if not isinstance(bench, Mapping):
            raise DataError(
                f"reference is not a saved {self.name} evaluation: it has no 'benchmark' entry",
                file=file,
                field="benchmark",
            )
        mine = self.identity()
        theirs = {k: v for k, v in bench.items() if k != "source"}
        if theirs != mine:
            diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            details = ", ".join(f"{k}: {theirs.get(k)!r} vs {mine.get(k)!r}" for k in diff)
            where = " ".join(str(bench[k]) for k in ("name", "split") if bench.get(k))
            raise ConfigError(
                f"reference was evaluated on {where or 'another benchmark'}, not on this "
                f"{self.name} benchmark ({details}): a reference must be an evaluation of the "
                "same benchmark, split and rows"
            )


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))
