"""The Lua scripts: each one's source, read once from the package's ``scripts/*.lua`` files, with
the shared functions of ``scripts/_preamble.lua`` it calls put in; the SHA1 that EVALSHA calls each
by, and the EVALSHA command itself, as a tuple for redis-py or packed for the lean line. The
transports load and send them; the operations name them.
"""

from __future__ import annotations

import functools
import hashlib
import re
import uuid
from collections.abc import Callable
from importlib import resources
from typing import Any, Final, TypeAlias, TypeVar

from hiredis import pack_command

Keys: TypeAlias = tuple[str, ...]
T = TypeVar("T")

__all__ = ["SCRIPTS", "SHAS", "AppendHeads", "evalsha", "packed_evalsha"]

_PREAMBLE_TEXT: Final = resources.files(__package__).joinpath("scripts", "_preamble.lua").read_text("utf-8")
_FUNCTION: Final = re.compile(r"^local function (\w+)\(.*?^end$", re.MULTILINE | re.DOTALL)
_FUNCTIONS: Final[dict[str, str]] = {  # each shared function's code, in the preamble's order
    match.group(1): "\n".join(
        line for line in match.group(0).split("\n") if line.strip() and not line.lstrip().startswith("--")
    )
    for match in _FUNCTION.finditer(_PREAMBLE_TEXT)
}
_CALL: Final = re.compile(rf"\b({'|'.join(_FUNCTIONS)})\(")


def _shared(body: str) -> list[str]:
    """The shared functions ``body`` calls and those they call, in the preamble's order (a function
    after those it calls). Only these go in: each ``local function`` of a script makes a closure on
    every call (an allocation, and one per local it captures), ~0.1 us of the server's time each."""
    wanted: set[str] = set()
    todo = _CALL.findall(body)
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo += _CALL.findall(_FUNCTIONS[name])
    return [name for name in _FUNCTIONS if name in wanted]


def _script(name: str) -> str:
    """A script's source; one that calls shared functions of ``_preamble.lua`` gets them (without
    their comment lines: each such script holds a copy) after its header."""
    text = resources.files(__package__).joinpath("scripts", f"{name}.lua").read_text("utf-8")
    lines = text.split("\n")
    end = next(i for i, line in enumerate(lines) if not line.startswith(("--", "#!")))
    body = "\n".join(lines[end:])
    shared = _shared(body)
    if not shared:
        return text
    return "\n".join([*lines[:end], "", *(_FUNCTIONS[function] for function in shared), body])


_NAMES: Final = """create append read_since set_metadata delete read_after lease restore sync_read
sync_mark pop rebind dirty sync_lease stream_write stream_abort tool_call info rekey
context summarize compact fork_read fork tenant"""

SCRIPTS: Final[dict[str, str]] = {name: _script(name) for name in _NAMES.split()}
"""Lua sources by name, read once from the package's ``scripts/*.lua`` files (with the shared
functions of ``scripts/_preamble.lua`` each calls)."""

SHAS: Final[dict[str, str]] = {
    name: hashlib.sha1(source.encode()).hexdigest() for name, source in SCRIPTS.items()
}
"""The SHA1 of each script, the name EVALSHA calls it by."""


def evalsha(script: str, keys: tuple[str, ...], args: tuple[Any, ...]) -> tuple[Any, ...]:
    """The EVALSHA command that runs ``script`` with ``keys`` and ``args``, for ``execute_command``."""
    return ("EVALSHA", SHAS[script], len(keys), *keys, *args)


def packed_evalsha(script: str, keys: tuple[str, ...], args: tuple[Any, ...]) -> bytes:
    """``evalsha(script, keys, args)`` packed as Redis reads it (``hiredis.pack_command``'s bytes).

    Its head (the array's length, EVALSHA, the SHA and the keys) is the same for every call of one
    script on one session: it is packed once (``_head``), and only ``args`` on each call. hiredis
    formats every argument's length with ``sprintf``: of an append's 17 arguments, the 10 of its head
    cost more than half the instructions of a call's packing (22k of 96k an append, under callgrind).
    """
    head, skip = _head(script, keys, len(args))
    return head + pack_command(args)[skip:] if args else head


@functools.lru_cache(maxsize=8192)
def _head(script: str, keys: tuple[str, ...], count: int) -> tuple[bytes, int]:
    """The packed head of an EVALSHA with ``count`` arguments after ``keys``, and how many bytes the
    array header of ``count`` items takes (``pack_command`` of the arguments alone starts with it)."""
    command: tuple[Any, ...] = ("EVALSHA", SHAS[script], len(keys), *keys)
    body = pack_command(command).split(b"\r\n", 1)[1]
    return b"*%d\r\n" % (len(command) + count) + body, len(b"*%d\r\n" % count)


class AppendHeads:
    """Each session's plain append (one message, no expected seq, no fence) packed once up to the
    three arguments that change from call to call: EVALSHA, append.lua's SHA, the session's keys,
    the store's schema version and codec, an empty expected seq and fence; ``packed`` adds the rest.
    Packing all 17 items with ``pack_command`` cost 13k instructions an append, this 5k: hiredis
    ``sprintf``s every length, and the keys' tuple hashed for ``_head`` cost 1k more.

    What a session's head is made from comes from the operation, on the session's first append:
    ``make(owner, sid)``, its keys and the parser of its replies, which is kept beside the head (a
    ``functools.partial`` made a call cost 1.5k instructions). ``owner`` is the store's core.

    Kept per store (its prefix, codec and tenant ledgers shape the head) and keyed by the id's
    128-bit integer: ``uuid.UUID.__hash__`` is Python, 1.3k instructions a lookup. Bounded by
    clearing: a process that has appended to more sessions packs each head again, once."""

    __slots__ = ("_fixed", "_heads", "_owner")
    LIMIT: Final = 65536

    def __init__(self, owner: object, version: str, codec: str) -> None:
        self._owner = owner
        self._fixed: tuple[Any, ...] = (version, codec, "", "")
        self._heads: dict[int, tuple[Keys, bytes, Any]] = {}

    def packed(
        self,
        sid: uuid.UUID,
        count: str,
        message_id: str,
        data: bytes,
        make: Callable[[Any, uuid.UUID], tuple[Keys, T]],
    ) -> tuple[Keys, bytes, T]:
        """``sid``'s keys; its plain append of a message as ``packed_evalsha`` packs it (the
        message's token count in decimal digits, its id, its encoded body); its replies' parser."""
        keys, head, parse = self._heads.get(sid.int) or self._head(sid, make)
        raw_id = message_id.encode()
        text = b"$%d\r\n%b\r\n$%d\r\n" % (len(count), count.encode(), len(raw_id))
        return keys, b"".join((head, text, raw_id, b"\r\n$%d\r\n" % len(data), data, b"\r\n")), parse

    def _head(
        self, sid: uuid.UUID, make: Callable[[Any, uuid.UUID], tuple[Keys, Any]]
    ) -> tuple[Keys, bytes, Any]:
        if len(self._heads) >= self.LIMIT:
            self._heads.clear()
        keys, parse = make(self._owner, sid)
        head, skip = _head("append", keys, len(self._fixed) + 3)
        entry = self._heads[sid.int] = (keys, head + pack_command(self._fixed)[skip:], parse)
        return entry

    def __len__(self) -> int:
        """How many sessions' heads are kept (at most ``LIMIT``)."""
        return len(self._heads)
