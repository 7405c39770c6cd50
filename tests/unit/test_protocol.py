"""The protocol between the Lua scripts and Python: every status a script returns is named in its
header and is a member of ``Status``; every refusing status maps to one error."""

from __future__ import annotations

import re
import uuid
from importlib import resources

import pytest

from redis_sessions import QuotaExceeded, TenantQuotaExceeded
from redis_sessions._protocol import ERRORS, Status, error_for
from redis_sessions._scripts import SCRIPTS
from redis_sessions.errors import (
    ConflictError,
    CorruptSession,
    LeaseLost,
    MessagesTrimmed,
    SchemaVersionError,
    SessionError,
    StoreError,
)

HEADER = re.compile(r"^-- Status \(redis_sessions\._protocol\.Status\): (.+)$", re.MULTILINE)
# A status is returned (``return {1}``) or, by the batch scripts, built into a reply (``reply = {1}``,
# ``... and {11} or {1}``), or by a shared function as its second value (``return nil, {17, ...}``).
RETURN = re.compile(r"(?:\breturn(?:\s+nil,)?|=|\band|\bor)\s*\{(\d+)\s*[,}]")
DOCUMENTED = re.compile(r"\{(\d+)[,}]")
SID = uuid.UUID(int=1)
LUA = resources.files("redis_sessions").joinpath("scripts")
FUNCTION = re.compile(r"^local function (\w+)\(.*?^end$", re.MULTILINE | re.DOTALL)


def _shared() -> dict[str, set[int]]:
    """The statuses each shared check of ``_preamble.lua`` returns, by function name: its own, and
    those of the shared checks it calls (``writable_meta`` returns what ``version_refusal`` does)."""
    preamble = LUA.joinpath("_preamble.lua").read_text("utf-8")
    bodies = {match.group(1): match.group(0) for match in FUNCTION.finditer(preamble)}
    statuses = {name: {int(n) for n in RETURN.findall(body)} for name, body in bodies.items()}
    for _ in bodies:  # calls nest at most as deep as there are functions
        for name, body in bodies.items():
            for other in bodies:
                if other != name and re.search(rf"\b{other}\(", body.split("\n", 1)[1]):
                    statuses[name] |= statuses[other]
    return statuses


def _split(source: str) -> tuple[str, str]:
    """The script's leading comment block and its code."""
    lines = source.split("\n")
    i = 0
    while i < len(lines) and (lines[i].startswith("--") or lines[i].startswith("#!")):
        i += 1
    return "\n".join(lines[:i]), "\n".join(lines[i:])


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_every_status_a_script_returns_is_named_in_its_header(name: str) -> None:
    header, code = _split(LUA.joinpath(f"{name}.lua").read_text("utf-8"))  # as written, no preamble
    found = HEADER.findall(header)
    assert len(found) == 1, f"{name}.lua: no (or more than one) '-- Status (...): ...' header line"
    returned = {int(n) for n in RETURN.findall(code)}
    for function, statuses in _shared().items():
        if re.search(rf"\b{function}\(", code):
            returned |= statuses
    if found[0].startswith("none"):
        assert not returned, f"{name}.lua says it returns no status, but returns {sorted(returned)}"
        return
    names = found[0].split()
    unknown = [n for n in names if n not in Status.__members__]
    assert not unknown, f"{name}.lua names statuses Status does not have: {unknown}"
    named = {Status[n].value for n in names}
    assert returned == named, f"{name}.lua returns {sorted(returned)} but its header names {sorted(named)}"
    prose = header[: header.index("-- Status (")]
    documented = {int(n) for n in DOCUMENTED.findall(prose)}
    assert documented <= named, f"{name}.lua documents statuses {sorted(documented - named)} it does not name"


def test_every_refusing_status_but_answers_maps_to_an_error() -> None:
    # not errors: OK, sync_mark's report to the worker, and tool_call's to a claimant (already done)
    answers = {Status.OK, Status.DELETED, Status.TOOL_DONE}
    assert set(ERRORS) == set(Status) - answers


@pytest.mark.parametrize("status", sorted(ERRORS))
def test_each_error_is_a_session_error_about_the_session(status: Status) -> None:
    error = error_for([status, b"7"], SID, schema=1, codec="msgpack", op="pop")
    assert isinstance(error, SessionError)
    assert error.session_id == SID


def test_a_tenant_refusal_names_the_tenant_its_limit_and_usage() -> None:
    reply = [Status.TENANT, b"bytes", b"900", b"200", b"1000"]
    error = error_for(reply, SID, schema=1, codec="msgpack", op="append", prefix="acme")
    assert isinstance(error, TenantQuotaExceeded)
    assert isinstance(error, QuotaExceeded)
    assert (error.tenant, error.limit, error.quota, error.usage, error.size) == (
        "acme",
        "max_bytes",
        1000,
        900,
        1100,
    )
    assert str(SID) in str(error)
    assert "'acme'" in str(error)
    sessions = error_for([Status.TENANT, b"sessions", 5, 1, 5], SID, schema=1, codec="msgpack", op="create")
    assert isinstance(sessions, TenantQuotaExceeded)
    assert (sessions.limit, sessions.usage, sessions.size) == ("max_sessions", 5, 6)


def test_the_error_carries_what_the_call_knew() -> None:
    conflict = error_for([Status.CONFLICT, 5], SID, expected=4, schema=1, codec="msgpack", op="append")
    assert isinstance(conflict, ConflictError)
    assert (conflict.expected, conflict.actual) == (4, 5)
    lost = error_for([Status.LEASE_LOST, b""], SID, token=3, schema=1, codec="msgpack", op="append")
    assert isinstance(lost, LeaseLost)
    assert lost.token == 3
    trimmed = error_for([Status.TRIMMED, 9], SID, after=2, schema=1, codec="msgpack", op="append")
    assert isinstance(trimmed, MessagesTrimmed)
    assert (trimmed.after_seq, trimmed.first_seq) == (2, 9)
    version = error_for([Status.VERSION_MISMATCH, b"2"], SID, schema=1, codec="msgpack", op="append")
    assert isinstance(version, SchemaVersionError)
    assert (version.found, version.expected) == (2, 1)
    durable = error_for([Status.DURABLE], SID, schema=1, codec="msgpack", op="append")
    quota = error_for([Status.QUOTA, 1000, 1200], SID, schema=1, codec="msgpack", op="append")
    assert isinstance(quota, QuotaExceeded)
    assert (quota.session_id, quota.limit, quota.quota, quota.size) == (SID, "max_session_bytes", 1000, 1200)
    assert isinstance(durable, StoreError)
    assert durable.operation == "append"


def test_an_unknown_status_is_a_corrupt_session_not_a_crash() -> None:
    error = error_for([99, b"x"], SID, schema=1, codec="msgpack", op="read")
    assert isinstance(error, CorruptSession)
    assert "unexpected script status" in str(error)


def test_the_shared_checks_are_found_and_return_statuses() -> None:
    assert _shared() == {
        "session_of": set(),
        "mark_dirty": set(),
        "version_refusal": {Status.NOT_FOUND, Status.VERSION_MISMATCH},
        "decimal_seq": set(),
        "corrupt_seq": {Status.CORRUPT},
        "readable_seq": {Status.NOT_FOUND, Status.VERSION_MISMATCH, Status.CORRUPT},
        "writable_meta": {Status.NOT_FOUND, Status.VERSION_MISMATCH, Status.CODEC, Status.CORRUPT},
        "tenant_of": set(),
        "tenant_room": {Status.TENANT},
        "tenant_record": set(),
        "tenant_shift": set(),
        "tenant_forget": set(),
        "sized_meta": set(),
        "push_messages": {Status.QUOTA, Status.TENANT},
    }


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_a_script_gets_each_shared_function_it_calls_once_and_no_other(name: str) -> None:
    written = LUA.joinpath(f"{name}.lua").read_text("utf-8")
    bodies = {
        match.group(1): match.group(0)
        for match in FUNCTION.finditer(LUA.joinpath("_preamble.lua").read_text())
    }
    sent = SCRIPTS[name]
    for function in bodies:
        given = sent.count(f"local function {function}(")
        called = re.search(rf"\b{function}\(", written) or any(
            f"local function {other}(" in sent and re.search(rf"\b{function}\(", code.split("\n", 1)[1])
            for other, code in bodies.items()
        )
        assert given == (1 if called else 0), function
        if given:  # before the script's own code
            assert sent.index(f"local function {function}(") < sent.index(_split(written)[1].strip())
    assert sent.startswith(written.split("\n", 1)[0])  # the header (and any #! line) first


def test_the_append_script_carries_no_shared_function_it_does_not_call() -> None:
    for function in ("readable_seq", "tenant_shift", "tenant_forget"):  # a closure made on every call
        assert f"local function {function}(" not in SCRIPTS["append"]
    assert "local function push_messages(" in SCRIPTS["append"]


def test_the_preamble_holds_only_functions() -> None:  # anything else would be left out of every script
    preamble = LUA.joinpath("_preamble.lua").read_text("utf-8")
    rest = FUNCTION.sub("", preamble)
    assert [line for line in rest.split("\n") if line.strip() and not line.startswith("--")] == []
