"""``_scripts``: the EVALSHA command, as a tuple for redis-py and packed for the lean line."""

from __future__ import annotations

from typing import Any

import pytest
from hiredis import pack_command

from redis_sessions._scripts import SHAS, evalsha, packed_evalsha

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
