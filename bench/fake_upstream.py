"""The fake provider: the demo's anti-captcha family behind a lean HTTP/1.1 transport, in a
process of its own so that it does not share the exporter's CPU.

The accounts, keys and answers are the demo's (`exporter.demo.antigate`), as the tests and
`--demo` see them. The transport is not the demo's aiohttp server because that costs about
0.15 ms of CPU per request against 0.05 ms here: at 1000 accounts the fake's own queue would
add some 100 ms to a 200 ms upstream and be counted against the exporter. Each request is
answered after the latency its path names (`/lat200/datalabs/getBalance`), so one server
plays every latency, and the TCP connections it accepts are counted.

The server listens on several ports of 127.0.0.1: each port is a host of its own to the
exporter (an origin: scheme, host and port), so a config can spread its accounts over
several providers' hosts the way a real one does.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import signal
import sys
from http import HTTPStatus
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from typing import Any

from exporter.demo.antigate import CONTENT_TYPE, balance_answer
from exporter.demo.server import FakeServer, SimAccount

# Anti-captcha protocol types without a minimum interval (anticaptcha itself is asked at most
# once per 30 s, so it cannot show an uncached scrape).
PROVIDERS = ("datalabs", "twocaptcha", "capmonster")
BALANCE = 12.3456
# Hosts the accounts are spread over when a run asks for it (--hosts).
MAX_HOSTS = 64


def bench_accounts(accounts: int) -> list[tuple[str, str]]:
    """(provider, key) of each account."""
    return [(PROVIDERS[i % len(PROVIDERS)], f"bench-key-{i:05d}") for i in range(accounts)]


class UpstreamProtocol(asyncio.Protocol):
    """One connection to the fake provider: HTTP/1.1 with keep-alive, answers after a delay."""

    def __init__(self, demo: FakeServer, connections: Any, requests: Any) -> None:
        self._demo = demo
        self._connections = connections
        self._requests = requests
        self._buffer = b""
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._connections.value += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            head_end = self._buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            lines = self._buffer[:head_end].decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            end = head_end + 4 + int(headers.get("content-length", "0"))
            if len(self._buffer) < end:
                return
            body = self._buffer[head_end + 4 : end]
            self._buffer = self._buffer[end:]
            method, target, _ = lines[0].split(" ", 2)
            close = headers.get("connection", "").lower() == "close"
            self._requests.value += 1
            self._answer(method, target, body, close)

    def _answer(self, method: str, target: str, body: bytes, close: bool) -> None:
        # /lat{ms}/{provider}/getBalance
        prefix, provider, rest = [*target.lstrip("/").split("/", 2), "", ""][:3]
        if (
            method != "POST"
            or rest != "getBalance"
            or not prefix.startswith("lat")
            or provider not in PROVIDERS
        ):
            self._loop.call_soon(self._send, 404, b'{"error": "not found"}', "", close)
            return
        try:
            key = json.loads(body).get("clientKey", "")
        except (ValueError, AttributeError):
            key = ""
        status, payload = balance_answer(self._demo, provider, key if isinstance(key, str) else "")
        latency = int(prefix[3:]) / 1000
        answer = json.dumps(payload).encode()
        self._loop.call_later(latency, self._send, status, answer, CONTENT_TYPE[provider], close)

    def _send(self, status: int, body: bytes, content_type: str, close: bool) -> None:
        transport = self._transport
        if transport is None:
            return
        reason = HTTPStatus(status).phrase
        connection = "Connection: close\r\n" if close else ""
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type or 'application/json'}"
            f"\r\nContent-Length: {len(body)}\r\n{connection}\r\n"
        )
        transport.write(head.encode() + body)
        if close:
            transport.close()


def serve_upstream(
    ready: Connection, accounts: int, hosts: int, connections: Any, requests: Any
) -> None:
    """The fake provider's process: serve until terminated."""
    demo = FakeServer()
    for provider, key in bench_accounts(accounts):
        demo.add(provider, SimAccount(key, balance=BALANCE))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        ports = []
        for _ in range(hosts):
            server = await loop.create_server(
                lambda: UpstreamProtocol(demo, connections, requests),
                "127.0.0.1",
                0,
                backlog=4096,
            )
            ports.append(server.sockets[0].getsockname()[1])
        ready.send(ports)
        await asyncio.Event().wait()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    asyncio.run(main())


class FakeUpstream:
    def __init__(self, accounts: int, hosts: int = 1) -> None:
        context = multiprocessing.get_context("spawn")
        self._connections: Synchronized[int] = context.Value("q", 0)
        self._requests: Synchronized[int] = context.Value("q", 0)
        parent, child = context.Pipe()
        self._process = context.Process(
            target=serve_upstream,
            args=(child, accounts, hosts, self._connections, self._requests),
            daemon=True,
            name="fake-upstream",
        )
        self._process.start()
        if not parent.poll(30):
            raise RuntimeError("the fake upstream did not start")
        self.urls = [f"http://127.0.0.1:{port}" for port in parent.recv()]

    def base_url(self, latency_ms: int, provider: str, host: int = 0) -> str:
        return f"{self.urls[host % len(self.urls)]}/lat{latency_ms}/{provider}"

    @property
    def connections(self) -> int:
        return self._connections.value

    @property
    def requests(self) -> int:
        return self._requests.value

    def stop(self) -> None:
        self._process.terminate()
        self._process.join(10)
