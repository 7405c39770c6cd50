"""Nothing read from Redis (or a backing database) is ever unpickled, unmarshalled or evaluated.

Stored bytes are decoded only by msgspec's typed decoders (``codec.py``); a stored value is data,
never code. This scans the package's source (its syntax tree, so comments and docstrings do not
count) for every way Python has to turn bytes into code or arbitrary objects, and fails on any use.
The Lua sources are checked too: a script may not ``loadstring`` what it reads.
"""

from __future__ import annotations

import ast
from importlib import resources
from pathlib import Path

import pytest

import redis_sessions

PACKAGE = Path(redis_sessions.__file__).parent
SOURCES = sorted(PACKAGE.rglob("*.py"))

UNSAFE_MODULES = frozenset(
    {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "marshal", "shelve", "jsonpickle"}
)
"""Modules whose loaders rebuild arbitrary objects (or code) from bytes."""

UNSAFE_CALLS = frozenset({"eval", "exec", "compile", "__import__", "execfile"})
"""Builtins that run a string as code (``compile`` feeds them; ``__import__`` loads by name)."""

UNSAFE_ATTRIBUTES = frozenset(
    {
        ("yaml", "load"),  # builds arbitrary objects (yaml.safe_load would not)
        ("yaml", "unsafe_load"),
        ("yaml", "full_load"),
        ("numpy", "load"),  # may unpickle
        ("pandas", "read_pickle"),
        ("torch", "load"),  # unpickles
        ("ast", "literal_eval"),  # not code, but not needed either: msgspec decodes stored data
    }
)
"""``module.function`` pairs that evaluate, unpickle or run what they are given."""


def _module_of(node: ast.expr) -> str | None:
    """``a`` for ``a.f`` and ``a.b`` for ``a.b.f`` (the dotted name a call's function hangs off)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        parent = _module_of(node.value)
        return None if parent is None else f"{parent}.{node.attr}"
    return None


def findings(source: str, filename: str) -> list[str]:
    """Every unsafe import or call in ``source``, as ``file:line: what``."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            found += [
                f"{where}: import {a.name}" for a in node.names if a.name.split(".")[0] in UNSAFE_MODULES
            ]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if module.split(".")[0] in UNSAFE_MODULES:
                found.append(f"{where}: from {module} import ...")
            for alias in node.names:
                if (module.split(".")[0], alias.name) in UNSAFE_ATTRIBUTES or alias.name in UNSAFE_CALLS:
                    found.append(f"{where}: from {module} import {alias.name}")
        elif isinstance(node, ast.Call):
            function = node.func
            if isinstance(function, ast.Name) and function.id in UNSAFE_CALLS:
                found.append(f"{where}: {function.id}(...)")
            elif isinstance(function, ast.Attribute):
                owner = _module_of(function.value) or ""
                if (owner.split(".")[0], function.attr) in UNSAFE_ATTRIBUTES:
                    found.append(f"{where}: {owner}.{function.attr}(...)")
                if owner == "builtins" and function.attr in UNSAFE_CALLS:
                    found.append(f"{where}: builtins.{function.attr}(...)")
    return found


def test_the_package_sources_are_found() -> None:
    names = {path.name for path in SOURCES}
    assert {"codec.py", "_core.py", "aio.py", "store.py"} <= names


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_source_file_unpickles_or_evaluates(path: Path) -> None:
    assert findings(path.read_text("utf-8"), path.name) == []


def test_stored_data_is_decoded_by_msgspec_only() -> None:
    # The one module that turns stored message bytes into objects does it with typed decoders.
    codec = (PACKAGE / "codec.py").read_text("utf-8")
    assert "msgspec.msgpack.Decoder(AgentMessage)" in codec
    assert "msgspec.json.Decoder(AgentMessage)" in codec


def test_no_script_loads_code_from_data() -> None:
    scripts = resources.files(redis_sessions).joinpath("scripts")
    lua = {item.name: item.read_text("utf-8") for item in scripts.iterdir() if item.name.endswith(".lua")}
    assert lua, "the Lua scripts are found"
    for name, text in lua.items():
        for unsafe in ("loadstring", "dofile", "loadfile", "load(", "cmsgpack.unpack", "cjson.decode"):
            assert unsafe not in text, f"{name} uses {unsafe}"


@pytest.mark.parametrize(
    "snippet",
    [
        "import pickle\npickle.loads(b'')",
        "from pickle import loads",
        "import marshal",
        "import shelve",
        "eval('1')",
        "exec('x = 1')",
        "builtins.eval('1')",
        "import yaml\nyaml.load(data)",
        "from yaml import load",
        "compile('1', 'f', 'eval')",
        "import cloudpickle",
        "import dill.source",
    ],
)
def test_the_scan_finds_what_it_looks_for(snippet: str) -> None:
    # The check above must be able to fail.
    assert findings(snippet, "example.py")


@pytest.mark.parametrize(
    "snippet",
    [
        "msgspec.json.decode(b'1')",
        "# eval(x) in a comment",
        '"""pickle.loads in a docstring"""',
        "redis.call('EVAL', script)",
        "client.execute_command('EVALSHA', sha, 0)",
        "self.evaluate(x)",
        "yaml.safe_load(text)",
    ],
)
def test_the_scan_ignores_safe_look_alikes(snippet: str) -> None:
    assert findings(snippet, "example.py") == []
