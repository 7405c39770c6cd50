"""What every command shares: the global settings, opening the store, consoles and formatting.

Output rules, in one place: data goes to standard output, everything for a person (progress,
prompts, notes) to standard error; a console that is not a terminal gets no colour and no
wrapping (``soft_wrap``), and Rich honours ``NO_COLOR`` itself.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import click
import msgspec

from .. import SessionStore
from .._times import EPOCH

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "DEFAULT_URL",
    "SESSION_ID",
    "Settings",
    "collecting_no_garbage",
    "connect",
    "emit_json",
    "is_terminal",
    "load_encryption",
    "make_console",
    "open_output",
    "open_store",
    "redacted",
    "size_text",
    "stamper",
    "stdout_is_terminal",
    "ttl_text",
    "when",
]

DEFAULT_URL = "redis://localhost:6379/0"
_JSON = msgspec.json.Encoder()


@dataclass(frozen=True)
class Settings:
    """The global options, handed to every command."""

    url: str | None
    prefix: str
    cluster: bool = False
    encryption: str | None = None
    """``--encryption MODULE:NAME``: where the keyring of sealed sessions is (``load_encryption``)."""


def open_store(url: str, prefix: str, *, cluster: bool = False, **options: Any) -> SessionStore:
    """A store for ``url`` (a cluster node's with ``cluster``); a malformed URL or prefix is a
    one-line error, not a traceback."""
    opener = SessionStore.from_cluster if cluster else SessionStore.from_url
    try:
        return opener(url, prefix=prefix, **options)
    except ValueError as exc:
        raise click.ClickException(f"cannot use --url {redacted(url)} / --prefix {prefix!r}: {exc}") from exc


def connect(settings: Settings, **options: Any) -> SessionStore:
    """The store the browsing commands use: ``--url``, else ``REDIS_URL``, else localhost; with
    ``--encryption``'s keyring, so sealed messages show, export and fork as they are.

    No history cache: a command reads each session once."""
    options.setdefault("cache_messages", 0)
    if settings.encryption is not None:
        options.setdefault("encryption", load_encryption(settings.encryption))
    return open_store(settings.url or DEFAULT_URL, settings.prefix, cluster=settings.cluster, **options)


def load_encryption(where: str) -> Any:
    """The ``Encryption`` at ``module:name`` (an object, or a function that returns one): keys stay
    in the operator's own code or KMS, never on the command line."""
    from ..encryption import Encryption

    module_name, _, name = where.partition(":")
    try:
        found = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise click.ClickException(f"--encryption {where!r}: {exc}") from exc
    keys = found() if callable(found) and not isinstance(found, Encryption) else found
    if not isinstance(keys, Encryption):
        raise click.ClickException(f"--encryption {where!r} is a {type(keys).__name__}, not an Encryption")
    return keys


@contextlib.contextmanager
def collecting_no_garbage() -> Iterator[None]:
    """The cyclic garbage collector off while a listing builds up (on again after): it walked every
    object held so far, again and again, while 100,000 rows were made (none in a cycle), ~0.15 s."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def redacted(url: str) -> str:
    """``url`` without its password, for printing."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)))


def make_console(*, stderr: bool = False) -> Console:
    """A console for data: messages are data, so ``[...]`` and ``:name:`` in them stay as they are;
    off a terminal, lines are never wrapped or cropped. (Rich is imported here, when first needed.)"""
    from rich.console import Console

    console = Console(stderr=stderr, markup=False, emoji=False, highlight=False)
    console.soft_wrap = not console.is_terminal
    return console


def emit_json(value: object) -> None:
    """``value`` as one line of JSON on standard output (msgspec: Structs, UUIDs, datetimes)."""
    click.echo(_JSON.encode(value))


@contextlib.contextmanager
def open_output(path: str) -> Iterator[IO[bytes]]:
    """Standard output for ``-``; else a temporary file next to ``path`` that replaces it only once
    everything is written, so a failed export never leaves a truncated file behind."""
    if path == "-":
        with click.open_file("-", "wb") as stdout:
            yield stdout
        return
    target = Path(path)
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def is_terminal(stream: IO[Any]) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def stdout_is_terminal() -> bool:
    return is_terminal(sys.stdout)


SESSION_ID = click.UUID
"""A session id on the command line: a UUID, checked before anything is sent."""


def when(moment: datetime | None) -> str:
    """A timestamp for a person: local time to the second; ``-`` for none."""
    return "-" if moment is None else moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def stamper() -> Callable[[int | None], str]:
    """``when`` for many stored times (microseconds since the epoch, as a meta hash keeps them):
    each second formatted once (a listing of 100,000 sessions written in a few seconds' span asks
    for the same few again and again)."""
    seen: dict[int, str] = {}

    def stamp(micros: int | None) -> str:
        if micros is None:
            return "-"
        second = micros // 1_000_000
        text = seen.get(second)
        if text is None:
            text = seen[second] = when(EPOCH + timedelta(seconds=second))
        return text

    return stamp


def ttl_text(seconds: float | None) -> str:
    """Time left, two units at most (``3d 4h``, ``12m 05s``); ``-`` when the session never expires."""
    if seconds is None:
        return "-"
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def size_text(size: int) -> str:
    """A byte count for a person (binary units)."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
