"""``_scripts``: the EVALSHA command, as a tuple for redis-py and packed for the lean line."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hiredis import pack_command
from hypothesis import given
from hypothesis import strategies as st

from redis_sessions import AgentMessage, Role, TenantQuota, Text
from redis_sessions import _write as write
from redis_sessions._core import StoreCore
from redis_sessions._scripts import SHAS, AppendHeads, evalsha, packed_evalsha

KEYS = ("rs:{0f1e}:meta", "rs:{0f1e}:messages", "rs:dirty:g6")


def test_evalsha_names_the_script_by_its_sha_and_counts_its_keys() -> None:
    assert evalsha("append", KEYS, ("1", b"x")) == ("EVALSHA", SHAS["append"], 3, *KEYS, "1", b"x")


@pytest.mark.parametrize(
    ("keys", "args"),
    [
        pytest.param(KEYS, (), id="no-args"),
        pytest.param((), ("1",), id="no-keys"),
        pytest.param(KEYS, ("1", "msgpack", "", "", "12", "m-1", b"\x93\x00" * 200), id="an-append"),
        pytest.param(KEYS, tuple(str(i) for i in range(9)), id="9-args"),
        pytest.param(KEYS, tuple(str(i) for i in range(10)), id="10-args: a longer array header"),
        pytest.param(KEYS * 4, (7, 2.5, "é ✓", b"", b"\r\n"), id="12-keys, ints, floats, utf-8, CRLF"),
    ],
)
def test_packed_evalsha_is_hiredis_packing_of_the_whole_command(keys: tuple[str, ...], args: Any) -> None:
    expected = pack_command(evalsha("append", keys, args))
    assert packed_evalsha("append", keys, args) == expected
    assert packed_evalsha("append", keys, args) == expected  # again, from the packed head kept


def test_the_same_keys_with_another_count_of_args_get_their_own_array_header() -> None:
    short = packed_evalsha("read_since", KEYS, ("1",))
    long = packed_evalsha("read_since", KEYS, ("1", "2"))
    assert short.startswith(b"*7\r\n")
    assert long.startswith(b"*8\r\n")
    assert long == pack_command(evalsha("read_since", KEYS, ("1", "2")))


_IDS = st.text(min_size=1, max_size=40)  # any str: "é" and "✓" take more bytes than characters


@given(message_id=_IDS, text=st.text(max_size=300), cluster=st.booleans(), tenant=st.booleans())
def test_a_plain_append_is_packed_as_the_whole_command_would_be(
    message_id: str, text: str, cluster: bool, tenant: bool
) -> None:
    """What the lean line sends for a plain append (``Script.packed``, from the session's
    ``AppendHeads`` head) is byte for byte the command the keys and args stand for."""
    core = StoreCore(
        prefix="rs",
        ttl=None,
        max_messages=None,
        codec="msgpack",
        max_message_bytes=1 << 20,
        cluster=cluster,
        tenant=TenantQuota(max_sessions=3) if tenant else None,
    )
    sid = uuid.uuid4()
    message = AgentMessage(role=Role.USER, content=[Text(text=text)], id=message_id)
    call = write.extend(core, sid, (message,), None)
    assert call.packed == packed_evalsha("append", call.keys, call.args)
    assert call.packed == write.extend(core, sid, (message,), None).packed  # from the kept head
    # Not plain: an expected seq, a fence or two messages are packed by the transport.
    assert not write.extend(core, sid, (message,), 3).packed
    assert not write.extend(core, sid, (message,), None, 7).packed
    assert not write.extend(core, sid, (message, message), None).packed


def test_the_heads_kept_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    core = StoreCore(prefix="rs", ttl=None, max_messages=None, codec="msgpack", max_message_bytes=1 << 20)
    monkeypatch.setattr(AppendHeads, "LIMIT", 2)
    first = uuid.uuid4()
    made: list[uuid.UUID] = []

    def make(owner: object, sid: uuid.UUID) -> tuple[tuple[str, ...], str]:
        assert owner is core
        made.append(sid)
        return (f"rs:{{{sid}}}:meta",), f"parser of {sid}"

    packed = core.heads.packed(first, "1", "m", b"x", make)
    assert packed[2] == f"parser of {first}"
    assert core.heads.packed(first, "1", "m", b"x", make) == packed
    assert made == [first], "made once, then kept"
    for _ in range(5):
        core.heads.packed(uuid.uuid4(), "1", "m", b"x", make)
    assert core.heads.packed(first, "1", "m", b"x", make) == packed  # made again after the clearing, the same
    assert made.count(first) == 2
    assert len(core.heads) <= 2
