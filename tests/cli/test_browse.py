"""``ls``, ``show``, ``tail``, ``stats`` and ``delete``, through Click's runner (fakeredis and a real
redis-server). The runner's output is not a terminal: it is what a pipe gets."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from redis_sessions import AgentMessage, SessionStore, TenantQuota
from redis_sessions.cli import browse
from redis_sessions.keys import session_keys
from tests.cli.conftest import PICTURE, Cli, conversation, seed, unknown_id
from tests.support import Backend

LONG_MODEL = "a-model-name-far-longer-than-any-terminal-column-would-leave-room-for-" * 2


def test_ls_prints_one_row_per_session_newest_first(cli: Cli, store: SessionStore) -> None:
    sids = seed(store, 3)
    store.append(sids[0], AgentMessage.user("now the most recent"))
    long = store.create(LONG_MODEL)
    store.append(sids[0], AgentMessage.user("the most recent again"))

    result = cli("ls")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "MODEL", "MESSAGES", "UPDATED", "TTL"]
    assert len(lines) == 5
    assert lines[1].split()[:3] == [str(sids[0]), "claude-sonnet-4", "4"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == {*map(str, sids), str(long)}
    assert rows[str(long)][1] == LONG_MODEL  # data is never cut or wrapped for a pipe
    assert all(row[-1] == "-" for row in rows.values())  # no TTL
    assert "\x1b" not in result.output


def test_ls_on_a_terminal_shortens_only_a_long_model_name(
    cli: Cli, store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    (short,) = seed(store, 1)
    long = store.create(LONG_MODEL)
    monkeypatch.setattr(browse, "stdout_is_terminal", lambda: True)
    result = cli("ls", env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    head, *rows = result.stdout.splitlines()
    assert head.split() == ["ID", "MODEL", "MESSAGES", "UPDATED", "TTL"]
    by_id = {row.split()[0]: row for row in rows}
    assert len(by_id[str(long)]) <= 120
    assert by_id[str(long)].split()[1].endswith("…")
    assert by_id[str(long)].split()[1][:-1] in LONG_MODEL
    assert by_id[str(short)].split()[1:3] == ["claude-sonnet-4", "2"]
    assert "2 session(s)" in result.stderr


def test_ls_shows_the_time_left_of_an_expiring_session(cli: Cli, backend: Backend) -> None:
    with SessionStore(backend.sync_client(), prefix=backend.prefix, ttl=3 * 3600) as expiring:
        sid = expiring.create("m")
    result = cli("ls")
    row = next(line for line in result.stdout.splitlines() if line.startswith(str(sid)))
    assert row.endswith(("2h 59m", "3h 00m"))


def test_ls_json_is_one_array(cli: Cli, store: SessionStore) -> None:
    sids = seed(store, 3, messages=2)
    result = cli("ls", "--json")
    assert result.exit_code == 0
    listed = json.loads(result.stdout)
    assert {item["id"] for item in listed} == set(map(str, sids))
    first = listed[0]
    assert first["model"] == "claude-sonnet-4"
    assert first["messages"] == first["seq"] == 2
    assert first["ttl"] is None
    assert first["created_at"].endswith("Z")
    assert first["schema_version"] == 1


def test_ls_marks_the_sessions_it_cannot_read_and_filters_them(
    cli: Cli, store: SessionStore, backend: Backend
) -> None:
    fine, newer, corrupt = seed(store, 3)
    backend.raw.hset(session_keys(backend.prefix, newer).meta, "schema_version", "99")
    backend.raw.hset(session_keys(backend.prefix, corrupt).meta, "seq", "not-a-number")
    result = cli("ls")
    assert result.exit_code == 0, result.output
    head, *rows = result.stdout.splitlines()
    assert head.split()[-1] == "PROBLEM"
    by_id = {row.split()[0]: row for row in rows}
    assert set(by_id) == {str(fine), str(newer), str(corrupt)}  # every session is listed...
    assert by_id[str(fine)].endswith("  -")  # ...the readable one without a problem
    assert by_id[str(newer)].endswith("schema version 99, newer than this library's 1")
    assert "corrupt meta hash: " in by_id[str(corrupt)]
    only = cli("ls", "--unreadable")
    assert {row.split()[0] for row in only.stdout.splitlines()[1:]} == {str(newer), str(corrupt)}
    listed = {item["id"]: item["problem"] for item in json.loads(cli("ls", "--unreadable", "--json").stdout)}
    assert set(listed) == {str(newer), str(corrupt)}
    assert listed[str(corrupt)].startswith("corrupt meta hash: ")
    assert {item["id"]: item["problem"] for item in json.loads(cli("ls", "--json").stdout)}[str(fine)] is None


def test_ls_unreadable_of_readable_sessions_only(cli: Cli, store: SessionStore) -> None:
    seed(store, 2)
    assert "PROBLEM" not in cli("ls").stdout  # the column shows only when there is something to say
    result = cli("ls", "--unreadable")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "no unreadable sessions" in result.stderr


def test_ls_of_nothing(cli: Cli) -> None:
    result = cli("ls")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "no sessions" in result.stderr
    assert json.loads(cli("ls", "--json").stdout) == []


def test_show_renders_the_conversation_for_a_person(cli: Cli, store: SessionStore) -> None:
    sid = conversation(store, user="ada")
    result = cli("show", str(sid))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith(f"session {sid}\n")
    for expected in (
        "  model          gpt-4o\n",
        "  messages       6 held, 6 appended\n",
        "  expires        never\n",
        "  max turns      20\n",
        "  metadata.user  ada\n",
        "system\n    You are a support agent. [bold]not markup[/bold] :smile:",  # data, not markup
        "#1 user\n    What's the weather in Oslo?",
        "#2 assistant\n    thinking: The user wants the weather: call the tool.\n    Let me check.",
        '    → get_weather  call_1\n      {\n        "city": "Oslo",\n        "unit": "celsius"\n      }',
        '#3 tool\n    ← call_1\n      {\n        "temp_c": 7,',  # a JSON result is indented too
        "#4 assistant\n    It is 7 °C with light rain in Oslo.",
        "#5 user\n    Here is a chart:\n    [image image/png, 20.0 KiB]",
        "#6 tool\n    ✗ error call_2\n      timed out after 30 s",
    ):
        assert expected in out, expected
    assert "\x1b" not in result.output


def test_show_does_not_wrap_long_lines_for_a_pipe(cli: Cli, store: SessionStore) -> None:
    sid = store.create("m")
    text = " ".join(f"word{i}" for i in range(200))  # about 1,400 characters
    store.append(sid, AgentMessage.user(text))
    result = cli("show", str(sid))
    assert f"    {text}\n" in result.stdout


def test_show_json_is_the_session(cli: Cli, store: SessionStore) -> None:
    sid = conversation(store)
    result = cli("show", "--json", str(sid))
    shown = json.loads(result.stdout)
    assert shown["id"] == str(sid)
    assert shown["seq"] == 6
    assert [m["role"] for m in shown["messages"]] == [
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
        "tool",
    ]
    assert shown["messages"][1]["content"][2] == {
        "type": "tool_use",
        "id": "call_1",
        "name": "get_weather",
        "input": {"city": "Oslo", "unit": "celsius"},
    }


def test_show_a_missing_or_malformed_id(cli: Cli) -> None:
    missing = unknown_id()
    result = cli("show", missing)
    assert result.exit_code == 1
    assert result.output == f"Error: session `{missing}` not found\n"
    malformed = cli("show", "not-a-uuid")
    assert malformed.exit_code == 2
    assert "'not-a-uuid' is not a valid UUID" in malformed.output


def test_tail_prints_the_last_messages_with_their_seq(cli: Cli, store: SessionStore) -> None:
    sid = conversation(store)
    result = cli("tail", "-n", "2", str(sid))
    assert result.exit_code == 0
    assert result.stdout.startswith("#5 user\n    Here is a chart:")
    assert "#6 tool" in result.stdout
    assert "#4" not in result.stdout
    lines = cli("tail", "--json", "--messages", "3", str(sid)).stdout.splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [4, 5, 6]
    assert json.loads(lines[0])["message"]["content"][0]["text"] == "It is 7 °C with light rain in Oslo."
    assert cli("tail", "-n", "0", str(sid)).stdout == ""
    everything = cli("tail", "-n", "100", str(sid)).stdout
    assert everything.startswith("#1 user")
    assert "#6 tool" in everything


class Watching:
    """What the command's ``watch`` did: ``started`` once it was called, ``received`` once it had
    passed on ``expect`` messages (so a test knows when to end the watch by deleting the session)."""

    def __init__(self, expect: int) -> None:
        self.expect = expect
        self.started = threading.Event()
        self.received = threading.Event()
        self.items: list[Any] = []


@pytest.fixture
def watching(monkeypatch: pytest.MonkeyPatch) -> Watching:
    spy = Watching(expect=3)
    original = SessionStore.watch

    def watch(self: SessionStore, *args: Any, **kwargs: Any) -> Iterator[Any]:
        spy.started.set()
        for item in original(self, *args, **kwargs):
            spy.items.append(item)
            if len(spy.items) == spy.expect:
                spy.received.set()
            yield item

    monkeypatch.setattr(SessionStore, "watch", watch)
    return spy


def follow(cli: Cli, store: SessionStore, watching: Watching, sid: uuid.UUID, *args: str) -> Any:
    """Run ``tail -f`` while another thread appends ``watching.expect`` messages once the command
    watches, then deletes the session once the command has them (which ends the watch)."""
    failures: list[BaseException] = []

    def writer() -> None:
        try:
            assert watching.started.wait(timeout=30), "tail -f never started watching"
            for i in range(watching.expect):
                store.append(sid, AgentMessage.user(f"live {i}", id=f"live-{i}"))
            assert watching.received.wait(timeout=30), "tail -f did not receive the messages"
        except BaseException as exc:
            failures.append(exc)
        finally:
            store.delete(sid)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        result = cli("tail", "-f", "--timeout", "60", *args, str(sid))
    finally:
        thread.join(timeout=30)
    assert not failures, failures
    assert result.exit_code == 0, result.output
    assert f"session {sid} was deleted" in result.stderr
    return result


def test_tail_follow_prints_what_another_thread_appends(
    cli: Cli, store: SessionStore, watching: Watching
) -> None:
    sid = seed(store, 1, messages=3)[0]
    result = follow(cli, store, watching, sid, "-n", "1")
    assert result.stdout.split("\n#") == [
        "#3 user\n    hello 0.2",
        "4 user\n    live 0",
        "5 user\n    live 1",
        "6 user\n    live 2\n",
    ]


def test_tail_follow_json(cli: Cli, store: SessionStore, watching: Watching) -> None:
    sid = seed(store, 1, messages=1)[0]
    result = follow(cli, store, watching, sid, "--json", "-n", "0")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(line["seq"], line["message"]["id"]) for line in lines] == [
        (2, "live-0"),
        (3, "live-1"),
        (4, "live-2"),
    ]


def test_tail_follow_ends_after_a_quiet_timeout(cli: Cli, store: SessionStore) -> None:
    sid = seed(store, 1, messages=2)[0]
    result = cli("tail", "-f", "--timeout", "0.2", str(sid))
    assert result.exit_code == 0, result.output
    assert result.stdout == "#1 user\n    hello 0.0\n#2 user\n    hello 0.1\n"
    assert result.stderr == ""


def test_tail_of_a_missing_session(cli: Cli) -> None:
    missing = unknown_id()
    result = cli("tail", "-f", missing)
    assert result.exit_code == 1
    assert result.output == f"Error: session `{missing}` not found\n"


def test_stats_counts_sessions_messages_and_bytes(cli: Cli, store: SessionStore, backend: Backend) -> None:
    seed(store, 3, messages=4)
    conversation(store)
    result = cli("stats", "--json")
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["sessions"] == 4
    assert stats["messages"] == stats["appended"] == 18
    assert stats["expiring"] == 0
    assert stats["models"] == {
        "claude-sonnet-4": {"sessions": 3, "messages": 12},
        "gpt-4o": {"sessions": 1, "messages": 6},
    }
    assert stats["oldest_update"] <= stats["newest_update"]
    text = cli("stats").stdout
    assert "sessions     4\n" in text
    assert "messages     18 held, 18 appended\n" in text
    if backend.server is None:
        assert stats["bytes"] > len(PICTURE)  # MEMORY USAGE of every key
        assert f"({stats['bytes']:,} bytes)" in text
    else:  # fakeredis has no MEMORY USAGE: the counts still come
        assert stats["bytes"] is None
        assert "in Redis     unknown (the server has no MEMORY USAGE)" in text
    assert "  claude-sonnet-4        3 session(s)          12 message(s)\n" in text


def test_stats_of_nothing(cli: Cli) -> None:
    stats = json.loads(cli("stats", "--json").stdout)
    assert (stats["sessions"], stats["messages"], stats["bytes"]) == (0, 0, 0)  # no MEMORY USAGE sent
    assert stats["oldest_update"] is None
    assert "sessions     0" in cli("stats").stdout


def test_stats_tenant_prints_the_ledgers_sums_and_limits(cli: Cli, backend: Backend) -> None:
    quota = TenantQuota(max_sessions=10, max_bytes=50_000)
    with SessionStore(backend.sync_client(), prefix=backend.prefix, tenant_quota=quota) as limited:
        sids = [limited.create() for _ in range(4)]
        limited.append(sids[0], AgentMessage.user("x" * 1000))
        limited.delete(sids[1])
        held = limited.tenant_usage().bytes
    assert held > 1000
    stats = json.loads(cli("stats", "--tenant", "--json").stdout)
    assert stats == {
        "prefix": backend.prefix,
        "sessions": 3,
        "bytes": held,
        "max_sessions": 10,  # as Redis last enforced them: the command's store has no tenant_quota
        "max_bytes": 50_000,
        "granted_sessions": None,
        "granted_bytes": None,
    }
    text = cli("stats", "--tenant").stdout
    assert f"tenant       {backend.prefix}\n" in text
    assert "sessions     3 of 10 (30 %)\n" in text
    assert f"bytes        {held:,} of 50,000" in text


def test_stats_tenant_of_a_prefix_never_counted(cli: Cli) -> None:
    stats = json.loads(cli("stats", "--tenant", "--json").stdout)
    assert (stats["sessions"], stats["bytes"], stats["max_sessions"], stats["max_bytes"]) == (
        0,
        0,
        None,
        None,
    )
    assert "sessions     0 no limit" in cli("stats", "--tenant").stdout


def test_delete_asks_and_no_deletes_nothing(cli: Cli, store: SessionStore) -> None:
    sids = seed(store, 2)
    result = cli("delete", *map(str, sids), input="n\n")
    assert result.exit_code == 1
    assert "Delete 2 session(s) with 4 message(s)? [y/N]" in result.stderr
    assert "Aborted" in result.stderr
    assert all(store.exists(sid) for sid in sids)
    assert cli("delete", str(sids[0])).exit_code == 1  # no answer at all (end of input): nothing either
    assert store.exists(sids[0])


def test_delete_after_yes(cli: Cli, store: SessionStore) -> None:
    sids = seed(store, 3)
    result = cli("delete", str(sids[0]), str(sids[1]), input="y\n")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"deleted {sids[0]}\ndeleted {sids[1]}\n"
    assert [store.exists(sid) for sid in sids] == [False, False, True]


def test_delete_with_yes_does_not_ask(cli: Cli, store: SessionStore) -> None:
    sids = seed(store, 2)
    missing = unknown_id()
    result = cli("delete", "--yes", str(sids[0]), missing, str(sids[0]))
    assert result.exit_code == 1  # one was not found; the rest were still deleted
    assert result.stdout == f"deleted {sids[0]}\n"
    assert f"session {missing} not found" in result.stderr
    assert "[y/N]" not in result.output
    assert not store.exists(sids[0])
    assert store.exists(sids[1])
    assert cli("delete", "-y", str(sids[1])).exit_code == 0


def test_delete_needs_an_id(cli: Cli) -> None:
    result = cli("delete")
    assert result.exit_code == 2
    assert "Missing argument" in result.output


def test_prefix_selects_the_sessions(cli: Cli, backend: Backend) -> None:
    other = f"{backend.prefix}-other"
    with SessionStore(backend.sync_client(), prefix=other) as elsewhere:
        sid = elsewhere.create("m")
        try:
            assert json.loads(cli("ls", "--json").stdout) == []
            assert [i["id"] for i in json.loads(cli("ls", "--json", prefix=other).stdout)] == [str(sid)]
        finally:
            elsewhere.delete(sid)


def test_session_ids_are_parsed_before_anything_is_sent(cli: Cli) -> None:
    result = cli("delete", "--yes", str(uuid.uuid4()), "nope")
    assert result.exit_code == 2
    assert "'nope' is not a valid UUID" in result.output
