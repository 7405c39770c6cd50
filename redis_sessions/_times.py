"""Times as the meta hash keeps them: whole microseconds since the Unix epoch, in decimal.

One reader (``stored_time``) and one writer (``stored_micros``) of that form, and the epoch they
count from, for the modules that read sessions (``_core``, ``_admin``, ``_ls_rows``), restore them
(``_durable``) and print them (the CLI).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

__all__ = ["EPOCH", "stored_micros", "stored_time"]

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


def stored_time(raw: bytes | None) -> datetime | None:
    """A time as the meta hash keeps it, or ``None``."""
    return None if raw is None else EPOCH + _MICROSECOND * int(raw)  # half timedelta(microseconds=)


def stored_micros(moment: datetime | None) -> str:
    """``moment`` as the meta hash keeps it (naive: UTC); '' for ``None`` (the script says now)."""
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return str((moment - EPOCH) // _MICROSECOND)
