"""Every error the package raises is in its tree (``errors.py``): no bare builtin raise.

A caller's wrong argument is an ``InvalidArgument`` (a ``ValueError``; ``InvalidArgumentType`` is a
``TypeError`` too), a call the store is not set up for an ``InvalidOperation`` (a ``RuntimeError``), so
``except SessionError`` sees them and ``except ValueError`` / ``TypeError`` still do.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from redis_sessions.errors import InvalidArgument, InvalidArgumentType, InvalidOperation, SessionError

PACKAGE = Path(__file__).resolve().parents[2] / "redis_sessions"
# What a caller's mistake would be raised as. (Not: SystemExit in the CLI, TimeoutError from flush,
# ImportError for a missing extra, OSError kinds from the environment: they say what they mean.)
BUILTIN_ERRORS = {
    "Exception",
    "ValueError",
    "TypeError",
    "RuntimeError",
    "KeyError",
    "IndexError",
    "LookupError",
    "AttributeError",
}
# Raises that are not about a caller's argument, each with why it stays a builtin.
ALLOWED = {
    ("cli/demo.py", "RuntimeError"): "the demo's own self-check failing, not a caller's mistake",
    ("cli/__init__.py", "AttributeError"): "a module's __getattr__ (PEP 562) says a name is not there",
    ("embedded.py", "RuntimeError"): "the bundled redis-server did not start: an environment fault",
}


def _bare_raises() -> set[tuple[str, str, int]]:
    found = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).as_posix()
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if not isinstance(node, ast.Raise) or node.exc is None:
                continue
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(target, ast.Name) and target.id in BUILTIN_ERRORS:
                found.add((module, target.id, node.lineno))
    return found


def test_no_bare_builtin_raise_outside_the_allowed_few() -> None:
    bare = {(module, name, line) for module, name, line in _bare_raises() if (module, name) not in ALLOWED}
    assert not bare, "raise an error of errors.py's tree instead (InvalidArgument...):\n" + "\n".join(
        f"  redis_sessions/{module}:{line}: {name}" for module, name, line in sorted(bare)
    )


def test_the_allowed_list_has_no_stale_entry() -> None:
    used = {(module, name) for module, name, _ in _bare_raises()}
    assert set(ALLOWED) <= used, f"no longer raised, drop from ALLOWED: {sorted(set(ALLOWED) - used)}"


@pytest.mark.parametrize(
    ("error", "builtin"),
    [(InvalidArgument, ValueError), (InvalidArgumentType, TypeError), (InvalidOperation, RuntimeError)],
)
def test_argument_errors_keep_their_builtin_base(error: type[Exception], builtin: type[Exception]) -> None:
    assert issubclass(error, SessionError)
    assert issubclass(error, builtin)
