"""The prompt format an evaluation uses when none is given: open-unlearning's model configs.

open-unlearning (``configs/model/*.yaml``, ``template_args``) evaluates TOFU with a system prompt
"You are a helpful assistant." on chat models and, for Llama-3 and Zephyr, a fixed
``date_string`` "10 Apr 2025" (without one, Llama-3 templates write today's date into every
prompt). Its base models (Llama-2-hf, phi-1_5) use the raw ``Question: ...\\nAnswer: ...``
format. :func:`resolve_prompt_format` picks the row of :data:`OU_MODEL_FORMATS` whose pattern
matches the model's name, and says which one applied.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from unilogit.prompts import PromptFormat

__all__ = ["OU_MODEL_FORMATS", "ModelFormat", "model_name", "resolve_prompt_format"]

_SYSTEM = "You are a helpful assistant."
_DATE = "10 Apr 2025"


@dataclass(frozen=True)
class ModelFormat:
    """A model family (``pattern``, searched case-insensitively in the model's name), its
    prompt format and the open-unlearning config it comes from."""

    pattern: str
    prompt_format: PromptFormat
    source: str


OU_MODEL_FORMATS: tuple[ModelFormat, ...] = (
    ModelFormat(
        r"llama-3(\.\d)?-\d+b-instruct",
        PromptFormat(chat_template=True, system_prompt=_SYSTEM, date_string=_DATE),
        "configs/model/Llama-3.{1,2}-*-Instruct.yaml",
    ),
    ModelFormat(
        r"zephyr",
        PromptFormat(chat_template=True, system_prompt=_SYSTEM, date_string=_DATE),
        "configs/model/zephyr-7b-beta.yaml",
    ),
    ModelFormat(
        r"qwen2\.5-.*instruct",
        PromptFormat(chat_template=True, system_prompt=_SYSTEM),
        "configs/model/Qwen2.5-*-Instruct.yaml",
    ),
    ModelFormat(
        r"phi-3\.5-mini-instruct",
        PromptFormat(chat_template=True, system_prompt=_SYSTEM),
        "configs/model/Phi-3.5-mini-instruct.yaml",
    ),
    ModelFormat(r"gemma-.*-it", PromptFormat(chat_template=True), "configs/model/gemma-7b-it.yaml"),
    ModelFormat(
        r"llama-2-\d+b-hf|phi-1_5",
        PromptFormat(chat_template=False),
        "configs/model/{Llama-2-*-hf,phi-1_5}.yaml",
    ),
)


def model_name(model: Any = None, tokenizer: Any = None) -> str:
    """The model's Hub id or path as recorded by ``transformers`` (may be empty)."""
    for obj in (getattr(model, "config", None), tokenizer):
        name = getattr(obj, "_name_or_path", None) or getattr(obj, "name_or_path", None)
        if isinstance(name, str) and name:
            return name
    return ""


def resolve_prompt_format(
    prompt_format: PromptFormat | bool | str | None, model: Any = None, tokenizer: Any = None
) -> tuple[PromptFormat, str]:
    """The prompt format to evaluate with and where it came from.

    An explicit :class:`PromptFormat` (or a ``chat_template`` other than ``None``) is used as
    given (source ``"given"``). ``None`` = open-unlearning's format for the model's family
    (source ``"open-unlearning:<config>"``), else the tokenizer's own template if it has one,
    user turn only (source ``"default"``).
    """
    if prompt_format is not None:
        return PromptFormat.of(prompt_format), "given"
    name = model_name(model, tokenizer).lower()
    for row in OU_MODEL_FORMATS:
        if name and re.search(row.pattern, name):
            fmt = row.prompt_format
            if fmt.chat_template is True and not getattr(tokenizer, "chat_template", None):
                break  # a fine-tuned copy saved without its template: keep the default
            return fmt, f"open-unlearning:{row.source}"
    return PromptFormat(), "default"
