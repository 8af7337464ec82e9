"""Tiny models and QA sets built inside the tests (no downloads)."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def tiny_llama(
    vocab_size: int,
    *,
    seed: int = 0,
    hidden: int = 64,
    layers: int = 2,
    max_positions: int = 128,
) -> LlamaForCausalLM:
    """A 2-layer Llama small enough to train in seconds on a CPU (eval mode)."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=max_positions,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config).eval()


NAMES = ["Arlo", "Bea", "Cyd", "Dov", "Eli", "Fay", "Gus", "Hal", "Ivy", "Jon", "Kit", "Lu"]
CITIES = [
    "Paris",
    "Oslo",
    "Rome",
    "Lima",
    "Kyiv",
    "Bern",
    "Doha",
    "Riga",
    "Baku",
    "Oslo",
    "Rome",
    "Lima",
]
COLORS = [
    "red",
    "blue",
    "green",
    "gold",
    "pink",
    "gray",
    "teal",
    "navy",
    "plum",
    "lime",
    "rose",
    "jade",
]


def qa_rows() -> list[dict[str, str]]:
    """24 QA pairs about 12 people: where they live and their favourite colour."""
    rows = []
    for name, city, color in zip(NAMES, CITIES, COLORS, strict=True):
        rows.append({"question": f"Where does {name} live?", "answer": f"{name} lives in {city}."})
        rows.append(
            {"question": f"What color does {name} like?", "answer": f"{name} likes {color}."}
        )
    return rows


def vocabulary_text() -> list[str]:
    rows = qa_rows()
    return [r["question"] + " " + r["answer"] for r in rows] + ["Question: Answer: I don't know."]


def word_tokenizer(texts: list[str] | None = None):
    """A word-level fast tokenizer over ``texts`` (default: the QA vocabulary), no chat template."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words: list[str] = []
    pre = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()])
    for text in texts or vocabulary_text():
        for word, _ in pre.pre_tokenize_str(text):
            if word not in words:
                words.append(word)
    special = ["<pad>", "<s>", "</s>", "<unk>"]
    vocab = {w: i for i, w in enumerate(special + words)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", vocab["<s>"])]
    )
    from tokenizers import decoders

    tok.decoder = decoders.WordPiece(prefix="##")
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
