"""A forgetting meter that needs no gold model, and the rule that stops unlearning with it.

The METER compares how the model treats the forget set with a HOLDOUT set of the same kind that
it never trained on (forward passes only): membership-inference ROC AUC of forget (members) vs
holdout (non-members) for the loss attack and Min-K%++ (:mod:`unilogit.eval.metrics`; 1.0 = the
forget rows look like training data, 0.5 = indistinguishable from never-seen data, 0.0 = the
forget rows stand out as LESS likely than never-seen data: over-forgetting), and the
forget / holdout mean-loss ratio (1 = alike).

The RULE (docs/stopping.md): a reading is *forgotten* when every attack's AUC lies within
``tolerance`` of 0.5, where the tolerance is ``z`` standard errors of an AUC computed on
m forget × n holdout rows when the two sets come from one distribution (Mann–Whitney /
Hanley–McNeil at AUC = 0.5): ``SE0 = sqrt((m + n + 1) / (12 m n))``. The run stops at the first
forgotten reading, or at the first reading where some attack's AUC fell below
``0.5 - tolerance`` (over-forgotten); it keeps the reading closest to 0.5 (largest distance over
the attacks; ties - e.g. an AUC saturated at 1.0 in several readings - go to the reading whose
forget / holdout mean-loss ratio is closest to 1, then the lower retain loss, then the earlier
step). The DAMAGE GUARD: the run also stops at the first *damaged* reading, where the RETAIN
rows (which the model must keep) are predicted no better than never-seen rows: no attack tells
them from the holdout rows any more although one could before unlearning, or their mean loss
exceeds the holdout rows' mean loss before unlearning (the model lost what it knew, so forget
rows that look like never-seen rows prove nothing); the kept reading is then chosen among the
earlier ones. The decision on a prefix of the readings never depends on later ones, so the
rule applied after a run (``bench``) picks the step a live run would have kept.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from .data import Example, collate, encode_examples
from .errors import ConfigError
from .eval import metrics as M
from .eval.scoring import TokenScores, token_stats

__all__ = [
    "ATTACKS",
    "ForgettingMeter",
    "MeterReading",
    "StopDecision",
    "StopRule",
    "auc_null_se",
    "reading_from_scores",
]

#: The membership attacks the meter reports and the rule watches (keys of ``mia_scores``).
ATTACKS = ("loss", "min_k_plus_plus")


@dataclass(frozen=True)
class MeterReading:
    """One measurement at optimizer step ``step`` (0 = before training)."""

    step: int
    auc: dict[str, float]  # attack -> ROC AUC, forget = members, holdout = non-members
    forget_loss: float  # mean over forget rows of the row's mean token NLL
    holdout_loss: float  # the same over holdout rows
    retain_loss: float | None  # the same over retain rows (None without a retain set)
    n_forget: int
    n_holdout: int
    retain_auc: dict[str, float] | None = None  # attack -> AUC of retain vs holdout rows
    n_retain: int = 0

    @property
    def loss_ratio(self) -> float:
        """forget_loss / holdout_loss (1: alike; < 1: forget rows still better predicted)."""
        return self.forget_loss / self.holdout_loss if self.holdout_loss > 0 else math.inf

    def log_fields(self) -> dict[str, float]:
        """Flat ``meter_*`` numbers for a train-log line."""
        out = {f"meter_auc_{k}": v for k, v in self.auc.items()}
        out["meter_loss_ratio"] = self.loss_ratio
        if self.retain_loss is not None:
            out["meter_retain_loss"] = self.retain_loss
        out.update({f"meter_retain_auc_{k}": v for k, v in (self.retain_auc or {}).items()})
        return out

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "loss_ratio": self.loss_ratio}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MeterReading:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in names})


def reading_from_scores(
    step: int,
    forget: Sequence[TokenScores],
    holdout: Sequence[TokenScores],
    retain_loss: float | None = None,
    *,
    k: float = 0.4,
    retain: Sequence[TokenScores] | None = None,
) -> MeterReading:
    """The reading from per-token scores (``logprobs``, and ``mu``/``sigma`` for Min-K%++);
    with ``retain`` scores also the retain-vs-holdout AUCs (the damage guard's signal)."""

    def scores(rows: Sequence[TokenScores]) -> dict[str, np.ndarray]:
        with_stats = all(r.mu is not None and r.sigma is not None for r in rows)
        return M.mia_scores(
            [r.logprobs for r in rows],
            mu=[r.mu for r in rows] if with_stats else None,
            sigma=[r.sigma for r in rows] if with_stats else None,
            k=k,
        )

    f, h = scores(forget), scores(holdout)
    aucs = M.mia_aucs(f, h)
    retain_auc = None
    if retain:
        known = M.mia_aucs(scores(retain), h)
        retain_auc = {a: known[a] for a in ATTACKS if a in known}
    return MeterReading(
        step=step,
        auc={a: aucs[a] for a in ATTACKS if a in aucs},
        forget_loss=float(-f["loss"].mean()),
        holdout_loss=float(-h["loss"].mean()),
        retain_loss=retain_loss,
        n_forget=len(forget),
        n_holdout=len(holdout),
        retain_auc=retain_auc,
        n_retain=len(retain or ()),
    )


def auc_null_se(n_forget: int, n_holdout: int) -> float:
    """Standard error of the AUC of m vs n exchangeable rows (true AUC 0.5, no ties):
    ``sqrt((m + n + 1) / (12 m n))`` (Mann–Whitney U's null variance / (m n)²; equal to
    Hanley–McNeil's formula at A = 0.5)."""
    m, n = n_forget, n_holdout
    if m < 1 or n < 1:
        raise ConfigError(f"an AUC needs rows on both sides, got {m} forget and {n} holdout")
    return math.sqrt((m + n + 1) / (12.0 * m * n))


@dataclass(frozen=True)
class StopDecision:
    """What the rule decided on a sequence of readings."""

    stop: bool  # True: the run should stop after the last reading
    kept_step: int | None  # the step whose weights to keep (None: no readings)
    # "forgotten" | "over-forgotten" | "damaged" (stops) | "budget" (no stop: max steps ran out)
    # | "undetectable" (no stop: the first reading was already inside the band, so the sets are
    # too small to tell the untouched model's forget rows from the holdout; the last step is kept)
    reason: str
    tolerance: float | None
    readings: list[MeterReading] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stop": self.stop,
            "kept_step": self.kept_step,
            "reason": self.reason,
            "tolerance": self.tolerance,
            "readings": [r.to_dict() for r in self.readings],
        }

    def explain(self) -> str:
        """One sentence for the CLI and the audit record."""
        kept = next((r for r in self.readings if r.step == self.kept_step), None)
        aucs = "" if kept is None else ", ".join(f"{a} {v:.3f}" for a, v in kept.auc.items())
        why = {
            "forgotten": "the forget set became indistinguishable from the holdout set",
            "over-forgotten": "the forget set started to look LESS likely than never-seen data",
            "damaged": "the retain set became indistinguishable from never-seen data (the model "
            "lost what it must keep), so the run stopped; the best reading before the damage is "
            "kept",
            "budget": "the maximum number of steps ran out before the forget set became "
            "indistinguishable from the holdout set",
            "undetectable": "the meter cannot judge: before unlearning the forget set was "
            "already within the sampling noise of the holdout set (too few rows, or rows too "
            "alike), so the fixed budget ran and its last step is kept",
        }[self.reason]
        tol = "" if self.tolerance is None else f" (|AUC - 0.5| <= {self.tolerance:.3f})"
        return f"kept step {self.kept_step}: {why}{tol}; membership AUC at that step: {aucs}"


@dataclass(frozen=True)
class StopRule:
    """Stop once forgotten (or over-forgotten), keep the reading closest to AUC 0.5.

    ``tolerance`` None: ``z`` null standard errors (:func:`auc_null_se`) of each reading's row
    counts; ``z = 1.96``: a reading inside the band is what two-sided 95% sampling noise around
    0.5 allows, i.e. what a model that never saw the forget set would typically read.
    """

    z: float = 1.96
    tolerance: float | None = None
    attacks: tuple[str, ...] = ATTACKS
    damage_guard: bool = True  # stop ("damaged") once the retain set looks never-seen

    def __post_init__(self) -> None:
        if not (math.isfinite(self.z) and self.z > 0):
            raise ConfigError(f"stop rule: z must be a positive number, got {self.z!r}")
        if self.tolerance is not None and not 0 < self.tolerance < 0.5:
            raise ConfigError(f"stop rule: tolerance must be in (0, 0.5), got {self.tolerance!r}")

    def tolerance_for(self, reading: MeterReading, n_rows: int | None = None) -> float:
        """The band's half-width for ``n_rows`` (default: the forget rows) vs the holdout."""
        if self.tolerance is not None:
            return self.tolerance
        return self.z * auc_null_se(n_rows or reading.n_forget, reading.n_holdout)

    def knows_retain(self, reading: MeterReading) -> bool | None:
        """Can some attack still tell the retain rows from the holdout rows (AUC above
        0.5 + the band for their row counts)? None: the reading has no retain AUCs."""
        values = [v for a, v in (reading.retain_auc or {}).items() if a in self.attacks]
        if not values or reading.n_retain < 1:
            return None
        return max(values) - 0.5 > self.tolerance_for(reading, reading.n_retain)

    def distance(self, reading: MeterReading) -> float:
        """max over the watched attacks of |AUC - 0.5| (attacks missing from the reading are
        skipped; none at all: ConfigError)."""
        values = [reading.auc[a] for a in self.attacks if a in reading.auc]
        if not values:
            raise ConfigError(f"meter reading at step {reading.step} has none of {self.attacks}")
        return max(abs(v - 0.5) for v in values)

    def damaged(self, first: MeterReading, reading: MeterReading) -> bool:
        """The retain rows look never-seen at ``reading`` though not at ``first`` (before
        unlearning): no attack tells them from the holdout rows any more, or their mean loss
        exceeds the holdout rows' mean loss at ``first``."""
        if not self.damage_guard:
            return False
        lost_edge = self.knows_retain(first) is True and self.knows_retain(reading) is False
        before, now = first.retain_loss, reading.retain_loss
        worse = before is not None and now is not None and before < first.holdout_loss < now
        return lost_edge or worse

    def decide(self, readings: Sequence[MeterReading]) -> StopDecision:
        """Scan ``readings`` in order; stop at the first forgotten or over-forgotten one and keep
        the closest to 0.5 among those seen so far (ties: loss ratio closer to 1, then lower
        retain loss, then earlier).
        If the first reading (the model before unlearning) is already inside the band, the meter
        has no signal: never stop on it, keep the last step ("undetectable").
        A :meth:`damaged` reading ends the run ("damaged", whatever its forget AUCs): the kept
        reading is chosen among the earlier ones (undetectable: the last of them)."""
        readings = list(readings)
        seen: list[MeterReading] = []
        tol = None
        blind = bool(readings) and self.distance(readings[0]) <= self.tolerance_for(readings[0])
        for r in readings:
            seen.append(r)
            tol = self.tolerance_for(r)
            if self.damaged(readings[0], r):  # keep a reading before it (blind: the last one)
                before = seen[-2:-1] if blind else seen[:-1]
                return self._decision(True, "damaged", tol, seen, before)
            if blind:
                continue
            low = min(r.auc[a] for a in self.attacks if a in r.auc)
            if self.distance(r) <= tol:
                return self._decision(True, "forgotten", tol, seen)
            if low < 0.5 - tol:
                return self._decision(True, "over-forgotten", tol, seen)
        if blind:  # the untouched model: no signal
            return StopDecision(False, readings[-1].step, "undetectable", tol, readings)
        return self._decision(False, "budget", tol, seen)

    def _decision(
        self,
        stop: bool,
        reason: str,
        tol: float | None,
        seen: list[MeterReading],
        candidates: list[MeterReading] | None = None,
    ) -> StopDecision:
        def rank(r: MeterReading) -> tuple[float, float, float, int]:
            retain = r.retain_loss if r.retain_loss is not None else 0.0
            ratio = r.loss_ratio
            gap = abs(math.log(ratio)) if 0 < ratio < math.inf else math.inf
            return (round(self.distance(r), 12), round(gap, 12), retain, r.step)

        pool = seen if candidates is None else candidates
        kept = min(pool, key=rank).step if pool else None
        return StopDecision(stop, kept, reason, tol, list(seen))


class ForgettingMeter:
    """Forward passes over (capped) forget, holdout and retain rows -> :class:`MeterReading`.

    Rows are encoded exactly as training encodes them (:func:`unilogit.data.encode_examples`).
    At most ``max_rows`` rows per set are used, the same seeded sample at every reading.
    """

    def __init__(
        self,
        tokenizer: Any,
        forget: Sequence[Example],
        holdout: Sequence[Example],
        retain: Sequence[Example] | None = None,
        *,
        max_rows: int = 200,
        batch_size: int = 16,
        k: float = 0.4,
        prompt_format: Any = None,
        max_length: int | None = 512,
        seed: int = 0,
    ) -> None:
        if not holdout:
            raise ConfigError("the forgetting meter needs a non-empty holdout set")
        kinds = {e.kind for e in forget} | {e.kind for e in holdout}
        if len(kinds) > 1:
            raise ConfigError(
                f"the holdout set must be of the same kind as the forget set (QA pairs or "
                f"texts); got {sorted(kinds)}"
            )
        if max_rows < 2 or batch_size < 1:
            raise ConfigError("meter: max_rows must be >= 2 and batch_size >= 1")
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.pad, self.batch_size, self.k = tokenizer.pad_token_id, batch_size, k

        def encode(rows: Sequence[Example], salt: int) -> list[Any]:
            rows = list(rows)
            if len(rows) > max_rows:
                rows = random.Random(seed * 1_000_003 + salt).sample(rows, max_rows)
            return encode_examples(
                tokenizer, rows, prompt_format=prompt_format, max_length=max_length
            )

        self.forget, self.holdout = encode(forget, 1), encode(holdout, 2)
        self.retain = encode(retain, 3) if retain else None

    @torch.no_grad()
    def measure(self, model: torch.nn.Module, step: int) -> MeterReading:
        """Score every set in eval mode (the model's mode is restored), without autocast."""
        was_training = model.training
        model.eval()
        try:
            device_type = next(model.parameters()).device.type
            with torch.autocast(device_type, enabled=False):
                forget = self._scores(model, self.forget)
                holdout = self._scores(model, self.holdout)
                retain = self._scores(model, self.retain) if self.retain else None
        finally:
            model.train(was_training)
        retain_loss = None
        if retain is not None:
            retain_loss = float(np.mean([M.mean_nll(s.logprobs) for s in retain]))
        return reading_from_scores(step, forget, holdout, retain_loss, k=self.k, retain=retain)

    def _scores(self, model: torch.nn.Module, encoded: list[Any]) -> list[TokenScores]:
        device = next(model.parameters()).device
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i].input_ids))
        out: list[TokenScores | None] = [None] * len(encoded)
        for s in range(0, len(order), self.batch_size):
            idx = order[s : s + self.batch_size]
            batch = collate([encoded[i] for i in idx], self.pad)
            ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]  # (B, T-1, V)
            targets = batch["labels"][:, 1:].to(device)  # (B, T-1)
            for j, i in enumerate(idx):
                sel = targets[j] != -100
                lp, mu, sd = token_stats(logits[j][sel], targets[j][sel], with_stats=True)
                out[i] = TokenScores(
                    logprobs=lp.double().cpu().numpy(),
                    mu=mu.double().cpu().numpy(),  # type: ignore[union-attr]
                    sigma=sd.double().cpu().numpy(),  # type: ignore[union-attr]
                )
        return out  # type: ignore[return-value]
