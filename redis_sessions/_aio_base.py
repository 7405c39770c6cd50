"""``AsyncStoreBase``: the parts of ``AsyncSessionStore`` kept in modules of their own, as one base.

``aio.py`` holds the store's conversation methods and its construction; ``_aio_manage`` the methods
for looking after sessions, ``_aio_watch`` the live ones, ``_aio_tool_call`` tool calls that run
once, ``_aio_reply`` streamed replies, ``_aio_window`` budgeted reads, summaries and forks; they
send through ``_aio_transport`` and mend through ``_aio_recovery``. This module is the source of
``_base.py`` (``tools/unasync.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

from ._aio_manage import AsyncManaging
from ._aio_reply import AsyncStreaming
from ._aio_tool_call import AsyncToolCalling
from ._aio_watch import AsyncWatching
from ._aio_window import AsyncWindowing
from ._calls import Call

__all__ = ["AsyncStoreBase"]

T = TypeVar("T")


class AsyncStoreBase(AsyncManaging, AsyncWatching, AsyncToolCalling, AsyncStreaming, AsyncWindowing):
    """The methods of ``AsyncSessionStore`` that ``aio.py`` does not hold itself."""

    def _run(self, call: Call[T], node: Any = None) -> Awaitable[T]:
        """Send ``call`` through the transport: the one point where the store's own calls (and its
        write-behind worker's) pass, so a subclass or a test can interpose (with a coroutine, as
        well). A plain function handing back the transport's awaitable: no frame of its own on the
        hot path."""
        return self.transport.run(call, node)
