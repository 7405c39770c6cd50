"""``_ls_rows``: ``ls``'s rows from ``info.lua``'s 'row' replies, checked as ``SessionInfo`` would be,
without Redis."""

from __future__ import annotations

import uuid
from typing import Any

from redis_sessions._core import DEFAULT_MAX_MESSAGE_BYTES, StoreCore
from redis_sessions._ls_rows import NEVER, row_page
from redis_sessions._scripts import SHAS
from redis_sessions.keys import session_keys


def core(cluster: bool = False) -> StoreCore:
    return StoreCore(
        prefix="rs",
        ttl=None,
        max_messages=None,
        codec="msgpack",
        max_message_bytes=DEFAULT_MAX_MESSAGE_BYTES,
        cluster=cluster,
    )


def metas(n: int) -> list[bytes]:
    return [session_keys("rs", uuid.UUID(int=i + 1)).meta.encode() for i in range(n)]


def fields(**values: Any) -> list[Any]:
    """One session's reply: model, seq, schema_version, created_at, updated_at, length, pttl."""
    row = {"model": b"gpt-4o", "seq": b"3", "version": b"1", "created": b"10", "updated": b"20"}
    row |= {"length": 3, "pttl": -1} | values
    return list(row.values())


def test_a_page_is_one_call_a_hundred_sessions_and_one_a_session_on_a_cluster() -> None:
    page = row_page(core(), metas(250))
    assert [len(c) for c in page.multi] == [204, 204, 104]  # EVALSHA sha n keys... 'row'
    assert {(c[0], c[1], c[-1]) for c in page.multi} == {("EVALSHA", SHAS["info"], "row")}
    first = b"rs:{00000000-0000-0000-0000-000000000001}:"
    assert page.multi[0][3:5] == (first + b"meta", first + b"messages")
    assert len(row_page(core(cluster=True), metas(3)).multi) == 3


def test_a_row_holds_what_ls_shows() -> None:
    upper = [b"rs:{0B7C6A52-7F3E-4D2A-9C1B-5E8F00A1B2C3}:meta"]
    (row,) = row_page(core(), upper).parse([[0, *fields(pttl=5000)]])
    assert row == (20, "0b7c6a52-7f3e-4d2a-9c1b-5e8f00a1b2c3", "gpt-4o", 3, 20, 5000, None)


def test_the_sort_key_is_the_update_else_the_creation_else_never() -> None:
    replies = [[0, *fields(updated=None), *fields(updated=None, created=None), *fields(model=None)]]
    rows = row_page(core(), metas(3)).parse(replies)
    assert [(r[0], r[2], r[4]) for r in rows] == [(10, "gpt-4o", None), (NEVER, "gpt-4o", None), (20, "", 20)]
    assert NEVER < -62135596800 * 10**6  # before year 1: before any time a meta hash holds


def test_a_session_gone_since_it_was_listed_has_no_row() -> None:
    rows = row_page(core(), metas(2)).parse([[0, *fields(version=None, length=0, pttl=-2), *fields()]])
    assert [r[1] for r in rows] == ["00000000-0000-0000-0000-000000000002"]


def test_a_newer_schema_and_a_corrupt_meta_hash_are_rows_with_their_problem() -> None:
    bad = [
        fields(version=b"99"),
        fields(seq=b"not-a-number"),
        fields(version=b"x"),
        fields(model=b"\xff"),
        fields(created=b"99999999999999999999"),  # no datetime holds it
        fields(updated=b"-99999999999999999999"),
    ]
    rows = row_page(core(), metas(len(bad))).parse([[0, *(v for f in bad for v in f)]])
    assert rows[0][6] == "schema version 99, newer than this library's 1"
    assert rows[0][:6] == (20, "00000000-0000-0000-0000-000000000001", "gpt-4o", 3, 20, -1)
    for row in rows[1:]:
        assert str(row[6]).startswith("corrupt meta hash: "), row
        assert (row[0], row[2], row[3], row[4]) == (NEVER, "", 3, None)  # as SessionInfo's: held, no time
    assert "b'not-a-number'" in str(rows[1][6])
