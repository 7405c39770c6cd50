"""The Lua scripts: each one's source, read once from the package's ``scripts/*.lua`` files, with
the shared checks of ``scripts/_preamble.lua`` put in where a script calls them; and the SHA1 that
EVALSHA calls each by. The transports load and send them; the operations name them.
"""

from __future__ import annotations

import hashlib
import re
from importlib import resources
from typing import Final

__all__ = ["SCRIPTS", "SHAS"]

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
