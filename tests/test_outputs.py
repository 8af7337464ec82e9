"""Nothing lost (issue #11): every path is checked before any work, the output appears in one
step with its record, a second run on the same output is locked out, and failures, kills and
Ctrl-C leave the previous output intact and nothing partial behind."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from safety_kit import FAST, cli, make_inputs, popen, tree, unlearn_args
from unilogit import files, recipes
from unilogit.errors import ConfigError, Interrupted, OutputError, UnilogitError
from unilogit.files import exclusive_lock
from unilogit.record import verify


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return make_inputs(tmp_path_factory.mktemp("inputs"))


@pytest.fixture
def no_training(monkeypatch):
    """Any training fails the test: the refusals under test must come before any work."""

    def trained(*a, **k):
        raise AssertionError("training started before the paths were checked")

    monkeypatch.setattr(recipes, "unlearn", trained)
    monkeypatch.setattr(recipes, "load_model", trained)


def run(inputs, output, **kw):
    return recipes.unlearn_to_disk(
        model=str(inputs["model"]),
        forget=str(inputs["forget"]),
        retain=str(inputs["retain"]),
        output=output,
        train_options=dict(FAST),
        **kw,
    )


def leftovers(folder: Path, name: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f".{name}."))


@pytest.fixture(scope="module")
def previous(inputs, tmp_path_factory):
    """A finished unlearn output (to be overwritten by copies of it) and its files' bytes."""
    out = run(inputs, tmp_path_factory.mktemp("prev") / "o")
    return out, tree(out)


def copy_previous(previous, tmp_path) -> Path:
    import shutil

    out = tmp_path / "o"
    shutil.copytree(previous[0], out)
    return out


# ------------------------------------------------------------------ finding 1: --log-file


@pytest.mark.parametrize("which", ["weights", "forget", "unrelated"])
def test_an_existing_log_file_is_refused_before_training(inputs, tmp_path, no_training, which):
    """Before: --log-file truncated the file, then moved it into the output (exit 0)."""
    target = {
        "weights": inputs["model"] / "model.safetensors",
        "forget": inputs["forget"],
        "unrelated": tmp_path / "notes.txt",
    }[which]
    if which == "unrelated":
        target.write_text("my notes\n")
    before = target.read_bytes()
    with pytest.raises(ConfigError, match="log-file"):
        run(inputs, tmp_path / "o1", log_file=str(target))
    assert target.read_bytes() == before
    assert not (tmp_path / "o1").exists() and leftovers(tmp_path, "o1") == []


def test_the_default_log_goes_into_the_output_and_nothing_else_is_left(inputs, tmp_path):
    out = run(inputs, tmp_path / "o")
    assert (out / "train_log.jsonl").read_text().count("\n") == 2  # 4 rows / batch 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]  # no lock, log or work area
    assert verify(out)["ok"]


def test_missing_parent_folders_of_the_output_are_created(inputs, tmp_path):
    """Before: an --output whose parent folder did not exist failed with 'cannot lock the
    output ... No such file or directory' (found by scripts/tofu_cpu_recipe.py)."""
    out = run(inputs, tmp_path / "new" / "models" / "o")
    assert verify(out)["ok"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["o"]


def test_a_new_log_file_is_written_where_asked(inputs, tmp_path):
    log = tmp_path / "run.log.jsonl"
    out = run(inputs, tmp_path / "o", log_file=str(log))
    assert log.read_text() == (out / "train_log.jsonl").read_text() != ""


# ------------------------------------------------------------------ finding 3: --overwrite


def test_overwrite_replaces_only_a_previous_unilogit_output(inputs, tmp_path, no_training):
    """Before: --overwrite deleted any directory, even one holding the run's forget file."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("precious")
    with pytest.raises(ConfigError, match="only a previous unilogit output"):
        run(inputs, mine, overwrite=True)
    assert (mine / "keep.txt").read_text() == "precious"


def test_overwrite_never_touches_a_directory_holding_the_inputs(inputs, tmp_path, no_training):
    folder = inputs["forget"].parent  # holds the model and the forget file
    (folder / "unlearn_record.json").write_text("{}")  # even if it looks like an output
    try:
        with pytest.raises(ConfigError, match="overlaps the run's input"):
            run(inputs, folder, overwrite=True)
    finally:
        (folder / "unlearn_record.json").unlink()
    assert inputs["forget"].is_file()


def test_output_over_the_input_model_is_refused_at_start(inputs, no_training):
    """Before: the refusal came only after the whole training."""
    with pytest.raises(ConfigError, match="overlaps the run's input"):
        run(inputs, inputs["model"], overwrite=True)
    with pytest.raises(ConfigError, match="overlaps the run's input"):
        run(inputs, inputs["model"] / "inside")


def test_output_dot_or_a_parent_of_the_cwd_is_refused(inputs, tmp_path, monkeypatch, no_training):
    """Before: `--output . --overwrite` was a traceback (or deleted the working directory)."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "unlearn_record.json").write_text("{}")
    monkeypatch.chdir(work)
    for output in [".", "..", str(work)]:
        with pytest.raises(ConfigError, match="working directory"):
            run(inputs, output, overwrite=True)
    assert (work / "unlearn_record.json").is_file()


def test_overwrite_of_a_previous_output_replaces_it(inputs, previous, tmp_path):
    out = copy_previous(previous, tmp_path)
    run(inputs, out, overwrite=True, method="ga")
    assert tree(out) != previous[1] and verify(out)["ok"]
    assert leftovers(tmp_path, "o") == []


# ------------------------------------------------------------------ finding 2: the lock


def test_a_second_run_on_a_locked_output_fails_at_once(inputs, tmp_path, no_training):
    with exclusive_lock(tmp_path / ".o.lock"):
        with pytest.raises(ConfigError, match="another run is writing"):
            run(inputs, tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_two_concurrent_processes_on_one_output(inputs, tmp_path):
    """Before: both printed "saved to"; one result and its train log were lost. Now the second
    fails at once with one error line while the first runs on; a lock left by a killed run
    does not block the next one."""
    first = popen(*unlearn_args(inputs, "o", "--epochs", "3000"), cwd=tmp_path)
    try:
        deadline = time.time() + 120
        while not (tmp_path / ".o.checkpoints").exists() and first.poll() is None:
            assert time.time() < deadline
            time.sleep(0.05)
        assert first.poll() is None, first.communicate()
        second = cli(*unlearn_args(inputs, "o"), cwd=tmp_path)
        assert second.returncode == 2
        assert second.stderr.strip().splitlines()[-1].startswith("error: another run is writing")
        assert first.poll() is None  # the first run goes on
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()
    run(inputs, tmp_path / "o")
    assert verify(tmp_path / "o")["ok"] and leftovers(tmp_path, "o") == []


# ------------------------------------------------------------------ finding 4: atomic publish


def test_a_save_failing_part_way_keeps_the_previous_output(inputs, previous, tmp_path, monkeypatch):
    from transformers import PreTrainedTokenizerFast

    out = copy_previous(previous, tmp_path)

    def full(self, *a, **k):
        raise OSError(28, "No space left on device", str(a[0]) if a else None)

    monkeypatch.setattr(PreTrainedTokenizerFast, "save_pretrained", full)
    with pytest.raises(OutputError, match=f"cannot write the output {out}: No space") as e:
        run(inputs, out, overwrite=True)
    assert isinstance(e.value, OSError) and isinstance(e.value, UnilogitError)
    assert tree(out) == previous[1] and verify(out)["ok"]
    assert leftovers(tmp_path, "o") == []


@pytest.mark.parametrize("fault", ["weights-saved", "publish", "published"])
def test_a_kill_at_any_point_of_the_save_leaves_a_complete_output(
    inputs, previous, tmp_path, fault
):
    """SIGKILL (a real signal, at a fault point of the save) while --overwrite replaces an
    output: the path holds the old output complete (before the swap) or the new one (after),
    never a mix; the next run cleans up. A save written straight into the output fails this."""
    out = copy_previous(previous, tmp_path)
    killed = cli(
        *unlearn_args(inputs, str(out), "--overwrite", "--method", "ga"),
        cwd=tmp_path,
        env={files.FAULT_ENV: fault},
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert verify(out)["ok"] and verify(out)["complete"]
    if fault == "published":
        assert tree(out) != previous[1]
    else:
        assert tree(out) == previous[1]
    run(inputs, out, overwrite=True)  # the next run cleans up what the killed one left
    assert leftovers(tmp_path, "o") == [] and verify(out)["ok"]


def test_without_an_atomic_exchange_a_failed_rename_restores_the_old_output(tmp_path, monkeypatch):
    old, new = tmp_path / "o", tmp_path / ".o.tmp-1"
    old.mkdir()
    new.mkdir()
    (old / "a").write_text("old")
    (new / "a").write_text("new")
    monkeypatch.setattr(files, "_exchange", lambda a, b: False)
    real = os.rename
    calls = []

    def second_fails(src, dst):
        calls.append(src)
        if len(calls) == 2:
            raise OSError(30, "Read-only file system", str(dst))
        real(src, dst)

    monkeypatch.setattr(files.os, "rename", second_fails)
    with pytest.raises(OSError, match="Read-only"):
        files.publish_dir(new, old)
    assert (old / "a").read_text() == "old"
    monkeypatch.setattr(files.os, "rename", real)
    files.publish_dir(new, old)
    assert (old / "a").read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["o"]


def test_recover_dir_brings_back_an_output_renamed_aside(tmp_path):
    """What a kill between the two renames of the fallback leaves is undone by the next run."""
    (tmp_path / ".o.old-123").mkdir()
    (tmp_path / ".o.old-123" / "a").write_text("old")
    (tmp_path / ".o.tmp-123").mkdir()
    files.recover_dir(tmp_path / "o")
    assert (tmp_path / "o" / "a").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]


# ------------------------------------------------------------------ Ctrl-C


def test_ctrl_c_without_checkpoints_leaves_nothing(inputs, tmp_path, monkeypatch):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(recipes, "unlearn", interrupted)
    with pytest.raises(Interrupted, match="no checkpoint was saved"):
        run(inputs, tmp_path / "o")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_ctrl_c_in_a_real_run_says_how_to_resume(inputs, tmp_path):
    """Before: a KeyboardInterrupt traceback. Now: exit 130 (Ctrl-C), one line naming the last
    checkpoint and --resume; no output, the lock released; --resume then finishes the run."""
    args = unlearn_args(inputs, "o", "--epochs", "100", "--checkpoint-every", "2")
    proc = popen(*args, cwd=tmp_path)
    state = tmp_path / ".o.checkpoints" / "checkpoint" / "trainer_state.json"
    deadline = time.time() + 120
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted") and "--resume" in last
    assert str(tmp_path / ".o.checkpoints") in last and "Traceback" not in err
    assert not (tmp_path / "o").exists() and not (tmp_path / ".o.lock").exists()
    done = cli(*args, "--resume", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert verify(tmp_path / "o")["ok"] and leftovers(tmp_path, "o") == []


# ------------------------------------------------------------------ disk full, read-only


def _in_private_tmpfs(tmp_path: Path, size: str, script: str) -> subprocess.CompletedProcess:
    """Run ``script`` (sh) in a private mount namespace with a ``size`` tmpfs at $T."""
    if os.geteuid() != 0 or not Path("/usr/bin/unshare").exists():
        pytest.skip("needs root and unshare to mount a private tmpfs")
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {tmp_path}"],
        capture_output=True,
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a private tmpfs here: {probe.stderr.decode().strip()}")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    body = f"mount -t tmpfs -o size={size} tmpfs {mnt} && T={mnt} && {script}"
    return subprocess.run(["unshare", "-m", "sh", "-c", body], capture_output=True, text=True)


def _cli_line(args: list[str]) -> str:
    import shlex
    import sys

    src = Path(__file__).resolve().parents[1] / "src"
    return f"PYTHONPATH={src} {shlex.quote(sys.executable)} -m unilogit.cli " + " ".join(
        shlex.quote(a) for a in args
    )


@pytest.mark.parametrize("case", ["disk full", "read-only"])
def test_disk_full_or_read_only_output_gives_one_error_line(inputs, previous, tmp_path, case):
    """Before: a traceback. Now: exit 2, one line naming the path; the previous output is
    intact and nothing partial is left (checked on a real full / read-only tmpfs)."""
    prev = copy_previous(previous, tmp_path)
    remount = "mount -o remount,ro $T && " if case == "read-only" else ""
    args = unlearn_args(inputs, "$T/o", "--overwrite")
    line = _cli_line(args).replace("'$T/o'", "$T/o")
    script = (
        f"cp -a {prev} $T/o && {remount}{line} 2> {tmp_path}/err; echo $? > {tmp_path}/rc; "
        f"ls -a $T > {tmp_path}/listing; cp -a $T/o {tmp_path}/after"
    )
    done = _in_private_tmpfs(tmp_path, "600k", script)
    rc = (tmp_path / "rc").read_text().strip() if (tmp_path / "rc").exists() else done.stderr
    err = (tmp_path / "err").read_text()
    assert rc == "2", err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and "/o" in last, last
    assert tree(tmp_path / "after") == previous[1]
    assert (tmp_path / "listing").read_text().split() == [".", "..", "o"]
