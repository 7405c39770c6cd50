"""An encrypted store's durable record, on every adapter (SQLite, a directory, a real PostgreSQL):
the write-behind worker carries the sealed bodies as they are, so the record holds ciphertext only
(the summary too), and a read-through after Redis lost the session opens them again."""

from __future__ import annotations

import os

import pytest
import redis

from redis_sessions import AgentMessage, SessionStore
from redis_sessions.encryption import Encryption
from redis_sessions.errors import DecryptionError
from redis_sessions.keys import session_keys
from tests.integration.durable_support import flush
from tests.persistence.conftest import Place
from tests.support import unique_prefix

pytestmark = pytest.mark.real

SECRET = "the merger closes on friday"


def test_the_record_holds_ciphertext_only_and_reads_through(place: Place, redis_url: str) -> None:
    keys = Encryption({"k1": os.urandom(32)}, current="k1")
    prefix, adapter = unique_prefix(), place.sync()
    client = redis.Redis.from_url(redis_url)
    try:
        with SessionStore.from_url(redis_url, prefix=prefix, backing=adapter, encryption=keys) as store:
            sid = store.create("m")
            sent = [AgentMessage.user(f"{SECRET} {i}", id=f"m{i}") for i in range(3)]
            store.extend(sid, sent)
            store.summarize(sid, f"{SECRET}: summary", through_seq=1)
            flush(store)
            raw = place.raw()
            try:
                document = raw.document(str(sid))
                assert raw.count(str(sid)) == 3
            finally:
                raw.close()
            assert SECRET.encode() not in document, "the record holds ciphertext only"
            client.delete(*session_keys(prefix, sid))  # Redis lost it
            assert store.messages(sid) == sent  # read through, then opened
            assert store.context(sid, 1_000).summary is not None
        with SessionStore.from_url(redis_url, prefix=prefix, backing=adapter, cache_messages=0) as keyless:
            with pytest.raises(DecryptionError) as refused:
                keyless.messages(sid)
            assert str(sid) in str(refused.value)
    finally:
        adapter.close()
        client.close()
