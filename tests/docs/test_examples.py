"""The code in the README and the documentation site (``docs/``) is correct against the current API.

A Python block preceded by the line ``<!-- runnable -->`` (invisible on GitHub and on the site) is a
whole program: it runs in a fresh interpreter, with warnings as errors, in a temporary directory,
against a ``redis-server`` started for this module (its ``redis://localhost:6379/0`` replaced by that
server's URL, so the examples may leave sessions behind without touching a shared server). It must
exit 0; examples check their own results with ``assert``, and when every ``print(...)`` line of a
block ends in a comment, those comments are what it must print, line by line (``...`` stands for
anything, such as a fresh session id).

Every other Python block is a fragment (names like ``store`` or ``model`` come from the reader): it
must compile (top-level ``await`` allowed), and every name it imports from ``redis_sessions`` must
exist, so a renamed or removed API fails here rather than in a reader's hands.

The error tree drawn on ``docs/errors.md`` is checked against the classes.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

import redis_sessions
from redis_sessions import errors
from redis_sessions.embedded import RedisServer
from tests.conftest import in_ci

ROOT = Path(__file__).resolve().parent.parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
MARKER = "<!-- runnable -->"
EXAMPLE_URL = "redis://localhost:6379/0"
FENCE = re.compile(r"^```(\S*)")


class Block(NamedTuple):
    path: Path
    line: int  # of the opening fence, 1-based
    code: str
    runnable: bool

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def python_blocks(path: Path) -> Iterator[Block]:
    lines = path.read_text("utf-8").splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        end = index + 1
        while not lines[end].startswith("```"):
            end += 1
        if opening.group(1) == "python":
            before = [line for line in lines[:index] if line.strip()]
            runnable = bool(before) and before[-1].strip() == MARKER
            yield Block(path, index + 1, "\n".join(lines[index + 1 : end]) + "\n", runnable)
        index = end + 1


BLOCKS = [block for page in PAGES for block in python_blocks(page)]
RUNNABLE = [block for block in BLOCKS if block.runnable]
FRAGMENTS = [block for block in BLOCKS if not block.runnable]


def test_the_pages_have_examples_of_both_kinds() -> None:
    # The collection above must find something: a changed marker or fence would silently test nothing.
    assert len(RUNNABLE) >= 5
    assert len(FRAGMENTS) >= 3
    assert any(block.path.name == "README.md" for block in RUNNABLE)
    assert sum(printed_comments(block.code) is not None for block in RUNNABLE) >= 5


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    if shutil.which("redis-server") is None:
        reason = "redis-server is not on PATH (apt-get install redis-server)"
        if in_ci():
            pytest.fail(f"CI=true: {reason}", pytrace=False)
        pytest.skip(reason)
    with RedisServer() as server:
        yield server.url


@pytest.mark.real
@pytest.mark.parametrize("block", RUNNABLE, ids=[block.name for block in RUNNABLE])
def test_runnable_example_runs(block: Block, server_url: str, tmp_path: Path) -> None:
    code = block.code.replace(EXAMPLE_URL, server_url)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("REDIS_URL", None)
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, f"{block.name} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    expected = printed_comments(block.code)
    if expected is not None:
        printed = done.stdout.splitlines()
        assert len(printed) == len(expected), f"{block.name} printed {printed}, its comments say {expected}"
        for line, comment in zip(printed, expected, strict=True):
            pattern = ".*".join(re.escape(part) for part in comment.split("..."))
            assert re.fullmatch(pattern, line), f"{block.name} printed {line!r}, its comment says {comment!r}"


def printed_comments(code: str) -> list[str] | None:
    """The trailing comments of the block's ``print(`` lines, or None when one has none."""
    comments = []
    for line in code.splitlines():
        if line.lstrip().startswith("print("):
            found = re.search(r"\)\s+#\s(.*)$", line)
            if found is None:
                return None
            comments.append(found.group(1))
    return comments


@pytest.mark.parametrize("block", FRAGMENTS, ids=[block.name for block in FRAGMENTS])
def test_fragment_compiles_and_imports_what_exists(block: Block) -> None:
    compile(block.code, block.name, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
    tree = ast.parse(block.code)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("redis_sessions"):
            module = importlib.import_module(node.module or "")
            for alias in node.names:
                assert hasattr(module, alias.name), f"{block.name}: {node.module} has no {alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("redis_sessions"):
                    importlib.import_module(alias.name)


def drawn_tree() -> dict[str, str | None]:
    """``docs/errors.md``'s tree as {class name: the name it hangs under}."""
    text = (ROOT / "docs" / "errors.md").read_text("utf-8")
    tree = text.split("## The tree", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for line in tree.splitlines():
        found = re.search(r"[A-Za-z]+", line)
        assert found is not None, line
        depth = found.start()
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parents[found.group()] = stack[-1][1] if stack else None
        stack.append((depth, found.group()))
        for also in re.findall(r"also (\w+)", line):
            assert issubclass(getattr(errors, found.group()), getattr(builtins, also)), line
    return parents


def test_the_error_tree_on_the_errors_page_is_the_class_tree() -> None:
    drawn = drawn_tree()
    assert set(drawn) == set(errors.__all__)
    for name, parent in drawn.items():
        cls = getattr(errors, name)
        if name in redis_sessions.__all__:
            assert getattr(redis_sessions, name) is cls
        if parent is None:
            assert cls is errors.SessionError
        else:
            library_bases = [base.__name__ for base in cls.__bases__ if issubclass(base, errors.SessionError)]
            assert library_bases == [parent], name
