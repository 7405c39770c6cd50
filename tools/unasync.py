"""Generate ``redis_sessions/store.py`` (sync) from ``redis_sessions/aio.py`` (asyncio).

The two stores differ only in ``async``/``await`` and a few names, so one is written and the other
derived, as httpcore does. ``python tools/unasync.py`` writes the file; ``--check`` exits 1 when the
checked-in file is stale (the test suite runs the check).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "redis_sessions" / "aio.py"
TARGET = ROOT / "redis_sessions" / "store.py"

HEADER = '''"""``SessionStore``: the session store over ``redis.Redis`` (synchronous).

GENERATED from ``aio.py`` by ``python tools/unasync.py``: do not edit; edit ``aio.py`` and regenerate.
Everything but the sending lives in ``_core``; a method here builds a call and sends it.
"""
'''

# (pattern, replacement), applied in order, as whole words.
SUBSTITUTIONS = [
    (r"AsyncSessionStore", "SessionStore"),
    (r"AsyncLease", "Lease"),
    (r"from \.persistence import AsyncPersistenceAdapter, ", "from .persistence import "),
    (r"AsyncPersistenceAdapter", "PersistenceAdapter"),
    (r"from redis\.asyncio import", "from redis import"),
    (r"from redis\.asyncio\.(\w+) import", r"from redis.\1 import"),
    (r"AsyncIterator", "Iterator"),
    (r"AsyncGenerator\[(\w+), None\]", r"Generator[\1, None, None]"),
    (r"AsyncGenerator", "Generator"),
    (r"ASYNC_NO_CLIENT_RETRY", "NO_CLIENT_RETRY"),
    (r"async_retrying", "retrying"),
    (r"async (def|for|with) ", r"\1 "),
    (r"await asyncio\.to_thread\(([\w.]+), ", r"\1("),
    (r"await asyncio\.to_thread\(([\w.]+)\)", r"\1()"),
    (r"import asyncio\n", ""),
    (r"await ", ""),
    (r"__aenter__", "__enter__"),
    (r"__aexit__", "__exit__"),
    (r"aclose", "close"),
]


def generate(source: str) -> str:
    body = source[source.index('"""\n', 3) + 4 :]  # drop the module docstring
    for pattern, replacement in SUBSTITUTIONS:
        body = re.sub(rf"\b{pattern}", replacement, body)
    return HEADER + body


def main(argv: list[str]) -> int:
    expected = generate(SOURCE.read_text("utf-8"))
    if "--check" in argv:
        if TARGET.read_text("utf-8") != expected:
            print(f"{TARGET} is stale: run python tools/unasync.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(expected, "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
