"""``redis-sessions sync`` and ``migrate``: the durable tier's worker and the schema upgrade."""

from __future__ import annotations

import signal
import threading
from typing import TYPE_CHECKING

import click

from .common import Settings, load_encryption, make_console, open_store

if TYPE_CHECKING:
    from ..writebehind import SyncWorker

__all__ = ["migrate", "rebind", "sync"]


@click.command(short_help="Deliver pending writes of durable sessions to the backing store.")
@click.option("--backing", required=True, help="sqlite:///path.db, postgresql://..., or dir:///path")
@click.option("--once", is_flag=True, help="Deliver everything pending now (a flush), then exit.")
@click.option(
    "--interval", default=0.1, show_default=True, type=click.FloatRange(0.001), help="Seconds between passes."
)
@click.option(
    "--report", default=5.0, show_default=True, type=click.FloatRange(0.1), help="Seconds between lag lines."
)
@click.option(
    "--backlog",
    default=10_000,
    show_default=True,
    type=click.IntRange(1),
    help="Warn when more sessions than this wait in this worker's slot groups.",
)
@click.pass_obj
def sync(settings: Settings, backing: str, once: bool, interval: float, report: float, backlog: int) -> None:
    """Run the write-behind worker on its own (a tiered store also runs one in a thread).

    Several may run at once, on any hosts, and alongside the tiered stores' own: they split the
    slots between them (64 groups, leased for a few seconds at a time), so each added worker adds
    throughput; each line says how many groups this one holds and its backlog. The prefix is bound
    to one backing record: a worker of another is refused (see ``rebind``). Stop it with Ctrl-C or
    SIGTERM; what it had not delivered stays pending in Redis, and its groups pass on.
    """
    from ..errors import BackingMismatch
    from ..persistence import adapter_from_url
    from ..writebehind import SyncWorker

    if settings.url is None:
        raise click.ClickException("sync needs --url (or REDIS_URL): the Redis to deliver from")
    console = make_console(stderr=True)
    stop = threading.Event()
    if not once:  # as early as can be: a SIGTERM while it connects still stops it cleanly
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        adapter = adapter_from_url(backing)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    with open_store(settings.url, settings.prefix, cluster=settings.cluster) as store, adapter:
        try:
            worker = SyncWorker(store, adapter, backlog=backlog).bind()
        except BackingMismatch as exc:
            raise click.ClickException(str(exc)) from exc
        if once:
            worker.flush()
            console.print(f"delivered {worker.delivered} message(s); lag now {_lag(worker)}")
            return
        worker.start(interval)
        try:
            while not stop.wait(report):
                console.print(
                    f"delivered {worker.delivered} message(s); this worker: {len(worker.groups)}/64 slot"
                    f" groups, backlog {worker.backlog} session(s); lag {_lag(worker)}"
                )
        except KeyboardInterrupt:
            pass
        finally:
            worker.stop()


def _lag(worker: SyncWorker) -> str:
    from ..errors import SessionError

    try:
        lag = worker.lag()
    except SessionError as exc:  # Redis unreachable a while: the passes wait it out, so does the report
        return f"lag unknown ({exc})"
    return f"{lag.sessions} session(s), {lag.messages} message(s), {lag.seconds:.2f} s behind"


@click.command(short_help="Upgrade stored sessions to this version's schema, or re-encrypt them.")
@click.option("--backing", help="Also the backing store: sqlite:///path.db, postgresql://..., dir:///path")
@click.option("--rekey", is_flag=True, help="Re-encrypt every message with its session's current key.")
@click.option(
    "--encryption",
    metavar="MODULE:NAME",
    help="With --rekey: where the keyring is, an Encryption object (or a function returning one); "
    "the global --encryption when not given.",
)
@click.pass_obj
def migrate(settings: Settings, backing: str | None, rekey: bool, encryption: str | None) -> None:
    """Bring every session in Redis (and in the backing store) to this version's schema; with
    --rekey, seal every message under its session's current key instead (messages written before
    encryption was switched on, or under an older key).

    Online and resumable: each session is upgraded on its own, one that is appended to meanwhile
    is upgraded again (or, rekeying, reported for the next run), and sessions already current are
    only read, so it can run again after an interruption. A version newer than this code is
    reported, never touched. Exits 1 if any session could not be upgraded.
    """
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from .. import migrate as bulk
    from ..persistence import adapter_from_url

    if settings.url is None:
        raise click.ClickException("migrate needs --url (or REDIS_URL)")
    if encryption is not None and not rekey:
        raise click.ClickException("migrate's --encryption MODULE:NAME goes with --rekey")
    where = encryption or settings.encryption  # the global one reads sealed sessions to upgrade them
    if rekey and where is None:
        raise click.ClickException("--rekey needs --encryption MODULE:NAME (the keyring to seal with)")
    keys = None if where is None else load_encryption(where)
    console = make_console(stderr=True)
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}: {task.completed} sessions"),
        TimeElapsedColumn(),
    )
    results: list[tuple[str, bulk.Migrated]] = []
    with Progress(*columns, console=console, disable=not console.is_terminal) as progress:
        options = {"cache_messages": 0, "encryption": keys}
        with open_store(settings.url, settings.prefix, cluster=settings.cluster, **options) as store:
            task = progress.add_task("Redis")
            run = bulk.rekey_redis if rekey else bulk.upgrade_redis
            results.append(("Redis", run(store, lambda _: progress.advance(task))))
            codec = store.transport.core.codec
        if backing is not None:
            try:
                adapter = adapter_from_url(backing)
            except ValueError as exc:
                raise click.ClickException(str(exc)) from exc
            with adapter:
                task = progress.add_task("backing store")
                advance = lambda _: progress.advance(task)  # noqa: E731
                done = (
                    bulk.rekey_backing(adapter, keys, codec, advance)
                    if rekey and keys is not None
                    else bulk.upgrade_backing(adapter, advance)
                )
                results.append(("backing store", done))
    failures = 0
    for where, result in results:
        verb = "rekeyed" if rekey else "upgraded"
        click.echo(f"{where}: {result.seen} sessions, {result.upgraded} {verb}, {len(result.failed)} failed")
        for sid, reason in result.failed:
            click.echo(f"  {sid}: {reason}", err=True)
        failures += len(result.failed)
    if failures:
        raise SystemExit(1)


@click.command(short_help="Move the durable sessions to another backing record (online, resumable).")
@click.option("--from", "old", required=True, help="The record the prefix is bound to now.")
@click.option(
    "--to", "new", required=True, help="The record to move to: sqlite:///..., postgresql://..., dir:///..."
)
@click.pass_obj
def rebind(settings: Settings, old: str, new: str) -> None:
    """Copy every session of the --from record to the --to record and bind the prefix to --to.

    Online: workers and stores of the old record stop delivering and reading through it on their
    next pass; nothing they had not delivered is lost (it stays pending in Redis, and the new
    record's workers deliver it). Resumable: run it again after an interruption. Start the
    workers on the new record (``sync --backing NEW``, or stores opened with it) afterwards.
    """
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from .. import rebind as bulk
    from ..errors import SessionError
    from ..persistence import adapter_from_url

    if settings.url is None:
        raise click.ClickException("rebind needs --url (or REDIS_URL)")
    try:
        source, target = adapter_from_url(old), adapter_from_url(new)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    console = make_console(stderr=True)
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}: {task.completed} sessions"),
        TimeElapsedColumn(),
    )
    with (
        source,
        target,
        open_store(settings.url, settings.prefix, cluster=settings.cluster, cache_messages=0) as store,
        Progress(*columns, console=console, disable=not console.is_terminal) as progress,
    ):
        tasks = {
            "copy": progress.add_task("copied from the old record"),
            "rebind": progress.add_task("rebound in Redis"),
        }
        try:
            done = bulk.rebind(store, source, target, lambda phase, _: progress.advance(tasks[phase]))
        except SessionError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(
        f"prefix {settings.prefix!r} bound to {target.record_id}: {done.copied} session(s) copied,"
        f" {done.moved} rebound in Redis ({done.passes} pass(es))"
    )
