"""Sans-IO pieces of ``redis-sessions migrate --rekey``: re-encrypt stored messages with the current key.

A message sealed under another key id than its session's current one is opened and sealed again; a
plain one (written before ``encryption=`` was switched on) is sealed. In Redis the new bytes replace
the old in ``rekey.lua`` only where the list still holds the old ones, so appends, trims and pops
that run meanwhile are never undone: what they moved is left for the next run. In a backing record
the session is rewritten with the messages as sealed stand-ins (``_envelope``), as ``for_record``
also hands a snapshot (``save``) to a record.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from ._calls import Call, Script, Transaction
from ._core import StoreCore
from ._envelope import header, is_sealed, open_sealed, seal, stand_in, unwrap
from ._protocol import Status
from .codec import Codec
from .encryption import Encryption
from .keys import session_keys
from .models import AgentMessage, SessionId, SessionState

__all__ = ["Listed", "for_record", "listed", "put", "resealed", "resealed_state"]

Listed = tuple[bytes | None, list[bytes]] | None
"""A session's codec name and stored items, or ``None`` if it is gone."""


def listed(core: StoreCore, sid: SessionId) -> Call[Listed]:
    """The session's codec and every stored item, as they are (one MULTI/EXEC)."""

    def parse(replies: list[Any]) -> Listed:
        codec, items = replies
        return None if codec is None else (codec, list(items))

    keys = session_keys(core.prefix, sid)
    multi = (("HGET", keys.meta, "codec"), ("LRANGE", keys.messages, 0, -1))
    return Transaction("rekey", sid, keys[:2], multi, parse)


def _again(encryption: Encryption, sid: SessionId, current: str, item: bytes, plain_id: str) -> bytes | None:
    """``item`` sealed under ``current``, or ``None`` if it is already; ``plain_id``: the message id
    of a plain item (a sealed one says its own)."""
    if is_sealed(item):
        head = header(sid, item, None)
        if head.key_id == current:
            return None
        return seal(encryption, sid, head.message_id, open_sealed(encryption, sid, item, None))
    return seal(encryption, sid, plain_id, item)


def resealed(
    core: StoreCore, sid: SessionId, codec: bytes, items: Sequence[bytes]
) -> list[tuple[int, bytes, bytes]]:
    """``(index, old, new)`` for each item not sealed under the session's current key."""
    assert core.encryption is not None
    current, _ = core.encryption.sealing(sid)
    reader = core.codec_named(sid, codec)
    triples = []
    for index, item in enumerate(items):
        plain_id = "" if is_sealed(item) else reader.decode(sid, [item], index)[0].id
        new = _again(core.encryption, sid, current, item, plain_id)
        if new is not None:
            triples.append((index, item, new))
    return triples


def put(core: StoreCore, sid: SessionId, triples: Sequence[tuple[int, bytes, bytes]]) -> Call[int | None]:
    """Replace each item still as read; how many were (``None``: the session is gone)."""

    def parse(reply: list[Any]) -> int | None:
        if reply[0] != Status.OK:
            return None
        return int(reply[1])

    keys = (*session_keys(core.prefix, sid)[:2], *core.ledger(sid))
    return Script("rekey", sid, "rekey", keys, tuple(x for triple in triples for x in triple), parse)


def for_record(core: StoreCore, sid: SessionId, state: SessionState) -> SessionState:
    """``state`` as a backing record should keep it: with ``encryption=``, each message sealed
    (as its stand-in, ``_envelope``), so the durable record holds ciphertext too."""
    if core.encryption is None:
        return state
    sealed = [stand_in(sid, core.encode(sid, message), None) for message in state.messages]
    summary = None if state.summary is None else stand_in(sid, core.encode(sid, state.summary), None)
    return msgspec.structs.replace(state, messages=sealed, summary=summary)


def resealed_state(
    encryption: Encryption, codec: Codec, sid: SessionId, state: SessionState
) -> SessionState | None:
    """A backing record's session with every message sealed under the current key (as stand-ins),
    or ``None`` if each already is. A plain message is sealed as ``codec`` encodes it: the codec of
    the stores that will read it back through Redis."""
    current, _ = encryption.sealing(sid)
    messages: list[AgentMessage] = []
    changed = False
    for message in state.messages:
        sealed = unwrap(sid, message)
        item = sealed if sealed is not None else codec.encode(message)
        new = _again(encryption, sid, current, item, message.id)
        changed = changed or new is not None
        messages.append(message if new is None else stand_in(sid, new, None))
    return msgspec.structs.replace(state, messages=messages) if changed else None
