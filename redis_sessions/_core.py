"""The sans-IO core shared by both stores: operations become calls, replies become models.

A ``Call`` names a Lua script (or a plain command), its KEYS and ARGV, and how to parse the reply.
The stores in ``store.py`` and ``aio.py`` only send calls; everything that can be decided without
Redis (validation, keys, encoding, slicing, error mapping) is decided here, once.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any, Final, Generic, NamedTuple, TypeVar

import msgspec
import redis.exceptions

from . import migrations
from .cache import HistoryCache
from .codec import CODECS, Codec
from .errors import (
    CodecMismatch,
    ConflictError,
    CorruptSession,
    InvalidMessage,
    LeaseHeld,
    LeaseLost,
    MessageTooLarge,
    SchemaVersionError,
    SessionExists,
    SessionNotFound,
    StoreError,
)
from .keys import (
    check_prefix,
    dirty_key,
    meta_key_pattern,
    parse_meta_key,
    script_keys,
    session_id,
    session_keys,
    tombstone_key,
)
from .models import AgentMessage, Session, SessionId

__all__ = [
    "DEFAULT_CACHE_MESSAGES",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "SCRIPTS",
    "SHAS",
    "Call",
    "Messages",
    "StoreCore",
    "check_client",
    "scan_page",
    "ttl_ms",
]

T = TypeVar("T")
Messages = list[AgentMessage]

SCRIPTS: Final[dict[str, str]] = {
    name: resources.files(__package__).joinpath("scripts", f"{name}.lua").read_text("utf-8")
    for name in (
        "create",
        "append",
        "read_since",
        "set_metadata",
        "delete",
        "read_after",
        "lease",
        "restore",
        "sync_read",
        "sync_mark",
        "pop",
        "rebind",
        "dirty",
        "sync_lease",
    )
}
"""Lua sources by name, read once from the package's ``scripts/*.lua`` files."""

SHAS: Final[dict[str, str]] = {
    name: hashlib.sha1(source.encode()).hexdigest() for name, source in SCRIPTS.items()
}
"""The SHA1 of each script, the name EVALSHA calls it by."""

DEFAULT_MAX_MESSAGE_BYTES: Final = 8 * 1024 * 1024
"""8 MiB: room for a large image, far below Redis's 512 MB bulk limit."""

DEFAULT_CACHE_MESSAGES: Final = 10_000
"""Messages a store keeps decoded for re-reads (a few MB); 0 turns the history cache off."""

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_SCAN_COUNT: Final = 1000
_OK, _NOT_FOUND, _VERSION_MISMATCH, _CONFLICT, _EXISTS, _CODEC, _CORRUPT = range(7)
_TRIMMED, _LEASE_HELD, _LEASE_LOST, _EVICTED = 7, 8, 9, 10
_META_PREFIX: Final = "m:"


class Call(NamedTuple, Generic[T]):
    """One round trip and its parser: a script, or with ``script=None`` the commands in ``multi``
    as one MULTI/EXEC transaction, or else the single command in ``args``.

    A NamedTuple, not a frozen dataclass: one is built per call, and tuple construction is the
    cheapest Python has."""

    op: str
    sid: SessionId | None
    script: str | None
    keys: tuple[str, ...]
    args: tuple[Any, ...]
    parse: Callable[[Any], T]
    multi: tuple[tuple[Any, ...], ...] = ()
    # What to send instead when Redis is out of memory: it refuses every command queued in a
    # MULTI then, even reads, but still runs a script that only reads.
    fallback: Call[T] | None = None
    # False: the commands in ``multi`` go as a plain pipeline (keys in many cluster slots).
    atomic: bool = True


def ttl_ms(ttl: float | timedelta | None) -> int:
    """A TTL in whole milliseconds for PEXPIRE; 0 stands for 'never expire'."""
    if ttl is None:
        return 0
    seconds = ttl.total_seconds() if isinstance(ttl, timedelta) else float(ttl)
    if seconds <= 0:
        raise ValueError(f"ttl must be positive or None, got {ttl!r}")
    return max(1, round(seconds * 1000))


def check_client(client: Any) -> None:
    """Refuse a client that decodes replies to str: stored messages are binary."""
    if client.get_encoder().decode_responses:
        raise ValueError("the Redis client must return bytes: create it with decode_responses=False")


def scan_page(reply: Any) -> tuple[int, list[bytes]]:
    """A SCAN reply as (cursor, keys); a cluster client keys the cursor by node (one node here)."""
    cursor = reply[0]
    if isinstance(cursor, dict):
        (cursor,) = cursor.values()
    return int(cursor), list(reply[1])


def _timestamp(raw: bytes | None) -> datetime | None:
    return None if raw is None else _EPOCH + timedelta(microseconds=int(raw))


class StoreCore:
    """Configuration and logic of a store, without I/O."""

    def __init__(
        self,
        *,
        prefix: str,
        ttl: float | timedelta | None,
        max_messages: int | None,
        codec: str,
        max_message_bytes: int,
        cache_messages: int,
        durable: bool = False,
        record: str = "",
        cluster: bool = False,
    ) -> None:
        if codec not in CODECS:
            raise ValueError(f"codec must be one of {sorted(CODECS)}, got {codec!r}")
        if max_messages is not None and (not isinstance(max_messages, int) or max_messages < 1):
            raise ValueError(f"max_messages must be a positive int or None, got {max_messages!r}")
        self.prefix = check_prefix(prefix)
        self.ttl_ms = ttl_ms(ttl)
        self.max_messages = max_messages or 0
        self.codec: Codec = CODECS[codec]
        self.max_message_bytes = max_message_bytes
        self.cache = HistoryCache(cache_messages) if cache_messages > 0 else None
        # With a backing store, sessions this store creates are durable: listed as dirty until the
        # sync worker has stored them, and without a TTL until then (any store's writes keep that).
        self.durable = durable
        # ...and bound to this backing record (its ``record_id``): only its workers deliver them.
        self.record = record
        # Where dirty indexes live: one per slot on a cluster, one per slot group on one server.
        self.cluster = cluster
        # The schema version this store writes and reads (older ones are upgraded: migrations).
        self.schema = migrations.active()
        self.version = str(self.schema.current)
        self._version_bytes = self.version.encode()

    # -- writes -----------------------------------------------------------------------------

    def create(
        self,
        model: str,
        max_turns: int,
        system_message: str | None,
        metadata: Mapping[str, str] | None,
        sid: object,
    ) -> Call[SessionId]:
        given, sid = sid is not None, uuid.uuid4() if sid is None else session_id(sid)
        try:
            fields = self.header(sid, model, max_turns, system_message, metadata)
        except TypeError as exc:  # nothing was sent: name the call, not an id the caller never saw
            if given:
                raise
            raise TypeError(str(exc).replace(f"session `{sid}`", "create()", 1)) from None
        if self.durable:
            fields += ["durable", 1, "record", self.record]
        keys = (*session_keys(self.prefix, sid), dirty_key(self.prefix, sid, self.cluster))
        token = uuid.uuid4().hex
        args = (self.version, self.codec.name, token, self.ttl_ms, self.max_messages, *fields)

        def parse(reply: list[Any]) -> SessionId:
            self.check(sid, reply)
            return sid

        return Call("create", sid, "create", keys, args, parse)

    def extend(
        self,
        sid: object,
        messages: Iterable[AgentMessage],
        expected_seq: int | None,
        fence: int | None = None,
    ) -> Call[int]:
        sid = session_id(sid)
        if fence is not None and (type(fence) is not int or fence < 1):
            raise TypeError(f"session `{sid}`: fence must be a lease token (an int >= 1) or None")
        args: list[Any] = [self.version, self.codec.name, self._expected(sid, expected_seq)]
        args.append("" if fence is None else fence)
        for message in messages:
            data = self.encode(sid, message)
            args += [message.id, data]

        def parse(reply: list[Any]) -> int:
            if reply[0] == _LEASE_LOST:
                raise LeaseLost(sid, fence)
            self.check(sid, reply, expected_seq)
            return int(reply[1])

        return Call("append", sid, "append", script_keys(self.prefix, sid, self.cluster), tuple(args), parse)

    def set_metadata(self, sid: object, updates: Mapping[str, str | None]) -> Call[None]:
        sid = session_id(sid)
        if not isinstance(updates, Mapping):
            raise TypeError(f"session `{sid}`: metadata updates must be a mapping")
        sets = [(k, v) for k, v in updates.items() if v is not None]
        dels = [self._metadata_key(sid, k) for k, v in updates.items() if v is None]
        pairs = [item for pair in self._metadata(sid, dict(sets)) for item in pair]
        args = (self.version, len(sets), *pairs, *dels)

        def parse(reply: list[Any]) -> None:
            self.check(sid, reply)

        keys = (*session_keys(self.prefix, sid), dirty_key(self.prefix, sid, self.cluster))
        return Call("set_metadata", sid, "set_metadata", keys, args, parse)

    def delete(self, sid: object) -> Call[bool]:
        sid = session_id(sid)
        if self.cache is not None:
            self.cache.discard(sid)
        keys = (*script_keys(self.prefix, sid, self.cluster), tombstone_key(self.prefix, sid))
        return Call("delete", sid, "delete", keys, (), lambda n: bool(n))

    # -- reads ------------------------------------------------------------------------------

    def exists(self, sid: object) -> Call[bool]:
        sid = session_id(sid)
        meta = session_keys(self.prefix, sid).meta
        return Call("exists", sid, None, (meta,), ("EXISTS", meta), lambda n: bool(n))

    def scan(self, cursor: int) -> Call[tuple[int, list[SessionId]]]:
        pattern = meta_key_pattern(self.prefix)

        def parse(reply: list[Any]) -> tuple[int, list[SessionId]]:
            cursor, keys = scan_page(reply)
            return cursor, [parse_meta_key(self.prefix, key) for key in keys]

        args = ("SCAN", cursor, "MATCH", pattern, "COUNT", _SCAN_COUNT)
        return Call("list", None, None, (), args, parse)

    # -- shared pieces ----------------------------------------------------------------------

    def header(
        self,
        sid: SessionId,
        model: str,
        max_turns: int,
        system_message: str | None,
        metadata: Mapping[str, str] | None,
    ) -> list[str | int]:
        """The meta hash's field/value pairs for a session's configuration, checked."""
        if not isinstance(model, str) or not isinstance(max_turns, int) or max_turns < 0:
            raise TypeError(f"session `{sid}`: model must be a str and max_turns an int >= 0")
        fields: list[str | int] = ["model", model, "max_turns", max_turns]
        if system_message is not None:
            if not isinstance(system_message, str):
                raise TypeError(f"session `{sid}`: system_message must be a str or None")
            fields += ["system_message", system_message]
        for key, value in self._metadata(sid, metadata or {}):
            fields += [key, value]
        return fields

    def encode(self, sid: SessionId, message: AgentMessage) -> bytes:
        """Encode and validate one message: what is stored must decode back as it was given."""
        if type(message) is not AgentMessage:
            raise InvalidMessage(sid, f"expected an AgentMessage, got {type(message).__name__}")
        if not isinstance(message.id, str) or not message.id:
            raise InvalidMessage(sid, f"a message id must be a non-empty str, got {message.id!r}")
        try:
            data = self.codec.encode(message)
            self.codec.check(data)
        except (msgspec.DecodeError, msgspec.EncodeError, TypeError, OverflowError) as exc:
            raise InvalidMessage(sid, f"message {message.id!r} does not match the schema: {exc}") from exc
        if len(data) > self.max_message_bytes:
            raise MessageTooLarge(sid, message.id, len(data), self.max_message_bytes)
        return data

    def check(self, sid: SessionId, reply: Sequence[Any], expected: int | None = None) -> None:
        """Turn a script's status reply into the typed error it stands for."""
        code = reply[0]
        if code == _OK:
            return
        if code == _NOT_FOUND:
            raise SessionNotFound(sid)
        if code == _EXISTS:
            raise SessionExists(sid)
        if code == _EVICTED:
            raise CorruptSession(sid, "Redis evicted part of it (a backing store restores it)", evicted=True)
        detail = reply[1].decode("utf-8", "backslashreplace") if isinstance(reply[1], bytes) else reply[1]
        if code == _VERSION_MISMATCH:
            raise SchemaVersionError(sid, int(detail) if detail.isdigit() else detail, self.schema.current)
        if code == _CODEC:
            raise CodecMismatch(sid, detail, self.codec.name)
        if code == _CONFLICT:
            raise ConflictError(sid, -1 if expected is None else expected, int(detail))
        if code == _CORRUPT:
            raise CorruptSession(sid, detail)
        if code == _LEASE_HELD:
            raise LeaseHeld(sid, detail)
        raise CorruptSession(sid, f"unexpected script status {reply!r}")

    @staticmethod
    def out_of_memory(exc: Exception) -> bool:
        """Whether Redis refused for want of memory (``maxmemory`` reached, nothing evictable)."""
        return isinstance(exc, redis.exceptions.OutOfMemoryError) or "maxmemory" in str(exc)

    @staticmethod
    def refused(call: Call[Any], exc: Exception) -> Exception:
        """The typed error for a command Redis refused (or credentials it did not accept)."""
        text = str(exc)
        if "WRONGTYPE" in text and call.sid is not None:  # also inside "Command # n of pipeline..."
            return CorruptSession(call.sid, "a key of this session holds the wrong Redis type")
        return StoreError(call.op, call.sid, text)

    def check_version(self, sid: SessionId, version: bytes | None) -> None:
        if version is None:
            raise SessionNotFound(sid)
        if version != self._version_bytes:
            self.check(sid, [_VERSION_MISMATCH, version])

    def codec_named(self, sid: SessionId, name: bytes | None) -> Codec:
        codec = CODECS.get(name.decode("utf-8", "backslashreplace")) if name else None
        if codec is None:
            raise CorruptSession(sid, f"unknown codec {name!r} in the meta hash")
        return codec

    def session(self, sid: SessionId, meta: dict[bytes, bytes], messages: Messages) -> Session:
        try:
            system = meta.get(b"system_message")
            return Session(
                id=sid,
                model=meta.get(b"model", b"").decode(),
                max_turns=int(meta.get(b"max_turns", 0)),
                system_message=None if system is None else system.decode(),
                messages=messages,
                metadata={k[2:].decode(): v.decode() for k, v in meta.items() if k.startswith(b"m:")},
                created_at=_timestamp(meta.get(b"created_at")),
                updated_at=_timestamp(meta.get(b"updated_at")),
                seq=int(meta.get(b"seq", 0)),
                ttl_ms=int(meta.get(b"ttl_ms", 0)),
                max_messages=int(meta.get(b"max_messages", 0)),
            )
        except (ValueError, UnicodeDecodeError, OverflowError) as exc:  # Overflow: a timestamp
            raise CorruptSession(sid, f"unreadable meta hash: {exc!r}") from exc

    def _expected(self, sid: SessionId, expected_seq: int | None) -> str:
        if expected_seq is None:
            return ""
        if not isinstance(expected_seq, int) or expected_seq < 0:
            raise TypeError(f"session `{sid}`: expected_seq must be an int >= 0 or None")
        return str(expected_seq)

    def _metadata_key(self, sid: SessionId, key: object) -> str:
        if not isinstance(key, str) or not key:
            raise TypeError(f"session `{sid}`: metadata keys must be non-empty str, got {key!r}")
        return _META_PREFIX + key

    def _metadata(self, sid: SessionId, metadata: Mapping[str, str]) -> list[tuple[str, str]]:
        pairs = []
        for key, value in metadata.items():
            if not isinstance(value, str):
                raise TypeError(f"session `{sid}`: metadata value for {key!r} must be a str")
            pairs.append((self._metadata_key(sid, key), value))
        return pairs
