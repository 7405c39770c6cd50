"""A chat service that any number of identical workers can serve behind a load balancer.

No state lives in a worker: every request reads and writes the conversation in Redis through
``AsyncSessionStore``, so consecutive requests of one conversation may land on different workers.
``/events`` streams a conversation live (server-sent events over ``store.watch``), whichever worker
wrote the messages; ``/reply`` answers a user turn under the session's lease, so two workers racing on
the same turn store exactly one reply (the other gets 409). With ``{"stream": true}`` the reply is
streamed token by token (``store.stream``, fenced by the lease) and ``/live`` follows it from any
worker (``watch(partial=True)``): SSE events ``delta``, ``aborted`` and ``message``, each with the
library's ``event_id`` as its SSE id, so a client that reconnects with ``Last-Event-ID`` (to any
worker) continues right after the last event it got. ``/tool`` is a tool step that must run once
(``store.tool_call``): its fake tool increments a counter outside the conversation (a Redis key
standing in for a payment provider), and however many workers are asked to run the same call, or
retried, the counter goes up once and every one of them answers with the one stored result.

Configuration comes from the environment: ``REDIS_URL`` (required), ``WORKER_ID`` (default
``<host>-<pid>``, sent back in an ``X-Worker`` header on every response), ``CHAT_PREFIX`` (key
prefix, default ``chat``), ``FAKE_MODEL_DELAY`` (seconds the fake model "thinks", default 0),
``FAKE_TOKEN_DELAY`` (seconds between the tokens of a streamed reply, default 0.01), ``LEASE_TTL``
(seconds a worker's turn lease lasts, default 30; a streamed reply of a worker that died is
given up as aborted once it expired), ``FAKE_TOOL_DELAY`` (seconds the fake tool runs, default 0),
``CHAT_OTEL`` (``console``: the store's OpenTelemetry spans and metrics printed to stdout, session ids
hashed; needs ``opentelemetry-sdk``; unset: no telemetry).
Run with ``uvicorn --app-dir examples/chat_service app:app``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from redis_sessions import (
    Aborted,
    AgentMessage,
    AsyncSessionStore,
    ConflictError,
    Delta,
    InvalidSessionId,
    LeaseHeld,
    LeaseLost,
    Role,
    SessionError,
    SessionNotFound,
    StoreUnavailable,
    Telemetry,
    ToolCallPending,
    ToolResult,
    ToolUse,
)

WORKER_ID = os.environ.get("WORKER_ID") or f"{socket.gethostname()}-{os.getpid()}"
LEASE_TTL = float(os.environ.get("LEASE_TTL", "30"))  # seconds; longer than a fake reply takes
KEEPALIVE = 15.0  # seconds of silence before an SSE comment line keeps proxies from timing out

# Typed library errors -> HTTP status. Order matters: the first matching base class wins.
STATUS: list[tuple[type[SessionError], int]] = [
    (SessionNotFound, 404),
    (InvalidSessionId, 400),
    (LeaseHeld, 409),
    (ConflictError, 409),
    (LeaseLost, 409),
    (ToolCallPending, 409),
    (StoreUnavailable, 503),
]


def store(request: Request) -> AsyncSessionStore:
    found: AsyncSessionStore = request.app.state.store
    return found


def fake_model(messages: list[AgentMessage]) -> str:
    """A deterministic stand-in for a model call: echo the last user message."""
    last_user = next(m for m in reversed(messages) if m.role is Role.USER)
    return f"echo: {last_user.text}"


def as_json(seq: int, message: AgentMessage) -> dict[str, Any]:
    return {"seq": seq, "id": message.id, "role": message.role.value, "text": message.text}


async def body(request: Request) -> dict[str, Any]:
    """The request's JSON object ({} for an empty body); 400 for anything else."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        raise HTTPException(400, "body must be JSON") from None
    if not isinstance(parsed, dict):
        raise HTTPException(400, "body must be a JSON object")
    return parsed


async def health(request: Request) -> Response:
    return JSONResponse({"worker": WORKER_ID})


async def create_session(request: Request) -> Response:
    sid = await store(request).create()
    return JSONResponse({"id": str(sid)}, status_code=201)


async def post_message(request: Request) -> Response:
    text = (await body(request)).get("text")
    if not isinstance(text, str) or not text:
        raise HTTPException(400, '"text" must be a non-empty string')
    seq = await store(request).append(request.path_params["sid"], AgentMessage.user(text))
    return JSONResponse({"seq": seq}, status_code=201)


async def get_session(request: Request) -> Response:
    sid = request.path_params["sid"]
    session = await store(request).load(sid)
    if session is None:
        raise SessionNotFound(uuid.UUID(sid))  # load() already refused a malformed id
    first = session.seq - len(session.messages) + 1  # trimming keeps seq counting
    messages = [as_json(first + i, m) for i, m in enumerate(session.messages)]
    return JSONResponse({"id": str(session.id), "seq": session.seq, "messages": messages})


async def reply(request: Request) -> Response:
    """Answer the user turn at ``seq`` (default: the latest) under the session's lease.

    The lease keeps a second worker out while this one "thinks"; ``expected_seq`` refuses the
    append if anything was stored since the conversation was read, so a worker that takes the lease
    after the first one released it cannot answer the same turn again.
    """
    sid = request.path_params["sid"]
    given = await body(request)
    wanted = given.get("seq")
    if wanted is not None and (not isinstance(wanted, int) or isinstance(wanted, bool)):
        raise HTTPException(400, '"seq" must be an integer')
    async with store(request).lease(sid, owner=WORKER_ID, ttl=LEASE_TTL) as lease:
        session = await store(request).load(sid)
        if session is None:
            raise SessionNotFound(uuid.UUID(sid))
        turn = session.seq if wanted is None else wanted
        if session.seq != turn:
            raise ConflictError(session.id, turn, session.seq)
        if not session.messages or session.messages[-1].role is not Role.USER:
            return JSONResponse({"error": "NothingToAnswer", "detail": "no user turn to answer"}, 409)
        delay = float(os.environ.get("FAKE_MODEL_DELAY", "0"))
        if delay:
            await asyncio.sleep(delay)
        answer = AgentMessage.assistant(fake_model(session.messages))
        if given.get("stream") is True:  # token by token; a stale worker's writes are refused
            async with store(request).stream(sid, fence=lease.token, message_id=answer.id) as streamed:
                renewed = time.monotonic()
                for piece in re.findall(r"\S+\s*", answer.text):
                    await streamed.write(piece)
                    await asyncio.sleep(float(os.environ.get("FAKE_TOKEN_DELAY", "0.01")))
                    if time.monotonic() - renewed > LEASE_TTL / 3:  # keep the turn while streaming
                        await lease.extend()
                        renewed = time.monotonic()
            assert streamed.seq is not None
            seq = streamed.seq
        else:
            seq = await lease.append(answer, expected_seq=turn)
        token = lease.token  # the fencing token the reply was written under
    return JSONResponse({"seq": seq, "text": answer.text, "token": token}, status_code=201)


def counter_key(request: Request, sid: str) -> str:
    """The fake tool's counter: outside the conversation, as a payment provider's books would be."""
    prefix: str = request.app.state.prefix
    return f"{prefix}:example:{sid}:counter"


async def tool(request: Request) -> Response:
    """Run the tool call ``tool_use_id`` of the session once, whichever worker is asked and however
    often: the assistant's ``ToolUse`` message is appended (idempotently, by its id), then the call is
    claimed with ``store.tool_call``. The worker that gets the claim runs the fake tool (it
    increments the counter) and stores its ``ToolResult`` with ``call.complete``: 201. A call already
    done answers with the stored result and runs nothing: 200. While another worker holds a live
    claim: 409 ``ToolCallPending``, with a ``Retry-After`` header.
    """
    sid = request.path_params["sid"]
    tool_use_id = (await body(request)).get("tool_use_id")
    if not isinstance(tool_use_id, str) or not tool_use_id:
        raise HTTPException(400, '"tool_use_id" must be a non-empty string')
    asked = AgentMessage.assistant([ToolUse(tool_use_id, "count", {})], id=f"tool_use:{tool_use_id}")
    await store(request).append(sid, asked)  # a retry or a second worker finds it stored: no-op
    async with store(request).tool_call(sid, tool_use_id, ttl=LEASE_TTL, owner=WORKER_ID) as call:
        ran_here = not call.done
        if ran_here:  # no result stored yet: this worker runs the tool (attempt > 1: check first)
            delay = float(os.environ.get("FAKE_TOOL_DELAY", "0"))
            if delay:
                await asyncio.sleep(delay)
            outside: Redis = request.app.state.outside
            count = await outside.incr(counter_key(request, sid))
            await call.complete(f"counter is now {count}")
        result = call.result
    assert isinstance(result, ToolResult)  # trimming would be the only way to lose it
    answer = {"tool_use_id": tool_use_id, "result": result.content, "seq": call.seq}
    answer |= {"attempt": call.attempt, "ran_here": ran_here}
    return JSONResponse(answer, status_code=201 if call.stored else 200)


async def events(request: Request) -> Response:
    """Server-sent events: every message after ``?after=N`` (or ``Last-Event-ID``), live."""
    sid = request.path_params["sid"]
    after_text = request.headers.get("last-event-id") or request.query_params.get("after", "0")
    try:
        after = int(after_text)
    except ValueError:
        raise HTTPException(400, '"after" must be an integer') from None
    if not await store(request).exists(sid):  # before the 200: errors mid-stream cannot change it
        raise SessionNotFound(uuid.UUID(sid))

    async def stream() -> AsyncIterator[str]:
        seq = after
        while True:
            async for item in store(request).watch(sid, after_seq=seq, timeout=KEEPALIVE):
                seq = item.seq
                yield f"id: {seq}\ndata: {json.dumps(as_json(seq, item.message))}\n\n"
            if not await store(request).exists(sid):
                return  # deleted (the watch ended for that): end the stream
            yield ": keepalive\n\n"

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


async def live(request: Request) -> Response:
    """Server-sent events with streamed replies: ``delta``, ``aborted`` and ``message`` events after
    ``?after=N``, or right after the event whose id a reconnecting client sends as ``Last-Event-ID``."""
    sid = request.path_params["sid"]
    resume = request.headers.get("last-event-id")
    try:
        after = int(request.query_params.get("after", "0"))
    except ValueError:
        raise HTTPException(400, '"after" must be an integer') from None
    if not await store(request).exists(sid):
        raise SessionNotFound(uuid.UUID(sid))

    async def stream() -> AsyncIterator[str]:
        last = resume
        while True:
            start = {"resume": last} if last else {"after_seq": after}
            async for event in store(request).watch(sid, partial=True, timeout=KEEPALIVE, **start):
                last = event.event_id
                if isinstance(event, Delta):
                    kind, data = (
                        "delta",
                        {"message_id": event.message_id, "index": event.index, "text": event.text},
                    )
                elif isinstance(event, Aborted):
                    kind, data = "aborted", {"message_id": event.message_id, "reason": event.reason}
                else:
                    kind, data = "message", {**as_json(event.seq, event.message), "deltas": event.deltas}
                yield f"id: {last}\nevent: {kind}\ndata: {json.dumps(data)}\n\n"
            if not await store(request).exists(sid):
                return
            yield ": keepalive\n\n"

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


async def session_error(request: Request, exc: Exception) -> Response:
    status = next((code for kind, code in STATUS if isinstance(exc, kind)), 500)
    headers = {}
    if isinstance(exc, ToolCallPending):
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    return JSONResponse({"error": type(exc).__name__, "detail": str(exc)}, status, headers)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": "HTTPException", "detail": exc.detail}, status_code=exc.status_code)


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class WorkerHeader:
    """ASGI middleware: ``X-Worker: <WORKER_ID>`` on every response, streaming ones included."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_header(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-worker", WORKER_ID.encode())]
            await send(message)

        await self.app(scope, receive, send_with_header if scope["type"] == "http" else send)


def telemetry(stack: AsyncExitStack) -> Telemetry | None:
    """With ``CHAT_OTEL=console``: the store's spans and metrics to stdout (each span as it ends,
    metrics every 10 s and when the worker stops), session ids hashed. A deployment would use an
    OTLP exporter instead of the console ones."""
    if os.environ.get("CHAT_OTEL") != "console":
        return None
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

    resource = Resource.create({"service.name": "chat-service", "service.instance.id": WORKER_ID})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    reader = PeriodicExportingMetricReader(ConsoleMetricExporter(), export_interval_millis=10_000)
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    stack.callback(tracer_provider.shutdown)
    stack.callback(meter_provider.shutdown)  # the last metrics go out as the worker stops
    return Telemetry(tracer_provider=tracer_provider, meter_provider=meter_provider, session_id="hashed")


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    prefix = os.environ.get("CHAT_PREFIX", "chat")
    async with AsyncExitStack() as stack:
        store = AsyncSessionStore.from_url(os.environ["REDIS_URL"], prefix=prefix, telemetry=telemetry(stack))
        app.state.store, app.state.prefix = await stack.enter_async_context(store), prefix
        app.state.outside = Redis.from_url(os.environ["REDIS_URL"])  # the fake tool's "provider"
        stack.push_async_callback(app.state.outside.aclose)
        yield


app = Starlette(
    routes=[
        Route("/healthz", health),
        Route("/sessions", create_session, methods=["POST"]),
        Route("/sessions/{sid}", get_session),
        Route("/sessions/{sid}/messages", post_message, methods=["POST"]),
        Route("/sessions/{sid}/reply", reply, methods=["POST"]),
        Route("/sessions/{sid}/tool", tool, methods=["POST"]),
        Route("/sessions/{sid}/events", events),
        Route("/sessions/{sid}/live", live),
    ],
    exception_handlers={SessionError: session_error, HTTPException: http_error},
    lifespan=lifespan,
)
app.add_middleware(WorkerHeader)
