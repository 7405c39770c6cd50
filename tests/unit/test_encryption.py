"""``Encryption`` and the sealed envelope without Redis: what is refused before anything is sent, a
broken envelope reported as corrupt, and a stand-in that does not match its message refused."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import uuid

import pytest

from redis_sessions import AgentMessage, CorruptSession
from redis_sessions._envelope import STAND_IN, open_sealed, seal, stand_in, unwrap
from redis_sessions.encryption import Encryption
from redis_sessions.errors import DecryptionError, InvalidArgument, InvalidArgumentType

KEY = os.urandom(32)
SID = uuid.uuid4()


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        ((), {}, InvalidArgument),
        (({"k": KEY},), {"current": "other"}, InvalidArgument),
        (({"k": KEY[:16]},), {"current": "k"}, InvalidArgumentType),
        (({"": KEY},), {"current": ""}, InvalidArgumentType),
        (({"k" * 256: KEY},), {"current": "k" * 256}, InvalidArgumentType),
        (({"k": KEY},), {"current": "k", "keyring": lambda sid, key_id: ("k", KEY)}, InvalidArgument),
    ],
    ids=["nothing", "unknown-current", "aes-128-key", "empty-id", "long-id", "both"],
)
def test_a_keyring_that_cannot_work_is_refused(args: tuple, kwargs: dict, error: type[Exception]) -> None:  # type: ignore[type-arg]
    with pytest.raises(error):
        Encryption(*args, **kwargs)


def test_a_sealed_body_opens_only_in_its_session_under_its_id() -> None:
    encryption = Encryption({"k": KEY}, current="k")
    sealed = seal(encryption, SID, "m1", b"body")
    assert open_sealed(encryption, SID, sealed, 0) == b"body"
    with pytest.raises(DecryptionError):
        open_sealed(encryption, uuid.uuid4(), sealed, 0)
    with pytest.raises(DecryptionError, match="no encryption= keyring"):
        open_sealed(None, SID, sealed, 3)


@pytest.mark.parametrize("cut", [1, 2, 5, 20])
def test_a_broken_envelope_is_corrupt_not_garbage(cut: int) -> None:
    sealed = seal(Encryption({"k": KEY}, current="k"), SID, "m1", b"body")
    with pytest.raises(CorruptSession):
        open_sealed(Encryption({"k": KEY}, current="k"), SID, sealed[:cut], 7)


def test_a_stand_in_carries_its_sealed_bytes_and_no_other_message_can() -> None:
    sealed = seal(Encryption({"k": KEY}, current="k"), SID, "m1", b"body")
    carrier = stand_in(SID, sealed, 0)
    assert (carrier.id, carrier.content, unwrap(SID, carrier)) == ("m1", [], sealed)
    assert unwrap(SID, AgentMessage.user("hi")) is None
    forged = AgentMessage(role=carrier.role, content=[], id="m2", extra=carrier.extra)
    with pytest.raises(CorruptSession):
        unwrap(SID, forged)
    garbled = AgentMessage(role=carrier.role, content=[], id="m1", extra={STAND_IN: "!!"})
    with pytest.raises(CorruptSession):
        unwrap(SID, garbled)
    assert base64.b64decode(carrier.extra[STAND_IN]) == sealed  # type: ignore[index]


def test_without_cryptography_the_error_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['cryptography'] = None\n"
        "from redis_sessions.encryption import Encryption\n"
        "try:\n    Encryption({'k': bytes(32)}, current='k')\n"
        "except ImportError as exc:\n    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "redis-sessions[crypto]" in done.stdout
