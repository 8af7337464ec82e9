"""ROUGE-L with the memoised tokenizer: the same numbers as rouge-score's own scorer, each
distinct text tokenized once."""

from __future__ import annotations

import pytest

from unilogit.eval import metrics as M

rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")

PREDICTIONS = ["The cats were running home", "running cats", "", "Paris, in 1987.", "x y z"]
REFERENCES = ["the cat runs home", "The cats were running home", "a b", "In Paris in 1987", "x"]


@pytest.mark.parametrize("stemmer", [True, False])
def test_same_scores_as_the_plain_scorer(stemmer):
    plain = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=stemmer)
    got = M.rouge_l(PREDICTIONS * 2, REFERENCES * 2, stemmer=stemmer)  # twice: memo hits
    for i, (p, r) in enumerate(zip(PREDICTIONS * 2, REFERENCES * 2, strict=True)):
        s = plain.score(target=r, prediction=p)["rougeL"]
        assert got.recall[i] == s.recall and got.f1[i] == s.fmeasure
    # stemming matters here (cats/cat, running/runs), so the two settings really differ
    assert (
        M.rouge_l(PREDICTIONS[:1], REFERENCES[:1], stemmer=True).recall[0]
        != (M.rouge_l(PREDICTIONS[:1], REFERENCES[:1], stemmer=False).recall[0])
    )


def test_each_text_is_tokenized_once_and_the_memo_is_bounded():
    calls: list[str] = []

    class Counting:
        def tokenize(self, text):
            calls.append(text)
            return text.lower().split()

    memo = M._MemoTokenizer(Counting(), max_items=3)
    first = memo.tokenize("A b")
    first.append("mutated")  # callers get a copy: the memo is not changed
    assert memo.tokenize("A b") == ["a", "b"] and calls == ["A b"]
    for text in ("c", "d", "e"):  # the fourth distinct text clears the memo
        memo.tokenize(text)
    memo.tokenize("A b")
    assert calls == ["A b", "c", "d", "e", "A b"]
