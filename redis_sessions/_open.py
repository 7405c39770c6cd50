"""``open_client``: the clients a ``SessionStore`` makes for itself, in one place.

GENERATED from ``_aio_open.py`` by ``python tools/unasync.py``: do not edit; edit the source and
regenerate. See the source's docstring.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis import BlockingConnectionPool, Redis
from redis.cluster import RedisCluster
from redis.sentinel import Sentinel

from .config import CLIENT_DEFAULTS

__all__ = ["Opened", "open_client"]

Opened = tuple[Any, tuple[Any, ...]]
"""A client, and every object of it the store must close (the client, a sentinel's connections)."""


def open_client(opener: str, args: Sequence[Any], options: dict[str, Any]) -> Opened:
    """A new client as ``SessionStore.<opener>(*args)`` makes it, with redis-py ``options``.

    ``from_url``: a blocking pool (callers beyond ``max_connections`` wait their turn instead of
    failing). ``from_cluster``: a ``RedisCluster`` found through one node. ``from_sentinel``: the
    primary a ``Sentinel`` names; ``sentinel_kwargs`` configures the connections to the sentinels.
    """
    if opener == "from_url":
        (url,) = args
        client = Redis.from_pool(BlockingConnectionPool.from_url(url, **options))
        return client, (client,)
    if opener == "from_cluster":
        (url,) = args
        cluster = RedisCluster.from_url(url, **options)
        return cluster, (cluster,)
    sentinels, service_name = args
    options = dict(options)
    sentinel_kwargs = {**CLIENT_DEFAULTS, **options.pop("sentinel_kwargs", {})}
    sentinel = Sentinel(sentinels, sentinel_kwargs=sentinel_kwargs, **options)  # type: ignore[no-untyped-call, unused-ignore]
    primary = sentinel.master_for(service_name)  # type: ignore[no-untyped-call, unused-ignore]
    return primary, (primary, *sentinel.sentinels)
