"""The sans-IO core shared by every operation: a store's configuration and the pieces all
operations use (encoding and checking messages, the meta hash's fields, turning a script's status
into its error, reading a meta hash back). No I/O.

The operations themselves are ``op(core, ...) -> Call`` functions grouped by concern (``_write``,
``_read``, ``_live``, ``_admin``, ``_durable``); the stores in ``store.py`` and ``aio.py`` only send
the calls (``_calls``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, Final, TypeVar

import msgspec
import redis.exceptions

from . import migrations
from ._calls import Call
from ._envelope import STAND_IN, seal, unwrap
from ._protocol import OK, Status, error_for
from ._scripts import AppendHeads
from ._times import stored_time
from .codec import CODECS, Codec, readers
from .encryption import Encryption
from .errors import (
    CorruptSession,
    InvalidArgument,
    InvalidArgumentType,
    InvalidMessage,
    MessageTooLarge,
    SessionNotFound,
    StoreError,
)
from .keys import check_prefix, tenant_keys
from .models import AgentMessage, Session, SessionId, SessionState
from .tenant import TenantQuota
from .tokens import TokenCounter, estimate_tokens

__all__ = [
    "DEFAULT_CACHE_MESSAGES",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "Messages",
    "StoreCore",
    "check_client",
    "scan_page",
    "ttl_ms",
]

T = TypeVar("T")
Messages = list[AgentMessage]

DEFAULT_MAX_MESSAGE_BYTES: Final = 8 * 1024 * 1024
"""8 MiB: room for a large image, far below Redis's 512 MB bulk limit."""

DEFAULT_CACHE_MESSAGES: Final = 10_000
"""Messages a store keeps decoded for re-reads (a few MB); 0 turns the history cache off."""

_META_PREFIX, _META = "m:", b"m:"  # metadata fields


def ttl_ms(ttl: float | timedelta | None) -> int:
    """A TTL in whole milliseconds for PEXPIRE; 0 stands for 'never expire'."""
    if ttl is None:
        return 0
    seconds = ttl.total_seconds() if isinstance(ttl, timedelta) else float(ttl)
    if seconds <= 0:
        raise InvalidArgument(f"ttl must be positive or None, got {ttl!r}")
    return max(1, round(seconds * 1000))


def check_client(client: Any) -> None:
    """Refuse a client that decodes replies to str: stored messages are binary."""
    if client.get_encoder().decode_responses:
        raise InvalidArgument("the Redis client must return bytes: create it with decode_responses=False")


def scan_page(reply: Any) -> tuple[int, list[bytes]]:
    """A SCAN reply as (cursor, keys); a cluster client keys the cursor by node (one node here)."""
    cursor = reply[0]
    if isinstance(cursor, dict):
        (cursor,) = cursor.values()
    return int(cursor), list(reply[1])


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
        durable: bool = False,
        record: str = "",
        cluster: bool = False,
        token_counter: TokenCounter = estimate_tokens,
        encryption: Encryption | None = None,
        max_session_bytes: int | None = None,
        tenant: TenantQuota | None = None,
    ) -> None:
        if codec not in CODECS:
            raise InvalidArgument(f"codec must be one of {sorted(CODECS)}, got {codec!r}")
        if max_messages is not None and (not isinstance(max_messages, int) or max_messages < 1):
            raise InvalidArgument(f"max_messages must be a positive int or None, got {max_messages!r}")
        self.prefix = check_prefix(prefix)
        self.ttl_ms = ttl_ms(ttl)
        self.max_messages = max_messages or 0
        if max_session_bytes is not None and (type(max_session_bytes) is not int or max_session_bytes < 1):
            raise InvalidArgument(f"max_session_bytes must be a positive int or None: {max_session_bytes!r}")
        # create records it as max_bytes (restore: unless the state has one); append.lua enforces it
        self.max_session_bytes = max_session_bytes or 0
        self.codec: Codec = CODECS[codec]
        if tenant is not None and not isinstance(tenant, TenantQuota):
            raise InvalidArgument(f"tenant_quota must be a TenantQuota or None, got {tenant!r}")
        # tenant_quota=: scripts keep its ledger (``ledger``); the transport asks for room (``_aio_tenant``)
        self.tenant = tenant
        # encryption=: messages are sealed by ``encode`` and opened by the readers (``codec_named``).
        self.encryption = encryption
        self._readers = readers(encryption)
        self.reader = self._readers[codec]  # this store's codec, opening sealed messages
        self.max_message_bytes = max_message_bytes
        # With a backing store, sessions this store creates are durable: listed as dirty until the
        # sync worker has stored them, and without a TTL until then (any store's writes keep that).
        self.durable = durable
        # ...and bound to this backing record (its ``record_id``): only its workers deliver them.
        self.record = record
        # Where dirty indexes live: one per slot on a cluster, one per slot group on one server.
        self.cluster = cluster
        self.count_tokens = token_counter  # tokens.py: run once per appended message
        # The schema version this store writes and reads (older ones are upgraded: migrations).
        self.schema = migrations.active()
        self.version = str(self.schema.current)
        self._version_bytes = self.version.encode()
        # Each session's plain append packed once up to its message (_write.extend, the hot path).
        self.heads = AppendHeads(self, self.version, codec)

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
            raise InvalidArgumentType("model must be a str and max_turns an int >= 0", sid)
        fields: list[str | int] = ["model", model, "max_turns", max_turns]
        if system_message is not None:
            if not isinstance(system_message, str):
                raise InvalidArgumentType("system_message must be a str or None", sid)
            fields += ["system_message", system_message]
        for key, value in self.metadata_fields(sid, metadata or {}):
            fields += [key, value]
        return fields

    def ledger(self, sid: SessionId) -> tuple[str, ...]:
        """The keys of the tenant ledger counting ``sid``, passed after a script's own; none
        without ``tenant_quota`` (its scripts then leave the ledgers alone, at no cost)."""
        return () if self.tenant is None else tenant_keys(self.prefix, sid, self.cluster)

    def encode(self, sid: SessionId, message: AgentMessage) -> bytes:
        """Encode and validate one message: what is stored must decode back as it was given."""
        if type(message) is not AgentMessage:
            raise InvalidMessage(sid, f"expected an AgentMessage, got {type(message).__name__}")
        if not isinstance(message.id, str) or not message.id:
            raise InvalidMessage(sid, f"a message id must be a non-empty str, got {message.id!r}")
        if message.extra is not None and STAND_IN in message.extra:  # back from a durable record
            sealed = unwrap(sid, message)
            if sealed is not None:
                return sealed
        try:
            data = self.codec.encode(message)
            self.codec.check_fresh(data)
        except (msgspec.DecodeError, msgspec.EncodeError, TypeError, OverflowError) as exc:
            raise InvalidMessage(sid, f"message {message.id!r} does not match the schema: {exc}") from exc
        if len(data) > self.max_message_bytes:
            raise MessageTooLarge(sid, message.id, len(data), self.max_message_bytes)
        return data if self.encryption is None else seal(self.encryption, sid, message.id, data)

    def tokens(self, sid: SessionId, message: AgentMessage) -> int:
        """The message's token count by the store's ``token_counter``, checked."""
        count = self.count_tokens(message)
        if type(count) is not int or count < 0:
            raise InvalidArgumentType(
                f"token_counter returned {count!r} for {message.id!r}: not an int >= 0", sid
            )
        return count

    def check(
        self,
        sid: SessionId,
        reply: Sequence[Any],
        expected: int | None = None,
        *,
        op: str = "",
        record: str = "",
        token: int | None = None,
        after: int = -1,
        message_id: str = "",
        tool_use_id: str = "",
    ) -> None:
        """Turn a script's status reply into the typed error it stands for (``_protocol.ERRORS``)."""
        if reply[0] != OK:
            raise error_for(
                reply,
                sid,
                schema=self.schema.current,
                codec=self.codec.name,
                op=op,
                prefix=self.prefix,
                record=record,
                expected=expected,
                token=token,
                after=after,
                message_id=message_id,
                tool_use_id=tool_use_id,
            )

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
            self.check(sid, [Status.VERSION_MISMATCH, version])

    def codec_named(self, sid: SessionId, name: bytes | None) -> Codec:
        codec = self._readers.get(name.decode("utf-8", "backslashreplace")) if name else None
        if codec is None:
            raise CorruptSession(sid, f"unknown codec {name!r} in the meta hash")
        return codec

    def session(self, sid: SessionId, meta: dict[bytes, bytes], messages: Messages) -> Session:
        session = Session.from_state(sid, self.session_state(sid, meta))
        session.messages = messages
        return session

    def session_state(self, sid: SessionId, meta: dict[bytes, bytes], seq: int | None = None) -> SessionState:
        """A meta hash's session fields at ``seq`` (else its own): their one reader; ``CorruptSession``."""
        system = meta.get(b"system_message")
        try:
            return SessionState(
                model=meta.get(b"model", b"").decode(),
                max_turns=int(meta.get(b"max_turns", 0)),
                system_message=None if system is None else system.decode(),
                metadata={k[2:].decode(): v.decode() for k, v in meta.items() if k[:2] == _META},
                created_at=stored_time(meta.get(b"created_at")),
                updated_at=stored_time(meta.get(b"updated_at")),
                seq=int(meta.get(b"seq", 0)) if seq is None else seq,
                ttl_ms=int(meta.get(b"ttl_ms", 0)),
                max_messages=int(meta.get(b"max_messages", 0)),
                max_session_bytes=int(meta.get(b"max_bytes", 0)),
                summary=self.summary_of(sid, meta) if b"summary" in meta else None,
                summary_seq=int(meta.get(b"summary_seq", 0)),
            )
        except (ValueError, UnicodeDecodeError, OverflowError) as exc:  # Overflow: a timestamp
            raise CorruptSession(sid, f"unreadable meta hash: {exc!r}") from exc

    def summary_of(self, sid: SessionId, meta: dict[bytes, bytes]) -> AgentMessage | None:
        """The session's stored summary (``store.summarize``) or ``None``; an encrypted one as its
        sealed stand-in, as the record keeps it (``context`` opens it; no key is needed here)."""
        raw = meta.get(b"summary")
        return self.codec_named(sid, meta.get(b"codec")).keeping_sealed(sid, [raw])[0] if raw else None

    def metadata_field(self, sid: SessionId, key: object) -> str:
        """The meta hash field that holds metadata ``key`` (checked)."""
        if not isinstance(key, str) or not key:
            raise InvalidArgumentType(f"metadata keys must be non-empty str, got {key!r}", sid)
        return _META_PREFIX + key

    def metadata_fields(self, sid: SessionId, metadata: Mapping[str, str]) -> list[tuple[str, str]]:
        """The meta hash's (field, value) pairs for ``metadata`` (checked)."""
        pairs = []
        for key, value in metadata.items():
            if not isinstance(value, str):
                raise InvalidArgumentType(f"metadata value for {key!r} must be a str", sid)
            pairs.append((self.metadata_field(sid, key), value))
        return pairs
