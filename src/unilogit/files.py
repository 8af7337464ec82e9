"""Writing files so that nothing is ever half-written: every writer in unilogit goes through here.

A file is written to a temporary sibling in the same folder (same file system), flushed and
``fsync``-ed, then renamed over its final name with :func:`os.replace`, which is atomic on
POSIX and Windows: a reader, or a run killed at any instant, sees the old file or the new one,
never a mix. The temporary file is removed if writing fails.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import shutil
import signal
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "LockedError",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_jsonl",
    "atomic_write_text",
    "exclusive_lock",
    "fault_point",
    "publish_dir",
    "recover_dir",
]

#: Test seam: a process whose ``UNILOGIT_FAULT_AT`` names a :func:`fault_point` kills itself
#: there with SIGKILL, so tests can show what a crash at that instant leaves on disk.
FAULT_ENV = "UNILOGIT_FAULT_AT"
_UMASK = os.umask(0o022)  # read once (os.umask can only be read by setting it)
os.umask(_UMASK)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (creating its parent folders); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # the mode open() would give, not mkstemp's 0600
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


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The JSON objects of a JSON Lines file, one per non-blank line; a :class:`DataError`
    naming the file and line for invalid JSON or a line that is not an object."""
    from unilogit.errors import DataError

    rows = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"invalid JSON ({e.msg})", file=str(path), line=n) from None
            if not isinstance(value, dict):
                kind = type(value).__name__
                raise DataError(f"a row must be a JSON object, got {kind}", file=str(path), line=n)
            rows.append(value)
    return rows


def atomic_write_jsonl(path: str | os.PathLike[str], records: Iterable[Any]) -> Path:
    """Write one JSON object per line to ``path`` atomically."""
    return atomic_write_text(path, "".join(json.dumps(r, default=str) + "\n" for r in records))


def fault_point(name: str) -> None:
    """Die at once (SIGKILL, no clean-up) if ``$UNILOGIT_FAULT_AT == name``; else nothing."""
    if os.environ.get(FAULT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


class LockedError(OSError):
    """Another process holds the lock."""


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold an exclusive ``flock`` on the file ``path`` (created) for the ``with`` block.

    Fails at once with :class:`LockedError` if another process holds it. The lock file is
    removed on release; a process that locked a file removed meanwhile retries on the new one.
    """
    import fcntl

    path = Path(path)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LockedError(errno.EWOULDBLOCK, "locked by another process", str(path)) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder before us removed the file: lock the current one
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.close(fd)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step (Linux ``renameat2``); False if unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    rc = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def publish_dir(tmp: str | os.PathLike[str], final: str | os.PathLike[str]) -> Path:
    """Move the complete directory ``tmp`` to ``final``, replacing a previous ``final``.

    At every instant ``final`` is absent (only if it was before), the old directory or the new
    one, never a mix: a new path is one ``rename``; a replacement is one atomic exchange
    (Linux), after which the old directory, now at ``tmp``, is deleted. Where the exchange is
    unsupported the old directory is renamed aside first and restored if the second rename
    fails. The caller must hold the output's lock (no other writer of ``final``).
    """
    tmp, final = Path(tmp), Path(final)
    fault_point("publish")
    if not final.exists():
        os.rename(tmp, final)
        return final
    if _exchange(tmp, final):
        fault_point("published")
        shutil.rmtree(tmp)
        return final
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    os.rename(final, old)
    try:
        os.rename(tmp, final)
    except BaseException:
        os.rename(old, final)
        raise
    shutil.rmtree(old)
    return final


def recover_dir(final: str | os.PathLike[str]) -> None:
    """Undo what a run killed while publishing ``final`` left (call under the output's lock):
    a previous output renamed aside (``.NAME.old-*``) comes back if ``final`` is missing,
    otherwise it and any ``.NAME.tmp-*`` directory are deleted."""
    final = Path(final)
    for old in sorted(final.parent.glob(f".{final.name}.old-*")):
        if not final.exists():
            os.rename(old, final)
        else:
            shutil.rmtree(old)
    for tmp in final.parent.glob(f".{final.name}.tmp-*"):
        shutil.rmtree(tmp)
