"""The project's own error types: every user-facing failure is one of these."""

from __future__ import annotations

from pathlib import Path


class UnilogitError(Exception):
    """Base class of every error unilogit raises on purpose."""


class DataError(UnilogitError, ValueError):
    """Bad input data. The message names the file, line and field when known:

    ``forget.jsonl:12: field 'answer': must be a non-empty string``
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.file = str(file) if file is not None else None
        self.line = line
        self.field = field
        self.reason = message
        where = ""
        if self.file is not None:
            where = self.file + (f":{line}" if line is not None else "") + ": "
        elif line is not None:
            where = f"row {line}: "
        what = f"field '{field}': " if field is not None else ""
        super().__init__(where + what + message)


class ConfigError(UnilogitError, ValueError):
    """An invalid option, method name, path or combination of settings."""


class TrainingError(UnilogitError, RuntimeError):
    """The run had to stop (e.g. the loss became NaN/inf); the message says at which step."""


class Interrupted(TrainingError):
    """The run was interrupted (Ctrl-C); the message says where its last checkpoint is."""


class OutputError(UnilogitError, OSError):
    """Writing the output failed (disk full, read-only, permission); the message names the
    path. Nothing partial is left where the output goes."""
