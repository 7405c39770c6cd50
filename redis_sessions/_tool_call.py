"""``ToolCall``: a tool call that runs once, on one session of a ``SessionStore``.

GENERATED from ``_aio_tool_call.py`` by ``python tools/unasync.py``: do not edit; edit the source and
regenerate. See the source's docstring.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Self

from . import _tools as tools
from ._recovery import Recovery
from ._core import StoreCore
from .errors import InvalidOperation, SessionError, SessionNotFound
from .keys import session_id as parse_session_id
from .models import Image, SessionId, Text, ToolResult

__all__ = ["ToolCall", "ToolCalling"]


class ToolCall:
    """One tool call of a conversation, claimed so that it runs once across workers.

    ``with store.tool_call(sid, tool_use_id) as call:`` claims it. If ``call.done``, a result
    is stored already (``call.result``, the ``ToolResult`` block): do not run the tool. Otherwise
    run it and ``call.complete(content)``, which appends the ``ToolResult`` message and
    records it in one atomic step; if another worker stored a result first, that one is kept and
    returned. ``call.attempt`` counts the claims so far: 2 or more means an earlier claimant died
    (its claim expired) or gave up, and the tool may have run, in part, before. Leaving the block
    without completing (by an exception, or not calling ``complete``) releases the claim.
    """

    def __init__(
        self,
        recovery: Recovery,
        sid: SessionId,
        tool_use_id: str,
        owner: str,
        ttl_ms: int,
        fence: int | None,
    ) -> None:
        self.session_id, self.tool_use_id, self.owner, self.fence = sid, tool_use_id, owner, fence
        self.ttl_ms = ttl_ms
        self.attempt = 0
        """Which claim of this call this one is (1 for the first); 0 before ``claim``."""
        self.done = False
        """Whether a result is stored (found by the claim, or stored by ``complete``)."""
        self.result: ToolResult | None = None
        """The stored ``ToolResult`` block once ``done`` (``None`` only if trimming removed it and
        the tool calls hash expired: see the README)."""
        self.seq: int | None = None
        """The seq of the result message once ``done``."""
        self.stored = False
        """Whether this call's own ``complete`` stored the result (not another worker's)."""
        self._recovery = recovery
        self._token = tools.new_token()
        self._claimed = False

    def claim(self) -> Self:
        """Claim the call (``ToolCallPending`` while another worker's claim is live); finds it
        ``done`` instead when a result is stored."""
        core = self._recovery.transport.core
        found = self._recovery.through(
            lambda: tools.claim(
                core, self.session_id, self.tool_use_id, self._token, self.owner, self.ttl_ms, self.fence
            )
        )
        self.attempt = found.attempt
        if found.done:
            self.done, self.seq, self.result = True, found.seq, found.result
        else:
            self._claimed = True
        return self

    def extend(self, ttl: float | timedelta | None = None) -> None:
        """Renew the claim for ``ttl`` seconds from now (default: the claim's own ttl), for a tool
        that runs longer than planned. If the claim lapsed: ``ToolCallPending`` while another worker
        holds the call; taken back otherwise (``attempt`` grows if others claimed it meanwhile).
        Finds the call ``done`` instead if another worker completed it meanwhile."""
        if not self._claimed:
            raise InvalidOperation(f"session `{self.session_id}`: extend() of a tool call not claimed")
        claim_ms = self.ttl_ms if ttl is None else tools.check_ttl(self.session_id, ttl)
        core = self._recovery.transport.core
        found = self._recovery.through(
            lambda: tools.claim(
                core,
                self.session_id,
                self.tool_use_id,
                self._token,
                self.owner,
                claim_ms,
                self.fence,
                self.attempt,
            )
        )
        self.attempt = found.attempt
        if found.done:
            self._claimed = False
            self.done, self.seq, self.result = True, found.seq, found.result

    def complete(self, content: str | list[Text | Image], is_error: bool = False) -> ToolResult | None:
        """Store the tool's result (``AgentMessage.tool_result`` content) and mark the call done,
        atomically; returns the stored ``ToolResult``: this one, or one another worker stored first.
        Safe to retry; once ``done`` it returns the stored result without sending anything."""
        if self.done:
            return self.result
        if not self._claimed:
            raise InvalidOperation(f"session `{self.session_id}`: complete() of a tool call not claimed")
        core = self._recovery.transport.core
        completion = self._recovery.through(
            lambda: tools.complete(
                core, self.session_id, self.tool_use_id, self._token, content, is_error, self.fence
            )
        )
        self._claimed = False
        self.done, self.seq, self.result, self.stored = (
            True,
            completion.seq,
            completion.result,
            completion.stored,
        )
        return self.result

    def release(self) -> None:
        """Give the claim up without a result: the next claimant gets the next attempt."""
        if self._claimed:
            self._claimed = False
            transport = self._recovery.transport
            with contextlib.suppress(SessionNotFound):  # deleted meanwhile: nothing left to give up
                transport.run(
                    tools.release(transport.core, self.session_id, self.tool_use_id, self._token)
                )

    def __enter__(self) -> Self:
        return self.claim()

    def __exit__(self, exc_type: object, *exc_info: object) -> None:
        if exc_type is None:
            self.release()
            return
        # The block failed: give the claim up, but never hide its error behind ours (the claim
        # expires after its ttl anyway).
        with contextlib.suppress(SessionError):
            self.release()


class ToolCalling:
    """Part of ``SessionStore`` (which sets these attributes)."""

    _core: StoreCore
    _recovery: Recovery

    def tool_call(
        self,
        session_id: SessionId | str,
        tool_use_id: str,
        *,
        fence: int | None = None,
        ttl: float | timedelta = tools.DEFAULT_TTL,
        owner: str | None = None,
    ) -> ToolCall:
        """The tool call ``tool_use_id`` of the session, to run once: use it as a context manager,
        which claims it; see ``ToolCall``.

        ``ttl`` (seconds, as for leases) is how long a claim lasts: a worker that dies while
        running the tool blocks the call that long, so set it above the tool's longest run.
        ``fence`` (a lease's token): the claim and the completion are refused (``LeaseLost``) once
        that lease is not the live one. ``owner`` names the claimant in ``ToolCallPending``
        (default: host name and process id).
        """
        sid = parse_session_id(session_id)
        tool_use_id, ttl_ms, owner = tools.check_call(sid, tool_use_id, fence, ttl, owner)
        return ToolCall(self._recovery, sid, tool_use_id, owner, ttl_ms, fence)
