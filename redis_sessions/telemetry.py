"""``Telemetry``: OpenTelemetry spans and metrics for a store, switched on with ``telemetry=``.

A store made with ``telemetry=Telemetry()`` (the ``otel`` extra: ``opentelemetry-api``) wraps every
call its transport sends in one client span and records the metrics below. A store without it (the
default) never imports OpenTelemetry: its transport pays one attribute check per call. A store whose
``Telemetry`` has no SDK behind it (yet) pays one call more (``Telemetry.listening``). The one place
that observes is ``Telemetry.operation``, which the transport's ``run`` enters for each call
(the lean and auto-pipelined hot path included, since ``run`` is where they start); retries,
write-behind workers and reply streams report to the same object.

Names follow OpenTelemetry's stable database semantic conventions (semconv 1.33 and later, checked
against ``opentelemetry-semantic-conventions`` 0.65b0 = semconv 1.43): ``db.system.name`` = ``redis``,
``db.operation.name`` = the store's operation (``append``, ``read``, ``create``...; Redis's own
command would be ``EVALSHA`` for nearly every call), ``db.stored_procedure.name`` = the Lua script,
``error.type``, and the histogram ``db.client.operation.duration`` (seconds). The rest is this
library's, under ``redis_sessions.``. The session id is personal data in many deployments: it is left
out unless ``session_id="hashed"`` (a keyed BLAKE2b digest: correlates, does not reveal) or
``"plain"``.
"""

from __future__ import annotations

import hashlib
import time
import weakref
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal

from ._span import Operation, current
from .errors import InvalidArgument, InvalidOperation

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
    from opentelemetry.trace import TracerProvider

    from ._calls import Call

__all__ = ["Telemetry"]

SYSTEM: Final = "redis"
DURATION_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)
"""Redis answers in well under a millisecond: semconv's advice starts at 1 ms, so finer buckets."""


class Telemetry:
    """Where a store's spans and metrics go: pass one as ``telemetry=`` (stores may share one).

    ``tracer_provider`` / ``meter_provider``: OpenTelemetry's global ones unless given (until the
    application configures an SDK, nothing is made: ``listening``). ``session_id``: ``"off"``
    (default), ``"hashed"`` (``redis_sessions.session.id`` = a BLAKE2b digest keyed by
    ``session_id_key``) or ``"plain"``. ``InvalidOperation`` when ``opentelemetry-api`` is not
    installed (``pip install 'redis-sessions[otel]'``); ``InvalidArgument`` for an unknown
    ``session_id`` policy or a key that is not bytes.
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        session_id: Literal["off", "hashed", "plain"] = "off",
        session_id_key: bytes = b"",
    ) -> None:
        try:
            from opentelemetry import context, metrics, trace
            from opentelemetry.metrics import Observation
        except ImportError as exc:
            needs = "telemetry needs the otel extra: pip install 'redis-sessions[otel]'"
            raise InvalidOperation(needs) from exc
        if session_id not in ("off", "hashed", "plain"):
            raise InvalidArgument(f"session_id must be 'off', 'hashed' or 'plain', not {session_id!r}")
        if not isinstance(session_id_key, bytes) or len(session_id_key) > 64:
            raise InvalidArgument("session_id_key must be bytes, at most 64 of them (a BLAKE2b key)")
        self.session_id, self._key = session_id, session_id_key
        self.trace_api, self.context_api, self._observation = trace, context, Observation
        self._metrics, self._given = metrics, (tracer_provider, meter_provider)
        self._listening, self._asked = False, -1.0  # the answer, and when it was last worked out
        self.tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)
        meter = metrics.get_meter(__name__, meter_provider=meter_provider)
        self.duration = meter.create_histogram(
            "db.client.operation.duration",
            unit="s",
            description="Duration of the store's calls to Redis, retries included",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
        )
        self.conflicts = meter.create_counter(
            "redis_sessions.conflicts", unit="{conflict}", description="Writes refused: expected_seq differed"
        )
        self.lease_losses = meter.create_counter(
            "redis_sessions.lease.losses", unit="{write}", description="Writes refused: the lease was lost"
        )
        self.replays = meter.create_counter(
            "redis_sessions.append.replays",
            unit="{append}",
            description="Appends whose messages were all stored already (idempotent replays)",
        )
        self.retries = meter.create_counter(
            "redis_sessions.retries", unit="{retry}", description="Calls sent again after a transport fault"
        )
        self.cache_reads = meter.create_counter(
            "redis_sessions.history_cache.reads",
            unit="{read}",
            description="History reads, by redis_sessions.cache.hit (the hit ratio is hit=true / all)",
        )
        self._labels: dict[str, dict[str, Any]] = {}
        self._attributes: dict[tuple[str, str | None], dict[str, Any]] = {}
        self._workers: weakref.WeakSet[Any] = weakref.WeakSet()
        self._streams: weakref.WeakSet[Any] = weakref.WeakSet()
        meter.create_observable_gauge(
            "redis_sessions.writebehind.lag",
            [self._lag],
            unit="s",
            description="Age of the oldest write not yet in the backing store, at the worker's last pass",
        )
        meter.create_observable_gauge(
            "redis_sessions.writebehind.backlog",
            [self._backlog],
            unit="{session}",
            description="Sessions with writes not yet in the backing store, at the worker's last pass",
        )
        meter.create_observable_up_down_counter(
            "redis_sessions.reply_streams.open",
            [self._open_streams],
            unit="{stream}",
            description="Streamed partial replies of this process not yet finished or aborted",
        )

    def listening(self) -> bool:
        """Whether a provider takes what would be recorded: not while both are OpenTelemetry's
        defaults (the application configured no SDK), so that a ``Telemetry()`` made before the SDK
        is set up, or in a process that never sets one up, costs one check per call. Asking the API
        costs microseconds (it reads the environment), so "no" is worked out again once a second: an
        SDK set up later is seen within a second. Once a provider is there it stays (OpenTelemetry
        sets its global providers once), and so does the answer."""
        if self._listening:
            return True
        now = time.monotonic()
        if now - self._asked < 1.0:
            return False
        self._asked = now
        trace, tracer, meter = self.trace_api, self._given[0], self._given[1]
        tracer = tracer or trace.get_tracer_provider()
        meter = meter or self._metrics.get_meter_provider()
        self._listening = not isinstance(
            tracer, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
        ) or not (
            # The API's own global meter provider has no public class: named here, pinned by a test.
            isinstance(meter, self._metrics.NoOpMeterProvider)
            or type(meter).__name__ == "_ProxyMeterProvider"
        )
        return self._listening

    def operation(self, call: Call[Any], server: dict[str, Any] | None = None) -> Operation:
        """The span and measurements of one call: ``with telemetry.operation(call) as seen:`` around
        sending it, parsing its reply with ``seen.parse`` (which notes what the reply says);
        ``server``: the span's ``server.*`` attributes (``server_of``)."""
        return Operation(self, call, server)

    def batch(self, calls: Sequence[Call[Any]], server: dict[str, Any] | None = None) -> Operation:
        """One span and one duration for ``calls`` (two or more of one operation) sent in one round
        trip: ``BATCH <op>``, with ``db.operation.batch.size``."""
        return Operation(self, calls[0], server, len(calls))

    @staticmethod
    def server_of(client: Any) -> dict[str, Any]:
        """``server.address`` and ``server.port`` of a client's pool (a socket path for ``unix://``);
        nothing for a cluster or Sentinel client, whose server is found per call."""
        given = getattr(getattr(client, "connection_pool", None), "connection_kwargs", None) or {}
        if given.get("path"):
            return {"server.address": str(given["path"])}
        if not given.get("host"):
            return {}
        return {"server.address": str(given["host"]), "server.port": int(given.get("port") or 6379)}

    def retry(self) -> None:
        """The call in progress is being sent again (called by the transport's retry loop)."""
        seen = current.get()
        if seen is not None:
            seen.retries += 1
            self.retries.add(1, {"db.operation.name": seen.call.op})

    def watch_worker(self, worker: Any) -> None:
        """Report ``worker``'s lag and backlog (a ``SyncWorker``; held weakly)."""
        self._workers.add(worker)

    def watch_stream(self, stream: Any) -> None:
        """Count ``stream`` (a reply stream) as open while its ``state`` is ``"open"`` (held weakly)."""
        self._streams.add(stream)

    def labels(self, op: str) -> dict[str, Any]:
        """The metric attributes of an ``op`` that succeeded (one dict per op, built once)."""
        found = self._labels.get(op)
        if found is None:
            found = self._labels[op] = {"db.system.name": SYSTEM, "db.operation.name": op}
        return found

    def span_attributes(self, call: Call[Any], server: dict[str, Any] | None = None) -> dict[str, Any]:
        """A span's attributes at its start (one dict per op and script, plus ``server``'s and the
        session id when there are any)."""
        key = (call.op, call.script)
        found = self._attributes.get(key)
        if found is None:
            found = {"db.system.name": SYSTEM, "db.operation.name": call.op}
            if call.script is not None:
                found["db.stored_procedure.name"] = call.script
            self._attributes[key] = found
        if server:
            found = {**found, **server}
        shown = self.session_attribute(call.sid)
        if shown is None:
            return found
        return {**found, "redis_sessions.session.id": shown}

    def session_attribute(self, sid: object) -> str | None:
        """What ``redis_sessions.session.id`` shows of ``sid`` under the configured policy."""
        if self.session_id == "off" or sid is None:
            return None
        if self.session_id == "plain":
            return str(sid)
        return hashlib.blake2b(str(sid).encode(), key=self._key, digest_size=12).hexdigest()

    def _lag(self, options: CallbackOptions) -> Iterable[Observation]:
        now = time.time()
        for worker in list(self._workers):
            oldest = worker.oldest
            lag = 0.0 if oldest is None else max(0.0, now - oldest)
            yield self._observation(lag, {"db.system.name": SYSTEM})

    def _backlog(self, options: CallbackOptions) -> Iterable[Observation]:
        for worker in list(self._workers):
            yield self._observation(worker.backlog, {"db.system.name": SYSTEM})

    def _open_streams(self, options: CallbackOptions) -> Iterable[Observation]:
        count = sum(1 for stream in list(self._streams) if stream.state == "open")
        yield self._observation(count, {"db.system.name": SYSTEM})
