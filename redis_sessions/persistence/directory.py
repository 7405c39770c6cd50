"""``DirectoryAdapter``: one JSON file per session, the seed's document exactly, for small deployments.

``<dir>/<uuid>.json`` holds the whole ``SessionState`` JSON (messages included), so ``cat`` and
``jq`` read it (with ``message_tokens``, each message's token count as the writing store counted it,
when any has one). A write goes to a temporary file in the same directory, is fsynced, and replaces the
old file with ``os.replace``: a reader sees the old document or the new one, never half of either,
and needs no lock. Writers (``save_session``, ``append_messages``, ``delete_session``) of one session
take an exclusive ``fcntl.flock`` on ``<dir>/.<uuid>.lock`` around their read-modify-write, so
appends from several processes or threads are never lost. The lock is a file of its own because
the data file is replaced (a lock on it would stay with the old inode).

``<dir>/.record`` holds the directory's identity (made once, with the directory). Names starting
with ``.`` (locks, temporary files, the identity) are not sessions. POSIX only (``fcntl``); local
file systems only (``flock`` is not reliable over NFS).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from ..errors import BackingMismatch, RecordMismatch
from ..keys import session_id as check_id
from ..models import AgentMessage, SessionId, SessionState
from ._counts import delivered_counts, unique_counts
from ._delivery import Delivered, Delivery, header_state, last_seq, new_record_id, plan
from ._rows import (
    appending,
    decode_document,
    document,
    driver_errors,
    encode_header,
    header_after_append,
    message_body,
    refuse_newer,
    snapshot,
    stored_id,
)

__all__ = ["DirectoryAdapter"]


class DirectoryAdapter:
    """A ``PersistenceAdapter`` on a directory of JSON files (created if absent).

    ``fsync=False`` skips the fsyncs of each file and of the directory: faster, but a power cut may
    lose or empty recently written files. Keep the default for data you mean to keep.
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.path = Path(path)
        self.fsync = fsync
        with driver_errors("directory open", None, (OSError,)):
            self.path.mkdir(parents=True, exist_ok=True)
            self.record_id = self._identity()

    def __repr__(self) -> str:
        return f"DirectoryAdapter({str(self.path)!r})"

    def _identity(self) -> str:
        """The directory's record id from ``.record``, made first if absent: written whole to a
        temporary file and linked into place, so a racing opener reads a whole id or makes none."""
        marker = self.path / ".record"
        with contextlib.suppress(FileNotFoundError):
            return marker.read_text().strip()
        fd, temporary = tempfile.mkstemp(prefix=".record.", suffix=".tmp", dir=self.path)
        try:
            with os.fdopen(fd, "w") as file:
                file.write(new_record_id())
                file.flush()
                if self.fsync:
                    os.fsync(file.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(temporary, marker)
        finally:
            os.unlink(temporary)
        self._sync_directory()
        return marker.read_text().strip()

    def _file(self, sid: SessionId) -> Path:
        return self.path / f"{sid}.json"

    @contextlib.contextmanager
    def _locked(self, sid: SessionId) -> Iterator[Path]:
        """Hold the session's writer lock; yields the lock file's path (``delete`` removes it).

        After ``flock`` returns, the path must still name the locked file: a deleter may have
        unlinked it meanwhile, and a lock on an unlinked file excludes nobody, so try again.
        """
        lock = self.path / f".{sid}.lock"
        while True:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    same = os.stat(lock).st_ino == os.fstat(fd).st_ino
                except FileNotFoundError:
                    same = False
            except BaseException:
                os.close(fd)
                raise
            if same:
                break
            os.close(fd)
        try:
            yield lock
        finally:
            os.close(fd)  # releases the lock

    def _read(self, sid: SessionId) -> bytes | None:
        try:
            return self._file(sid).read_bytes()
        except FileNotFoundError:
            return None

    def _write(self, sid: SessionId, data: bytes) -> None:
        """Replace the session's file atomically (temporary file, fsync, rename, fsync directory)."""
        fd, temporary = tempfile.mkstemp(prefix=f".{sid}.", suffix=".tmp", dir=self.path)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                if self.fsync:
                    os.fsync(file.fileno())
            os.replace(temporary, self._file(sid))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        self._sync_directory()

    def _sync_directory(self) -> None:
        """Make a rename or unlink in the directory survive a power cut."""
        if not self.fsync:
            return
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def save_session(self, session_id: SessionId | str, state: SessionState) -> None:
        """Store ``state`` as the whole session, replacing its file."""
        self._save(check_id(session_id), state, None)

    def replace_session(self, session_id: SessionId | str, state: SessionState, *, expected_seq: int) -> bool:
        """``save_session`` if the file holds the session at ``expected_seq`` (0: none), checked
        under the session's writer lock; ``False``, nothing written, otherwise."""
        return self._save(check_id(session_id), state, expected_seq)

    def _save(self, sid: SessionId, state: SessionState, expected_seq: int | None) -> bool:
        header, rows, counts = snapshot(sid, state)
        data = document(header.json, [body for _, body in rows], counts)
        with driver_errors("directory save_session", sid, (OSError,)), self._locked(sid):
            stored = self._read(sid)
            refuse_newer(sid, stored)
            if expected_seq is not None and _held_seq(sid, stored) != expected_seq:
                return False
            self._write(sid, data)
        return True

    def load_session(self, session_id: SessionId | str) -> SessionState | None:
        """The stored session, or ``None`` (no lock: files are only ever replaced whole)."""
        sid = check_id(session_id)
        with driver_errors("directory load_session", sid, (OSError,)):
            data = self._read(sid)
        return None if data is None else decode_document(sid, data)

    def list_sessions(self) -> Iterator[SessionId]:
        """The id of every ``<uuid>.json`` file, in directory order."""
        where = f"directory {str(self.path)!r}"
        with driver_errors("directory list_sessions", None, (OSError,)), os.scandir(self.path) as entries:
            for entry in entries:
                if entry.name.endswith(".json") and not entry.name.startswith("."):
                    yield stored_id(entry.name.removesuffix(".json"), where)

    def delete_session(self, session_id: SessionId | str) -> bool:
        """Delete the session's file (and its lock file); ``True`` if it existed."""
        sid = check_id(session_id)
        with driver_errors("directory delete_session", sid, (OSError,)), self._locked(sid) as lock:
            try:
                self._file(sid).unlink()
                deleted = True
            except FileNotFoundError:
                deleted = False
            lock.unlink()  # while held: the next locker sees the path is gone and makes a new one
            self._sync_directory()
        return deleted

    def append_messages(
        self,
        session_id: SessionId | str,
        messages: Sequence[AgentMessage],
        *,
        state: SessionState | None = None,
    ) -> int:
        """Store the messages not stored yet after the stored ones; see ``PersistenceAdapter``."""
        sid, rows = appending(session_id, messages, state)  # a bad argument writes nothing
        with driver_errors("directory append_messages", sid, (OSError,)), self._locked(sid):
            current = self._read(sid)
            stored = SessionState() if current is None else decode_document(sid, current)
            known = {message.id for message in stored.messages}
            new = [body for message_id, body in rows if message_id not in known]
            if current is not None and not new and state is None:
                return 0  # a retried batch: nothing to write
            header = encode_header(sid, header_after_append(stored, len(stored.messages), state, len(new)))
            bodies = [message_body(message) for message in stored.messages] + new
            self._write(sid, document(header.json, bodies, unique_counts(stored) + [None] * len(new)))
        return len(new)

    def deliver(self, deliveries: Sequence[Delivery]) -> dict[SessionId, Delivered]:
        """Store write-behind batches, one file each; see ``PersistenceAdapter.deliver``."""
        with driver_errors("directory deliver", None, (OSError,)):
            found = self._identity()
        if found != self.record_id:  # the directory was replaced by another record underneath
            raise BackingMismatch(f"directory {str(self.path)!r}", found, self.record_id)
        results: dict[SessionId, Delivered] = {}
        for delivery in deliveries:
            sid = delivery.session_id
            encode_header(sid, delivery.state)  # refuse a bad state before anything is written
            with driver_errors("directory deliver", sid, (OSError,)), self._locked(sid):
                current = self._read(sid)
                stored = SessionState() if current is None else decode_document(sid, current)
                held = stored.seq if stored.seq is not None else len(stored.messages)
                try:
                    fresh = plan(delivery, held, {message.id for message in stored.messages})
                except RecordMismatch as exc:
                    results[sid] = exc
                    continue
                if fresh is None:
                    results[sid] = held
                    continue
                header = encode_header(sid, header_state(delivery, held))
                bodies = [message_body(message) for message in stored.messages] + [b for _, b in fresh]
                counts = delivered_counts(delivery.state.message_tokens, len(delivery.rows), len(fresh))
                self._write(sid, document(header.json, bodies, unique_counts(stored) + counts))
                results[sid] = max(held, last_seq(delivery))
        return results

    def seqs(self, session_ids: Sequence[SessionId]) -> dict[SessionId, int]:
        """The seq the record holds of each session (0 for one it does not hold)."""
        with driver_errors("directory seqs", None, (OSError,)):
            return {sid: _held_seq(sid, self._read(sid)) for sid in session_ids}

    def close(self) -> None:
        """Nothing to release (no file stays open between calls); for the protocol's sake."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _held_seq(sid: SessionId, data: bytes | None) -> int:
    """The seq a session's stored document holds (0 for none)."""
    if data is None:
        return 0
    state = decode_document(sid, data)
    return state.seq if state.seq is not None else len(state.messages)
