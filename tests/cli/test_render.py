"""The pieces the commands format with, without Redis: blocks, time left, sizes, timestamps, and
the names the package keeps from the single-module ``cli.py`` it was split from."""

from __future__ import annotations

from datetime import UTC, datetime

import click
import pytest

from redis_sessions import Image, Text, Thinking, ToolResult, ToolUse
from redis_sessions.cli import Settings, main, open_store, render_block
from redis_sessions.cli.common import size_text, ttl_text, when


def test_render_block_is_one_line_per_block() -> None:
    assert render_block(Text("hi [bold]")) == "hi [bold]"
    assert render_block(ToolUse("c1", "search", {"q": "ø"})) == '→ search({"q": "ø"}) [c1]'
    assert render_block(ToolResult("c1", "found")) == "← [c1] found"
    assert render_block(ToolResult("c1", [Text("a"), Text("b")], is_error=True)) == "✗ [c1] a b"
    assert render_block(Thinking("hmm")) == "(thinking) hmm"
    assert render_block(Image("image/png", b"12345")) == "[image image/png, 5 bytes]"


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (None, "-"),
        (0.4, "0s"),
        (59, "59s"),
        (60, "1m 00s"),
        (3599, "59m 59s"),
        (3600, "1h 00m"),
        (90061, "1d 1h"),
    ],
)
def test_ttl_text(seconds: float | None, shown: str) -> None:
    assert ttl_text(seconds) == shown


@pytest.mark.parametrize(
    ("size", "shown"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (20 * 1024 + 8, "20.0 KiB"), (5 << 30, "5.0 GiB")],
)
def test_size_text(size: int, shown: str) -> None:
    assert size_text(size) == shown


def test_when_is_local_time_to_the_second() -> None:
    moment = datetime(2025, 1, 2, 3, 4, 5, 678, tzinfo=UTC)
    assert when(moment) == moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    assert when(None) == "-"


def test_the_names_of_the_old_module_still_import() -> None:
    assert main.name == "main"
    assert callable(open_store)
    assert Settings("redis://x", "rs").cluster is False
    context = click.Context(main)
    names = main.list_commands(context)
    assert set(names) == {
        "demo", "ls", "show", "tail", "context", "fork", "export", "import", "stats", "delete", "sync",
        "migrate", "rebind"
    }  # fmt: skip
    assert [getattr(main.get_command(context, name), "name", None) for name in names] == names
