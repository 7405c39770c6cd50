"""The key space: every Redis key of a session is built here, and only here.

One session is three keys sharing the hash tag ``{<session-id>}``, so Redis Cluster puts them in one
slot and a Lua script may touch all of them::

    rs:{0b7c...}:meta       hash   schema_version, codec, model, max_turns, system_message,
                                   created_at, updated_at, seq, m:<metadata key> ...
    rs:{0b7c...}:messages   list   encoded AgentMessages, oldest first
    rs:{0b7c...}:ids        zset   message id -> seq, for idempotent appends
    rs:{0b7c...}:lease      hash   owner, token of the turn lease (expires with the lease)
    rs:{0b7c...}:events     pub/sub channel: the seq of each append, "0" on delete
    rs:{0b7c...}:deleted    string the epoch of a deleted durable session, for a while (a tombstone)

With a backing store, sessions whose newest messages have not reached it yet are listed in a
*dirty index*: one sorted set per cluster slot, ``rs:dirty:{<tag>}``, whose tag hashes to the same
slot as the sessions it lists, so the append script can mark a session dirty atomically even on
Redis Cluster (a script may only touch keys of one slot)::

    rs:dirty:{<tag>}        zset   session id -> when it became dirty (ms), for the sync worker
    rs:record               string the record_id of the backing record the prefix is bound to
"""

from __future__ import annotations

import binascii
import functools
import re
import uuid
from typing import NamedTuple

from .errors import InvalidSessionId, PersistenceError

__all__ = [
    "SessionKeys",
    "check_prefix",
    "dirty_key",
    "dirty_key_pattern",
    "live_keys",
    "meta_key_pattern",
    "parse_meta_key",
    "record_key",
    "script_keys",
    "session_id",
    "session_keys",
    "tombstone_key",
]

_CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z", re.IGNORECASE)
_PREFIX = re.compile(r"[A-Za-z0-9_.:\-]{1,64}\Z")


class SessionKeys(NamedTuple):
    """The keys of one session, in the order every script takes them as KEYS."""

    meta: str
    messages: str
    ids: str


def session_id(value: object) -> uuid.UUID:
    """Validate a session id: a ``uuid.UUID``, or its canonical 36-character string form.

    Anything else (other types, braces, ``*``, newlines, very long strings) raises
    ``InvalidSessionId`` before a key can be built from it.
    """
    if type(value) is uuid.UUID:
        return value
    if isinstance(value, str) and len(value) == 36:
        return _parse_id(value)
    raise InvalidSessionId(value)


@functools.lru_cache(maxsize=65536)
def _parse_id(value: str) -> uuid.UUID:
    # Agents pass the same string ids turn after turn: parse each once.
    if _CANONICAL.match(value):
        return uuid.UUID(value)
    raise InvalidSessionId(value)


def check_prefix(prefix: str) -> str:
    """A key prefix may not contain glob or hash-tag characters (it is used in SCAN patterns)."""
    if not isinstance(prefix, str) or not _PREFIX.match(prefix):
        raise ValueError(f"key prefix must be 1-64 characters of [A-Za-z0-9_.:-], got {prefix!r}")
    return prefix


@functools.lru_cache(maxsize=65536)
def session_keys(prefix: str, sid: uuid.UUID) -> SessionKeys:
    """All keys of session ``sid`` under ``prefix`` (memoised: built on every call otherwise)."""
    base = f"{prefix}:{{{sid}}}:"
    return SessionKeys(base + "meta", base + "messages", base + "ids")


@functools.lru_cache(maxsize=65536)
def live_keys(prefix: str, sid: uuid.UUID) -> tuple[str, str]:
    """The session's lease hash and its events channel (a sharded pub/sub channel on Redis >= 7)."""
    base = f"{prefix}:{{{sid}}}:"
    return base + "lease", base + "events"


_SLOTS = 16384


def _slot(text: str) -> int:
    """The Redis Cluster slot of a hash tag's content: CRC16 (XMODEM) mod 16384."""
    return binascii.crc_hqx(text.encode(), 0) % _SLOTS


@functools.cache
def _slot_tags() -> tuple[str, ...]:
    """For every cluster slot, a short hash tag that lands in it (found once, in ~50 ms)."""
    tags: list[str | None] = [None] * _SLOTS
    missing, n = _SLOTS, 0
    while missing:
        tag = format(n, "x")
        slot = _slot(tag)
        if tags[slot] is None:
            tags[slot], missing = tag, missing - 1
        n += 1
    return tuple(t for t in tags if t is not None)


@functools.lru_cache(maxsize=65536)
def dirty_key(prefix: str, sid: uuid.UUID) -> str:
    """The dirty index that lists session ``sid``: in the slot of the session's own keys."""
    return f"{prefix}:dirty:{{{_slot_tags()[_slot(str(sid))]}}}"


@functools.lru_cache(maxsize=65536)
def script_keys(prefix: str, sid: uuid.UUID) -> tuple[str, str, str, str, str, str]:
    """Every key an append or a delete may touch: the session's own, its lease and channel, and
    its slot's dirty index (one memoised tuple: appends build it on every call otherwise)."""
    return (*session_keys(prefix, sid), *live_keys(prefix, sid), dirty_key(prefix, sid))


def tombstone_key(prefix: str, sid: uuid.UUID) -> str:
    """Left by ``delete`` for a while: tells a sync worker that a session it finds gone was deleted
    (so its backing copy goes too), not evicted or expired (so its backing copy is all there is)."""
    return f"{prefix}:{{{sid}}}:deleted"


def record_key(prefix: str) -> str:
    """The id of the one backing record the prefix's durable sessions are written behind to."""
    return f"{prefix}:record"


def dirty_key_pattern(prefix: str) -> str:
    """The SCAN pattern that matches every dirty index under ``prefix``."""
    return f"{prefix}:dirty:*"


def meta_key_pattern(prefix: str) -> str:
    """The SCAN pattern that matches the meta hash of every session under ``prefix``."""
    return f"{prefix}:{{*}}:meta"


def parse_meta_key(prefix: str, key: bytes | str) -> uuid.UUID:
    """The session id inside a meta key found by SCAN; ``PersistenceError`` names a bad one."""
    text = key.decode("utf-8", "backslashreplace") if isinstance(key, bytes) else key
    head, tail = f"{prefix}:{{", "}:meta"
    inner = text[len(head) : -len(tail)] if text.startswith(head) and text.endswith(tail) else ""
    if not _CANONICAL.match(inner):
        raise PersistenceError(f"key {text!r} under prefix {prefix!r} does not hold a valid session id")
    return uuid.UUID(inner)
