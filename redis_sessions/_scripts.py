"""The Lua scripts: each one's source, read once from the package's ``scripts/*.lua`` files, with
the shared checks of ``scripts/_preamble.lua`` put in where a script calls them; the SHA1 that
EVALSHA calls each by, and the EVALSHA command itself, as a tuple for redis-py or packed for the lean
line. The transports load and send them; the operations name them.
"""

from __future__ import annotations

import functools
import hashlib
import re
from importlib import resources
from typing import Any, Final

from hiredis import pack_command

__all__ = ["SCRIPTS", "SHAS", "evalsha", "packed_evalsha"]

_PREAMBLE_TEXT: Final = resources.files(__package__).joinpath("scripts", "_preamble.lua").read_text("utf-8")
_PREAMBLE: Final = "\n".join(  # without its comment lines: each script that calls it holds a copy
    line for line in _PREAMBLE_TEXT.split("\n") if line.strip() and not line.lstrip().startswith("--")
)
_CHECKS: Final = (
    "session_of",
    "mark_dirty",
    "version_refusal",
    "decimal_seq",
    "corrupt_seq",
    "readable_seq",
    "writable_meta",
    "push_messages",
    "tenant_of",
)
_SHARED: Final = re.compile(rf"\b(?:{'|'.join(_CHECKS)})\(")  # a script calling one gets the preamble


def _script(name: str) -> str:
    """A script's source; one that calls the shared checks gets ``_preamble.lua`` after its header."""
    text = resources.files(__package__).joinpath("scripts", f"{name}.lua").read_text("utf-8")
    lines = text.split("\n")
    end = next(i for i, line in enumerate(lines) if not line.startswith(("--", "#!")))
    body = "\n".join(lines[end:])
    if not _SHARED.search(body):
        return text
    return "\n".join([*lines[:end], "", _PREAMBLE.rstrip("\n"), body])


_NAMES: Final = """create append read_since set_metadata delete read_after lease restore sync_read
sync_mark pop rebind dirty sync_lease stream_write stream_abort tool_call info rekey
context summarize compact fork_read fork tenant"""

SCRIPTS: Final[dict[str, str]] = {name: _script(name) for name in _NAMES.split()}
"""Lua sources by name, read once from the package's ``scripts/*.lua`` files (with the shared
checks of ``scripts/_preamble.lua`` where a script calls them)."""

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
