"""The forgetting meter inside a training run: read it every N steps, keep the best weights.

:class:`AutoStop` is what :func:`unilogit.trainer.unlearn` takes as ``stopping=``. After step 0
(before training) and every ``every`` optimizer steps (and after the last) it takes a
:class:`~unilogit.stopping.MeterReading`; when the :class:`~unilogit.stopping.StopRule` makes
that reading the one to keep, it copies the TRAINABLE parameters (LoRA: the adapters only) to
the CPU. With ``stop=True`` the run ends when the rule says so and the kept weights are put back;
with ``stop=False`` the meter only reports (the run keeps its fixed budget). Its state (readings,
kept step and weights) goes into every checkpoint, so a resumed run decides as an uninterrupted
one would.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import nn

from .errors import ConfigError
from .stopping import MeterReading, StopDecision, StopRule


class Meter(Protocol):
    def measure(self, model: nn.Module, step: int) -> MeterReading: ...


class AutoStop:
    """Meter every ``every`` steps (None: four times per epoch); with ``stop`` end the run
    when ``rule`` says so."""

    def __init__(
        self,
        meter: Meter,
        *,
        every: int | None = None,
        rule: StopRule | None = None,
        stop: bool = True,
    ) -> None:
        bad = isinstance(every, bool) or not isinstance(every, int) or every < 1
        if every is not None and bad:
            raise ConfigError(f"meter_every must be an integer >= 1, got {every!r}")
        self.meter, self.every, self.rule, self.stop = meter, every, rule or StopRule(), stop
        self.readings: list[MeterReading] = []
        self.kept: dict[str, torch.Tensor] | None = None  # name -> CPU copy of a trainable param

    @property
    def decision(self) -> StopDecision:
        return self.rule.decide(self.readings)

    def due(self, step: int, total_steps: int, steps_per_epoch: int) -> bool:
        """Read the meter after optimizer step ``step`` (0: before training)?"""
        every = self.every or max(1, steps_per_epoch // 4)
        return step == 0 or step % every == 0 or step == total_steps

    def observe(self, model: nn.Module, step: int) -> MeterReading:
        """Read the meter at ``step``; snapshot the weights if the rule now keeps this step."""
        return self.add(model, self.meter.measure(model, step))

    def add(self, model: nn.Module, reading: MeterReading) -> MeterReading:
        """Record a reading taken elsewhere (of ``model`` at ``reading.step``)."""
        step = reading.step
        self.readings.append(reading)
        if self.stop and self.decision.kept_step == step:
            self.kept = {
                name: p.detach().to("cpu", copy=True)
                for name, p in model.named_parameters()
                if p.requires_grad
            }
        return reading

    def summary(self) -> dict[str, Any]:
        """The decision (:meth:`StopDecision.to_dict` with ``explain``), with EVERY reading
        (a meter-only run reads on after the rule's stop) and ``meter_only``."""
        decision = self.decision
        return {
            **decision.to_dict(),
            "explain": decision.explain(),
            "readings": [r.to_dict() for r in self.readings],
            "meter_only": not self.stop,
        }

    def should_stop(self) -> bool:
        return self.stop and self.decision.stop

    def restore(self, model: nn.Module) -> None:
        """Put the kept weights back into ``model`` (with ``stop``; no-op without readings)."""
        if not self.stop or self.kept is None:
            return
        params = dict(model.named_parameters())
        missing = sorted(set(self.kept) - set(params))
        if missing:
            raise ConfigError(f"auto-stop: kept parameters not in the model: {missing[:5]}")
        with torch.no_grad():
            for name, value in self.kept.items():
                params[name].copy_(value.to(params[name].device))

    def state_dict(self) -> dict[str, Any]:
        """Plain types and tensors only (loadable with ``torch.load(weights_only=True)``)."""
        return {
            "readings": [r.to_dict() for r in self.readings],
            "kept": self.kept or {},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.readings = [MeterReading.from_dict(r) for r in state["readings"]]
        self.kept = dict(state["kept"]) or None


def build_autostop(
    tokenizer: Any,
    forget: Any,
    holdout: Any,
    retain: Any = None,
    *,
    stop: bool = True,
    every: int | None = None,
    max_rows: int = 200,
    prompt_format: Any = None,
    max_length: int | None = 512,
    rule: StopRule | None = None,
) -> AutoStop:
    """An :class:`AutoStop` over a :class:`~unilogit.stopping.ForgettingMeter` of these rows
    (anything :func:`unilogit.data.load_examples` reads)."""
    from .data import load_examples
    from .stopping import ForgettingMeter

    def rows(source: Any, name: str) -> list[Any]:
        return load_examples(source, name=name) if source is not None else []

    meter = ForgettingMeter(
        tokenizer,
        rows(forget, "forget"),
        rows(holdout, "holdout"),
        rows(retain, "retain") or None,
        max_rows=max_rows,
        prompt_format=prompt_format,
        max_length=max_length,
    )
    return AutoStop(meter, every=every, rule=rule, stop=stop)
