"""Real network faults for the retry tests: a TCP proxy in front of Redis that loses replies.

``LossyProxy`` forwards bytes both ways. When armed with ``lose_replies(n)``, the next ``n``
EVALSHA commands still reach Redis and run, but the proxy closes the client's connection instead
of passing the reply on: the client sees a dropped connection after its write was applied, the
case that makes a blindly retried, non-idempotent write run twice.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType


class LossyProxy:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lost = 0
        self._to_lose = 0
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._closed = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def lose_replies(self, count: int) -> None:
        """Lose the replies to the next ``count`` EVALSHA commands (the commands still run)."""
        with self._lock:
            self._to_lose = count

    def start(self) -> LossyProxy:
        self._spawn(self._accept)
        return self

    def close(self) -> None:
        self._closed = True
        _shut(self.listener)  # shutdown() wakes the thread blocked in accept()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)
        for thread in self._threads:
            thread.join(5)

    def __enter__(self) -> LossyProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:  # Redis is down (restarting): the client sees a dropped connection
                _shut(client)
                continue
            with self._lock:
                self._sockets += [client, upstream]
            doomed = threading.Event()
            self._spawn(self._requests, client, upstream, doomed)
            self._spawn(self._replies, upstream, client, doomed)

    def _requests(self, client: socket.socket, upstream: socket.socket, doomed: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                with self._lock:
                    if self._to_lose and b"EVALSHA" in data.upper():
                        self._to_lose -= 1
                        doomed.set()
                upstream.sendall(data)
        _shut(upstream)

    def _replies(self, upstream: socket.socket, client: socket.socket, doomed: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := upstream.recv(65536):
                if doomed.is_set():
                    with self._lock:
                        self.lost += 1
                    break
                client.sendall(data)
        _shut(client)
        _shut(upstream)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
