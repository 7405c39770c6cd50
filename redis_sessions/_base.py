"""``StoreBase``: the parts of ``SessionStore`` kept in modules of their own, as one base.

GENERATED from ``_aio_base.py`` by ``python tools/unasync.py``: do not edit; edit the source and
regenerate. See the source's docstring.
"""

from __future__ import annotations

from typing import Any, TypeVar

from ._manage import Managing
from ._reply import Streaming
from ._tool_call import ToolCalling
from ._watch import Watching
from ._window import Windowing
from ._calls import Call

__all__ = ["StoreBase"]

T = TypeVar("T")


class StoreBase(Managing, Watching, ToolCalling, Streaming, Windowing):
    """The methods of ``SessionStore`` that ``aio.py`` does not hold itself."""

    def _run(self, call: Call[T], node: Any = None) -> T:
        """Send ``call`` through the transport: the one point where the store's own calls (and its
        write-behind worker's) pass, so a subclass or a test can interpose (with a coroutine, as
        well). A plain function handing back the transport's awaitable: no frame of its own on the
        hot path."""
        return self.transport.run(call, node)
