"""``SessionError``, the root of the error tree (drawn in ``errors``), in a module of its own so
that the tree can span modules: ``errors`` holds the callers' mistakes and the sessions' states,
``_errors_stored`` what is stored and the store itself; ``errors`` is where every one is imported from.
"""

from __future__ import annotations

import uuid

__all__ = ["SessionError", "rebuild"]


class SessionError(Exception):
    """Root of every error this library raises."""

    session_id: uuid.UUID | None = None

    def __reduce__(self) -> tuple[object, ...]:
        # Rebuild from the finished message and attributes, not from __init__'s own arguments, so
        # that errors cross process boundaries (multiprocessing, ProcessPoolExecutor) intact.
        return (rebuild, (type(self), str(self), self.__dict__))


def rebuild(cls: type[SessionError], message: str, state: dict[str, object]) -> SessionError:
    """An error of ``cls`` with its finished ``message`` and attributes, without its ``__init__``
    (which takes other arguments): how a pickled error is unpickled."""
    error = Exception.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error
