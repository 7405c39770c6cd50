"""``redis-sessions sync`` and ``migrate``: the durable tier's worker and the schema upgrade."""

from __future__ import annotations

import signal
import threading
from typing import TYPE_CHECKING

import click

from .common import Settings, make_console, open_store

if TYPE_CHECKING:
    from ..writebehind import SyncWorker

__all__ = ["migrate", "sync"]


@click.command(short_help="Deliver pending writes of durable sessions to the backing store.")
@click.option("--backing", required=True, help="sqlite:///path.db, postgresql://..., or dir:///path")
@click.option("--once", is_flag=True, help="Deliver everything pending now (a flush), then exit.")
@click.option(
    "--interval", default=0.1, show_default=True, type=click.FloatRange(0.001), help="Seconds between passes."
)
@click.option(
    "--report", default=5.0, show_default=True, type=click.FloatRange(0.1), help="Seconds between lag lines."
)
@click.pass_obj
def sync(settings: Settings, backing: str, once: bool, interval: float, report: float) -> None:
    """Run the write-behind worker on its own (a tiered store also runs one in a thread).

    Several may run at once, and alongside the tiered stores' own: they only repeat each other's
    work. Stop it with Ctrl-C or SIGTERM; what it had not delivered stays pending in Redis.
    """
    from ..persistence import adapter_from_url
    from ..writebehind import SyncWorker

    if settings.url is None:
        raise click.ClickException("sync needs --url (or REDIS_URL): the Redis to deliver from")
    console = make_console(stderr=True)
    try:
        adapter = adapter_from_url(backing)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    with open_store(settings.url, settings.prefix, cluster=settings.cluster) as store, adapter:
        worker = SyncWorker(store, adapter)
        if once:
            worker.flush()
            console.print(f"delivered {worker.delivered} message(s); lag now {_lag(worker)}")
            return
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        worker.start(interval)
        try:
            while not stop.wait(report):
                console.print(f"delivered {worker.delivered} message(s); lag {_lag(worker)}")
        except KeyboardInterrupt:
            pass
        finally:
            worker.stop()


def _lag(worker: SyncWorker) -> str:
    lag = worker.lag()
    return f"{lag.sessions} session(s), {lag.messages} message(s), {lag.seconds:.2f} s behind"


@click.command(short_help="Upgrade stored sessions to this version's schema, in place.")
@click.option("--backing", help="Also the backing store: sqlite:///path.db, postgresql://..., dir:///path")
@click.pass_obj
def migrate(settings: Settings, backing: str | None) -> None:
    """Bring every session in Redis (and in the backing store) to this version's schema.

    Online and resumable: each session is upgraded on its own, one that is appended to meanwhile
    is upgraded again, and sessions already current are only read, so it can run again after an
    interruption. A version newer than this code is reported, never touched. Exits 1 if any
    session could not be upgraded.
    """
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from .. import migrate as bulk
    from ..persistence import adapter_from_url

    if settings.url is None:
        raise click.ClickException("migrate needs --url (or REDIS_URL)")
    console = make_console(stderr=True)
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}: {task.completed} sessions"),
        TimeElapsedColumn(),
    )
    results: list[tuple[str, bulk.Migrated]] = []
    with Progress(*columns, console=console, disable=not console.is_terminal) as progress:
        with open_store(settings.url, settings.prefix, cluster=settings.cluster, cache_messages=0) as store:
            task = progress.add_task("Redis")
            results.append(("Redis", bulk.upgrade_redis(store, lambda _: progress.advance(task))))
        if backing is not None:
            try:
                adapter = adapter_from_url(backing)
            except ValueError as exc:
                raise click.ClickException(str(exc)) from exc
            with adapter:
                task = progress.add_task("backing store")
                results.append(
                    ("backing store", bulk.upgrade_backing(adapter, lambda _: progress.advance(task)))
                )
    failures = 0
    for where, result in results:
        click.echo(
            f"{where}: {result.seen} sessions, {result.upgraded} upgraded, {len(result.failed)} failed"
        )
        for sid, reason in result.failed:
            click.echo(f"  {sid}: {reason}", err=True)
        failures += len(result.failed)
    if failures:
        raise SystemExit(1)
