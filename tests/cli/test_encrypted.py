"""Sealed sessions on the command line: the global ``--encryption MODULE:NAME`` (or
``REDIS_SESSIONS_ENCRYPTION``) gives ``show``, ``tail``, ``export``, ``import``, ``context`` and
``fork`` the keyring; without it they say which message they cannot open, and change nothing."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator

import pytest

from redis_sessions import AgentMessage, SessionId, SessionStore
from redis_sessions.encryption import Encryption
from tests.cli.conftest import Cli
from tests.support import Backend

KEYS = Encryption({"k1": os.urandom(32)}, current="k1")
WHERE = f"{__name__}:KEYS"


@pytest.fixture
def sealed(backend: Backend) -> Iterator[tuple[SessionStore, SessionId]]:
    """A store with the keyring, and a session it sealed."""
    with SessionStore(backend.sync_client(), prefix=backend.prefix, encryption=KEYS) as store:
        sid = store.create()
        store.extend(
            sid, [AgentMessage.user("the secret plan", id="m1"), AgentMessage.assistant("noted", id="m2")]
        )
        yield store, sid


def test_show_without_the_keyring_names_what_it_cannot_open(
    cli: Cli, sealed: tuple[SessionStore, SessionId]
) -> None:
    store, sid = sealed
    result = cli("show", str(sid))
    assert result.exit_code == 1
    assert str(sid) in result.stderr
    assert "k1" in result.stderr
    assert "the secret plan" not in result.output
    assert [m.text for m in store.messages(sid)] == ["the secret plan", "noted"]


def test_show_and_tail_open_sealed_messages_with_the_keyring(
    cli: Cli, sealed: tuple[SessionStore, SessionId]
) -> None:
    _, sid = sealed
    shown = cli("--encryption", WHERE, "show", str(sid))
    assert shown.exit_code == 0, shown.output
    assert "the secret plan" in shown.stdout
    assert "noted" in shown.stdout
    tailed = cli("tail", "-n", "1", "--json", str(sid), env={"REDIS_SESSIONS_ENCRYPTION": WHERE})
    assert tailed.exit_code == 0, tailed.output
    (line,) = tailed.stdout.splitlines()
    assert json.loads(line)["seq"] == 2
    assert "noted" in line


def test_export_and_import_with_the_keyring_reseal_under_it(
    cli: Cli, sealed: tuple[SessionStore, SessionId], backend: Backend, tmp_path: object
) -> None:
    _store, sid = sealed
    refused = cli("export", str(sid))
    assert refused.exit_code == 1
    assert "the secret plan" not in refused.output
    exported = cli("--encryption", WHERE, "export", str(sid))
    assert exported.exit_code == 0, exported.output
    assert "the secret plan" in exported.stdout  # the export is the operator's plain copy
    other = f"{backend.prefix}-copy"
    imported = cli("--encryption", WHERE, "import", "-", input=exported.stdout, prefix=other)
    assert imported.exit_code == 0, imported.output
    with SessionStore(backend.sync_client(), prefix=other, encryption=KEYS) as copy:
        assert [m.text for m in copy.messages(sid)] == ["the secret plan", "noted"]
        raw = backend.sync_client().lrange(f"{other}:{{{sid}}}:messages", 0, -1)
        assert raw
        assert all(b"the secret plan" not in body for body in raw)


def test_context_and_fork_with_the_keyring(cli: Cli, sealed: tuple[SessionStore, SessionId]) -> None:
    store, sid = sealed
    window = cli("--encryption", WHERE, "context", str(sid), "--max-tokens", "1000", "--json")
    assert window.exit_code == 0, window.output
    assert "the secret plan" in window.stdout
    forked = cli("--encryption", WHERE, "fork", str(sid))
    assert forked.exit_code == 0, forked.output
    child = uuid.UUID(forked.stdout.split()[-1])
    assert [m.text for m in store.messages(child)] == ["the secret plan", "noted"]


def test_an_encryption_that_is_not_one_is_a_one_line_error(
    cli: Cli, sealed: tuple[SessionStore, SessionId]
) -> None:
    _, sid = sealed
    result = cli("--encryption", f"{__name__}:WHERE", "show", str(sid))
    assert result.exit_code == 1
    assert "not an Encryption" in result.stderr
