"""Keep only the probes the ORIGINAL model answers correctly, and say why for each one.

A probe is kept iff the original model is greedy-correct on it (:mod:`unilogit.eval.probes`), so
the original model scores exactly 1.0 on every kept probe. Verdicts are cached per model (its
weights hash) and probe-file contents in ``<cache>/filter-<key>.json`` (written atomically);
only probes missing from the cache are scored, so a small setting reuses a larger one's work.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from unilogit.eval.probes import Probe, score_probes
from unilogit.files import atomic_write_json

__all__ = ["SCORING_VERSION", "filter_key", "verdicts"]

#: Bump when the scoring rule changes: cached verdicts of another version are not reused.
SCORING_VERSION = 1


def filter_key(model_sha: str, data_sha: str) -> str:
    blob = f"{SCORING_VERSION}|{model_sha}|{data_sha}"
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _verdict(probe: Probe, correct: bool, prob: float, matched: str | None) -> dict[str, Any]:
    if correct:
        reason = f"the original model's greedy answer gives {matched!r}"
    else:
        reason = (
            "the original model's greedy answer gives none of the accepted answers "
            f"(main answer probability {prob:.3f})"
        )
    return {"kept": correct, "prob": round(prob, 6), "matched": matched, "reason": reason}


def verdicts(
    model,
    tokenizer,
    probes: Sequence[Probe],
    *,
    key: str,
    cache_dir: Path,
    batch_size: int = 16,
    progress: bool = False,
) -> dict[str, dict[str, Any]]:
    """``{probe id: {"kept", "prob", "matched", "reason"}}`` of ``probes`` on the original
    model."""
    path = Path(cache_dir) / f"filter-{key}.json"
    cached: dict[str, dict[str, Any]] = {}
    if path.is_file():
        try:
            cached = json.loads(path.read_text(encoding="utf-8"))["verdicts"]
        except (OSError, ValueError, KeyError, TypeError):
            cached = {}  # a damaged cache is recomputed, never trusted
    missing = [p for p in probes if p.id not in cached]
    if missing:
        scores = score_probes(model, tokenizer, missing, batch_size=batch_size, progress=progress)
        for probe, s in zip(missing, scores, strict=True):
            cached[probe.id] = _verdict(probe, s.correct, s.prob, s.matched)
        atomic_write_json(path, {"scoring_version": SCORING_VERSION, "verdicts": cached})
    return {p.id: cached[p.id] for p in probes}
