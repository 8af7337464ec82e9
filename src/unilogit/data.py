"""Forget / retain sets: files -> :class:`Example` -> token ids -> padded batches.

Two row shapes are supported:

* **QA** rows (``question``, ``answer``): the loss is taken on the answer tokens only.
* **raw text** rows (``text``): the loss is taken on every token.

Sources (:func:`load_examples`): ``.jsonl`` / ``.json`` / ``.csv`` / ``.parquet`` files,
``hf:NAME[:CONFIG[:SPLIT]]`` Hugging Face datasets, a ``datasets.Dataset`` and a list of dicts.
Every other column of a row is kept in :attr:`Example.extras` (e.g. TOFU's
``paraphrased_answer`` and ``perturbed_answer``).

Bad input raises :class:`~unilogit.errors.DataError` whose message names the file, the line and
the field, e.g. ``forget.jsonl:12: field 'answer': must be a string, got number (42)``.
"Line" is the physical line for JSON Lines, JSON and CSV files and the 1-based row number for
Parquet files, Hugging Face datasets and in-memory sources.

Encoding (:func:`encode_example`) tokenises the prompt and the answer separately and concatenates
them, so that evaluation scores exactly the tokens that training saw::

    with a chat template:  apply_chat_template([system?, {"role": "user", "content": q}],
                                               add_generation_prompt=True)  +  tok(a) + [EOS]
    without:               [BOS] + tok("Question: {q}\\nAnswer:")           +  tok(" {a}") + [EOS]
    raw text:              [BOS] + tok(text) + [EOS]                 (all supervised)

Example::

    examples = load_examples("forget01.jsonl")
    batch = collate(encode_examples(tokenizer, examples, max_length=512), tokenizer.pad_token_id)
"""

from __future__ import annotations

import bisect
import csv
import io
import json
import os
import re
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from .errors import ConfigError, DataError
from .losses import IGNORE_INDEX
from .prompts import RAW_ANSWER, RAW_QUESTION, PromptFormat
from .record import describe_data, sha256_file  # sha256_file re-exported: the one file hash

__all__ = [
    "ANSWER_FORMAT",
    "IGNORE_INDEX",
    "PROMPT_FORMAT",
    "SUPPORTED_SUFFIXES",
    "EncodedExample",
    "Example",
    "collate",
    "describe_source",
    "encode_example",
    "encode_examples",
    "encode_prompt",
    "load_examples",
    "sha256_file",
]

PROMPT_FORMAT = RAW_QUESTION  # kept names; see unilogit.prompts
ANSWER_FORMAT = RAW_ANSWER
SUPPORTED_SUFFIXES = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".parquet": "parquet",
}
HF_PREFIX = "hf:"
# `datasets` builders that read local files: ``hf:json:PATH`` passes PATH as ``data_files``.
_FILE_BUILDERS = ("json", "csv", "parquet", "text", "arrow")
_QA_FIELDS = ("question", "answer")
_CHAT_FIELDS = ("messages", "prompt", "completion")  # conversation rows; TRL's names
_TEXT_FIELD = "text"
_KINDS = ("auto", "qa", "text")

Kind = Literal["qa", "text"]


# --------------------------------------------------------------------------------------------
# Data classes
# --------------------------------------------------------------------------------------------


@dataclass
class Example:
    """One row of a forget / retain set.

    QA rows: ``prompt`` = question, ``response`` = answer. Raw text rows: ``prompt`` = "",
    ``response`` = text. ``extras`` keeps the row's other columns unchanged. ``row_id`` names the
    row for messages (``"forget01.jsonl:12"``; ``"forget.json[37]"`` for item 37 of a JSON array).
    ``source`` / ``line`` locate the row for error messages; they do not take part in ``==``.
    """

    prompt: str
    response: str
    kind: Kind
    row_id: str
    extras: dict[str, Any] = field(default_factory=dict)
    source: str | None = field(default=None, compare=False, repr=False)
    line: int | None = field(default=None, compare=False, repr=False)
    #: ``messages`` rows: the conversation before the answer (its last turn is the user's
    #: ``prompt``); None for question/answer rows, whose conversation is built from ``prompt``.
    messages: list[dict[str, str]] | None = None


@dataclass
class EncodedExample:
    """Token ids of one example. ``labels`` = ``input_ids`` with ``IGNORE_INDEX`` on the prompt
    (HF-style, unshifted). ``truncated`` is True when ``max_length`` cut the sequence."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool
    row_id: str


@dataclass
class _RawRow:
    """A parsed but not yet validated row and where it came from."""

    value: Any
    file: str
    line: int | None
    row_id: str
    item: int | None = None  # index in a JSON array

    def error(self, reason: str, field: str | None = None) -> DataError:
        if self.item is not None:
            reason = f"{reason} (array item {self.item})"
        return DataError(reason, file=self.file, line=self.line, field=field)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load_examples(
    source: Any,
    *,
    kind: str = "auto",
    name: str = "data",
    data_files: Any = None,
    columns: Mapping[str, str] | None = None,
    **hf_options: Any,
) -> list[Example]:
    """Load a forget / retain set.

    Args:
        source: a path (``.jsonl``/``.ndjson``, ``.json``, ``.csv``, ``.parquet``); a Hugging Face
            dataset ``"hf:NAME[:CONFIG[:SPLIT]]"`` (e.g. ``"hf:locuslab/TOFU:forget10"``, loaded
            with ``datasets.load_dataset``; for the file builders ``json``/``csv``/``parquet``/
            ``text``, ``"hf:json:PATH"`` reads PATH); a ``datasets.Dataset``; a list of dicts
            (or of strings = raw texts); or a list of :class:`Example` (returned as is).
        kind: ``"qa"`` (rows need ``question`` and ``answer``, or ``messages``, or ``prompt`` and
            ``completion``), ``"text"`` (rows need ``text``) or ``"auto"``: a row with any QA
            field is QA, else a row with ``text`` is raw text; all rows of one source must agree.
            ``messages`` rows (a list of ``{"role", "content"}``; the last turn is the
            assistant's answer, the turn before it the user's question) keep their earlier turns
            in :attr:`Example.messages`; TRL's ``prompt``/``completion`` rows are read as
            question/answer (strings) or as a conversation (lists of messages).
        columns: our field -> the source's column, e.g. ``{"question": "q", "answer": "a"}``
            (renamed before anything else; the other columns are kept in ``extras``).
        name: how in-memory sources (list, ``Dataset``) are named in messages and row ids.
        data_files / hf_options: passed to ``datasets.load_dataset`` for ``hf:`` sources only
            (e.g. ``data_files="x.jsonl"`` with ``"hf:json"``, ``cache_dir=...``, ``revision=...``).

    Returns:
        The examples in source order. Raises :class:`DataError` for bad data (the message names
        the file, line and field) and :class:`ConfigError` for bad arguments.
    """
    if kind not in _KINDS:
        raise ConfigError(f"kind must be one of {', '.join(map(repr, _KINDS))}, got {kind!r}")
    is_hf = isinstance(source, str) and source.startswith(HF_PREFIX)
    if (data_files is not None or hf_options) and not is_hf:
        opts = sorted(hf_options) + (["data_files"] if data_files is not None else [])
        raise ConfigError(
            f"option(s) {', '.join(opts)} only apply to 'hf:NAME' sources, not to {source!r}"
        )
    columns = _check_columns(columns)
    rows, nulls_missing = _read_source(source, name, data_files, hf_options, columns)
    if isinstance(rows, list) and rows and all(isinstance(r, Example) for r in rows):
        return rows
    for row in rows:
        row.value = _rename(row, columns)
    return _rows_to_examples(rows, kind=kind, nulls_missing=nulls_missing)


def _check_columns(columns: Mapping[str, str] | None) -> dict[str, str]:
    """``columns`` as a dict of strings; a source column mapped twice is refused."""
    if columns is None:
        return {}
    if not isinstance(columns, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) and k and v for k, v in columns.items()
    ):
        raise ConfigError(f"columns must map field names to column names, got {columns!r}")
    if len(set(columns.values())) != len(columns):
        raise ConfigError(f"columns maps one source column to several fields: {dict(columns)}")
    return dict(columns)


def _rename(row: _RawRow, columns: dict[str, str]) -> Any:
    """The row's value with each source column ``columns[field]`` renamed to ``field``; a row
    that also has a column named ``field`` (not itself mapped) is refused, never overwritten."""
    value = row.value
    if not columns or not isinstance(value, Mapping):
        return value
    theirs = {v: k for k, v in columns.items()}
    for ours, source in columns.items():
        if source in value and ours in value and ours not in theirs:
            raise row.error(
                f"the row has both {source!r} (mapped to {ours!r} by columns) and its own "
                f"{ours!r}; map or rename one of them",
                field=ours,
            )
    return {theirs.get(k, k): v for k, v in value.items()}


def _read_source(
    source: Any,
    name: str,
    data_files: Any,
    hf_options: dict[str, Any],
    columns: dict[str, str] | None = None,
) -> tuple[Any, bool]:
    """Return ``(rows, nulls_missing)``; ``nulls_missing`` marks Arrow-backed sources where a
    missing column reads as ``None``."""
    if isinstance(source, str) and source.startswith(HF_PREFIX):
        display, rows = _read_hf(source, data_files, hf_options)
        return _source_rows(rows, display), True
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        return _read_file(path, str(source), columns), path.suffix.lower() == ".parquet"
    if _is_hf(source, "DatasetDict"):
        raise ConfigError(
            f"{name}: got a DatasetDict with splits {list(source)}; pass one split, "
            "e.g. ds['train']"
        )
    if _is_hf(source, "Dataset") or _is_hf(source, "IterableDataset"):
        return _source_rows(source, name), True
    if isinstance(source, Sequence) and not isinstance(source, (str, bytes, bytearray)):
        if source and all(isinstance(r, Example) for r in source):
            return list(source), False
        return _source_rows(source, name), False
    raise ConfigError(
        f"{name}: unsupported data source of type {type(source).__name__}; pass a file path "
        f"({', '.join(SUPPORTED_SUFFIXES)}), 'hf:NAME[:CONFIG[:SPLIT]]', a datasets.Dataset or "
        "a list of dicts"
    )


def _is_hf(obj: Any, cls_name: str) -> bool:
    module = sys.modules.get("datasets")  # never import `datasets` just to check a type
    cls = getattr(module, cls_name, None) if module is not None else None
    return cls is not None and isinstance(obj, cls)


def _source_rows(rows: Iterable[Any], display: str) -> list[_RawRow]:
    out = [
        _RawRow(value=v, file=display, line=i, row_id=f"{display}:{i}")
        for i, v in enumerate(rows, start=1)
    ]
    if not out:
        raise DataError("contains no rows", file=display)
    return out


def _read_file(path: Path, display: str, columns: dict[str, str] | None = None) -> list[_RawRow]:
    if not path.exists():
        raise DataError("file not found", file=display)
    if path.is_dir():
        raise DataError("is a directory, expected a data file", file=display)
    fmt = SUPPORTED_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise DataError(
            f"unsupported file type {path.suffix or '(no extension)'!r}; supported: "
            f"{', '.join(SUPPORTED_SUFFIXES)} (or 'hf:NAME[:CONFIG[:SPLIT]]' for a Hugging Face "
            "dataset, e.g. 'hf:text:PATH' for one raw text per line)",
            file=display,
        )
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read file: {e.strerror or e}", file=display) from None
    if not data.strip():
        raise DataError("file is empty", file=display)
    if fmt == "parquet":
        return _read_parquet(path, display)
    text = _decode_utf8(data, display, fmt)
    if fmt == "jsonl":
        return _read_jsonl(text, display)
    if fmt == "json":
        return _read_json(text, display)
    return _read_csv(text, display, columns)


def _decode_utf8(data: bytes, display: str, fmt: str) -> str:
    start = 3 if data.startswith(b"\xef\xbb\xbf") else 0  # skip a UTF-8 byte-order mark
    try:
        return data[start:].decode("utf-8")
    except UnicodeDecodeError as e:
        pos = start + e.start
        line_start = data.rfind(b"\n", 0, pos) + 1
        line = data.count(b"\n", 0, pos) + 1
        raise DataError(
            f"not valid UTF-8: byte 0x{data[pos]:02x} at column {pos - line_start + 1} "
            f"({e.reason}); save the file as UTF-8",
            file=display,
            line=line,
            field=_field_with_bad_bytes(data, start, line_start, fmt),
        ) from None


def _field_with_bad_bytes(data: bytes, start: int, line_start: int, fmt: str) -> str | None:
    """Best effort: the field of a JSON Lines / CSV line that holds undecodable bytes."""
    line_end = data.find(b"\n", line_start)
    raw = data[line_start : None if line_end < 0 else line_end].decode("utf-8", "surrogateescape")

    def bad(s: Any) -> bool:  # surrogateescape maps each undecodable byte to U+DC80..U+DCFF
        return isinstance(s, str) and any("\udc80" <= c <= "\udcff" for c in s)

    try:
        if fmt == "jsonl":
            row = json.loads(raw)
            if isinstance(row, dict):
                return next((str(k) for k, v in row.items() if bad(k) or bad(v)), None)
        elif fmt == "csv" and line_start > start:
            first_end = data.find(b"\n", start)
            header_raw = data[start:first_end].decode("utf-8", "surrogateescape")
            header = next(csv.reader([header_raw]))
            record = next(csv.reader([raw]))
            index = next((i for i, v in enumerate(record) if bad(v)), None)
            if index is not None and index < len(header) and not bad(header[index]):
                return header[index]
    except (ValueError, csv.Error, StopIteration, RecursionError):
        pass
    return None


def _json_error(e: json.JSONDecodeError, display: str, line: int, hint: str = "") -> DataError:
    return DataError(f"malformed JSON at column {e.colno}: {e.msg}{hint}", file=display, line=line)


def _read_jsonl(text: str, display: str) -> list[_RawRow]:
    rows = []
    # Split on "\n" only: U+2028, \x1c, ... may legally appear raw inside JSON strings.
    for lineno, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip(" \t\r"):
            continue
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as e:
            hint = ""
            if e.pos == len(raw) - len(raw.lstrip(" \t\r")):
                hint = (
                    "; each line of a JSON Lines file must be one JSON object such as "
                    '{"question": "...", "answer": "..."} (for plain text lines use '
                    "'hf:text:PATH')"
                )
            raise _json_error(e, display, lineno, hint) from None
        except RecursionError:
            raise DataError("JSON nested too deeply", file=display, line=lineno) from None
        rows.append(_RawRow(value=value, file=display, line=lineno, row_id=f"{display}:{lineno}"))
    if not rows:
        raise DataError("contains no rows (only blank lines)", file=display)
    return rows


_JSON_WS = " \t\n\r"


def _read_json(text: str, display: str) -> list[_RawRow]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        hint = ""
        if e.msg == "Extra data":
            hint = " (more than one JSON value: is this a JSON Lines file? name it .jsonl)"
        raise _json_error(e, display, e.lineno, hint) from None
    except RecursionError:
        raise DataError("JSON nested too deeply", file=display) from None
    newlines = [m.start() for m in re.finditer("\n", text)]

    def line_of(pos: int) -> int:
        return bisect.bisect_right(newlines, pos - 1) + 1

    start = len(text) - len(text.lstrip(_JSON_WS))
    if not isinstance(doc, list):
        keys = ""
        if isinstance(doc, dict):
            keys = f" with keys {_preview_keys(doc)}"
        raise DataError(
            f"must be a JSON array of objects (or of strings), got {_type_name(doc)}{keys}",
            file=display,
            line=line_of(start),
        )
    if not doc:
        raise DataError("contains no rows (an empty JSON array)", file=display, line=line_of(start))
    # Walk the (already validated) array once more to find the line where each item starts.
    decoder = json.JSONDecoder()
    rows = []
    pos = start + 1
    for index in range(len(doc)):
        while text[pos] in _JSON_WS or (index and text[pos] == ","):
            pos += 1
        value, end = decoder.raw_decode(text, pos)
        rows.append(
            _RawRow(
                value=value,
                file=display,
                line=line_of(pos),
                row_id=f"{display}[{index}]",
                item=index,
            )
        )
        pos = end
    return rows


def _read_csv(text: str, display: str, columns: dict[str, str] | None = None) -> list[_RawRow]:
    old_limit = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)  # the default (128 KiB) rejects long texts
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    header_line = 1
    rows = []
    prev_end = 0
    try:
        for record in reader:
            line, prev_end = prev_end + 1, reader.line_num  # a record may span several lines
            if not record:
                continue  # blank line
            if header is None:
                theirs = {v: k for k, v in (columns or {}).items()}
                header, header_line = [theirs.get(h, h) for h in record], line
                _check_csv_header(header, display, line)
                continue
            if len(record) != len(header):
                raise DataError(
                    f"has {len(record)} fields but the header (line {header_line}) has "
                    f"{len(header)}",
                    file=display,
                    line=line,
                )
            rows.append(
                _RawRow(
                    value=dict(zip(header, record, strict=True)),
                    file=display,
                    line=line,
                    row_id=f"{display}:{line}",
                )
            )
    except csv.Error as e:
        raise DataError(f"malformed CSV: {e}", file=display, line=reader.line_num) from None
    finally:
        csv.field_size_limit(old_limit)
    if not rows:
        raise DataError("contains no rows (only a header)", file=display, line=header_line)
    return rows


def _check_csv_header(header: list[str], display: str, line: int) -> None:
    seen = set()
    for col in header:
        if col in seen:
            raise DataError(
                "duplicate column name in the header", file=display, line=line, field=col
            )
        seen.add(col)
    has = set(header)
    if {"prompt", "completion"} <= has and not has & set(_QA_FIELDS):
        return  # TRL's names, read as question/answer
    if has & set(_QA_FIELDS):
        needed: tuple[str, ...] = _QA_FIELDS
        what = "QA files need the columns 'question' and 'answer'"
    elif _TEXT_FIELD in has:
        return
    else:
        needed = (_QA_FIELDS[0],)
        what = "need the columns 'question' and 'answer' (QA) or 'text' (raw text)"
    for col in needed:
        if col not in has:
            near = [h for h in header if h.strip().lower() == col]
            hint = f" (column {near[0]!r} has extra spaces or capitals)" if near else ""
            raise DataError(
                f"missing column; {what}; the header has: {_preview_names(header)}{hint}",
                file=display,
                line=line,
                field=col,
            )


def _read_parquet(path: Path, display: str) -> list[_RawRow]:
    from .extras import require

    pq = require("pyarrow.parquet", "reading Parquet files")

    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for non-Parquet bytes
        raise DataError(f"not a readable Parquet file ({_short_exc(e)})", file=display) from None
    return _source_rows(table.to_pylist(), display)


def _read_hf(spec: str, data_files: Any, options: dict[str, Any]) -> tuple[str, Any]:
    """Load ``hf:NAME[:CONFIG[:SPLIT]]`` (or ``hf:json:PATH``) with ``datasets.load_dataset``."""
    body = spec[len(HF_PREFIX) :]
    parts = body.split(":")
    ds_name, config, split = parts[0], None, None
    if not ds_name:
        raise ConfigError(f"{spec!r}: missing dataset name; use 'hf:NAME[:CONFIG[:SPLIT]]'")
    display = spec if data_files is None else f"{spec}({data_files})"
    if ds_name in _FILE_BUILDERS and data_files is None and len(parts) > 1:
        data_files = body[len(ds_name) + 1 :]
    else:
        if len(parts) > 3:
            raise ConfigError(f"{spec!r}: too many ':' parts; use 'hf:NAME[:CONFIG[:SPLIT]]'")
        config = parts[1] or None if len(parts) > 1 else None
        split = parts[2] or None if len(parts) > 2 else None
    if ds_name in _FILE_BUILDERS and data_files is None:
        raise ConfigError(f"{spec!r}: the '{ds_name}' builder needs files: 'hf:{ds_name}:PATH'")
    from .extras import require

    datasets = require("datasets", "hf: data sources")

    try:
        loaded = datasets.load_dataset(
            ds_name, config, split=split, data_files=data_files, **options
        )
    except Exception as e:  # network, missing config/split, bad files: all reported as DataError
        offline = ""
        if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE"):
            offline = " (offline mode is on: the dataset must already be in the local cache)"
        where = "".join(
            f", {k} {v!r}" for k, v in (("config", config), ("split", split)) if v is not None
        )
        raise DataError(
            f"could not load Hugging Face dataset {ds_name!r}{where}: {_short_exc(e)}{offline}",
            file=display,
        ) from e
    if isinstance(loaded, datasets.DatasetDict):
        if len(loaded) != 1:
            raise DataError(
                f"has splits {sorted(loaded)}; choose one with 'hf:{ds_name}:CONFIG:SPLIT'",
                file=display,
            )
        loaded = next(iter(loaded.values()))
    return display, loaded


def _rows_to_examples(rows: Sequence[_RawRow], *, kind: str, nulls_missing: bool) -> list[Example]:
    if not rows:
        raise DataError("contains no rows")
    file_kind: str | None = None if kind == "auto" else kind
    first: _RawRow | None = None
    examples = []
    for row in rows:
        value = row.value
        if isinstance(value, str):
            row_kind: str | None = "text"
        elif isinstance(value, Mapping):
            row_kind = _row_kind(value, nulls_missing)
        else:
            raise row.error(
                "each row must be an object with 'question' and 'answer' (QA) or 'text' (raw "
                f"text), got {_type_name(value)}{_preview(value)}"
            )
        if kind == "auto":
            if row_kind is None:
                raise row.error(
                    "row has neither 'question'/'answer' (QA) nor 'text' (raw text); its "
                    f"fields are: {_preview_keys(value)}",
                    field="question",
                )
            if first is None:
                file_kind, first = row_kind, row
            elif row_kind != file_kind:
                raise row.error(
                    f"this is a {_KIND_NAMES[row_kind]} row but the first row (line {first.line}"
                    f") is a {_KIND_NAMES[file_kind]} row; one source must hold one kind",
                    field=_TEXT_FIELD if row_kind == "text" else _QA_FIELDS[0],
                )
        examples.append(_make_example(row, file_kind, nulls_missing))
    return examples


_KIND_NAMES = {"qa": "QA ('question'/'answer')", "text": "raw-text ('text')"}


def _row_kind(row: Mapping, nulls_missing: bool) -> str | None:
    def present(key: str) -> bool:
        return key in row and not (nulls_missing and row[key] is None)

    if any(present(k) for k in (*_QA_FIELDS, *_CHAT_FIELDS)):
        return "qa"
    if present(_TEXT_FIELD):
        return "text"
    return None


def _make_example(row: _RawRow, kind: str | None, nulls_missing: bool) -> Example:
    value = row.value
    if kind == "qa" and isinstance(value, Mapping) and not any(k in value for k in _QA_FIELDS):
        if "messages" in value:
            return _messages_example(row, value["messages"], "messages", ("messages",))
        if isinstance(value.get("prompt"), list) or isinstance(value.get("completion"), list):
            turns = _turns(row, value.get("prompt"), "prompt") + _turns(
                row, value.get("completion"), "completion"
            )
            return _messages_example(row, turns, "completion", ("prompt", "completion"))
        if "prompt" in value or "completion" in value:
            value = {
                ("question" if k == "prompt" else "answer" if k == "completion" else k): v
                for k, v in value.items()
            }
            row = _RawRow(value, row.file, row.line, row.row_id, row.item)
    if kind == "qa":
        if not isinstance(value, Mapping):
            raise row.error(
                "expected an object with 'question' and 'answer', got a plain string",
                field="question",
            )
        question = _required_str(
            row, value, "question", "QA rows need 'question' and 'answer'", nulls_missing
        )
        answer = _required_str(
            row, value, "answer", "QA rows need 'question' and 'answer'", nulls_missing
        )
        extras = _extras(value, _QA_FIELDS, nulls_missing)
        return Example(question, answer, "qa", row.row_id, extras, row.file, row.line)
    if isinstance(value, str):
        text, extras = _check_str(row, value, _TEXT_FIELD), {}
    else:
        text = _required_str(row, value, _TEXT_FIELD, "raw-text rows need 'text'", nulls_missing)
        extras = _extras(value, (_TEXT_FIELD,), nulls_missing)
    return Example("", text, "text", row.row_id, extras, row.file, row.line)


def _turns(row: _RawRow, value: Any, key: str) -> list[Any]:
    if not isinstance(value, list):
        raise row.error(
            f"must be a list of messages like the other conversation field, got "
            f"{_type_name(value)}{_preview(value)}",
            field=key,
        )
    return value


def _messages_example(row: _RawRow, turns: Any, key: str, used: tuple[str, ...]) -> Example:
    """A QA example from a conversation: the last turn (assistant) is the answer, the turns
    before it (ending with the user's question) are :attr:`Example.messages`."""
    if not isinstance(turns, list) or len(turns) < 2:
        raise row.error(
            "must be a list of at least two messages (a user turn, then the assistant's answer)"
            f", got {_type_name(turns)}{_preview(turns)}",
            field=key,
        )
    clean = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, Mapping) or not {"role", "content"} <= set(turn):
            raise row.error(
                f"message {i} must be an object with 'role' and 'content', got "
                f"{_type_name(turn)}{_preview(turn)}",
                field=key,
            )
        role = _check_str(row, turn["role"], f"{key}[{i}].role")
        content = _check_str(row, turn["content"], f"{key}[{i}].content")
        clean.append({"role": role, "content": content})
    if clean[-1]["role"] != "assistant" or clean[-2]["role"] != "user":
        raise row.error(
            "the last message must be the assistant's answer and the one before it the user's "
            f"question; the roles are {[t['role'] for t in clean]}",
            field=key,
        )
    extras = {k: v for k, v in row.value.items() if k not in used}
    return Example(
        clean[-2]["content"],
        clean[-1]["content"],
        "qa",
        row.row_id,
        extras,
        row.file,
        row.line,
        messages=clean[:-1],
    )


def _extras(value: Mapping, used: tuple[str, ...], nulls_missing: bool) -> dict[str, Any]:
    reserved = (*_QA_FIELDS, _TEXT_FIELD)
    return {
        k: v
        for k, v in value.items()
        if k not in used and not (nulls_missing and v is None and k in reserved)
    }


def _required_str(row: _RawRow, value: Mapping, key: str, need: str, nulls_missing: bool) -> str:
    if key not in value or (nulls_missing and value[key] is None):
        raise row.error(f"missing; {need}; this row has: {_preview_keys(value)}", field=key)
    return _check_str(row, value[key], key)


def _check_str(row: _RawRow, value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise row.error(f"must be a string, got {_type_name(value)}{_preview(value)}", field=key)
    if not value.strip():
        extra = " (it is only whitespace)" if value else ""
        raise row.error(f"must be a non-empty string{extra}", field=key)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise row.error(
            f"contains an invalid character: unpaired surrogate U+{ord(value[e.start]):04X} at "
            f"position {e.start}",
            field=key,
        ) from None
    return value


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _preview(value: Any, limit: int = 40) -> str:
    """`` (42)``-style preview of a wrong value; empty for null."""
    if value is None:
        return ""
    text = repr(value)
    return " (" + (text if len(text) <= limit else text[: limit - 3] + "...") + ")"


def _preview_names(names: Iterable[Any], limit: int = 10) -> str:
    names = list(names)
    shown = ", ".join(
        repr(n) if not isinstance(n, str) or not n.isidentifier() else n for n in names[:limit]
    )
    more = f", ... ({len(names)} in all)" if len(names) > limit else ""
    return (shown or "(none)") + more


def _preview_keys(value: Any) -> str:
    return _preview_names(value.keys()) if isinstance(value, Mapping) else "(not an object)"


def _short_exc(e: BaseException, limit: int = 300) -> str:
    """``Type: message`` of the innermost cause (``datasets`` wraps the useful error)."""
    inner = e
    for _ in range(10):
        nxt = inner.__cause__ or inner.__context__
        if nxt is None:
            break
        inner = nxt
    msg = " ".join(str(inner).split())
    if len(msg) > limit:
        msg = msg[: limit - 3] + "..."
    return f"{type(inner).__name__}: {msg}" if msg else type(inner).__name__


# --------------------------------------------------------------------------------------------
# Audit helpers
# --------------------------------------------------------------------------------------------


def describe_source(
    source: Any,
    *,
    kind: str = "auto",
    name: str = "data",
    data_files: Any = None,
    **hf_options: Any,
) -> dict[str, Any]:
    """What the audit record stores about a data source (loads and validates it): see
    :func:`unilogit.record.describe_data`, the one data-identity function. For ``hf:`` specs
    with ``data_files``, ``path`` names them too."""
    examples = load_examples(source, kind=kind, name=name, data_files=data_files, **hf_options)
    info = describe_data(source, examples, name=name)
    if isinstance(source, str) and source.startswith(HF_PREFIX) and data_files is not None:
        info["path"] = f"{source}({data_files})"
    return info


# --------------------------------------------------------------------------------------------
# Tokenisation
# --------------------------------------------------------------------------------------------


def _ids(value: Any) -> list[int]:
    """Normalise what tokenizer calls return (list, BatchEncoding, tensor, batch of 1)."""
    if isinstance(value, Mapping) or hasattr(value, "input_ids"):
        value = value["input_ids"]
    if hasattr(value, "tolist"):
        value = value.tolist()
    value = list(value)
    if value and isinstance(value[0], (list, tuple)):
        value = list(value[0])
    return [int(i) for i in value]


def _tokenize(tokenizer: Any, text: str) -> list[int]:
    return _ids(tokenizer(text, add_special_tokens=False))


def _bos(tokenizer: Any) -> list[int]:
    """``[bos_id]`` if the tokenizer has a BOS token and adds it itself, else ``[]``."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return []
    with_special = _ids(tokenizer("a", add_special_tokens=True))
    return [bos] if with_special and with_special[0] == bos else []


def _eos(tokenizer: Any) -> int:
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        raise ConfigError("the tokenizer has no eos_token (answers and texts end with EOS)")
    return int(eos)


def encode_prompt(
    tokenizer: Any,
    question: str,
    *,
    prompt_format: PromptFormat | bool | str | None = None,
    messages: list[dict[str, str]] | None = None,
) -> list[int]:
    """Token ids of the prompt of a QA pair, ending where the answer starts.

    ``prompt_format``: a :class:`~unilogit.prompts.PromptFormat` or a bare ``chat_template``
    value (``None`` = the tokenizer's template if it has one, ``True`` = required, ``False`` =
    off, a string = this Jinja template). With a template: ``apply_chat_template([system?,
    {"role": "user", "content": question}], add_generation_prompt=True)``; without:
    ``[BOS] + tok("Question: {question}\\nAnswer:")``. ``messages``: a ``messages`` row's
    conversation before its answer (:attr:`Example.messages`), used instead of ``question``;
    without a template it may only hold one user turn (the question).
    """
    fmt = PromptFormat.of(prompt_format)
    if fmt.template(tokenizer) is False:
        _check_single_turn(messages, "")
        return _bos(tokenizer) + _tokenize(tokenizer, RAW_QUESTION.format(question=question))
    out = tokenizer.apply_chat_template(
        fmt.messages(question, messages),
        add_generation_prompt=True,
        tokenize=True,
        return_dict=False,
        **fmt.template_kwargs(tokenizer),
    )
    return _ids(out)


def _check_single_turn(messages: list[dict[str, str]] | None, where: str) -> None:
    """The raw format holds one user turn: refuse a longer conversation (ConfigError)."""
    if messages is not None and [m.get("role") for m in messages] != ["user"]:
        raise ConfigError(
            f"{where}a multi-turn 'messages' row needs a chat template; the raw 'Question: ... "
            "Answer:' format holds one user turn"
        )


def _row_error(example: Example, reason: str, field: str) -> DataError:
    if example.source is None:
        return DataError(reason, file=example.row_id, field=field)
    if example.row_id != f"{example.source}:{example.line}":
        reason = f"{reason} (row {example.row_id})"
    return DataError(reason, file=example.source, line=example.line, field=field)


def encode_example(
    tokenizer: Any,
    example: Example,
    *,
    prompt_format: PromptFormat | bool | str | None = None,
    max_length: int | None = None,
    warn: bool = True,
) -> EncodedExample:
    """Token ids and labels of one example (see the module docstring for the layout).

    QA: ``labels`` are ``IGNORE_INDEX`` on the prompt and equal to the ids on the answer and its
    EOS. Raw text: every token is supervised. Sequences longer than ``max_length`` are cut on the
    right (``truncated=True``, a warning naming the row if ``warn``). Raises :class:`DataError`
    (with the row) if the answer / text is empty after tokenisation or if the prompt alone fills
    ``max_length``.
    """
    if max_length is not None and (
        isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1
    ):
        raise ConfigError(f"max_length must be a positive integer or None, got {max_length!r}")
    eos = _eos(tokenizer)
    if example.kind not in ("qa", "text"):
        raise _row_error(example, f"unknown kind {example.kind!r} (use 'qa' or 'text')", "kind")
    field_name = "answer" if example.kind == "qa" else _TEXT_FIELD
    try:
        start: list[int] = []
        end = [eos]
        if example.kind == "qa":
            fmt = PromptFormat.of(prompt_format)
            if fmt.template(tokenizer) is False:
                _check_single_turn(example.messages, f"{example.row_id}: ")
            prompt = encode_prompt(
                tokenizer, example.prompt, prompt_format=fmt, messages=example.messages
            )
            if fmt.template(tokenizer) is False:
                body = _tokenize(tokenizer, RAW_ANSWER.format(answer=example.response))
            else:
                body, end = _template_answer(tokenizer, example, fmt, prompt, eos)
        else:
            prompt, start = [], _bos(tokenizer)
            body = _tokenize(tokenizer, example.response)
    except (ConfigError, DataError):
        raise
    except Exception as e:  # e.g. a tokenizer rejecting invalid Unicode in a hand-made Example
        field_name = "question" if example.kind == "qa" else _TEXT_FIELD
        raise _row_error(example, f"could not be tokenised ({_short_exc(e)})", field_name) from e
    if not body:
        raise _row_error(example, "is empty after tokenisation", field_name)
    body = start + body
    input_ids = prompt + body + end
    labels = [IGNORE_INDEX] * len(prompt) + body + end
    truncated = max_length is not None and len(input_ids) > max_length
    if truncated:
        n_tokens = len(input_ids)
        input_ids, labels = input_ids[:max_length], labels[:max_length]
        if all(lab == IGNORE_INDEX for lab in labels):
            raise _row_error(
                example,
                f"the prompt alone is {len(prompt)} tokens, so max_length={max_length} leaves "
                "no answer tokens to train on; raise max_length",
                "question",
            )
        if warn:
            warnings.warn(
                f"{example.row_id}: {n_tokens} tokens truncated to max_length={max_length}",
                UserWarning,
                stacklevel=2,
            )
    return EncodedExample(input_ids, labels, truncated, example.row_id)


def _template_answer(
    tokenizer: Any, example: Example, fmt: PromptFormat, prompt: list[int], eos: int
) -> tuple[list[int], list[int]]:
    """(answer tokens, end-of-turn tokens) of the assistant turn as the chat template renders it.

    The whole conversation (prompt turns + the answer as the assistant turn, no generation
    prompt) is rendered and tokenised; it must start with exactly the ``prompt`` ids, else
    :class:`ConfigError` (the template renders earlier turns differently once an answer
    follows). The rest is the answer and the template's end of turn (``<|im_end|>``,
    ``<end_of_turn>``, ...): everything after the prompt minus trailing whitespace-only tokens
    (the line break between turns, never generated before the model stops). The end is the
    trailing special tokens; if the rendering ends in no special token, EOS is the end.
    """
    conversation = [
        *fmt.messages(example.prompt, example.messages),
        {"role": "assistant", "content": example.response},
    ]
    full = _ids(
        tokenizer.apply_chat_template(
            conversation,
            add_generation_prompt=False,
            tokenize=True,
            return_dict=False,
            **fmt.template_kwargs(tokenizer),
        )
    )
    if full[: len(prompt)] != prompt:
        pairs = zip(full, prompt, strict=False)
        at = next((i for i, (a, b) in enumerate(pairs) if a != b), len(full))
        raise ConfigError(
            f"{example.row_id}: the chat template renders the conversation with the answer "
            f"differently from the prompt alone (they differ at token {at}: "
            f"{tokenizer.decode(full[at : at + 8])!r} vs {tokenizer.decode(prompt[at : at + 8])!r}"
            "), so the answer's tokens cannot be separated; use a template whose generation "
            "prompt is a prefix of the rendered assistant turn, or chat_template=False"
        )
    rest = full[len(prompt) :]
    special = _special(tokenizer)
    while rest and rest[-1] not in special and not tokenizer.decode(rest[-1:]).strip():
        rest = rest[:-1]  # trailing line breaks between turns
    cut = len(rest)
    while cut > 0 and rest[cut - 1] in special:
        cut -= 1
    body, end = rest[:cut], rest[cut:]
    return body, end or [eos]


def _special(tokenizer: Any) -> set[int]:
    """Ids of the tokenizer's special tokens (BOS/EOS/PAD and added special tokens)."""
    ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
    ids.update(int(i) for i, tok in decoder.items() if getattr(tok, "special", False))
    return ids


def encode_examples(
    tokenizer: Any,
    examples: Sequence[Example],
    *,
    prompt_format: PromptFormat | bool | str | None = None,
    max_length: int | None = None,
) -> list[EncodedExample]:
    """:func:`encode_example` over a list; one warning summarises all truncated rows."""
    encoded = [
        encode_example(
            tokenizer, ex, prompt_format=prompt_format, max_length=max_length, warn=False
        )
        for ex in examples
    ]
    cut = [e.row_id for e in encoded if e.truncated]
    if cut:
        shown = ", ".join(cut[:5]) + (", ..." if len(cut) > 5 else "")
        warnings.warn(
            f"{len(cut)} of {len(encoded)} rows were longer than max_length={max_length} "
            f"tokens and were truncated: {shown}",
            UserWarning,
            stacklevel=2,
        )
    return encoded


# --------------------------------------------------------------------------------------------
# Batching
# --------------------------------------------------------------------------------------------


def _get(feature: Any, key: str) -> Any:
    if isinstance(feature, Mapping):
        return feature.get(key)
    return getattr(feature, key, None)


def collate(
    features: Sequence[Any], pad_token_id: int, padding_side: str = "right"
) -> dict[str, torch.Tensor]:
    """Pad encoded examples into a batch.

    ``features``: :class:`EncodedExample` objects, or anything with ``input_ids`` (and optional
    ``labels``; missing labels = nothing supervised) as attributes or keys. ``padding_side``:
    ``"right"`` for training/scoring, ``"left"`` for generation.

    Returns ``input_ids`` (B, T) padded with ``pad_token_id``, ``attention_mask`` (B, T) with 1
    on real tokens, ``labels`` (B, T) padded with ``IGNORE_INDEX``; all ``torch.long``.
    """
    if padding_side not in ("right", "left"):
        raise ConfigError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
    if pad_token_id is None:
        raise ConfigError("pad_token_id is None: set tokenizer.pad_token (or use the EOS id)")
    if not features:
        raise ConfigError("collate() got an empty list of features")
    seqs = []
    for i, feat in enumerate(features):
        ids = _get(feat, "input_ids")
        if ids is None:
            raise ConfigError(f"feature {i} has no input_ids")
        ids = _ids(ids) if not isinstance(ids, list) else ids
        labels = _get(feat, "labels")
        labels = [IGNORE_INDEX] * len(ids) if labels is None else _ids(labels)
        if len(labels) != len(ids):
            raise DataError(
                f"feature {i}: {len(labels)} labels for {len(ids)} input_ids",
                file=_get(feat, "row_id"),
            )
        seqs.append((ids, labels))
    batch, width = len(seqs), max(len(ids) for ids, _ in seqs)
    input_ids = torch.full((batch, width), int(pad_token_id), dtype=torch.long)  # (B, T)
    attention_mask = torch.zeros((batch, width), dtype=torch.long)  # (B, T)
    labels_t = torch.full((batch, width), IGNORE_INDEX, dtype=torch.long)  # (B, T)
    for row, (ids, labels) in enumerate(seqs):
        n = len(ids)
        cols = slice(0, n) if padding_side == "right" else slice(width - n, width)
        input_ids[row, cols] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, cols] = 1
        labels_t[row, cols] = torch.tensor(labels, dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels_t}
