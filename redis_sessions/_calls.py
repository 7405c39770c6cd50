"""What an operation becomes: one round trip and the parser of its reply, in one of four shapes.

An operation is a function ``op(core, ...) -> Call`` (in ``_write``, ``_read``, ``_live``, ``_admin``,
``_durable``); the fronts' transport sends a call by its type, and nothing else decides how:

``Script``       EVALSHA of one of ``SCRIPTS`` (EVAL after the server lost its script cache)
``Transaction``  commands as one MULTI/EXEC on one slot; ``fallback``, a read-only script, goes
                 instead when Redis is out of memory (it refuses every queued command then)
``Pipeline``     commands in one round trip, not atomic (their keys are in many cluster slots)
``Command``      one plain command (on ``node`` when the transport is given one: SCAN)

NamedTuples, not frozen dataclasses: one is built per call, and tuple construction is the cheapest
Python has.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, NamedTuple, TypeAlias, TypeVar

from .models import SessionId

__all__ = ["Call", "Command", "Pipeline", "Script", "Transaction"]

T = TypeVar("T")
Commands: TypeAlias = tuple[tuple[Any, ...], ...]


class Script(NamedTuple, Generic[T]):
    """``EVALSHA`` of the script ``script`` with ``keys`` and ``args``; ``packed``, when an
    operation built it (the plain append: ``_scripts.AppendHeads``), the same command as the
    lean line sends it (else the transport packs ``keys`` and ``args``)."""

    op: str
    sid: SessionId | None
    script: str
    keys: tuple[str, ...]
    args: tuple[Any, ...]
    parse: Callable[[Any], T]
    packed: bytes = b""


class Transaction(NamedTuple, Generic[T]):
    """The ``multi`` commands as one MULTI/EXEC snapshot (``keys``: the slot they share)."""

    op: str
    sid: SessionId | None
    keys: tuple[str, ...]
    multi: Commands
    parse: Callable[[Any], T]
    fallback: Script[T] | None = None

    @property
    def script(self) -> None:
        """Not a script: every shape answers ``call.script`` (the name, or ``None``)."""
        return None


class Pipeline(NamedTuple, Generic[T]):
    """The ``multi`` commands pipelined in one round trip, not as a transaction."""

    op: str
    sid: SessionId | None
    multi: Commands
    parse: Callable[[Any], T]

    @property
    def script(self) -> None:
        """Not a script: every shape answers ``call.script`` (the name, or ``None``)."""
        return None

    @property
    def keys(self) -> tuple[str, ...]:
        """No one slot: the commands' keys are in many."""
        return ()


class Command(NamedTuple, Generic[T]):
    """The single command ``args``."""

    op: str
    sid: SessionId | None
    keys: tuple[str, ...]
    args: tuple[Any, ...]
    parse: Callable[[Any], T]

    @property
    def script(self) -> None:
        """Not a script: every shape answers ``call.script`` (the name, or ``None``)."""
        return None


Call: TypeAlias = Script[T] | Transaction[T] | Pipeline[T] | Command[T]
"""Any of the four: what an operation returns and the transport sends."""
