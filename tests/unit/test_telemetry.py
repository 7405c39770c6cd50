"""``Telemetry``'s own choices, without Redis: the session-id policy and its checks."""

from __future__ import annotations

import subprocess
import sys
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


def test_nothing_is_recorded_until_a_provider_listens() -> None:
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    noop = {"tracer_provider": trace.NoOpTracerProvider(), "meter_provider": metrics.NoOpMeterProvider()}
    assert not Telemetry(**noop).listening()  # type: ignore[arg-type]
    assert Telemetry(**{**noop, "tracer_provider": TracerProvider()}).listening()  # type: ignore[arg-type]
    meter = MeterProvider()
    try:
        assert Telemetry(**{**noop, "meter_provider": meter}).listening()  # type: ignore[arg-type]
    finally:
        meter.shutdown()


def test_opentelemetrys_own_defaults_are_told_apart() -> None:
    # A fresh interpreter: nothing configured globally (another test's framework may have been).
    # This pins the name of the API's global proxy meter provider, which has no public class.
    program = "from redis_sessions import Telemetry; print(Telemetry().listening())"
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
