"""One store call as telemetry sees it: its span (current while the call runs), its duration and
what its reply says (a replayed append, the seq it ended at). ``Telemetry.operation`` makes one for
each call the transport sends; ``Telemetry.retry`` finds the one in progress through ``current``."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Final

from ._protocol import OK
from .errors import ConflictError, LeaseLost

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from ._calls import Call
    from .telemetry import Telemetry

__all__ = ["Operation", "current"]

_READS: Final = frozenset({"messages", "load"})  # what a history-cache hit (read_since) stands in for
current: ContextVar[Operation | None] = ContextVar("redis_sessions_operation", default=None)
"""The call in progress in this context (a thread, a task), for its retries to be counted on."""


class Operation:
    """One call in flight: its span (current while it runs), start time, retries and reply. With
    ``batch`` (two or more), the calls like ``call`` sent together in one round trip (the
    write-behind worker's pipelines): one span and one duration for all, named ``BATCH <op>`` with
    ``db.operation.batch.size``, as the database conventions ask of a batch."""

    __slots__ = (
        "batch",
        "call",
        "name",
        "replay",
        "retries",
        "server",
        "span",
        "started",
        "telemetry",
        "token",
    )

    def __init__(
        self, telemetry: Telemetry, call: Call[Any], server: dict[str, Any] | None, batch: int = 0
    ) -> None:
        self.telemetry, self.call, self.server, self.batch = telemetry, call, server, batch
        self.name = f"BATCH {call.op}" if batch else call.op
        self.retries, self.replay = 0, False
        self.span: Span | None = None
        self.token: Any = None
        self.started = 0.0

    def parse(self, reply: Any) -> Any:
        """The call's own parse, after noting whether an append was a replay (``append.lua``'s
        reply ``{0, seq, 1}``)."""
        if self.call.script == "append" and type(reply) is list and len(reply) > 2 and reply[0] == OK:
            self.replay = True
        return self.call.parse(reply)

    def parsing(self, call: Call[Any]) -> Call[Any]:
        """``call`` with ``parse`` routed through this operation (an append's only: the one reply
        that says more than its parse returns)."""
        if call.script != "append":
            return call
        parse: Callable[[Any], Any] = self.parse
        return call._replace(parse=parse)

    def __enter__(self) -> Operation:
        telemetry, call = self.telemetry, self.call
        attributes = telemetry.span_attributes(call, self.server)
        if self.batch:
            attributes = {
                **attributes,
                "db.operation.name": self.name,
                "db.operation.batch.size": self.batch,
            }
            attributes.pop("redis_sessions.session.id", None)  # many sessions: none of them
        trace = telemetry.trace_api
        span = telemetry.tracer.start_span(self.name, kind=trace.SpanKind.CLIENT, attributes=attributes)
        self.span = span
        # Current while the call runs (so redis-py's own spans, if on, nest under it): a span that
        # records nothing (no SDK configured) has nothing to nest.
        recording = span.is_recording()
        attached = telemetry.context_api.attach(trace.set_span_in_context(span)) if recording else None
        self.token = (attached, current.set(self))
        self.started = time.perf_counter()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: object) -> None:
        elapsed = time.perf_counter() - self.started
        attached, previous = self.token
        current.reset(previous)
        if attached is not None:
            self.telemetry.context_api.detach(attached)
        telemetry, call, span = self.telemetry, self.call, self.span
        assert span is not None
        labels = telemetry.labels(self.name)
        if self.retries:
            span.set_attribute("redis_sessions.retries", self.retries)
        if error is not None:
            name = f"{type(error).__module__}.{type(error).__qualname__}"
            labels = {**labels, "error.type": name}
            span.set_attribute("error.type", name)
            span.set_status(telemetry.trace_api.StatusCode.ERROR, str(error))
            if isinstance(error, ConflictError):
                telemetry.conflicts.add(1, labels)
            elif isinstance(error, LeaseLost):
                telemetry.lease_losses.add(1, labels)
        if self.replay:
            span.set_attribute("redis_sessions.append.replay", True)
            telemetry.replays.add(1, labels)
        if call.script == "read_since":
            telemetry.cache_reads.add(1, {"db.operation.name": call.op, "redis_sessions.cache.hit": True})
        elif call.op in _READS:
            telemetry.cache_reads.add(1, {"db.operation.name": call.op, "redis_sessions.cache.hit": False})
        telemetry.duration.record(elapsed, labels)
        span.end()

    def result(self, value: Any) -> Any:
        """``value``, the call's result, after noting the seq an append ended at."""
        if self.call.script == "append" and type(value) is int and self.span is not None:
            self.span.set_attribute("redis_sessions.session.seq", value)
        return value
