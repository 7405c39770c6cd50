"""Sans-IO writes of a conversation: ``create``, ``extend`` (``append`` is a batch of one),
``set_metadata`` and ``delete``, each ``op(core, ...) -> Call`` as every operation is (``_calls``).

Appends are idempotent (a message id already stored is not stored again) and fenced (a lease's token
that is not the live one is refused), both inside ``append.lua``: a retried call is harmless.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any, Final

from ._calls import Script
from ._core import StoreCore
from ._protocol import OK
from .errors import InvalidArgumentType
from .keys import (
    append_keys,
    compact_key,
    dirty_key,
    reply_keys,
    script_keys,
    session_id,
    session_keys,
    tokens_key,
    tombstone_key,
    tools_key,
)
from .models import AgentMessage, SessionId

__all__ = ["create", "delete", "extend", "fence_arg", "set_metadata"]

_NEW: Final = tuple.__new__


def fence_arg(sid: SessionId, fence: object) -> int | str:
    """A write's fencing token as the scripts take it (``""``: none); ``InvalidArgumentType``
    naming the session for anything but ``None`` or a lease token (an int >= 1)."""
    if fence is None:
        return ""
    if type(fence) is not int or fence < 1:
        raise InvalidArgumentType("fence must be a lease token (an int >= 1) or None", sid)
    return fence


def create(
    core: StoreCore,
    model: str,
    max_turns: int,
    system_message: str | None,
    metadata: Mapping[str, str] | None,
    sid: object,
) -> Script[SessionId]:
    """A new session (a fresh id unless ``sid``); ``SessionExists`` if the id is taken."""
    given, sid = sid is not None, uuid.uuid4() if sid is None else session_id(sid)
    try:
        fields = core.header(sid, model, max_turns, system_message, metadata)
    except InvalidArgumentType as exc:  # nothing was sent: name the call, not an id never seen
        if given:
            raise
        raise InvalidArgumentType("create(): " + str(exc).removeprefix(f"session `{sid}`: ")) from None
    if core.durable:
        fields += ["durable", 1, "record", core.record]
    if core.max_session_bytes:  # the session's own limit, as max_messages (append.lua reads it)
        fields += ["max_bytes", core.max_session_bytes]
    keys = (
        *session_keys(core.prefix, sid),
        dirty_key(core.prefix, sid, core.cluster),
        tokens_key(core.prefix, sid),
        *core.ledger(sid),
    )
    token = uuid.uuid4().hex
    args = (core.version, core.codec.name, token, core.ttl_ms, core.max_messages, *fields)

    def parse(reply: list[Any]) -> SessionId:
        core.check(sid, reply)
        return sid

    return Script("create", sid, "create", keys, args, parse)


def extend(
    core: StoreCore,
    sid: object,
    messages: Iterable[AgentMessage],
    expected_seq: int | None,
    fence: int | None = None,
) -> Script[int]:
    """Append ``messages`` all or nothing; the seq after them. (The hot path: keep it lean.)"""
    if type(sid) is not uuid.UUID:  # a call fewer for the usual id
        sid = session_id(sid)
    if expected_seq is None and fence is None and type(messages) is tuple and len(messages) == 1:
        # The plain append (one message, no expected seq, no fence): packed from its session's head.
        (message,) = messages
        data = core.encode(sid, message)  # checks the message first, then counts its tokens
        counted = str(core.tokens(sid, message))
        keys, packed, parse = core.heads.packed(sid, counted, message.id, data, _plain)
        plain = (core.version, core.codec.name, "", "", counted, message.id, data)
        return _NEW(Script, ("append", sid, "append", keys, plain, parse, packed))
    fenced = "" if fence is None else fence_arg(sid, fence)
    expected = "" if expected_seq is None else _expected(sid, expected_seq)
    items: list[Any] = []
    counts: list[str] = []  # each message's token count, kept beside it (tokens.py)
    for message in messages:
        data = core.encode(sid, message)
        items += [message.id, data]
        counts.append(str(core.tokens(sid, message)))
    args = (core.version, core.codec.name, expected, fenced, ",".join(counts), *items)
    keys = _keys(core, sid)
    parse = partial(_appended, core, sid, expected_seq, fence)  # (a closure: 4 cells, 2k instructions)
    # Script(...) runs the NamedTuple's __new__, a Python function; tuple's own is C (1.6k
    # instructions less an append under callgrind).
    return _NEW(Script, ("append", sid, "append", keys, args, parse, b""))


def set_metadata(core: StoreCore, sid: object, updates: Mapping[str, str | None]) -> Script[None]:
    """Set the keys of ``updates`` whose value is a str and remove those whose value is ``None``."""
    sid = session_id(sid)
    if not isinstance(updates, Mapping):
        raise InvalidArgumentType("metadata updates must be a mapping", sid)
    sets = [(k, v) for k, v in updates.items() if v is not None]
    dels = [core.metadata_field(sid, k) for k, v in updates.items() if v is None]
    pairs = [item for pair in core.metadata_fields(sid, dict(sets)) for item in pair]
    args = (core.version, len(sets), *pairs, *dels)

    def parse(reply: list[Any]) -> None:
        core.check(sid, reply)

    keys = (
        *session_keys(core.prefix, sid),
        dirty_key(core.prefix, sid, core.cluster),
        tokens_key(core.prefix, sid),
    )
    return Script("set_metadata", sid, "set_metadata", keys, args, parse)


def delete(core: StoreCore, sid: object) -> Script[bool]:
    """Delete every key of the session; whether there was one."""
    sid = session_id(sid)
    keys = (
        *script_keys(core.prefix, sid, core.cluster),
        tombstone_key(core.prefix, sid),
        *reply_keys(core.prefix, sid)[:2],
        tools_key(core.prefix, sid),
        tokens_key(core.prefix, sid),
        compact_key(core.prefix, sid),
        *core.ledger(sid),
    )
    return Script("delete", sid, "delete", keys, (), bool)


def _appended(
    core: StoreCore, sid: SessionId, expected_seq: int | None, fence: int | None, reply: Any
) -> int:
    """An append's seq after it, from its reply; the typed error of a refusal."""
    if reply[0] != OK:
        core.check(sid, reply, expected_seq, token=fence)
    return int(reply[1])


def _plain(core: StoreCore, sid: SessionId) -> tuple[tuple[str, ...], Callable[[Any], int]]:
    """A session's plain appends' keys and reply parser, made on its first (``AppendHeads``)."""
    return _keys(core, sid), partial(_appended, core, sid, None, None)


def _keys(core: StoreCore, sid: SessionId) -> tuple[str, ...]:
    """What an append touches: ``append_keys``, then the tenant ledger's (none without limits)."""
    return append_keys(core.prefix, sid, core.cluster) + core.ledger(sid)


def _expected(sid: SessionId, expected_seq: int | None) -> str:
    if expected_seq is None:
        return ""
    if not isinstance(expected_seq, int) or expected_seq < 0:
        raise InvalidArgumentType("expected_seq must be an int >= 0 or None", sid)
    return str(expected_seq)
