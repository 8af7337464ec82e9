"""CLI prompt-format flags (--system-prompt, --chat-template FILE, --date-string) and --columns:
they reach training (a PromptFormat on TrainConfig) and the run's recorded config."""

from __future__ import annotations

import json

import pytest

from conftest import CHAT_TEMPLATE, build_tiny_tokenizer
from tiny import tiny_llama
from unilogit import data as data_lib
from unilogit.cli import main
from unilogit.prompts import PromptFormat
from unilogit.trainer import TrainConfig, _encode_all


@pytest.fixture
def tiny_dir(tmp_path):
    tok = build_tiny_tokenizer()  # no template of its own: --chat-template supplies one
    model = tiny_llama(len(tok))
    path = tmp_path / "model"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        "".join(json.dumps({"q": f"Question {i}?", "a": f"Answer {i}."}) + "\n" for i in range(4))
    )
    template = tmp_path / "chat.jinja"
    template.write_text(CHAT_TEMPLATE)
    return path, rows, template


def test_finetune_records_prompt_format_and_columns(tiny_dir, tmp_path, capsys):
    model, rows, template = tiny_dir
    out = tmp_path / "out"
    code = main(
        [
            "finetune",
            "--model",
            str(model),
            "--data",
            str(rows),
            "--columns",
            "question=q,answer=a",
            "--chat-template",
            str(template),
            "--system-prompt",
            "Be brief.",
            "--date-string",
            "1 Jan 2025",
            "--epochs",
            "1",
            "--lr",
            "1e-3",
            "--no-progress",
            "--output",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    config = json.loads((out / "finetune_config.json").read_text())
    fmt = config["train"]["prompt_format"]
    assert fmt == {
        "chat_template": CHAT_TEMPLATE,
        "system_prompt": "Be brief.",
        "date_string": "1 Jan 2025",
    }
    assert config["columns"] == {"question": "q", "answer": "a"}
    # the recorded config reads back into the same TrainConfig (replay)
    assert TrainConfig(prompt_format=fmt).prompt_format == PromptFormat(**fmt)


def test_train_config_prompt_format_is_what_training_encodes():
    tok = build_tiny_tokenizer()
    fmt = PromptFormat(chat_template=CHAT_TEMPLATE, system_prompt="Be brief.")
    rows = data_lib.load_examples([{"question": "Q?", "answer": "A."}])
    from unilogit.trainer import History

    (enc,) = _encode_all(rows, tok, TrainConfig(prompt_format=fmt), History())
    assert enc.input_ids == data_lib.encode_example(tok, rows[0], prompt_format=fmt).input_ids
    assert "Be brief." in tok.decode(enc.input_ids)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--chat-template", "missing.jinja"], "--chat-template: file not found: missing.jinja"),
        (["--no-chat-template", "--system-prompt", "x"], "need a chat template"),
        (["--columns", "question"], "--columns: expected FIELD=COLUMN, got 'question'"),
    ],
)
def test_bad_prompt_flags_give_one_error_line(tiny_dir, tmp_path, capsys, extra, message):
    model, rows, _ = tiny_dir
    argv = ["finetune", "--model", str(model), "--data", str(rows), "--output", str(tmp_path / "o")]
    assert main(argv + extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def test_eval_and_unlearn_evaluate_use_the_given_prompt_format(tmp_path):
    """``eval --system-prompt ...`` and ``unlearn --evaluate --system-prompt ...`` hand the
    benchmark's evaluation the same PromptFormat that training encodes with."""
    from unilogit.cli import evaluate as eval_cli
    from unilogit.cli import unlearn as unlearn_cli
    from unilogit.cli.main import make_parser

    seen: dict = {}

    class Bench:
        def evaluate(self, model, tok, *, reference=None, progress=True, **options):
            seen.update(options)
            return {}

    parser = make_parser()
    args = parser.parse_args(
        ["eval", "--model", "m", "--output", str(tmp_path / "e.json"),
         "--system-prompt", "Be brief.", "--date-string", "10 Apr 2025"]
    )  # fmt: skip
    eval_cli._evaluate(args, Bench(), None, None, None, None)
    expected = PromptFormat(system_prompt="Be brief.", date_string="10 Apr 2025")
    assert seen["prompt_format"] == expected
    seen.clear()
    eval_cli._evaluate(
        parser.parse_args(["eval", "--model", "m", "--output", "x.json"]),
        Bench(), None, None, None, None,
    )  # fmt: skip
    assert "prompt_format" not in seen  # the benchmark's own default applies
    run_eval = unlearn_cli._evaluation(Bench(), expected)
    run_eval(None, None)
    assert seen["prompt_format"] == expected


@pytest.mark.parametrize("command", ["unlearn", "finetune"])
def test_columns_with_a_benchmark_is_an_error_before_any_work(
    tmp_path, capsys, monkeypatch, command
):
    """``--columns`` maps a data file's columns; a benchmark brings its own rows. Before: the
    flag was silently ignored and the run went ahead."""
    from unilogit.cli import options

    def no_benchmark(*args, **kwargs):
        raise AssertionError("the benchmark was built")

    monkeypatch.setattr(options, "get_benchmark", no_benchmark)
    argv = [command, "--model", str(tmp_path / "m"), "--benchmark", "tofu", "--split", "forget01"]
    argv += ["--output", str(tmp_path / "o"), "--columns", "question=q"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --columns maps the columns of")
    assert "drop --columns" in err[0] and not (tmp_path / "o").exists()
