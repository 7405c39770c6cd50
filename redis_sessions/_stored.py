"""Decoding what was stored: every failure a ``msgspec.DecodeError``, and a stored message always
has its own id.

``AgentMessage.id`` defaults to a fresh random id, so that ``AgentMessage.user("hi")`` is ready to
append. A *stored* message without an id is foreign or corrupt, and must not be read as a new
message with a new random id on every read (its idempotency would be gone). msgspec calls a field's
default factory only for a missing field, so the factory itself tells the two apart: inside
``decode_persisted`` (a flag of this thread, set and reset around one synchronous ``decode``, with
no ``await`` between) it refuses. Measured alternatives were worse: a second message type with a
required id, for stored reads, decoded 18 % slower and doubled every type the codecs name; a
check after decoding cannot tell a stored id from a defaulted one.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Final, TypeVar

import msgspec

__all__ = ["decode_persisted", "id_of_a_new_message", "new_message_id"]

T = TypeVar("T")


def new_message_id() -> str:
    """A fresh random message id (32 hex digits)."""
    return uuid.uuid4().hex


class _Reading(threading.local):
    stored = False


_READING: Final = _Reading()


def id_of_a_new_message() -> str:
    """``AgentMessage.id``'s default: a new message gets a fresh id, but a stored one always has
    its own, so one read without an id is foreign or corrupt, not new (see ``decode_persisted``)."""
    if _READING.stored:
        raise msgspec.ValidationError("Object missing required field `id`")
    return new_message_id()


def decode_persisted(decode: Callable[[bytes], T], data: bytes) -> T:
    """``decode(data)`` for stored bytes, where every failure is a ``msgspec.DecodeError``: a
    message without an id is one (not a message with a new random id on every read; the default
    factory is only called for a missing id, so this costs nothing per message), and so is invalid
    UTF-8 in a string (msgspec raises ``UnicodeDecodeError`` for it)."""
    _READING.stored = True
    try:
        return decode(data)
    except UnicodeDecodeError as exc:
        raise msgspec.DecodeError(f"invalid UTF-8 in a string: {exc}") from exc
    finally:
        _READING.stored = False
