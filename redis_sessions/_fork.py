"""Sans-IO calls for forking a session: a new session holding the source's messages 1..``at_seq``.

On Redis Cluster the two sessions are in different slots, so no one script can do it. A fork is
three round trips, none of which decodes a message:

1. ``read``  (``fork_read.lua`` on the source's slot): its meta hash, and its messages, ids and token
   counts through ``at_seq``, as stored bytes, in one consistent step;
2. ``stage`` (one MULTI/EXEC on the new session's slot): the copies, under staging keys of this
   attempt (``keys.staged_keys``) that expire in an hour: a crash leaves only these, never a session;
3. ``publish`` (``fork.lua``): renames them into place and writes the meta hash in one step. The
   meta hash is what makes a session exist, so the fork appears whole or not at all.

Idempotent by the new id: a retried fork whose first try was published finds it (``existing``) and
makes no second copy; ``fork.lua`` also answers a lost reply's retry with success.
"""

from __future__ import annotations

import uuid
from typing import Any, Final, NamedTuple

from ._calls import Command, Script, Transaction
from ._core import StoreCore
from ._envelope import is_sealed
from ._protocol import Status
from .errors import InvalidArgumentType, SessionExists
from .keys import dirty_key, session_id, session_keys, staged_keys, tokens_key
from .models import SessionId

__all__ = ["Snapshot", "existing", "publish", "read", "resealed", "stage"]

STAGED_MS: Final = 3_600_000
"""How long staged copies live if never published (a crash mid-fork): an hour, then they are gone."""
_CHUNK: Final = 1000
# The source's meta fields a fork does not take: its own identity, counters and replication state.
_NOT_COPIED: Final = frozenset(
    {
        b"create_token",
        b"epoch",
        b"seq",
        b"created_at",
        b"updated_at",
        b"replays",
        b"synced_seq",
        b"parent",
        b"fork_seq",
        b"tokens",
        b"synced_epoch",
        b"bytes",  # a byte limit's running total (max_bytes is copied): summed anew by the fork's append
        b"bytes_seq",
        b"expiry_ms",  # the deadline the source's keys carry (push_messages), not the fork's
    }
)
_SUMMARY: Final = (b"summary", b"summary_id", b"summary_seq", b"summary_tokens", b"summary_base")


class Snapshot(NamedTuple):
    """What ``read`` found: the source's meta fields to copy, and its stored bytes through ``at``."""

    meta: dict[bytes, bytes]
    at: int
    items: list[bytes]
    ids: list[bytes]
    counts: list[bytes]
    tokens: int


def _at(sid: SessionId, at_seq: int | None) -> str:
    if at_seq is None:
        return ""
    if type(at_seq) is not int or at_seq < 0:
        raise InvalidArgumentType(f"at_seq must be an int >= 0 or None, got {at_seq!r}", sid)
    return str(at_seq)


def existing(core: StoreCore, new: SessionId, parent: SessionId, at_seq: int | None) -> Command[bool]:
    """Whether ``new`` is this very fork already (``SessionExists`` if it is another session)."""
    meta = session_keys(core.prefix, new).meta

    def parse(reply: list[Any]) -> bool:
        made_from, fork_seq = reply
        if made_from is None:
            return False  # no such session (or one without a parent: publish refuses it)
        if made_from != str(parent).encode() or (at_seq is not None and fork_seq != str(at_seq).encode()):
            raise SessionExists(new)
        return True

    return Command("fork", new, (meta,), ("HMGET", meta, "parent", "fork_seq"), parse)


def read(core: StoreCore, sid: object, at_seq: int | None) -> Script[Snapshot]:
    """The source's meta hash and stored bytes through ``at_seq`` (default: all), one step."""
    sid = session_id(sid)
    at = _at(sid, at_seq)

    def parse(reply: list[Any]) -> Snapshot:
        core.check(sid, reply, op="fork", after=-1 if at == "" else int(at))
        _, flat, seq, items, scored, counts, tokens = reply
        meta = dict(zip(flat[::2], flat[1::2], strict=True))
        keep = {k: v for k, v in meta.items() if k not in _NOT_COPIED}
        if int(meta.get(b"summary_seq", 0) or 0) > seq:  # the summary covers messages not taken
            for field in _SUMMARY:
                keep.pop(field, None)
        return Snapshot(keep, int(seq), items, scored, counts, int(tokens))

    keys = (*session_keys(core.prefix, sid), tokens_key(core.prefix, sid))
    return Script("fork", sid, "fork_read", keys, (core.version, at), parse)


def resealed(core: StoreCore, parent: SessionId, new: SessionId, snapshot: Snapshot) -> Snapshot:
    """The snapshot sealed for ``new`` when its messages are encrypted (``encryption=``): a sealed
    body is bound to its session, so it is opened with the store's keyring and sealed again (the
    one case where a fork decodes); unencrypted bodies are copied as they are."""
    summary = snapshot.meta.get(b"summary")
    if not any(is_sealed(item) for item in (*snapshot.items, summary or b"")):
        return snapshot
    codec = core.codec_named(parent, snapshot.meta.get(b"codec"))
    items = [core.encode(new, m) for m in codec.decode(parent, snapshot.items)]
    meta = dict(snapshot.meta)
    if summary:
        meta[b"summary"] = core.encode(new, codec.decode(parent, [summary])[0])
    return snapshot._replace(meta=meta, items=items)


def stage(core: StoreCore, new: SessionId, snapshot: Snapshot, token: str) -> Transaction[None]:
    """The copies under this attempt's staging keys, in one MULTI/EXEC on the new session's slot."""
    staged = staged_keys(core.prefix, new, token)
    multi: list[tuple[Any, ...]] = [("DEL", *staged)]
    for key, values, step in ((staged[0], snapshot.items, 1), (staged[2], snapshot.counts, 1)):
        for i in range(0, len(values), _CHUNK * step):
            multi.append(("RPUSH", key, *values[i : i + _CHUNK]))
    for i in range(0, len(snapshot.ids), 2 * _CHUNK):
        pairs = snapshot.ids[i : i + 2 * _CHUNK]
        multi.append(
            ("ZADD", staged[1], *(x for j in range(0, len(pairs), 2) for x in (pairs[j + 1], pairs[j])))
        )
    multi += [("PEXPIRE", key, STAGED_MS) for key in staged]
    return Transaction("fork", new, staged[:1], tuple(multi), lambda _: None)


def publish(
    core: StoreCore, parent: SessionId, new: SessionId, snapshot: Snapshot, at_seq: int | None, token: str
) -> Script[bool]:
    """Rename the staged copies into place and write the meta hash (``fork.lua``); ``False`` when
    the staged copies expired first (stage again)."""
    keys = (
        *session_keys(core.prefix, new),
        tokens_key(core.prefix, new),
        *staged_keys(core.prefix, new, token),
        dirty_key(core.prefix, new, core.cluster),
    )
    fields = [x for pair in snapshot.meta.items() for x in pair] + [b"tokens", snapshot.tokens]
    args = (str(parent), _at(new, at_seq), snapshot.at, len(snapshot.items), uuid.uuid4().hex, *fields)

    def parse(reply: list[Any]) -> bool:
        if reply[0] == Status.CORRUPT:
            return False
        core.check(new, reply, op="fork")
        return True

    return Script("fork", new, "fork", keys, args, parse)
