"""Connections to a provider are kept across scrapes: once the first scrapes are done, a
scrape opens none, however fast the requests of the previous one came back."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from exporter.config import build_config
from exporter.engine import FAN_OUT_BATCH, Engine
from exporter.upstream import Upstream
from tests.helpers import account


class BalanceProtocol(asyncio.Protocol):
    """One connection to a loopback anti-captcha API (HTTP/1.1, keep-alive): every
    `POST /getBalance` is answered `{"errorId": 0, "balance": 7.0}` after the server's latency."""

    def __init__(self, server: CountingServer) -> None:
        self._server = server
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._server.accepted += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (head_end := self._buffer.find(b"\r\n\r\n")) >= 0:
            head = self._buffer[:head_end].decode("latin-1").lower()
            length = next(
                (
                    int(line.split(":", 1)[1])
                    for line in head.split("\r\n")
                    if line.startswith("content-length:")
                ),
                0,
            )
            end = head_end + 4 + length
            if len(self._buffer) < end:
                return
            self._buffer = self._buffer[end:]
            asyncio.get_running_loop().call_later(self._server.latency, self._answer)

    def _answer(self) -> None:
        body = json.dumps({"errorId": 0, "balance": 7.0}).encode()
        if self._transport is not None:
            self._transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )


class CountingServer:
    """The loopback server, counting the TCP connections it accepts."""

    def __init__(self) -> None:
        self.accepted = 0
        self.latency = 0.0
        self.url = ""


@pytest.fixture
async def server() -> AsyncIterator[CountingServer]:
    counting = CountingServer()
    listening = await asyncio.get_running_loop().create_server(
        lambda: BalanceProtocol(counting), "127.0.0.1", 0
    )
    counting.url = f"http://127.0.0.1:{listening.sockets[0].getsockname()[1]}"
    yield counting
    listening.close()


async def test_a_scrape_needing_every_connection_at_once_opens_none_after_a_fast_one(
    server: CountingServer,
) -> None:
    # With no latency, the first batches are answered before the last leave, and their
    # connections carry the later requests: the scrape needs far fewer at once than it
    # asks. Had the pool kept only those, a scrape when the provider is slower (every
    # request in flight at once) would open the rest anew.
    count = 32 * FAN_OUT_BATCH
    accounts = [
        account(f"a{i}", "datalabs", f"key-{i}", server.url, cache_ttl="0s") for i in range(count)
    ]
    config = build_config(
        {
            "global": {"max_concurrency": count, "max_concurrency_per_host": count},
            "accounts": accounts,
        },
        source="test",
    )
    upstream = Upstream(count, count)
    try:
        engine = Engine(config, upstream)
        for _ in range(2):
            snapshots = await engine.collect()
            assert all(s.outcome.ok for s in snapshots)
            await upstream.warmed()
        fast_scrapes = server.accepted
        server.latency = 0.2
        for _ in range(2):
            snapshots = await engine.collect()
            assert all(s.outcome.ok for s in snapshots)
            await upstream.warmed()
        assert server.accepted - fast_scrapes == 0, f"{fast_scrapes} then {server.accepted}"
    finally:
        await upstream.close()
