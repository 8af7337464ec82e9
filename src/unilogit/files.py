"""Writing files so that nothing is ever half-written: every writer in unilogit goes through here.

A file is written to a temporary sibling in the same folder (same file system), flushed and
``fsync``-ed, then renamed over its final name with :func:`os.replace`, which is atomic on
POSIX and Windows: a reader, or a run killed at any instant, sees the old file or the new one,
never a mix. The temporary file is removed if writing fails.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["atomic_write_bytes", "atomic_write_json", "atomic_write_jsonl", "atomic_write_text"]


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (creating its parent folders); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], value: Any, *, indent: int | None = 2) -> Path:
    """Write ``value`` as JSON (non-JSON values through ``str``) to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(value, indent=indent, default=str) + "\n")


def atomic_write_jsonl(path: str | os.PathLike[str], records: Iterable[Any]) -> Path:
    """Write one JSON object per line to ``path`` atomically."""
    return atomic_write_text(path, "".join(json.dumps(r, default=str) + "\n" for r in records))
