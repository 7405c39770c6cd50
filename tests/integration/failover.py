"""Writer processes for the failover tests, and the audit of what they were told against what is stored.

A writer appends to its sessions round robin until told to stop. A call that fails (the store's own
retries ran out during the failover, or too few replicas confirmed) is sent again with the same
message id until it is acknowledged: appends are idempotent, so that is what a careful caller does.
Every writer reports what it attempted and what it was told succeeded; the audit compares that with
what every reader finds stored. Importable by 'spawn' children: no test code here.
"""

from __future__ import annotations

import asyncio
import traceback
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from redis_sessions import (
    AgentMessage,
    AsyncSessionStore,
    NotReplicated,
    RetryPolicy,
    SessionStore,
    StoreError,
)

# Patient enough to ride out most of a failover inside one call; the writer loop covers the rest.
WRITER_RETRY = RetryPolicy(attempts=6, initial=0.05, max_wait=0.5)


@dataclass(frozen=True)
class Target:
    """Where the writers connect: a cluster (any node's URL) or a Sentinel-managed primary."""

    kind: Literal["cluster", "sentinel"]
    url: str = ""
    sentinels: tuple[tuple[str, int], ...] = ()
    service: str = ""

    def store(self, prefix: str, **options: Any) -> SessionStore:
        if self.kind == "cluster":
            return SessionStore.from_cluster(self.url, prefix=prefix, **options)
        return SessionStore.from_sentinel(list(self.sentinels), self.service, prefix=prefix, **options)

    def async_store(self, prefix: str) -> AsyncSessionStore:
        if self.kind == "cluster":
            return AsyncSessionStore.from_cluster(self.url, prefix=prefix)
        return AsyncSessionStore.from_sentinel(list(self.sentinels), self.service, prefix=prefix)


@dataclass
class WriterReport:
    writer: int
    error: str | None = None
    attempted: int = 0
    acknowledged: dict[str, tuple[uuid.UUID, int]] = field(default_factory=dict)  # id -> (sid, seq)
    failures: Counter[str] = field(default_factory=Counter)  # failed calls by error type
    samples: dict[str, str] = field(default_factory=dict)  # the first message of each error type


def failover_writer(
    target: Target,
    prefix: str,
    sids: list[uuid.UUID],
    writer: int,
    wait_replicas: int,
    stop: Any,
    progress: Any,
    results: Any,
) -> None:
    """Append until ``stop`` is set; ``progress`` (a shared int) counts acknowledged appends."""
    report = WriterReport(writer)
    try:
        options = {"retry": WRITER_RETRY, "wait_replicas": wait_replicas, "wait_timeout": 0.5}
        with target.store(prefix, **options) as store:
            index = 0
            while not stop.is_set():
                sid = sids[index % len(sids)]
                message = AgentMessage.user(f"writer {writer} message {index}", id=f"w{writer}-{index:06d}")
                report.attempted += 1
                while not stop.is_set():
                    try:
                        seq = store.append(sid, message)
                    except (StoreError, NotReplicated) as exc:
                        report.failures[type(exc).__name__] += 1
                        report.samples.setdefault(type(exc).__name__, str(exc))
                        stop.wait(0.02)  # back off a little, then send the same message again
                        continue
                    report.acknowledged[message.id] = (sid, seq)
                    with progress.get_lock():
                        progress.value += 1
                    break
                index += 1
    except BaseException:
        report.error = traceback.format_exc()
    results.put(report)


@dataclass
class Audit:
    """What the readers found, against what the writers were told."""

    attempted: int = 0
    acknowledged: int = 0
    stored: int = 0
    duplicates: int = 0
    lost: list[str] = field(default_factory=list)  # acknowledged ids that are not stored
    disagreements: list[uuid.UUID] = field(default_factory=list)  # readers saw different lists
    out_of_order: list[int] = field(default_factory=list)  # writers whose messages are reordered
    failures: Counter[str] = field(default_factory=Counter)
    samples: dict[str, str] = field(default_factory=dict)

    def line(self) -> str:
        return (
            f"appends attempted {self.attempted}, acknowledged {self.acknowledged}, stored {self.stored}, "
            f"duplicates {self.duplicates}, lost acknowledged {len(self.lost)}, "
            f"reader disagreements {len(self.disagreements)}, failed calls {dict(self.failures)} "
            f"(first of each: {self.samples})"
        )


def audit(target: Target, prefix: str, sids: list[uuid.UUID], reports: list[WriterReport]) -> Audit:
    """Read every session through three independent clients (two sync, one asyncio) and compare."""
    result = Audit()
    for report in reports:
        result.attempted += report.attempted
        result.acknowledged += len(report.acknowledged)
        result.failures.update(report.failures)
        result.samples = {**report.samples, **result.samples}
    with target.store(prefix, cache_messages=0) as one, target.store(prefix, cache_messages=0) as two:
        views = [
            {sid: [m.id for m in one.messages(sid)] for sid in sids},
            {sid: [m.id for m in two.messages(sid)] for sid in sids},
            asyncio.run(_read_async(target, prefix, sids)),
        ]
    stored = views[0]
    for sid in sids:
        if any(view[sid] != stored[sid] for view in views[1:]):
            result.disagreements.append(sid)
        result.stored += len(stored[sid])
        result.duplicates += len(stored[sid]) - len(set(stored[sid]))
    present = {mid for ids in stored.values() for mid in ids}
    for report in reports:
        result.lost += [mid for mid in report.acknowledged if mid not in present]
        for ids in stored.values():
            own = [mid for mid in ids if mid.startswith(f"w{report.writer}-")]
            if own != sorted(own):  # a writer appends in index order, one call at a time
                result.out_of_order.append(report.writer)
                break
    return result


async def _read_async(target: Target, prefix: str, sids: list[uuid.UUID]) -> dict[uuid.UUID, list[str]]:
    async with target.async_store(prefix) as store:
        return {sid: [m.id for m in await store.messages(sid)] for sid in sids}
