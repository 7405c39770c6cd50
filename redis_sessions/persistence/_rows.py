"""What every adapter stores and reads, with no I/O: JSON encoding, checks, and the append rule.

A session is stored as the seed's JSON ``SessionState``. The relational adapters split it in two: a
*header* (the state's JSON without ``messages``) and one JSON *body* per message; the directory
adapter keeps the whole document in one file. Either way a reader first decodes only
``schema_version`` and refuses a version it does not know, then decodes the rest typed; what does
not decode raises ``CorruptSession`` naming the session (and the message's position when one
message is at fault). Nothing is ever unpickled or evaluated.
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Final, NamedTuple

import msgspec

from .. import migrations
from .._stored import decode_persisted
from ..codec import CODECS
from ..errors import (
    CorruptSession,
    InvalidArgumentType,
    InvalidMessage,
    InvalidSessionId,
    PersistenceError,
    SchemaVersionError,
    StoreError,
)
from ..keys import session_id
from ..models import AgentMessage, SessionId, SessionState
from ._counts import kept_counts, unique_counts
from ._versions import VERSION, check_version, decode_document, json_object, stored_version, upgraded

__all__ = [
    "Header",
    "appending",
    "check_version",
    "checked_rows",
    "decode_document",
    "decode_header",
    "decode_messages",
    "document",
    "driver_errors",
    "encode_header",
    "header_after_append",
    "message_body",
    "refuse_newer",
    "snapshot",
    "stored_id",
    "unique_messages",
]

_ENCODER: Final = msgspec.json.Encoder()
_STATE: Final = msgspec.json.Decoder(SessionState)
_MESSAGE: Final = msgspec.json.Decoder(AgentMessage)
_MESSAGE_LIST: Final = msgspec.json.Decoder(list[AgentMessage])

# A header row's fields: SessionState's, in its order, less the two the rows keep. Encoding one
# of these is the same JSON as the state made into a dict less those keys (a test compares),
# without building the dict: a third of what a worker's delivery spent on its header.
_ROWS_OWN: Final = ("messages", "message_tokens")
_ROW_FIELDS: Final = [f for f in msgspec.structs.fields(SessionState) if f.name not in _ROWS_OWN]
_HeaderRow: Final = msgspec.defstruct("_HeaderRow", [f.name for f in _ROW_FIELDS], gc=False)
_ROW_OF: Final = operator.attrgetter(*(f.name for f in _ROW_FIELDS))


class Header(NamedTuple):
    """A session's header row: its JSON and the copies of three fields kept as columns for queries.

    The JSON is what is read back; the columns only let an operator (or a migration) select rows
    by version, progress or age without parsing JSON. (A tuple: a frozen dataclass took a fifth
    of the worker's header encoding to build, setting each field through ``object.__setattr__``.)
    """

    json: bytes
    schema_version: int
    seq: int
    updated_at: datetime | None


def decode_stored(
    sid: SessionId, header: bytes, bodies: Sequence[bytes], counts: Sequence[int | None] = ()
) -> SessionState:
    """A header row and its message bodies (and their stored token ``counts``, ``None`` where a
    row has none) as a ``SessionState``: of this schema version, or of an older one brought up to
    it by the registered upgrade steps (``migrations``), whose messages are counted anew."""
    schema, found = migrations.active(), stored_version(sid, header)
    if found == schema.current:
        state = decode_header(sid, header)
        state.messages = decode_messages(sid, bodies)
        state.message_tokens = kept_counts(counts, len(bodies))
        return state
    if not schema.can_read(found):
        raise SchemaVersionError(sid, found, schema.current)
    data = json_object(sid, header)
    data["messages"] = [json_object(sid, body, position) for position, body in enumerate(bodies)]
    return upgraded(sid, schema, found, data)


def refuse_newer(sid: SessionId, stored: bytes | None) -> None:
    """Refuse to replace a session a newer version of this library stored: never downgrade data.

    Anything else stored under the id (this version, an older one, bytes that do not decode) may
    be replaced by a snapshot: that is how a corrupt row is repaired.
    """
    if stored is None:
        return
    try:
        found = VERSION.decode(stored).schema_version
    except msgspec.DecodeError:
        return
    current = migrations.active().current
    if type(found) is int and found > current:
        raise SchemaVersionError(sid, found, current)


def decode_header(sid: SessionId, data: bytes) -> SessionState:
    """A header row as a ``SessionState`` (its ``messages`` are the caller's to fill in)."""
    check_version(sid, data)
    try:
        return decode_persisted(_STATE.decode, data)
    except msgspec.DecodeError as exc:
        raise CorruptSession(sid, f"header: {exc}") from exc


def decode_messages(sid: SessionId, bodies: Sequence[bytes]) -> list[AgentMessage]:
    """Message bodies in stored order; the first undecodable one is reported by its position."""
    return CODECS["json"].decode(sid, bodies)


def _checked_state(sid: SessionId, state: SessionState) -> SessionState:
    if type(state) is not SessionState:
        raise InvalidArgumentType(f"expected a SessionState, got {type(state).__name__}", sid)
    current = migrations.active().current
    if state.schema_version != current:
        raise SchemaVersionError(sid, state.schema_version, current)
    return state


def encode_header(sid: SessionId, state: SessionState, count: int = 0) -> Header:
    """The header row of ``state``: its JSON without ``messages``, checked to decode back.

    The JSON keeps ``seq`` as the state has it (``None`` included, so a snapshot loads back equal);
    the ``seq`` column needs a number, and takes ``count``, the number of stored messages, when the
    state has none: what ``Session.from_state`` counts in that case.
    """
    _checked_state(sid, state)
    try:
        data = _ENCODER.encode(_HeaderRow(*_ROW_OF(state)))
        decode_persisted(_STATE.decode, data)
    except (msgspec.DecodeError, msgspec.EncodeError, TypeError, OverflowError) as exc:
        raise InvalidArgumentType(f"the state does not match the schema: {exc}", sid) from exc
    column_seq = state.seq if state.seq is not None else count
    return Header(data, state.schema_version, column_seq, state.updated_at)


def snapshot(sid: SessionId, state: SessionState) -> tuple[Header, list[tuple[str, bytes]], list[int | None]]:
    """The header row, the ``(id, body)`` rows that store ``state`` (the first of each id) and
    their token counts (``state.message_tokens``; ``None`` where it has none)."""
    _checked_state(sid, state)
    rows = unique_messages(sid, state.messages)
    return encode_header(sid, state, len(rows)), rows, unique_counts(state)


def document(header: bytes, bodies: Sequence[bytes], counts: Sequence[int | None] = ()) -> bytes:
    """The seed's whole JSON document from a header row and message bodies, spliced, not re-encoded,
    with the messages' token counts (``message_tokens``) when any has one.

    A header is always a JSON object holding at least ``schema_version``, so ``messages`` goes
    in before its closing brace.
    """
    if any(c is not None for c in counts):
        tokens = b",".join(b"null" if c is None else b"%d" % c for c in counts)
        return b'%s,"messages":[%s],"message_tokens":[%s]}' % (header[:-1], b",".join(bodies), tokens)
    return b'%s,"messages":[%s]}' % (header[:-1], b",".join(bodies))


def message_body(message: AgentMessage) -> bytes:
    """A stored message's JSON body (the message came from a decoded document: it is valid)."""
    return _ENCODER.encode(message)


def unique_messages(sid: SessionId, messages: Sequence[AgentMessage]) -> list[tuple[str, bytes]]:
    """``(id, JSON body)`` of each message, the first of each id only (``checked_rows``)."""
    return checked_rows(sid, messages, unique=True)


def checked_rows(
    sid: SessionId, messages: Sequence[AgentMessage], *, unique: bool
) -> list[tuple[str, bytes]]:
    """``(id, JSON body)`` of each message (with ``unique``, of the first of each id only),
    checked like the Redis store.

    What is stored must decode back as it was given, or a record would keep a message no reader
    can load; ``InvalidMessage`` refuses it first, before anything is written. The bodies are
    decoded back together, in one call; only when that fails is each decoded on its own, to name
    the one at fault.
    """
    seen: set[str] = set()
    out: list[tuple[str, bytes]] = []
    for message in messages:
        if type(message) is not AgentMessage:
            raise InvalidMessage(sid, f"expected an AgentMessage, got {type(message).__name__}")
        if not isinstance(message.id, str) or not message.id:
            raise InvalidMessage(sid, f"a message id must be a non-empty str, got {message.id!r}")
        if unique and message.id in seen:
            continue
        try:
            body = _ENCODER.encode(message)
        except (msgspec.EncodeError, TypeError, OverflowError) as exc:
            raise InvalidMessage(sid, f"message {message.id!r} does not match the schema: {exc}") from exc
        seen.add(message.id)
        out.append((message.id, body))
    if out:
        try:
            decode_persisted(_MESSAGE_LIST.decode, b"[%s]" % b",".join([body for _, body in out]))
        except msgspec.DecodeError:
            for message_id, body in out:
                try:
                    decode_persisted(_MESSAGE.decode, body)
                except msgspec.DecodeError as exc:
                    raise InvalidMessage(
                        sid, f"message {message_id!r} does not match the schema: {exc}"
                    ) from exc
            raise  # the list did not decode, yet each one does: not expected
    return out


def appending(
    given: SessionId | str, messages: Sequence[AgentMessage], state: SessionState | None
) -> tuple[SessionId, list[tuple[str, bytes]]]:
    """What every adapter's ``append_messages`` checks before it touches its store: the id, each
    message (``unique_messages``) and the state, if any, so a bad argument writes nothing. The
    session's id and the ``(id, body)`` rows to store."""
    sid = session_id(given)
    rows = unique_messages(sid, messages)
    if state is not None:
        encode_header(sid, state)
    return sid, rows


def header_after_append(
    stored: SessionState, stored_count: int, state: SessionState | None, added: int
) -> SessionState:
    """The header after ``added`` new messages were stored behind ``stored_count`` older ones.

    With ``state``, its scalar fields replace the stored ones; ``seq`` never goes backwards: it is
    the larger of the stored one and the state's. Without a seq to go by, each newly stored message
    counts one (as Redis counts appends). A stored header without ``seq`` counts its messages.
    """
    base = stored if state is None else state
    stored_seq = stored.seq if stored.seq is not None else stored_count
    given = state.seq if state is not None else None
    seq = max(stored_seq, given) if given is not None else stored_seq + added
    return msgspec.structs.replace(base, messages=[], seq=seq)


def stored_id(raw: object, where: str) -> SessionId:
    """The session id of a stored row or file name; ``PersistenceError`` names one that is not.

    Only the canonical form (``str(uuid)``) is accepted: an id stored in another spelling could be
    listed but never loaded, since every lookup uses the canonical one.
    """
    text = raw.decode("utf-8", "backslashreplace") if isinstance(raw, bytes) else raw
    try:
        parsed: SessionId | None = session_id(text)
    except InvalidSessionId:
        parsed = None
    if parsed is None or str(parsed) != text:
        raise PersistenceError(f"{where} holds a session id that is not a canonical UUID: {text!r}")
    return parsed


@contextlib.contextmanager
def driver_errors(
    operation: str, sid: SessionId | None, errors: tuple[type[BaseException], ...]
) -> Iterator[None]:
    """Turn the driver's own errors (locked, unreachable, disk full...) into ``StoreError``.

    Our checks raise our types already; only ``errors`` (the driver's) are wrapped, with the
    original kept as ``__cause__``. Callers retry ``StoreError`` as they retry Redis's.
    """
    try:
        yield
    except errors as exc:
        raise StoreError(operation, sid, f"{type(exc).__name__}: {exc}") from exc
