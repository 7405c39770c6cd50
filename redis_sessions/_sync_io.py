"""How a write-behind worker talks to Redis: one small interface over a synchronous store.

The worker sends the same few calls over and over for many sessions at once, so it needs more than
one call at a time: ``run_all`` sends many in one round trip (a pipeline; on a cluster redis-py
sends each node its share), and falls back to the store's general path, one call at a time, for
any call the fast path could not finish (a lost script cache, a moved slot, a dropped connection):
that path owns retries and recovery. ``run_on`` sends a script to one cluster node (the dirty
indexes of the slots it owns); ``nodes`` says which node owns which slots.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import redis.exceptions

from ._calls import Call, Script
from ._core import StoreCore
from ._lean import UNSENT
from ._scripts import SCRIPTS, SHAS
from .errors import StoreError
from .keys import slot
from .models import SessionId
from .retry import TRANSIENT

if TYPE_CHECKING:
    from .store import SessionStore

__all__ = ["SyncTransport"]

T = TypeVar("T")


class SyncTransport:
    """The calls of one synchronous store, for the write-behind worker."""

    def __init__(self, store: SessionStore) -> None:
        self.store = store  # only to close it: every call goes through its transport
        self.transport = store.transport
        self.client = store.transport.client
        self.core: StoreCore = store.transport.core
        self.cluster = store.transport.cluster
        telemetry = store.transport.telemetry
        self.server = {} if telemetry is None else telemetry.server_of(self.client)  # spans' server.*

    def run(self, call: Call[T]) -> T:
        """One call, through the store's transport (its retries)."""
        return self.transport.run(call)

    def run_all(self, calls: Sequence[Call[T]]) -> list[T]:
        """Many script calls in one round trip; each parsed as ``run`` would. With telemetry, one
        ``BATCH <op>`` span for the round trip (each call sent again alone gets its own inside it)."""
        if len(calls) < 2:
            return [self.run(call) for call in calls]
        telemetry = self.transport.telemetry
        if telemetry is None or not telemetry.listening():
            return self._run_all(calls)
        with telemetry.batch(calls, self.server):
            return self._run_all(calls)

    def _run_all(self, calls: Sequence[Call[T]]) -> list[T]:
        """First on the store's lean line (hiredis packs each command whole: redis-py's packing
        encodes every argument in Python, a dozen a session); anything it does not finish (an
        error reply, a cluster) goes through a redis-py pipeline, and what that does not finish
        one by one, on the general path."""
        commands = []
        for call in calls:
            assert call.script is not None
            commands.append(("EVALSHA", SHAS[call.script], len(call.keys), *call.keys, *call.args))
        try:
            lean = self.transport.lean.pipeline(commands)
        except (redis.exceptions.RedisError, OSError):
            return [self.run(call) for call in calls]  # the general path, with its retries
        if lean is not UNSENT:  # every call ran, and each is idempotent: parsed as run() would
            return [call.parse(reply) for call, reply in zip(calls, lean, strict=True)]
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for call in calls:
                    assert call.script is not None
                    pipe.execute_command("EVALSHA", SHAS[call.script], len(call.keys), *call.keys, *call.args)  # type: ignore[no-untyped-call, unused-ignore]
                replies = pipe.execute(raise_on_error=False)
        except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException, OSError):
            return [self.run(call) for call in calls]  # the general path, with its retries
        return [
            self.run(c) if isinstance(r, Exception) else c.parse(r)
            for c, r in zip(calls, replies, strict=True)
        ]

    def run_on(self, call: Call[T], node: Any) -> T:
        """A script call on ``node`` (a cluster primary; ``None``: the one server); a transport
        fault is retried under the store's policy, then ``StoreUnavailable``, as for any call."""
        if node is None:
            return self.run(call)
        parse = call.parse  # typed before the narrowing below (which forgets T)
        assert isinstance(call, Script)
        script = call.script
        args = (len(call.keys), *call.keys, *call.args)
        client = self.client

        def send() -> Any:
            try:
                return client.execute_command("EVALSHA", SHAS[script], *args, target_nodes=node)  # type: ignore[no-untyped-call, unused-ignore]
            except redis.exceptions.NoScriptError:
                return client.execute_command("EVAL", SCRIPTS[script], *args, target_nodes=node)  # type: ignore[no-untyped-call, unused-ignore]

        try:
            try:
                reply = send()
            except TRANSIENT as exc:
                reply = self.transport.retried(call.op, None, exc, send)
        except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException) as exc:
            raise StoreError(call.op, None, f"{type(exc).__name__}: {exc}") from exc
        return parse(reply)

    def chunks(self, size: int, sids: list[SessionId]) -> list[list[SessionId]]:
        """Sessions that may share one script call, ``size`` at most: any on one server, one
        slot's on a cluster (a script may only touch keys of one slot there)."""
        if not self.cluster:
            return [sids[i : i + size] for i in range(0, len(sids), size)]
        by_slot: dict[int, list[SessionId]] = defaultdict(list)
        for sid in sids:
            by_slot[slot(sid)].append(sid)
        return [group[i : i + size] for group in by_slot.values() for i in range(0, len(group), size)]

    def nodes(self, slots: Iterable[int]) -> dict[Any, list[int]]:
        """``slots`` by the primary that owns them (all under ``None`` on one server)."""
        if not self.cluster:
            return {None: list(slots)}
        self.transport.slot_map()
        cache = self.client.nodes_manager.slots_cache  # type: ignore[union-attr]
        owners: dict[Any, list[int]] = defaultdict(list)
        for number in slots:
            owners[cache[number][0]].append(number)
        return owners

    def close(self) -> None:
        self.store.close()
