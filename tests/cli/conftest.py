"""Fixtures for the command's tests: ``cli(*args)`` runs ``redis-sessions --url … --prefix …`` with
Click's runner against the test's backend (fakeredis or a real redis-server), and ``seed`` fills it.

On fakeredis there is no URL to give: the command's store is opened on the test's FakeServer
instead (``common.open_store`` is replaced); on a real server the command opens its own from the URL.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from redis_sessions import AgentMessage, Image, Role, SessionId, SessionStore, Text, Thinking, ToolUse
from redis_sessions.cli import common, main
from tests.support import Backend

BACKENDS = [
    pytest.param("fakeredis", id="fakeredis"),
    pytest.param("real", marks=pytest.mark.real, id="real"),
]

Cli = Callable[..., Result]
_SGR = re.compile(r"\x1b\[([0-9;]*)m")
PICTURE = b"\x89PNG\r\n\x1a\n" + bytes(20 * 1024)  # 20.0 KiB


def colour_codes(text: str) -> list[str]:
    """The SGR sequences in ``text`` that set a colour (foreground or background), not just bold."""
    found = []
    for params in _SGR.findall(text):
        codes = [int(p) for p in params.split(";") if p]
        if any(30 <= c <= 49 or 90 <= c <= 107 for c in codes):
            found.append(params)
    return found


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """As the suite's backend table, without the cluster: the command only calls the public API,
    which the store's own tests run on a cluster."""
    url = request.getfixturevalue("redis_url") if request.param == "real" else None
    namespace = Backend(request.param, url)
    yield namespace
    namespace.close()


@pytest.fixture
def store(backend: Backend) -> Iterator[SessionStore]:
    """A store on the test's data, for seeding and checking (not the one the command opens)."""
    with SessionStore(backend.sync_client(), prefix=backend.prefix) as opened:
        yield opened


@pytest.fixture
def cli(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """``cli(*args, input=None, env=None, prefix=None)``: the command's result, stdout and stderr apart."""
    if backend.server is not None:

        def fake_open(url: str, prefix: str, *, cluster: bool = False, **options: Any) -> SessionStore:
            try:
                return SessionStore(backend.sync_client(), prefix=prefix, **options)
            except ValueError as exc:  # as the real open_store: a bad prefix is a one-line error
                raise click.ClickException(str(exc)) from exc

        monkeypatch.setattr(common, "open_store", fake_open)
    url = backend.url or "redis://fakeredis.invalid:6379/0"

    def run(
        *args: str, input: str | None = None, env: dict[str, str] | None = None, prefix: str | None = None
    ) -> Result:
        command = ["--url", url, "--prefix", prefix or backend.prefix, *args]
        return CliRunner().invoke(main, command, input=input, env=env, catch_exceptions=False)

    return run


def conversation(store: SessionStore, **metadata: str) -> SessionId:
    """A session with every kind of block: text, thinking, a tool call and its result, an image."""
    sid = store.create(
        "gpt-4o", 20, "You are a support agent. [bold]not markup[/bold] :smile:", metadata=metadata or None
    )
    store.extend(
        sid,
        [
            AgentMessage.user("What's the weather in Oslo?"),
            AgentMessage.assistant(
                [
                    Thinking("The user wants the weather: call the tool."),
                    Text("Let me check."),
                    ToolUse("call_1", "get_weather", {"city": "Oslo", "unit": "celsius"}),
                ]
            ),
            AgentMessage.tool_result("call_1", '{"temp_c": 7, "conditions": "light rain"}'),
            AgentMessage.assistant("It is 7 °C with light rain in Oslo."),
            AgentMessage(Role.USER, [Text("Here is a chart:"), Image("image/png", PICTURE)]),
            AgentMessage.tool_result("call_2", "timed out after 30 s", is_error=True),
        ],
    )
    return sid


def seed(
    store: SessionStore, count: int, messages: int = 2, model: str = "claude-sonnet-4"
) -> list[SessionId]:
    """``count`` plain sessions of ``messages`` messages each."""
    sids = []
    for n in range(count):
        sid = store.create(model, 0, None, metadata={"n": str(n)})
        store.extend(sid, [AgentMessage.user(f"hello {n}.{i}") for i in range(messages)])
        sids.append(sid)
    return sids


def unknown_id() -> str:
    return str(uuid.uuid4())
