"""How a question becomes a prompt: one recorded value, used by training and evaluation alike.

A :class:`PromptFormat` says whether a chat template is used (the tokenizer's own, a Jinja string
or none), the system prompt, and the fixed ``date_string`` that some templates (Llama-3) would
otherwise fill with *today's* date. Without a template the raw format is::

    [BOS] + tok("Question: {question}\\nAnswer:") + tok(" {answer}") + [EOS]

:meth:`PromptFormat.describe` is the JSON identity written into results, so that a reference
evaluated with another format can be refused.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

__all__ = ["RAW_ANSWER", "RAW_QUESTION", "PromptFormat"]

RAW_QUESTION = "Question: {question}\nAnswer:"  # used when no chat template applies
RAW_ANSWER = " {answer}"  # followed by EOS


@dataclass(frozen=True)
class PromptFormat:
    """``chat_template``: ``None`` = the tokenizer's template if it has one, ``True`` = required,
    ``False`` = raw "Question/Answer" format, a string = this Jinja template.
    ``system_prompt``: a system turn before the user turn (templates only).
    ``date_string``: passed to the template as ``date_string`` (templates only)."""

    chat_template: bool | str | None = None
    system_prompt: str | None = None
    date_string: str | None = None

    def __post_init__(self) -> None:
        t = self.chat_template
        if not (t is None or isinstance(t, bool) or (isinstance(t, str) and t.strip())):
            raise ConfigError(
                "chat_template must be None (auto), True, False or a Jinja template string, "
                f"got {t!r}"
            )
        for name in ("system_prompt", "date_string"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{name} must be a string or None, got {value!r}")
        if t is False and (self.system_prompt or self.date_string):
            raise ConfigError(
                "system_prompt and date_string need a chat template; the raw "
                "'Question/Answer' format (chat_template=False) has no system turn"
            )

    @classmethod
    def of(cls, value: PromptFormat | bool | str | None) -> PromptFormat:
        """A :class:`PromptFormat` from itself or from a bare ``chat_template`` value."""
        return value if isinstance(value, PromptFormat) else cls(chat_template=value)

    def template(self, tokenizer: Any) -> str | bool:
        """``False`` (raw format), ``True`` (the tokenizer's own) or a template string."""
        has = bool(getattr(tokenizer, "chat_template", None))
        t = self.chat_template
        if t is True and not has:
            raise ConfigError(
                "chat_template=True but the tokenizer has no chat template; set "
                "tokenizer.chat_template or use chat_template=None (auto) / False (off)"
            )
        if t is None:
            t = has
        if t is False and (self.system_prompt or self.date_string):
            raise ConfigError(
                "a system prompt / date string was given but the tokenizer has no chat "
                "template; pass one (chat_template) or drop them"
            )
        return t

    def messages(
        self, question: str, history: list[dict[str, str]] | None = None
    ) -> list[dict[str, str]]:
        """The conversation up to the user turn: ``[system?, user(question)]``, or ``history``
        (a ``messages`` row's turns before its answer) with the system prompt put first when
        the row has no system turn of its own (the row's own system turn wins)."""
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        if history is not None:
            has_system = any(m.get("role") == "system" for m in history)
            return [*([] if has_system else system), *history]
        return [*system, {"role": "user", "content": question}]

    def template_kwargs(self, tokenizer: Any) -> dict[str, Any]:
        """Extra keyword arguments for ``tokenizer.apply_chat_template``."""
        template = self.template(tokenizer)
        kwargs: dict[str, Any] = {"chat_template": template} if isinstance(template, str) else {}
        if self.date_string is not None:
            kwargs["date_string"] = self.date_string
        return kwargs

    def describe(self, tokenizer: Any = None) -> dict[str, Any]:
        """JSON identity: what was used (with ``tokenizer``: the resolved template's hash)."""
        out: dict[str, Any] = {
            "chat_template": self.chat_template
            if not isinstance(self.chat_template, str)
            else "sha256:" + _sha(self.chat_template),
            "system_prompt": self.system_prompt,
            "date_string": self.date_string,
        }
        if tokenizer is not None:
            template = self.template(tokenizer)
            if template is True:
                template = tokenizer.chat_template
            out["template_sha256"] = None if template is False else _sha(str(template))
        return out


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
