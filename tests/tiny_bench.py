"""A tiny QA benchmark with its own target and gold models (the benchmark contract), over
tests/tiny.py's 24 rows, for the pipeline and sweep tests."""

from __future__ import annotations

import copy

from tiny import qa_rows, tiny_llama, word_tokenizer
from unilogit.benchmarks.qa import QABenchmark
from unilogit.data import load_examples


class TinyBench(QABenchmark):
    """A QA benchmark over tests/tiny.py's 24 rows: 4 forget rows, 8 retain rows, its own
    target and gold models (the benchmark contract, like the world benchmark)."""

    name = "tiny"
    default_eval_options = {"max_new_tokens": 4, "batch_size": 16}
    utility_splits = ("retain",)
    kl_splits = ("forget", "retain")

    def __init__(self):
        rows = qa_rows()
        self.tok = word_tokenizer()
        for r in rows:
            other = "Rome" if "Rome" not in r["answer"] else "Oslo"
            r["paraphrased_answer"] = r["answer"]
            r["perturbed_answer"] = [
                r["answer"].rsplit(" ", 1)[0] + f" {other}.",
                r["answer"].rsplit(" ", 1)[0] + " Lima.",
            ]
        self.rows = load_examples(rows, kind="qa", name="tiny")
        self.target = tiny_llama(len(self.tok), seed=0)
        self.gold = tiny_llama(len(self.tok), seed=1)

    def __repr__(self):
        return "TinyBench()"

    def describe(self):
        return {"name": "tiny", "split": "forget"}

    def forget(self):
        return self.rows[-4:]

    def retain(self):
        return self.rows[:8]

    def eval_splits(self):
        return {"forget": self.forget(), "retain": self.retain()}

    def load_model(self, which):
        return copy.deepcopy(self.target if which == "target" else self.gold)

    def target_model(self):
        return self.load_model("target"), self.tok

    def gold_model(self):
        return self.load_model("gold"), self.tok
