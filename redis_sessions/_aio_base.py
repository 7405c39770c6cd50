"""``AsyncStoreBase``: how ``AsyncSessionStore`` sends a call and recovers from what a call finds.

Sending: EVALSHA (EVAL after the script cache was lost), MULTI/EXEC or a plain pipeline, ``WAIT``
pipelined behind a write when ``wait_replicas`` asks for it, transport faults retried under the one
``RetryPolicy``. Recovering: a miss read through from the backing store, an older schema version
upgraded in place, an eviction repaired. The public methods stay in ``aio.py``.

This module is the source of ``_base.py`` (``python tools/unasync.py``), like ``aio.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import redis.exceptions
from redis.asyncio.cluster import RedisCluster

from ._core import SCRIPTS, SHAS, Call, StoreCore
from ._durable import raw_session, upgraded
from ._durable import restore as restore_call
from ._replication import WRITE_SCRIPTS, Wait, Waited, handover
from .errors import (
    ConflictError,
    CorruptSession,
    SchemaVersionError,
    SessionError,
    SessionExists,
    SessionNotFound,
    StoreError,
    StoreUnavailable,
)
from .models import SessionId
from .retry import REFUSED, TRANSIENT, RetryPolicy, driver_fault

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from .persistence import PersistenceAdapter
    from .writebehind import SyncWorker

__all__ = ["RECOVERABLE", "AsyncStoreBase"]

T = TypeVar("T")
_FAILED = (redis.exceptions.RedisError, redis.exceptions.RedisClusterException)
RECOVERABLE = (SessionNotFound, SchemaVersionError, CorruptSession)
"""What a call can find that ``_recover`` may mend (with a backing store, or a schema upgrade)."""


class AsyncStoreBase:
    """Sending and recovery, for ``AsyncSessionStore`` (which sets these attributes)."""

    client: Redis | RedisCluster
    _core: StoreCore
    _backing: PersistenceAdapter | None
    _retry: RetryPolicy | None
    _wait: Wait | None
    _cluster: bool
    _worker: SyncWorker | None

    async def _through(self, make: Callable[[], Call[T]], missing: Callable[[T], bool] | None = None) -> T:
        """Run the call, recovering from a miss, an older schema version or an eviction (see
        ``_recover``); ``missing(result)`` says a result means "not in Redis" (``load``, ``exists``)."""
        call = make()
        try:
            result = await self._run(call)
        except RECOVERABLE as exc:
            return await self._recover(exc, make, missing)
        if missing is not None and self._backing is not None and call.sid is not None and missing(result):
            found, again = await self._again(make, call.sid, missing)
            return again if found else result
        return result

    async def _recover(
        self, error: SessionError, make: Callable[[], Call[T]], missing: Callable[[T], bool] | None = None
    ) -> T:
        """After ``error``, mend the session and run the call again, or raise ``error``:
        a session Redis lacks is read through from the backing store (two processes that miss at
        once restore it once: the restore is one script, the second finds the first's session);
        an older schema version is upgraded in place; a session eviction took keys of is restored
        over what is left."""
        sid = error.session_id
        if sid is not None:
            if isinstance(error, SessionNotFound) and self._backing is not None:
                found, again = await self._again(make, sid, missing)
                if found:
                    return again  # type: ignore[no-any-return]
            elif isinstance(error, SchemaVersionError) and await self._upgrade(sid, error):
                return await self._run(make())
            elif isinstance(error, CorruptSession) and error.evicted and self._backing is not None:
                found, again = await self._again(make, sid, missing, repair=True)
                if found:
                    return again  # type: ignore[no-any-return]
        raise error

    async def _again(
        self,
        make: Callable[[], Call[T]],
        sid: SessionId,
        missing: Callable[[T], bool] | None,
        repair: bool = False,
    ) -> tuple[bool, Any]:
        """Restore the session from the backing store and run the call again; ``(False, None)`` if
        the backing store has no such session. A restored session is clean, so under a volatile
        eviction policy Redis may evict it again before the call: a few tries."""
        for _ in range(3):
            if not await self._hydrate(sid, repair=repair):
                return False, None
            repair = False
            try:
                result = await self._run(make())
            except SessionNotFound:
                continue
            if missing is None or not missing(result):
                return True, result
        raise StoreError("read-through", sid, "Redis evicted the session each time it was restored")

    async def _upgrade(self, sid: SessionId, error: SchemaVersionError) -> bool:
        """Bring a session of an older schema version up to this one in Redis, in place (see
        ``migrations``); ``False`` if it cannot be (newer, or no upgrade step registered)."""
        schema = self._core.schema
        if type(error.found) is not int or error.found >= schema.current or not schema.can_read(error.found):
            return False
        raw = await self._run(raw_session(self._core, sid))
        if raw is None:
            return True  # gone meanwhile: the call again says what it finds
        with contextlib.suppress(ConflictError):  # changed meanwhile (or upgraded by another): again
            await self._run(
                restore_call(self._core, sid, upgraded(self._core, sid, raw), True, upgrading=raw)
            )
        return True

    async def _hydrate(self, sid: SessionId, *, repair: bool = False) -> bool:
        """Restore the session from the backing store (``repair``: over what eviction left of it)."""
        assert self._backing is not None
        if self._worker is not None and self._worker.unbound is not None:
            raise self._worker.unbound  # the prefix moved to another record: ours is stale now
        state = await asyncio.to_thread(self._backing.load_session, sid)
        if state is None:
            return False
        with contextlib.suppress(SessionExists):  # another process restored it first
            await self._run(restore_call(self._core, sid, state, "!" if repair else False))
        return True

    async def _scan_nodes(self) -> Sequence[Any]:
        """Where SCAN must look: the one server (``None``), or each primary of a cluster."""
        if not isinstance(self.client, RedisCluster):
            return [None]
        await self._slot_map()
        primaries: Sequence[Any] = self.client.get_primaries()  # type: ignore[no-untyped-call, unused-ignore]
        return primaries

    async def _slot_map(self) -> None:
        """Load the cluster's slot map if the client has none yet (the asyncio one connects lazily)."""
        if not self.client.get_primaries():  # type: ignore[union-attr, no-untyped-call, unused-ignore]
            await self.client.nodes_manager.initialize()  # type: ignore[union-attr]

    async def _run(self, call: Call[T], node: Any = None) -> T:
        try:
            try:
                reply = await self._send(call, node)
            except TRANSIENT as exc:
                reply = await self._resend(call, node, exc)
            except (AttributeError, TypeError) as exc:
                if not driver_fault(exc):  # see retry.driver_fault: a broken connection, retried
                    raise
                reply = await self._resend(call, node, _broken(exc))
        except _FAILED as exc:
            if call.fallback is not None and self._core.out_of_memory(exc):
                return await self._run(call.fallback, node)
            raise self._core.refused(call, exc) from exc
        if type(reply) is Waited:
            result = call.parse(reply.reply)  # the script's own verdict first, then replication's
            self._wait.check(call, reply.acknowledged)  # type: ignore[union-attr]
            return result
        return call.parse(reply)

    async def _send(self, call: Call[Any], node: Any = None) -> Any:
        if call.script is not None:
            # EVALSHA straight away: redis-py's Script wrapper costs ~7 us of CPU per call, 10 % of
            # an append. A server that lost its script cache (restart, SCRIPT FLUSH) gets it again.
            command = ("EVALSHA", SHAS[call.script], len(call.keys), *call.keys, *call.args)
            if self._wait is not None and call.script in WRITE_SCRIPTS:
                return await self._send_waited(call.keys[0], command, self._wait.command, call.script)
            try:
                return await self.client.execute_command(*command)  # type: ignore[no-untyped-call, unused-ignore]
            except redis.exceptions.NoScriptError:
                # EVAL runs the script and caches it in one step: no SCRIPT FLUSH can slip in
                # between loading and running it, as it could between SCRIPT LOAD and EVALSHA.
                source = ("EVAL", SCRIPTS[call.script], *command[2:])
                return await self.client.execute_command(*source)  # type: ignore[no-untyped-call, unused-ignore]
        if call.multi:
            async with self.client.pipeline(transaction=call.atomic) as pipe:
                for command in call.multi:
                    pipe.execute_command(*command)  # type: ignore[no-untyped-call, unused-ignore]
                return await pipe.execute()
        if node is not None:
            return await self.client.execute_command(*call.args, target_nodes=node)  # type: ignore[no-untyped-call, unused-ignore]
        return await self.client.execute_command(*call.args)  # type: ignore[no-untyped-call, unused-ignore]

    async def _send_waited(
        self, key: str, command: tuple[Any, ...], wait: tuple[Any, ...], script: str
    ) -> Waited:
        """The write script and ``WAIT`` in one pipeline, so both use one connection to one node."""
        if self._cluster:
            await self._slot_map()
        for _ in range(3):
            node = self.client.get_node_from_key(key) if self._cluster else None  # type: ignore[union-attr]
            target = {} if node is None else {"target_nodes": node}
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.execute_command(*command)  # type: ignore[no-untyped-call, unused-ignore]
                pipe.execute_command(*wait, **target)  # type: ignore[no-untyped-call, unused-ignore]
                reply, acknowledged = await pipe.execute(raise_on_error=False)
            if isinstance(reply, redis.exceptions.NoScriptError):
                await self.client.script_load(SCRIPTS[script])
                continue
            if node is not None and self.client.get_node_from_key(key) is not node:  # type: ignore[union-attr]
                # The slot moved (a failover, a resharding): the script followed the redirection,
                # but WAIT asked the old owner, and may have failed there. Again: appends are
                # idempotent, and a replay is itself a write that the next WAIT covers.
                continue
            if isinstance(reply, Exception):
                raise reply
            if isinstance(acknowledged, Exception):
                raise handover(acknowledged)
            return Waited(reply, int(acknowledged))
        raise redis.exceptions.TryAgainError(f"the owner of {key!r} kept changing; WAIT not confirmed")

    async def _resend(self, call: Call[Any], node: Any, error: Exception) -> Any:
        """Retry a call whose first try failed in transport; the failure counts as attempt 1."""
        return await self._retried(call.op, call.sid, error, lambda: self._send(call, node))

    async def _retried(
        self, op: str, sid: SessionId | None, error: Exception, again: Callable[[], Any]
    ) -> Any:
        """Retry ``await again()`` under the retry policy after its first try failed in transport
        with ``error`` (attempt 1); ``StoreUnavailable`` when the policy gives up."""
        if isinstance(error, REFUSED):
            raise error
        if self._retry is None:
            raise StoreUnavailable(op, sid, 1, error) from error
        pending, attempts = [error], 0
        try:
            async for attempt in self._retry.async_retrying():
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    if pending:
                        raise pending.pop()
                    try:
                        return await again()
                    except (AttributeError, TypeError) as exc:
                        if not driver_fault(exc):
                            raise
                        raise _broken(exc) from exc
        except REFUSED:
            raise
        except TRANSIENT as exc:
            raise StoreUnavailable(op, sid, attempts, exc) from exc
        raise AssertionError("unreachable: tenacity returns or raises")


def _broken(error: Exception) -> redis.exceptions.ConnectionError:
    """A fault inside redis-py's connection code, as the connection error it stands for."""
    broken = redis.exceptions.ConnectionError(f"redis-py connection fault: {error!r}")
    broken.__cause__ = error
    return broken
