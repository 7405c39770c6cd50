"""Directory specifics: one readable file per session, atomic replacement, locks and stray files."""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from pathlib import Path

import pytest

from redis_sessions import AgentMessage, SessionState, StoreError
from redis_sessions.persistence import DirectoryAdapter
from tests.unit.test_models import full_state


def names(path: Path) -> set[str]:
    return {entry.name for entry in path.iterdir()}


def test_one_json_file_per_session_and_nothing_left_behind(tmp_path: Path) -> None:
    sid = uuid.uuid4()
    with DirectoryAdapter(tmp_path) as adapter:
        adapter.save_session(sid, full_state())
        adapter.append_messages(sid, [AgentMessage.user("more", id="m9")])
        assert names(tmp_path) == {f"{sid}.json", f".{sid}.lock", ".record"}, "no temporary file remains"
        document = json.loads((tmp_path / f"{sid}.json").read_text("utf-8"))
        assert document["schema_version"] == 1
        assert [m["id"] for m in document["messages"]] == ["m0", "m1", "m2", "m3", "m4", "m9"]
        assert adapter.delete_session(sid)
        assert names(tmp_path) == {".record"}, "delete removes the lock file too (the identity stays)"


def test_a_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sid = uuid.uuid4()
    adapter = DirectoryAdapter(tmp_path)
    adapter.save_session(sid, full_state())

    def crash(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(StoreError, match=f"directory append_messages for session `{sid}` failed") as info:
        adapter.append_messages(sid, [AgentMessage.user("lost", id="x")])
    assert isinstance(info.value.__cause__, OSError)
    monkeypatch.undo()
    assert adapter.load_session(sid) == full_state()
    assert not [n for n in names(tmp_path) if n.endswith(".tmp")], "the temporary file is removed"


def test_stray_files_are_not_sessions(tmp_path: Path) -> None:
    adapter = DirectoryAdapter(tmp_path)
    (tmp_path / "README.txt").write_text("notes")
    (tmp_path / f".{uuid.uuid4()}.json").write_text("{}")
    (tmp_path / f".{uuid.uuid4()}.1234.tmp").write_text("{")
    (tmp_path / "archive").mkdir()
    sid = uuid.uuid4()
    adapter.save_session(sid, SessionState())
    assert list(adapter.list_sessions()) == [sid]


def test_a_lock_on_a_deleted_lock_file_is_not_trusted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A writer waiting for the lock while a deleter unlinks the lock file ends up holding a lock on
    # a file no one else can open: it must notice, and lock the file now at that path instead.
    sid = uuid.uuid4()
    adapter = DirectoryAdapter(tmp_path)
    real_flock = fcntl.flock
    calls: list[int] = []

    def flock_then_lose_the_file(fd: int, operation: int) -> None:
        real_flock(fd, operation)
        calls.append(operation)
        if len(calls) == 1:  # what a deleter finishing meanwhile leaves behind
            (tmp_path / f".{sid}.lock").unlink()

    monkeypatch.setattr(fcntl, "flock", flock_then_lose_the_file)
    with adapter._locked(sid) as lock:
        assert len(calls) == 2, "it locked again, on the new file"
        other = os.open(lock, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                real_flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(other)


def test_without_fsync_it_still_round_trips(tmp_path: Path) -> None:
    sid = uuid.uuid4()
    adapter = DirectoryAdapter(tmp_path, fsync=False)
    adapter.save_session(sid, full_state())
    assert adapter.load_session(sid) == full_state()
