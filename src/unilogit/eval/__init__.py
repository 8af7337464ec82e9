"""Evaluation: scoring (batched log-probs), generation (batched greedy), metrics (pure functions
of numbers) and suites (what a benchmark runs). See ``docs/metrics.md`` for the definitions."""

from . import metrics
from .generation import generate_answers, generate_continuations
from .scoring import TokenScores, answer_logprobs, kl_to_reference, text_logprobs
from .suites import evaluate_muse, evaluate_qa, load_muse_dir

__all__ = [
    "TokenScores",
    "answer_logprobs",
    "evaluate_muse",
    "evaluate_qa",
    "generate_answers",
    "generate_continuations",
    "kl_to_reference",
    "load_muse_dir",
    "metrics",
    "text_logprobs",
]
