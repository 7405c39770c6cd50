"""``demo``: agent processes share one conversation; it checks nothing was lost, then cleans up
(or keeps the session with ``--keep``). Real processes against a real redis-server."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from redis_sessions.cli import main
from tests.support import unique_prefix

pytestmark = pytest.mark.real


def test_demo_passes_and_cleans_up(redis_url: str) -> None:
    prefix = unique_prefix()
    result = CliRunner().invoke(
        main, ["--url", redis_url, "--prefix", prefix, "demo", "--agents", "2", "--turns", "3", "--show", "4"]
    )
    assert result.exit_code == 0, result.output
    assert "PASS: 24 messages from 2 processes" in result.stdout
    assert "… 20 more messages …" in result.stdout
    assert "✓ streamed reply: 22 deltas watched live, each once and in order" in result.stdout
    assert "streamed reply, watched live: All agents answered their questions;" in result.stdout
    assert "\x1b" not in result.output
    assert (
        json.loads(CliRunner().invoke(main, ["--url", redis_url, "--prefix", prefix, "ls", "--json"]).stdout)
        == []
    )


def test_demo_keep_leaves_the_session_to_look_at(redis_url: str) -> None:
    prefix = unique_prefix()
    base = ["--url", redis_url, "--prefix", prefix]
    result = CliRunner().invoke(
        main, [*base, "demo", "--agents", "2", "--turns", "1", "--show", "0", "--keep"]
    )
    assert result.exit_code == 0, result.output
    (kept,) = json.loads(CliRunner().invoke(main, [*base, "ls", "--json"]).stdout)
    assert f"Kept session {kept['id']}" in result.stdout
    assert kept["messages"] == 2 * 1 * 4 + 1, "the agents' turns, then the streamed reply"
    shown = CliRunner().invoke(main, [*base, "show", kept["id"]]).stdout
    assert "→ get_weather" in shown or "→ run_sql" in shown
    assert CliRunner().invoke(main, [*base, "delete", "--yes", kept["id"]]).exit_code == 0
