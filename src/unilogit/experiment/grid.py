"""The grid of an experiment: methods x learning rates x run lengths (epochs) x seeds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from unilogit.errors import ConfigError

__all__ = ["Grid", "RunSpec", "merge_grids", "parse_lrs"]


@dataclass(frozen=True)
class RunSpec:
    """One training run of the grid."""

    method: str
    lr: float
    epochs: int
    seed: int = 0

    @property
    def key(self) -> tuple[str, float, int, int]:
        return (self.method, float(self.lr), int(self.epochs), int(self.seed))

    @property
    def run_id(self) -> str:
        """A file-name-safe identifier, e.g. ``unilogit-lr0.0003-ep5-s0``."""
        return f"{self.method}-lr{self.lr:g}-ep{self.epochs}-s{self.seed}"


def _floats(values: Any, what: str) -> tuple[float, ...]:
    if isinstance(values, (int, float)) and not isinstance(values, bool):
        values = [values]
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise ConfigError(f"{what} must be positive numbers, got {v!r}")
        out.append(float(v))
    if not out:
        raise ConfigError(f"{what}: empty")
    return tuple(dict.fromkeys(out))


def _ints(values: Any, what: str, minimum: int) -> tuple[int, ...]:
    if isinstance(values, int) and not isinstance(values, bool):
        values = [values]
    out = []
    for v in values:
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise ConfigError(f"{what} must be integers >= {minimum}, got {v!r}")
        out.append(v)
    if not out:
        raise ConfigError(f"{what}: empty")
    return tuple(dict.fromkeys(out))


@dataclass(frozen=True)
class Grid:
    """methods x lrs x epochs x seeds. ``lrs`` is one list for every method or a mapping
    method -> list (each method's own learning rates); ``epochs`` are run lengths (each run
    is evaluated after every one of its epochs, so ``(5,)`` already gives epochs 1..5)."""

    methods: tuple[str, ...]
    lrs: Mapping[str, tuple[float, ...]]
    epochs: tuple[int, ...]
    seeds: tuple[int, ...] = (0,)

    @classmethod
    def make(
        cls,
        methods: Sequence[str] | str,
        lrs: Sequence[float] | float | Mapping[str, Sequence[float] | float],
        epochs: Sequence[int] | int,
        seeds: Sequence[int] | int = (0,),
    ) -> Grid:
        from unilogit.methods import METHODS

        if isinstance(methods, str):
            methods = [m for m in methods.split(",") if m.strip()]
        methods = tuple(dict.fromkeys(m.strip().lower() for m in methods))
        if not methods:
            raise ConfigError("a sweep needs at least one method")
        unknown = [m for m in methods if m not in METHODS]
        if unknown:
            raise ConfigError(
                f"unknown method(s) {unknown}; valid methods: {', '.join(sorted(METHODS))}"
            )
        if isinstance(lrs, Mapping):
            missing = [m for m in methods if m not in lrs]
            if missing:
                raise ConfigError(f"no learning rates given for {missing}")
            per = {m: _floats(lrs[m], f"learning rates of {m}") for m in methods}
        else:
            shared = _floats(lrs, "learning rates")
            per = {m: shared for m in methods}
        return cls(methods, per, _ints(epochs, "epochs", 1), _ints(seeds, "seeds", 0))

    def runs(self) -> list[RunSpec]:
        return [
            RunSpec(m, lr, e, s)
            for m in self.methods
            for lr in self.lrs[m]
            for e in self.epochs
            for s in self.seeds
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "methods": list(self.methods),
            "lrs": {m: list(v) for m, v in self.lrs.items()},
            "epochs": list(self.epochs),
            "seeds": list(self.seeds),
        }


def merge_grids(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Union of two :meth:`Grid.to_dict` grids (what a results folder has seen, informational)."""
    out: dict[str, Any] = {}
    for key in ("methods", "epochs", "seeds"):
        out[key] = list(dict.fromkeys([*(old.get(key) or []), *(new.get(key) or [])]))
    lrs: dict[str, list[float]] = {k: list(v) for k, v in (old.get("lrs") or {}).items()}
    for m, values in (new.get("lrs") or {}).items():
        lrs[m] = list(dict.fromkeys([*lrs.get(m, []), *values]))
    out["lrs"] = lrs
    return out


def parse_lrs(text: str, methods: Sequence[str]) -> list[float] | dict[str, list[float]]:
    """Learning rates from text: ``"1e-4,3e-4"`` (every method) or
    ``"unilogit:1e-3,npo:3e-4,npo:1e-3"`` (per method; plain values then apply to the methods
    without their own). The result is what :meth:`Grid.make` takes as ``lrs``."""
    shared: list[float] = []
    per: dict[str, list[float]] = {}
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        method, sep, value = item.rpartition(":")
        try:
            lr = float(value)
        except ValueError:
            raise ConfigError(
                f"learning rates: {item!r} is not a number (or METHOD:NUMBER)"
            ) from None
        if sep:
            per.setdefault(method.strip().lower(), []).append(lr)
        else:
            shared.append(lr)
    if not per:
        if not shared:
            raise ConfigError("learning rates: none given")
        return shared
    wanted = [m.lower() for m in methods]
    extra = sorted(set(per) - set(wanted))
    if extra:
        raise ConfigError(f"learning rates name method(s) {extra} that are not in the methods")
    missing = [m for m in wanted if m not in per and not shared]
    if missing:
        raise ConfigError(f"learning rates: none for {missing}")
    return {m: per.get(m, shared) for m in wanted}
