"""examples/chat_service behind nginx: real redis-server, two uvicorn workers, nginx round-robin.

Nothing is mocked: the workers are separate processes that share nothing but Redis, and nginx is
the Debian package's binary, run as a child with a config generated in a temporary directory.
Without nginx the tests skip, except under ``CI=true`` (``.ci/run`` installs it), where they fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from redis_sessions.embedded import free_port
from tests.conftest import in_ci

pytestmark = pytest.mark.real

ROOT = Path(__file__).resolve().parents[2]
APP_DIR = ROOT / "examples" / "chat_service"
WORKERS = ("worker-a", "worker-b")
STARTUP = 15.0  # seconds for a worker or nginx to come up
MODEL_DELAY = "0.05"  # the fake model "thinks" 50 ms, so racing replies overlap under the lease
TOOL_DELAY = "0.3"  # the fake tool runs 300 ms, so racing tool steps overlap its claim


@dataclass
class Service:
    lb: str  # nginx
    workers: dict[str, str]  # worker id -> its own URL, bypassing nginx
    processes: dict[str, subprocess.Popen[bytes]]  # worker id -> its process
    prefix: str  # the workers' key prefix (CHAT_PREFIX)


def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if found is None:
        reason = "nginx is not installed (apt-get install nginx)"
        if in_ci():
            pytest.fail(f"CI=true: {reason}", pytrace=False)
        pytest.skip(reason)
    return found


def nginx_conf(tmp: Path, port: int, upstreams: list[str]) -> str:
    servers = "".join(f"        server {u};\n" for u in upstreams)
    # A root master would hand its workers to `nobody`, who cannot write our temp dirs.
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""{user}daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream chat {{
{servers}    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://chat;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_cache off;
            proxy_read_timeout 1h;
        }}
    }}
}}
"""


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: process exited {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=0.5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)  # polling interval under a deadline
    raise RuntimeError(f"{url} not ready after {STARTUP} s:\n{log.read_text()}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@contextlib.contextmanager
def running(redis_url: str, tmp: Path, **settings: str) -> Iterator[Service]:
    """Two workers (with ``settings`` in their environment) behind nginx, stopped at the end."""
    nginx = nginx_binary()
    prefix = f"chat-test-{uuid.uuid4().hex[:8]}"
    children: list[subprocess.Popen[bytes]] = []
    try:
        workers: dict[str, str] = {}
        for worker in WORKERS:
            port = free_port()
            log = tmp / f"{worker}.log"
            env = {
                **os.environ,
                "REDIS_URL": redis_url,
                "WORKER_ID": worker,
                "CHAT_PREFIX": prefix,
                "FAKE_MODEL_DELAY": MODEL_DELAY,
                "FAKE_TOOL_DELAY": TOOL_DELAY,
                **settings,
            }
            command = [sys.executable, "-m", "uvicorn", "--app-dir", str(APP_DIR), "app:app"]
            command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
            command += ["--no-access-log", "--timeout-graceful-shutdown", "2"]
            with log.open("wb") as out:
                children.append(subprocess.Popen(command, env=env, stdout=out, stderr=out))
            workers[worker] = f"http://127.0.0.1:{port}"
            wait_ready(workers[worker], children[-1], log)
        lb_port = free_port()
        conf = tmp / "nginx.conf"
        conf.write_text(nginx_conf(tmp, lb_port, [u.removeprefix("http://") for u in workers.values()]))
        log = tmp / "nginx.out"
        with log.open("wb") as out:
            command = [nginx, "-e", str(tmp / "error.log"), "-c", str(conf), "-p", str(tmp)]
            children.append(subprocess.Popen(command, stdout=out, stderr=out))
        lb = f"http://127.0.0.1:{lb_port}"
        wait_ready(lb, children[-1], log)
        yield Service(lb, workers, dict(zip(WORKERS, children, strict=False)), prefix)
    finally:
        for child in reversed(children):
            stop(child)
        client = redis.Redis.from_url(redis_url)
        try:
            keys = list(client.scan_iter(match=f"{prefix}:*"))
            if keys:
                client.delete(*keys)
        finally:
            client.close()


@pytest.fixture(scope="module")
def service(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running(redis_url, tmp_path_factory.mktemp("chat_service")) as started:
        yield started


async def conversation(client: httpx.AsyncClient, sid: str) -> list[dict[str, Any]]:
    got = await client.get(f"/sessions/{sid}")
    assert got.status_code == 200, got.text
    messages: list[dict[str, Any]] = got.json()["messages"]
    return messages


async def converse(client: httpx.AsyncClient, name: str, turns: int) -> tuple[str, list[str]]:
    """Create a session and talk ``turns`` turns through nginx; returns its id and each X-Worker."""
    served: list[str] = []
    created = await client.post("/sessions")
    assert created.status_code == 201, created.text
    served.append(created.headers["x-worker"])
    sid = created.json()["id"]
    for turn in range(turns):
        posted = await client.post(f"/sessions/{sid}/messages", json={"text": f"{name} turn {turn}"})
        assert posted.status_code == 201, posted.text
        assert posted.json()["seq"] == 2 * turn + 1
        served.append(posted.headers["x-worker"])
        answered = await client.post(f"/sessions/{sid}/reply", json={"seq": 2 * turn + 1})
        assert answered.status_code == 201, answered.text
        assert answered.json()["seq"] == 2 * turn + 2
        served.append(answered.headers["x-worker"])
    return sid, served


def expected(name: str, turns: int) -> list[dict[str, Any]]:
    rows = []
    for turn in range(turns):
        text = f"{name} turn {turn}"
        rows.append({"seq": 2 * turn + 1, "role": "user", "text": text})
        rows.append({"seq": 2 * turn + 2, "role": "assistant", "text": f"echo: {text}"})
    return rows


def stripped(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: m[k] for k in ("seq", "role", "text")} for m in messages]


async def test_one_conversation_alternates_workers_through_nginx(service: Service) -> None:
    # Alone on nginx (one worker process, round robin), consecutive requests alternate strictly.
    async with httpx.AsyncClient(base_url=service.lb, timeout=10) as client:
        sid, served = await converse(client, "solo", 3)
        assert all(a != b for a, b in itertools.pairwise(served)), served
        assert set(served) == set(WORKERS)
        assert stripped(await conversation(client, sid)) == expected("solo", 3)


async def test_concurrent_conversations_store_every_turn_once_in_order(service: Service) -> None:
    # nginx's round robin alternates over all requests, not per conversation: under concurrency a
    # conversation's next request may hit the same worker (even every time, when its requests fall
    # into step with the others'). So per conversation this checks the stored result only; that the
    # workers take turns serving the traffic is checked over all of it.
    names = [f"chat{i}" for i in range(5)]
    turns = 6
    async with httpx.AsyncClient(base_url=service.lb, timeout=10) as client:
        done = await asyncio.gather(*(converse(client, name, turns) for name in names))
        switches: list[int] = []
        for name, (sid, served) in zip(names, done, strict=True):
            assert stripped(await conversation(client, sid)) == expected(name, turns)
            switches.append(sum(a != b for a, b in itertools.pairwise(served)))
        assert {w for _, served in done for w in served} == set(WORKERS)
        assert sum(switches) > 0, [served for _, served in done]
    pairs = sum(len(served) - 1 for _, served in done)
    print(f"\nconcurrent: {sum(switches)} of {pairs} consecutive request pairs changed worker")


async def test_sse_client_on_one_worker_sees_writes_through_the_other(service: Service) -> None:
    count = 40
    async with httpx.AsyncClient(base_url=service.lb, timeout=10) as lb:
        sid = (await lb.post("/sessions")).json()["id"]
        received: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue()
        async with lb.stream("GET", f"/sessions/{sid}/events", params={"after": 0}) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            watcher = stream.headers["x-worker"]  # nginx picked it; the writes go to the other
            writer = next(w for w in WORKERS if w != watcher)

            async def read() -> None:
                async for line in stream.aiter_lines():
                    if line.startswith("data: "):
                        await received.put((time.perf_counter(), json.loads(line[6:])))

            reader = asyncio.create_task(read())
            latencies = []
            try:
                async with httpx.AsyncClient(base_url=service.workers[writer], timeout=10) as direct:
                    for i in range(count):
                        sent = time.perf_counter()
                        posted = await direct.post(f"/sessions/{sid}/messages", json={"text": f"m{i}"})
                        assert posted.status_code == 201
                        assert posted.headers["x-worker"] == writer != watcher
                        at, event = await asyncio.wait_for(received.get(), timeout=5)
                        assert (event["seq"], event["role"], event["text"]) == (i + 1, "user", f"m{i}")
                        latencies.append(at - sent)
            finally:
                reader.cancel()
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    print(f"\nSSE via nginx ({watcher}), writes via {writer}: POST sent -> event received")
    print(f"  n={count} p50={p50:.2f} ms p99={p99:.2f} ms max={latencies[-1] * 1000:.2f} ms")


async def test_racing_replies_store_exactly_one(service: Service) -> None:
    outcomes: dict[str, int] = {}
    async with (
        httpx.AsyncClient(base_url=service.lb, timeout=10) as lb,
        httpx.AsyncClient(base_url=service.workers[WORKERS[0]], timeout=10) as a,
        httpx.AsyncClient(base_url=service.workers[WORKERS[1]], timeout=10) as b,
    ):
        sid = (await lb.post("/sessions")).json()["id"]
        for turn in range(8):
            seq = (await lb.post(f"/sessions/{sid}/messages", json={"text": f"q{turn}"})).json()["seq"]
            replies = await asyncio.gather(
                *(c.post(f"/sessions/{sid}/reply", json={"seq": seq}) for c in (a, b))
            )
            codes = sorted(r.status_code for r in replies)
            assert codes == [201, 409], [r.text for r in replies]
            loser = next(r for r in replies if r.status_code == 409).json()["error"]
            assert loser in {"LeaseHeld", "ConflictError"}
            outcomes[loser] = outcomes.get(loser, 0) + 1
        stored = stripped(await conversation(lb, sid))
    want = []
    for turn in range(8):
        want += [{"seq": 2 * turn + 1, "role": "user", "text": f"q{turn}"}]
        want += [{"seq": 2 * turn + 2, "role": "assistant", "text": f"echo: q{turn}"}]
    assert stored == want
    print(f"\nracing replies: the loser got {outcomes}")


async def test_typed_errors_map_to_http_codes(service: Service) -> None:
    async with httpx.AsyncClient(base_url=service.lb, timeout=10) as lb:
        assert (await lb.get("/sessions/not-a-uuid")).status_code == 400
        missing = f"/sessions/{uuid.uuid4()}"
        for response in (
            await lb.get(missing),
            await lb.get(f"{missing}/events"),
            await lb.post(f"{missing}/messages", json={"text": "hi"}),
            await lb.post(f"{missing}/reply"),
        ):
            assert response.status_code == 404, response.text
            assert response.json()["error"] == "SessionNotFound"
            assert response.headers["x-worker"] in WORKERS
        sid = (await lb.post("/sessions")).json()["id"]
        assert (await lb.post(f"/sessions/{sid}/messages", json={})).status_code == 400
        nothing = await lb.post(f"/sessions/{sid}/reply")
        assert nothing.status_code == 409
        assert nothing.json()["error"] == "NothingToAnswer"
        await lb.post(f"/sessions/{sid}/messages", json={"text": "hi"})
        assert (await lb.post(f"/sessions/{sid}/reply", json={"seq": 1})).status_code == 201
        stale = await lb.post(f"/sessions/{sid}/reply", json={"seq": 1})  # answered already
        assert stale.status_code == 409
        assert stale.json()["error"] == "ConflictError"


# -- streamed replies (issue 19) ------------------------------------------------------------------


async def read_sse(stream: Any, out: asyncio.Queue[dict[str, str]]) -> None:
    """Put each server-sent event of ``stream`` on ``out`` as {field: value} (comments skipped)."""
    event: dict[str, str] = {}
    async for line in stream.aiter_lines():
        if not line:
            if event:
                await out.put(event)
            event = {}
        elif not line.startswith(":"):
            field, _, value = line.partition(": ")
            event[field] = value


async def until_message(out: asyncio.Queue[dict[str, str]], limit: int = 10_000) -> list[dict[str, str]]:
    got: list[dict[str, str]] = []
    while len(got) < limit and (not got or got[-1]["event"] != "message"):
        got.append(await asyncio.wait_for(out.get(), timeout=10))
    return got


def check_reply(events: list[dict[str, str]], words: int) -> None:
    """Every delta once, in order, then the final message made of them."""
    deltas = [json.loads(e["data"]) for e in events if e["event"] == "delta"]
    final = json.loads(events[-1]["data"])
    assert [e["event"] for e in events] == ["delta"] * (words + 1) + ["message"]
    assert [d["index"] for d in deltas] == list(range(words + 1))
    assert final["deltas"] == words + 1
    assert "".join(d["text"] for d in deltas) == final["text"]
    assert len({e["id"] for e in events}) == len(events)


async def start_conversation(lb: httpx.AsyncClient, words: int) -> str:
    sid: str = (await lb.post("/sessions")).json()["id"]
    text = " ".join(f"w{i}" for i in range(words))
    assert (await lb.post(f"/sessions/{sid}/messages", json={"text": text})).status_code == 201
    return sid


async def test_a_streamed_reply_reaches_a_client_on_the_other_worker_once(service: Service) -> None:
    words = 40
    async with httpx.AsyncClient(base_url=service.lb, timeout=10) as lb:
        sid = await start_conversation(lb, words)
        out: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        async with lb.stream("GET", f"/sessions/{sid}/live", params={"after": 1}) as stream:
            assert stream.status_code == 200
            watcher = stream.headers["x-worker"]
            writer = next(w for w in WORKERS if w != watcher)
            reader = asyncio.create_task(read_sse(stream, out))
            try:
                async with httpx.AsyncClient(base_url=service.workers[writer], timeout=10) as direct:
                    answered = await direct.post(f"/sessions/{sid}/reply", json={"stream": True})
                    assert answered.status_code == 201, answered.text
                events = await until_message(out)
            finally:
                reader.cancel()
    check_reply(events, words)


async def test_a_client_reconnecting_with_last_event_id_to_either_worker_misses_nothing(
    service: Service,
) -> None:
    words = 40
    async with httpx.AsyncClient(base_url=service.lb, timeout=10) as lb:
        sid = await start_conversation(lb, words)
        replying = asyncio.create_task(lb.post(f"/sessions/{sid}/reply", json={"stream": True}))
        events: list[dict[str, str]] = []
        try:
            for hop, worker in enumerate([*WORKERS, *WORKERS]):  # each reconnect goes to the next worker
                headers = {"Last-Event-ID": events[-1]["id"]} if events else {}
                out: asyncio.Queue[dict[str, str]] = asyncio.Queue()
                async with (
                    httpx.AsyncClient(base_url=service.workers[worker], timeout=10) as direct,
                    direct.stream("GET", f"/sessions/{sid}/live", params={"after": 1}, headers=headers) as s,
                ):
                    reader = asyncio.create_task(read_sse(s, out))
                    try:  # leave after 10 events (the last hop: at the message)
                        events += await until_message(out, 10_000 if hop == 3 else 10)
                    finally:
                        reader.cancel()
                if events[-1]["event"] == "message":
                    break
            assert (await replying).status_code == 201
        finally:
            replying.cancel()
    assert hop == 3, "read in four connections, alternating workers"
    check_reply(events, words)


async def test_a_worker_killed_mid_reply_gives_readers_aborted_and_the_turn_can_be_retried(
    redis_url: str, tmp_path: Path
) -> None:
    words = 60
    with running(redis_url, tmp_path, LEASE_TTL="1", FAKE_TOKEN_DELAY="0.05") as started:
        doomed, survivor = WORKERS
        async with (
            httpx.AsyncClient(base_url=started.workers[survivor], timeout=10) as direct,
            httpx.AsyncClient(base_url=started.workers[doomed], timeout=10) as producer,
        ):
            sid = await start_conversation(direct, words)
            replying = asyncio.create_task(producer.post(f"/sessions/{sid}/reply", json={"stream": True}))
            out: asyncio.Queue[dict[str, str]] = asyncio.Queue()
            async with direct.stream("GET", f"/sessions/{sid}/live", params={"after": 1}) as stream:
                reader = asyncio.create_task(read_sse(stream, out))
                try:
                    events = [await asyncio.wait_for(out.get(), timeout=10) for _ in range(5)]
                    started.processes[doomed].kill()  # SIGKILL, mid-reply
                    killed = time.monotonic()
                    while events[-1]["event"] != "aborted":
                        events.append(await asyncio.wait_for(out.get(), timeout=10))
                    waited = time.monotonic() - killed
                    # The lease expired: the surviving worker retries the turn, streamed again.
                    retried = await direct.post(f"/sessions/{sid}/reply", json={"stream": True})
                    assert retried.status_code == 201, retried.text
                    events += await until_message(out)
                finally:
                    reader.cancel()
                    replying.cancel()
    first = [e for e in events if e["event"] == "delta" and json.loads(e["data"])["index"] == 0]
    assert len(first) == 2, "two replies began: the killed one and the retry"
    cut = next(i for i, e in enumerate(events) if e["event"] == "aborted")
    assert json.loads(events[cut]["data"])["reason"] == "producer lost"
    assert 0.3 < waited < 8, waited
    check_reply(events[cut + 1 :], words)


# -- a tool step that runs once (issue 19) --------------------------------------------------------


async def test_a_tool_step_with_a_counter_runs_once(service: Service, redis_url: str) -> None:
    # Ten requests to run one tool call, at once, on both workers (directly and through nginx): the
    # tool (it increments a counter outside the conversation) runs once, one ToolResult is stored,
    # and every request answers with it; the others wait out the live claim (409 ToolCallPending).
    pending = 0
    async with contextlib.AsyncExitStack() as stack:
        lb = await stack.enter_async_context(httpx.AsyncClient(base_url=service.lb, timeout=10))
        direct = [
            await stack.enter_async_context(httpx.AsyncClient(base_url=service.workers[w], timeout=10))
            for w in WORKERS
        ]
        sid = await start_conversation(lb, 3)

        async def run_tool(client: httpx.AsyncClient) -> httpx.Response:
            nonlocal pending
            deadline = time.monotonic() + 15
            while True:
                got = await client.post(f"/sessions/{sid}/tool", json={"tool_use_id": "toolu_count"})
                if got.status_code != 409:
                    return got
                assert got.json()["error"] == "ToolCallPending", got.text
                assert int(got.headers["retry-after"]) >= 1
                pending += 1
                assert time.monotonic() < deadline, "the claim was never completed"
                await asyncio.sleep(0.05)  # polling interval (Retry-After is in whole seconds)

        clients = [*direct * 4, lb, lb]
        answers = await asyncio.gather(*(run_tool(c) for c in clients))
        again = await run_tool(lb)  # a retry once the call is done runs nothing
        stored = await conversation(lb, sid)
    bodies = [a.json() for a in answers]
    assert sorted(a.status_code for a in answers) == [200] * (len(clients) - 1) + [201], bodies
    ran = [b for b in bodies if b["ran_here"]]
    assert len(ran) == 1, bodies
    assert ran[0]["attempt"] == 1
    assert {b["result"] for b in [*bodies, again.json()]} == {"counter is now 1"}
    assert {b["seq"] for b in [*bodies, again.json()]} == {3}
    assert {a.headers["x-worker"] for a in answers} == set(WORKERS)
    assert again.status_code == 200
    assert not again.json()["ran_here"]
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.get(f"{service.prefix}:example:{sid}:counter") == b"1"
    finally:
        client.close()
    assert [(m["seq"], m["role"], m["id"]) for m in stored][1:] == [
        (2, "assistant", "tool_use:toolu_count"),
        (3, "tool", "tool_result:toolu_count"),
    ]
    print(f"\ntool step: {len(clients)} racing requests, the tool ran once, {pending} 409s meanwhile")


def test_chat_otel_console_prints_the_stores_spans(redis_url: str, tmp_path: Path) -> None:
    # CHAT_OTEL=console: the worker prints its store's spans (session ids hashed) and, at exit, its
    # metrics to stdout. One worker, no nginx: this is about the worker's output.
    log, port = tmp_path / "worker.log", free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "CHAT_PREFIX": f"chat-otel-{uuid.uuid4().hex[:8]}"}
    env["CHAT_OTEL"] = "console"
    command = [sys.executable, "-m", "uvicorn", "--app-dir", str(APP_DIR), "app:app"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"]
    with log.open("wb") as out:
        worker = subprocess.Popen(command, env=env, stdout=out, stderr=out)
    try:
        wait_ready(f"http://127.0.0.1:{port}", worker, log)

        async def talk() -> str:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                return (await converse(client, "traced", 1))[0]

        sid = asyncio.run(talk())
    finally:
        stop(worker)
    printed = log.read_text()
    assert '"name": "append"' in printed
    assert '"db.system.name": "redis"' in printed
    assert '"redis_sessions.session.id"' in printed, "hashed ids are on in the example"
    assert sid not in printed, "the id itself is never printed"
    assert '"db.client.operation.duration"' in printed, "metrics are flushed at exit"
