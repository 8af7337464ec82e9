"""A stand-in for the benchmark contract (:mod:`unilogit.benchmarks.base`) used by ``facts``
only while that module is not merged: the same ``Column`` / ``Curve`` fields and the parts of
``Benchmark`` that ``facts`` calls. Delete this file once ``base.py`` is on the branch."""

from __future__ import annotations

import abc
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from unilogit.errors import ConfigError


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    higher_is_better: bool | None = None
    fmt: str = ".3f"


@dataclass(frozen=True)
class Curve:
    x_key: str
    y_key: str
    title: str
    x_label: str = ""
    y_label: str = ""
    x_higher_is_better: bool = True
    y_higher_is_better: bool = True


@dataclass(frozen=True)
class Reference:
    evaluation: Mapping[str, Any]
    info: dict[str, Any]


class Benchmark(abc.ABC):  # noqa: B024 - a stand-in; the real one has abstract methods
    name: str = ""

    def check_options(self, options: Mapping[str, Any], allowed: Sequence[str]) -> None:
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise ConfigError(
                f"benchmark {self.name!r} has no evaluation option(s) {unknown}; it takes: "
                f"{', '.join(sorted(allowed)) or 'none'}"
            )

    def resolve_reference(self, reference: Any, tokenizer: Any = None, **options: Any) -> Any:
        from .source import load_reference

        if isinstance(reference, (str, os.PathLike)):
            return Reference(load_reference(reference), {"kind": "file", "path": str(reference)})
        if isinstance(reference, Mapping):
            return Reference(reference, {"kind": "dict"})
        raise ConfigError("a facts reference must be a saved facts evaluation (dict or path)")
