"""``export`` and ``import``: JSON Lines out, the same sessions back in; importing twice changes
nothing, and a bad line is reported by its number and skipped."""

from __future__ import annotations

import json
import re
from pathlib import Path

import msgspec
import pytest

from redis_sessions import AgentMessage, SessionState, SessionStore
from redis_sessions.keys import session_keys
from tests.cli.conftest import Cli, conversation, seed, unknown_id
from tests.support import Backend


def states(store: SessionStore) -> dict[str, SessionState]:
    found = {}
    for sid in store.list():
        session = store.load(sid)
        assert session is not None
        found[str(sid)] = session.to_state()
    return found


def test_export_writes_one_session_a_line(cli: Cli, store: SessionStore) -> None:
    sids = [*seed(store, 3), conversation(store, user="ada")]
    result = cli("export")
    assert result.exit_code == 0, result.output
    lines = result.stdout_bytes.splitlines()
    assert len(lines) == 4
    exported = {json.loads(line)["id"]: msgspec.json.decode(line, type=SessionState) for line in lines}
    assert exported == states(store)
    assert set(exported) == set(map(str, sids))
    first = json.loads(lines[0])
    assert next(iter(first)) == "id"  # the id first, then the SessionState fields
    assert set(first) == {"id", *SessionState.__struct_fields__}
    assert result.stderr == ""  # no progress bar off a terminal


def test_export_given_ids_to_a_file(cli: Cli, store: SessionStore, tmp_path: Path) -> None:
    sids = seed(store, 3)
    target = tmp_path / "some.jsonl"
    result = cli("export", str(sids[2]), str(sids[0]), "-o", str(target))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert f"exported 2 session(s) to {target}" in result.stderr
    assert [json.loads(line)["id"] for line in target.read_text().splitlines()] == [
        str(sids[2]),
        str(sids[0]),
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["some.jsonl"]  # no temporary file left


def test_export_reports_a_missing_id_and_writes_the_rest(cli: Cli, store: SessionStore) -> None:
    sid = seed(store, 1)[0]
    missing = unknown_id()
    result = cli("export", missing, str(sid))
    assert result.exit_code == 1
    assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == [str(sid)]
    assert f"session {missing} not found" in result.stderr


def test_export_then_import_elsewhere_gives_the_same_sessions(
    cli: Cli, store: SessionStore, backend: Backend, tmp_path: Path
) -> None:
    seed(store, 5)
    conversation(store, user="ada")
    dump = tmp_path / "all.jsonl"
    assert cli("export", "--output", str(dump)).exit_code == 0
    other = f"{backend.prefix}-copy"
    result = cli("import", str(dump), prefix=other)
    try:
        assert result.exit_code == 0, result.output
        assert result.stdout == "imported 6, already present 0, skipped 0\n"
        with SessionStore(backend.sync_client(), prefix=other) as copy:
            assert states(copy) == states(store)  # messages, seq, timestamps, metadata, ...
    finally:
        for key in backend.stored_keys(other):
            backend.raw.delete(key)


def test_import_twice_changes_nothing(
    cli: Cli, store: SessionStore, backend: Backend, tmp_path: Path
) -> None:
    seed(store, 3)
    dump = tmp_path / "all.jsonl"
    assert cli("export", "-o", str(dump)).exit_code == 0
    for key in backend.stored_keys():
        backend.raw.delete(key)
    first = cli("import", str(dump))
    assert first.stdout == "imported 3, already present 0, skipped 0\n"
    before = backend.dump()
    again = cli("import", str(dump))
    assert again.exit_code == 0
    assert again.stdout == "imported 0, already present 3, skipped 0\n"
    assert backend.dump() == before  # byte for byte


def test_import_replace_overwrites(cli: Cli, store: SessionStore, tmp_path: Path) -> None:
    sid = seed(store, 1, messages=2)[0]
    dump = tmp_path / "one.jsonl"
    assert cli("export", "-o", str(dump)).exit_code == 0
    store.append(sid, AgentMessage.user("after the export"))
    assert cli("import", str(dump)).stdout == "imported 0, already present 1, skipped 0\n"
    assert store.load(sid).seq == 3  # type: ignore[union-attr]
    assert cli("import", "--replace", str(dump)).stdout == "imported 1, already present 0, skipped 0\n"
    assert store.load(sid).seq == 2  # type: ignore[union-attr]


def test_import_reports_bad_lines_by_number_and_skips_them(
    cli: Cli, store: SessionStore, tmp_path: Path
) -> None:
    sid = seed(store, 1)[0]
    good = cli("export").stdout_bytes
    store.delete(sid)
    good_state = json.loads(good)
    fresh = unknown_id()
    lines = [
        good.rstrip(b"\n"),  # 1: imported
        b"this is not json",  # 2
        b"",  # 3: blank lines are fine
        json.dumps({"model": "no id"}).encode(),  # 4
        json.dumps({**good_state, "id": "not-a-uuid"}).encode(),  # 5
        json.dumps({**good_state, "id": fresh, "schema_version": 99, "messages": [{"v99": 1}]}).encode(),  # 6
        json.dumps({**good_state, "id": fresh, "schema_version": 99}).encode(),  # 7: decodes, store refuses
        json.dumps({**good_state, "id": fresh, "messages": [{"role": "robot", "content": []}]}).encode(),  # 8
        json.dumps({**good_state, "id": fresh, "seq": "many"}).encode(),  # 9
        b"[1, 2, 3]",  # 10
        good.rstrip(b"\n"),  # 11: the same session again
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")

    result = cli("import", str(path))

    assert result.exit_code == 1
    assert result.stdout == "imported 1, already present 1, skipped 8\n"
    reported = [line.split(":", 1)[0] for line in result.stderr.splitlines()]
    assert reported == [f"line {n}" for n in (2, 4, 5, 6, 7, 8, 9, 10)]
    errors = dict(line.split(": ", 1) for line in result.stderr.splitlines())
    assert "schema version 99" in errors["line 6"]
    assert "99" in errors["line 7"]
    assert "Traceback" not in result.output
    assert store.exists(sid)
    assert not store.exists(fresh)


def test_import_from_standard_input(cli: Cli, store: SessionStore) -> None:
    sids = seed(store, 2)
    exported = cli("export").stdout
    for sid in sids:
        store.delete(sid)
    result = cli("import", "-", input=exported)
    assert result.exit_code == 0, result.output
    assert result.stdout == "imported 2, already present 0, skipped 0\n"
    assert all(store.exists(sid) for sid in sids)


def test_import_of_a_missing_file(cli: Cli) -> None:
    result = cli("import", "/nonexistent/sessions.jsonl")
    assert result.exit_code == 2
    assert "No such file or directory" in result.output


def test_a_progress_display_only_on_a_terminal(cli: Cli, store: SessionStore, tmp_path: Path) -> None:
    sids = seed(store, 3)
    dump = tmp_path / "all.jsonl"
    quiet = cli("export", "-o", str(dump))
    assert quiet.stderr == f"exported 3 session(s) to {dump}\n"
    # FORCE_COLOR makes Rich take standard error for a terminal: the progress display shows there.
    shown = cli("export", "-o", str(dump), env={"FORCE_COLOR": "1"})
    assert "exported 3 sessions" in shown.stderr
    assert shown.stdout == ""
    some = cli("export", str(sids[0]), str(sids[1]), "-o", str(dump), env={"FORCE_COLOR": "1"})
    assert "2/2" in some.stderr
    imported = cli("import", str(dump), env={"FORCE_COLOR": "1"})
    assert re.search(r"([\d.]+)/\1 (bytes|KiB)", imported.stderr)  # all of the file read
    assert imported.stdout == "imported 0, already present 2, skipped 0\n"
    assert cli("import", str(dump)).stderr == ""


def test_export_names_an_unreadable_session_and_writes_the_rest(
    cli: Cli, store: SessionStore, backend: Backend
) -> None:
    sids = seed(store, 3)
    backend.raw.hset(session_keys(backend.prefix, sids[1]).meta, "schema_version", "99")  # from the future
    result = cli("export")
    assert result.exit_code == 1
    assert {json.loads(line)["id"] for line in result.stdout.splitlines()} == {str(sids[0]), str(sids[2])}
    (line,) = result.stderr.splitlines()
    assert str(sids[1]) in line
    assert "schema version 99" in line


def test_export_then_import_keeps_each_sessions_ttl_and_max_messages(
    cli: Cli, backend: Backend, tmp_path: Path
) -> None:
    """Issue 13: an imported session never expired (its ttl_ms was 0, PTTL -1), whatever it had."""
    with SessionStore(backend.sync_client(), prefix=backend.prefix, ttl=900, max_messages=4) as short:
        bounded = short.create("m")
        short.extend(bounded, [AgentMessage.user(f"m{i}", id=f"m{i}") for i in range(6)])
    with SessionStore(backend.sync_client(), prefix=backend.prefix) as plain:
        forever = plain.create("m")
    dump = tmp_path / "all.jsonl"
    assert cli("export", "-o", str(dump)).exit_code == 0
    lines = {json.loads(line)["id"]: json.loads(line) for line in dump.read_text().splitlines()}
    assert (lines[str(bounded)]["ttl_ms"], lines[str(bounded)]["max_messages"]) == (900_000, 4)
    assert (lines[str(forever)]["ttl_ms"], lines[str(forever)]["max_messages"]) == (0, 0)
    other = f"{backend.prefix}-copy"
    try:
        assert cli("import", str(dump), prefix=other).exit_code == 0
        with SessionStore(backend.sync_client(), prefix=other, ttl=5, max_messages=100) as copy:
            assert 0 < backend.raw.pttl(session_keys(other, bounded).meta) <= 900_000
            assert backend.raw.pttl(session_keys(other, forever).meta) == -1, "not the store's 5 s"
            copy.append(bounded, AgentMessage.user("one more", id="m6"))
            assert [m.id for m in copy.messages(bounded)] == ["m3", "m4", "m5", "m6"], "its own bound of 4"
            # an append's slack: 1 % of the ttl, at most a second (push_messages)
            assert 800_000 < backend.raw.pttl(session_keys(other, bounded).meta) <= 901_000
    finally:
        for key in backend.stored_keys(other):
            backend.raw.delete(key)


def test_an_export_from_before_the_settings_were_kept_imports_with_the_stores_defaults(
    cli: Cli, store: SessionStore, backend: Backend, tmp_path: Path
) -> None:
    sid = seed(store, 1)[0]
    dump = tmp_path / "old.jsonl"
    assert cli("export", "-o", str(dump)).exit_code == 0
    line = json.loads(dump.read_text())
    del line["ttl_ms"], line["max_messages"]  # what an export of an earlier version holds
    dump.write_text(json.dumps(line) + "\n")
    for key in backend.stored_keys():
        backend.raw.delete(key)
    with SessionStore(backend.sync_client(), prefix=backend.prefix, ttl=60) as importer:
        assert importer.import_state(sid, msgspec.json.decode(dump.read_bytes(), type=SessionState))
        assert 0 < backend.raw.pttl(session_keys(backend.prefix, sid).meta) <= 60_000
        assert [m.id for m in importer.messages(sid)] == [m.id for m in store.messages(sid)]


def test_a_state_with_a_negative_ttl_is_refused(store: SessionStore, backend: Backend) -> None:
    from redis_sessions import InvalidMessage

    sid = seed(store, 1)[0]
    before = backend.dump()
    state = msgspec.structs.replace(store.load(sid).to_state(), ttl_ms=-1)  # type: ignore[union-attr]
    with pytest.raises(InvalidMessage, match=str(sid)):
        store.import_state(sid, state, replace=True)
    assert backend.dump() == before
