"""Sans-IO rows for ``ls``: what a listing's line shows of a page of sessions, as plain values.

``ls`` of 100,000 sessions spent most of its client's time on what ``infos()`` builds and a row
never shows: a ``SessionInfo`` a session, two datetimes (a timedelta each), a UUID and its text.
A ``Row`` is a tuple of what the reply holds, checked as ``SessionInfo`` would be (a corrupt or
newer-schema session carries its problem, and the same words), with the id taken from the meta
key SCAN found. ``info.lua`` in its ``row`` mode reads only the fields a row needs, so the server
does less too. ``store.infos()`` stays what the public API yields.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final, TypeAlias

from ._calls import Pipeline
from ._core import StoreCore
from ._scripts import SHAS
from ._times import EPOCH, stored_time
from .keys import listed_keys
from .models import SCHEMA_VERSION

__all__ = ["NEVER", "Row", "row_page"]

Row: TypeAlias = tuple[int, str, str, int, int | None, int, str | None]
"""One session: when it was last updated or else created (the sort key, ``NEVER`` if neither,
microseconds since the epoch), id, model, messages held, when it was last updated (``None``:
never), PTTL in ms (-1: none, -2: gone since), problem (``None``: this version reads it)."""

_FIRST: Final = (datetime.min.replace(tzinfo=UTC) - EPOCH) // EPOCH.resolution
_LAST: Final = (datetime.max.replace(tzinfo=UTC) - EPOCH) // EPOCH.resolution
NEVER: Final = _FIRST - 1
"""The sort key of a session with neither time: before any time a meta hash can hold."""
_CURRENT: Final = str(SCHEMA_VERSION).encode()
_PER_CALL: Final = 100
"""Sessions an ``info.lua`` call reads (as ``infos()`` pages do); one on a cluster."""
_WIDTH: Final = 7  # info.lua 'row': model, seq, schema_version, created_at, updated_at, length, pttl


def row_page(core: StoreCore, metas: Sequence[bytes]) -> Pipeline[list[Row]]:
    """The rows of the sessions of ``metas`` (their meta keys as SCAN found them, parsed by
    ``keys.parse_meta_keys``) still there, in one pipelined round trip of ``info.lua`` calls."""
    sha, step = SHAS["info"], 2 * (1 if core.cluster else _PER_CALL)
    keys = listed_keys(list(metas), False)
    reads = tuple(
        ("EVALSHA", sha, len(chunk), *chunk, "row")
        for chunk in (keys[i : i + step] for i in range(0, len(keys), step))
    )
    start = len(core.prefix) + 2  # prefix:{<id>}:meta
    ids = b" ".join([meta[start:-6] for meta in metas]).decode().lower().split(" ") if metas else []

    def parse(replies: list[Any]) -> list[Row]:
        values = itertools.chain.from_iterable(itertools.islice(reply, 1, None) for reply in replies)
        rows: list[Row] = []
        append = rows.append
        for sid, row in zip(ids, zip(*[values] * _WIDTH, strict=True), strict=True):
            model, seq, version, created, updated, length, pttl = row
            if version is None:
                continue  # gone (deleted or expired since it was listed)
            try:
                if seq:
                    int(seq)
                # Times checked as SessionInfo's parse checks them (ValueError; OverflowError
                # where no datetime holds one: stored_time raises it), with no datetime built.
                at = None if updated is None else int(updated)
                born = NEVER if created is None else int(created)
                if created is not None and not _FIRST <= born <= _LAST:
                    stored_time(created)
                if at is not None and not _FIRST <= at <= _LAST:
                    stored_time(updated)
                text = model.decode() if model else ""
                problem = None
                if version != _CURRENT and (schema := int(version)) > SCHEMA_VERSION:
                    problem = f"schema version {schema}, newer than this library's {SCHEMA_VERSION}"
            except (ValueError, UnicodeDecodeError, OverflowError) as exc:
                append((NEVER, sid, "", length, None, pttl, f"corrupt meta hash: {exc}"))
                continue
            append((born if at is None else at, sid, text, length, at, pttl, problem))
        return rows

    return Pipeline("info", None, reads, parse)
