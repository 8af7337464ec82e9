"""Our numbers under open-unlearning's metric names (its ``*_SUMMARY.json`` keys), and its
saved evaluation logs (``TOFU_EVAL.json`` / ``MUSE_EVAL.json``) read as a reference.

open-unlearning names a metric after its config file (``configs/eval/tofu_metrics/*.yaml``,
``configs/eval/muse_metrics/*.yaml``); its logs hold ``{name: {"agg_value": x,
"value_by_index": {"<row index>": {...}}}}``, with per-question truth ratios under
``forget_truth_ratio`` -> ``value_by_index`` -> ``score`` and the Min-K% AUC under
``mia_min_k`` -> ``agg_value`` (what its Forget Quality and PrivLeak read from a retain log).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from unilogit.errors import DataError

__all__ = ["from_ou_log", "is_ou_log", "muse_ou_names", "qa_ou_names"]

#: Our split name -> open-unlearning's prefix.
_PREFIX = {"forget": "forget", "retain": "retain", "real_authors": "ra", "world_facts": "wf"}
#: Our per-split metric -> open-unlearning's suffix ({p} = prefix); probability depends on kind.
_SPLIT = {
    "rouge_l_recall": "{p}_Q_A_ROUGE",
    "rouge_l_recall_paraphrased": "{p}_Q_A_PARA_ROUGE",
    "rouge_l_recall_perturbed": "{p}_Q_A_PERT_ROUGE",
}
_MIA = {
    "loss": "mia_loss",
    "zlib": "mia_zlib",
    "min_k": "mia_min_k",
    "min_k_plus_plus": "mia_min_k_plus_plus",
    "reference": "mia_reference",
    "gradnorm": "mia_gradnorm",
}


def qa_ou_names(result: Mapping[str, Any]) -> dict[str, float]:
    """open-unlearning name -> value for an :func:`~unilogit.eval.evaluate_qa` result."""
    out: dict[str, float] = {}
    for key in ("forget_quality", "model_utility", "privleak"):
        if isinstance(result.get(key), (int, float)):
            out[key] = float(result[key])
    forget = result.get("forget_split")
    for split, s in (result.get("splits") or {}).items():
        p = "forget" if split == forget else _PREFIX.get(split)
        if p is None:
            continue
        if "probability" in s:
            normalised = s.get("probability_kind") == "normalised_by_perturbed"
            out[f"{p}_Q_A_Prob" + ("_normalised" if normalised else "")] = s["probability"]
        for ours, theirs in _SPLIT.items():
            if ours in s:
                out[theirs.format(p=p)] = s[ours]
        if "truth_ratio" in s:
            out["forget_truth_ratio" if p == "forget" else f"{p}_Truth_Ratio"] = s["truth_ratio"]
        if p == "forget":
            for m in ("extraction_strength", "exact_memorization"):
                if m in s:
                    out[m] = s[m]
    for attack, auc in (result.get("mia") or {}).items():
        if attack in _MIA:
            out[_MIA[attack]] = auc
    return out


def muse_ou_names(result: Mapping[str, Any]) -> dict[str, float]:
    """open-unlearning name -> value for an :func:`~unilogit.eval.evaluate_muse` result."""
    names = {
        "knowmem_f": "forget_knowmem_ROUGE",
        "knowmem_r": "retain_knowmem_ROUGE",
        "verbmem_f": "forget_verbmem_ROUGE",
        "privleak": "privleak",
        "extraction_strength": "extraction_strength",
        "exact_memorization": "exact_memorization",
    }
    out = {theirs: result[ours] for ours, theirs in names.items() if result.get(ours) is not None}
    for attack, auc in (result.get("mia") or {}).items():
        if attack in _MIA:
            out[_MIA[attack]] = auc
    return out


def is_ou_log(value: Any) -> bool:
    """An open-unlearning evaluation log: no ``benchmark`` entry, and a ``forget_truth_ratio``
    or ``mia_min_k`` entry with an ``agg_value``."""
    return (
        isinstance(value, Mapping)
        and "benchmark" not in value
        and any(
            isinstance(value.get(k), Mapping) and "agg_value" in value[k]
            for k in ("forget_truth_ratio", "mia_min_k")
        )
    )


def from_ou_log(log: Mapping[str, Any], file: str | None = None) -> dict[str, Any]:
    """The parts of an open-unlearning log that a reference needs, in our result's layout:
    ``splits.forget.truth_ratios`` (ordered by row index) and ``mia.min_k`` / ``privleak_auc``.
    Recorded as computed under the open-unlearning convention (its prompt format is unknown)."""
    from unilogit.eval.conventions import get_convention

    out: dict[str, Any] = {
        "forget_split": "forget",
        "splits": {},
        "metrics_convention": get_convention("open-unlearning").describe(),
        "source_format": "open-unlearning",
    }
    tr = log.get("forget_truth_ratio")
    if isinstance(tr, Mapping) and isinstance(tr.get("value_by_index"), Mapping):
        try:
            rows = sorted(tr["value_by_index"].items(), key=lambda kv: int(kv[0]))
            ratios = [float(v["score"]) for _, v in rows]
        except (KeyError, TypeError, ValueError):
            raise DataError(
                "open-unlearning log: forget_truth_ratio.value_by_index must map row indices "
                "to {'score': number}",
                file=file,
                field="forget_truth_ratio",
            ) from None
        out["splits"]["forget"] = {"truth_ratios": ratios, "n": len(ratios)}
    mk = log.get("mia_min_k")
    if isinstance(mk, Mapping) and isinstance(mk.get("agg_value"), (int, float)):
        out["mia"] = {"min_k": float(mk["agg_value"])}
        out["privleak_auc"] = float(mk["agg_value"])
        out["privleak_k"] = 0.4  # open-unlearning's configs (mia_min_k.yaml)
    return out
