"""Once as a real process against a real redis-server: ``python -m redis_sessions`` and the
installed ``redis-sessions`` console script do the same, and a pipe gets plain JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from redis_sessions import SessionStore
from tests.cli.conftest import seed
from tests.support import unique_prefix

pytestmark = pytest.mark.real

SCRIPT = Path(sys.executable).with_name("redis-sessions")
ENTRY_POINTS = [
    pytest.param([sys.executable, "-m", "redis_sessions"], id="python-m"),
    pytest.param([str(SCRIPT)], id="console-script"),
]


def run(command: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"FORCE_COLOR", "NO_COLOR", "REDIS_URL"}}
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=60, env=env, check=False)


@pytest.mark.parametrize("command", ENTRY_POINTS)
def test_ls_json_as_a_real_process(command: list[str], redis_url: str) -> None:
    if not Path(command[0]).exists():
        pytest.fail(f"{command[0]} is not installed: pip install -e .")
    prefix = unique_prefix()
    with SessionStore.from_url(redis_url, prefix=prefix) as store:
        sids = seed(store, 3)
        try:
            done = run(command, "--url", redis_url, "--prefix", prefix, "ls", "--json")
        finally:
            for sid in sids:
                store.delete(sid)
    assert done.returncode == 0, done.stderr
    assert {item["id"] for item in json.loads(done.stdout)} == set(map(str, sids))
    assert done.stderr == ""
    assert "\x1b" not in done.stdout


@pytest.mark.parametrize("command", ENTRY_POINTS)
def test_a_down_server_as_a_real_process(command: list[str], closed_url: str) -> None:
    done = run(command, "--url", closed_url, "ls")
    assert done.returncode == 1
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"Error: cannot reach Redis at {closed_url}: ")


@pytest.mark.parametrize("missing", ["click", "rich"])
def test_without_the_cli_extra_the_command_says_so_in_one_line(missing: str) -> None:
    # the extra's package made unimportable, as if it were not installed
    code = f"import sys; sys.modules[{missing!r}] = None\nfrom redis_sessions.__main__ import main\nmain()"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line == (
        f"redis-sessions: the command needs the 'cli' extra ({missing} is not installed): "
        "pip install 'redis-sessions[cli]'"
    )


def test_another_missing_module_is_not_blamed_on_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from redis_sessions.__main__ import main

    monkeypatch.setitem(sys.modules, "redis_sessions.cli", None)
    with pytest.raises(ModuleNotFoundError, match=r"redis_sessions\.cli"):
        main()


def test_the_console_script_is_the_guarded_entry_point() -> None:
    from importlib.metadata import entry_points

    (script,) = entry_points(group="console_scripts", name="redis-sessions")
    assert script.value == "redis_sessions.__main__:main"


@pytest.mark.parametrize("args", [("ls",), ("ls", "--json"), ("stats", "--json")], ids=" ".join)
def test_a_listing_in_a_pipe_imports_no_rich(args: tuple[str, ...], redis_url: str) -> None:
    # Rich is for a person; a pipe's start-up is a tenth shorter without it (and the demo's modules)
    prefix = unique_prefix()
    argv = ["redis-sessions", "--url", redis_url, "--prefix", prefix, *args]
    code = (
        "import atexit, sys\n"
        "loaded = lambda: sorted({'rich', 'multiprocessing'} & set(sys.modules))\n"
        "atexit.register(lambda: print(loaded(), file=sys.stderr))\n"
        f"sys.argv = {argv!r}\n"
        "from redis_sessions.__main__ import main\n"
        "main()\n"
    )
    with SessionStore.from_url(redis_url, prefix=prefix) as store:
        seed(store, 2)
        try:
            done = run([sys.executable, "-c", code])
        finally:
            for sid in store.list():
                store.delete(sid)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[-1] == "[]"
