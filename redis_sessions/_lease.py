"""``Lease``: a turn lease on one session of a ``SessionStore``, with its fencing token.

GENERATED from ``_aio_lease.py`` by ``python tools/unasync.py``: do not edit; edit the source and
regenerate. See the source's docstring.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Self

from . import _live as live
from ._core import ttl_ms
from .errors import LeaseLost
from .models import AgentMessage, SessionId

if TYPE_CHECKING:
    from .store import SessionStore

__all__ = ["Lease"]


class Lease:
    """A turn lease on one session, with its fencing token once acquired.

    ``with store.lease(sid, "worker-1", ttl=30) as lease: lease.append(message)``.
    Each acquisition gets a token greater than any before for this session; ``extend`` renews,
    leaving the context (or ``release``) gives the lease up early.
    """

    def __init__(self, store: SessionStore, sid: SessionId, owner: str, ttl_ms: int) -> None:
        self.store, self.session_id, self.owner, self.ttl_ms = store, sid, owner, ttl_ms
        self.token: int | None = None

    def acquire(self) -> Self:
        """Take the lease (``LeaseHeld`` if another owner holds it) and get a new fencing token."""
        self.token = self._call("acquire", self.ttl_ms)
        return self

    def extend(self, ttl: float | timedelta | None = None) -> None:
        """Renew the lease for ``ttl`` (default: the original ttl); ``LeaseLost`` if it is gone."""
        self._call("renew", self.ttl_ms if ttl is None else ttl_ms(ttl))

    def release(self) -> None:
        """Give the lease up now; ``LeaseLost`` if it had already expired or passed on."""
        if self.token is not None:
            self._call("release", 0)
            self.token = None

    def append(self, message: AgentMessage, *, expected_seq: int | None = None) -> int:
        """``store.append`` under this lease's fencing token."""
        return self.store.append(
            self.session_id, message, expected_seq=expected_seq, fence=self._token()
        )

    def extend_messages(
        self, messages: Iterable[AgentMessage], *, expected_seq: int | None = None
    ) -> int:
        """``store.extend`` under this lease's fencing token."""
        return self.store.extend(
            self.session_id, messages, expected_seq=expected_seq, fence=self._token()
        )

    def _token(self) -> int:
        if self.token is None:
            raise LeaseLost(self.session_id, None)
        return self.token

    def _call(self, action: str, ttl: int) -> int:
        transport = self.store.transport
        return transport.run(
            live.lease(transport.core, self.session_id, action, self.owner, self.token, ttl)
        )

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        with contextlib.suppress(LeaseLost):  # expired meanwhile: nothing left to give up
            self.release()
