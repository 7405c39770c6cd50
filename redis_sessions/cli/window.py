"""The conversation as a model would see it, and branching it: ``context`` and ``fork``.

``context`` prints what ``store.context(id, max_tokens)`` returns (the summary, then the newest
messages that fit); ``fork`` prints the id of the new session ``store.fork`` made.
"""

from __future__ import annotations

import uuid

import click

from .common import SESSION_ID, Settings, connect, emit_json, make_console
from .render import print_message

__all__ = ["context", "fork"]


@click.command(short_help="Print what fits a token budget: the summary, then the newest messages.")
@click.argument("session_id", type=SESSION_ID)
@click.option("--max-tokens", required=True, type=click.IntRange(0), help="The budget, in tokens.")
@click.option("--reserve", default=0, show_default=True, type=click.IntRange(0), help="Tokens kept back.")
@click.option("--json", "as_json", is_flag=True, help="Print the Context as one JSON object.")
@click.pass_obj
def context(settings: Settings, session_id: uuid.UUID, max_tokens: int, reserve: int, as_json: bool) -> None:
    """Print the context of SESSION_ID for a window of --max-tokens (less --reserve): its stored
    summary, then the newest messages after it that fit, with their stored token counts."""
    with connect(settings) as store:
        window = store.context(session_id, max_tokens, reserve=reserve)
    if as_json:
        emit_json(window)
        return
    console = make_console()
    if window.summary is not None:
        console.print(f"summary of seq 1..{window.first_seq - 1}", style="dim")
        print_message(console, 0, window.summary)
    for n, (message, count) in enumerate(zip(window.messages, window.counts, strict=True)):
        print_message(console, window.first_seq + n, message, str(count))
    kept = f"{len(window.messages)} of {window.seq} message(s)"
    make_console(stderr=True).print(f"{window.tokens:,} tokens: {kept}", style="dim")


@click.command(short_help="Branch a conversation into a new session.")
@click.argument("session_id", type=SESSION_ID)
@click.option("--at", "at_seq", type=click.IntRange(0), help="Copy messages 1..SEQ (default: all).")
@click.option("--new-id", type=SESSION_ID, help="The new session's id (a retry with it copies once).")
@click.pass_obj
def fork(settings: Settings, session_id: uuid.UUID, at_seq: int | None, new_id: uuid.UUID | None) -> None:
    """Fork SESSION_ID: a new session with its messages up to --at, its settings and metadata; print
    the new session's id."""
    with connect(settings) as store:
        click.echo(str(store.fork(session_id, at_seq=at_seq, new_id=new_id)))
