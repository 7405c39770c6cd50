"""``StoreBase``: the parts of ``SessionStore`` kept in modules of their own, as one base.

GENERATED from ``_aio_base.py`` by ``python tools/unasync.py``: do not edit; edit the source and
regenerate. See the source's docstring.
"""

from __future__ import annotations

from ._manage import Managing
from ._tool_call import ToolCalling
from ._watch import Watching

__all__ = ["StoreBase"]


class StoreBase(Managing, Watching, ToolCalling):
    """The methods of ``SessionStore`` that ``aio.py`` does not hold itself."""
