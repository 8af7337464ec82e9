"""Where a training run writes, checked before any work and published in one step.

For ``--output runs/x`` a run uses, beside it in ``runs/``:

* ``.x.lock``: an exclusive ``flock`` held for the run's lifetime (a second run with the
  same output fails at once);
* ``.x.checkpoints/``: its work area: checkpoints, ``fingerprint.json`` and, unless
  ``--log-file`` says otherwise, ``train_log.jsonl``; deleted once the output is published;
* ``.x.tmp-PID/``: the output being written (model, config, train log, then the record),
  renamed to ``runs/x`` in one step when complete (:func:`unilogit.files.publish_dir`).

Nothing else outside the output is created, truncated, moved or deleted. A run killed at any
instant leaves ``runs/x`` absent, or the previous output, or the new one complete; the next
run with that output cleans up what the killed one left (under the lock).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from .errors import ConfigError, Interrupted, OutputError
from .files import LockedError, atomic_write_json, exclusive_lock, publish_dir, recover_dir
from .fingerprint import FINGERPRINT_FILE, check_resume
from .models import check_output_dir

TRAIN_LOG = "train_log.jsonl"


def _is_train_log(path: Path) -> bool:
    """True if every line of ``path`` is a JSON object with a ``step`` (a log unilogit wrote)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        return bool(lines) and all("step" in json.loads(line) for line in lines if line.strip())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError):
        return False


def work_area(output: str | os.PathLike[str]) -> Path:
    """The work area of the run writing ``output`` (absolute): ``.NAME.checkpoints`` beside it,
    holding its checkpoints (``checkpoint/``), fingerprint and default train log."""
    out = Path(output).expanduser().resolve()
    return out.with_name(f".{out.name}.checkpoints")


class RunOutput:
    """The output of one run: ``with RunOutput(...) as run:`` checks paths and takes the lock;
    train with ``run.log_file`` / ``run.checkpoint_dir``; ``run.publish(write)`` saves.

    ``inputs``: the run's input paths (model, data files), which the output must not be,
    contain or lie in. ``main``: False on the non-main processes of ``accelerate launch``,
    which check but neither lock nor write.
    """

    def __init__(
        self,
        output: str | os.PathLike[str],
        *,
        overwrite: bool,
        resume: bool,
        inputs: list[Path],
        log_file: str | os.PathLike[str] | None = None,
        main: bool = True,
    ) -> None:
        self.out = check_output_dir(output, overwrite=overwrite, inputs=inputs)
        self.inputs = inputs
        self.overwrite, self.resume, self.main = overwrite, resume, main
        self.checkpoint_dir = work_area(self.out)
        self.user_log = log_file is not None
        self.log_file = self._check_log_file(Path(log_file), inputs) if log_file else None
        self.log_file = self.log_file or self.checkpoint_dir / TRAIN_LOG
        self._stack = ExitStack()

    def _check_log_file(self, path: Path, inputs: list[Path]) -> Path:
        path = path.expanduser().resolve()
        for p in [self.out, *inputs]:
            if path == p or p in path.parents:
                raise ConfigError(
                    f"--log-file {path} would overwrite or go inside {p}; choose another path"
                )
        if path.exists() and not (self.resume and path.is_file() and _is_train_log(path)):
            raise ConfigError(
                f"--log-file {path} already exists; it is never overwritten (choose a new path; "
                f"by default the log goes into the output as {TRAIN_LOG})"
            )
        if not path.parent.is_dir():
            raise ConfigError(f"--log-file {path}: folder {path.parent} does not exist")
        return path

    def __enter__(self) -> RunOutput:
        if not self.main:
            return self
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)  # like `mkdir -p` for --output
            self._stack.enter_context(exclusive_lock(self.out.with_name(f".{self.out.name}.lock")))
        except LockedError:
            raise ConfigError(
                f"another run is writing {self.out} (it holds .{self.out.name}.lock); wait for "
                "it to finish or choose another --output"
            ) from None
        except OSError as e:
            raise OutputError(
                f"cannot lock the output {self.out}: {e.strerror} ({e.filename})"
            ) from None
        try:
            self._prepare_work_area()
        except BaseException:
            self._stack.close()
            raise
        return self

    def _prepare_work_area(self) -> None:
        recover_dir(self.out)
        check_output_dir(self.out, overwrite=self.overwrite, inputs=self.inputs)  # now locked
        checkpoint = self.checkpoint_dir / "checkpoint"
        if self.resume:
            if not (checkpoint / "trainer_state.json").is_file():
                raise ConfigError(f"resume: no checkpoint found in {self.checkpoint_dir}")
            if not (self.checkpoint_dir / FINGERPRINT_FILE).is_file():
                raise ConfigError(
                    f"resume: {self.checkpoint_dir} has no {FINGERPRINT_FILE}, so it cannot be "
                    "shown to belong to this run; start afresh with --overwrite"
                )
        elif checkpoint.exists() and not self.overwrite:
            raise ConfigError(
                f"an interrupted run left a checkpoint in {self.checkpoint_dir}: pass --resume "
                "to continue it, or --overwrite to discard it"
            )
        elif self.checkpoint_dir.exists():
            shutil.rmtree(self.checkpoint_dir)
        self.checkpoint_dir.mkdir(exist_ok=True)

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        """Release the lock; after a failure keep the work area only if it holds a checkpoint
        to resume from."""
        try:
            resumable = (self.checkpoint_dir / "checkpoint" / "trainer_state.json").is_file()
            if exc_type is not None and self.main and not resumable:
                shutil.rmtree(self.checkpoint_dir, ignore_errors=True)
        finally:
            self._stack.close()

    def check_fingerprint(self, fingerprint: dict[str, Any]) -> None:
        """On resume: refuse a checkpoint of another run. Otherwise (main process): record
        ``fingerprint`` beside the checkpoints to come."""
        path = self.checkpoint_dir / FINGERPRINT_FILE
        if self.resume:
            try:
                saved = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
                raise ConfigError(f"resume: cannot read {path}: {e}") from None
            check_resume(path, saved, fingerprint)
        elif self.main:
            atomic_write_json(path, fingerprint)

    def interrupted(self) -> Interrupted:
        """The error that ends a run stopped by Ctrl-C (where its last checkpoint is)."""
        state = self.checkpoint_dir / "checkpoint" / "trainer_state.json"
        if state.is_file():
            step = json.loads(state.read_text())["step"]
            how = (
                f"its last checkpoint (step {step}) is in {self.checkpoint_dir}; rerun the same "
                "command with --resume to continue"
            )
        else:
            how = "no checkpoint was saved (pass --checkpoint-every N to make a run resumable)"
        return Interrupted(f"interrupted; nothing was written to {self.out}: {how}")

    def publish(self, write: Callable[[Path], None]) -> Path:
        """Copy the train log into a temporary directory, call ``write(tmp)`` (model, config,
        record: last, as it hashes the rest), publish it as the output, delete the work area.
        On any failure nothing partial is left; an OSError becomes an OutputError."""
        tmp = self.out.with_name(f".{self.out.name}.tmp-{os.getpid()}")
        try:
            tmp.mkdir()
            if self.log_file.is_file():
                shutil.copyfile(self.log_file, tmp / TRAIN_LOG)
            write(tmp)
            if self.out.exists():  # appeared during the run? replace only what --overwrite may
                check_output_dir(self.out, overwrite=self.overwrite, inputs=self.inputs)
            publish_dir(tmp, self.out)
        except OSError as e:
            where = e.filename or tmp
            raise OutputError(
                f"cannot write the output {self.out}: {e.strerror or e} ({where})"
            ) from e
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(self.checkpoint_dir, ignore_errors=True)
        return self.out
