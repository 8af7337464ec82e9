"""Side-by-side model builds: the plan, errors from workers, and stopping them."""

from __future__ import annotations

import functools
import time
from pathlib import Path

import pytest
import torch

from unilogit.benchmarks import build_jobs
from unilogit.benchmarks.build_jobs import parallel_plan, run_jobs
from unilogit.errors import ConfigError, TrainingError


def _record(path: Path, text: str, progress: bool) -> None:
    with path.open("a") as f:
        f.write(f"{text} {torch.get_num_threads()} {progress}\n")


def _fail(progress: bool) -> None:
    raise TrainingError("the worker's model failed its check")


def _late_write(path: Path, progress: bool) -> None:
    time.sleep(3)
    path.write_text("finished")


def test_parallel_plan(monkeypatch):
    monkeypatch.setattr(build_jobs.os, "cpu_count", lambda: 8)
    assert parallel_plan(None, True, None) == (True, 4)
    assert parallel_plan(None, False, 2) == (False, 2)
    assert parallel_plan(False, True, 1) == (False, 1)
    monkeypatch.setattr(build_jobs.os, "cpu_count", lambda: 1)
    assert parallel_plan(None, True, None) == (False, None)
    with pytest.raises(ConfigError, match="parallel must be"):
        parallel_plan("yes", True, None)


def test_sequential_jobs_run_in_order_with_their_threads(tmp_path):
    log = tmp_path / "log"
    jobs = [functools.partial(_record, log, name) for name in ("a", "b", "c")]
    before = torch.get_num_threads()
    run_jobs(jobs, parallel=False, threads=1, progress=True)
    assert log.read_text().splitlines() == ["a 1 True", "b 1 True", "c 1 True"]
    assert torch.get_num_threads() == before


def test_parallel_jobs_all_run_and_a_worker_error_comes_back(tmp_path):
    log = tmp_path / "log"
    jobs = [functools.partial(_record, log, "here"), functools.partial(_record, log, "there")]
    run_jobs(jobs, parallel=True, threads=1, progress=True)
    assert sorted(log.read_text().splitlines()) == ["here 1 True", "there 1 False"]
    with pytest.raises(TrainingError, match="failed its check") as caught:
        run_jobs([functools.partial(_record, log, "x"), _fail], True, 1, False)
    assert "in the worker process" in "".join(caught.value.__notes__)


def test_a_failing_first_job_stops_the_workers(tmp_path):
    marker = tmp_path / "marker"
    with pytest.raises(TrainingError):
        run_jobs([_fail, functools.partial(_late_write, marker)], True, 1, False)
    assert not marker.exists()  # stopped, not waited for
