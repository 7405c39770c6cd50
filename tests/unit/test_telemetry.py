"""``Telemetry``'s own choices, without Redis: the session-id policy and its checks."""

from __future__ import annotations

import uuid

import pytest

from redis_sessions import Telemetry
from redis_sessions.errors import InvalidArgument


def test_the_session_id_policy() -> None:
    sid = uuid.uuid4()
    assert Telemetry().session_attribute(sid) is None, "off by default"
    assert Telemetry(session_id="plain").session_attribute(sid) == str(sid)
    hashed = Telemetry(session_id="hashed", session_id_key=b"secret")
    shown = hashed.session_attribute(sid)
    assert shown == hashed.session_attribute(sid), "stable: a session's spans correlate"
    assert shown != Telemetry(session_id="hashed").session_attribute(sid), "the key changes the digest"
    assert shown != hashed.session_attribute(uuid.uuid4())
    assert shown is not None
    assert len(shown) == 24
    assert str(sid) not in shown


@pytest.mark.parametrize(
    "options", [{"session_id": "raw"}, {"session_id_key": "text"}, {"session_id_key": b"k" * 65}]
)
def test_bad_options_are_refused(options: dict[str, object]) -> None:
    with pytest.raises(InvalidArgument):
        Telemetry(**options)  # type: ignore[arg-type]
