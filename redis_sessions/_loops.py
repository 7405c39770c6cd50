"""Which client a call uses: ``LoopClients`` (the asyncio store: one per event loop) and
``OneClient`` (the synchronous store: always the one).

A ``redis.asyncio`` client's connections belong to the event loop that opened them. ``Runner.run_sync``
(OpenAI Agents SDK), an ``asyncio.run()`` per request and a thread pool with a loop per thread all
use one store from many loops, one after another or at once; a shared client then fails with
``Event loop is closed`` or ``attached to a different loop``. So an asyncio store that made its own
client (``from_url``, ``from_cluster``, ``from_sentinel``) makes one more for each other loop, lazily,
from the same configuration; a client the caller passed in is theirs to place, and a call from
another loop is refused (``WrongEventLoop``) before anything is sent.

A loop's client is closed in that loop when the loop winds down: ``asyncio.run``, ``asyncio.Runner``
and ``Runner.run_sync`` call ``loop.shutdown_asyncgens()`` last, which finishes every async generator
still open in the loop. Each loop's client has one (``_closing``) whose ``finally`` closes it, so its
sockets are closed by their own loop; a loop closed without that step leaves them to the garbage
collector. ``aclose()`` closes the clients of the calling loop and of loops running in other threads.
"""

from __future__ import annotations

import asyncio
import threading
import warnings
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

from .errors import WrongEventLoop

__all__ = ["LoopClients", "OneClient"]

Reopen = Callable[[], "tuple[Any, tuple[Any, ...]]"]
_CLOSE_ELSEWHERE_S = 5.0  # how long aclose waits for a loop in another thread to close its client


class _LoopClient:
    """One loop's client, what of it to close, and the async generator that closes it."""

    def __init__(self, client: Any, owned: tuple[Any, ...]) -> None:
        self.client = client
        self.owned = owned
        self.closed = False
        self.closer: AsyncIterator[None] | None = None  # kept alive until the loop finishes it

    async def close(self) -> None:
        """Close the owned objects, once (the loop's shutdown and ``aclose`` may both ask)."""
        if self.closed:
            return
        self.closed = True
        for owned in self.owned:
            await owned.aclose()


class LoopClients:
    """The client of the running event loop, for ``AsyncTransport``.

    ``home`` (the client the store was built with) serves the first loop that uses it. With ``own``
    the store says it made ``home`` (and how to make another): other loops then get clients of their
    own; without, a call from another loop raises ``WrongEventLoop``.
    """

    owns: Final = False
    """The asyncio store's lean line never holds a connection (it auto-pipelines on the pool)."""

    def __init__(self, home: Any) -> None:
        self.home = home
        self._reopen: Reopen | None = None
        self._home_entry: _LoopClient | None = None
        self._home_loop: weakref.ref[asyncio.AbstractEventLoop] | None = None
        self._home_retired = False  # closed with its loop: the next loop opens a new client
        self._last: tuple[asyncio.AbstractEventLoop | None, Any] = (None, None)
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClient] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()  # loops in several threads may ask at once

    def own(self, owned: tuple[Any, ...], reopen: Reopen) -> None:
        """The store made ``home``: close ``owned`` with it, and ``reopen()`` for other loops."""
        self._home_entry = _LoopClient(self.home, owned)
        self._reopen = reopen

    def current(self) -> Any:
        """The client for the running loop (the hot path: one lookup of the loop, one compare)."""
        loop = asyncio.get_running_loop()
        last_loop, client = self._last  # one tuple: read whole, even while another thread writes it
        if last_loop is loop:
            return client
        with self._lock:
            client = self._lookup(loop)
        self._last = (loop, client)
        return client

    def _lookup(self, loop: asyncio.AbstractEventLoop) -> Any:
        entry = self._loops.get(loop)
        if entry is not None and not entry.closed:
            return entry.client
        if self._home_loop is None and not self._home_retired:
            self._home_loop = weakref.ref(loop)
            if self._home_entry is None:  # the caller's client: theirs to close, and to place
                return self.home
            return self._start(loop, self._home_entry, home=True)
        if self._home_loop is not None and self._home_loop() is loop and self._reopen is None:
            return self.home
        if self._reopen is None:
            raise WrongEventLoop()
        return self._start(loop, _LoopClient(*self._reopen()), home=False)

    def _start(self, loop: asyncio.AbstractEventLoop, entry: _LoopClient, *, home: bool) -> Any:
        """Keep ``entry`` for ``loop`` and start its closer there (see the module docstring)."""
        self._loops[loop] = entry
        entry.closer = self._closing(weakref.ref(loop), entry, home)
        if getattr(loop, "_asyncgens_shutdown_called", False):
            # The loop already wound down once and runs again (Runner.run_sync reuses its thread's
            # loop): asyncio still registers the generator, with a ResourceWarning that says so.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceWarning)
                _step(entry.closer.__anext__())
        else:
            _step(entry.closer.__anext__())  # the loop's firstiter hook registers the generator
        return entry.client

    async def _closing(
        self, loop: weakref.ref[asyncio.AbstractEventLoop], entry: _LoopClient, home: bool
    ) -> AsyncIterator[None]:
        """Suspends until the loop's ``shutdown_asyncgens`` (or ``aclose``) finishes it, then closes
        the loop's client in that loop and forgets it."""
        try:
            yield
        finally:
            with self._lock:
                alive = loop()  # held weakly: a loop closed without winding down can still be freed
                if alive is not None and self._loops.get(alive) is entry:
                    del self._loops[alive]
                if home:
                    self._home_retired = True
                    self._home_loop = None
                self._last = (None, None)
            await entry.close()

    async def aclose(self) -> None:
        """Close every client the store made: the calling loop's here, those of loops running in
        other threads in their loop; those of loops no longer running are left to the collector."""
        with self._lock:
            entries = list(self._loops.items())
            self._loops.clear()
            self._last = (None, None)
            self._home_retired = True
        running = asyncio.get_running_loop()
        for loop, entry in entries:
            if loop is running:
                await entry.close()
            elif loop.is_running() and not loop.is_closed():
                future = asyncio.run_coroutine_threadsafe(entry.close(), loop)
                await asyncio.wait_for(asyncio.wrap_future(future), _CLOSE_ELSEWHERE_S)
            else:
                entry.closed = True
            entry.closer = None
        home = self._home_entry
        if home is not None and not home.closed and self._home_loop is None:
            await home.close()  # never used in a loop: closing it only releases its pool


def _step(awaitable: Any) -> None:
    """Run a coroutine step that cannot suspend (an async generator's way to its first ``yield``)."""
    try:
        awaitable.send(None)
    except StopIteration:
        return
    raise AssertionError("the closer suspended before its first yield")


class OneClient:
    """The synchronous store's client: one, for every thread (redis-py's pool is thread-safe)."""

    def __init__(self, home: Any) -> None:
        self.home = home
        self._owned: tuple[Any, ...] = ()

    def own(self, owned: tuple[Any, ...], reopen: Reopen) -> None:
        """The store made ``home``: close ``owned`` with it (``reopen`` is for the asyncio store)."""
        self._owned = owned

    @property
    def owns(self) -> bool:
        """Whether the store made its client (nobody else takes connections from its pool)."""
        return bool(self._owned)

    def current(self) -> Any:
        """The client."""
        return self.home

    def close(self) -> None:
        """Close what the store made."""
        for owned in self._owned:
            owned.close()
