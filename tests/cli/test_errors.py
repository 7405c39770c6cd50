"""What goes wrong is one readable line and exit code 1, never a traceback: a server that is down, a
malformed URL or prefix; and output for a pipe has no escape codes, with or without ``NO_COLOR``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from redis_sessions import SessionStore
from redis_sessions.cli import main
from tests.cli.conftest import Cli, colour_codes, conversation, seed, unknown_id

SID = unknown_id()
COMMANDS = [
    pytest.param(["ls"], id="ls"),
    pytest.param(["ls", "--json"], id="ls-json"),
    pytest.param(["show", SID], id="show"),
    pytest.param(["tail", "-f", SID], id="tail"),
    pytest.param(["stats"], id="stats"),
    pytest.param(["export"], id="export"),
    pytest.param(["import", "-"], id="import"),
    pytest.param(["delete", "--yes", SID], id="delete"),
]


@pytest.mark.parametrize("command", COMMANDS)
def test_a_server_that_is_down_is_one_line(command: list[str], closed_url: str) -> None:
    line = json.dumps({"id": SID}) + "\n"
    result = CliRunner().invoke(main, ["--url", closed_url, *command], input=line)
    assert result.exit_code == 1
    assert result.stdout == ""
    (message,) = result.stderr.splitlines()
    assert message.startswith(f"Error: cannot reach Redis at {closed_url}: ")
    assert "Connection refused" in message or "connecting" in message
    assert result.exception is not None
    assert isinstance(result.exception, SystemExit)  # Click's exit, not an escaped exception


def test_export_to_a_file_leaves_nothing_when_it_fails(closed_url: str, tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    result = CliRunner().invoke(main, ["--url", closed_url, "export", "-o", str(target)])
    assert result.exit_code == 1
    assert list(target.parent.iterdir()) == []


def test_the_password_is_not_printed(closed_url: str) -> None:
    url = closed_url.replace("redis://", "redis://user:s3cret-pass@")
    result = CliRunner().invoke(main, ["--url", url, "ls"])
    assert result.exit_code == 1
    assert "s3cret-pass" not in result.output
    assert "redis://user:***@127.0.0.1:" in result.output


def test_redis_url_comes_from_the_environment(closed_url: str) -> None:
    result = CliRunner().invoke(main, ["ls"], env={"REDIS_URL": closed_url})
    assert result.exit_code == 1
    assert f"cannot reach Redis at {closed_url}" in result.output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(
            ["--url", "not-a-url", "ls"], "Error: cannot use --url not-a-url / --prefix 'rs': ", id="url"
        ),
        pytest.param(
            ["--url", "redis://localhost:6379/0", "--prefix", "no spaces", "ls"],
            "--prefix 'no spaces'",
            id="prefix",
        ),
    ],
)
def test_a_malformed_url_or_prefix_is_one_line(args: list[str], expected: str) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    (line,) = result.output.splitlines()
    assert expected in line


def test_an_unknown_host_says_so() -> None:
    result = CliRunner().invoke(main, ["--url", "redis://no-such-host.invalid:6379/0", "stats"])
    assert result.exit_code == 1
    (line,) = result.output.splitlines()
    assert line.startswith("Error: cannot reach Redis at redis://no-such-host.invalid:6379/0: ")


@pytest.mark.parametrize("no_color", [False, True], ids=["plain", "NO_COLOR"])
def test_piped_output_has_no_escape_codes(cli: Cli, store: SessionStore, no_color: bool) -> None:
    sid = conversation(store)
    seed(store, 2)
    env = {"NO_COLOR": "1"} if no_color else {}
    for args in (["ls"], ["show", str(sid)], ["tail", str(sid)], ["stats"], ["export"], ["ls", "--json"]):
        result = cli(*args, env=env)
        assert result.exit_code == 0, result.output
        assert "\x1b" not in result.output, args


def test_no_color_is_respected_on_a_terminal(cli: Cli, store: SessionStore) -> None:
    # FORCE_COLOR makes Rich treat the runner's output as a terminal: colours, unless NO_COLOR.
    sid = conversation(store)
    coloured = cli("show", str(sid), env={"FORCE_COLOR": "1"})
    assert colour_codes(coloured.stdout)  # the check below can fail
    for args in (["ls"], ["show", str(sid)], ["tail", str(sid)], ["stats"]):
        result = cli(*args, env={"FORCE_COLOR": "1", "NO_COLOR": "1"})
        assert result.exit_code == 0
        assert colour_codes(result.output) == [], args


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["ls"],
        ["show"],
        ["tail"],
        ["export"],
        ["import"],
        ["stats"],
        ["delete"],
        ["demo"],
        ["sync"],
        ["migrate"],
    ],
)
def test_help(command: list[str]) -> None:
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage: " in result.output


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert "0.1.0" in result.output
