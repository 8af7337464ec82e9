"""``--config FILE`` (YAML / JSON) and the Hugging Face flag aliases (issue 16): a saved
``unlearn_config.json`` replays its run to identical weights, command-line flags override the
file, an unknown key or bad value is one ``error:`` line naming the file and key."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from safety_kit import make_inputs
from unilogit import config_file
from unilogit.cli import main
from unilogit.cli.main import make_parser


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return make_inputs(tmp_path_factory.mktemp("inputs"))


def weights(out):
    return load_file(str(out / "model.safetensors"))


def same_weights(a, b) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(bool((wa[k] == wb[k]).all()) for k in wa)


def parse(argv):
    return config_file.parse_args(make_parser(), argv)


@pytest.fixture(scope="module")
def first_run(inputs, tmp_path_factory):
    """An NPO run with a method option, a non-default seed, lr and retain weight."""
    out = tmp_path_factory.mktemp("runs") / "x"
    argv = ["unlearn", "--model", str(inputs["model"]), "--forget", str(inputs["forget"])]
    argv += ["--retain", str(inputs["retain"]), "--method", "npo", "-O", "beta=0.3"]
    argv += ["--retain-weight", "0.5", "--epochs", "1", "--batch-size", "2", "--lr", "3e-3"]
    argv += ["--seed", "7", "--warmup-ratio", "0", "--no-progress", "--output", str(out)]
    assert main(argv) == 0
    return out


def test_a_saved_run_config_replays_to_identical_weights(first_run, tmp_path):
    """Before: `unlearn --config` did not exist (argparse: unrecognized arguments)."""
    replay = tmp_path / "y"
    assert (
        main(
            ["unlearn", "--config", str(first_run / "unlearn_config.json"), "--output", str(replay)]
        )
        == 0
    )
    assert same_weights(first_run, replay)
    saved = json.loads((first_run / "unlearn_config.json").read_text())
    again = json.loads((replay / "unlearn_config.json").read_text())
    assert saved["method"]["beta"] == 0.3 and again == saved


def test_command_line_flags_override_the_config(first_run, tmp_path):
    """Another --seed on the command line wins over the file's: different weights."""
    config = str(first_run / "unlearn_config.json")
    args = parse(["unlearn", "--config", config, "--output", str(tmp_path / "z"), "--seed", "8"])
    assert (args.seed, args.method, args.lr, args.retain_weight) == (8, "npo", 3e-3, 0.5)
    assert "beta=0.3" in args.option
    assert (
        main(["unlearn", "--config", config, "--output", str(tmp_path / "z"), "--seed", "8"]) == 0
    )
    assert not same_weights(first_run, tmp_path / "z")


def test_an_old_run_config_without_load_options_reads_back(first_run, tmp_path):
    """A config saved before `load` and `refusals` were recorded (and one of a resumed run)."""
    saved = json.loads((first_run / "unlearn_config.json").read_text())
    del saved["load"], saved["refusals"]
    saved["train"].update(resume=True, checkpoint_dir="/gone", log_file="/gone/log.jsonl")
    old = tmp_path / "old.json"
    old.write_text(json.dumps(saved))
    args = parse(["unlearn", "--config", str(old), "--output", str(tmp_path / "o")])
    assert (args.resume, args.log_file, args.seed, args.epochs) == (False, None, 7, 1.0)
    assert args.model == saved["model"] and args.forget == saved["forget"]


def test_a_yaml_config_with_either_spelling(inputs, tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        f"model: {inputs['model']}\nforget: {inputs['forget']}\nmethod: graddiff\n"
        "learning_rate: 1.0e-4\nbatch-size: 3\ngrad_accum: 2\nno_progress: true\n"
        "options:\n  retain_weight: 2\nchat_template: false\n"
    )
    args = parse(["unlearn", "--config", str(path), "--output", str(tmp_path / "o")])
    assert (args.lr, args.batch_size, args.grad_accum, args.progress) == (1e-4, 3, 2, False)
    assert args.option == ["retain_weight=2"] and args.chat_template is False
    args = parse(["unlearn", "--config", str(path), "--output", "o", "--batch_size", "5"])
    assert args.batch_size == 5


@pytest.mark.parametrize(
    "text, message",
    [
        ("bogus: 1\n", "unknown key 'bogus'"),
        ("batch_size: many\n", "'batch_size': invalid value 'many'"),
        ("batch_size: 2.5\n", "'batch_size' must be an integer"),
        ("mixed_precision: fp8\n", "'mixed_precision' must be one of"),
        ("lora: [1\n", "line 2: invalid YAML"),
        ("- a\n- b\n", "expected a mapping"),
    ],
)
def test_a_bad_config_is_one_error_line(tmp_path, capsys, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert main(["unlearn", "--config", str(path), "--model", "m", "--output", "o"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: --config {path}") and message in err[0]


def test_a_missing_config_file(tmp_path, capsys):
    assert main(["eval", "--config", str(tmp_path / "no.json"), "--output", "o"]) == 2
    assert "file not found" in capsys.readouterr().err


def test_hf_aliases_are_the_same_flags():
    hf = parse(
        ["finetune", "--model_name_or_path", "m", "--data", "d", "--output_dir", "o"]
        + ["--learning_rate", "0.5", "--num_train_epochs", "2", "--per_device_train_batch_size"]
        + ["3", "--gradient_accumulation_steps", "4", "--seed", "9", "--save_steps", "5"]
        + ["--warmup_ratio", "0.2", "--overwrite_output_dir"]
    )
    ours = parse(
        ["finetune", "--model", "m", "--data", "d", "--output", "o", "--lr", "0.5"]
        + ["--epochs", "2", "--batch-size", "3", "--grad-accum", "4", "--seed", "9"]
        + ["--checkpoint-every", "5", "--warmup-ratio", "0.2", "--overwrite"]
    )
    assert vars(hf) == vars(ours)


def test_every_training_or_evaluating_command_takes_config(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"output": "from-file", "quick": True}))
    assert parse(["demo", "--config", str(path)]).quick is True
    path.write_text(json.dumps({"output": "from-file", "model": "m", "benchmark": "tofu"}))
    for command in ("eval", "bench", "finetune"):
        args = parse([command, "--config", str(path)])
        assert (args.output, args.benchmark) == ("from-file", "tofu")


def test_a_recorded_prompt_format_and_column_mapping_read_back(tmp_path):
    from unilogit.config_file import flatten
    from unilogit.errors import ConfigError

    saved = {
        "train": {"prompt_format": {"chat_template": None, "system_prompt": "Be brief.",
                                    "date_string": "10 Apr 2025"}, "lr": 1e-4},
        "columns": {"question": "q", "answer": "a"},
    }  # fmt: skip
    flat = flatten(saved, tmp_path / "c.json")
    assert flat["system_prompt"] == "Be brief." and flat["date_string"] == "10 Apr 2025"
    assert flat["columns"] == "question=q,answer=a" and flat["lr"] == 1e-4
    saved["train"]["prompt_format"]["chat_template"] = "{{ messages }}"
    with pytest.raises(ConfigError, match="--chat-template FILE"):
        flatten(saved, tmp_path / "c.json")
