"""Run the OpenAI Agents SDK's own session tests with ``RedisAgentSession`` in place of its
``SQLiteSession``: the SDK's expectations of a ``Session``, checked by the SDK's tests.

Get the tests of the installed version (its sdist carries them) and run them against a Redis::

    version=$(pip show openai-agents | sed -n 's/^Version: //p')
    pip download --no-deps --no-binary :all: "openai-agents==$version"
    tar xzf openai_agents-*.tar.gz
    python tools/agents_sdk_suite.py openai_agents-*/ --redis-url redis://127.0.0.1:6379/0 --front async

``--front async`` runs them over ``AsyncSessionStore.from_url`` (a client per event loop), ``sync``
over ``SessionStore.from_url``, ``given`` over an ``AsyncSessionStore`` on a ``redis.asyncio`` client
the caller made (one loop only: other loops are refused with ``WrongEventLoop``). Extra arguments go to
pytest (``-k run_sync``). Tests of SQLite itself (its file, its corrupt rows) fail by design in
every mode; compare the modes. This file is also the pytest plugin that does the swap.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# The SDK's tests that drive a Runner (or the session directly) with SQLiteSession; left out, those
# of SQLite itself: its connections per thread, its file lock, its rollbacks, rows corrupted in SQL.
TESTS = ("tests/memory/test_session.py", "tests/test_agent_runner.py", "tests/test_agent_runner_streamed.py")
_SQLITE_ITSELF = (
    "close or reaps or retired or worker_threads or corrupt or file_lock or write_lock or rolls_back"
    " or rollback or post_commit"
)
SELECT = (
    "(test_session.py or strips_reasoning_ids_already_stored or does_not_rewind_committed_session"
    " or add_items_called_multiple_times or issue_2020) and not (" + _SQLITE_ITSELF + ")"
)
_ENV_URL, _ENV_FRONT = "RS_SDK_SUITE_URL", "RS_SDK_SUITE_FRONT"
_stores: list[Any] = []  # this test's store (the plugin's fixture opens and closes it)


def _open_store(url: str, front: str) -> Any:
    import redis.asyncio

    from redis_sessions import AsyncSessionStore, SessionStore

    prefix = "sdk-" + uuid.uuid4().hex[:12]
    if front == "sync":
        return SessionStore.from_url(url, prefix=prefix)
    if front == "given":
        return AsyncSessionStore(redis.asyncio.Redis.from_url(url), prefix=prefix)
    return AsyncSessionStore.from_url(url, prefix=prefix)


def _session_class() -> type[Any]:
    from redis_sessions.integrations.openai_agents import RedisAgentSession

    class SQLiteSession(RedisAgentSession):
        """``SQLiteSession``'s signature over this test's store; one database file, one namespace."""

        def __init__(
            self,
            session_id: str,
            db_path: str | Path = ":memory:",
            sessions_table: str = "agent_sessions",
            messages_table: str = "agent_messages",
            session_settings: Any = None,
        ) -> None:
            super().__init__(f"{db_path}|{session_id}", _stores[-1], session_settings=session_settings)
            self.session_id = session_id

        def close(self) -> None:
            """Nothing to close: the store belongs to the test."""

    return SQLiteSession


@pytest.fixture(autouse=True)
def _redis_sessions_in_place_of_sqlite(request: pytest.FixtureRequest) -> Iterator[None]:
    import agents

    store = _open_store(os.environ[_ENV_URL], os.environ.get(_ENV_FRONT, "async"))
    _stores.append(store)
    replacement = _session_class()
    patch = pytest.MonkeyPatch()
    patch.setattr(agents, "SQLiteSession", replacement)
    if hasattr(request.module, "SQLiteSession"):
        patch.setattr(request.module, "SQLiteSession", replacement)
    try:
        yield
    finally:
        patch.undo()
        _stores.pop()
        if hasattr(store, "aclose"):
            asyncio.run(store.aclose())
        else:
            store.close()


def main(argv: list[str]) -> int:
    """``agents_sdk_suite.py SDK_DIR --redis-url URL [--front async|sync|given] [pytest args]``."""
    args = list(argv)
    sdk = Path(args.pop(0))
    url = args.pop(args.index("--redis-url") + 1)
    args.remove("--redis-url")
    front = "async"
    if "--front" in args:
        front = args.pop(args.index("--front") + 1)
        args.remove("--front")
    env = {
        **os.environ,
        _ENV_URL: url,
        _ENV_FRONT: front,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-m", "pytest", "-q", "-p", "agents_sdk_suite", "-p", "no:cacheprovider"]
    command += ["-k", SELECT, *TESTS, *args]
    return subprocess.run(command, cwd=sdk, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
