"""Tests of unilogit.data: loading, validation messages, encoding, label masking, batching."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import warnings
from pathlib import Path

import pytest
import torch

from unilogit.data import (
    IGNORE_INDEX,
    EncodedExample,
    Example,
    collate,
    describe_source,
    encode_example,
    encode_examples,
    encode_prompt,
    load_examples,
    sha256_file,
)
from unilogit.errors import ConfigError, DataError

QA_ROWS = [
    {"question": "What is the capital of France?", "answer": "Paris.", "id": "a1"},
    {"question": "Who wrote 'Hamlet'?", "answer": "William Shakespeare", "id": "a2"},
    {
        "question": "Ünïcödé, emoji 🙂 and\ttabs?",
        "answer": 'Yes, "quoted", with, commas\n2 lines',
        "id": "a3",
    },
]
TEXT_ROWS = [
    {"text": "Once upon a time, there was a little girl named Lily.", "source": "story"},
    {"text": 'Line one\nline two, with a comma and "quotes".', "source": "news"},
]


# ------------------------------------------------------------------------------------------
# helpers: write the same rows in every format
# ------------------------------------------------------------------------------------------


def write_rows(path: Path, rows: list[dict]) -> Path:
    suffix = path.suffix
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif suffix == ".json":
        path.write_text(json.dumps(rows, indent=2, ensure_ascii=False), encoding="utf-8")
    elif suffix == ".csv":
        with path.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    elif suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        raise AssertionError(suffix)
    return path


def as_tuples(examples: list[Example]) -> list[tuple]:
    return [(e.kind, e.prompt, e.response, e.extras) for e in examples]


def expected_qa(rows):
    return [
        (
            "qa",
            r["question"],
            r["answer"],
            {k: v for k, v in r.items() if k not in ("question", "answer")},
        )
        for r in rows
    ]


def expected_text(rows):
    return [("text", "", r["text"], {k: v for k, v in r.items() if k != "text"}) for r in rows]


def assert_names(err: pytest.ExceptionInfo, file: str, line: int | None, field: str | None):
    """The message names the file, the line and the field (as the issue asks)."""
    msg = str(err.value)
    assert Path(file).name in msg, msg
    if line is not None:
        assert f":{line}:" in msg, msg
        assert err.value.line == line
    if field is not None:
        assert f"'{field}'" in msg, msg
        assert err.value.field == field
    assert "Traceback" not in msg


# ------------------------------------------------------------------------------------------
# formats round-trip
# ------------------------------------------------------------------------------------------

FORMATS = [".jsonl", ".json", ".csv", ".parquet"]


@pytest.mark.parametrize("suffix", FORMATS)
def test_qa_round_trip_every_format(tmp_path, suffix):
    path = write_rows(tmp_path / f"forget{suffix}", QA_ROWS)
    examples = load_examples(path)
    assert as_tuples(examples) == expected_qa(QA_ROWS)
    assert all(e.kind == "qa" for e in examples)
    assert len({e.row_id for e in examples}) == len(examples)
    assert all(str(path) in e.row_id for e in examples)


@pytest.mark.parametrize("suffix", FORMATS)
def test_text_round_trip_every_format(tmp_path, suffix):
    path = write_rows(tmp_path / f"texts{suffix}", TEXT_ROWS)
    assert as_tuples(load_examples(path)) == expected_text(TEXT_ROWS)
    assert as_tuples(load_examples(str(path), kind="text")) == expected_text(TEXT_ROWS)


def test_list_of_dicts_and_dataset_objects():
    import datasets

    assert as_tuples(load_examples(QA_ROWS)) == expected_qa(QA_ROWS)
    ds = datasets.Dataset.from_list(QA_ROWS)
    examples = load_examples(ds, name="forget")
    assert as_tuples(examples) == expected_qa(QA_ROWS)
    assert examples[1].row_id == "forget:2"
    assert as_tuples(load_examples(datasets.Dataset.from_list(TEXT_ROWS))) == expected_text(
        TEXT_ROWS
    )
    # A list of Examples is returned as a list of the same Examples.
    assert load_examples(examples) == examples


def test_list_of_strings_is_raw_text(tmp_path):
    path = tmp_path / "texts.json"
    path.write_text(json.dumps(["first text", "second text"]), encoding="utf-8")
    examples = load_examples(path)
    assert as_tuples(examples) == [("text", "", "first text", {}), ("text", "", "second text", {})]
    assert [e.row_id for e in examples] == [f"{path}[0]", f"{path}[1]"]


@pytest.mark.parametrize(
    "builder,suffix", [("json", ".jsonl"), ("csv", ".csv"), ("parquet", ".parquet")]
)
def test_hf_spec_offline_with_local_files(tmp_path, builder, suffix):
    """``hf:NAME`` goes through ``datasets.load_dataset``; the file builders work offline."""
    path = write_rows(tmp_path / f"forget{suffix}", QA_ROWS)
    cache = str(tmp_path / "hf_cache")
    via_spec = load_examples(f"hf:{builder}:{path}", cache_dir=cache)
    via_option = load_examples(f"hf:{builder}", data_files=str(path), cache_dir=cache)
    with_split = load_examples(f"hf:{builder}::train", data_files=str(path), cache_dir=cache)
    assert as_tuples(via_spec) == as_tuples(via_option) == as_tuples(with_split)
    assert as_tuples(via_spec) == expected_qa(QA_ROWS)


def test_hf_errors_are_data_errors(tmp_path):
    path = write_rows(tmp_path / "forget.jsonl", QA_ROWS)
    cache = str(tmp_path / "hf_cache")
    with pytest.raises(DataError) as err:  # offline: a Hub id that is not cached
        load_examples("hf:locuslab/TOFU:forget01", cache_dir=cache)
    assert "hf:locuslab/TOFU:forget01" in str(err.value) and "offline" in str(err.value)
    with pytest.raises(DataError, match="Unknown split") as err:
        load_examples("hf:json::test", data_files=str(path), cache_dir=cache)
    with pytest.raises(ConfigError, match="needs files"):
        load_examples("hf:json")
    with pytest.raises(ConfigError, match="only apply to 'hf:NAME'"):
        load_examples(path, data_files="x.jsonl")


def test_row_lines_are_physical_lines(tmp_path):
    jsonl = tmp_path / "f.jsonl"
    jsonl.write_text('\n{"question": "q1", "answer": "a1"}\n\n{"question": "q2", "answer": "a2"}\n')
    assert [e.line for e in load_examples(jsonl)] == [2, 4]
    assert [e.row_id for e in load_examples(jsonl)] == [f"{jsonl}:2", f"{jsonl}:4"]
    # A CSV record spanning two lines: the next record starts two lines later.
    path = write_rows(tmp_path / "f.csv", QA_ROWS)
    assert [e.line for e in load_examples(path)] == [2, 3, 4]
    # Pretty-printed JSON: the line where each item starts.
    path = write_rows(tmp_path / "f.json", QA_ROWS)
    text = path.read_text(encoding="utf-8").split("\n")
    lines = [e.line for e in load_examples(path)]
    assert [text[n - 1].strip() for n in lines] == ["{", "{", "{"]
    assert lines[0] == 2


# ------------------------------------------------------------------------------------------
# real files from ../shared
# ------------------------------------------------------------------------------------------


def test_real_tofu_forget01(shared_dir):
    examples = load_examples(shared_dir / "data/tofu/forget01.jsonl")
    assert len(examples) == 40
    assert all(e.kind == "qa" and e.prompt and e.response and e.extras == {} for e in examples)
    full = load_examples(shared_dir / "data/tofu/full.jsonl")
    assert len(full) == 4000
    assert as_tuples(full[-40:]) == as_tuples(examples)  # forget01 = last 40 rows of full


def test_real_tofu_perturbed_keeps_extras(shared_dir):
    examples = load_examples(shared_dir / "data/tofu/forget10_perturbed.jsonl")
    assert len(examples) == 400
    for e in examples:
        assert set(e.extras) == {"paraphrased_answer", "perturbed_answer", "paraphrased_question"}
        assert isinstance(e.extras["perturbed_answer"], list)
        assert len(e.extras["perturbed_answer"]) == 5
        assert all(isinstance(p, str) and p for p in e.extras["perturbed_answer"])


def test_real_muse_privleak_texts(shared_dir):
    # privleak/forget.json is a single-line JSON array of 100 strings.
    examples = load_examples(shared_dir / "data/muse-news/privleak/forget.json")
    assert len(examples) == 100
    assert all(e.kind == "text" and e.prompt == "" and len(e.response) > 100 for e in examples)
    assert len({e.row_id for e in examples}) == 100
    knowmem = load_examples(shared_dir / "data/muse-news/knowmem/forget_qa.json")
    assert len(knowmem) == 100 and all(e.kind == "qa" for e in knowmem)


def test_real_idontknow_needs_text_builder(shared_dir, tmp_path):
    """idontknow.jsonl holds plain text lines, not JSON: a clear error that names the way out."""
    path = shared_dir / "data/tofu/idontknow.jsonl"
    with pytest.raises(DataError, match="hf:text:PATH") as err:
        load_examples(path)
    assert_names(err, str(path), 1, None)
    texts = load_examples(f"hf:text:{path}", cache_dir=str(tmp_path))
    assert len(texts) == 100 and all(e.kind == "text" for e in texts)


# ------------------------------------------------------------------------------------------
# bad input: DataError naming file, line and field
# ------------------------------------------------------------------------------------------


def write_jsonl_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


GOOD = json.dumps({"question": "q", "answer": "a"})


@pytest.mark.parametrize(
    "bad_row,field,reason",
    [
        ({"answer": "a"}, "question", "missing"),
        ({"question": "q"}, "answer", "missing"),
        ({"question": "q", "answer": 42}, "answer", "must be a string, got number"),
        ({"question": None, "answer": "a"}, "question", "must be a string, got null"),
        ({"question": "q", "answer": ["a"]}, "answer", "must be a string, got list"),
        ({"question": "q", "answer": True}, "answer", "must be a string, got boolean"),
        ({"question": {"x": 1}, "answer": "a"}, "question", "must be a string, got object"),
        ({"question": "q", "answer": ""}, "answer", "must be a non-empty string"),
        ({"question": "  \n\t", "answer": "a"}, "question", "only whitespace"),
        ({"question": "q", "answer": "bad \ud800 surrogate"}, "answer", "unpaired surrogate"),
        ({"text": "a text"}, "text", "raw-text ('text') row but the first row (line 1)"),
        ({"foo": "x", "bar": 1}, "question", "neither 'question'/'answer' (QA) nor 'text'"),
    ],
)
def test_bad_jsonl_rows(tmp_path, bad_row, field, reason):
    path = write_jsonl_lines(tmp_path / "forget.jsonl", [GOOD, GOOD, json.dumps(bad_row), GOOD])
    with pytest.raises(DataError, match=re.escape(reason)) as err:
        load_examples(path)
    assert_names(err, str(path), 3, field)


@pytest.mark.parametrize(
    "bad_row,field",
    [
        ({"question": "q", "answer": 7}, "answer"),
        ({"question": "", "answer": "a"}, "question"),
        ({"text": "t"}, "text"),
    ],
)
def test_bad_rows_in_every_format(tmp_path, bad_row, field):
    """Same bad row (2nd data row) in each format: JSON -> the line where the item starts,
    CSV -> its line, Parquet / Dataset / list -> the 1-based row number."""
    import datasets

    rows = [{"question": "q", "answer": "a"}, bad_row]
    cases = [
        (write_rows(tmp_path / "f.jsonl", rows), 2, field),
        (write_rows(tmp_path / "f.json", rows), 6, field),
    ]
    with pytest.raises(DataError) as err:
        load_examples(rows, name="forget_list")
    assert_names(err, "forget_list", 2, field)
    # CSV / Arrow columns hold one type each: a number answer cannot be written there.
    if isinstance(bad_row.get("answer", ""), str):
        table = _columns(rows)  # Arrow-backed: absent values are null
        # CSV: the header has both kinds of columns, so every row is QA and row 2's empty
        # question is the error.
        csv_field = "question" if "text" in bad_row else field
        cases += [
            (
                write_rows(tmp_path / "f.csv", [{k: v or "" for k, v in r.items()} for r in table]),
                3,
                csv_field,
            ),
            (write_rows(tmp_path / "f.parquet", table), 2, field),
        ]
        with pytest.raises(DataError) as err:
            load_examples(datasets.Dataset.from_list(table), name="forget_ds")
        assert_names(err, "forget_ds", 2, field)
    for path, line, expected_field in cases:
        with pytest.raises(DataError) as err:
            load_examples(path)
        assert_names(err, str(path), line, expected_field)


def _columns(rows: list[dict]) -> list[dict]:
    keys = [k for k in ("question", "answer", "text") if any(k in r for r in rows)]
    return [{k: r.get(k) for k in keys} for r in rows]


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DataError, match="file not found") as err:
        load_examples(tmp_path / "nope.jsonl")
    assert "nope.jsonl" in str(err.value)
    with pytest.raises(DataError, match="is a directory"):
        load_examples(tmp_path)


@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("content", [b"", b"  \n\n  \n"])
def test_empty_file(tmp_path, suffix, content):
    path = tmp_path / f"empty{suffix}"
    path.write_bytes(content)
    with pytest.raises(DataError, match="file is empty") as err:
        load_examples(path)
    assert_names(err, str(path), None, None)


def test_zero_rows(tmp_path):
    path = tmp_path / "none.json"
    path.write_text("[]")
    with pytest.raises(DataError, match="no rows") as err:
        load_examples(path)
    assert_names(err, str(path), 1, None)
    path = tmp_path / "none.csv"
    path.write_text("question,answer\n")
    with pytest.raises(DataError, match="no rows") as err:
        load_examples(path)
    assert_names(err, str(path), 1, None)
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "none.parquet"
    pq.write_table(pa.table({"question": pa.array([], pa.string())}), path)
    with pytest.raises(DataError, match="no rows"):
        load_examples(path)
    with pytest.raises(DataError, match="no rows"):
        load_examples([], name="empty_list")


@pytest.mark.parametrize(
    "suffix,field", [(".jsonl", "answer"), (".csv", "answer"), (".json", None)]
)
def test_non_utf8_bytes(tmp_path, suffix, field):
    path = write_rows(tmp_path / f"latin1{suffix}", [{"question": "q", "answer": "a"}] * 3)
    lines = path.read_bytes().split(b"\n")
    n = {".jsonl": 2, ".csv": 3, ".json": 4}[suffix]  # 1-based line to corrupt
    lines[n - 1] = lines[n - 1].replace(b'"a"', b'"caf\xe9"').replace(b",a", b",caf\xe9")
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(DataError, match="not valid UTF-8: byte 0xe9") as err:
        load_examples(path)
    assert_names(err, str(path), n, field)


def test_malformed_json_line_and_column(tmp_path):
    path = write_jsonl_lines(tmp_path / "bad.jsonl", [GOOD, '{"question": "q", "answer": }'])
    with pytest.raises(DataError, match="malformed JSON at column 29") as err:
        load_examples(path)
    assert_names(err, str(path), 2, None)
    path = tmp_path / "bad.json"
    path.write_text('[\n  {"question": "q",\n   "answer" "a"}\n]')
    with pytest.raises(DataError, match="malformed JSON at column 13: Expecting ':'") as err:
        load_examples(path)
    assert_names(err, str(path), 3, None)
    path = tmp_path / "lines.json"  # a JSON Lines file named .json
    path.write_text(GOOD + "\n" + GOOD + "\n")
    with pytest.raises(DataError, match="JSON Lines file") as err:
        load_examples(path)
    assert_names(err, str(path), 2, None)


def test_json_not_a_list_of_objects(tmp_path):
    path = tmp_path / "obj.json"
    path.write_text('\n{"question": ["q"], "answer": ["a"]}')
    with pytest.raises(DataError, match="must be a JSON array of objects") as err:
        load_examples(path)
    assert "question, answer" in str(err.value)
    assert_names(err, str(path), 2, None)
    path = tmp_path / "nums.json"
    path.write_text('[{"question": "q", "answer": "a"},\n 3]')
    with pytest.raises(DataError, match="got number") as err:
        load_examples(path)
    assert "array item 1" in str(err.value)
    assert_names(err, str(path), 2, None)
    path = tmp_path / "list.jsonl"
    path.write_text('[{"question": "q", "answer": "a"}]\n')
    with pytest.raises(DataError, match="got list") as err:
        load_examples(path)
    assert_names(err, str(path), 1, None)
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataError, match="nested too deeply"):
        load_examples(path)


def test_csv_missing_column_and_ragged_rows(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("question,answr\nq,a\n")
    with pytest.raises(DataError, match="missing column") as err:
        load_examples(path)
    assert "question, answr" in str(err.value)
    assert_names(err, str(path), 1, "answer")
    path.write_text("question, answer\nq,a\n")
    with pytest.raises(DataError, match="extra spaces") as err:
        load_examples(path)
    assert_names(err, str(path), 1, "answer")
    path.write_text("id,name\n1,x\n")
    with pytest.raises(DataError, match="'text' \\(raw text\\)") as err:
        load_examples(path)
    assert_names(err, str(path), 1, "question")
    path.write_text("question,answer\nq,a\nq,a,extra\n")
    with pytest.raises(DataError, match="has 3 fields but the header \\(line 1\\) has 2") as err:
        load_examples(path)
    assert_names(err, str(path), 3, None)
    path.write_text("question,answer,answer\nq,a,b\n")
    with pytest.raises(DataError, match="duplicate column") as err:
        load_examples(path)
    assert_names(err, str(path), 1, "answer")


def test_unsupported_extension(tmp_path):
    path = tmp_path / "forget.txt"
    path.write_text("hello\n")
    with pytest.raises(DataError, match="unsupported file type '.txt'") as err:
        load_examples(path)
    for suffix in FORMATS:
        assert suffix in str(err.value)


def test_bad_parquet_bytes(tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="not a readable Parquet file") as err:
        load_examples(path)
    assert_names(err, str(path), None, None)


def test_explicit_kind_mismatch(tmp_path):
    path = write_rows(tmp_path / "texts.jsonl", TEXT_ROWS)
    with pytest.raises(DataError, match="QA rows need 'question' and 'answer'") as err:
        load_examples(path, kind="qa")
    assert_names(err, str(path), 1, "question")
    path = write_rows(tmp_path / "qa.jsonl", QA_ROWS)
    with pytest.raises(DataError, match="raw-text rows need 'text'") as err:
        load_examples(path, kind="text")
    assert_names(err, str(path), 1, "text")
    with pytest.raises(ConfigError, match="kind must be one of"):
        load_examples(path, kind="chat")
    with pytest.raises(ConfigError, match="unsupported data source"):
        load_examples(42)


def test_answer_empty_after_tokenisation(tmp_path):
    """A tokenizer that deletes '@': the answer '@@' loads but has no tokens."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "Question": 4, ":": 5, "Answer": 6}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Replace("@", "")
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    path = write_jsonl_lines(
        tmp_path / "forget.jsonl", [GOOD, GOOD, '{"question": "q", "answer": "@@"}']
    )
    examples = load_examples(path)
    encode_example(tokenizer, examples[0])
    with pytest.raises(DataError, match="empty after tokenisation") as err:
        encode_example(tokenizer, examples[2])
    assert_names(err, str(path), 3, "answer")
    # Hand-made Examples (no file) are named by their row_id.
    with pytest.raises(DataError, match="empty after tokenisation") as err:
        encode_example(tokenizer, Example("q", "", "qa", "my-row-7", {}))
    assert "my-row-7" in str(err.value) and "'answer'" in str(err.value)
    # In a JSON array the row id (item index) is added to the message.
    path = tmp_path / "texts.json"
    path.write_text(json.dumps(["fine text", "@@@"]))
    examples = load_examples(path)
    with pytest.raises(DataError, match=r"texts.json:1: field 'text': is empty .*texts.json\[1\]"):
        encode_example(tokenizer, examples[1])


# ------------------------------------------------------------------------------------------
# encoding and label masking
# ------------------------------------------------------------------------------------------


def test_plain_prompt_layout_and_masking(tiny_tokenizer):
    tok = tiny_tokenizer
    ex = Example("What is the capital of France?", "Paris.", "qa", "r1", {})
    enc = encode_example(tok, ex)
    prompt = encode_prompt(tok, ex.prompt)
    answer = tok(" Paris.", add_special_tokens=False)["input_ids"]
    assert (
        prompt
        == [tok.bos_token_id]
        + tok("Question: What is the capital of France?\nAnswer:", add_special_tokens=False)[
            "input_ids"
        ]
    )
    assert enc.input_ids == prompt + answer + [tok.eos_token_id]
    assert enc.labels == [IGNORE_INDEX] * len(prompt) + answer + [tok.eos_token_id]
    assert enc.labels[-1] == tok.eos_token_id  # EOS is supervised
    assert enc.truncated is False and enc.row_id == "r1"
    assert tok.decode(enc.input_ids) == (
        "<s>Question: What is the capital of France?\nAnswer: Paris.</s>"
    )
    supervised = [t for t in enc.labels if t != IGNORE_INDEX]
    assert tok.decode(supervised) == " Paris.</s>"


def test_no_bos_when_tokenizer_does_not_add_it(tiny_tokenizer):
    from tokenizers import processors

    tok = tiny_tokenizer
    tok.backend_tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    prompt = encode_prompt(tok, "q?")
    assert tok.bos_token_id not in prompt
    assert tok.decode(prompt) == "Question: q?\nAnswer:"
    text = encode_example(tok, Example("", "a text", "text", "t", {}))
    assert text.input_ids[0] != tok.bos_token_id and text.input_ids[-1] == tok.eos_token_id


def test_chat_template_prompt(chat_tokenizer, tiny_tokenizer):
    tok = chat_tokenizer
    ex = Example("What is the capital of France?", "Paris.", "qa", "r1", {})
    enc = encode_example(tok, ex)
    prompt = encode_prompt(tok, ex.prompt)
    assert prompt == list(
        tok.apply_chat_template(
            [{"role": "user", "content": ex.prompt}],
            add_generation_prompt=True,
            tokenize=True,
            return_dict=False,
        )
    )
    user, assistant = tok.convert_tokens_to_ids(["<|user|>", "<|assistant|>"])
    assert user in prompt and assistant in prompt  # the template's tokens are in the prompt
    assert tok.decode(prompt) == "<s><|user|>\nWhat is the capital of France?</s>\n<|assistant|>\n"
    answer = tok("Paris.", add_special_tokens=False)["input_ids"]  # no leading space
    assert enc.input_ids == prompt + answer + [tok.eos_token_id]
    assert enc.labels == [IGNORE_INDEX] * len(prompt) + answer + [tok.eos_token_id]
    # chat_template=False turns it off; True requires one.
    off = encode_example(tok, ex, prompt_format=False)
    assert off.input_ids == encode_example(tiny_tokenizer, ex).input_ids
    assert encode_example(tok, ex, prompt_format=True).input_ids == enc.input_ids
    with pytest.raises(ConfigError, match="no chat template"):
        encode_example(tiny_tokenizer, ex, prompt_format=True)
    with pytest.raises(ConfigError, match="chat_template must be"):
        encode_prompt(tok, "q", prompt_format=3)
    # A template string given explicitly is used instead of the tokenizer's.
    custom = encode_prompt(tiny_tokenizer, "hi", prompt_format="[{{ messages[0]['content'] }}]")
    assert tiny_tokenizer.decode(custom) == "[hi]"


def test_raw_text_is_all_supervised(tiny_tokenizer, chat_tokenizer):
    tok = tiny_tokenizer
    enc = encode_example(tok, Example("", "Once upon a time", "text", "t1", {}))
    assert enc.input_ids[0] == tok.bos_token_id and enc.input_ids[-1] == tok.eos_token_id
    assert enc.labels == enc.input_ids
    assert tok.decode(enc.input_ids) == "<s>Once upon a time</s>"
    chat = encode_example(chat_tokenizer, Example("", "Once upon a time", "text", "t1", {}))
    assert chat.input_ids == enc.input_ids  # raw text never uses the chat template


def test_truncation_warns_with_row(tiny_tokenizer):
    tok = tiny_tokenizer
    ex = Example("q", "a long answer " * 20, "qa", "forget.jsonl:7", {})
    full = encode_example(tok, ex)
    with pytest.warns(UserWarning, match=r"forget.jsonl:7: \d+ tokens truncated to max_length=24"):
        cut = encode_example(tok, ex, max_length=24)
    assert cut.truncated and cut.input_ids == full.input_ids[:24]
    assert cut.labels == full.labels[:24]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encode_example(tok, ex, max_length=len(full.input_ids))  # exactly fits: no warning
    prompt_len = len(encode_prompt(tok, "q"))
    with pytest.raises(DataError, match="leaves no answer tokens") as err:
        encode_example(tok, ex, max_length=prompt_len)
    assert "forget.jsonl:7" in str(err.value) and "'question'" in str(err.value)
    with pytest.warns(UserWarning, match=r"1 of 2 rows .* truncated: forget.jsonl:7"):
        encode_examples(tok, [ex, Example("q", "a", "qa", "short", {})], max_length=24)
    with pytest.raises(ConfigError, match="max_length"):
        encode_example(tok, ex, max_length=0)


# ------------------------------------------------------------------------------------------
# collate and dataloader
# ------------------------------------------------------------------------------------------


def test_collate_right_and_left_padding():
    feats = [
        EncodedExample([1, 5, 6, 2], [-100, -100, 6, 2], False, "a"),
        EncodedExample([1, 7], [-100, 7], False, "b"),
    ]
    right = collate(feats, pad_token_id=0)
    assert right["input_ids"].tolist() == [[1, 5, 6, 2], [1, 7, 0, 0]]
    assert right["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert right["labels"].tolist() == [[-100, -100, 6, 2], [-100, 7, -100, -100]]
    assert all(v.dtype == torch.long for v in right.values())
    left = collate(feats, pad_token_id=0, padding_side="left")
    assert left["input_ids"].tolist() == [[1, 5, 6, 2], [0, 0, 1, 7]]
    assert left["attention_mask"].tolist() == [[1, 1, 1, 1], [0, 0, 1, 1]]
    assert left["labels"].tolist() == [[-100, -100, 6, 2], [-100, -100, -100, 7]]
    # dicts without labels (generation prompts): nothing supervised
    gen = collate([{"input_ids": [3, 4]}, {"input_ids": [5]}], 0, padding_side="left")
    assert gen["labels"].eq(IGNORE_INDEX).all()
    assert gen["input_ids"].tolist() == [[3, 4], [0, 5]]
    with pytest.raises(ConfigError):
        collate(feats, pad_token_id=0, padding_side="middle")
    with pytest.raises(ConfigError):
        collate([], pad_token_id=0)
    with pytest.raises(DataError, match="1 labels for 2 input_ids"):
        collate([{"input_ids": [1, 2], "labels": [1]}], 0)


def test_collate_masks_padding_and_keeps_eos(tiny_tokenizer):
    tok = tiny_tokenizer
    examples = load_examples(QA_ROWS)
    encoded = encode_examples(tok, examples)
    batch = collate(encoded, tok.pad_token_id)
    for row, enc in enumerate(encoded):
        n = len(enc.input_ids)
        assert batch["input_ids"][row, :n].tolist() == enc.input_ids
        assert batch["labels"][row, :n].tolist() == enc.labels
        assert batch["labels"][row, n - 1].item() == tok.eos_token_id
        assert batch["labels"][row, n:].eq(IGNORE_INDEX).all()
        assert batch["input_ids"][row, n:].eq(tok.pad_token_id).all()
        assert batch["attention_mask"][row].sum().item() == n


# ------------------------------------------------------------------------------------------
# audit helpers
# ------------------------------------------------------------------------------------------


def test_sha256_and_describe_source(tmp_path):
    path = write_rows(tmp_path / "forget.jsonl", QA_ROWS)
    assert sha256_file(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    info = describe_source(path)
    assert info["path"] == str(path.resolve())
    assert info["sha256"] == sha256_file(path) and info["sha256_of"] == "file"
    assert info["rows"] == 3 and info["kind"] == "qa"
    mem = describe_source(QA_ROWS, name="forget")
    assert mem["path"] == "forget" and mem["sha256_of"] == "rows" and mem["rows"] == 3
    assert describe_source(list(QA_ROWS))["sha256"] == mem["sha256"]  # content hash
    changed = [dict(QA_ROWS[0], answer="London.")] + QA_ROWS[1:]
    assert describe_source(changed)["sha256"] != mem["sha256"]
    with pytest.raises(DataError, match="file not found"):
        sha256_file(tmp_path / "missing.jsonl")
