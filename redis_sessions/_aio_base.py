"""``AsyncStoreBase``: the parts of ``AsyncSessionStore`` kept in modules of their own, as one base.

``aio.py`` holds the store's conversation methods and its construction; ``_aio_manage`` the methods
for looking after sessions, ``_aio_watch`` the live ones, ``_aio_tool_call`` tool calls that run
once; they send through ``_aio_transport`` and mend through ``_aio_recovery``. This module is the
source of ``_base.py`` (``tools/unasync.py``).
"""

from __future__ import annotations

from ._aio_manage import AsyncManaging
from ._aio_tool_call import AsyncToolCalling
from ._aio_watch import AsyncWatching

__all__ = ["AsyncStoreBase"]


class AsyncStoreBase(AsyncManaging, AsyncWatching, AsyncToolCalling):
    """The methods of ``AsyncSessionStore`` that ``aio.py`` does not hold itself."""
