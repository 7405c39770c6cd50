"""Throw-away Redis servers on loopback, for the demo, the tests and the benchmarks.

``RedisServer`` runs a real ``redis-server`` binary on a free port with nothing kept on disk unless
asked; ``embedded_redis()`` prefers that and falls back to fakeredis's TCP server (the ``embedded``
extra) on a machine without ``redis-server``. Both are context managers yielding a ``redis://`` URL.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import redis.exceptions

__all__ = ["RedisServer", "embedded_redis", "free_port"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _ping(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            reply = sock.recv(16)
            return reply.startswith((b"+PONG", b"-NOAUTH"))  # NOAUTH: up, with a password
    except OSError:
        return False


class RedisServer:
    """A ``redis-server`` process on loopback, started and stopped by this object.

    ``extra_args`` are passed on the command line (``["--appendonly", "yes"]``); ``directory``
    is its working directory (a fresh temporary one by default, removed on ``stop``).
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        extra_args: Sequence[str] = (),
        directory: str | Path | None = None,
        binary: str | None = None,
        startup_timeout: float = 10.0,
    ) -> None:
        found = binary or shutil.which("redis-server")
        if found is None:
            raise FileNotFoundError("redis-server is not on PATH (apt-get install redis-server)")
        self.binary = found
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.extra_args = list(extra_args)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.directory = Path(directory) if directory else None
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> RedisServer:
        """Start the server and wait until it answers PING (``RuntimeError`` if it does not)."""
        if self.directory is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="redis-sessions-")
            self.directory = Path(self._tmp.name)
        args = [self.binary, "--port", str(self.port), "--bind", self.host, "--save", ""]
        args += ["--appendonly", "no", "--dir", str(self.directory), *self.extra_args]
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.startup_timeout
        while not _ping(self.host, self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                output = self._stop_process()
                raise RuntimeError(f"redis-server on port {self.port} did not start:\n{output}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s) and remove its temporary directory."""
        self._stop_process()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp, self.directory = None, None

    def _stop_process(self) -> str:
        process, self.process = self.process, None
        if process is None:
            return ""
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        out = process.stdout.read() if process.stdout else b""
        if process.stdout:
            process.stdout.close()
        return out.decode("utf-8", "replace")

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@contextlib.contextmanager
def embedded_redis() -> Iterator[str]:
    """A Redis for this process's lifetime: ``redis-server`` if installed, else fakeredis over TCP."""
    if shutil.which("redis-server"):
        with RedisServer() as server:
            yield server.url
        return
    try:
        from fakeredis import TcpFakeServer
    except ImportError:
        raise RuntimeError(
            "no redis-server on PATH and fakeredis is not installed:"
            " install redis-server, or pip install 'redis-sessions[embedded]', or set REDIS_URL"
        ) from None
    port = free_port()
    fake = TcpFakeServer(("127.0.0.1", port), server_type="redis", server_version=(7, 0))
    _answer_errors_without_closing(fake)
    thread = threading.Thread(target=fake.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        fake.shutdown()
        fake.server_close()


def _answer_errors_without_closing(server: Any) -> None:
    """Make fakeredis's TCP server keep a connection open after an error reply, as Redis does.

    Its handler (fakeredis 2.40) answers an error reply and then closes the connection, so redis-py's
    ``Script`` cannot recover from NOSCRIPT: the ``SCRIPT LOAD`` it sends next usually lands on the
    closed socket, and the first script call on a fresh server fails (fakeredis-py issue #432). Here the
    handler's connection returns Redis errors as replies instead of raising them.
    """
    base = server.RequestHandlerClass

    class Handler(base):  # type: ignore[misc,valid-type]
        def setup(self) -> None:
            super().setup()
            client = getattr(self, "current_client", None)
            if client is None:  # another fakeredis layout: leave it as it is
                return
            read = client.read_response

            def read_response(**kwargs: Any) -> Any:
                try:
                    return read(**kwargs)
                except redis.exceptions.ResponseError as exc:
                    return exc  # the handler writes an exception as a RESP error reply

            client.read_response = read_response

    server.RequestHandlerClass = Handler
