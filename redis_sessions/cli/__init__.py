"""The ``redis-sessions`` command: a thin Click + Rich front over the public API.

Global options (``--url``, else ``REDIS_URL``, else localhost; ``--prefix``; ``--cluster``) live on
the group so every command shares them. Errors become one ``Error: ...`` line and exit code 1,
never a traceback: the library's typed errors, a Redis that cannot be reached (named, without its
password), and file errors. One module per concern:

- ``demo``: agent processes share one conversation (``demo.py``)
- ``ls``, ``show``, ``tail``, ``delete``: look at what is stored (``browse.py``)
- ``stats``: counts and memory (``stats.py``)
- ``context``, ``fork``: what fits a token budget, and branching (``window.py``)
- ``export``, ``import``: JSON Lines out and in (``transfer.py``)
- ``sync``, ``migrate``: the durable tier (``durable.py``)

Shared pieces (settings, opening the store, consoles, formatting) are in ``common.py``, the
rendering of messages in ``render.py``. A command's module is imported when the command runs (or
``--help`` lists them): ``ls`` or ``stats --json`` in a pipe never import Rich, the demo's
multiprocessing or the durable tier, a tenth of their start-up.
"""

from __future__ import annotations

import importlib
from typing import Any

import click
import redis.exceptions

from .. import SessionError, StoreUnavailable
from .common import DEFAULT_URL, Settings, open_store, redacted

__all__ = ["Settings", "main", "open_store", "render_block"]

_COMMANDS = {  # name: (module, attribute), in the order --help lists them
    "demo": ("demo", "demo"),
    "ls": ("browse", "ls"),
    "show": ("browse", "show"),
    "tail": ("browse", "tail"),
    "context": ("window", "context"),
    "fork": ("window", "fork"),
    "export": ("transfer", "export"),
    "import": ("transfer", "import_"),
    "stats": ("stats", "stats"),
    "delete": ("browse", "delete"),
    "sync": ("durable", "sync"),
    "migrate": ("durable", "migrate"),
    "rebind": ("durable", "rebind"),
}


def __getattr__(name: str) -> Any:
    if name == "render_block":  # kept importable from here; Rich only when asked for
        from .render import render_block

        return render_block
    raise AttributeError(name)


class _Group(click.Group):
    """Turns the library's typed errors, Redis's and the system's into one readable line (exit 1)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(_COMMANDS)  # in this order, not alphabetical

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in _COMMANDS:
            return None
        module, attribute = _COMMANDS[name]
        command: click.Command = getattr(importlib.import_module(f".{module}", __name__), attribute)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except StoreUnavailable as exc:
            cause = exc.__cause__ or exc
            raise click.ClickException(f"cannot reach Redis at {_url(ctx)}: {cause}") from exc
        except SessionError as exc:
            raise click.ClickException(str(exc)) from exc
        except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException) as exc:
            # Only what the store does not send itself (a watch's subscription) gets here.
            raise click.ClickException(f"Redis at {_url(ctx)}: {exc}") from exc
        except BrokenPipeError:
            raise  # the reader went away (``| head``): Click exits quietly
        except OSError as exc:
            raise click.ClickException(str(exc)) from exc


def _url(ctx: click.Context) -> str:
    settings = ctx.obj
    return redacted(settings.url or DEFAULT_URL) if isinstance(settings, Settings) else DEFAULT_URL


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--url",
    envvar="REDIS_URL",
    help=f"Redis URL (default: $REDIS_URL, else {DEFAULT_URL}; demo starts its own).",
)
@click.option("--prefix", default="rs", show_default=True, help="Key prefix of the sessions.")
@click.option("--cluster", is_flag=True, help="--url names a node of a Redis Cluster.")
@click.option(
    "--encryption",
    metavar="MODULE:NAME",
    envvar="REDIS_SESSIONS_ENCRYPTION",
    help="The keyring of encrypted sessions: an Encryption object (or a function returning one) "
    "in your own code, so show, tail, export, import, context and fork read sealed messages.",
)
@click.version_option(package_name="redis-sessions")
@click.pass_context
def main(ctx: click.Context, url: str | None, prefix: str, cluster: bool, encryption: str | None) -> None:
    """Keep LLM-agent conversations in Redis, shared safely by many processes.

    Every listing command (ls, show, tail, stats) takes --json for scripts; export writes JSON Lines.
    """
    ctx.obj = Settings(url or None, prefix, cluster, encryption or None)
