"""The command line's options: one meaning per flag, validated before any model loads."""

from __future__ import annotations

import json

import pytest

from unilogit.cli import main
from unilogit.errors import ConfigError
from unilogit.methods import RMU


@pytest.fixture
def forget_file(tmp_path):
    path = tmp_path / "forget.jsonl"
    rows = [{"text": "Once upon a time there was a cat."}, {"text": "Tom had a big red ball."}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_rmu_seed_option_is_the_method_seed_not_the_training_seed(
    shared_dir, forget_file, tmp_path, monkeypatch, capsys
):
    """`-O seed=3` with RMU: the control vector comes from seed 3, the training seed stays the
    default 0, and the audit record says exactly that (old code: training seed 3, RMU seed 0,
    and two RMU objects: one for the record, one for training)."""
    used: list[int] = []
    real = RMU.control

    def spy(self, *args, **kwargs):
        used.append(int(self.hp["seed"]))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(RMU, "control", spy)
    built: list[RMU] = []
    real_init = RMU.__init__

    def count(self, *args, **kwargs):
        built.append(self)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(RMU, "__init__", count)
    out = tmp_path / "o"
    argv = ["unlearn", "--model", str(shared_dir / "models" / "stories260K.gguf")]
    argv += ["--forget", str(forget_file), "--method", "rmu", "-O", "seed=3", "-O", "layer=0"]
    argv += ["--epochs", "1", "--no-progress", "--output", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    assert used and set(used) == {3}
    assert len(built) == 1  # one Method object: the one recorded is the one trained
    record = json.loads((out / "unlearn_record.json").read_text())
    assert record["config"]["method"]["seed"] == 3
    assert record["config"]["train"]["seed"] == 0
    assert record["seed"] == 0


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    return lines[0]


BAD_TRAINING = [
    (["--epochs", "0"], "'epochs'"),
    (["--lr", "-1"], "'lr'"),
    (["--lr", "nan"], "'lr'"),
    (["--warmup-ratio", "5"], "'warmup_ratio'"),
    (["--max-grad-norm", "-1"], "'max_grad_norm'"),
    (["--batch-size", "0"], "'batch_size'"),
    (["--retain-batch-size", "0"], "'retain_batch_size'"),
    (["--weight-decay", "-1"], "'weight_decay'"),
]


@pytest.mark.parametrize(("flags", "field"), BAD_TRAINING)
@pytest.mark.parametrize("command", ["unlearn", "finetune"])
def test_bad_training_values_fail_before_the_model_loads(
    command, flags, field, forget_file, tmp_path, capsys
):
    """The model path does not exist: the error is about the option, so nothing was loaded."""
    data = ["--forget" if command == "unlearn" else "--data", str(forget_file)]
    argv = [command, "--model", str(tmp_path / "no-such-model"), *data, *flags]
    assert main([*argv, "--output", str(tmp_path / "o")]) == 2
    line = _one_error_line(capsys)
    assert field in line and "model" not in line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("flags", "field"), BAD_TRAINING[3:])
def test_bench_validates_the_same_training_options(flags, field, tmp_path, capsys):
    argv = ["bench", "--model", str(tmp_path / "no-such-model"), "--methods", "npo", *flags]
    assert main([*argv, "--output", str(tmp_path / "b")]) == 2
    assert field in _one_error_line(capsys)
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--method", "npo", "-O", "beta=abc"], "option 'beta' of method 'npo' expects a number"),
        (["--method", "unilogit", "-O", "fused=perhaps"], "expects true or false"),
        (["--method", "npo", "-O", "npo:beta=1"], "KEY=VALUE"),
        (["--method", "npo", "-O", "betta=1"], "unknown option"),
        (["--method", "npo", "-O", "lr=1"], "'lr' is a training setting, not a method option"),
        (["--method", "npo", "-O", "seed=1"], "unknown option(s) ['seed']"),
        (["--method", "idkdpo", "--refusals", "no-such-refusals.txt"], "no-such-refusals.txt"),
    ],
)
def test_method_options_fail_before_the_model_loads(
    options, message, forget_file, tmp_path, capsys
):
    argv = ["unlearn", "--model", str(tmp_path / "no-such-model"), "--forget", str(forget_file)]
    assert main([*argv, *options, "--output", str(tmp_path / "o")]) == 2
    assert message in _one_error_line(capsys)


def test_bench_typed_options_and_all_method_options(tmp_path, capsys):
    argv = ["bench", "--methods", "npo,unilogit", "--output", str(tmp_path / "b")]
    assert main([*argv, "-O", "beta=abc"]) == 2
    assert "option 'beta' of method 'npo' expects a number, got 'abc'" in _one_error_line(capsys)
    assert main([*argv, "-O", "steering_coeff=3"]) == 2
    assert "none of the methods" in _one_error_line(capsys)


def test_version(capsys):
    import unilogit

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"unilogit {unilogit.__version__}"


def test_every_model_loading_command_takes_the_model_flags(capsys):
    flags = ["--model", "--revision", "--dtype", "--device", "--trust-remote-code"]
    for command in ("unlearn", "finetune", "eval", "bench"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        for flag in [*flags, "--allow-pickle"]:
            assert flag in text, (command, flag)


def test_unlearn_and_bench_share_the_training_flags(capsys):
    shared = ["--batch-size", "--grad-accum", "--warmup-ratio", "--weight-decay"]
    shared += ["--max-grad-norm", "--max-length", "--mixed-precision", "--no-chat-template"]
    shared += ["--lora", "--lora-r", "--lora-alpha", "--no-progress"]
    for command in ("unlearn", "finetune", "bench"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        assert all(flag in text for flag in shared), command
    with pytest.raises(SystemExit):
        main(["unlearn", "--help"])
    assert "default 1e-05: safe for real models" in " ".join(capsys.readouterr().out.split())
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    assert "(default 1e-3: right for" in " ".join(capsys.readouterr().out.split())


def _fail_with(error: BaseException):
    def fail(**kwargs):
        raise error

    return fail


def test_ctrl_c_is_one_line_with_exit_130(forget_file, tmp_path, monkeypatch, capsys):
    from unilogit import recipes

    monkeypatch.setattr(recipes, "unlearn_to_disk", _fail_with(KeyboardInterrupt()))
    out = tmp_path / "o"
    argv = ["unlearn", "--model", "m", "--forget", str(forget_file), "--output", str(out)]
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert err.startswith("interrupted") and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    # with a checkpoint: where it is and the exact command that resumes
    state = tmp_path / ".o.checkpoints" / "checkpoint" / "trainer_state.json"
    state.parent.mkdir(parents=True)
    state.write_text('{"step": 6}')
    assert main([*argv, "--checkpoint-every", "3"]) == 130
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"last checkpoint: {state.parent} (step 6)" in err
    assert err.endswith("--checkpoint-every 3 --resume")
    monkeypatch.setattr(recipes, "finetune_to_disk", _fail_with(KeyboardInterrupt()))
    assert main(["finetune", "--model", "m", "--data", "d", "--output", str(out)]) == 130
    assert capsys.readouterr().err.strip() == "interrupted"


def test_os_errors_are_one_line_naming_the_path(forget_file, tmp_path, monkeypatch, capsys):
    from unilogit import recipes

    full = OSError(28, "No space left on device", str(tmp_path / "o" / "model.safetensors"))
    monkeypatch.setattr(recipes, "unlearn_to_disk", _fail_with(full))
    argv = ["unlearn", "--model", "m", "--forget", str(forget_file), "--output", str(tmp_path)]
    assert main(argv) == 2
    line = _one_error_line(capsys)
    assert line == f"error: {tmp_path / 'o' / 'model.safetensors'}: No space left on device"
    monkeypatch.setattr(recipes, "unlearn_to_disk", _fail_with(PermissionError(13, "denied")))
    assert main(argv) == 2
    assert _one_error_line(capsys) == "error: denied"


def test_a_real_os_error_from_the_output_path(shared_dir, forget_file, capsys):
    """An output under /proc (not writable even by root) fails with one line, exit 2."""
    gguf = str(shared_dir / "models" / "stories260K.gguf")
    argv = ["unlearn", "--model", gguf, "--forget", str(forget_file), "--epochs", "1"]
    assert main([*argv, "--no-progress", "--output", "/proc/unilogit-test-output"]) == 2
    err = capsys.readouterr().err  # (transformers' GGUF conversion bar may come first)
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and last.count("error") == 1
    assert "/proc/unilogit-test-output" in last  # the line names the path


def test_eval_malformed_reference_is_one_line_before_any_work(tmp_path, capsys):
    bad = tmp_path / "retain-eval.json"
    bad.write_text('{"truth_ratios": [0.5,\n')
    argv = ["eval", "--benchmark", "tofu", "--model", str(tmp_path / "no-such-model")]
    argv += ["--reference", str(bad), "--output", str(tmp_path / "e.json")]
    assert main(argv) == 2
    line = _one_error_line(capsys)
    assert line.startswith(f"error: {bad}:2: not valid JSON")
    assert not (tmp_path / "e.json").exists()


def test_benchmark_flags_go_only_to_benchmarks_that_take_them(tmp_path):
    """--preset is the world's; facts takes the original model (its probes are filtered and its
    forget corpus written with it); a flag a benchmark does not take is an error."""
    from unilogit.cli import options as opt
    from unilogit.cli.main import make_parser

    def parsed(*extra):
        argv = ["bench", "--output", str(tmp_path / "o"), *extra]
        return make_parser().parse_args(argv)

    with pytest.raises(ConfigError, match="takes no --preset"):
        opt.get_benchmark(parsed("--benchmark", "tofu", "--preset", "quick"))
    args = parsed("--benchmark", "facts", "--split", "batch:2", "--cache-dir", str(tmp_path))
    bench = opt.get_benchmark(args, original_model="some/model")
    assert (bench.name, bench.split, bench.model_spec) == ("facts", "batch:2", "some/model")
    assert opt.get_benchmark(args).model_spec is None  # eval: the default original (SmolLM2)
    assert (bench.max_utility, bench.with_retain) == (None, False)
    args = parsed("--benchmark", "facts", "--split", "single:3", "--max-utility", "60",
                  "--with-retain")  # fmt: skip
    bench = opt.get_benchmark(args)
    assert (bench.split, bench.max_utility, bench.with_retain) == ("single:3", 60, True)
    bench = opt.get_benchmark(parsed("--benchmark", "facts", "--holdout-entities", "16"))
    assert bench.holdout_entities == 16
    with pytest.raises(ConfigError, match="16 holdout entities, got 17"):
        opt.get_benchmark(parsed("--benchmark", "facts", "--holdout-entities", "17"))
    for flag in (["--with-retain"], ["--max-utility", "5"], ["--holdout-entities", "8"]):
        with pytest.raises(ConfigError, match=f"takes no {flag[0]}"):
            opt.get_benchmark(parsed("--benchmark", "world", *flag))
