"""Generate the synchronous store from the asyncio one: ``store.py`` from ``aio.py``, and its
sending/recovery base ``_base.py`` from ``_aio_base.py``.

The two stores differ only in ``async``/``await`` and a few names, so one is written and the other
derived, as httpcore does. ``python tools/unasync.py`` writes the file; ``--check`` exits 1 when the
checked-in file is stale (the test suite runs the check).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "redis_sessions"

# source -> (target, the generated module's docstring)
PAIRS = {
    "aio.py": (
        "store.py",
        '''"""``SessionStore``: the session store over ``redis.Redis`` (synchronous).

GENERATED from ``aio.py`` by ``python tools/unasync.py``: do not edit; edit ``aio.py`` and regenerate.
Everything but the sending lives in the sans-IO modules; a method here builds a call and sends it.
"""
''',
    ),
}
# The front's other parts: source ``_aio_<name>.py`` -> ``_<name>.py``, with this docstring.
for _name, _what in {
    "transport": "``Transport``: how a call of the sans-IO core reaches Redis, for ``SessionStore``.",
    "recovery": "``Recovery``: what ``SessionStore`` does when a call finds a session it can mend.",
    "lease": "``Lease``: a turn lease on one session of a ``SessionStore``, with its fencing token.",
    "manage": "``Managing``: the methods of ``SessionStore`` for looking after sessions.",
    "watch": "``Watching``: the live methods of ``SessionStore`` (``watch``, ``next_message``).",
    "reply": "``ReplyStream``: a streamed partial reply on one session of a ``SessionStore``.",
    "tool_call": "``ToolCall``: a tool call that runs once, on one session of a ``SessionStore``.",
    "window": "``Windowing``: ``SessionStore``'s budgeted reads, summaries, compaction and forks.",
    "open": "``open_client``: the clients a ``SessionStore`` makes for itself, in one place.",
    "base": "``StoreBase``: the parts of ``SessionStore`` kept in modules of their own, as one base.",
    "quota": "``make_room``: room in a tenant's ledger for a ``SessionStore``'s writes, and its usage.",
    "listing": "``info_pages``, ``row_pages``: every session, a page at a time, for ``SessionStore``.",
    "lean": "``LeanLine``: the short way to Redis for the calls that dominate, on the client's own pool.",
}.items():
    PAIRS[f"_aio_{_name}.py"] = (
        f"_{_name}.py",
        f'''"""{_what}

GENERATED from ``_aio_{_name}.py`` by ``python tools/unasync.py``: do not edit; edit the source and
regenerate. See the source's docstring.
"""
''',
    )

# (pattern, replacement), applied in order, as whole words.
SUBSTITUTIONS = [
    (r"AsyncSessionStore", "SessionStore"),
    (
        r"Async(StoreBase|Transport|Recovery|Lease|Managing|Watching|ReplyStream|ToolCall|Streaming|LeanLine)",
        r"\1",
    ),
    (r"AsyncWindowing", "Windowing"),
    (r"from \._aio_(\w+) import", r"from ._\1 import"),
    (r"from \.aio import", "from .store import"),
    # The worker's store is synchronous in both fronts: the async one imports it, the sync one is it.
    (r"from \.store import SessionStore as SyncStore\n", ""),
    (r"SyncStore", "SessionStore"),
    (r"AsyncPersistenceAdapter", "PersistenceAdapter"),
    (r"from redis\.asyncio import", "from redis import"),
    (r"from redis\.asyncio\.(\w+) import", r"from redis.\1 import"),
    (r"Awaitable\[(\w+)\]", r"\1"),
    (r"Awaitable, ", ""),
    (r"from collections\.abc import Awaitable\n", ""),
    (r"AsyncIterator", "Iterator"),
    (r"AsyncGenerator\[(\w+), None\]", r"Generator[\1, None, None]"),
    (r"AsyncGenerator", "Generator"),
    (r"ASYNC_NO_CLIENT_RETRY", "NO_CLIENT_RETRY"),
    (r"LoopClients", "OneClient"),
    (r"async_retrying", "retrying"),
    (r"async_later", "later"),
    (r"async (def|for|with) ", r"\1 "),
    (r"await asyncio\.to_thread\(([\w.]+), ", r"\1("),
    (r"await asyncio\.to_thread\(([\w.]+)\)", r"\1()"),
    (r"import asyncio\n", ""),
    (r"await ", ""),
    (r"__aenter__", "__enter__"),
    (r"__aexit__", "__exit__"),
    (r"aclose", "close"),
]


# Lines from "# asyncio only" to "# end asyncio only" (each a comment line of its own), and a line
# ending "# asyncio only: left out of <twin>", are left out of the synchronous twin: what only an
# event loop has (auto-pipelining, in _aio_lean).
ASYNCIO_ONLY = re.compile(r"^[ \t]*# asyncio only\b.*?^[ \t]*# end asyncio only\n", re.MULTILINE | re.DOTALL)


def generate(source: str, header: str = PAIRS["aio.py"][1], used: set[str] | None = None) -> str:
    """``source`` made synchronous; ``used`` collects the patterns that matched something."""
    body = source[source.index('"""\n', 3) + 4 :]  # drop the module docstring
    body = ASYNCIO_ONLY.sub("", body)
    body = re.sub(r"^.*# asyncio only: left out of .*\n", "", body, flags=re.MULTILINE)
    for pattern, replacement in SUBSTITUTIONS:
        body, count = re.subn(rf"\b{pattern}", replacement, body)
        if count and used is not None:
            used.add(pattern)
    return header + body


def main(argv: list[str]) -> int:
    stale = 0
    used: set[str] = set()
    for source, (target, header) in PAIRS.items():
        expected = generate((PACKAGE / source).read_text("utf-8"), header, used)
        path = PACKAGE / target
        if "--check" not in argv:
            path.write_text(expected, "utf-8")
        elif path.read_text("utf-8") != expected:
            print(f"{path} is stale: run python tools/unasync.py", file=sys.stderr)
            stale = 1
    # A substitution that no longer matches anything is a rule left behind by a rename: it would
    # silently stop applying if the name came back (httpcore's unasync checks the same).
    for pattern, _ in SUBSTITUTIONS:
        if pattern not in used:
            print(f"substitution {pattern!r} matches nothing in {sorted(PAIRS)}: remove it", file=sys.stderr)
            stale = 1
    return stale


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
