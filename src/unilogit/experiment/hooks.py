"""Hooks into an experiment's run loop: extra numbers for its records, and observers of its runs.

:func:`~unilogit.experiment.run_experiment` calls a :class:`RunHooks` object (``hooks=``) at
fixed points; every method is a no-op here, so a hook overrides only what it needs:

- :meth:`~RunHooks.fingerprint`: settings that change the records' numbers (part of the results
  folder's configuration, so results with other settings are never mixed);
- :meth:`~RunHooks.baseline`: extra fields of the target model's baseline record (before any
  unlearning), computed once per results folder;
- :meth:`~RunHooks.evaluation`: extra fields of a run's evaluation record;
- :meth:`~RunHooks.run_started` / :meth:`~RunHooks.step` / :meth:`~RunHooks.recorded` /
  :meth:`~RunHooks.run_finished`: observe a run (its configuration, every optimizer step, every
  stored record), e.g. experiment trackers.

Runs that a results folder already holds are reused, not run again: no hook sees them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["HookList", "RunHooks"]


class RunHooks:
    """No-op hooks (see the module docstring); ``run`` is the run's identity (kind, method,
    lr, epochs, seed, run_id, options)."""

    def fingerprint(self) -> Mapping[str, Any] | None:
        """Settings that change the records (None: nothing)."""
        return None

    def baseline(self, model: Any, tokenizer: Any) -> Mapping[str, Any] | None:
        """Extra fields of the target model's baseline record."""
        return None

    def evaluation(
        self, run: Mapping[str, Any], model: Any, tokenizer: Any, step: int, final: bool, kept: bool
    ) -> Mapping[str, Any] | None:
        """Extra fields of the evaluation at ``step`` (``final``: the last step; ``kept``: the
        step the auto-stop rule keeps, evaluated on its restored weights)."""
        return None

    def run_started(self, run: Mapping[str, Any], config: Any) -> None:
        """A run starts training (``config``: its :class:`~unilogit.trainer.TrainConfig`)."""

    def step(self, run: Mapping[str, Any], step: int, history: Any) -> None:
        """After every optimizer step (``history.steps[-1]``: that step's log line)."""

    def recorded(self, run: Mapping[str, Any], record: Mapping[str, Any]) -> None:
        """A record of the run was stored."""

    def run_finished(self, run: Mapping[str, Any]) -> None:
        """The run ended (also when it failed)."""

    def for_part(self, name: str) -> RunHooks:
        """These hooks for one part of a several-problem benchmark (its runs share run ids
        with the other parts'; :mod:`unilogit.experiment.parts`). Default: the same hooks."""
        return self


class HookList(RunHooks):
    """Several hooks as one: called in order; extra fields merged (later ones win)."""

    def __init__(self, hooks: Sequence[RunHooks]) -> None:
        self.hooks = list(hooks)

    def for_part(self, name: str) -> RunHooks:
        return HookList([h.for_part(name) for h in self.hooks])

    def fingerprint(self) -> Mapping[str, Any] | None:
        merged: dict[str, Any] = {}
        for h in self.hooks:
            merged.update(h.fingerprint() or {})
        return merged or None

    def baseline(self, model: Any, tokenizer: Any) -> Mapping[str, Any] | None:
        merged: dict[str, Any] = {}
        for h in self.hooks:
            merged.update(h.baseline(model, tokenizer) or {})
        return merged

    def evaluation(
        self, run: Mapping[str, Any], model: Any, tokenizer: Any, step: int, final: bool, kept: bool
    ) -> Mapping[str, Any] | None:
        merged: dict[str, Any] = {}
        for h in self.hooks:
            merged.update(h.evaluation(run, model, tokenizer, step, final, kept) or {})
        return merged

    def run_started(self, run: Mapping[str, Any], config: Any) -> None:
        for h in self.hooks:
            h.run_started(run, config)

    def step(self, run: Mapping[str, Any], step: int, history: Any) -> None:
        for h in self.hooks:
            h.step(run, step, history)

    def recorded(self, run: Mapping[str, Any], record: Mapping[str, Any]) -> None:
        for h in self.hooks:
            h.recorded(run, record)

    def run_finished(self, run: Mapping[str, Any]) -> None:
        for h in self.hooks:
            h.run_finished(run)
