"""``Transport``: how a call of the sans-IO core reaches Redis, for ``SessionStore``.

GENERATED from ``_aio_transport.py`` by ``python tools/unasync.py``: do not edit; edit the source and
regenerate. See the source's docstring.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import redis.exceptions
from redis.cluster import RedisCluster

from ._lean import UNSENT, LeanLine
from ._quota import make_room
from ._calls import Call, Command, Script, Transaction
from ._core import StoreCore
from ._live import PUBSUB_PROBE, SHARDED_FROM
from ._loops import OneClient
from ._replication import WRITE_SCRIPTS, Wait, Waited, handover
from ._scripts import SCRIPTS, SHAS, evalsha, packed_evalsha
from .errors import StoreUnavailable, TenantQuotaExceeded
from .models import SessionId
from .retry import REFUSED, TRANSIENT, RetryPolicy, broken_connection, driver_fault

if TYPE_CHECKING:
    from redis import Redis

    from .telemetry import Telemetry

__all__ = ["Transport"]

T = TypeVar("T")
_FAILED = (redis.exceptions.RedisError, redis.exceptions.RedisClusterException)
_NAMES = {sha: name for name, sha in SHAS.items()}


class Transport:
    """Sends calls for one store: its client, its core, its retry policy and ``WAIT`` knob."""

    def __init__(
        self,
        client: Redis | RedisCluster,
        core: StoreCore,
        retry: RetryPolicy | None,
        wait: Wait | None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.clients = OneClient(client)
        """The client of each event loop (``_loops``): the asyncio store may serve several."""
        self.core = core
        self.retry = retry
        self.wait = wait
        self.cluster = isinstance(client, RedisCluster)
        self.sharded: bool | None = None  # sharded pub/sub? asked of the server on first subscribe
        self._lean: tuple[Any, LeanLine | None] = (None, None)  # the last client's, and its line
        self._lean_lines: weakref.WeakKeyDictionary[Any, LeanLine] = weakref.WeakKeyDictionary()
        self.telemetry = telemetry
        """Spans and metrics of every call (``telemetry``), or ``None``: off, nothing imported."""
        self._server = {} if telemetry is None else telemetry.server_of(client)  # its spans' server.*

    @property
    def client(self) -> Redis | RedisCluster:
        """The client for this call: the running event loop's (``_loops``)."""
        return self.clients.current()  # type: ignore[no-any-return]

    @property
    def lean(self) -> LeanLine:
        """This call's client's lean line (``_aio_lean``), the hot calls' first try: one per client,
        so one per event loop, as the pool connections it uses are."""
        client = self.clients.current()  # (not the property: a call fewer on the hot path)
        last, line = self._lean
        if last is client and line is not None:
            return line
        line = self._lean_lines.get(client)
        if line is None:
            # A synchronous store that made its client holds a connection for its lean line (_lean).
            line = self._lean_lines[client] = LeanLine(client, hold=self.clients.owns)
        self._lean = (client, line)
        return line

    def subscribe(self, sid: SessionId, *channels: str) -> Any:
        """A pub/sub connection listening on ``channels``; an outage is retried under the policy,
        then ``StoreUnavailable``, as for any call."""
        if self.sharded is None:
            self.sharded = self.run(PUBSUB_PROBE) >= SHARDED_FROM

        def subscribe() -> Any:
            pubsub = self.client.pubsub()  # type: ignore[no-untyped-call, unused-ignore]
            try:
                if self.sharded:
                    pubsub.ssubscribe(*channels)
                else:
                    pubsub.subscribe(*channels)
            except BaseException:
                pubsub.close()  # type: ignore[no-untyped-call, unused-ignore]
                raise
            return pubsub

        try:
            return subscribe()
        except TRANSIENT as exc:
            return self.retried("watch", sid, exc, subscribe)

    def notified(self, pubsub: Any, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a message on ``pubsub`` (from ``subscribe``); whether
        one came."""
        if self.cluster and self.sharded:
            got = pubsub.get_sharded_message(ignore_subscribe_messages=True, timeout=timeout)
        else:
            got = pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout)
        return got is not None

    def scan_nodes(self) -> Sequence[Any]:
        """Where SCAN must look: the one server (``None``), or each primary of a cluster."""
        if not isinstance(self.client, RedisCluster):
            return [None]
        self.slot_map()
        primaries: Sequence[Any] = self.client.get_primaries()  # type: ignore[no-untyped-call, unused-ignore]
        return primaries

    def slot_map(self) -> None:
        """Load the cluster's slot map if the client has none yet (the asyncio one connects lazily)."""
        if not self.client.get_primaries():  # type: ignore[union-attr, no-untyped-call, unused-ignore]
            self.client.nodes_manager.initialize()  # type: ignore[union-attr]

    def run(self, call: Call[T], node: Any = None) -> T:
        """Send ``call`` and parse its reply: transport faults retried, refusals typed.

        Every call of the store passes here, so this is where telemetry observes. Off, it costs one
        attribute check and no frame of its own: ``run`` is a plain function handing back ``_run``;
        on while no OpenTelemetry SDK is configured (``Telemetry.listening``), one call more."""
        telemetry = self.telemetry
        if telemetry is None or not telemetry.listening():
            return self._run(call, node)
        return self._observed(call, node, telemetry)

    def _observed(self, call: Call[T], node: Any, telemetry: Telemetry) -> T:
        """``_run`` inside the call's span, its reply parsed through it (``telemetry``)."""
        with telemetry.operation(call, self._server) as seen:
            result: T = self._run(seen.parsing(call), node)
            return seen.result(result)  # type: ignore[no-any-return]

    def _run(self, call: Call[T], node: Any = None, rooms: int = 0) -> T:
        try:
            try:
                reply = self._sending(call, node)
                if reply is UNSENT:
                    reply = self._send(call, node, lean=False)
            except TRANSIENT as exc:
                reply = self._resend(call, node, exc)
            except (AttributeError, TypeError) as exc:
                if not driver_fault(exc):  # see retry.driver_fault: a broken connection, retried
                    raise
                reply = self._resend(call, node, broken_connection(exc))
        except _FAILED as exc:
            fallback: Script[T] | None = call.fallback if isinstance(call, Transaction) else None
            if fallback is not None and self.core.out_of_memory(exc):
                return self.run(fallback, node)
            raise self.core.refused(call, exc) from exc
        try:
            if type(reply) is Waited:
                result = call.parse(reply.reply)  # the script's own verdict first, then replication's
                self.wait.check(call, reply.acknowledged)  # type: ignore[union-attr]
                return result
            return call.parse(reply)
        except TenantQuotaExceeded as exc:  # tenant_quota: the ledger has no room (_aio_quota)
            if self.core.tenant is None or call.op == "tenant" or rooms >= 3:
                raise
            make_room(self.run, self.core, exc)
        return self._run(call, node, rooms + 1)

    def _sending(self, call: Call[Any], node: Any) -> Any:
        """A script on the lean line (its reply, an error reply as its exception instance, or
        ``UNSENT``: go the general way), else ``_send``. asyncio: a plain function handing back the
        lean line's awaitable (often the auto-pipeline's future): no frame between caller and reply."""
        if isinstance(call, Script) and (self.wait is None or call.script not in WRITE_SCRIPTS):
            last, line = self._lean  # the lean property's first lines: a call fewer
            if last is not self.clients.current() or line is None:
                line = self.lean
            if line.pool is not None:
                return line.send(call.packed or packed_evalsha(call.script, call.keys, call.args))
        return self._send(call, node)

    def _send(self, call: Call[Any], node: Any = None, lean: bool = True) -> Any:
        """One round trip for ``call``, by its shape (``_calls``): a script the general way; pipelines
        and transactions try the lean line first (``lean``: not on a retry, which goes the general way)."""
        if isinstance(call, Script):
            # EVALSHA straight away: redis-py's Script wrapper costs ~7 us of CPU per call, 10 % of
            # an append. A server that lost its script cache (restart, SCRIPT FLUSH) gets it again.
            command = evalsha(call.script, call.keys, call.args)
            if self.wait is not None and call.script in WRITE_SCRIPTS:
                return self._send_waited(call.keys[0], command, self.wait.command, call.script)
            try:
                return self.client.execute_command(*command)  # type: ignore[no-untyped-call, unused-ignore]
            except redis.exceptions.NoScriptError:
                # EVAL runs the script and caches it in one step: no SCRIPT FLUSH can slip in
                # between loading and running it, as it could between SCRIPT LOAD and EVALSHA.
                source = ("EVAL", SCRIPTS[call.script], *command[2:])
                return self.client.execute_command(*source)  # type: ignore[no-untyped-call, unused-ignore]
        if lean and not isinstance(call, Command):
            many = self.lean.transaction if isinstance(call, Transaction) else self.lean.pipeline
            reply = many(call.multi)
            if reply is not UNSENT:
                return reply
        if not isinstance(call, Command):  # a Transaction (MULTI/EXEC) or a Pipeline
            try:
                return self._pipelined(call.multi, isinstance(call, Transaction))
            except redis.exceptions.NoScriptError:
                if isinstance(call, Transaction):
                    raise
                # A pipeline of scripts (info.lua a session) on a server that lost them: load
                # them, then send it again (reads only: running some twice changes nothing).
                for sha in {command[1] for command in call.multi if command[0] == "EVALSHA"}:
                    self.client.script_load(SCRIPTS[_NAMES[sha]])
                return self._pipelined(call.multi, False)
        if node is not None:
            return self.client.execute_command(*call.args, target_nodes=node)  # type: ignore[no-untyped-call, unused-ignore]
        return self.client.execute_command(*call.args)  # type: ignore[no-untyped-call, unused-ignore]

    def _pipelined(self, commands: Sequence[tuple[Any, ...]], transaction: bool) -> Any:
        with self.client.pipeline(transaction=transaction) as pipe:
            for command in commands:
                pipe.execute_command(*command)  # type: ignore[no-untyped-call, unused-ignore]
            return pipe.execute()

    def _send_waited(
        self, key: str, command: tuple[Any, ...], wait: tuple[Any, ...], script: str
    ) -> Waited:
        """The write script and ``WAIT`` in one pipeline, so both use one connection to one node."""
        if self.cluster:
            self.slot_map()
        for _ in range(3):
            node = self.client.get_node_from_key(key) if self.cluster else None  # type: ignore[union-attr]
            target = {} if node is None else {"target_nodes": node}
            with self.client.pipeline(transaction=False) as pipe:
                pipe.execute_command(*command)  # type: ignore[no-untyped-call, unused-ignore]
                pipe.execute_command(*wait, **target)  # type: ignore[no-untyped-call, unused-ignore]
                reply, acknowledged = pipe.execute(raise_on_error=False)
            if isinstance(reply, redis.exceptions.NoScriptError):
                self.client.script_load(SCRIPTS[script])
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

    def _resend(self, call: Call[Any], node: Any, error: Exception) -> Any:
        """Retry a call whose first try failed in transport; the failure counts as attempt 1."""
        return self.retried(call.op, call.sid, error, lambda: self._send(call, node, lean=False))

    def retried(
        self, op: str, sid: SessionId | None, error: Exception, again: Callable[[], Any]
    ) -> Any:
        """Retry ``again()`` under the retry policy after its first try failed in transport
        with ``error`` (attempt 1); ``StoreUnavailable`` when the policy gives up."""
        if isinstance(error, REFUSED):
            raise error
        if self.retry is None:
            raise StoreUnavailable(op, sid, 1, error) from error
        pending, attempts = [error], 0
        try:
            for attempt in self.retry.retrying():
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    if pending:
                        raise pending.pop()
                    if self.telemetry is not None:
                        self.telemetry.retry()
                    try:
                        return again()
                    except (AttributeError, TypeError) as exc:
                        if not driver_fault(exc):
                            raise
                        raise broken_connection(exc) from exc
        except REFUSED:
            raise
        except TRANSIENT as exc:
            raise StoreUnavailable(op, sid, attempts, exc) from exc
        raise AssertionError("unreachable: tenacity returns or raises")
