"""Why an uncached read is a MULTI/EXEC and not the cache's script (issue 14, item 5).

    .venv/bin/python benchmarks/bench_read_paths.py [--rounds 7] [--sizes 20,1000]

A read the history cache cannot serve could go through ``read_since.lua`` with nothing cached (one
read mechanism for every read), or, as the store does, through one MULTI/EXEC of the meta's fields,
``LLEN`` and ``LRANGE``. Both are sent here pre-packed on one held connection, so only the server's
work and the reply's size differ. Reported per session size: the median over rounds of the client's
µs per read and the server's (``INFO commandstats``: the script's EVALSHA, or the five commands of
the transaction). The server is the benchmark's own (``REDIS_URL`` is honoured, under a unique
prefix).
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Sequence

import hiredis
import redis
from _harness import command_stats, server, server_us_per_call
from _workload import SEED, make_messages

from redis_sessions import SessionStore
from redis_sessions._scripts import SCRIPTS
from redis_sessions.keys import session_keys
from redis_sessions.models import SCHEMA_VERSION

_MULTI = ("multi", "hmget", "llen", "lrange", "exec")


def timed(client: redis.Redis, commands: Sequence[tuple[object, ...]], n: int) -> float:
    """Client µs per send of ``commands`` (one write, one read each) on a held connection."""
    connection = client.connection_pool.get_connection()
    packed = [b"".join(hiredis.pack_command(c) for c in commands)]  # type: ignore[arg-type]
    try:
        started = time.perf_counter()
        for _ in range(n):
            connection.send_packed_command(packed, check_health=False)
            for _ in commands:
                connection.read_response()
        return (time.perf_counter() - started) / n * 1e6
    finally:
        client.connection_pool.release(connection)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--sizes", default="20,1000", help="messages per session, comma-separated")
    parser.add_argument("--pin", choices=("none", "same", "split"), default="none")
    args = parser.parse_args()
    with server(args.pin) as (url, where):
        client = redis.Redis.from_url(url)
        prefix = f"bench-read-{uuid.uuid4().hex[:8]}"
        sha = client.script_load(SCRIPTS["read_since"])
        print(f"server: {where}; {args.rounds} rounds; medians (client µs / server µs per read)")
        with SessionStore(redis.Redis.from_url(url), prefix=prefix) as store:
            for size in (int(s) for s in args.sizes.split(",")):
                sid = store.create()
                store.extend(sid, make_messages(SEED, size))
                keys = session_keys(prefix, sid)
                multi = [
                    ("MULTI",),
                    ("HMGET", keys.meta, "schema_version", "codec", "epoch", "seq", "durable"),
                    ("LLEN", keys.messages),
                    ("LRANGE", keys.messages, 0, -1),
                    ("EXEC",),
                ]
                script = [("EVALSHA", sha, 2, keys.meta, keys.messages, SCHEMA_VERSION, "", 0, 1, 0)]
                n = max(50, 60_000 // (size + 20))
                seen: dict[str, tuple[list[float], list[float]]] = {
                    "MULTI/EXEC": ([], []),
                    "read_since.lua": ([], []),
                }
                for _ in range(args.rounds):
                    for name, commands, counted in (
                        ("MULTI/EXEC", multi, _MULTI),
                        ("read_since.lua", script, ("evalsha",)),
                    ):
                        before = command_stats(client)
                        wall = timed(client, commands, n)
                        spent = server_us_per_call(before, command_stats(client))
                        seen[name][0].append(wall)
                        seen[name][1].append(sum(spent[c]["us_per_call"] for c in counted if c in spent))
                line = ", ".join(
                    f"{name} {statistics.median(w):.1f} / {statistics.median(s):.1f}"
                    for name, (w, s) in seen.items()
                )
                print(f"{size:>6} messages: {line}")
                store.delete(sid)
        client.close()


if __name__ == "__main__":
    main()
