"""Atomic writes: the final file holds the new content or the old one, never a part."""

from __future__ import annotations

import json

import pytest

from unilogit import files


def test_writes_create_parents_and_leave_no_temporary_files(tmp_path):
    target = tmp_path / "a" / "b" / "out.json"
    files.atomic_write_json(target, {"x": 1})
    files.atomic_write_jsonl(tmp_path / "a" / "log.jsonl", [{"s": 1}, {"s": 2}])
    assert json.loads(target.read_text()) == {"x": 1}
    assert (tmp_path / "a" / "log.jsonl").read_text() == '{"s": 1}\n{"s": 2}\n'
    assert sorted(p.name for p in (tmp_path / "a").rglob("*")) == ["b", "log.jsonl", "out.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path, monkeypatch):
    target = tmp_path / "out.txt"
    files.atomic_write_text(target, "old")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space"):
        files.atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_files_get_the_usual_mode_not_private(tmp_path):
    import os
    import stat

    path = files.atomic_write_text(tmp_path / "record.json", "{}")
    (tmp_path / "plain.json").write_text("{}")
    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert mode == stat.S_IMODE(os.stat(tmp_path / "plain.json").st_mode)


def test_exclusive_lock_is_exclusive_and_removed_on_release(tmp_path):
    lock = tmp_path / ".o.lock"
    with files.exclusive_lock(lock):
        with pytest.raises(files.LockedError), files.exclusive_lock(lock):
            pass
        assert lock.exists()
    assert not lock.exists()
    with files.exclusive_lock(lock):  # free again
        assert lock.exists()


def test_read_jsonl_names_file_and_line(tmp_path):
    from unilogit.errors import DataError
    from unilogit.files import read_jsonl

    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n', encoding="utf-8")
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}]
    path.write_text('{"a": 1}\n{"a": \n', encoding="utf-8")
    with pytest.raises(DataError, match=r"rows.jsonl:2: invalid JSON"):
        read_jsonl(path)
    path.write_text('{"a": 1}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"rows.jsonl:2: a row must be a JSON object, got list"):
        read_jsonl(path)
