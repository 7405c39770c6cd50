"""``export`` and ``import``: sessions as JSON Lines, one session a line.

A line is the seed's ``SessionState`` (msgspec's JSON of it) with the session's ``"id"`` first.
``import`` is idempotent through ``store.import_state``: a session whose id exists is left as it is
(unless ``--replace``), so importing a file twice changes nothing. A line that cannot be imported
(bad JSON, no id, an unknown schema version, invalid content) is reported by its number and skipped.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterable
from typing import IO

import click
import msgspec
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from .. import SCHEMA_VERSION, PersistenceError, SessionError, SessionState, StoreError
from .common import SESSION_ID, Settings, connect, is_terminal, make_console, open_output, stdout_is_terminal

__all__ = ["export", "import_"]

_ENCODE = msgspec.json.Encoder()
_STATE = msgspec.json.Decoder(SessionState)


class _Head(msgspec.Struct):
    """What a line must hold before the rest is worth decoding."""

    id: uuid.UUID
    schema_version: int = SCHEMA_VERSION


_HEAD = msgspec.json.Decoder(_Head)


def line_of(sid: uuid.UUID, state: SessionState) -> bytes:
    """One session as one line of JSON: ``{"id": ..., <SessionState's fields>}``."""
    return b'{"id":"%s",%s\n' % (str(sid).encode(), _ENCODE.encode(state)[1:])


def _progress(console: Console, show: bool, *columns: ProgressColumn) -> Progress:
    """A progress display on ``console`` (standard error), or one that shows nothing."""
    return Progress(*columns, console=console, disable=not show, redirect_stdout=False, redirect_stderr=False)


def _counting(total: int | None) -> tuple[ProgressColumn, ...]:
    if total is None:  # all sessions: counting them first would cost a SCAN of its own
        return SpinnerColumn(), TextColumn("exported {task.completed:,} sessions"), TimeElapsedColumn()
    return TextColumn("export"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()


def _reading(total: int | None) -> tuple[ProgressColumn, ...]:
    if total is None:  # a pipe: no size to measure against
        return SpinnerColumn(), DownloadColumn(binary_units=True), TimeElapsedColumn()
    return TextColumn("import"), BarColumn(), DownloadColumn(binary_units=True), TimeRemainingColumn()


@click.command(short_help="Write sessions as JSON Lines (all of them when no id is given).")
@click.argument("session_ids", nargs=-1, type=SESSION_ID)
@click.option(
    "-o", "--output", default="-", type=click.Path(dir_okay=False, allow_dash=True), help="File (default: -)."
)
@click.pass_obj
def export(settings: Settings, session_ids: tuple[uuid.UUID, ...], output: str) -> None:
    """Write SESSION_IDS (every session when none is given) to --output, one JSON object a line:
    the session's id and its stored state. A file is replaced only once the export is complete.
    Exits 1 if a session given by id was not found, or one could not be read (an unknown schema
    version, corrupt data): each is named, and the others are still written."""
    err = make_console(stderr=True)
    show = err.is_terminal and (output != "-" or not stdout_is_terminal())
    failed: list[str] = []
    count = 0
    with connect(settings) as store, open_output(output) as out:
        ids: Iterable[uuid.UUID] = dict.fromkeys(session_ids) if session_ids else store.list()
        with _progress(err, show, *_counting(len(session_ids) or None)) as progress:
            task = progress.add_task("export", total=len(session_ids) or None)
            for sid in ids:
                try:
                    session = store.load(sid)
                except PersistenceError as exc:  # one unreadable session does not stop a backup
                    failed.append(str(exc))
                    continue
                if session is not None:
                    out.write(line_of(sid, session.to_state()))
                    count += 1
                elif session_ids:  # listed ones that vanish meanwhile were deleted: not an error
                    failed.append(f"session {sid} not found")
                progress.advance(task)
    for reason in failed:
        err.print(reason)
    if output != "-":
        err.print(f"exported {count:,} session(s) to {output}")
    if failed:
        raise SystemExit(1)


class BadLine(Exception):
    """Why one line of an import file was skipped."""


def parse_line(raw: bytes) -> tuple[uuid.UUID, SessionState]:
    """A line's session id and state; ``BadLine`` says, for a person, what is wrong with it."""
    try:
        head = _HEAD.decode(raw)
    except msgspec.DecodeError as exc:
        raise BadLine(f"not a session ({exc})") from None
    try:
        return head.id, _STATE.decode(raw)
    except msgspec.DecodeError as exc:
        if head.schema_version != SCHEMA_VERSION:
            raise BadLine(
                f"session {head.id}: schema version {head.schema_version} is not one this version"
                f" reads ({SCHEMA_VERSION})"
            ) from None
        raise BadLine(f"session {head.id}: {exc}") from None


@click.command("import", short_help="Read sessions from a JSON Lines file (idempotent).")
@click.argument("file", type=click.File("rb"))
@click.option("--replace", is_flag=True, help="Overwrite sessions that exist (default: leave them).")
@click.pass_obj
def import_(settings: Settings, file: IO[bytes], replace: bool) -> None:
    """Put each session of FILE (``-``: standard input), as ``export`` writes them, into Redis.

    A session that exists is left as it is unless --replace, so importing the same file twice
    changes nothing. Bad lines and unknown schema versions are reported by line number and
    skipped; exits 1 if any was."""
    err = make_console(stderr=True)
    imported = present = skipped = 0
    total = _size(file)
    with connect(settings) as store, _progress(err, err.is_terminal, *_reading(total)) as progress:
        task = progress.add_task("import", total=total)
        for number, raw in enumerate(file, 1):
            progress.advance(task, len(raw))
            if not raw.strip():
                continue
            try:
                sid, state = parse_line(raw)
                if store.import_state(sid, state, replace=replace):
                    imported += 1
                else:
                    present += 1
            except StoreError:
                raise  # Redis failed: the rest would fail too
            except (BadLine, SessionError, ValueError, TypeError) as exc:
                skipped += 1
                progress.console.print(f"line {number}: {exc}")
    click.echo(f"imported {imported:,}, already present {present:,}, skipped {skipped:,}")
    if skipped:
        raise SystemExit(1)


def _size(file: IO[bytes]) -> int | None:
    """The file's size, for a progress bar; ``None`` for a pipe or a terminal."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        if not is_terminal(file):
            stat = os.fstat(file.fileno())
            return stat.st_size if stat.st_size > 0 else None
    return None
