"""The repository's own checks, run from its root: lint, format, types, and the generated sync store."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.servers import in_ci

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

CHECKS = {
    "ruff check": [str(BIN / "ruff"), "check", "."],
    "ruff format": [str(BIN / "ruff"), "format", "--check", "."],
    "mypy": [sys.executable, "-m", "mypy"],  # one strict run: package, tools and tests (pyproject's files)
    "unasync": [sys.executable, "tools/unasync.py", "--check"],
}


TOOLS = {"ruff check": "ruff", "ruff format": "ruff", "mypy": "mypy"}  # the dev extra's, not the test extra's


@pytest.mark.parametrize("command", CHECKS.values(), ids=CHECKS.keys())
def test_check_passes(command: list[str], request: pytest.FixtureRequest) -> None:
    tool = TOOLS.get(request.node.callspec.id)
    if tool is not None and importlib.util.find_spec(tool) is None:
        reason = f"{tool} is not installed: it is in the dev extra (pip install -e '.[dev]')"
        if in_ci():
            pytest.fail(f"CI=true: {reason}", pytrace=False)
        pytest.skip(reason)
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=110, check=False)
    assert done.returncode == 0, (
        f"{' '.join(command)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    )


def test_mypy_checks_the_tests_too() -> None:
    # The mypy check above covers what pyproject's [tool.mypy] files names: the tests are typed code too.
    config = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["tool"]["mypy"]
    assert {"redis_sessions", "tools", "tests"} <= set(config["files"])
    assert config["strict"] is True


def test_the_sync_modules_are_generated_from_the_async_ones() -> None:
    # The check above must be able to fail: a stale store.py is reported.
    spec = importlib.util.spec_from_file_location("unasync_tool", ROOT / "tools" / "unasync.py")
    assert spec is not None
    assert spec.loader is not None
    unasync = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(unasync)
    for source, (target, header) in unasync.PAIRS.items():
        text = (ROOT / "redis_sessions" / source).read_text("utf-8")
        generated = unasync.generate(text, header)
        assert generated == (ROOT / "redis_sessions" / target).read_text("utf-8")
        assert "async " not in generated
        assert "await " not in generated
        assert "Async" not in generated
    store = unasync.generate((ROOT / "redis_sessions" / "aio.py").read_text("utf-8"))
    assert "class SessionStore(StoreBase):" in store
