"""Looking at what is stored: ``ls``, ``show``, ``tail``, and ``delete``.

``ls`` reads the sessions as rows of plain values (``row_pages``: the SCAN and info.lua pages
``store.infos()`` relays, without a ``SessionInfo``, datetime or UUID a session) and writes them as
plain aligned text, so it stays fast on 100,000 sessions (a Rich table of 100,000 rows takes half a
minute to lay out); on a terminal only the header is styled. ``ls --json`` prints ``store.infos()``.
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime
from itertools import starmap
from operator import itemgetter
from typing import Any

import click

from .. import AgentMessage, SessionInfo, SessionNotFound
from .._listing import row_pages
from .common import (
    SESSION_ID,
    Settings,
    collecting_no_garbage,
    connect,
    emit_json,
    make_console,
    stamper,
    stdout_is_terminal,
    ttl_text,
)

__all__ = ["delete", "ls", "show", "tail"]

_NEVER = datetime.min.replace(tzinfo=UTC)
_CHUNK = 1000  # rows written at a time
_MODEL_MIN = 16  # a terminal too narrow for this much of a model name wraps instead
_ALL = 2**53  # a token budget every session fits
_PAGE = 1000  # sessions a page of rows: ~8 ms of the server's time


def _recent(info: SessionInfo) -> datetime:
    return info.updated_at or info.created_at or _NEVER


@click.command("ls", short_help="List the sessions, most recently updated first.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array of the sessions' summaries.")
@click.option("--unreadable", is_flag=True, help="Only the sessions this version cannot read.")
@click.pass_obj
def ls(settings: Settings, as_json: bool, unreadable: bool) -> None:
    """List every session: id, model, messages held, last update and time to live (``-``: none).

    Most recently updated first. Found with SCAN, a page at a time, never KEYS. A session this
    version cannot read (a newer schema version, a corrupt meta hash) is listed with a PROBLEM.
    """
    with collecting_no_garbage():
        _ls(settings, as_json, unreadable)


def _ls(settings: Settings, as_json: bool, unreadable: bool) -> None:
    if as_json:
        with connect(settings) as store:
            infos = [i for i in store.infos() if i.problem or not unreadable]
        emit_json(sorted(infos, key=_recent, reverse=True))
        return
    stamp = stamper()
    rows: list[tuple[Any, ...]] = []  # made as pages come, while Redis reads on (see row_pages)
    troubled = False
    with connect(settings) as store:
        for page in row_pages(store.transport, store.transport.core, _PAGE):
            for recent, sid, model, messages, updated, pttl, problem in page:
                if problem:
                    troubled = True
                elif unreadable:
                    continue
                ttl = ttl_text(pttl / 1000) if pttl >= 0 else "-"
                rows.append((recent, sid, model or "-", str(messages), stamp(updated), ttl, problem or "-"))
    if not rows:
        kind = "unreadable sessions" if unreadable else "sessions"
        make_console(stderr=True).print(f"no {kind} under prefix {settings.prefix!r}")
        return
    rows.sort(key=itemgetter(0), reverse=True)
    # the PROBLEM column only when there is something to say
    heads = ("ID", "MODEL", "MESSAGES", "UPDATED", "TTL", "PROBLEM")[: 6 if troubled else 5]
    widths = [max(len(head), max(map(len, map(itemgetter(n + 1), rows)))) for n, head in enumerate(heads)]
    terminal = stdout_is_terminal()
    if terminal:  # keep a row on one screen line: shorten a long model name only
        room = make_console().width - (sum(widths) - widths[1]) - 2 * (len(heads) - 1)
        width = widths[1] = min(widths[1], max(room, _MODEL_MIN))
        rows = [r if len(r[2]) <= width else (*r[:2], r[2][: width - 1] + "…", *r[3:]) for r in rows]
    # One format for every row, reading its cells by position (the last column unpadded): C's
    # starmap calls it on each row as it is, with no list of cells made a row.
    aligns = ["<", "<", ">", "<", "<", "<"][: len(heads)]
    formats = [f"{{{n + 1}:{a}{w}}}" for n, (a, w) in enumerate(zip(aligns[:-1], widths, strict=False))]
    row = "  ".join([*formats, f"{{{len(heads)}}}"]).format
    if terminal:
        from rich.text import Text  # Rich only for a person: a pipe gets the rows as they are

        make_console().print(
            Text(row(None, *heads), style="bold"), no_wrap=True, overflow="ignore", crop=False
        )
    else:
        click.echo(row(None, *heads))
    for start in range(0, len(rows), _CHUNK):
        click.echo("\n".join(starmap(row, rows[start : start + _CHUNK])))
    if terminal:
        make_console(stderr=True).print(f"{len(rows):,} session(s)", style="dim")


@click.command(short_help="Print one conversation for a person.")
@click.argument("session_id", type=SESSION_ID)
@click.option("--json", "as_json", is_flag=True, help="Print the session as one JSON object.")
@click.option("--tokens", is_flag=True, help="With each message, its stored token count.")
@click.pass_obj
def show(settings: Settings, session_id: uuid.UUID, as_json: bool, tokens: bool) -> None:
    """Print the session SESSION_ID: its settings, then every message with its role; tool calls with
    their input as indented JSON, images as a placeholder with their size. With --tokens, the
    session's token total and each message's count (``summarised``: covered by its summary)."""
    from .render import print_header, print_message

    with connect(settings) as store:
        session = store.load(session_id)
        info = store.info(session_id) if session is not None else None
        window = store.context(session_id, _ALL) if tokens and session is not None else None
    if session is None:
        raise SessionNotFound(session_id)
    if as_json:
        emit_json(session)
        return
    console = make_console()
    print_header(console, session, info.ttl if info is not None else None)
    counts: dict[int, str] = {}
    if window is not None and info is not None:
        console.print(f"tokens: {info.tokens:,} (summary through seq {info.summary_seq})", style="dim")
        counts = {window.first_seq + n: str(c) for n, c in enumerate(window.counts)}
    first = session.seq - len(session.messages) + 1
    for n, message in enumerate(session.messages):
        print_message(console, first + n, message, counts.get(first + n, "summarised" if tokens else ""))


@click.command(short_help="Print the last messages of a conversation; -f: and new ones as they come.")
@click.argument("session_id", type=SESSION_ID)
@click.option("-f", "--follow", is_flag=True, help="Keep printing messages as they are appended.")
@click.option("-n", "--messages", "last", default=10, show_default=True, type=click.IntRange(0))
@click.option(
    "--timeout",
    type=click.FloatRange(0, min_open=True),
    help="With -f: stop after this many seconds without a new message.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object a message: {seq, message}.")
@click.pass_obj
def tail(
    settings: Settings, session_id: uuid.UUID, follow: bool, last: int, timeout: float | None, as_json: bool
) -> None:
    """Print the last messages of SESSION_ID; with -f, then every message appended to it, live
    (through ``watch``), until Ctrl-C, the session is deleted, or --timeout passes quietly."""
    from .render import print_message

    console = make_console()

    def emit(seq: int, message: AgentMessage) -> None:
        if as_json:
            emit_json({"seq": seq, "message": message})
        else:
            print_message(console, seq, message)

    with connect(settings) as store:
        session = store.load(session_id)
        if session is None:
            raise SessionNotFound(session_id)
        shown = session.messages[len(session.messages) - last :] if last else []
        for n, message in enumerate(shown):
            emit(session.seq - len(shown) + 1 + n, message)
        if not follow:
            return
        with contextlib.closing(store.watch(session_id, session.seq, timeout=timeout)) as appended:
            try:
                for item in appended:
                    emit(item.seq, item.message)
            except KeyboardInterrupt:
                raise SystemExit(130) from None
        if not store.exists(session_id):
            make_console(stderr=True).print(f"session {session_id} was deleted")


@click.command(short_help="Delete sessions (asks first, unless --yes).")
@click.argument("session_ids", nargs=-1, required=True, type=SESSION_ID)
@click.option("-y", "--yes", is_flag=True, help="Do not ask.")
@click.pass_obj
def delete(settings: Settings, session_ids: tuple[uuid.UUID, ...], yes: bool) -> None:
    """Delete each SESSION_ID and its messages, after showing them and asking. Exits 1 if any of
    them was not found (the others are deleted)."""
    err = make_console(stderr=True)
    with connect(settings) as store:
        found: list[SessionInfo] = []
        missing: list[uuid.UUID] = []
        for sid in dict.fromkeys(session_ids):
            info = store.info(sid)
            if info is None:
                missing.append(sid)
            else:
                found.append(info)
        for sid in missing:
            err.print(f"session {sid} not found")
        if found and not yes:
            for info in found:
                err.print(f"  {info.id}  {info.model or '-'}  {info.messages} message(s)")
            total = sum(i.messages for i in found)
            question = f"Delete {len(found)} session(s) with {total} message(s)?"
            click.confirm(question, abort=True, err=True)
        for info in found:
            if store.delete(info.id):
                click.echo(f"deleted {info.id}")
            else:
                err.print(f"session {info.id} not found")
                missing.append(info.id)
    if missing:
        raise SystemExit(1)
