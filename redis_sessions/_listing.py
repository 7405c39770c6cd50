"""``info_pages``, ``row_pages``: every session, a page at a time, for ``SessionStore``.

GENERATED from ``_aio_listing.py`` by ``python tools/unasync.py``: do not edit; edit the source and
regenerate. See the source's docstring.
"""

from __future__ import annotations

from collections.abc import Iterator, Callable, Sequence
from typing import Any, Generic, TypeVar

import redis.exceptions
from hiredis import pack_command

from . import _admin as admin
from ._transport import Transport
from ._calls import Pipeline
from ._core import StoreCore
from ._ls_rows import Row, row_page
from .models import SessionId, SessionInfo
from .retry import TRANSIENT

__all__ = ["info_pages", "row_pages"]

T = TypeVar("T")
Page = Pipeline[list[T]]
Build = Callable[[Sequence[SessionId], list[bytes]], Page[T]]
"""A page's calls from the sessions SCAN found (their ids and meta keys)."""


class _Found(Generic[T]):
    """The sessions SCAN found, each once (SCAN may return a key twice), not yet read, and where
    the SCAN stands (``None``: done); ``build`` makes a page's calls of them."""

    def __init__(self, count: int, build: Build[T]) -> None:
        self.count = count
        self.build = build
        self.cursor: int | None = 0
        self.seen = set[bytes]()
        self.sids: list[SessionId] = []
        self.metas: list[bytes] = []
        self.unread: list[Page[T]] = []  # sent, their replies lost: read again

    def add(self, reply: tuple[int, list[SessionId], list[bytes]]) -> None:
        cursor, sids, metas = reply
        self.cursor = cursor or None
        seen = self.seen  # by meta key: bytes hash in C, a UUID's in Python
        if len(fresh := set(metas)) == len(metas) and seen.isdisjoint(fresh):  # as almost always
            seen |= fresh
            self.sids += sids
            self.metas += metas
            return
        for sid, meta in zip(sids, metas, strict=True):
            if meta not in seen:
                seen.add(meta)
                self.sids.append(sid)
                self.metas.append(meta)

    def pages(self) -> list[Page[T]]:
        """The calls of every found session, in pages of at most ``count``."""
        pages = []
        while (page := self.page()) is not None:
            pages.append(page)
        return pages

    def page(self) -> Page[T] | None:
        """The calls of up to ``count`` found sessions (``None``: none waits)."""
        if not self.sids:
            return None
        n = self.count
        call = self.build(self.sids[:n], self.metas[:n])
        del self.sids[:n], self.metas[:n]
        return call


def info_pages(
    transport: Transport, core: StoreCore, memory: bool, count: int
) -> Iterator[list[SessionInfo]]:
    """Every session's info under ``core.prefix``, in pages of at most ``count``."""
    return _pages(
        transport, core, _Found(count, lambda sids, metas: admin.info_page(core, sids, metas, memory))
    )


def row_pages(transport: Transport, core: StoreCore, count: int) -> Iterator[list[Row]]:
    """Every session under ``core.prefix`` as ``ls``'s rows (``_ls_rows``), in pages of at most
    ``count``: the same SCAN and relay as ``info_pages``, with less read and built a session."""
    return _pages(transport, core, _Found(count, lambda sids, metas: row_page(core, metas)))


def _pages(transport: Transport, core: StoreCore, found: _Found[T]) -> Iterator[list[T]]:
    """The pages ``found.build`` makes of every session under ``core.prefix``: relayed, or the
    general way (see the module's docstring)."""
    telemetry = transport.telemetry
    nodes = transport.scan_nodes()
    pool = transport.lean.pool if nodes == [None] else None
    if pool is not None and (telemetry is None or not telemetry.listening()):
        while True:
            for page in relayed(pool, core, found):
                yield page
            if not found.unread:
                break  # done, or stopped with nothing lost: the general way goes on below
            for call in found.unread:  # then the relay again (the script loaded, reconnected)
                yield transport.run(call)
            found.unread = []
    for node in nodes:
        for call in found.unread:
            yield transport.run(call)
        found.unread = []
        while True:
            if found.cursor is not None:
                found.add(transport.run(admin.scan(core, found.cursor), node))
            while found.sids and (len(found.sids) >= found.count or found.cursor is None):
                yield transport.run(found.page())  # type: ignore[arg-type]
            if found.cursor is None:
                break
        found.cursor = 0  # the next node's SCAN begins


def relayed(pool: Any, core: StoreCore, found: _Found[T]) -> Iterator[list[T]]:
    """The pages of one server on one connection of ``pool``, each exchange sent before the page
    of the one before is parsed; stops early (``found`` says where) at anything the general way
    must handle."""
    try:
        connection = pool.get_connection()
    except TRANSIENT:
        return  # the general way retries, or says the store is unavailable
    reading: list[Page[T]] = []  # the pages whose replies are on their way
    pages: list[Page[T]] = []
    replies: list[Any] = []
    sent = 0  # replies on their way
    try:
        while True:
            pages, scan = found.pages(), None
            commands = [command for page in pages for command in page.multi]
            if found.cursor is not None:
                scan = admin.scan(core, found.cursor)
                commands.append(scan.args)
            if commands:  # Redis reads them while the pages before are parsed
                connection.send_packed_command([b"".join([pack_command(c) for c in commands])])
                sent = len(commands)
            start = 0
            for page in reading:
                yield page.parse(replies[start : start + len(page.multi)])
                start += len(page.multi)
            reading, pages = pages, []
            if not sent:
                return
            replies, refused = [], False
            for _ in range(sent):
                try:
                    replies.append(connection.read_response())
                except redis.exceptions.ResponseError:
                    refused = True  # NOSCRIPT, NOPERM...: the general way loads the script or raises
                sent -= 1
            if refused:
                found.unread = reading
                return
            if scan is not None:
                found.add(scan.parse(replies.pop()))
    except TRANSIENT:
        found.unread = [*reading, *pages]
        sent = 1
    finally:
        if sent:  # a reply is still on its way (or the connection broke): never hand it on
            connection.disconnect()
        pool.release(connection)
