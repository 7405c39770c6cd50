"""Which schema version a stored header or document is, read before anything else, and the
registered upgrade steps that bring an older one to this version (``migrations``).

Every adapter's reader first decodes only ``schema_version`` (``stored_version``) and refuses a
version it does not know; a version it does know but older goes through ``upgraded`` as plain data.
``decode_document`` reads a whole document so (the directory adapter's form). Nothing is ever
unpickled or evaluated.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from .. import migrations
from .._stored import decode_persisted
from ..errors import CorruptSession, SchemaVersionError
from ..models import AgentMessage, SessionId, SessionState

__all__ = ["VERSION", "check_version", "decode_document", "json_object", "stored_version", "upgraded"]


class _Version(msgspec.Struct):
    """Only the version: decoding it skips every other field, whatever shape they have."""

    schema_version: Any = msgspec.UNSET


VERSION: Final = msgspec.json.Decoder(_Version)
_STATE: Final = msgspec.json.Decoder(SessionState)
_MESSAGE: Final = msgspec.json.Decoder(AgentMessage)


class _Messages(msgspec.Struct):
    """The messages of a document left undecoded, to find which one is at fault."""

    messages: list[msgspec.Raw] = msgspec.field(default_factory=list)


_MESSAGES: Final = msgspec.json.Decoder(_Messages)


def stored_version(sid: SessionId, data: bytes) -> int:
    """The ``schema_version`` of a stored header or document, read before any typed decode, so
    a document of another version is reported as such even when the rest of it has a shape this
    code cannot read. A missing version is not guessed: corrupt; a non-integer one is refused."""
    try:
        found = VERSION.decode(data).schema_version
    except msgspec.DecodeError as exc:
        raise CorruptSession(sid, f"not a JSON object: {exc}") from exc
    if found is msgspec.UNSET:
        raise CorruptSession(sid, "no schema_version")
    if type(found) is not int:
        raise SchemaVersionError(sid, found, migrations.active().current)
    return found


def check_version(sid: SessionId, data: bytes) -> None:
    """Refuse a stored header or document that is not of the version this code writes."""
    found, current = stored_version(sid, data), migrations.active().current
    if found != current:
        raise SchemaVersionError(sid, found, current)


def json_object(sid: SessionId, data: bytes, position: int | None = None) -> dict[str, Any]:
    """``data`` as a plain JSON object (for an upgrade); ``CorruptSession`` if it is not one."""
    try:
        value = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise CorruptSession(sid, f"not JSON: {exc}", position) from exc
    if not isinstance(value, dict):
        raise CorruptSession(sid, f"a {type(value).__name__}, not a JSON object", position)
    return value


def upgraded(sid: SessionId, schema: migrations.Schema, found: int, data: dict[str, Any]) -> SessionState:
    """``data``, of schema version ``found``, brought to ``schema``'s current one, typed."""
    try:
        return msgspec.convert(schema.upgrade(sid, found, data), SessionState)
    except msgspec.ValidationError as exc:
        raise CorruptSession(sid, f"the upgraded session does not fit the schema: {exc}") from exc


def decode_document(sid: SessionId, data: bytes) -> SessionState:
    """A whole stored document (messages included), as the directory adapter keeps it; one of an
    older schema version is brought up to this one by the registered upgrade steps."""
    schema, found = migrations.active(), stored_version(sid, data)
    if found != schema.current:
        if not schema.can_read(found):
            raise SchemaVersionError(sid, found, schema.current)
        return upgraded(sid, schema, found, json_object(sid, data))
    try:
        return decode_persisted(_STATE.decode, data)
    except msgspec.DecodeError as exc:
        error = exc
    try:
        raw_messages = decode_persisted(_MESSAGES.decode, data).messages
    except msgspec.DecodeError:
        raw_messages = []
    for position, raw in enumerate(raw_messages):
        try:
            decode_persisted(_MESSAGE.decode, raw)
        except msgspec.DecodeError as exc:
            raise CorruptSession(sid, f"undecodable json message: {exc}", position) from exc
    raise CorruptSession(sid, str(error)) from error
