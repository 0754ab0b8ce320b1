"""Loopback attack clients for the security and soak tests: plain blocking sockets, so the
attacks cost the test process little and leave the exporter's own figures readable."""

from __future__ import annotations

import base64
import contextlib
import http.client
import select
import socket
import threading
import time
from collections.abc import Callable

# As an attacker would send it: a request head that never ends, of headers just under
# aiohttp's own limit (8190 bytes), 120 of them (under its 128): about 1 MiB a connection.
BIG_HEADER = b"X-Padding: " + b"v" * 7980 + b"\r\n"
UNFINISHED_HEAD = b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + BIG_HEADER * 120
# The same within the exporter's own limits on a head (4 KiB a line, 32 lines): 124 KB.
UNFINISHED_HEAD_OF_ALLOWED_LINES = (
    b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + (b"X-Padding: " + b"v" * 3987 + b"\r\n") * 31
)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def http_get(
    port: int, path: str = "/metrics", authorization: str | None = None, timeout: float = 10.0
) -> tuple[int | None, float]:
    """(status, seconds) of a GET on a new connection; status None when there was no answer."""
    headers = {"Authorization": authorization} if authorization else {}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    started = time.monotonic()
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status, time.monotonic() - started
    except OSError:
        return None, time.monotonic() - started
    finally:
        connection.close()


def http_status(port: int, path: str = "/metrics", timeout: float = 10.0) -> int | None:
    return http_get(port, path, timeout=timeout)[0]


def connect(port: int, count: int, payload: bytes = b"") -> list[socket.socket]:
    """`count` connections, each sent `payload` (nothing: idle connections)."""
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sockets.append(sock)
        if payload:
            with contextlib.suppress(OSError):  # closed on us: what the exporter should do
                sock.sendall(payload)
    return sockets


def connect_watching_memory(
    port: int, count: int, payload: bytes, rss_bytes: Callable[[], int]
) -> tuple[list[socket.socket], int]:
    """`connect(port, count, payload)`, and the highest of `rss_bytes()` meanwhile."""
    peak = rss_bytes()
    sockets = []
    for done in range(count):
        sockets += connect(port, 1, payload)
        if done % 25 == 0:
            peak = max(peak, rss_bytes())
    for _ in range(5):
        time.sleep(0.1)
        peak = max(peak, rss_bytes())
    return sockets, peak


def closed_by_server(sock: socket.socket) -> bool:
    # Nothing is sent to an idle connection but its end (or a refusal before it).
    # poll, not select: select() takes no descriptor numbered past 1023.
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def close_all(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


class Slowloris(threading.Thread):
    """Connections that send a request head one short header line at a time, forever."""

    def __init__(self, port: int, count: int, every: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.sockets = connect(port, count, b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        self._every = every
        self._stopping = threading.Event()
        self.cut_off = 0

    def run(self) -> None:
        alive = list(self.sockets)
        while alive and not self._stopping.wait(self._every):
            for sock in list(alive):
                try:
                    sock.sendall(b"X-Slow: a\r\n")
                except OSError:
                    alive.remove(sock)
                    self.cut_off += 1

    def stop(self) -> None:
        self._stopping.set()
        self.join()
        close_all(self.sockets)


def password_flood(
    port: int, count: int, user: str = "prometheus", first: int = 0
) -> list[int | None]:
    """`count` logins with different wrong passwords (numbered from `first`), all sent before
    any answer is read; the status of each (None: closed without an answer)."""
    sockets = []
    for i in range(first, first + count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sockets.append(sock)
        request = (
            f"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            f"Authorization: {basic(user, f'guess-{i}')}\r\n\r\n"
        )
        with contextlib.suppress(OSError):
            sock.sendall(request.encode())
    statuses: list[int | None] = []
    for sock in sockets:
        try:
            line = sock.recv(12)
            statuses.append(int(line[9:12]) if line.startswith(b"HTTP/1.") else None)
        except (OSError, ValueError):
            statuses.append(None)
        sock.close()
    return statuses


def pipeline_without_reading(port: int, request: bytes, times: int) -> socket.socket:
    """A connection with a 2 KiB receive buffer sending `times` copies of `request` at once
    (as many as the exporter's buffers take) and never reading an answer."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    with contextlib.suppress(OSError):
        sock.send(request * times)
    return sock


class PipelineFlood(threading.Thread):
    """`count` connections pipelining without reading, then one more every `every` seconds
    (to `limit` in all), as an attacker keeps taking any connection slot that comes free."""

    def __init__(
        self, port: int, request: bytes, times: int, count: int, limit: int, every: float
    ) -> None:
        super().__init__(daemon=True)
        self._port = port
        self._pipeline = (request, times)
        self.sockets = [self._open() for _ in range(count)]
        self._limit = limit
        self._every = every
        self._stopping = threading.Event()

    def _open(self) -> socket.socket:
        return pipeline_without_reading(self._port, *self._pipeline)

    def run(self) -> None:
        while len(self.sockets) < self._limit and not self._stopping.wait(self._every):
            self.sockets.append(self._open())

    def stop(self) -> None:
        self._stopping.set()
        self.join()
        close_all(self.sockets)


def reset_by_server(sock: socket.socket) -> bool:
    """Whether the exporter reset this connection, read from the kernel's state of it: reading
    the socket to find out would take the answers it is meant to leave unread."""
    tcp_close = 7  # TCP_CLOSE in linux/tcp_states.h, after a reset
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == tcp_close
