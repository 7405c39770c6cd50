"""Schema evolution: the way forward from a stored schema version to the one this code writes.

Every stored session names its ``schema_version``. A version newer than this code's is always
refused (``SchemaVersionError``), never guessed at. An older one is upgraded when it is read, from
either tier, by the registered steps ``n -> n + 1`` applied in order to plain data: the session's
fields as a dict (as its JSON holds them) and each message as a dict. In Redis the upgraded session
then replaces the old one in one compare-and-set script (only if nothing was appended meanwhile),
so an old session is read, and written to, by new code; the backing store's copy is upgraded when
it is read, and rewritten in the new version by the next snapshot.

A step is registered next to the change that needs it, with ``register(1, Upgrade(session=...,
message=...))``. ``using(Schema(...))`` swaps the active schema, for tests and tools: stores made
inside the block keep it, adapters read with the one active when they read. The library's own
default is ``Schema(SCHEMA_VERSION, <the registered steps>)``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

from .errors import InvalidArgument, SchemaVersionError
from .models import SCHEMA_VERSION, SessionId

__all__ = ["Schema", "Upgrade", "active", "register", "using"]

Data = dict[str, Any]


def _same(data: Data) -> Data:
    return data


class Upgrade(NamedTuple):
    """One step from version ``n`` to ``n + 1``: how a session's fields and each message change."""

    session: Callable[[Data], Data] = _same
    message: Callable[[Data], Data] = _same


class Schema(NamedTuple):
    """The version this code writes, and the steps that lead to it from older ones."""

    current: int
    upgrades: Mapping[int, Upgrade]

    def can_read(self, version: int) -> bool:
        """This version, or an older one with every step to this one registered."""
        return version <= self.current and all(v in self.upgrades for v in range(version, self.current))

    def upgrade(self, sid: SessionId, version: int, session: Data) -> Data:
        """``session`` (a dict with a ``messages`` list of dicts) brought from ``version`` to
        ``current``; ``SchemaVersionError`` for a newer version or a missing step."""
        if not self.can_read(version):
            raise SchemaVersionError(sid, version, self.current)
        for step in range(version, self.current):
            upgrade = self.upgrades[step]
            session = upgrade.session(dict(session))
            session["messages"] = [upgrade.message(dict(m)) for m in session.get("messages", [])]
        session["schema_version"] = self.current
        return session


_STEPS: dict[int, Upgrade] = {}  # the library's own steps, registered where a change needs one
_active = Schema(SCHEMA_VERSION, _STEPS)


def register(from_version: int, step: Upgrade) -> None:
    """Add the library's step from ``from_version`` to the next (once per version)."""
    if from_version in _STEPS:
        raise InvalidArgument(f"an upgrade from schema version {from_version} is registered already")
    _STEPS[from_version] = step


def active() -> Schema:
    """The schema stores and adapters made now will write, and read up to."""
    return _active


@contextlib.contextmanager
def using(schema: Schema) -> Iterator[Schema]:
    """Make ``schema`` the active one inside the block (stores and adapters made there keep it)."""
    global _active
    previous, _active = _active, schema
    try:
        yield schema
    finally:
        _active = previous
