"""``StoreConfig``: a store's own options, frozen, and how ``from_url`` & co. tell them from the
options of the Redis client they make.

The store's options are exactly ``StoreConfig``'s fields (one list, not a second one kept by hand);
every other keyword goes to redis-py, with the defaults below.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

from ._core import DEFAULT_CACHE_MESSAGES, DEFAULT_MAX_MESSAGE_BYTES, StoreCore
from .retry import RetryPolicy
from .tokens import TokenCounter, estimate_tokens

if TYPE_CHECKING:
    from .encryption import Encryption
    from .persistence import PersistenceAdapter
    from .telemetry import Telemetry
    from .tenant import TenantQuota

__all__ = ["CLIENT_DEFAULTS", "DEFAULT_RETRY", "StoreConfig"]

DEFAULT_RETRY: Final = RetryPolicy()
"""The retry policy a store has unless told otherwise."""

CLIENT_DEFAULTS: Final[Mapping[str, Any]] = {"socket_timeout": 5.0, "socket_connect_timeout": 5.0}
"""Client options a store's own client gets unless given: a stalled server cannot hang a caller."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class StoreConfig:
    """What a store is configured with (``SessionStore(client, **options)`` takes the same names).

    ``prefix``: the key prefix. ``ttl`` (seconds or a ``timedelta``; ``None`` = never expire) and
    ``max_messages`` (keep only the newest; ``None`` = all) are recorded by ``create`` and kept by
    the session, whoever writes to it. ``codec``: how new sessions store messages (``"msgpack"`` or
    ``"json"``). ``max_message_bytes``: the largest encoded message accepted. ``cache_messages``:
    the bound of the history cache (``0`` turns it off). ``retry``: the one retry policy for
    transport errors (the store turns its client's own retry off); ``None``: the store does not
    retry, and leaves its client's retry as it was configured. ``wait_replicas`` / ``wait_timeout``:
    ``WAIT`` for that many replicas after each write (``0``: off). ``backing``: a
    ``redis_sessions.persistence`` adapter, which makes Redis the cache of a durable store.
    ``encryption``: a ``redis_sessions.encryption.Encryption`` keyring: each message is stored
    AES-256-GCM encrypted (in Redis and in the backing record); ``None``: stored as encoded.
    ``token_counter``: counts each appended message's tokens (``redis_sessions.tokens``; the default
    is an estimate that needs no download).
    ``telemetry``: a ``redis_sessions.telemetry.Telemetry`` (OpenTelemetry spans and metrics of every
    call; the ``otel`` extra), or ``None``: off, at no cost.
    ``max_session_bytes``: the most bytes of stored message bodies a session may hold (``None`` = no
    limit), recorded by ``create`` like ``max_messages``; an append past it raises ``QuotaExceeded``
    and stores nothing. ``tenant_quota``: a ``redis_sessions.tenant.TenantQuota``, limits on the
    sessions and bytes of the whole prefix (``TenantQuotaExceeded``); ``None``: not counted.
    """

    prefix: str = "rs"
    ttl: float | timedelta | None = None
    max_messages: int | None = None
    codec: str = "msgpack"
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    cache_messages: int = DEFAULT_CACHE_MESSAGES
    retry: RetryPolicy | None = DEFAULT_RETRY
    wait_replicas: int = 0
    wait_timeout: float | timedelta = 1.0
    backing: PersistenceAdapter | None = None
    encryption: Encryption | None = None
    token_counter: TokenCounter = estimate_tokens
    telemetry: Telemetry | None = None
    max_session_bytes: int | None = None
    tenant_quota: TenantQuota | None = None

    @classmethod
    def split(cls, options: Mapping[str, Any]) -> tuple[StoreConfig, dict[str, Any]]:
        """``options`` as the store's configuration and the options left, as given, for its client."""
        names = {field.name for field in dataclasses.fields(cls)}
        config = cls(**{k: v for k, v in options.items() if k in names})
        return config, {k: v for k, v in options.items() if k not in names}

    def client_options(self, given: Mapping[str, Any], no_retry: Any) -> dict[str, Any]:
        """The options a client the store makes gets: ``given``, ``CLIENT_DEFAULTS`` where not given,
        and ``no_retry`` (redis-py's retry turned off) when the store does the retrying."""
        options = {**CLIENT_DEFAULTS, **given}
        if self.retry is not None:
            options["retry"] = no_retry
        return options

    def store_options(self) -> dict[str, Any]:
        """The configuration as keyword arguments for a store's constructor."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}

    def core(self, *, cluster: bool) -> StoreCore:
        """The sans-IO core of a store with these options (``cluster``: its client is a
        ``RedisCluster``); the options that only the front uses (cache, retry, wait, telemetry)
        stay with the front."""
        backing = self.backing
        return StoreCore(
            prefix=self.prefix,
            ttl=self.ttl,
            max_messages=self.max_messages,
            codec=self.codec,
            max_message_bytes=self.max_message_bytes,
            durable=backing is not None,
            record="" if backing is None else backing.record_id,
            cluster=cluster,
            encryption=self.encryption,
            token_counter=self.token_counter,
            max_session_bytes=self.max_session_bytes,
            tenant=self.tenant_quota,
        )
