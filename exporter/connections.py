"""What one HTTP client can hold before it has logged in (docs/security.md, "Limits on clients").

aiohttp on its own keeps every connection it accepts, for an hour when idle, buffers up to
128 header lines of 8 KiB each per request head and never gives up on a head that is still
arriving. Here:

- at most `max_connections` are open, counted from accept() on, TLS handshake included.
  When one more arrives, one is closed to make room, the
  first of: the one idle longest that has not yet been let past the web config's checks
  (basic auth; without it, any request gets past), the one busy longest on requests that have
  not got past the checks, the one idle longest of those that have, the one longest stalled
  on a client that does not read its answers. A flood from clients without the password,
  however busy it keeps its connections, pushes out only its own kind, and a logged-in scraper
  arriving afterwards gets in. Only when every connection is busy on requests that got past
  the checks is the newcomer refused, at once, with a 503;
- an answer the client does not take (the socket's and 64 KiB of our buffers full) must
  start moving again within `write_timeout`, or the connection is cut off;
- a connection gets at most 32 requests parsed ahead of the one being answered (aiohttp's
  bound on pipelining): reading pauses until they are answered;
- the first request head must be complete `read_header_timeout` after the connection is made
  (and a TLS handshake done within as long), and a connection is closed after `idle_timeout`
  without a request (aiohttp's keep-alive timer, which also ends a later head that is still
  arriving);
- request heads are limited to what Prometheus, a browser and curl send, far below aiohttp's
  defaults, and heads still arriving hold `UNFINISHED_HEADS_BUDGET` bytes in all, across
  connections: past it, the head begun longest ago is cut off.

The connection cap stays below the process's file descriptor limit, whose soft value is
raised to the hard one at start-up: past that limit, accept() fails and nothing is served.
Should it fail anyway, accepting backs off (`Listener`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import resource
import socket
import ssl
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.streams import StreamReader

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

DEFAULT_MAX_CONNECTIONS = 512
DEFAULT_READ_HEADER_TIMEOUT = 10.0
# Longer than the usual scrape interval (15 s to 1 min), so Prometheus keeps its connection.
DEFAULT_IDLE_TIMEOUT = 75.0
# Prometheus reads a scrape as it comes; an answer stuck this long has no one reading it.
DEFAULT_WRITE_TIMEOUT = 10.0
# The longest request line is `GET /probe?account=NAME`; the longest header, Authorization
# (72 bytes of password at most) or a browser's Accept and User-Agent.
MAX_LINE_SIZE = 4096
MAX_FIELD_SIZE = 4096
MAX_HEADERS = 32
# A whole request head, as Node.js allows (aiohttp sets none): 32 lines of 4 KiB would be
# 128 KiB, which the parser holds twice over (bytes and text) until the head is done.
MAX_HEAD_SIZE = 16 * 1024
# Unfinished heads of all connections together; past it, the oldest are cut off. A head
# costs its parser about twice its size: 8 MiB at most for this, whatever the cap.
UNFINISHED_HEADS_BUDGET = 4 << 20
HEAD_END = b"\r\n\r\n"
HEAD_TOO_LARGE_TEXT = b"request head too large\n"
HEAD_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: %d\r\n"
    b"Connection: close\r\n"
    b"\r\n%s"
) % (len(HEAD_TOO_LARGE_TEXT), HEAD_TOO_LARGE_TEXT)
# Descriptors the process needs beside client connections: log, config and key files,
# listening sockets, the event loop's own, the demo's in-process simulator (both ends of
# each of its connections); upstream connections are counted apart.
RESERVED_FILE_DESCRIPTORS = 128
MIN_CONNECTIONS = 16
REFUSAL_TEXT = b"too many connections (--web.max-connections)\n"
REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: %d\r\n"
    b"Connection: close\r\n"
    b"\r\n%s"
) % (len(REFUSAL_TEXT), REFUSAL_TEXT)
# Out of descriptors, asyncio logs each failed accept() with a traceback, in a tight loop.
ACCEPT_ERROR_LOG_INTERVAL = 10.0
# SO_LINGER on, for 0 s: close() resets the connection and drops what is still unsent.
LINGER_RESET = struct.pack("ii", 1, 0)
# Connections taken per readiness of a listening socket, before other work gets a turn.
ACCEPT_BATCH = 16
ACCEPT_MIN_BACKOFF = 0.005
ACCEPT_MAX_BACKOFF = 1.0
ACCEPT_RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    read_header_timeout: float = DEFAULT_READ_HEADER_TIMEOUT
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    write_timeout: float = DEFAULT_WRITE_TIMEOUT

    def runner_kwargs(self) -> dict[str, Any]:
        """aiohttp's own knobs for these limits (AppRunner passes them to every connection)."""
        return {
            "keepalive_timeout": self.idle_timeout,
            "max_line_size": MAX_LINE_SIZE,
            "max_field_size": MAX_FIELD_SIZE,
            "max_headers": MAX_HEADERS,
            # A client that hangs up stops its scrape: its slot and its wait are freed.
            "handler_cancellation": True,
        }


def raise_file_limit() -> int:
    """Raise the soft limit on open files to the hard one; the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as error:
            log.warning("cannot raise the open files limit", extra={"error": str(error)})
    return soft


def fit_to_file_limit(max_connections: int, upstream_connections: int, file_limit: int) -> int:
    """The connection cap, lowered if need be so accept() never runs out of descriptors."""
    room = file_limit - RESERVED_FILE_DESCRIPTORS - upstream_connections
    # Below a few, one slow client would shut out Prometheus: rather risk a failed accept()
    # (logged, and retried by asyncio) on a machine this short of descriptors.
    fitted = min(max_connections, max(MIN_CONNECTIONS, room))
    if fitted < max_connections:
        log.warning(
            "lowering --web.max-connections to fit the open files limit",
            extra={"max_connections": str(fitted), "open_files_limit": str(file_limit)},
        )
    return fitted


class Connection(web.RequestHandler):
    """One client connection: the server knows whether it is busy, whether it got past the
    web config's checks, when its head is due and whether the client reads its answers."""

    def __init__(self, manager: LimitedServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._limited = manager
        self._head_deadline: asyncio.TimerHandle | None = None
        self._write_deadline: asyncio.TimerHandle | None = None
        self.passed_checks = False
        # The accepted socket, until the connection is made (after its TLS handshake).
        self.accepted: socket.socket | None = None
        # Bytes received since the end of the last whole head, outside request bodies.
        self.unfinished_head = 0
        # The body of the last request, while it is still arriving.
        self._last_body: StreamReader | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.accepted = None
        if not self._limited.holds(self):
            # Pushed out to make room while its TLS handshake was finishing.
            self.cut_off()
            return
        self._head_deadline = self._loop.call_later(
            self._limited.limits.read_header_timeout, self._head_overdue
        )

    def connection_lost(self, exc: BaseException | None) -> None:
        self._limited.forget(self)
        self._cancel_head_deadline()
        self._cancel_write_deadline()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        self._write_deadline = self._loop.call_later(
            self._limited.limits.write_timeout, self._write_overdue
        )
        self._limited.stalled(self)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._cancel_write_deadline()
        self._limited.moving(self)

    def _cancel_write_deadline(self) -> None:
        if self._write_deadline is not None:
            self._write_deadline.cancel()
            self._write_deadline = None

    def _write_overdue(self) -> None:
        self._write_deadline = None
        log.debug("cutting off a connection whose client does not read its answers")
        self._limited.forget(self)
        self.cut_off()

    def cut_off(self) -> None:
        """Close now, whatever is still to be written: close() would wait for a client that
        may never read it, keeping the descriptor."""
        transport = self.transport
        self.force_close()
        if transport is None:
            if self.accepted is not None:
                # Still in its TLS handshake: asyncio owns the socket. Shut down, it reads
                # the end of the stream, gives up the handshake and closes it.
                with contextlib.suppress(OSError):
                    self.accepted.shutdown(socket.SHUT_RDWR)
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # A reset, not a FIN queued behind megabytes the client will not read: the
            # kernel would keep those, and the socket, for minutes after we let go of it.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        transport.abort()

    def mark_passed_checks(self) -> None:
        if not self.passed_checks:
            self.passed_checks = True
            self._limited.passed_checks(self)

    def data_received(self, data: bytes) -> None:
        heads = self._request_count
        body_before = raw_size(self._last_body)
        super().data_received(data)
        if self._request_count != heads:
            for message, _ in self._messages:
                error = getattr(message, "exc", None)
                if isinstance(error, BaseException):
                    # aiohttp keeps the parse error, whose traceback holds this call's frame,
                    # and with it the whole chunk just read (up to 256 KiB): a reference
                    # cycle, left for the garbage collector. A flood of bad requests would
                    # pile up hundreds of megabytes of them between collections.
                    error.__traceback__ = None
            self._cancel_head_deadline()
            self._limited.busy(self)
        if self._force_close or self._close:
            return
        self._count_unfinished_head(data, self._request_count != heads, body_before)
        if self.unfinished_head > MAX_HEAD_SIZE:
            self._head_too_large()

    def _count_unfinished_head(self, data: bytes, heads_ended: bool, body_before: int) -> None:
        """What is held of a head still arriving, from the bytes around it: aiohttp's parser
        tells neither where a head ended nor how much of the next it holds."""
        if heads_ended:
            last, body = self._messages[-1] if self._messages else (None, None)
            if body is not self._last_body:
                body_before = 0  # a new request's body: all of it came in this read
            self._last_body = body
            end = data.rfind(HEAD_END)
            if hasattr(last, "exc"):
                # A request aiohttp could not parse: it answers 400 and reads no further.
                unfinished = 0
            elif end >= 0:
                unfinished = len(data) - end - len(HEAD_END)
            else:
                # The end of the head straddled two reads (or this is aiohttp reparsing what
                # it had put aside): all of this read may be the next head.
                unfinished = len(data) or self.unfinished_head
        else:
            unfinished = self.unfinished_head + len(data)
        if self._last_body is not None and not self._last_body.is_eof():
            unfinished = 0  # in a request body: any next head starts after it
        else:
            # A body that ended in this read is no part of the head after it.
            unfinished = max(0, unfinished - (raw_size(self._last_body) - body_before))
            # Not kept past its end: it may hold what the client sent and no one read.
            self._last_body = None
        self.unfinished_head = unfinished
        self._limited.unfinished_head(self, unfinished)

    def _head_too_large(self) -> None:
        log.debug("closing a connection whose request head is too large")
        if self._request_in_progress or self._messages or self.transport is None:
            # Behind a request still being answered: no room for an answer of its own.
            self.cut_off()
            return
        self.transport.write(HEAD_TOO_LARGE)
        self.force_close()

    def _cancel_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    async def _handle_request(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super()._handle_request(*args, **kwargs)
        finally:
            if not self._messages:
                self._limited.idle(self)

    def _head_overdue(self) -> None:
        self._head_deadline = None
        if self._request_count == 0:
            log.debug("closing a connection that sent no request head in time")
            self.force_close()

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        error = kwargs.get("exc_info")
        if isinstance(error, HttpProcessingError):
            # A malformed or oversized request: the client's problem, answered with a 4xx.
            # One short line, and only at debug: anyone can send these, before logging in.
            log.debug(
                "bad request",
                extra={"status": str(error.code), "error": type(error).__name__},
            )
            return
        super().log_exception(*args, **kwargs)


class LimitedServer(web.Server):
    """aiohttp's server with a cap on open connections (see the module docstring)."""

    def __init__(self, limits: ConnectionLimits, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self.refused = 0
        self.evicted = 0
        self._open: set[Connection] = set()
        # Who makes room for a newcomer, in this order (`_next_to_make_room`); in each,
        # insertion order is the order they entered that state, so the first has been in it
        # longest. A connection busy on requests that got past the checks, with its answer
        # moving, is in none: it is never pushed out.
        self._idle_unchecked: dict[Connection, None] = {}
        self._busy_unchecked: dict[Connection, None] = {}
        self._idle_checked: dict[Connection, None] = {}
        self._stalled: dict[Connection, None] = {}
        # Bytes held of heads still arriving, in the order the heads began: the oldest is cut
        # off first when they hold too much together, and Prometheus's, sent whole in a
        # moment, is never the oldest.
        self._unfinished_heads: dict[Connection, int] = {}
        self.unfinished_head_bytes = 0
        self._refusals = RateLimitedLog("refusing connections: all busy", ACCEPT_ERROR_LOG_INTERVAL)

    def __call__(self) -> Connection:
        return Connection(self, loop=self._loop, **self._kwargs)

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def admit(self, connection: Connection) -> bool:
        """Count a connection just accepted, making room for it if need be; False when every
        connection is busy on requests that got past the checks."""
        if len(self._open) >= self.limits.max_connections:
            victim = self._next_to_make_room()
            if victim is None:
                self.refused += 1
                self._refusals.hit(max_connections=str(self.limits.max_connections))
                return False
            self.evicted += 1
            self.forget(victim)
            victim.cut_off()
        self._open.add(connection)
        self._idle_unchecked[connection] = None
        return True

    def holds(self, connection: Connection) -> bool:
        return connection in self._open

    def _next_to_make_room(self) -> Connection | None:
        for candidates in (
            self._idle_unchecked,
            self._busy_unchecked,
            # A logged-in client loses less to a new connection than to a broken answer.
            self._idle_checked,
            self._stalled,
        ):
            for connection in candidates:
                return connection
        return None

    def busy(self, connection: Connection) -> None:
        if connection not in self._open:
            return
        self._idle_unchecked.pop(connection, None)
        self._idle_checked.pop(connection, None)
        if not connection.passed_checks:
            self._busy_unchecked.setdefault(connection, None)

    def passed_checks(self, connection: Connection) -> None:
        # Busy on the request that got past them: out of reach until it is idle again.
        self._busy_unchecked.pop(connection, None)

    def idle(self, connection: Connection) -> None:
        if connection not in self._open:
            return
        self._busy_unchecked.pop(connection, None)
        if connection.passed_checks:
            self._idle_checked[connection] = None
        else:
            self._idle_unchecked[connection] = None

    def stalled(self, connection: Connection) -> None:
        if connection in self._open:
            self._stalled[connection] = None

    def moving(self, connection: Connection) -> None:
        self._stalled.pop(connection, None)

    def unfinished_head(self, connection: Connection, size: int) -> None:
        """Take note of what a connection now holds of a head still arriving."""
        if connection not in self._open:
            return
        self.unfinished_head_bytes += size - self._unfinished_heads.get(connection, 0)
        if size:
            self._unfinished_heads[connection] = size  # a head already there keeps its place
        else:
            self._unfinished_heads.pop(connection, None)
        while self.unfinished_head_bytes > UNFINISHED_HEADS_BUDGET:
            oldest = next(iter(self._unfinished_heads))
            log.debug("cutting off the oldest unfinished request head: too much held in all")
            self.forget(oldest)
            oldest.cut_off()

    def forget(self, connection: Connection) -> None:
        self.unfinished_head_bytes -= self._unfinished_heads.pop(connection, 0)
        self._open.discard(connection)
        self._idle_unchecked.pop(connection, None)
        self._stalled.pop(connection, None)
        self._busy_unchecked.pop(connection, None)
        self._idle_checked.pop(connection, None)


def raw_size(body: StreamReader | None) -> int:
    """The bytes of a request body received so far, as sent (before any decompression)."""
    if body is None:
        return 0
    # Set when aiohttp decompresses the body, and not at all on its empty body.
    compressed: int | None = getattr(body, "total_compressed_bytes", None)
    return body.total_bytes if compressed is None else compressed


@web.middleware
async def limit_head_size(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A head that came whole but over `MAX_HEAD_SIZE` is refused as one still arriving
    would be (`Connection._head_too_large`), before any check spends time on it."""
    size = len(request.raw_path) + sum(
        len(name) + len(value) for name, value in request.raw_headers
    )
    if size > MAX_HEAD_SIZE:
        response = web.Response(status=431, body=HEAD_TOO_LARGE_TEXT, content_type="text/plain")
        response.force_close()
        return response
    return await handler(request)


def mark_passed_checks(request: web.BaseRequest) -> None:
    """Record that this request's connection got past the web config's checks: from now on
    it is pushed out to make room only when idle, and after every unchecked one."""
    connection = request.protocol
    if isinstance(connection, Connection):
        connection.mark_passed_checks()


class LimitedRunner(web.AppRunner):
    """An AppRunner whose server is a `LimitedServer`."""

    def __init__(self, app: web.Application, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(app, **limits.runner_kwargs(), **kwargs)
        self.limits = limits

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        return LimitedServer(
            self.limits,
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,
            **plain._kwargs,
        )


class LimitedSite(web.TCPSite):
    """A TCPSite served by a `Listener` rather than asyncio's own accept loop."""

    def __init__(self, runner: LimitedRunner, *args: Any, **kwargs: Any) -> None:
        super().__init__(runner, *args, **kwargs)
        self._handshake_timeout = runner.limits.read_header_timeout

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert isinstance(server, LimitedServer)
        listener = Listener(
            server,
            await listening_sockets(self._host, self._port, self._backlog),
            self._ssl_context,
            self._handshake_timeout,
        )
        listener.start()
        self._server = listener
        self._bound_port = listener.sockets[0].getsockname()[1]


async def listening_sockets(host: str | None, port: int, backlog: int) -> list[socket.socket]:
    """Bound, listening sockets for `host` (None or "": every interface) and `port`."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            try:
                sock = socket.socket(family, kind, proto)
            except OSError:
                continue  # a family this host lacks (IPv6 in some containers), as asyncio does
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                # One socket per family, as asyncio binds them: "::" must not take IPv4 too.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    if not sockets:
        raise OSError(f"no address to listen on for {host or ''}:{port}")
    return sockets


class Listener(asyncio.AbstractServer):
    """Accepts connections for a `LimitedServer`, in place of asyncio's loop, which on
    EMFILE goes on calling accept() for the rest of its batch (4096 calls) and schedules as
    many retries a second later, tens of thousands of failed calls a second in all.

    - when accept() fails (out of descriptors or kernel memory), accepting stops for 5 ms,
      doubling each time it fails again up to 1 s (Go's net/http does the same), and the
      failure is logged once per 10 s;
    - a connection counts against the cap from accept() on, before its TLS handshake: a
      flood of connections that never say hello is pushed out like any other idle kind,
      instead of holding descriptors the cap never sees.
    """

    def __init__(
        self,
        server: LimitedServer,
        sockets: list[socket.socket],
        ssl_context: ssl.SSLContext | None,
        handshake_timeout: float,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._server = server
        self._sockets = sockets
        self._ssl_context = ssl_context
        self._handshake_timeout = handshake_timeout
        self._serving = False
        self._backoff = 0.0
        self._retry: asyncio.TimerHandle | None = None
        self._handshakes: set[asyncio.Task[None]] = set()
        self._errors = RateLimitedLog(
            "cannot accept connections", ACCEPT_ERROR_LOG_INTERVAL, logging.ERROR
        )

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return tuple(self._sockets)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self._serving

    async def start_serving(self) -> None:
        self.start()

    async def serve_forever(self) -> None:
        raise NotImplementedError("served by the aiohttp runner")

    def start(self) -> None:
        self._serving = True
        for sock in self._sockets:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def _pause(self) -> None:
        for sock in self._sockets:
            self._loop.remove_reader(sock.fileno())

    def _resume(self) -> None:
        self._retry = None
        if self._serving:
            self.start()

    def close(self) -> None:
        if not self._serving:
            return
        self._serving = False
        self._pause()
        if self._retry is not None:
            self._retry.cancel()
        for sock in self._sockets:
            sock.close()
        for handshake in self._handshakes:
            handshake.cancel()

    async def wait_closed(self) -> None:
        await asyncio.gather(*self._handshakes, return_exceptions=True)

    def _accept(self, sock: socket.socket) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                accepted, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue  # gone before we took it
            except OSError as error:
                # Out of descriptors or memory, most likely; whatever it is, the listening
                # socket stays readable and retrying at once would fail the same way.
                self._errors.hit(error=error.strerror or str(error))
                self._back_off()
                return
            self._backoff = 0.0
            self._serve(accepted)

    def _back_off(self) -> None:
        self._backoff = min(ACCEPT_MAX_BACKOFF, max(ACCEPT_MIN_BACKOFF, 2 * self._backoff))
        self._pause()
        self._retry = self._loop.call_later(self._backoff, self._resume)

    def _serve(self, accepted: socket.socket) -> None:
        accepted.setblocking(False)
        connection = self._server()
        if not self._server.admit(connection):
            if self._ssl_context is None:
                with contextlib.suppress(OSError):
                    accepted.send(REFUSAL)
            # With TLS, nothing can be said before a handshake: the refusal is the close.
            accepted.close()
            return
        connection.accepted = accepted
        handshake = self._loop.create_task(self._connect(connection, accepted))
        self._handshakes.add(handshake)
        handshake.add_done_callback(self._handshakes.discard)

    async def _connect(self, connection: Connection, accepted: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(
                lambda: connection,
                accepted,
                ssl=self._ssl_context,
                ssl_handshake_timeout=self._handshake_timeout if self._ssl_context else None,
            )
        except asyncio.CancelledError:
            self._server.forget(connection)
            raise
        except Exception as error:
            # A reset, a timeout, a bad hello: whatever ends a handshake ends only its own.
            self._server.forget(connection)
            log.debug("TLS handshake failed", extra={"error": type(error).__name__})


class RateLimitedLog:
    """One log line per interval for an event that can repeat thousands of times a second."""

    def __init__(
        self,
        message: str,
        interval: float,
        level: int = logging.WARNING,
        logger: logging.Logger = log,
    ) -> None:
        self._logger = logger
        self._message = message
        self._interval = interval
        self._level = level
        self._last = -float("inf")
        self._since_last = 0

    def hit(self, **fields: str) -> None:
        self._since_last += 1
        now = time.monotonic()
        if now - self._last < self._interval:
            return
        self._logger.log(
            self._level, self._message, extra={**fields, "times": str(self._since_last)}
        )
        self._last = now
        self._since_last = 0


class AcceptErrorFilter:
    """The event loop's exception handler, with accept() failures logged once per interval."""

    def __init__(self) -> None:
        self._log = RateLimitedLog(
            "cannot accept connections", ACCEPT_ERROR_LOG_INTERVAL, logging.ERROR
        )

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        if isinstance(error, OSError) and error.errno in ACCEPT_RESOURCE_ERRORS:
            self._log.hit(error=error.strerror or str(error))
            return
        loop.default_exception_handler(context)
