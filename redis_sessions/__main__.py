"""``python -m redis_sessions``: the same as the ``redis-sessions`` command."""

from .cli import main

if __name__ == "__main__":  # spawned agent processes import this module too: do not re-run then
    main(prog_name="redis-sessions")
