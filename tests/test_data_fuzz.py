"""Property tests of unilogit.data: any file either loads exactly what was written or raises a
DataError with a readable message that names the file -- never another exception type.

Hypothesis runs derandomized (fixed examples, no example database), so the tests are
deterministic.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import build_tiny_tokenizer
from unilogit.data import IGNORE_INDEX, Example, collate, encode_example, load_examples
from unilogit.errors import DataError

FUZZ = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
RESERVED = ("question", "answer", "text")

# Any Unicode, surrogates included (JSON can carry them as \ud800 escapes), NUL, emoji ...
any_char = st.characters(min_codepoint=0, max_codepoint=0x10FFFF)
any_text = st.one_of(
    st.text(any_char, max_size=30),
    st.sampled_from(["", " ", "\x00", "🙂", "\ud800", "a\u2028b", "é\r\n", '"', ",", "\ufeff"]),
)
# Strings the loader must accept: valid Unicode (no surrogates), not only whitespace.
good_char = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=["Cs"])
# One string in ten is huge (> the csv module's default 128 KiB field limit).
huge_text = st.builds(
    lambda s, n: s * n, st.text(good_char, min_size=3, max_size=3), st.integers(44_000, 46_000)
)
good_text = (
    st.integers(0, 9)
    .flatmap(lambda i: huge_text if i == 0 else st.text(good_char, min_size=1, max_size=40))
    .filter(lambda s: s.strip() != "")
)
extra_key = st.sampled_from(["id", "note", "paraphrased_answer", "perturbed_answer", "x y", "é"])
json_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), any_text
)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


def row_kind(row) -> str | None:
    if isinstance(row, str):
        return "text"
    if not isinstance(row, dict):
        return None
    if "question" in row or "answer" in row:
        return "qa"
    return "text" if "text" in row else None


def valid_str(value) -> bool:
    if not isinstance(value, str) or not value.strip():
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def should_load(rows: list) -> bool:
    """Reference rule set: what a correct loader must accept."""
    kinds = {row_kind(r) for r in rows}
    if not rows or None in kinds or len(kinds) != 1:
        return False
    for r in rows:
        if isinstance(r, str):
            if not valid_str(r):
                return False
        elif row_kind(r) == "qa":
            if not (valid_str(r.get("question")) and valid_str(r.get("answer"))):
                return False
        elif not valid_str(r.get("text")):
            return False
    return True


def expected(row) -> tuple:
    if isinstance(row, str):
        return ("text", "", row, {})
    if row_kind(row) == "qa":
        extras = {k: v for k, v in row.items() if k not in ("question", "answer")}
        return ("qa", row["question"], row["answer"], extras)
    return ("text", "", row["text"], {k: v for k, v in row.items() if k != "text"})


def load_or_error(path: Path):
    """Load; the only acceptable failure is a DataError with a one-line-ish message."""
    try:
        return load_examples(path)
    except DataError as e:
        msg = str(e)
        assert path.name in msg, msg
        assert msg.strip() and len(msg) < 2000, msg[:300]
        return None


def check_loaded(examples, rows):
    assert examples is not None, "valid rows were rejected"
    got = [(e.kind, e.prompt, e.response, e.extras) for e in examples]
    assert got == [expected(r) for r in rows]


def write_bytes(suffix: str, data: bytes):
    tmp = tempfile.TemporaryDirectory()
    path = Path(tmp.name) / f"fuzz{suffix}"
    path.write_bytes(data)
    return tmp, path


def encode(text: str) -> bytes:
    # Lone surrogates become invalid UTF-8 bytes that the loader must report.
    return text.encode("utf-8", "surrogatepass")


# ------------------------------------------------------------------------------------------
# valid rows: must load, and exactly what was written
# ------------------------------------------------------------------------------------------

good_qa_row = st.fixed_dictionaries(
    {"question": good_text, "answer": good_text},
    optional={"paraphrased_answer": good_text, "id": good_text},
)
good_text_row = st.fixed_dictionaries({"text": good_text}, optional={"note": good_text})
good_rows = st.one_of(
    st.lists(good_qa_row, min_size=1, max_size=5),
    st.lists(good_text_row, min_size=1, max_size=5),
)


@FUZZ
@given(rows=good_rows, ascii_only=st.booleans(), suffix=st.sampled_from([".jsonl", ".json"]))
def test_valid_json_rows_round_trip(rows, ascii_only, suffix):
    if suffix == ".jsonl":
        text = "".join(json.dumps(r, ensure_ascii=ascii_only) + "\n" for r in rows)
    else:
        text = json.dumps(rows, ensure_ascii=ascii_only, indent=1 if ascii_only else None)
    tmp, path = write_bytes(suffix, text.encode("utf-8"))
    with tmp:
        check_loaded(load_or_error(path), rows)


@FUZZ
@given(rows=good_rows)
def test_valid_csv_rows_round_trip(rows):
    header = list(dict.fromkeys(k for r in rows for k in r))
    table = [{k: r.get(k, "") for k in header} for r in rows]  # CSV: absent -> ""
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=header)
    writer.writeheader()
    writer.writerows(table)
    tmp, path = write_bytes(".csv", buf.getvalue().encode("utf-8"))
    with tmp:
        examples = load_or_error(path)
        check_loaded(examples, table)


# ------------------------------------------------------------------------------------------
# arbitrary rows: load exactly (when the rules allow it) or DataError
# ------------------------------------------------------------------------------------------

any_key = st.one_of(st.sampled_from(RESERVED), extra_key, st.text(max_size=4))
any_row = st.one_of(
    st.dictionaries(any_key, st.one_of(any_text, good_text, json_value), max_size=4),
    any_text,
    json_value,
)


@FUZZ
@given(
    rows=st.lists(any_row, max_size=5),
    ascii_only=st.booleans(),
    suffix=st.sampled_from([".jsonl", ".json"]),
)
def test_arbitrary_json_rows(rows, ascii_only, suffix):
    if suffix == ".jsonl":
        text = "".join(json.dumps(r, ensure_ascii=ascii_only) + "\n" for r in rows)
    else:
        text = json.dumps(rows, ensure_ascii=ascii_only)
    data = encode(text)
    tmp, path = write_bytes(suffix, data)
    with tmp:
        examples = load_or_error(path)
    try:
        data.decode("utf-8")
        valid_utf8 = True
    except UnicodeDecodeError:
        valid_utf8 = False
    if valid_utf8 and should_load(rows):
        check_loaded(examples, rows)
    elif examples is not None:  # loaded although the rules say no
        raise AssertionError(f"accepted invalid rows: {rows!r}"[:500])


@FUZZ
@given(
    header=st.lists(st.one_of(st.sampled_from(RESERVED), any_text), min_size=1, max_size=4),
    cells=st.lists(st.lists(st.one_of(any_text, good_text), min_size=1, max_size=5), max_size=4),
)
def test_arbitrary_csv_tables(header, cells):
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow(header)
    for record in cells:
        writer.writerow(record)
    tmp, path = write_bytes(".csv", encode(buf.getvalue()))
    with tmp:
        examples = load_or_error(path)
    if examples is None:
        return
    # Loaded: each example holds exactly the cells of a written record.
    records = [r for r in cells if len(r) == len(header)]
    assert len(examples) == len(records) == len(cells)
    # A leading U+FEFF in the file is a byte-order mark, not part of the first column name.
    names = [header[0].removeprefix("\ufeff"), *header[1:]]
    for ex, record in zip(examples, records, strict=True):
        row = dict(zip(names, record, strict=True))
        assert (ex.kind, ex.prompt, ex.response, ex.extras) == expected(row)


@FUZZ
@given(
    data=st.binary(max_size=300), suffix=st.sampled_from([".jsonl", ".json", ".csv", ".parquet"])
)
def test_random_bytes(data, suffix):
    tmp, path = write_bytes(suffix, data)
    with tmp:
        examples = load_or_error(path)
    if examples is not None:
        assert all(isinstance(e.response, str) and e.response.strip() for e in examples)


# ------------------------------------------------------------------------------------------
# encoding invariants on random valid examples
# ------------------------------------------------------------------------------------------

TOKENIZER = build_tiny_tokenizer()
CHAT_TOKENIZER = build_tiny_tokenizer(chat=True)
short_good = st.text(good_char, min_size=1, max_size=40).filter(lambda s: s.strip() != "")


@FUZZ
@given(
    question=short_good,
    answer=short_good,
    chat=st.booleans(),
    max_length=st.one_of(st.none(), st.integers(1, 200)),
)
def test_encoding_invariants(question, answer, chat, max_length):
    tok = CHAT_TOKENIZER if chat else TOKENIZER
    ex = Example(question, answer, "qa", "fuzz:1", {})
    try:
        enc = encode_example(tok, ex, max_length=max_length, warn=False)
    except DataError as e:  # only legitimate reason: the prompt alone fills max_length
        assert max_length is not None and "leaves no answer tokens" in str(e)
        return
    full = encode_example(tok, ex)
    n_prompt = full.labels.index(next(t for t in full.labels if t != IGNORE_INDEX))
    assert len(full.input_ids) == len(full.labels)
    assert full.labels[:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert full.labels[n_prompt:] == full.input_ids[n_prompt:]
    assert full.input_ids[-1] == tok.eos_token_id
    # The supervised tokens decode back to the answer (byte-level BPE is lossless).
    decoded = tok.decode(full.input_ids[n_prompt:-1], clean_up_tokenization_spaces=False)
    assert decoded == (answer if chat else " " + answer)
    if max_length is not None:
        assert enc.input_ids == full.input_ids[:max_length]
        assert enc.truncated == (len(full.input_ids) > max_length)
    batch = collate([enc, full], pad_token_id=tok.pad_token_id)
    assert batch["labels"][0, len(enc.input_ids) :].eq(IGNORE_INDEX).all()
    assert batch["attention_mask"].sum().item() == len(enc.input_ids) + len(full.input_ids)
