"""Shared test set-up: offline Hugging Face libraries and small in-memory tokenizers.

Fixtures (stable; other test modules rely on them):

* ``shared_dir`` -> ``Path`` of the checkout's ``../shared`` folder (TOFU / MUSE files, tiny
  models); the test is skipped when it is missing, and fails under ``CI=true``
  (:func:`need_shared` does the same for a path inside it).
* ``tiny_tokenizer`` -> a byte-level BPE ``PreTrainedTokenizerFast`` (320 tokens, trained in
  memory on :data:`CORPUS`), **no** chat template. Special tokens: ``<pad>``=0, ``<s>``=1 (BOS,
  added by the tokenizer itself, like Llama), ``</s>``=2 (EOS), ``<|user|>``=3,
  ``<|assistant|>``=4. Any Unicode string encodes without ``<unk>`` and decodes back exactly.
* ``chat_tokenizer`` -> the same tokenizer with :data:`CHAT_TEMPLATE` set (Zephyr-like:
  ``<s><|user|>\\n{content}</s>\\n<|assistant|>\\n``).

Each fixture call builds a fresh tokenizer (a few milliseconds), so a test may mutate it.
Outside fixtures (e.g. at module level for hypothesis tests) call :func:`build_tiny_tokenizer`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
# Tiny test models are dominated by per-op overhead: one thread is faster than two, and
# subprocesses started by tests (CLI, multi-process runs) inherit the setting.
os.environ.setdefault("OMP_NUM_THREADS", "1")

SHARED_DIR = Path(__file__).resolve().parents[1].parent / "shared"

CORPUS = [
    "Question: What is the capital of France?\nAnswer: The capital of France is Paris.",
    "Once upon a time, there was a little girl named Lily. She loved to play outside.",
    "The author's full name is Hsiao Yun-Hwa, born in Taipei, Taiwan.",
    "Machine unlearning removes the influence of a forget set from a trained model.",
]
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}"
    "\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def build_tiny_tokenizer(*, chat: bool = False, vocab_size: int = 320):
    """A deterministic byte-level BPE tokenizer trained on :data:`CORPUS` (see module docstring).

    ``chat=True`` sets :data:`CHAT_TEMPLATE`.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 3, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        additional_special_tokens=["<|user|>", "<|assistant|>"],
    )
    if chat:
        hf.chat_template = CHAT_TEMPLATE
    return hf


def need_shared(path: Path = SHARED_DIR, *, env: Mapping[str, str] = os.environ) -> Path:
    """``path`` (under ``../shared``) if it exists; else skip the test, except under CI
    (``CI=true``), where a missing data folder fails the run instead of passing it silently."""
    if path.exists():
        return path
    if env.get("CI", "").strip().lower() in ("true", "1"):
        pytest.fail(f"shared data not found: {path} (CI=true: tests that need it must run)")
    pytest.skip(f"shared data not found: {path}")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The read-only ``../shared`` folder next to the checkout (skip if absent; fail under CI)."""
    return need_shared(SHARED_DIR)


@pytest.fixture
def tiny_tokenizer():
    """Byte-level BPE tokenizer with <pad>/<s>/</s>, BOS added automatically, no chat template."""
    return build_tiny_tokenizer()


@pytest.fixture
def chat_tokenizer():
    """:func:`tiny_tokenizer` plus a simple Zephyr-like Jinja chat template."""
    return build_tiny_tokenizer(chat=True)
