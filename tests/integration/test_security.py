"""Security against a real ``redis-server``: an ACL user confined to the store's prefix, TLS, and
credentials kept out of errors, ``repr`` and logs.

Each test starts its own private ``redis-server`` (module scope) on a free loopback port, because
ACL users, ``requirepass`` and TLS are server-wide settings a shared server must not be given.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.exceptions

from redis_sessions import (
    AgentMessage,
    AsyncSessionStore,
    ConflictError,
    NotReplicated,
    RetryPolicy,
    SessionError,
    SessionStore,
    StoreError,
    StoreUnavailable,
)
from redis_sessions.embedded import RedisServer, free_port
from redis_sessions.keys import dirty_key, live_keys, session_keys
from redis_sessions.persistence import SQLiteAdapter
from tests.conftest import in_ci
from tests.support import AsyncAdapter, ids, messages_of, wait_until

pytestmark = pytest.mark.real

PREFIX = "rs-acl"
QUICK = RetryPolicy(attempts=2, initial=0.01, max_wait=0.02)

# -- The minimal ACL rule -----------------------------------------------------------------------------

ACL_COMMANDS = (
    # sent by the client: the scripts (EVALSHA, SCRIPT LOAD after NOSCRIPT), the snapshot reads
    # (MULTI/EXEC of HMGET/HGETALL/LRANGE), exists(), list() (SCAN), the write-behind worker
    # (ZRANGE of the dirty index), watch() (EVAL of its pub/sub probe, SSUBSCRIBE) and WAIT for
    # wait_replicas, info()/infos() (PTTL; MEMORY USAGE with memory=True, in info.lua for infos).
    # HELLO ... AUTH, which redis-py connects with, needs no permission.
    "+evalsha +script|load +eval +multi +exec +hmget +hgetall +lrange +exists +scan +zrange +ssubscribe"
    " +wait +pttl +memory|usage"
    # called inside the Lua scripts (ACLs apply to redis.call too; LSET: migrate --rekey)
    " +time +get +set +del +hget +hset +hdel +hincrby +llen +rpush +rpop +ltrim +pexpire +pexpireat +persist"
    " +zadd +zscore +zrem +zremrangebyscore +zcard +spublish +lindex +lset +xadd +xrange +rename"
)
"""What the library sends to a single Redis >= 7.0 (Cluster and Sentinel need their discovery
commands on top). ``SCAN`` is not checked against key patterns by Redis: a user that may SCAN sees
every key name, though it can read none outside its patterns."""


def acl_rule(prefix: str, password: str) -> str:
    """``ACL SETUSER <name> <rule>``: keys and (sharded) channels of ``prefix`` only, and the commands."""
    return f"on >{password} resetkeys ~{prefix}:* resetchannels &{prefix}:* -@all {ACL_COMMANDS}"


def _script_commands() -> set[str]:
    """Every command name inside the first argument of a ``redis.call``/``pcall`` in the scripts."""
    scripts = resources.files("redis_sessions") / "scripts"
    found: set[str] = set()
    for script in scripts.iterdir():
        if script.name.endswith(".lua"):
            for command in re.findall(r"redis\.p?call\(([^,]*),", script.read_text()):
                found |= {name.lower() for name in re.findall(r"['\"]([A-Z]+)['\"]", command)}
    return found


def test_the_acl_rule_allows_every_command_the_scripts_call() -> None:
    allowed = {word[1:] for word in ACL_COMMANDS.split() if word.startswith("+")}
    # A container command a script calls (info.lua: MEMORY) is called for the subcommand the rule
    # names (memory|usage), which the live ACL test below exercises through infos(memory=True).
    allowed |= {word.split("|")[0] for word in allowed if word.startswith("memory|")}
    called = _script_commands()
    assert {"hset", "rpush", "zadd", "spublish"} <= called  # the parse found the scripts' calls
    # PUBLISH is what the scripts call on Redis < 7, where SPUBLISH (and this rule) do not exist.
    assert called - {"publish"} <= allowed


# -- Servers ------------------------------------------------------------------------------------------


def _require(binary: str) -> str:
    found = shutil.which(binary)
    if found is None:
        reason = f"{binary} is not on PATH"
        if in_ci():
            pytest.fail(f"CI=true: {reason}", pytrace=False)
        pytest.skip(reason)
    return found


def _url(port: int, user: str = "", password: str = "", scheme: str = "redis") -> str:
    auth = f"{user}:{password}@" if password else ""
    return f"{scheme}://{auth}127.0.0.1:{port}/0"


class AclServer:
    """A private redis-server where the default user is off, ``admin`` may do anything, ``app`` is
    confined to ``rs-acl:*`` and ``other`` to ``other:*`` with the same commands."""

    def __init__(self, server: RedisServer) -> None:
        self.server = server
        admin = redis.Redis.from_url(server.url)
        admin.execute_command("ACL", "SETUSER", "admin", "on", ">admin-pw", "~*", "&*", "+@all")  # type: ignore[no-untyped-call]
        admin.execute_command("ACL", "SETUSER", "default", "off")  # type: ignore[no-untyped-call]
        admin.close()
        self.admin = redis.Redis.from_url(_url(server.port, "admin", "admin-pw"))
        version = tuple(int(part) for part in self.admin.info("server")["redis_version"].split("."))
        # Redis >= 7.2 knows CLIENT SETINFO, which redis-py sends on connect (and shrugs off if refused).
        extra = " +client|setinfo" if version >= (7, 2) else ""
        for user, prefix in (("app", PREFIX), ("other", "other")):
            rule = (acl_rule(prefix, f"{user}-pw") + extra).split()
            self.admin.execute_command("ACL", "SETUSER", user, "reset", *rule)  # type: ignore[no-untyped-call]

    def url(self, user: str) -> str:
        return _url(self.server.port, user, f"{user}-pw")

    def dump(self) -> dict[bytes, bytes | None]:
        return {key: self.admin.dump(key) for key in sorted(self.admin.scan_iter(match=f"{PREFIX}:*"))}

    def denials(self, user: str) -> list[Any]:
        return [entry for entry in self.admin.acl_log(count=1000) if entry.get("username") == user]


@pytest.fixture(scope="module")
def acl() -> Iterator[AclServer]:
    _require("redis-server")
    with RedisServer() as server:
        namespace = AclServer(server)
        yield namespace
        namespace.admin.close()


@pytest.fixture
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as run:
        yield run


def _open(front: str, url: str, runner: asyncio.Runner, **options: Any) -> Any:
    options.setdefault("prefix", PREFIX)
    if front == "sync":
        return SessionStore.from_url(url, **options)
    return AsyncAdapter(AsyncSessionStore.from_url(url, **options), runner)


@contextlib.contextmanager
def _opened(front: str, url: str, runner: asyncio.Runner, **options: Any) -> Iterator[Any]:
    store = _open(front, url, runner, **options)
    try:
        yield store
    finally:
        store.close()


def _shard_subscribers(admin: redis.Redis, channel: str) -> int:
    reply = admin.execute_command("PUBSUB", "SHARDNUMSUB", channel)  # type: ignore[no-untyped-call]
    return int(reply[1])


# -- ACL ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("front", ["sync", "async"])
def test_a_user_confined_to_the_prefix_can_use_every_feature(
    acl: AclServer, front: str, runner: asyncio.Runner
) -> None:
    acl.admin.acl_log_reset()
    with _opened(front, acl.url("app"), runner, ttl=60, max_messages=3) as store:
        sid = store.create(model="m", system_message="be brief", metadata={"user": "ada"})
        assert store.append(sid, AgentMessage.user("hi", id="a")) == 1
        assert store.append(sid, AgentMessage.user("hi", id="a")) == 1  # idempotent
        assert store.extend(sid, messages_of(3)) == 4  # trimmed to the newest 3
        with pytest.raises(ConflictError):
            store.append(sid, AgentMessage.user("late"), expected_seq=1)
        assert ids(store.messages(sid)) == ["m-0000", "m-0001", "m-0002"]
        assert ids(store.messages(sid, -1)) == ["m-0002"]  # cached, re-read only what is new
        store.set_metadata(sid, {"user": None, "team": "x"})
        session = store.load(sid)
        assert session is not None
        assert session.metadata == {"team": "x"}
        assert session.seq == 4
        assert store.exists(sid)
        assert sid in list(store.list())
        info = store.info(sid, memory=True)
        assert info is not None
        assert (info.messages, info.seq, info.bytes is not None) == (3, 4, True)
        listed = {i.id: i for i in store.infos(memory=True)}
        assert listed[sid].bytes == info.bytes, "info.lua's MEMORY USAGE is allowed: bytes, not None"
        copy = uuid.uuid4()
        assert store.import_state(copy, session.to_state())
        assert store.pop(copy) == session.messages[-1]
        store.delete(copy)
        # context, summaries, compaction and forks (issue 20)
        assert store.context(sid, 10_000).seq == 4
        assert store.summarize(sid, "earlier", through_seq=2, expected=0) == 2
        assert store.compact(sid, lambda messages: "all", over_tokens=1, keep_tokens=0) == 4
        fork = store.fork(sid, at_seq=4)
        assert store.context(fork, 10_000).summary is not None
        store.delete(fork)

        with store.lease(sid, "worker", 10) as lease:
            lease.extend()
            assert lease.append(AgentMessage.user("fenced", id="f")) == 5
        assert acl.admin.exists(live_keys(PREFIX, sid)[0]) == 0  # released

        # watch: live over sharded pub/sub (poll_interval far beyond the timeout: no polling rescue)
        channel = live_keys(PREFIX, sid)[1]
        seen: list[Any] = []

        def watch() -> None:
            with asyncio.Runner() as own, _opened(front, acl.url("app"), own) as watcher:
                for item in watcher.watch(sid, 5, timeout=5, poll_interval=60):
                    seen.append(item)

        thread = threading.Thread(target=watch)
        thread.start()
        wait_until(lambda: _shard_subscribers(acl.admin, channel) == 1, "the watcher subscribed", 5)
        store.append(sid, AgentMessage.user("live", id="live"))
        assert store.next_message(sid, 5, timeout=1).message.id == "live"
        # Delete only once the watcher has it: a delete that lands first takes the message away
        # before the watcher reads it, and the watch then just ends (it was racing the test).
        wait_until(lambda: len(seen) == 1, "the watcher got the message", 5)
        store.delete(sid)  # ends the watch
        thread.join(10)
        assert not thread.is_alive()
        assert [item.message.id for item in seen] == ["live"]
        assert not store.exists(sid)

    # WAIT is allowed: with no replica it times out into the library's own error
    with (
        _opened(front, acl.url("app"), runner, wait_replicas=1, wait_timeout=0.01) as waiting,
        pytest.raises(NotReplicated),
    ):
        waiting.create()
    assert acl.denials("app") == []
    for key in acl.admin.scan_iter(match=f"{PREFIX}:*"):
        acl.admin.delete(key)


def test_a_user_confined_to_the_prefix_can_use_a_tiered_store(acl: AclServer, tmp_path: Path) -> None:
    acl.admin.acl_log_reset()
    backing = SQLiteAdapter(tmp_path / "sessions.db")
    with SessionStore.from_url(acl.url("app"), prefix=PREFIX, backing=backing) as store:
        sid = store.create(model="m")
        store.extend(sid, messages_of(3))
        store.flush(10)
        assert acl.admin.zscore(dirty_key(PREFIX, sid, False), str(sid)) is None  # delivered
        acl.admin.delete(*session_keys(PREFIX, sid))  # as if evicted
        assert ids(store.messages(sid)) == ids(messages_of(3))  # read through from SQLite
        assert store.delete(sid)
        assert backing.load_session(sid) is None
    assert acl.denials("app") == []


def test_a_user_of_another_prefix_can_neither_read_nor_write_the_sessions(
    acl: AclServer, runner: asyncio.Runner
) -> None:
    with SessionStore.from_url(acl.url("app"), prefix=PREFIX) as owner:
        sid = owner.create(model="secret-model", metadata={"k": "v"})
        owner.extend(sid, messages_of(2))
        with owner.lease(sid, "owner", 30):
            before = acl.dump()
            for front in ("sync", "async"):
                with _opened(front, acl.url("other"), runner, retry=QUICK) as intruder:
                    attempts: dict[str, Callable[[], object]] = {
                        "append": lambda: intruder.append(sid, AgentMessage.user("x")),
                        "extend": lambda: intruder.extend(sid, messages_of(2, "x")),
                        "messages": lambda: intruder.messages(sid),
                        "load": lambda: intruder.load(sid),
                        "exists": lambda: intruder.exists(sid),
                        "set_metadata": lambda: intruder.set_metadata(sid, {"k": "stolen"}),
                        "delete": lambda: intruder.delete(sid),
                        "create": lambda: intruder.create(session_id=uuid.uuid4()),
                        "lease": lambda: intruder.lease(sid, "intruder", 30).acquire(),
                        "next_message": lambda: intruder.next_message(sid, 0, timeout=1),
                    }
                    for name, attempt in attempts.items():
                        with pytest.raises(SessionError) as info:
                            attempt()
                        assert isinstance(info.value, StoreError), (front, name, info.value)
                        assert not isinstance(info.value, redis.exceptions.RedisError)
                        assert "NOPERM" in str(info.value) or "permission" in str(info.value).lower()
                    # Redis does not filter SCAN by key patterns: the ids are visible, never the data.
                    assert sid in list(intruder.list())
            assert acl.dump() == before
    assert acl.denials("other")  # Redis logged the refusals
    owner_check = SessionStore.from_url(acl.url("app"), prefix=PREFIX)
    with owner_check:
        assert owner_check.delete(sid)


# -- TLS ----------------------------------------------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _certificates(directory: Path) -> None:
    """A throwaway CA, and a server certificate for 127.0.0.1 it signed (EC keys: fast)."""
    key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=rs-test-ca",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "req", *key, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=directory
    )
    (directory / "server.ext").write_text(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n"
    )
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.crt", "-days", "2", "-extfile", "server.ext",
        cwd=directory,
    )  # fmt: skip


class TlsServer:
    """A redis-server that speaks TLS only (``--port 0``), on a free loopback port."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ca = directory / "ca.crt"
        self.port = free_port()
        args = ["--port", "0", "--tls-port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", str(directory), "--tls-auth-clients", "no"]
        args += [
            "--tls-cert-file",
            str(directory / "server.crt"),
            "--tls-key-file",
            str(directory / "server.key"),
        ]
        args += ["--tls-ca-cert-file", str(self.ca)]
        self.process = subprocess.Popen(
            [_require("redis-server"), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        client = redis.Redis(port=self.port, ssl=True, ssl_ca_certs=str(self.ca), socket_timeout=1)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    client.ping()
                    break
                except redis.exceptions.ConnectionError:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        out = self.stop()
                        if "TLS" in out and ("not" in out or "support" in out):
                            pytest.skip(f"this redis-server has no TLS support: {out[-300:]}")
                        raise RuntimeError(f"TLS redis-server did not start:\n{out}") from None
                    time.sleep(0.01)
        finally:
            client.close()

    def url(self, query: str = "") -> str:
        return f"rediss://127.0.0.1:{self.port}/0{query}"

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(5)
        out = self.process.stdout.read() if self.process.stdout else b""
        if self.process.stdout:
            self.process.stdout.close()
        return out.decode("utf-8", "replace")


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    _require("redis-server")
    _require("openssl")
    directory = tmp_path_factory.mktemp("tls")
    _certificates(directory)
    server = TlsServer(directory)
    yield server
    server.stop()


@pytest.mark.parametrize("front", ["sync", "async"])
def test_rediss_with_the_ca_file_works(tls: TlsServer, front: str, runner: asyncio.Runner) -> None:
    with _opened(front, tls.url(f"?ssl_ca_certs={tls.ca}"), runner) as store:
        sid = store.create(model="m")
        assert store.extend(sid, messages_of(2)) == 2
        assert store.append(sid, AgentMessage.user("tls", id="t")) == 3
        assert ids(store.messages(sid)) == [*ids(messages_of(2)), "t"]
        assert store.load(sid).seq == 3
        assert store.next_message(sid, 2, timeout=1).message.id == "t"
        assert store.delete(sid)


@pytest.mark.parametrize("front", ["sync", "async"])
def test_rediss_without_the_ca_is_a_typed_error(tls: TlsServer, front: str, runner: asyncio.Runner) -> None:
    # No ssl_ca_certs: the system trust store, which does not know the throwaway CA.
    with _opened(front, tls.url(), runner, retry=QUICK) as store, pytest.raises(StoreError) as info:
        store.create()
    assert "certificate" in str(info.value).lower()
    assert isinstance(info.value.__cause__, redis.exceptions.ConnectionError)


def test_plain_redis_on_the_tls_port_is_a_typed_error(tls: TlsServer) -> None:
    plain = f"redis://127.0.0.1:{tls.port}/0"
    with (
        SessionStore.from_url(plain, retry=QUICK, socket_timeout=1) as store,
        pytest.raises(StoreUnavailable),
    ):
        store.create()


def test_the_ca_really_is_checked(tls: TlsServer) -> None:
    """The certificate chain the tests make is valid for 127.0.0.1 (so the failure above is the CA)."""
    context = ssl.create_default_context(cafile=str(tls.ca))
    import socket

    with (
        socket.create_connection(("127.0.0.1", tls.port), timeout=2) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as wrapped,
    ):
        assert wrapped.version() is not None


# -- Credentials --------------------------------------------------------------------------------------

PASSWORD = "S3cr3t-Pa55word"
USER_PASSWORD = "An0ther-S3cret"


@pytest.fixture(scope="module")
def locked() -> Iterator[RedisServer]:
    _require("redis-server")
    with RedisServer(extra_args=["--requirepass", PASSWORD]) as server:
        admin = redis.Redis(port=server.port, password=PASSWORD)
        admin.execute_command("ACL", "SETUSER", "ada", "on", f">{USER_PASSWORD}", "~*", "&*", "+@all")  # type: ignore[no-untyped-call]
        admin.close()
        yield server


def _texts(error: BaseException) -> list[str]:
    """Every message along the chain of causes and contexts."""
    texts: list[str] = []
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        texts += [str(current), repr(current), *map(str, current.args)]
        pending += [current.__cause__, current.__context__]
    return texts


def _assert_hidden(texts: list[str], secrets: tuple[str, ...]) -> None:
    for text in texts:
        for secret in secrets:
            assert secret not in text, f"credential leaked in {text!r}"


@pytest.mark.parametrize("front", ["sync", "async"])
@pytest.mark.parametrize(
    ("user", "password"),
    [("", "wrong-" + PASSWORD), ("ada", "wrong-" + USER_PASSWORD), ("nobody", USER_PASSWORD)],
    ids=["wrong-password", "wrong-user-password", "unknown-user"],
)
def test_refused_credentials_never_appear_in_errors_repr_or_logs(
    locked: RedisServer,
    front: str,
    user: str,
    password: str,
    runner: asyncio.Runner,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="redis_sessions")
    url = _url(locked.port, user, password)
    sid = uuid.uuid4()
    with _opened(front, url, runner, retry=QUICK) as store:
        _assert_hidden([repr(store), str(store)], (password,))
        calls = (store.create, lambda: store.append(sid, AgentMessage.user("x")), lambda: store.exists(sid))
        for call in calls:
            with pytest.raises(StoreError) as info:
                call()
            assert (
                "invalid" in str(info.value)
                or "WRONGPASS" in str(info.value)
                or "auth" in str(info.value).lower()
            )
            _assert_hidden(_texts(info.value), (password,))
    _assert_hidden([record.getMessage() for record in caplog.records], (password,))


def test_a_tiered_store_with_a_wrong_password_leaks_it_nowhere(
    locked: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="redis_sessions")
    password = "wrong-" + PASSWORD
    backing = SQLiteAdapter(tmp_path / "sessions.db")
    with SessionStore.from_url(_url(locked.port, "", password), backing=backing, retry=QUICK) as store:
        _assert_hidden([repr(store)], (password,))
        with pytest.raises(StoreError) as create:
            store.create()
        with pytest.raises(SessionError) as flush:
            store.flush(2)
    for error in (create.value, flush.value):
        _assert_hidden(_texts(error), (password,))
    _assert_hidden([record.getMessage() for record in caplog.records], (password,))


@pytest.mark.parametrize(
    "url",
    [
        "redis://ada:{pw}@127.0.0.1:notaport/0",
        "redis://ada:{pw}@127.0.0.1:{port}/0?socket_timeout=soon",
        "http://ada:{pw}@127.0.0.1:{port}/0",
    ],
    ids=["bad-port", "bad-option", "bad-scheme"],
)
def test_malformed_urls_never_echo_the_password(locked: RedisServer, url: str) -> None:
    with pytest.raises(Exception) as info:  # noqa: PT011 - what matters is the message, any type
        SessionStore.from_url(url.format(pw=USER_PASSWORD, port=locked.port)).create()
    _assert_hidden(_texts(info.value), (USER_PASSWORD,))


@pytest.mark.parametrize("front", ["sync", "async"])
def test_good_credentials_work_and_stay_out_of_repr(
    locked: RedisServer, front: str, runner: asyncio.Runner, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="redis_sessions")
    for user, password in (("", PASSWORD), ("ada", USER_PASSWORD)):
        with _opened(
            front, _url(locked.port, user, password), runner, prefix=f"rs-cred-{uuid.uuid4().hex[:8]}"
        ) as store:
            sid = store.create()
            assert store.append(sid, AgentMessage.user("x")) == 1
            _assert_hidden(
                [repr(store), repr(getattr(store, "store", store)), repr(store.client)], (password,)
            )
            with pytest.raises(SessionError) as info:
                store.append(uuid.uuid4(), AgentMessage.user("x"))  # SessionNotFound
            _assert_hidden(_texts(info.value), (password,))
            assert store.delete(sid)
    _assert_hidden([record.getMessage() for record in caplog.records], (PASSWORD, USER_PASSWORD))
