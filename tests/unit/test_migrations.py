"""The upgrade registry without storage: which versions it reads, and the steps in order."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from redis_sessions import SCHEMA_VERSION, SchemaVersionError
from redis_sessions.migrations import Schema, Upgrade, active, register, using

SID = uuid.UUID("a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d")


def tag(mark: str) -> Upgrade:
    def session(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "trail": [*data.get("trail", []), mark]}

    def message(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "trail": [*data.get("trail", []), mark]}

    return Upgrade(session=session, message=message)


def test_steps_run_in_order_on_the_session_and_every_message() -> None:
    schema = Schema(4, {1: tag("1>2"), 2: tag("2>3"), 3: tag("3>4")})
    out = schema.upgrade(SID, 2, {"schema_version": 2, "messages": [{}, {"trail": ["x"]}]})
    assert out["schema_version"] == 4
    assert out["trail"] == ["2>3", "3>4"]
    assert [m["trail"] for m in out["messages"]] == [["2>3", "3>4"], ["x", "2>3", "3>4"]]


@pytest.mark.parametrize(("version", "readable"), [(4, True), (3, True), (1, False), (5, False)])
def test_readable_versions(version: int, readable: bool) -> None:
    schema = Schema(4, {2: tag("a"), 3: tag("b")})  # no step from 1
    assert schema.can_read(version) is readable
    if not readable:
        with pytest.raises(SchemaVersionError) as info:
            schema.upgrade(SID, version, {"messages": []})
        assert (info.value.found, info.value.expected) == (version, 4)
        assert str(SID) in str(info.value)


def test_the_default_schema_is_this_version_and_using_restores_it() -> None:
    assert active().current == SCHEMA_VERSION
    with using(Schema(9, {})) as schema:
        assert active() is schema
    assert active().current == SCHEMA_VERSION


def test_a_step_is_registered_once() -> None:
    register(-7, Upgrade())  # a version that never exists, so the library's schema is unaffected
    with pytest.raises(ValueError, match="registered already"):
        register(-7, Upgrade())
