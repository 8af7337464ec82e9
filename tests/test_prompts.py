"""PromptFormat: system prompt, fixed date string, template choice, recorded identity."""

import pytest

from unilogit.data import encode_prompt
from unilogit.errors import ConfigError
from unilogit.prompts import PromptFormat

DATED = (
    "{% for m in messages %}[{{ m['role'] }}|{{ date_string | default('today') }}]"
    "{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}"
)


def test_system_prompt_is_a_turn_before_the_user(chat_tokenizer):
    plain = encode_prompt(chat_tokenizer, "Who?")
    fmt = PromptFormat(system_prompt="You are a helpful assistant.")
    with_system = encode_prompt(chat_tokenizer, "Who?", prompt_format=fmt)
    expected = chat_tokenizer.apply_chat_template(
        [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Who?"},
        ],
        add_generation_prompt=True,
        tokenize=True,
        return_dict=False,
    )
    assert with_system == list(expected) and with_system != plain
    assert with_system[-len(plain) + 1 :] == plain[1:]  # the user turn follows unchanged


def test_date_string_is_fixed_in_the_template(tiny_tokenizer):
    fixed = PromptFormat(chat_template=DATED, date_string="10 Apr 2025")
    text = tiny_tokenizer.decode(encode_prompt(tiny_tokenizer, "hi", prompt_format=fixed))
    assert text == "[user|10 Apr 2025]hi[assistant]"
    undated = PromptFormat(chat_template=DATED)
    assert "today" in tiny_tokenizer.decode(
        encode_prompt(tiny_tokenizer, "hi", prompt_format=undated)
    )


def test_bad_formats_are_refused(tiny_tokenizer):
    with pytest.raises(ConfigError, match="no system turn"):
        PromptFormat(chat_template=False, system_prompt="x")
    with pytest.raises(ConfigError, match="no chat template"):
        PromptFormat(system_prompt="x").template(tiny_tokenizer)  # auto, tokenizer has none
    with pytest.raises(ConfigError, match="must be a string"):
        PromptFormat(date_string=20250410)


def test_describe_names_the_resolved_template(chat_tokenizer, tiny_tokenizer):
    auto = PromptFormat().describe(chat_tokenizer)
    assert auto["chat_template"] is None and auto["template_sha256"]
    assert PromptFormat().describe(tiny_tokenizer)["template_sha256"] is None
    custom = PromptFormat(chat_template=DATED, date_string="d").describe()
    assert custom["chat_template"].startswith("sha256:") and custom["date_string"] == "d"
    assert PromptFormat.of(False) == PromptFormat(chat_template=False)
