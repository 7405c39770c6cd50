"""The package's seams: no module imports another's private names or reaches into another
module's private attributes, and no two modules import each other (not even from inside a function,
which is how a cycle hides).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "redis_sessions"
# A namedtuple's own API starts with an underscore so as not to clash with field names.
NAMEDTUPLE_API = {"_replace", "_asdict", "_fields", "_make", "_field_defaults"}
# Modules still allowed to reach into another's private attributes: none. (The write-behind worker,
# the bulk migration and rebind drive a store through ``store.transport`` since issue 14's item 3.)
REACHING_IN: set[str] = set()
CYCLES_PENDING: set[tuple[str, str]] = set()  # none left: the store opens the worker's store (item 3)


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE).as_posix(), ast.parse(path.read_text("utf-8"))


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _is_module(package: str, name: str) -> bool:
    """Whether ``from package import name`` imports a module (a private module is fine to import)."""
    base = PACKAGE.joinpath(*package.split(".")) if package else PACKAGE
    return (base / f"{name}.py").is_file() or (base / name / "__init__.py").is_file()


def _absolute(module: str, node: ast.ImportFrom) -> str:
    """The dotted name (within the package) that a ``from ... import`` reads from."""
    if node.level == 0:
        return (node.module or "").removeprefix("redis_sessions.").removeprefix("redis_sessions")
    parts = module.removesuffix(".py").split("/")[: -node.level]
    return ".".join([*parts, *([node.module] if node.module else [])])


def test_no_module_imports_another_modules_private_names() -> None:
    found = [
        f"redis_sessions/{module}:{node.lineno}: from {node.module or '.'} import {alias.name}"
        for module, tree in _modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").startswith("redis_"))
        for alias in node.names
        if _private(alias.name) and not _is_module(_absolute(module, node), alias.name)
    ]
    assert not found, "private names imported across modules (make them public, or move them):\n" + "\n".join(
        found
    )


def _defined_here(tree: ast.Module) -> set[str]:
    """Private names a module defines: functions, classes, and attributes it assigns."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {name for name in names if _private(name)}


def test_no_module_reaches_into_private_attributes_defined_elsewhere() -> None:
    found = []
    for module, tree in _modules():
        if module in REACHING_IN:
            continue
        own = _defined_here(tree) | NAMEDTUPLE_API
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or not _private(node.attr) or node.attr in own:
                continue
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue  # inherited from a base class: the same object's own state
            found.append(f"redis_sessions/{module}:{node.lineno}: {ast.unparse(node)}")
    assert not found, "private attributes of another module's objects:\n" + "\n".join(found)


def _imports() -> dict[str, set[str]]:
    """Which package modules each module imports, wherever in it the import is (but not under
    ``if TYPE_CHECKING:``, which never runs)."""
    graph: dict[str, set[str]] = {}
    for module, tree in _modules():
        name = module.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
        checking = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If)
            and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
            for inner in ast.walk(node)
        }
        edges = graph.setdefault(name, set())
        for node in ast.walk(tree):
            if id(node) in checking or not isinstance(node, ast.ImportFrom):
                continue
            if node.level == 0 and not (node.module or "").startswith("redis_sessions"):
                continue
            source = _absolute(module, node)
            for alias in node.names:  # "from . import _read": the module _read
                edges.add(f"{source}.{alias.name}".strip("."))
            edges.add(source)
    return {name: {e for e in edges if e in graph and e != name} for name, edges in graph.items()}


def test_no_import_cycles() -> None:
    graph = _imports()
    for pending in CYCLES_PENDING:
        graph[pending[0]].discard(pending[1])
    cycles = []
    for start in graph:
        stack = [(start, [start])]
        seen = set()
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    cycles.append(" -> ".join([*path, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    assert not cycles, "import cycles:\n" + "\n".join(sorted(set(cycles)))
