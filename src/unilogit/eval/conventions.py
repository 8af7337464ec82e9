"""Metric conventions: the small numerical and formatting choices on which published TOFU / MUSE
numbers disagree, as one named, recorded value.

Four conventions (``docs/metrics.md`` lists every difference with its source)::

    name              follows
    open-unlearning   locuslab/open-unlearning (src/evals/metrics/*.py, configs/eval/*)
    tofu              locuslab/tofu (aggregate_eval_stat.py, evaluate_util.py, eval_everything.yaml)
    muse              swj0419/muse_bench (metrics/knowmem.py, metrics/logger.py)
    exact             the mathematically exact values (this project's definitions)

Each is a frozen :class:`MetricConvention`; :func:`get_convention` looks one up by name and
:meth:`MetricConvention.describe` is what results record.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from unilogit.errors import ConfigError

__all__ = ["CONVENTIONS", "DEFAULT_CONVENTION", "MetricConvention", "get_convention"]


@dataclass(frozen=True)
class MetricConvention:
    """One convention. Fields (open-unlearning's value first, the exact one second):

    * ``epsilon``: added to the denominators of the truth ratio ``P_pert / (P_true + ε)``, of
      ``min(R, 1/(R + ε))``, of the normalised probability ``p / (p + Σp' + ε)`` and of PrivLeak
      ``(A - A_ret) / (A_ret + ε)`` (1e-10 | 0). With ε > 0 a collapsed model's R underflows to 0.
    * ``minkpp_sigma_floor``: Min-K%++ divides by ``max(σ_t, floor)`` (OU floors the variance at
      1e-6, i.e. σ at 1e-3 | 1e-6). ``minkpp_uncentred``: σ² = E[(log p)²] - μ² (OU) instead
      of the centred Σ p (log p - μ)².
    * ``drop_last_token``: Min-K%, Min-K%++, gradient norm, exact memorization and extraction
      strength ignore the last scored token (the EOS of an answer; OU's ``tokenwise_logprobs``).
    * ``es_no_match``: extraction strength when no suffix is extracted: ``"one_over_n"`` (OU's
      loop ends at k = n-1) | ``"zero"`` (k = n).
    * ``muse_rouge_stemmer``: Porter stemming in MUSE's ROUGE (MUSE: off; TOFU always stems).
    * ``knowmem_answer_prefix``: the text that ends a KnowMem prompt ("Answer: " | "Answer:").
    * ``knowmem_stop``: stop strings of KnowMem generation.
    * ``tofu_max_rows``: evaluate only the first N rows of each TOFU set (original TOFU: 300).
    * ``max_length_counts_prompt``: the generation limit counts the prompt (TOFU's
      ``max_length=200``) instead of being a number of new tokens.
    """

    name: str
    epsilon: float
    minkpp_sigma_floor: float
    minkpp_uncentred: bool
    drop_last_token: bool
    es_no_match: str
    muse_rouge_stemmer: bool
    knowmem_answer_prefix: str
    knowmem_stop: tuple[str, ...]
    tofu_max_rows: int | None
    max_length_counts_prompt: bool
    source: str = ""

    def describe(self) -> dict[str, Any]:
        """JSON identity recorded in every result."""
        out = dataclasses.asdict(self)
        out["knowmem_stop"] = list(self.knowmem_stop)
        return out


_OU_STOP = ("\n\n", "\nQuestion", "Question:")

#: This project's exact definitions; every other convention is written as its differences.
EXACT = MetricConvention(
    name="exact",
    epsilon=0.0,
    minkpp_sigma_floor=1e-6,
    minkpp_uncentred=False,
    drop_last_token=False,
    es_no_match="zero",
    muse_rouge_stemmer=True,
    knowmem_answer_prefix="Answer:",
    knowmem_stop=("\n\n", "Question:"),
    tofu_max_rows=None,
    max_length_counts_prompt=False,
    source="unilogit docs/metrics.md (exact definitions)",
)
_PAPER_PROMPT = {"knowmem_answer_prefix": "Answer: ", "knowmem_stop": _OU_STOP}

CONVENTIONS: dict[str, MetricConvention] = {
    c.name: c
    for c in (
        dataclasses.replace(
            EXACT,
            name="open-unlearning",
            epsilon=1e-10,
            minkpp_sigma_floor=1e-3,
            minkpp_uncentred=True,
            drop_last_token=True,
            es_no_match="one_over_n",
            **_PAPER_PROMPT,
            source="github.com/locuslab/open-unlearning src/evals/metrics",
        ),
        dataclasses.replace(
            EXACT,
            name="tofu",
            tofu_max_rows=300,
            max_length_counts_prompt=True,
            **_PAPER_PROMPT,
            source="github.com/locuslab/tofu aggregate_eval_stat.py, config/eval_everything.yaml",
        ),
        dataclasses.replace(
            EXACT,
            name="muse",
            muse_rouge_stemmer=False,
            **_PAPER_PROMPT,
            source="github.com/swj0419/muse_bench metrics/knowmem.py, metrics/logger.py",
        ),
        EXACT,
    )
}

#: The convention of TOFU and MUSE evaluations unless another is asked for.
DEFAULT_CONVENTION = "open-unlearning"


def get_convention(value: str | MetricConvention | None) -> MetricConvention:
    """The convention named ``value`` (``None`` = :data:`DEFAULT_CONVENTION`)."""
    if isinstance(value, MetricConvention):
        return value
    name = DEFAULT_CONVENTION if value is None else str(value).strip().lower()
    if name not in CONVENTIONS:
        raise ConfigError(
            f"unknown metrics convention {value!r}; choose one of {', '.join(CONVENTIONS)}"
        )
    return CONVENTIONS[name]
