"""Bad input that is refused before any I/O: checked once per front here, with clients that never
connect, instead of on every backend (``tests/integration/test_validation.py`` keeps what needs
Redis: that nothing was stored)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
import redis
import redis.asyncio

from redis_sessions import AsyncSessionStore, InvalidSessionId, SessionStore
from redis_sessions.errors import InvalidArgument, InvalidArgumentType
from tests.conftest import MakeStore
from tests.integration.test_validation import BAD_IDS, operations

FRONTS = {"sync": (SessionStore, redis.Redis), "async": (AsyncSessionStore, redis.asyncio.Redis)}


@pytest.fixture(params=FRONTS)
def make_store(request: pytest.FixtureRequest) -> MakeStore:
    """``make_store(**options)``: a store of one front over a client that is never used."""
    store_class, client_class = FRONTS[request.param]
    return lambda **options: store_class(client_class(), **options)


@pytest.mark.parametrize("bad", [*BAD_IDS, None], ids=lambda v: repr(v)[:24])
def test_bad_ids_are_refused_before_any_redis_call(make_unreachable: MakeStore, bad: Any) -> None:
    # Redis is unreachable here: had any command been sent, the error would be StoreUnavailable.
    store = make_unreachable(retry=None)
    for name, operation in operations(store, bad).items():
        if name == "create" and bad is None:
            continue
        with pytest.raises(InvalidSessionId):
            operation()


@pytest.mark.parametrize(
    "options",
    [
        {"ttl": 0},
        {"ttl": -5},
        {"max_messages": 0},
        {"max_session_bytes": 0},
        {"max_session_bytes": True},
        {"codec": "xml"},
        {"prefix": "a*b"},
        {"prefix": "{x}"},
    ],
    ids=repr,
)
def test_bad_store_options(make_store: MakeStore, options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(options))):
        make_store(**options)


def test_bad_tool_call_arguments_are_refused_naming_the_session(make_store: MakeStore) -> None:
    store = make_store()
    sid = uuid.uuid4()
    bad: list[tuple[type[InvalidArgument], dict[str, Any]]] = [
        (InvalidArgumentType, {"tool_use_id": ""}),
        (InvalidArgumentType, {"tool_use_id": 7}),
        (InvalidArgument, {"tool_use_id": "x" * 513}),
        (InvalidArgumentType, {"fence": 0}),
        (InvalidArgumentType, {"fence": "1"}),
        (InvalidArgumentType, {"fence": True}),
        (InvalidArgumentType, {"ttl": None}),
        (InvalidArgument, {"ttl": -1}),
        (InvalidArgument, {"ttl": timedelta(0)}),
        (InvalidArgumentType, {"owner": ""}),
        (InvalidArgumentType, {"owner": b"w"}),
    ]
    for error, arguments in bad:
        arguments = {"tool_use_id": "toolu_1", **arguments}
        with pytest.raises(error) as info:
            store.tool_call(sid, **arguments)
        assert info.value.session_id == sid, arguments
        assert str(sid) in str(info.value)
    with pytest.raises(InvalidSessionId):
        store.tool_call("not-a-uuid", "toolu_1")
    call = store.tool_call(sid, "toolu_1", ttl=timedelta(seconds=2), owner="w")
    assert (call.ttl_ms, call.owner, call.attempt, call.done) == (2000, "w", 0, False)


def test_decoding_client_is_refused() -> None:
    sync_client = redis.Redis(decode_responses=True)
    with pytest.raises(ValueError, match="decode_responses"):
        SessionStore(sync_client)
    sync_client.close()
    async_client = redis.asyncio.Redis(decode_responses=True)
    with pytest.raises(ValueError, match="decode_responses"):
        AsyncSessionStore(async_client)
