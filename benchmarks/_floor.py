"""The asyncio floors of issue 15: what any Python client can do with the store's append script.

No library: each call encodes its message with the store's codec (validated) and counts its tokens
as the store does, packs ``append.lua``'s EVALSHA with the store's keys and arguments
(``hiredis.pack_command``) and queues it; once per loop iteration the queue goes out as one write
on one connection (an ``asyncio.Protocol``), and a hiredis reader hands each reply to its future in
order. With ``script="noop"``, a script that returns at once: the floor's own client cost.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from typing import Any

import hiredis
from hiredis import pack_command

from redis_sessions import AgentMessage, AsyncSessionStore
from redis_sessions._scripts import SCRIPTS, SHAS  # the floors send the store's own script
from redis_sessions.keys import append_keys

FloorOp = Callable[[Any, AgentMessage], Awaitable[object]]
"""``op(sid, message)``: append ``message`` to session ``sid``; the seq after it."""


class Coalescer(asyncio.Protocol):
    """The floor's client: commands queued in one loop iteration go out as one write; replies are
    matched to futures in order."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.queue: list[bytes] = []
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        waiting = self.waiting
        while (reply := self.reader.gets()) is not False:
            future = waiting.popleft()
            if not future.done():
                future.set_result(reply)

    def submit(self, packed: bytes) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self.queue:
            loop.call_soon(self.flush)
        self.queue.append(packed)
        self.waiting.append(future)
        return future

    def flush(self) -> None:
        batch, self.queue = self.queue, []
        self.transport.write(b"".join(batch))


async def open_floor(url: str, store: AsyncSessionStore, script: str) -> tuple[FloorOp, Callable[[], None]]:
    """The floor's op on a fresh connection to ``url`` (``script``: "append" or "noop"), for
    ``store``'s sessions (its prefix, codec, token counter), and its closer."""
    host_port = url.split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_connection(Coalescer, host, int(port))
    core = store.transport.core
    sha = await store.client.script_load(SCRIPTS["append"] if script == "append" else "return {0, 0}")
    sha = sha.decode() if isinstance(sha, bytes) else sha
    assert script != "append" or sha == SHAS["append"]
    prefix, version, codec = core.prefix, core.version, core.codec.name
    fixed: dict[Any, tuple[Any, ...]] = {}  # each session's command up to its message

    async def op_for(sid: Any, message: AgentMessage) -> object:
        head = fixed.get(sid)
        if head is None:
            keys = append_keys(prefix, sid, False)
            head = fixed[sid] = ("EVALSHA", sha, len(keys), *keys, version, codec, "", "")
        data = core.encode(sid, message)
        count = str(core.tokens(sid, message))
        reply = await proto.submit(pack_command((*head, count, message.id, data)))
        return int(reply[1])

    def closer() -> None:
        transport.close()

    return op_for, closer
