"""Repetition of generated text (RWKU-style fluency alongside n-gram entropy)."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

__all__ = ["repetition"]

_WORD = re.compile(r"\w+|[^\w\s]")


def repetition(texts: Sequence[str], n: int = 3) -> float:
    """Mean over texts of the fraction of repeated word n-grams: ``1 - distinct / total``.

    Words and punctuation marks (``\\w+|[^\\w\\s]``, lower-cased) are the tokens. 0 = no n-gram
    occurs twice; "a b a b a b" has trigrams (aba, bab, aba, bab) -> 1 - 2/4 = 0.5. A text with
    fewer than n tokens counts as 0. ``texts`` must not be empty.
    """
    if not texts:
        raise ValueError("repetition: no texts")
    values = []
    for text in texts:
        tokens = _WORD.findall(text.lower())
        grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
        values.append(1.0 - len(set(grams)) / len(grams) if grams else 0.0)
    return float(np.mean(values))
