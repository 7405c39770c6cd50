"""Telemetry (``redis_sessions.telemetry``) read back through the OpenTelemetry SDK's in-memory span
exporter and metric reader, on a real redis-server (and the 3-master cluster where the call takes
the same path there), sync and async: names, attributes and counts of
the spans and metrics a conflict, a lease loss, a replay, a retry, the history cache, a reply stream
and the write-behind worker produce. Without the extra (OpenTelemetry made unimportable), the store
works and ``Telemetry()`` says what is missing. (redis-py 8 imports OpenTelemetry itself when it is
installed, for its own observability: "not imported" cannot be tested process-wide.)
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.semconv.attributes import db_attributes, error_attributes, server_attributes
from opentelemetry.trace import SpanKind, StatusCode

from redis_sessions import (
    AgentMessage,
    AsyncSessionStore,
    ConflictError,
    LeaseLost,
    RetryPolicy,
    SessionStore,
    Telemetry,
)
from redis_sessions.persistence import SQLiteAdapter
from redis_sessions.writebehind import SyncWorker
from tests.conftest import MakeStore, Store
from tests.integration.faults import LossyProxy
from tests.support import AsyncAdapter, Backend

REAL = [pytest.param("real", marks=pytest.mark.real)]
CLUSTER = [pytest.param("cluster", marks=[pytest.mark.real, pytest.mark.cluster])]
ON_REAL = pytest.mark.parametrize("backend", REAL, indirect=True)
ON_REAL_AND_CLUSTER = pytest.mark.parametrize("backend", REAL + CLUSTER, indirect=True)
QUICK = RetryPolicy(attempts=3, initial=0.01, max_wait=0.02)


@dataclass
class Otel:
    """An SDK tracer and meter provider that keep what they get in memory."""

    spans: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    def telemetry(self, **options: Any) -> Telemetry:
        return Telemetry(tracer_provider=self.tracer_provider, meter_provider=self.meter_provider, **options)

    def finished(self, name: str | None = None) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if name is None or s.name == name]

    def points(self, metric: str) -> list[Any]:
        """The data points of ``metric`` collected now (empty when it recorded nothing)."""
        data = self.reader.get_metrics_data()
        if data is None:
            return []
        return [
            point
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for found in scope.metrics
            if found.name == metric
            for point in found.data.data_points
        ]

    def total(self, metric: str, **attributes: Any) -> int:
        """The sum of ``metric``'s points whose attributes include ``attributes``."""
        return sum(
            point.value
            for point in self.points(metric)
            if all(point.attributes.get(k) == v for k, v in attributes.items())
        )


@pytest.fixture
def otel() -> Iterator[Otel]:
    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    meter_provider = MeterProvider(metric_readers=[reader])
    yield Otel(spans, reader, tracer_provider, meter_provider)
    tracer_provider.shutdown()
    meter_provider.shutdown()


@ON_REAL_AND_CLUSTER
def test_an_append_makes_a_client_span_by_the_database_conventions(
    make_store: MakeStore, otel: Otel, backend: Backend
) -> None:
    store = make_store(telemetry=otel.telemetry())
    sid = store.create()
    assert store.append(sid, AgentMessage.user("hello")) == 1
    assert store.append(sid, AgentMessage.user("again")) == 2
    [create] = otel.finished("create")
    appends = otel.finished("append")
    assert len(appends) == 2
    span = appends[1]
    assert span.kind is SpanKind.CLIENT
    assert span.attributes is not None
    assert span.attributes[db_attributes.DB_SYSTEM_NAME] == "redis"
    assert span.attributes[db_attributes.DB_OPERATION_NAME] == "append"
    assert span.attributes[db_attributes.DB_STORED_PROCEDURE_NAME] == "append"
    assert span.attributes["redis_sessions.session.seq"] == 2
    if backend.name == "cluster":  # the node is chosen per call, by slot: no one server to name
        assert server_attributes.SERVER_ADDRESS not in span.attributes
    else:
        assert backend.url is not None
        server = urlparse(backend.url)
        assert span.attributes[server_attributes.SERVER_ADDRESS] == server.hostname
        assert span.attributes[server_attributes.SERVER_PORT] == server.port
    assert "redis_sessions.session.id" not in span.attributes, "ids are personal data: off by default"
    assert "redis_sessions.retries" not in span.attributes
    assert span.status.status_code is StatusCode.UNSET
    assert create.attributes is not None
    assert create.attributes[db_attributes.DB_OPERATION_NAME] == "create"
    [histogram] = [
        p
        for p in otel.points("db.client.operation.duration")
        if p.attributes.get(db_attributes.DB_OPERATION_NAME) == "append"
    ]
    assert histogram.count == 2
    assert histogram.attributes[db_attributes.DB_SYSTEM_NAME] == "redis"
    assert error_attributes.ERROR_TYPE not in histogram.attributes


@ON_REAL_AND_CLUSTER
@pytest.mark.parametrize("policy", ["hashed", "plain"])
def test_the_session_id_is_shown_only_as_configured(make_store: MakeStore, otel: Otel, policy: str) -> None:
    store = make_store(telemetry=otel.telemetry(session_id=policy, session_id_key=b"k"))
    sid = store.create()
    store.append(sid, AgentMessage.user("hello"))
    shown = {s.attributes["redis_sessions.session.id"] for s in otel.finished() if s.attributes}
    assert len(shown) == 1, "one session, one value: spans of a session correlate"
    [value] = shown
    if policy == "plain":
        assert value == str(sid)
    else:
        assert str(sid) not in str(value)
        assert len(str(value)) == 24
        assert value != otel.telemetry(session_id="hashed", session_id_key=b"other").session_attribute(sid)


@ON_REAL_AND_CLUSTER
def test_a_conflict_is_an_error_span_and_counted(make_store: MakeStore, otel: Otel) -> None:
    store = make_store(telemetry=otel.telemetry())
    sid = store.create()
    store.append(sid, AgentMessage.user("one"))
    with pytest.raises(ConflictError):
        store.append(sid, AgentMessage.user("two"), expected_seq=0)
    failed = otel.finished("append")[-1]
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes is not None
    assert failed.attributes[error_attributes.ERROR_TYPE] == "redis_sessions.errors.ConflictError"
    assert otel.total("redis_sessions.conflicts", **{"db.operation.name": "append"}) == 1
    assert otel.total("redis_sessions.lease.losses") == 0


@ON_REAL_AND_CLUSTER
def test_a_lease_loss_is_counted(make_store: MakeStore, otel: Otel) -> None:
    store = make_store(telemetry=otel.telemetry())
    sid = store.create()
    lease = store.lease(sid, "agent-a", 5).acquire()
    token = lease.token
    lease.release()
    with pytest.raises(LeaseLost):
        store.append(sid, AgentMessage.user("late"), fence=token)
    assert otel.total("redis_sessions.lease.losses") == 1
    assert otel.total("redis_sessions.conflicts") == 0
    failed = otel.finished("append")[-1]
    assert failed.attributes is not None
    assert failed.attributes[error_attributes.ERROR_TYPE] == "redis_sessions.errors.LeaseLost"


@ON_REAL_AND_CLUSTER
def test_a_replay_of_an_idempotent_append_is_counted(make_store: MakeStore, otel: Otel) -> None:
    store = make_store(telemetry=otel.telemetry())
    sid = store.create()
    message = AgentMessage.user("once")
    assert store.append(sid, message) == 1
    assert store.append(sid, message) == 1, "stored once"
    first, second = otel.finished("append")
    assert second.attributes is not None
    assert second.attributes["redis_sessions.append.replay"] is True
    assert first.attributes is not None
    assert "redis_sessions.append.replay" not in first.attributes
    assert otel.total("redis_sessions.append.replays") == 1


@ON_REAL_AND_CLUSTER
def test_history_cache_reads_say_hit_or_miss(make_store: MakeStore, otel: Otel) -> None:
    store = make_store(telemetry=otel.telemetry())
    sid = store.create()
    store.append(sid, AgentMessage.user("one"))
    store.messages(sid)  # a miss: nothing cached yet
    store.messages(sid)  # a hit: one round trip confirms the cache
    assert otel.total("redis_sessions.history_cache.reads", **{"redis_sessions.cache.hit": False}) == 1
    assert otel.total("redis_sessions.history_cache.reads", **{"redis_sessions.cache.hit": True}) == 1


@ON_REAL_AND_CLUSTER
def test_open_reply_streams_are_counted(make_store: MakeStore, otel: Otel) -> None:
    store = make_store(telemetry=otel.telemetry())
    sid = store.create()
    reply = store.stream(sid)
    reply.write("Hel")
    assert otel.total("redis_sessions.reply_streams.open") == 1
    reply.finish()
    assert otel.total("redis_sessions.reply_streams.open") == 0
    assert {s.name for s in otel.finished()} >= {"create", "stream"}


@pytest.fixture
def proxy(redis_url: str) -> Iterator[LossyProxy]:
    target = urlparse(redis_url)
    with LossyProxy(target.hostname or "127.0.0.1", target.port or 6379) as running:
        yield running


@ON_REAL
def test_a_retry_after_a_lost_reply_is_counted_and_replays(
    front: str, proxy: LossyProxy, backend: Backend, otel: Otel
) -> None:
    options = {"prefix": backend.prefix, "retry": QUICK, "telemetry": otel.telemetry()}
    with asyncio.Runner() as runner:
        store: Store = (
            SessionStore.from_url(proxy.url, **options)
            if front == "sync"
            else AsyncAdapter(AsyncSessionStore.from_url(proxy.url, **options), runner)
        )
        try:
            sid = store.create()
            proxy.lose_replies(1)
            assert store.append(sid, AgentMessage.user("one")) == 1
        finally:
            store.close()
    assert proxy.lost == 1, "the fault really happened"
    span = otel.finished("append")[-1]
    assert span.attributes is not None
    assert span.attributes["redis_sessions.retries"] == 1
    assert span.attributes["redis_sessions.append.replay"] is True, "the retry found its message stored"
    assert otel.total("redis_sessions.retries", **{"db.operation.name": "append"}) == 1
    assert otel.total("redis_sessions.append.replays") == 1


@ON_REAL_AND_CLUSTER
def test_concurrent_auto_pipelined_appends_each_get_a_span(
    redis_url: str, backend: Backend, otel: Otel
) -> None:
    async def main() -> list[int]:
        async with AsyncSessionStore.from_url(
            redis_url, prefix=backend.prefix, telemetry=otel.telemetry()
        ) as store:
            sids = [await store.create() for _ in range(20)]
            return await asyncio.gather(*(store.append(sid, AgentMessage.user("hi")) for sid in sids))

    assert asyncio.run(main()) == [1] * 20
    appends = otel.finished("append")
    assert len(appends) == 20
    assert len({s.context.span_id for s in appends}) == 20
    assert all(s.attributes and s.attributes["redis_sessions.session.seq"] == 1 for s in appends)


@ON_REAL
def test_the_write_behind_worker_reports_backlog_and_lag(
    backend: Backend, database: SQLiteAdapter, otel: Otel
) -> None:
    telemetry = otel.telemetry()
    store = SessionStore(backend.sync_client(), prefix=backend.prefix, backing=database, telemetry=telemetry)
    worker = SyncWorker(store, database)  # no thread: each pass is this test's
    telemetry.watch_worker(worker)
    store.append(store.create(), AgentMessage.user("durable"))
    assert worker.sync_once() == 1
    [backlog] = otel.points("redis_sessions.writebehind.backlog")
    [lag] = otel.points("redis_sessions.writebehind.lag")
    assert backlog.value == 1, "one session was pending at the last pass"
    assert lag.value > 0.0
    assert worker.sync_once() == 0
    [backlog] = otel.points("redis_sessions.writebehind.backlog")
    [lag] = otel.points("redis_sessions.writebehind.lag")
    assert (backlog.value, lag.value) == (0, 0.0)
    assert any(s.name == "sync" for s in otel.finished()), "the worker's own calls are traced too"


@ON_REAL
def test_the_workers_batched_round_trips_are_one_batch_span_each(
    backend: Backend, database: SQLiteAdapter, otel: Otel
) -> None:
    telemetry = otel.telemetry(session_id="plain")
    store = SessionStore(backend.sync_client(), prefix=backend.prefix, backing=database, telemetry=telemetry)
    worker = SyncWorker(store, database, sessions=2)  # 2 sessions a script call: 3 need a batch of 2
    for n in range(3):
        store.append(store.create(), AgentMessage.user(f"durable {n}"))
    assert worker.sync_once() == 3
    batches = [s for s in otel.finished() if s.name.startswith("BATCH ")]
    assert batches, "a round trip of several sessions' calls is traced as one batch"
    for span in batches:
        assert span.kind is SpanKind.CLIENT
        assert span.attributes is not None
        assert span.attributes[db_attributes.DB_OPERATION_NAME] == span.name
        assert span.attributes["db.operation.batch.size"] == 2
        assert "redis_sessions.session.id" not in span.attributes, "a batch is many sessions: none named"
    durations = [
        p
        for p in otel.points("db.client.operation.duration")
        if str(p.attributes.get(db_attributes.DB_OPERATION_NAME, "")).startswith("BATCH ")
    ]
    assert sum(p.count for p in durations) == len(batches), "one duration per batch, as one operation"


REDIS_URL_ENV = "RS_TELEMETRY_TEST_URL"
WITHOUT_OTEL = """
import sys
sys.modules["opentelemetry"] = None  # as if the otel extra were not installed
import os
from redis_sessions import AgentMessage, SessionStore, Telemetry
from redis_sessions.errors import InvalidOperation
with SessionStore.from_url(os.environ["RS_TELEMETRY_TEST_URL"], prefix=sys.argv[1]) as store:
    sid = store.create()
    assert store.append(sid, AgentMessage.user("hi")) == 1
try:
    Telemetry()
except InvalidOperation as exc:
    print("refused:", exc)
"""


@ON_REAL
def test_without_the_extra_the_store_works_and_telemetry_says_what_is_missing(
    redis_url: str, backend: Backend
) -> None:
    env = {**os.environ, REDIS_URL_ENV: redis_url}
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_OTEL, backend.prefix],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "refused: telemetry needs the otel extra" in done.stdout
