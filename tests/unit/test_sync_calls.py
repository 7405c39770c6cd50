"""The worker's ``sync_read`` reply, parsed with no I/O: a whole reply's messages decoded and encoded
together give each session exactly what parsing it alone gives (a sealed message its stand-in), and
a reply the batch cannot take (a corrupt message, two codecs) is parsed a session at a time, naming
the one at fault."""

from __future__ import annotations

import os
import uuid
from typing import Any

import msgspec
import pytest

from redis_sessions import CorruptSession
from redis_sessions._core import StoreCore
from redis_sessions._protocol import Status
from redis_sessions._sync_calls import Read, Unsynced, _batch, sync_read
from redis_sessions.codec import CODECS
from redis_sessions.encryption import Encryption
from redis_sessions.models import AgentMessage, Role, Text
from redis_sessions.persistence._delivery import decoded_delivery
from tests.unit.test_core import core

SIDS = [uuid.UUID(int=n) for n in range(1, 4)]
KEY = os.urandom(32)


def message(n: int) -> AgentMessage:
    return AgentMessage(role=Role.USER, content=[Text(text=f"line\n{n} \u2028 é")], id=f"m{n}")


def reply(codec: str, items: list[bytes], after: int = 4, **fields: bytes) -> list[Any]:
    meta = {b"codec": codec.encode(), b"model": b"m", b"epoch": b"e", b"updated_at": b"1764931234567890"}
    meta |= {k.encode(): v for k, v in fields.items()}
    flat = [x for pair in meta.items() for x in pair]
    return [Status.OK, flat, str(after).encode(), items, [b"7"] * len(items)]


def parsed(store: StoreCore, replies: list[list[Any]]) -> list[Read]:
    return sync_read(store, "record", SIDS[: len(replies)]).parse(replies)


def alone(store: StoreCore, replies: list[list[Any]]) -> list[Read]:
    """Each session parsed in a reply of its own (no batch across sessions)."""
    return [sync_read(store, "record", [sid]).parse([r])[0] for sid, r in zip(SIDS, replies, strict=False)]


def test_a_batch_gives_each_session_its_own_rows_and_header() -> None:
    store, packed = core(), CODECS["msgpack"]
    replies = [
        reply("msgpack", [packed.encode(message(n)) for n in (1, 2)]),
        [Status.NOT_FOUND],
        reply("msgpack", [packed.encode(message(3))], after=9, **{"m:k": b"v"}),
    ]
    assert _batch(store, SIDS, replies) is not None, "not parsed as one batch"
    reads = parsed(store, replies)
    assert reads == alone(store, replies)
    first, gone, third = reads
    assert gone is None
    assert isinstance(first, Unsynced)
    assert isinstance(third, Unsynced)
    expected = decoded_delivery(SIDS[0], 5, [message(1), message(2)], first.delivery.state)
    assert first.delivery == expected
    assert first.delivery.rows[1] == ("m2", msgspec.json.encode(message(2)))
    assert (third.delivery.first_seq, third.delivery.state.seq, third.delivery.state.metadata) == (
        10,
        10,
        {"k": "v"},
    )
    assert third.delivery.state.message_tokens == [7]


def test_a_corrupt_message_is_named_and_the_others_still_delivered() -> None:
    store, packed = core(), CODECS["msgpack"]
    replies = [
        reply("msgpack", [packed.encode(message(1))]),
        reply("msgpack", [b"\x81\xa4role"]),  # cut short
        reply("msgpack", [packed.encode(message(3))]),
    ]
    assert _batch(store, SIDS, replies) is None
    first, bad, third = parsed(store, replies)
    assert isinstance(bad, CorruptSession)
    assert bad.session_id == SIDS[1]
    assert isinstance(first, Unsynced)
    assert isinstance(third, Unsynced)
    assert [row[0] for row in (*first.delivery.rows, *third.delivery.rows)] == ["m1", "m3"]


@pytest.mark.parametrize("mixed", ["two codecs", "a sealed message"])
def test_two_codecs_go_a_session_at_a_time_and_a_sealed_message_as_its_stand_in(mixed: str) -> None:
    sealed = core(encryption=Encryption({"k1": KEY}, current="k1"))
    second = (
        reply("json", [CODECS["json"].encode(message(2))])
        if mixed == "two codecs"
        else reply("msgpack", [sealed.encode(SIDS[1], message(2))])
    )
    replies = [reply("msgpack", [CODECS["msgpack"].encode(message(1))]), second]
    assert (_batch(core(), SIDS, replies) is None) == (mixed == "two codecs")
    reads = parsed(core(), replies)
    assert reads == alone(core(), replies)
    assert all(isinstance(read, Unsynced) for read in reads)
    rows = [read.delivery.rows for read in reads if isinstance(read, Unsynced)]
    assert [r[0][0] for r in rows] == ["m1", "m2"]
    if mixed == "a sealed message":  # its stand-in, ciphertext inside: no key needed
        assert b"redis_sessions.sealed" in rows[1][0][1]
