"""``python -m redis_sessions`` and the ``redis-sessions`` command (``main`` is its entry point).

The command's dependencies (Click, Rich) are the ``cli`` extra: without them ``main`` says so in
one line instead of a ``ModuleNotFoundError`` traceback. Nothing is imported at module level, so
spawned agent processes (which import this module too) pay nothing.
"""

from __future__ import annotations

import importlib.util
import sys

_CLI_PACKAGES = frozenset({"click", "rich"})


def main() -> None:
    """Run the ``redis-sessions`` command."""
    try:
        from .cli import main as command

        for package in sorted(_CLI_PACKAGES):  # Rich is imported late, by the commands that print for
            if importlib.util.find_spec(package) is None:  # a person: found, not imported, here
                raise ModuleNotFoundError(f"No module named {package!r}", name=package)
    except ModuleNotFoundError as exc:
        package = (exc.name or "").partition(".")[0]
        if package not in _CLI_PACKAGES:
            raise
        sys.exit(
            f"redis-sessions: the command needs the 'cli' extra ({package} is not installed): "
            "pip install 'redis-sessions[cli]'"
        )
    command(prog_name="redis-sessions")


if __name__ == "__main__":  # spawned agent processes import this module too: do not re-run then
    main()
