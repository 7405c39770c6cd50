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
    rs:{0b7c...}:stream     stream the deltas of streamed replies, and the marks that close them
    rs:{0b7c...}:replies    hash   <message id>:st / :n / :b / :t / :f / :i / :s per streamed reply
    rs:{0b7c...}:deltas     pub/sub channel: wakes partial watchers after each write to the stream
    rs:{0b7c...}:tools      hash   tool calls: attempts, live claims and stored results, by tool_use_id
    rs:{0b7c...}:tokens     list   each message's token count, aligned with the messages list's tail
    rs:{0b7c...}:compact    string the compaction lock: a token, expiring (store.compact)
    rs:{0b7c...}:fork:<t>:* staged copies of a fork being made (expiring; renamed when published)

With a backing store, sessions whose newest messages have not reached it yet are listed in a *dirty
index*: on Redis Cluster one sorted set per slot, ``rs:dirty:{<tag>}``, in the slot of the sessions it
lists (a script marks one dirty atomically); on one server one per group of 256 slots, ``rs:dirty:g<n>``
(64 in all). Either way the names are known: workers find them without SCAN::

    rs:dirty:{<tag>}        zset   (cluster) session id -> when it became dirty (ms)
    rs:dirty:g<n>           zset   (one server) the same, for slots 256n .. 256n+255
    rs:record               string the record_id of the backing record the prefix is bound to
    rs:{rs:sync}:workers    zset   live write-behind workers -> lease end (ms)
    rs:{rs:sync}:group:<g>  string which worker holds slot group g (slots 256g .. 256g+255)

With tenant limits (``tenant_quota``), each slot of a cluster keeps a *ledger* of the prefix's sessions
in it (on one server there is one ledger), and a cluster a central count of what it granted to the
slots (``redis_sessions.tenant``)::

    rs:tenant:{<tag>}       hash   (cluster) session id -> its bytes; bytes, allow_sessions, allow_bytes
    rs:tenant:{<tag>}:live  zset   (cluster) session id -> a deadline (ms) it cannot expire before
    rs:tenant / rs:tenant:live     (one server) the one ledger
    rs:{rs:tenant}:granted  hash   (cluster) sessions, bytes granted to the slots' ledgers in all
"""

from __future__ import annotations

import binascii
import contextlib
import functools
import operator
import re
import uuid
from typing import NamedTuple

import msgspec

from .errors import InvalidArgument, InvalidSessionId, PersistenceError

__all__ = [
    "GROUP_SLOTS",
    "SLOT_GROUPS",
    "SessionKeys",
    "append_keys",
    "check_prefix",
    "compact_key",
    "dirty_key",
    "dirty_keys",
    "legacy_dirty_pattern",
    "listed_keys",
    "live_keys",
    "meta_key_pattern",
    "parse_meta_key",
    "parse_meta_keys",
    "record_key",
    "reply_keys",
    "script_keys",
    "session_id",
    "session_keys",
    "slot",
    "staged_keys",
    "sync_keys",
    "tenant_central",
    "tenant_keys",
    "tenant_ledgers",
    "tokens_key",
    "tombstone_key",
    "tools_key",
]

_CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z", re.IGNORECASE)
_PREFIX = re.compile(r"[A-Za-z0-9_.:\-]{1,64}\Z")
_UUIDS = msgspec.json.Decoder(list[uuid.UUID])


class SessionKeys(NamedTuple):
    """The keys of one session, in the order every script takes them as KEYS."""

    meta: str
    messages: str
    ids: str


def session_id(value: object) -> uuid.UUID:
    """A ``uuid.UUID``, or its canonical 36-character string form; else ``InvalidSessionId``."""
    if type(value) is uuid.UUID:
        return value
    if isinstance(value, str) and len(value) == 36:
        return _parse_id(value)
    raise InvalidSessionId(value)


@functools.lru_cache(maxsize=65536)
def _parse_id(value: str) -> uuid.UUID:
    if _CANONICAL.match(value):
        return uuid.UUID(value)
    raise InvalidSessionId(value)


def check_prefix(prefix: str) -> str:
    """A key prefix may not contain glob or hash-tag characters (it is used in SCAN patterns)."""
    if not isinstance(prefix, str) or not _PREFIX.match(prefix):
        raise InvalidArgument(f"key prefix must be 1-64 characters of [A-Za-z0-9_.:-], got {prefix!r}")
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


@functools.lru_cache(maxsize=65536)
def reply_keys(prefix: str, sid: uuid.UUID) -> tuple[str, str, str]:
    """The session's stream of partial replies, their states' hash, and the partial watchers' channel."""
    base = f"{prefix}:{{{sid}}}:"
    return base + "stream", base + "replies", base + "deltas"


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


def slot(sid: uuid.UUID) -> int:
    """The cluster slot of every key of session ``sid`` (and of its dirty index)."""
    return _slot(str(sid))


@functools.lru_cache(maxsize=64)
def dirty_keys(prefix: str, cluster: bool) -> tuple[str, ...]:
    """Every dirty index under ``prefix`` (a slot's on a cluster, a slot group's on one server)."""
    if cluster:
        return tuple(f"{prefix}:dirty:{{{tag}}}" for tag in _slot_tags())
    return tuple(f"{prefix}:dirty:g{group}" for group in range(SLOT_GROUPS))


@functools.lru_cache(maxsize=64)
def sync_keys(prefix: str) -> tuple[str, ...]:
    """The write-behind workers' registry, then the leases of the 64 slot groups (one hash tag)."""
    base = f"{prefix}:{{{prefix}:sync}}:"
    return (base + "workers", *(f"{base}group:{g}" for g in range(SLOT_GROUPS)))


SLOT_GROUPS, GROUP_SLOTS = 64, 256  # slots are leased to write-behind workers in 64 groups of 256


@functools.lru_cache(maxsize=65536)
def dirty_key(prefix: str, sid: uuid.UUID, cluster: bool) -> str:
    """The dirty index listing ``sid``: its slot's on a cluster, its slot group's on one server."""
    number = _slot(str(sid))
    return dirty_keys(prefix, cluster)[number if cluster else number // GROUP_SLOTS]


@functools.lru_cache(maxsize=65536)
def script_keys(prefix: str, sid: uuid.UUID, cluster: bool) -> tuple[str, str, str, str, str, str]:
    """Every key an append or a delete may touch: the session's own, lease, channel, dirty index."""
    return (*session_keys(prefix, sid), *live_keys(prefix, sid), dirty_key(prefix, sid, cluster))


@functools.lru_cache(maxsize=65536)
def tombstone_key(prefix: str, sid: uuid.UUID) -> str:
    """Left by ``delete`` a while: a session a sync worker finds gone was deleted, not evicted."""
    return f"{prefix}:{{{sid}}}:deleted"


def tools_key(prefix: str, sid: uuid.UUID) -> str:
    """The session's tool calls (``tool_call.lua``): who claims each, its attempts, its result."""
    return f"{prefix}:{{{sid}}}:tools"


@functools.lru_cache(maxsize=65536)
def append_keys(prefix: str, sid: uuid.UUID, cluster: bool) -> tuple[str, ...]:
    """``script_keys`` and the tokens list: what an append touches (memoised, as they are)."""
    return (*script_keys(prefix, sid, cluster), tokens_key(prefix, sid))


@functools.lru_cache(maxsize=65536)
def tokens_key(prefix: str, sid: uuid.UUID) -> str:
    """Each message's token count, pushed and trimmed with the messages (the lists' tails line up)."""
    return f"{prefix}:{{{sid}}}:tokens"


def compact_key(prefix: str, sid: uuid.UUID) -> str:
    """The session's compaction lock (``store.compact``): not its turn lease, which a turn holds."""
    return f"{prefix}:{{{sid}}}:compact"


def staged_keys(prefix: str, sid: uuid.UUID, token: str) -> tuple[str, str, str]:
    """Where a fork into ``sid`` stages its messages, ids, tokens for fork.lua (expiring, per ``token``)."""
    base = f"{prefix}:{{{sid}}}:fork:{token}:"
    return base + "messages", base + "ids", base + "tokens"


def record_key(prefix: str) -> str:
    """The id of the one backing record the prefix's durable sessions are written behind to."""
    return f"{prefix}:record"


def legacy_dirty_pattern(prefix: str) -> str:
    """The SCAN pattern of a single server's per-slot dirty indexes of old (moved once, at start)."""
    return f"{prefix}:dirty:{{*}}"


def meta_key_pattern(prefix: str) -> str:
    """The SCAN pattern that matches the meta hash of every session under ``prefix``."""
    return f"{prefix}:{{*}}:meta"


def parse_meta_key(prefix: str, key: bytes | str) -> uuid.UUID:
    """The session id inside a meta key found by SCAN; ``PersistenceError`` names a bad one."""
    raw = key if isinstance(key, bytes) else key.encode("utf-8", "surrogatepass")
    found = _meta_key_re(prefix).match(raw)
    if found is None:
        text = key.decode("utf-8", "backslashreplace") if isinstance(key, bytes) else key
        raise PersistenceError(f"key {text!r} under prefix {prefix!r} does not hold a valid session id")
    return uuid.UUID(found.group(1).decode("ascii"))


def parse_meta_keys(prefix: str, keys: list[bytes]) -> list[uuid.UUID]:
    """``parse_meta_key`` of a SCAN page's keys: ids decoded in one batch, shapes checked in C (map)."""
    head, start = f"{prefix}:{{".encode(), len(prefix) + 2
    starts, ends = operator.methodcaller("startswith", head), operator.methodcaller("endswith", b"}:meta")
    if all(map((start + 42).__eq__, map(len, keys))) and all(map(starts, keys)) and all(map(ends, keys)):
        with contextlib.suppress(msgspec.ValidationError, msgspec.DecodeError):
            return _UUIDS.decode(b'["' + b'","'.join([k[start:-6] for k in keys]) + b'"]')
    return [parse_meta_key(prefix, key) for key in keys]  # names the bad key


def listed_keys(metas: list[bytes], memory: bool) -> list[bytes]:
    """What info.lua reads of the sessions of these meta keys: meta, messages (+ ids, tokens)."""
    names = (b"meta", b"messages", b"ids", b"tokens") if memory else (b"meta", b"messages")
    return [meta[:-4] + name for meta in metas for name in names]


@functools.lru_cache(maxsize=64)
def _meta_key_re(prefix: str) -> re.Pattern[bytes]:
    """A meta key of ``prefix`` holding a canonical session id (the id captured), as bytes."""
    hexes = rb"-".join(rb"[0-9a-fA-F]{%d}" % n for n in (8, 4, 4, 4, 12))
    return re.compile(re.escape(f"{prefix}:{{".encode()) + rb"(" + hexes + rb")" + rb"\}:meta\Z")


@functools.lru_cache(maxsize=64)
def tenant_ledgers(prefix: str, cluster: bool) -> tuple[tuple[str, str], ...]:
    """Every tenant ledger (hash, live zset): one per slot on a cluster, one on one server."""
    if cluster:
        return tuple((f"{prefix}:tenant:{{{t}}}", f"{prefix}:tenant:{{{t}}}:live") for t in _slot_tags())
    return ((f"{prefix}:tenant", f"{prefix}:tenant:live"),)


@functools.lru_cache(maxsize=65536)
def tenant_keys(prefix: str, sid: uuid.UUID, cluster: bool) -> tuple[str, str]:
    """The tenant ledger that counts session ``sid``: its slot's on a cluster, the one otherwise."""
    return tenant_ledgers(prefix, cluster)[_slot(str(sid)) if cluster else 0]


def tenant_central(prefix: str) -> str:
    """On a cluster, what the prefix's slots were granted in all (never more than its limits)."""
    return f"{prefix}:{{{prefix}:tenant}}:granted"
