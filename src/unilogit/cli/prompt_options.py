"""The prompt-format flags of the training commands and ``--columns`` of the data commands.

::

    unilogit unlearn ... --system-prompt "You are a helpful assistant." \\
        --chat-template gemma.jinja --date-string "10 Apr 2025" --columns question=q,answer=a

``--system-prompt`` / ``--chat-template FILE`` / ``--date-string`` become one
:class:`~unilogit.prompts.PromptFormat` on :class:`~unilogit.trainer.TrainConfig` (recorded with
the run's config); ``--columns FIELD=COLUMN,...`` renames the data files' columns
(:func:`unilogit.data.load_examples`'s ``columns``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..prompts import PromptFormat


def add_prompt_options(g: argparse._ArgumentGroup) -> None:
    """``--system-prompt``, ``--chat-template FILE`` and ``--date-string`` (into ``g``)."""
    g.add_argument(
        "--system-prompt",
        metavar="TEXT",
        help="a system turn before each question (needs a chat template)",
    )
    g.add_argument(
        "--chat-template",
        dest="chat_template_file",
        metavar="FILE",
        help="a Jinja chat template file used instead of the tokenizer's own",
    )
    g.add_argument(
        "--date-string",
        metavar="TEXT",
        help="fixed date_string for templates that print today's date (e.g. Llama 3)",
    )


def add_columns_option(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument(
        "--columns",
        metavar="FIELD=COLUMN,...",
        help="read our fields from other columns, e.g. question=q,answer=a (also messages, "
        "prompt, completion, text)",
    )


def prompt_format(args: argparse.Namespace) -> PromptFormat | None:
    """The :class:`PromptFormat` of the flags, or None when none of them was given (the run
    then keeps its ``chat_template`` setting alone). ``--no-chat-template`` with a system prompt
    or a template file is a :class:`ConfigError`."""
    system = getattr(args, "system_prompt", None)
    path = getattr(args, "chat_template_file", None)
    date = getattr(args, "date_string", None)
    if system is None and path is None and date is None:
        return None
    template: Any = getattr(args, "chat_template", None)
    if path is not None:
        if template is False:
            raise ConfigError("--chat-template and --no-chat-template contradict each other")
        template = _read_template(path)
    return PromptFormat(chat_template=template, system_prompt=system, date_string=date)


def _read_template(path: str) -> str:
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"--chat-template: file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"--chat-template: cannot read {path}: {e}") from None
    if not text.strip():
        raise ConfigError(f"--chat-template: {path} is empty")
    return text


def columns(args: argparse.Namespace) -> dict[str, str] | None:
    """``--columns question=q,answer=a`` as ``{"question": "q", "answer": "a"}`` (or None)."""
    text = getattr(args, "columns", None)
    if not text:
        return None
    out: dict[str, str] = {}
    for item in text.split(","):
        field, sep, column = (part.strip() for part in item.partition("="))
        if not sep or not field or not column:
            raise ConfigError(f"--columns: expected FIELD=COLUMN, got {item.strip()!r}")
        if field in out:
            raise ConfigError(f"--columns: field {field!r} given twice")
        out[field] = column
    return out
