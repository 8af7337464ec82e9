"""``--config FILE``: a run described in YAML or JSON, read into a subcommand's flags.

A config file is a mapping whose keys are the subcommand's flags, spelt with ``-`` or ``_``
and without the leading dashes (``lr: 1.0e-4``, ``batch-size: 8``, ``forget: f.jsonl``), or
their destinations (``progress: false`` for ``--no-progress``). Its values become the parser's
defaults, so every flag given on the command line overrides the file. ``option``/``options``
take ``KEY=VALUE`` strings or a mapping (method options, ``-O``).

The ``unlearn_config.json`` / ``finetune_config.json`` that a run saves read back the same way
(``unilogit unlearn --config runs/x/unlearn_config.json --output runs/y`` replays it): their
``method`` / ``train`` / ``load`` sections are flattened, the method's own options become
``-O`` items, and what only described the old run (its resume flag, checkpoint folder, log
file, versions, loss) is skipped. An unknown key is a ConfigError naming the file and key.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import ConfigError

#: The subcommands that take ``--config``.
CONFIG_COMMANDS = ("unlearn", "finetune", "eval", "bench", "demo")
#: Keys of a saved run config that describe that run only; skipped when it is read back.
RUN_ONLY = frozenset({"command", "versions", "final_loss", "resumed"})
RUN_ONLY_TRAIN = frozenset({"resume", "checkpoint_dir", "log_file"})
#: TrainConfig fields without a flag: accepted only at their default value.
FIXED_TRAIN = {
    "lora_dropout": 0.0,
    "lora_target_modules": None,
    "precompute_reference": True,
    "group_by_length": False,
}
#: Method-config keys that are flags of ``unlearn`` (the rest are method options, ``-O``).
METHOD_FLAGS = ("method", "retain_loss", "retain_weight", "forget_weight")
#: How :func:`unilogit.recipes.unlearn_to_disk` records rows given in memory.
IN_MEMORY = " rows given in memory"


def add_config_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        metavar="FILE",
        help="YAML or JSON file of this command's flags (keys: flag names, e.g. lr, forget, "
        "batch_size); flags given on the command line override it; a saved "
        "unlearn_config.json / finetune_config.json replays that run",
    )


def read_config(path: str | Path) -> dict[str, Any]:
    """The mapping in a ``.json`` / ``.yaml`` / ``.yml`` file (ConfigError naming the file)."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"--config {path}: cannot read it: {e}") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        data = _parse_yaml(path, text)
    else:
        try:
            data = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as e:
            raise ConfigError(f"--config {path}: line {e.lineno}: invalid JSON: {e.msg}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"--config {path}: expected a mapping of flags, got a {type(data).__name__}"
        )
    return data


def _parse_yaml(path: Path, text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"--config {path}: {where}invalid YAML: {problem}") from None


def flatten(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """A flat ``{key: value}`` of flag names / destinations: the ``method``, ``train`` and
    ``load`` sections of a saved run config merged in, run-only keys dropped."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        key = str(key).replace("-", "_")
        if key in RUN_ONLY:
            continue
        if key == "train" and isinstance(value, dict):
            for k, v in value.items():
                if k in RUN_ONLY_TRAIN:
                    continue
                if k == "prompt_format":
                    out.update(_prompt_section(v, path))
                    continue
                if k in FIXED_TRAIN:
                    if v != FIXED_TRAIN[k]:
                        raise ConfigError(
                            f"--config {path}: train.{k} = {v!r} has no flag (only the default "
                            f"{FIXED_TRAIN[k]!r} can be replayed from the command line)"
                        )
                    continue
                out[k] = v
        elif key == "load" and isinstance(value, dict):
            out.update(value)
        elif key == "method" and isinstance(value, dict):
            out.update(_method_section(value))
        elif key == "data" and isinstance(value, dict):  # finetune_config.json: its identity
            out["data"] = _data_source(value, path)
        elif key == "columns" and isinstance(value, dict):  # recorded mapping -> the flag's text
            out["columns"] = ",".join(f"{k}={v}" for k, v in value.items())
        elif key in ("forget", "retain") and str(value).endswith(IN_MEMORY):
            raise ConfigError(
                f"--config {path}: the {key} rows of that run were given in memory "
                f"({value}); give --{key} FILE or --benchmark NAME"
            )
        else:
            out["option" if key == "options" else key] = value
    return out


def _prompt_section(value: Any, path: Path) -> dict[str, Any]:
    """A recorded :class:`~unilogit.prompts.PromptFormat` -> ``--system-prompt`` /
    ``--date-string`` (its ``chat_template`` is recorded separately as ``chat_template``); a
    template given as a file was recorded as its text, which no flag takes back."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"--config {path}: train.prompt_format must be an object or null")
    if isinstance(value.get("chat_template"), str):
        raise ConfigError(
            f"--config {path}: that run used a chat template file (recorded as its text in "
            "train.prompt_format); give it again with --chat-template FILE and remove "
            "train.prompt_format from the config"
        )
    return {k: value[k] for k in ("system_prompt", "date_string") if value.get(k) is not None}


def _data_source(identity: dict[str, Any], path: Path) -> Any:
    """The data spec recorded by :func:`unilogit.record.describe_data`: a file's absolute
    path, or the ``hf:`` spec; rows given in memory cannot be read back."""
    if identity.get("sha256_of") == "file":
        return identity.get("path")
    source = str(identity.get("source"))
    if source.startswith("hf:"):
        return source
    raise ConfigError(
        f"--config {path}: the data of that run were given in memory ({source}); "
        "give --data FILE or --benchmark NAME"
    )


def _method_section(section: dict[str, Any]) -> dict[str, Any]:
    """``{"method": "npo", "retain_loss": "nll", "beta": 0.1}`` -> flags + ``-O`` items."""
    out: dict[str, Any] = {}
    items = []
    for key, value in section.items():
        if key in METHOD_FLAGS:
            out[key] = "none" if key == "retain_loss" and value is None else value
        else:
            items.append(f"{key}={_option_text(value)}")
    if items:
        out["option"] = items
    return out


def _option_text(value: Any) -> str:
    """A value as ``-O KEY=VALUE`` text that :func:`unilogit.methods.parse_option` reads back
    exactly (JSON for numbers, so a float keeps all its digits)."""
    return value if isinstance(value, str) else json.dumps(value)


# ------------------------------------------------------------------------------ the parser


def _lookup(parser: argparse.ArgumentParser) -> dict[str, tuple[argparse.Action, bool]]:
    """key -> (action, named by a flag that differs from the destination)."""
    table: dict[str, tuple[argparse.Action, bool]] = {}
    for action in parser._actions:
        if not action.option_strings or action.dest in ("help", "config"):
            continue
        table.setdefault(action.dest, (action, False))
        for s in action.option_strings:
            if s.startswith("--"):
                name = s[2:].replace("-", "_")
                table.setdefault(name, (action, name != action.dest))
    return table


def _value(action: argparse.Action, key: str, value: Any, by_flag: bool, path: Path) -> Any:
    """The destination value a config entry gives ``action`` (typed and checked like a flag)."""
    nargs0 = action.nargs == 0  # store_true / store_false / store_const
    if nargs0 and by_flag:  # `no_progress: true` means the flag was given
        if not isinstance(value, bool):
            raise ConfigError(f"--config {path}: {key!r} takes true or false, got {value!r}")
        return action.const if value else action.default
    if isinstance(action, argparse._AppendAction):
        if isinstance(value, dict):
            return [f"{k}={_option_text(v)}" for k, v in value.items()]
        value = value if isinstance(value, list) else [value]
        return [str(v) for v in value]
    if value is None or nargs0:
        return value
    if action.type is not None and (isinstance(value, str) or action.type in (int, float)):
        if action.type is int and isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"--config {path}: {key!r} must be an integer, got {value!r}")
        try:
            value = action.type(value)
        except (TypeError, ValueError):
            raise ConfigError(f"--config {path}: {key!r}: invalid value {value!r}") from None
    if action.choices is not None and value not in action.choices:
        raise ConfigError(
            f"--config {path}: {key!r} must be one of {', '.join(map(str, action.choices))}, "
            f"got {value!r}"
        )
    return value


def apply_config(parser: argparse.ArgumentParser, path: str | Path) -> None:
    """Make the file's values ``parser``'s defaults (a flag it sets is no longer required)."""
    path = Path(path)
    table = _lookup(parser)
    for key, value in flatten(read_config(path), path).items():
        if key not in table:
            known = ", ".join(sorted(k for k, (_, by_flag) in table.items() if not by_flag))
            raise ConfigError(
                f"--config {path}: unknown key {key!r} for `unilogit {parser.prog.split()[-1]}`"
                f" (known: {known})"
            )
        action, by_flag = table[key]
        action.default = _value(action, key, value, by_flag, path)
        action.required = False


def _config_path(argv: Sequence[str]) -> str | None:
    """The last ``--config FILE`` / ``--config=FILE`` in ``argv``."""
    found = None
    for i, token in enumerate(argv):
        if token == "--config" and i + 1 < len(argv):
            found = argv[i + 1]
        elif token.startswith("--config="):
            found = token.split("=", 1)[1]
    return found


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """``parser.parse_args(argv)``, with the subcommand's ``--config FILE`` read first."""
    sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    path = _config_path(argv)
    if sub is not None and path is not None:
        command = next((t for t in argv if t in sub.choices), None)
        if command in CONFIG_COMMANDS:
            apply_config(sub.choices[command], path)
    return parser.parse_args(argv)
