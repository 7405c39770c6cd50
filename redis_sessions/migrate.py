"""Bulk schema upgrades: bring every stored session to the active schema version, in place.

Online: each session is upgraded on its own, in Redis by the compare-and-set restore that reads
also use (an append that lands meanwhile makes the upgrade start again for that session, so
nothing appended is lost), in the backing store only for rows of an older version (write-behind
cannot write to those, so nothing races the rewrite). Resumable: a session already at the active
version is only read, so running it again after an interruption finishes the rest.
``redis-sessions migrate`` is the command for it.

``rekey_redis`` and ``rekey_backing`` (``migrate --rekey``) re-encrypt, in the same online and
resumable way, every message not sealed under its session's current key (``_rekey``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from . import _rekey as rekey
from . import migrations
from ._calls import Command
from .codec import Codec
from .encryption import Encryption
from .errors import InvalidOperation, SchemaVersionError, SessionError
from .keys import session_keys
from .models import SessionId

if TYPE_CHECKING:
    from .persistence import PersistenceAdapter
    from .store import SessionStore

__all__ = ["Migrated", "rekey_backing", "rekey_redis", "upgrade_backing", "upgrade_redis"]

Step = Callable[[SessionId], None]


class Migrated(NamedTuple):
    """What a bulk upgrade found: sessions seen, upgraded, and the ones it could not upgrade."""

    seen: int
    upgraded: int
    failed: list[tuple[SessionId, str]]


def upgrade_redis(store: SessionStore, step: Step | None = None) -> Migrated:
    """Upgrade every session under ``store``'s prefix in Redis (``step`` is called per session)."""
    transport = store.transport
    current = str(transport.core.schema.current).encode()
    seen, upgraded, failed = 0, 0, []
    for sid in store.list():
        seen += 1
        meta = session_keys(transport.core.prefix, sid).meta
        try:
            version = transport.run(Command("migrate", sid, (meta,), ("HGET", meta, "schema_version"), _raw))
            if version not in (None, current):
                store.load(sid)  # meets the older version: upgrades in place, or raises why not
                upgraded += 1
        except SessionError as exc:
            failed.append((sid, str(exc)))
        if step is not None:
            step(sid)
    return Migrated(seen, upgraded, failed)


def upgrade_backing(adapter: PersistenceAdapter, step: Step | None = None) -> Migrated:
    """Rewrite every backing-store session of an older version in the active one."""
    schema = migrations.active()
    as_stored = migrations.Schema(schema.current, {})  # reads only what is already current
    seen, upgraded, failed = 0, 0, []
    for sid in list(adapter.list_sessions()):
        seen += 1
        try:
            try:
                with migrations.using(as_stored):
                    adapter.load_session(sid)
            except SchemaVersionError as exc:
                if not isinstance(exc.found, int) or not schema.can_read(exc.found):
                    raise
                state = adapter.load_session(sid)
                if state is not None:
                    adapter.save_session(sid, state)
                    upgraded += 1
        except SessionError as exc:
            failed.append((sid, str(exc)))
        if step is not None:
            step(sid)
    return Migrated(seen, upgraded, failed)


def rekey_redis(store: SessionStore, step: Step | None = None) -> Migrated:
    """Seal every message in Redis under its session's current key (``store``'s ``encryption=``);
    ``upgraded`` counts sessions changed. A message moved meanwhile (an append, a trim, a pop) is
    left as it was and its session reported: run it again."""
    transport = store.transport
    core = transport.core
    if core.encryption is None:
        raise InvalidOperation("--rekey needs a store with encryption= (the keyring to seal with)")
    seen, upgraded, failed = 0, 0, []
    for sid in store.list():
        seen += 1
        try:
            found = transport.run(rekey.listed(core, sid))
            triples = [] if found is None else rekey.resealed(core, sid, found[0] or b"", found[1])
            if triples:
                replaced = transport.run(rekey.put(core, sid, triples))
                upgraded += 1
                if replaced is not None and replaced < len(triples):
                    failed.append((sid, f"{len(triples) - replaced} message(s) moved meanwhile: run again"))
        except SessionError as exc:
            failed.append((sid, str(exc)))
        if step is not None:
            step(sid)
    return Migrated(seen, upgraded, failed)


def rekey_backing(
    adapter: PersistenceAdapter, encryption: Encryption, codec: Codec, step: Step | None = None
) -> Migrated:
    """Seal every message of the backing record under its session's current key (as stand-ins).

    A session is rewritten whole only if the record still holds it at the seq read, checked in
    the write's own transaction (``replace_session``): one that write-behind extended meanwhile is
    left as it is and reported, for the next run, so the workers can keep running."""
    seen, upgraded, failed = 0, 0, []
    for sid in list(adapter.list_sessions()):
        seen += 1
        try:
            state = adapter.load_session(sid)
            new = None if state is None else rekey.resealed_state(encryption, codec, sid, state)
            if state is not None and new is not None:
                held = state.seq if state.seq is not None else len(state.messages)
                if adapter.replace_session(sid, new, expected_seq=held):
                    upgraded += 1
                else:
                    failed.append((sid, "write-behind extended it meanwhile: run again"))
        except SessionError as exc:
            failed.append((sid, str(exc)))
        if step is not None:
            step(sid)
    return Migrated(seen, upgraded, failed)


def _raw(reply: bytes | None) -> bytes | None:
    return reply
