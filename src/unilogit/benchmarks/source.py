"""What the TOFU and MUSE benchmarks share: rows from a local folder, the Hub or a loader
function, a row limit, and reading a saved reference evaluation."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from unilogit.errors import ConfigError, DataError


def check_max_rows(max_rows: Any) -> int | None:
    if max_rows is None:
        return None
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
        raise ConfigError(f"max_rows must be a positive integer or None, got {max_rows!r}")
    return max_rows


def check_data_dir(data_dir: str | os.PathLike | None, what: str) -> Path | None:
    if data_dir is None:
        return None
    path = Path(data_dir).expanduser()
    if not path.exists():
        raise DataError(f"{what} data folder not found", file=path)
    if not path.is_dir():
        raise DataError(f"{what} data_dir must be a folder", file=path)
    return path


class BenchmarkSource:
    """Where a benchmark's rows come from: ``data_dir`` (a local copy), else the Hub dataset
    ``repo`` (with ``hub_options`` for ``datasets.load_dataset``), unless a ``loader``
    function replaces both; ``max_rows`` cuts every set (quick runs, tests)."""

    #: The benchmark's display name in error messages ("TOFU", "MUSE").
    what = ""

    def __init__(
        self,
        data_dir: str | os.PathLike | None,
        max_rows: int | None,
        repo: str,
        hub_options: Mapping[str, Any] | None,
        loader: Callable[..., Any] | None,
    ) -> None:
        self.data_dir = check_data_dir(data_dir, self.what)
        self.max_rows = check_max_rows(max_rows)
        self.repo = repo
        self.hub_options = dict(hub_options or {})
        self.loader = loader

    @property
    def source_name(self) -> str:
        if self.loader is not None:
            return "loader"
        return str(self.data_dir) if self.data_dir is not None else f"hf:{self.repo}"


def read_json_file(path: Path, what: str, kind: type) -> Any:
    """The JSON value in ``path``, which must be a ``kind`` (dict or list); read and parse
    errors become :class:`DataError` naming the file (and the line)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {what}: {e}", file=path) from None
    except json.JSONDecodeError as e:
        raise DataError(f"not valid JSON: {e.msg}", file=path, line=e.lineno) from None
    if not isinstance(value, kind):
        expected = "a JSON object" if kind is dict else "a JSON array"
        raise DataError(f"a {what} must be {expected}, got {type(value).__name__}", file=path)
    return value


def load_reference(path: str | os.PathLike) -> dict[str, Any]:
    """Read a saved evaluation (JSON object) used as ``reference``."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError("reference evaluation file not found", file=p)
    return read_json_file(p, "reference evaluation", dict)


def is_model(obj: Any) -> bool:
    import torch

    return isinstance(obj, torch.nn.Module)
