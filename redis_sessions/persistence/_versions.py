"""Which schema version a stored header or document is, read before anything else, and the
registered upgrade steps that bring an older one to this version (``migrations``).

Every adapter's reader first decodes only ``schema_version`` (``stored_version``) and refuses a
version it does not know; a version it does know but older goes through ``upgraded`` as plain data.
Nothing is ever unpickled or evaluated.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from .. import migrations
from ..errors import CorruptSession, SchemaVersionError
from ..models import SessionId, SessionState

__all__ = ["VERSION", "check_version", "json_object", "stored_version", "upgraded"]


class _Version(msgspec.Struct):
    """Only the version: decoding it skips every other field, whatever shape they have."""

    schema_version: Any = msgspec.UNSET


VERSION: Final = msgspec.json.Decoder(_Version)


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
