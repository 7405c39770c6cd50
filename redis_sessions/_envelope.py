"""The sealed form of one stored message (``encryption=``), and its stand-in in a durable record.

A sealed message, in the Redis list (and, base64, in the backing record)::

    0xC1 | 0x01 | len(key_id):u8 | key_id | len(message_id):u16 | message_id | nonce:12 | AES-GCM(body)

``0xC1`` is the one byte no MessagePack value starts with, and no JSON text: a sealed item is never
taken for a plain one, so sessions written before encryption was switched on (and plain messages
beside sealed ones) still read. ``body`` is the message as the codec encodes it. The associated data
is the session id, the key id and the message id, so the tag fails for a body moved to another
session or put under another message's id.

**Why the message id, and not the seq or the list index, is the "position".** A message's id is its
place in the session: unique within it (appends are idempotent by id), chosen before the first send
(so a retried append seals the same message again), and kept through trimming (``max_messages``
shifts list indices), ``pop``, the durable record, export and import. The seq is only known inside
the append script, after the body was sealed: concurrent appenders get theirs there. So a body can
be reordered within its own session by someone who can write to Redis; it cannot be moved to another
session or relabelled, and it never opens as garbage.

The write-behind worker needs no key: it hands the backing record a **stand-in**, an ``AgentMessage``
with the message's id, no content, and the sealed bytes in ``extra``; read-through stores those bytes
back as they were. So the durable record holds ciphertext too.
"""

from __future__ import annotations

import base64
import struct
from typing import Any, Final, NamedTuple

from .encryption import NONCE_BYTES, Encryption
from .errors import CorruptSession, DecryptionError, InvalidArgument
from .models import AgentMessage, Role, SessionId

__all__ = ["MAGIC", "STAND_IN", "Header", "header", "is_sealed", "open_sealed", "seal", "stand_in", "unwrap"]

MAGIC: Final = b"\xc1"
_VERSION: Final = 1
STAND_IN: Final = "redis_sessions.sealed"
"""The ``extra`` key of a stand-in: the sealed bytes, base64."""


class Header(NamedTuple):
    """What a sealed message says in the clear: its key id, its message id, where the nonce starts."""

    key_id: str
    message_id: str
    nonce_at: int


def is_sealed(data: bytes) -> bool:
    return data[:1] == MAGIC


def _associated(sid: SessionId, key_id: bytes, message_id: bytes) -> bytes:
    return b"redis-sessions/1\x00" + sid.bytes + key_id + b"\x00" + message_id


def seal(encryption: Encryption, sid: SessionId, message_id: str, body: bytes) -> bytes:
    """``body`` (one encoded message) sealed under ``sid``'s current key."""
    key_id, cipher = encryption.sealing(sid)
    kid, mid = key_id.encode(), message_id.encode()
    if len(mid) > 0xFFFF:
        raise InvalidArgument(f"an encrypted message's id must be at most 65535 bytes, got {len(mid)}", sid)
    nonce = encryption.nonce()
    head = MAGIC + bytes((_VERSION, len(kid))) + kid + struct.pack(">H", len(mid)) + mid + nonce
    return head + bytes(cipher.encrypt(nonce, body, _associated(sid, kid, mid)))


def header(sid: SessionId, data: bytes, position: int | None) -> Header:
    """The clear part of a sealed message; ``CorruptSession`` if it is cut short or of another version."""
    try:
        if data[1] != _VERSION:
            raise CorruptSession(sid, f"sealed with envelope version {data[1]}, not {_VERSION}", position)
        at = 3 + data[2]
        key_id = data[3:at].decode()
        (size,) = struct.unpack_from(">H", data, at)
        message_id = data[at + 2 : at + 2 + size].decode()
        nonce_at = at + 2 + size
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise CorruptSession(sid, f"a sealed message with a broken header: {exc!r}", position) from exc
    if len(data) < nonce_at + NONCE_BYTES + 16:
        raise CorruptSession(sid, "a sealed message cut short", position)
    return Header(key_id, message_id, nonce_at)


def open_sealed(encryption: Encryption | None, sid: SessionId, data: bytes, position: int | None) -> bytes:
    """The body of a sealed message; ``DecryptionError`` (naming session, position, message and
    key ids) when there is no keyring, no such key, or the tag does not match."""
    if encryption is not None:  # the read path: no str round trips; any doubt takes the slow path
        try:
            at = 3 + data[2]
            nonce_at = at + 2 + ((data[at] << 8) | data[at + 1])
            cipher = encryption.opening_raw(sid, data[3:at]) if data[1] == _VERSION else None
            if cipher is not None:
                associated = (
                    b"redis-sessions/1\x00" + sid.bytes + data[3:at] + b"\x00" + data[at + 2 : nonce_at]
                )
                body: bytes = cipher.decrypt(
                    data[nonce_at : nonce_at + NONCE_BYTES], data[nonce_at + NONCE_BYTES :], associated
                )
                return body
        except Exception:  # a broken header or a bad tag: the slow path below says which, precisely
            pass
    head = header(sid, data, position)
    if encryption is None:
        reason = "this store has no encryption= keyring"
        raise DecryptionError(sid, position, head.message_id, head.key_id, reason)
    cipher = encryption.opening(sid, head.key_id)
    if cipher is None:
        raise DecryptionError(sid, position, head.message_id, head.key_id, "the keyring has no such key")
    from cryptography.exceptions import InvalidTag  # the crypto extra: Encryption needed it already

    nonce = data[head.nonce_at : head.nonce_at + NONCE_BYTES]
    associated = _associated(sid, head.key_id.encode(), head.message_id.encode())
    try:
        return bytes(cipher.decrypt(nonce, data[head.nonce_at + NONCE_BYTES :], associated))
    except InvalidTag:
        reason = "wrong key, or altered bytes (a body copied from another session or message)"
        raise DecryptionError(sid, position, head.message_id, head.key_id, reason) from None


def stand_in(sid: SessionId, data: bytes, position: int | None) -> AgentMessage:
    """A sealed message as an ``AgentMessage`` a backing record can keep without a key."""
    head = header(sid, data, position)
    return AgentMessage(
        role=Role.SYSTEM, content=[], id=head.message_id, extra={STAND_IN: base64.b64encode(data).decode()}
    )


def unwrap(sid: SessionId, message: AgentMessage) -> bytes | None:
    """The sealed bytes a stand-in carries (checked against its id), or ``None`` for a message."""
    extra: Any = message.extra
    if not extra or STAND_IN not in extra or message.content:
        return None
    try:
        data = base64.b64decode(extra[STAND_IN], validate=True)
    except (ValueError, TypeError) as exc:
        raise CorruptSession(sid, f"a sealed stand-in that is not base64: {exc}") from exc
    if not is_sealed(data) or header(sid, data, None).message_id != message.id:
        raise CorruptSession(sid, f"a sealed stand-in whose bytes are not message {message.id!r}")
    return data
