"""The messages every system stores: the same deterministic mix, in each system's own form.

≈200-byte texts alternating user and assistant; every 5th message an assistant ``ToolUse`` whose JSON
input is about 500 bytes. Raw redis-py stores them as JSON encoded before timing; the Agents SDK's
``RedisSession`` gets the same JSON as dict items (what its ``add_items`` takes); redis-sessions gets
the ``AgentMessage`` structs.
"""

from __future__ import annotations

import json
import random
import statistics
from collections.abc import Sequence
from typing import Any

import msgspec

from redis_sessions import AgentMessage, ToolUse

SEED = 20240601
TEXT_BYTES, TOOL_INPUT_BYTES, TOOL_EVERY = 200, 500, 5
WORDS = ("the", "agent", "reads", "a", "file", "then", "calls", "tool", "and", "writes", "answer", "back")


def _text(rng: random.Random, size: int) -> str:
    out: list[str] = []
    n = 0
    while n < size:
        word = rng.choice(WORDS)
        out.append(word)
        n += len(word) + 1
    return " ".join(out)[:size]


def make_messages(seed: int, n: int, id_prefix: str | None = None) -> list[AgentMessage]:
    """``n`` messages of the mix, deterministic for a seed, ids included (distinct across seeds).

    With ``id_prefix``, message ``i``'s id is ``f"{id_prefix}{i:06d}"``: who wrote it, and in which
    order, can be read back from the id alone."""
    rng = random.Random(seed)
    out: list[AgentMessage] = []
    for i in range(n):
        mid = f"{rng.getrandbits(128):032x}" if id_prefix is None else f"{id_prefix}{i:06d}"
        if i % TOOL_EVERY == TOOL_EVERY - 1:
            options: dict[str, str] = {}
            tool_input = {"path": f"/src/module_{i}.py", "query": _text(rng, 60), "options": options}
            while len(json.dumps(tool_input)) < TOOL_INPUT_BYTES:
                options[f"opt_{len(options)}"] = _text(rng, 40)
            call = ToolUse(id=f"toolu_{rng.getrandbits(64):016x}", name="read_file", input=tool_input)
            out.append(AgentMessage.assistant([call], id=mid))
        else:
            make = AgentMessage.user if i % 2 == 0 else AgentMessage.assistant
            out.append(make(_text(rng, TEXT_BYTES), id=mid))
    return out


def as_json(messages: Sequence[AgentMessage]) -> list[bytes]:
    """What the raw baseline stores: the messages as JSON, encoded before any timing."""
    return [msgspec.json.encode(m) for m in messages]


def as_items(messages: Sequence[AgentMessage]) -> list[dict[str, Any]]:
    """What ``RedisSession.add_items`` takes: the same JSON, as dicts."""
    return [msgspec.to_builtins(m) for m in messages]


def message_sizes(codec: str) -> dict[str, float]:
    """Encoded sizes of the mix: JSON by kind, and as redis-sessions stores it with ``codec``."""
    msgs = make_messages(SEED, 1000)
    tool = [len(msgspec.json.encode(m)) for m in msgs if isinstance(m.content[0], ToolUse)]
    text = [len(msgspec.json.encode(m)) for m in msgs if not isinstance(m.content[0], ToolUse)]
    encode = msgspec.msgpack.encode if codec == "msgpack" else msgspec.json.encode
    return {
        "text_json_bytes": statistics.mean(text),
        "tool_json_bytes": statistics.mean(tool),
        "json_bytes": statistics.mean(text + tool),
        "stored_bytes": statistics.mean(len(encode(m)) for m in msgs),
    }
