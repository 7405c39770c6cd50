"""Helpers shared by the tests: the backends (fakeredis or a real server) and the async adapter.

A ``Backend`` is one Redis namespace for one test: a unique key prefix on a fakeredis ``FakeServer``,
on a real server or on a real Redis Cluster, with a sync ``raw`` client to write bad data by hand and
to inspect keys.
``AsyncAdapter`` lets one synchronous test body drive an ``AsyncSessionStore`` by running each
coroutine on an ``asyncio.Runner`` owned by the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import fakeredis
import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster

from redis_sessions import (
    AgentMessage,
    Appended,
    AsyncLease,
    AsyncReplyStream,
    AsyncSessionStore,
    AsyncToolCall,
    Session,
    SessionId,
    SessionInfo,
    SessionState,
    SessionStore,
    TenantUsage,
    ToolResult,
)
from redis_sessions.tokens import Context

T = TypeVar("T")
_DONE = object()


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll ``condition`` (a state another thread, process or the server reaches on its own) until
    it holds; ``AssertionError`` naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.005)


def unique_prefix() -> str:
    """A key prefix no other test uses, so tests never need FLUSHALL on a shared server."""
    return f"rs-t-{uuid.uuid4().hex[:12]}"


class Backend:
    """One test's namespace on fakeredis, a real server, or a real cluster (``name == "cluster"``)."""

    def __init__(self, name: str, url: str | None) -> None:
        self.name = name
        self.url = url
        self.prefix = unique_prefix()
        self.server = fakeredis.FakeServer() if url is None else None
        self.raw = self.sync_client()

    @property
    def cluster(self) -> bool:
        return self.name == "cluster"

    def sync_client(self, **options: Any) -> Any:
        if self.server is not None:
            return fakeredis.FakeRedis(server=self.server, **options)
        assert self.url is not None
        if self.cluster:
            return redis.cluster.RedisCluster.from_url(self.url, **options)
        return redis.Redis.from_url(self.url, **options)

    def async_client(self, **options: Any) -> Any:
        if self.server is not None:
            return fakeredis.FakeAsyncRedis(server=self.server, **options)
        assert self.url is not None
        if self.cluster:
            return redis.asyncio.cluster.RedisCluster.from_url(self.url, **options)
        return redis.asyncio.Redis.from_url(self.url, **options)

    def stored_keys(self, prefix: str | None = None) -> set[bytes]:
        """Every key under ``prefix`` (this test's prefix by default), found with SCAN."""
        return set(self.raw.scan_iter(match=f"{prefix or self.prefix}:*", count=1000))

    def dump(self, prefix: str | None = None) -> dict[bytes, bytes | None]:
        """A byte-exact snapshot (DUMP) of every key under the prefix."""
        return {key: self.raw.dump(key) for key in sorted(self.stored_keys(prefix))}

    def close(self) -> None:
        """Delete what this test wrote (only keys under its prefix) and close the raw client."""
        if self.server is None:
            doomed = list(self.raw.scan_iter(match=f"{self.prefix}*", count=1000))
            for i in range(0, len(doomed), 500):
                self.raw.unlink(*doomed[i : i + 500])
        self.raw.close()


async def _next(iterator: Any) -> Any:
    try:
        return await anext(iterator)
    except StopAsyncIteration:
        return _DONE


class AsyncAdapter:
    """An ``AsyncSessionStore`` behind the synchronous ``SessionStore`` interface.

    Each method runs the store's coroutine to completion on ``runner``; ``list()`` becomes a lazy
    iterator that advances the async iterator one id at a time (so an error raised mid-scan
    surfaces where it would for the sync store).
    """

    def __init__(self, store: AsyncSessionStore, runner: asyncio.Runner) -> None:
        self.store = store
        self.runner = runner

    @property
    def client(self) -> redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster:
        return self.store.client

    def _run(self, awaitable: Awaitable[T]) -> T:
        async def wrapper() -> T:
            return await awaitable

        return self.runner.run(wrapper())

    def create(self, *args: Any, **kwargs: Any) -> SessionId:
        return self._run(self.store.create(*args, **kwargs))

    def append(self, session_id: Any, message: Any, **kwargs: Any) -> int:
        return self._run(self.store.append(session_id, message, **kwargs))

    def extend(self, session_id: Any, messages: Iterable[Any], **kwargs: Any) -> int:
        return self._run(self.store.extend(session_id, messages, **kwargs))

    def messages(self, session_id: Any, *args: Any, **kwargs: Any) -> list[AgentMessage]:
        return self._run(self.store.messages(session_id, *args, **kwargs))

    def load(self, session_id: Any) -> Session | None:
        return self._run(self.store.load(session_id))

    def exists(self, session_id: Any) -> bool:
        return self._run(self.store.exists(session_id))

    def delete(self, session_id: Any) -> bool:
        return self._run(self.store.delete(session_id))

    def set_metadata(self, session_id: Any, updates: Mapping[str, str | None]) -> None:
        self._run(self.store.set_metadata(session_id, updates))

    def save(self, session_id: Any, adapter: Any) -> bool:
        return self._run(self.store.save(session_id, adapter))

    def restore(self, session_id: Any, adapter: Any, **kwargs: Any) -> bool:
        return self._run(self.store.restore(session_id, adapter, **kwargs))

    def list(self) -> Iterator[SessionId]:
        iterator = self.store.list()
        assert isinstance(iterator, AsyncGenerator)  # an async generator: it has aclose()
        try:
            while (item := self._run(_next(iterator))) is not _DONE:
                yield item
        finally:
            self._run(iterator.aclose())

    def info(self, session_id: Any, **kwargs: Any) -> SessionInfo | None:
        return self._run(self.store.info(session_id, **kwargs))

    def infos(self, **kwargs: Any) -> Iterator[SessionInfo]:
        iterator = self.store.infos(**kwargs)
        assert isinstance(iterator, AsyncGenerator)  # an async generator: it has aclose()
        try:
            while (item := self._run(_next(iterator))) is not _DONE:
                yield item
        finally:
            self._run(iterator.aclose())

    def pop(self, session_id: Any) -> AgentMessage | None:
        return self._run(self.store.pop(session_id))

    def tenant_usage(self) -> TenantUsage:
        return self._run(self.store.tenant_usage())

    def import_state(self, session_id: Any, state: SessionState, **kwargs: Any) -> bool:
        return self._run(self.store.import_state(session_id, state, **kwargs))

    def watch(self, session_id: Any, *args: Any, **kwargs: Any) -> Iterator[Appended]:
        iterator = self.store.watch(session_id, *args, **kwargs)
        try:
            while (item := self._run(_next(iterator))) is not _DONE:
                yield item
        finally:
            self._run(iterator.aclose())

    def next_message(self, session_id: Any, *args: Any, **kwargs: Any) -> Appended | None:
        return self._run(self.store.next_message(session_id, *args, **kwargs))

    def lease(self, session_id: Any, owner: str, ttl: float) -> LeaseAdapter:
        return LeaseAdapter(self.store.lease(session_id, owner, ttl), self)

    def stream(self, session_id: Any, **kwargs: Any) -> ReplyAdapter:
        return ReplyAdapter(self.store.stream(session_id, **kwargs), self)

    def tool_call(self, session_id: Any, tool_use_id: Any, **kwargs: Any) -> ToolCallAdapter:
        return ToolCallAdapter(self.store.tool_call(session_id, tool_use_id, **kwargs), self)

    def context(self, session_id: Any, max_tokens: int, **kwargs: Any) -> Context:
        return self._run(self.store.context(session_id, max_tokens, **kwargs))

    def summarize(self, session_id: Any, summary: Any, **kwargs: Any) -> int:
        return self._run(self.store.summarize(session_id, summary, **kwargs))

    def compact(self, session_id: Any, summarizer: Any, **kwargs: Any) -> int | None:
        return self._run(self.store.compact(session_id, summarizer, **kwargs))

    def fork(self, session_id: Any, **kwargs: Any) -> SessionId:
        return self._run(self.store.fork(session_id, **kwargs))

    def close(self) -> None:
        self._run(self.store.aclose())


class LeaseAdapter:
    """An ``AsyncLease`` behind the synchronous ``Lease`` interface."""

    def __init__(self, lease: AsyncLease, adapter: AsyncAdapter) -> None:
        self.lease, self.adapter = lease, adapter

    @property
    def token(self) -> int | None:
        return self.lease.token

    def acquire(self) -> LeaseAdapter:
        self.adapter._run(self.lease.acquire())
        return self

    def extend(self, ttl: float | None = None) -> None:
        self.adapter._run(self.lease.extend(ttl))

    def release(self) -> None:
        self.adapter._run(self.lease.release())

    def append(self, message: AgentMessage, **kwargs: Any) -> int:
        return self.adapter._run(self.lease.append(message, **kwargs))

    def __enter__(self) -> LeaseAdapter:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.adapter._run(self.lease.__aexit__(*exc_info))


class ToolCallAdapter:
    """An ``AsyncToolCall`` behind the synchronous ``ToolCall`` interface."""

    def __init__(self, call: AsyncToolCall, adapter: AsyncAdapter) -> None:
        self.call, self.adapter = call, adapter

    def __getattr__(self, name: str) -> Any:  # done, result, attempt, seq, stored, owner...
        return getattr(self.call, name)

    def claim(self) -> ToolCallAdapter:
        self.adapter._run(self.call.claim())
        return self

    def complete(self, content: Any, is_error: bool = False) -> ToolResult | None:
        return self.adapter._run(self.call.complete(content, is_error))

    def extend(self, ttl: float | None = None) -> None:
        self.adapter._run(self.call.extend(ttl))

    def release(self) -> None:
        self.adapter._run(self.call.release())

    def __enter__(self) -> ToolCallAdapter:
        return self.claim()

    def __exit__(self, *exc_info: Any) -> None:
        self.adapter._run(self.call.__aexit__(*exc_info))


def messages_of(count: int, tag: str = "m") -> list[AgentMessage]:
    """``count`` distinct user messages with readable ids ``<tag>-0000``..."""
    return [AgentMessage.user(f"{tag} {i}", id=f"{tag}-{i:04d}") for i in range(count)]


def ids(messages: Iterable[AgentMessage]) -> list[str]:
    return [m.id for m in messages]


def expect_no_change(backend: Backend) -> Callable[[], None]:
    """Snapshot the namespace; the returned check asserts it is byte-identical afterwards."""
    before = backend.dump()

    def check() -> None:
        assert backend.dump() == before

    return check


class ReplyAdapter:
    """An ``AsyncReplyStream`` behind the synchronous ``ReplyStream`` interface."""

    def __init__(self, reply: AsyncReplyStream, adapter: AsyncAdapter) -> None:
        self.reply, self.adapter = reply, adapter

    def __getattr__(self, name: str) -> Any:
        return getattr(self.reply, name)

    def write(self, text: str) -> int:
        return self.adapter._run(self.reply.write(text))

    def flush(self) -> None:
        self.adapter._run(self.reply.flush())

    def finish(self, message: AgentMessage | None = None) -> int:
        return self.adapter._run(self.reply.finish(message))

    def abort(self, reason: str = "") -> None:
        self.adapter._run(self.reply.abort(reason))

    def __enter__(self) -> ReplyAdapter:
        return self

    def __exit__(self, kind: Any, error: Any, tb: Any) -> None:
        self.adapter._run(self.reply.__aexit__(kind, error, tb))


@contextlib.contextmanager
def opened_stores(front: str) -> Iterator[Callable[..., Any]]:
    """``make(url, opener="from_url", **options)``: a store the front's class opens itself (a
    ``SessionStore``, or an ``AsyncSessionStore`` behind ``AsyncAdapter``); every one closed at
    the end, with its worker thread when it has a backing (a stray worker once lost a record's
    messages)."""
    runner = asyncio.Runner()
    made: list[Any] = []

    def make(url: str, opener: str = "from_url", **options: Any) -> Any:
        store: Any
        if front == "sync":
            store = getattr(SessionStore, opener)(url, **options)
        else:
            store = AsyncAdapter(getattr(AsyncSessionStore, opener)(url, **options), runner)
        made.append(store)
        return store

    try:
        yield make
    finally:
        for store in made:
            store.close()
        runner.close()


def run_processes(processes: Sequence[Any], results: Any, timeout: float) -> list[Any]:
    """Start ``processes`` (``multiprocessing`` ones), take one item each from the ``results`` queue
    (``timeout`` seconds for each), then join them; any still alive after 30 s is terminated."""
    for process in processes:
        process.start()
    try:
        return [results.get(timeout=timeout) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
                process.join()
