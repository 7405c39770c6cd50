"""A private PostgreSQL for the tests: ``initdb`` and ``pg_ctl`` in a temporary directory, on a free port.

The server listens on 127.0.0.1 and on a Unix socket inside its own directory, trusts every local
connection, and runs with fsync off (its data is thrown away), so it starts in about a second and
no other server on the machine is touched. ``initdb`` refuses to run as root: as root the binaries
run as the ``postgres`` user (``runuser``), who is given the directory. Readiness is ``pg_ctl -w``,
which polls the server; nothing sleeps.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from redis_sessions.embedded import free_port

__all__ = ["PostgresServer", "find_binaries", "run_as"]

_PORT_ATTEMPTS = 5
_LOG_LINES = 20


def find_binaries() -> tuple[str, str] | None:
    """``initdb`` and ``pg_ctl``: from PATH, else from the newest ``/usr/lib/postgresql/*/bin``."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return initdb, pg_ctl

    def version(path: str) -> int:
        found = re.search(r"/(\d+)/bin$", path)
        return int(found.group(1)) if found else 0

    for bindir in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        initdb, pg_ctl = os.path.join(bindir, "initdb"), os.path.join(bindir, "pg_ctl")
        if os.access(initdb, os.X_OK) and os.access(pg_ctl, os.X_OK):
            return initdb, pg_ctl
    return None


def run_as() -> tuple[list[str], pwd.struct_passwd | None] | None:
    """The command prefix that runs PostgreSQL's binaries as a user they accept, and that user.

    ``([], None)`` when not root; ``runuser -u postgres --`` as root; ``None`` as root when there is
    no ``postgres`` user or no ``runuser`` (then no private server can be started).
    """
    if os.geteuid() != 0:
        return [], None
    runuser = shutil.which("runuser")
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        return None
    if runuser is None:
        return None
    return [runuser, "-u", user.pw_name, "--"], user


class PostgresServer:
    """One private PostgreSQL server; ``start`` records how long it took in ``startup_seconds``."""

    def __init__(self, binaries: tuple[str, str], *, startup_timeout: float = 30.0) -> None:
        found = run_as()
        if found is None:
            raise RuntimeError("running as root without a 'postgres' user and runuser: initdb would refuse")
        self.prefix, self.user = found
        self.initdb, self.pg_ctl = binaries
        self.startup_timeout = startup_timeout
        self.directory: Path | None = None
        self.port = 0
        self.startup_seconds = 0.0

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.prefix, *args],
            capture_output=True,
            text=True,
            timeout=self.startup_timeout + 10,
            check=False,
        )

    def _log(self) -> str:
        assert self.directory is not None
        try:
            lines = (self.directory / "server.log").read_text("utf-8", "replace").splitlines()
        except FileNotFoundError:
            return ""
        return "\n".join(lines[-_LOG_LINES:])

    def start(self) -> Self:
        began = time.monotonic()
        self.directory = Path(tempfile.mkdtemp(prefix="rs-pg-"))
        try:
            if self.user is not None:
                os.chown(self.directory, self.user.pw_uid, self.user.pw_gid)
            data = str(self.directory / "data")
            done = self._run(
                self.initdb, "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"
            )
            if done.returncode != 0:
                raise RuntimeError(f"initdb failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
            for _ in range(_PORT_ATTEMPTS):
                self.port = free_port()
                options = (
                    f"-k {self.directory} -h 127.0.0.1 -p {self.port}"
                    " -F -c full_page_writes=off -c synchronous_commit=off"
                )
                log = str(self.directory / "server.log")
                timeout = str(int(self.startup_timeout))
                done = self._run(
                    self.pg_ctl, "-D", data, "-l", log, "-o", options, "-w", "-t", timeout, "start"
                )
                if done.returncode == 0:
                    self.startup_seconds = time.monotonic() - began
                    return self
                if "could not bind" not in self._log():  # lost the port to someone else: try another
                    break
            raise RuntimeError(f"pg_ctl start failed ({done.returncode}): {done.stderr}\n{self._log()}")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server at once (its data is thrown away) and remove its directory."""
        if self.directory is None:
            return
        data = self.directory / "data"
        if (data / "postmaster.pid").exists():
            self._run(self.pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
