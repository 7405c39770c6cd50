"""Helpers for the tiered-mode fault tests: the servers they start, out-of-memory detection, and the
faults they inject (a Redis squeezed under its limit, a server that evicts what was just restored)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import redis.exceptions

from redis_sessions import StoreError
from redis_sessions._scripts import SCRIPTS, SHAS
from redis_sessions.embedded import RedisServer
from redis_sessions.keys import session_keys
from tests.persistence.pg_server import PostgresServer, find_binaries, run_as
from tests.servers import in_ci
from tests.support import AsyncAdapter
from tests.support import wait_until as wait_until  # re-exported: the durability tests import it from here


def require_redis_server() -> None:
    """Skip the calling test without ``redis-server``; fail instead under ``CI=true``."""
    if shutil.which("redis-server") is None:
        reason = "redis-server is not on PATH (apt-get install redis-server)"
        if in_ci():
            pytest.fail(f"CI=true: {reason}", pytrace=False)
        pytest.skip(reason)


def redis_servers() -> Iterator[Callable[..., RedisServer]]:
    """For a fixture: ``start(*extra_args)`` starts a redis-server of the test's own; all stop after."""
    require_redis_server()
    started: list[RedisServer] = []

    def start(*extra_args: str) -> RedisServer:
        server = RedisServer(extra_args=extra_args).start()
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


def volatile_lru(maxmemory: str) -> tuple[str, ...]:
    """Server arguments: at most ``maxmemory``, evicting only keys that carry a TTL (clean sessions)."""
    return ("--maxmemory", maxmemory, "--maxmemory-policy", "volatile-lru")


def squeeze(raw: Any, below: int = 200_000) -> None:
    """Set ``maxmemory`` ``below`` bytes under what Redis uses now: it is over its limit, and stays so
    (client buffers come and go by tens of KB) until it can evict enough or is given memory back."""
    used = int(raw.info("memory")["used_memory"])
    raw.config_set("maxmemory", used - below)


def out_of_memory(exc: StoreError) -> bool:
    """Whether Redis refused the call for want of memory (``-OOM command not allowed ...``)."""
    return isinstance(exc.__cause__, redis.exceptions.OutOfMemoryError)


def accepted(write: Callable[[], object]) -> bool:
    """Make a write; ``False`` if Redis refused it for want of memory (other errors propagate)."""
    try:
        write()
    except StoreError as exc:
        if not out_of_memory(exc):
            raise
        return False
    return True


def keys_present(raw: redis.Redis, prefix: str, sid: uuid.UUID) -> tuple[bool, bool, bool]:
    """Which of the session's meta hash, messages list and ids zset Redis holds."""
    meta, messages, ids = (bool(raw.exists(key)) for key in session_keys(prefix, sid))
    return meta, messages, ids


class EvictsWhatItRestores(redis.Redis):
    """A client whose server evicts a session right after the restore script put it back, once, as
    ``volatile-lru`` may when Redis is at ``maxmemory``: a restored session is clean, so it carries a
    TTL and is a candidate at once, before the read that follows the restore."""

    evictions = 0
    evicts = slice(0, 3)  # which of the restored keys go (meta, messages, ids): all of them

    def execute_command(self, *args: Any, **options: Any) -> Any:
        reply = super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        restore = args[:2] in (
            ("EVALSHA", SHAS["restore"]),
            ("EVAL", SCRIPTS["restore"]),
        )  # EVAL: not loaded yet
        if restore and self.evictions == 0:
            self.delete(*args[3:6][self.evicts])
            self.evictions += 1
        return reply


class EvictsPartOfWhatItRestores(EvictsWhatItRestores):
    """The same, evicting only the restored messages list (``volatile-lru`` evicts keys, not
    sessions): the read after the restore finds the session evicted in part."""

    evicts = slice(1, 2)


def postgres() -> Iterator[str]:
    """For a fixture: ``POSTGRES_DSN``, else the DSN of a private PostgreSQL (``pg_server.py``)
    stopped afterwards; skips without one (fails under ``CI=true`` where the binaries exist)."""
    given = os.environ.get("POSTGRES_DSN")
    if given:
        yield given
        return
    binaries = find_binaries()
    if binaries is None or run_as() is None:
        reason = "no PostgreSQL to start (initdb/pg_ctl; as root, a 'postgres' user) and POSTGRES_DSN unset"
        if in_ci() and binaries is not None:
            pytest.fail(f"CI=true: {reason}", pytrace=False)
        pytest.skip(reason)
    try:
        server = PostgresServer(binaries).start()
    except (RuntimeError, OSError) as exc:
        if in_ci():
            pytest.fail(f"CI=true: could not start a private PostgreSQL: {exc}", pytrace=False)
        pytest.skip(f"could not start a private PostgreSQL: {exc}")
    try:
        yield server.dsn
    finally:
        server.stop()


def flush(store: Any, timeout: float = 30) -> None:
    """``store.flush(timeout)`` on a sync store, or on the async one behind an ``AsyncAdapter``."""
    if isinstance(store, AsyncAdapter):
        store._run(store.store.flush(timeout))
    else:
        store.flush(timeout)
