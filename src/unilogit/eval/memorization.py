"""Memorization metrics of one answer from its greedy-match vector (pure functions of numbers).

``matches[t]`` is True iff token t of the answer is the arg-max of the model's next-token
distribution given the prompt and the true previous tokens (teacher forcing; see
``scoring.TokenScores.top1``).

* Exact memorization (Tirumala et al. 2022): ``EM = mean_t matches[t]``.
* Extraction strength (Carlini et al. 2021, as in open-unlearning): the smallest k such that the
  suffix from token k on is reproduced exactly, ``ES = 1 - k / n``. Fully memorized: k = 0,
  ES = 1. When not even the last token matches, ES = 0 exactly (k = n); open-unlearning's loop
  stops at k = n - 1 and reports 1/n (``no_match="one_over_n"``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from unilogit.errors import DataError

__all__ = ["ES_NO_MATCH", "exact_memorization", "extraction_strength"]

ES_NO_MATCH = ("zero", "one_over_n")


def _matches(matches: Sequence[bool] | np.ndarray) -> np.ndarray:
    arr = np.asarray(matches, dtype=bool).reshape(-1)
    if arr.size == 0:
        raise DataError("memorization: no scored tokens")
    return arr


def exact_memorization(matches: Sequence[bool] | np.ndarray) -> float:
    """Fraction of answer tokens that are the greedy (arg-max) prediction.

    Example: matches [1, 0, 1, 1] -> 0.75.
    """
    return float(_matches(matches).mean())


def extraction_strength(matches: Sequence[bool] | np.ndarray, no_match: str = "zero") -> float:
    """``1 - k/n`` with k the start of the longest all-matching suffix (module docstring).

    Example: matches [0, 1, 0, 1, 1] -> suffix from k = 3 -> ES = 1 - 3/5 = 0.4;
    [1, 1, 0] -> no suffix -> 0 (``"zero"``) or 1/3 (``"one_over_n"``).
    """
    if no_match not in ES_NO_MATCH:
        raise DataError(f"extraction_strength: no_match must be one of {ES_NO_MATCH}")
    m = _matches(matches)
    n = m.size
    wrong = np.flatnonzero(~m)
    k = 0 if wrong.size == 0 else int(wrong[-1]) + 1
    if k == n and no_match == "one_over_n":
        k = n - 1
    return 1.0 - k / n
