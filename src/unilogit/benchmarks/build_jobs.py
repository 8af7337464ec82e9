"""Train a benchmark's models side by side on a CPU: the first job in this process, every other
job in its own spawned process at the same time (``world`` and ``shop`` builds)."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from unilogit.errors import ConfigError

#: A job is called as ``job(progress=...)``; for a spawned process it must pickle (a
#: ``functools.partial`` of a module-level function with picklable arguments).
Job = Callable[..., None]


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to ``n`` for the block (None: left alone), restored."""
    import torch

    saved = torch.get_num_threads()
    if n is not None and n != saved:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != saved:
            torch.set_num_threads(saved)


def parallel_plan(
    parallel: bool | None, on_cpu: bool, num_threads: int | None
) -> tuple[bool, int | None]:
    """``(parallel, threads per process)``: None means parallel on a CPU with at least two
    cores; each process then gets ``num_threads`` threads (default half the cores). One
    process: ``num_threads`` (None: torch's setting is left alone). A ``num_threads`` that is
    not a positive integer is a :class:`ConfigError`."""
    if num_threads is not None and (
        isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1
    ):
        raise ConfigError(f"num_threads must be a positive integer or None, got {num_threads!r}")
    cores = os.cpu_count() or 1
    if parallel is None:
        parallel = on_cpu and cores >= 2
    if not isinstance(parallel, bool):
        raise ConfigError(f"parallel must be True, False or None, got {parallel!r}")
    return parallel, (num_threads or max(1, cores // 2)) if parallel else num_threads


def _child(job: Job, threads: int, errors: Any) -> None:
    """Run ``job`` in a worker process; its exception goes back to the parent through
    ``errors`` (with the worker's traceback as a note)."""
    import torch

    torch.set_num_threads(threads)
    try:
        job(progress=False)
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent
        # kept short: the parent reads the queue only after joining, and a pipe holds 64 KiB
        trace = traceback.format_exc()[-8000:]
        exc.add_note(f"in the worker process:\n{trace}")
        try:
            errors.put(exc)
        except Exception:  # noqa: BLE001 - an exception that does not pickle
            errors.put(RuntimeError(trace))
        raise SystemExit(1) from None


def run_jobs(jobs: Sequence[Job], parallel: bool, threads: int | None, progress: bool) -> None:
    """Run every job with ``threads`` torch threads: one after the other, or with ``parallel``
    the first here (with the progress bar) and each other one in its own spawned process at the
    same time. A worker's exception is raised here after the first job; a worker that died
    without one (e.g. it could not start: a script without an ``if __name__ == '__main__':``
    guard) is warned about and its job run here. If the first job fails, the workers are
    stopped."""
    if not (parallel and len(jobs) > 1):
        for job in jobs:
            with torch_threads(threads):
                job(progress=progress)
        return
    context = multiprocessing.get_context("spawn")
    errors = context.SimpleQueue()
    workers = [context.Process(target=_child, args=(job, threads or 1, errors)) for job in jobs[1:]]
    for worker in workers:
        worker.start()
    try:
        with torch_threads(threads):
            jobs[0](progress=progress)
    except BaseException:
        for worker in workers:
            worker.terminate()
        raise
    finally:
        for worker in workers:
            worker.join()
    if not errors.empty():
        raise errors.get()
    for job, worker in zip(jobs[1:], workers, strict=True):
        if worker.exitcode != 0:
            warnings.warn(
                f"a training process died (exit code {worker.exitcode}); running its job here "
                "instead (scripts that build a benchmark need an `if __name__ == '__main__':` "
                "guard for parallel builds)",
                stacklevel=3,
            )
            with torch_threads(threads):
                job(progress=progress)
