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
Everything but the sending lives in ``_core``; a method here builds a call and sends it.
"""
''',
    ),
    "_aio_base.py": (
        "_base.py",
        '''"""``StoreBase``: how ``SessionStore`` sends a call and recovers from what a call finds.

GENERATED from ``_aio_base.py`` by ``python tools/unasync.py``: do not edit; edit the source and
regenerate. See the source's docstring.
"""
''',
    ),
}

# (pattern, replacement), applied in order, as whole words.
SUBSTITUTIONS = [
    (r"AsyncSessionStore", "SessionStore"),
    (r"AsyncStoreBase", "StoreBase"),
    (r"from \._aio_base import", "from ._base import"),
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


def generate(source: str, header: str = PAIRS["aio.py"][1]) -> str:
    body = source[source.index('"""\n', 3) + 4 :]  # drop the module docstring
    for pattern, replacement in SUBSTITUTIONS:
        body = re.sub(rf"\b{pattern}", replacement, body)
    return header + body


def main(argv: list[str]) -> int:
    stale = 0
    for source, (target, header) in PAIRS.items():
        expected = generate((PACKAGE / source).read_text("utf-8"), header)
        path = PACKAGE / target
        if "--check" not in argv:
            path.write_text(expected, "utf-8")
        elif path.read_text("utf-8") != expected:
            print(f"{path} is stale: run python tools/unasync.py", file=sys.stderr)
            stale = 1
    return stale


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
