"""Faults only the tests need: an upstream that hangs, trickles, sends a huge, endless or
truncated body, hangs up, or redirects. Scripted on a `SimAccount` (`account.then(hang())`)
like the demo's own `respond` and `delay`."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import zlib

from aiohttp import web

from exporter.demo import Fault, respond


def hang() -> Fault:
    """Never answer (the handler ends when the client hangs up: one left waiting would hold up
    the simulator's shutdown by its grace period)."""

    async def fault(request: web.Request) -> web.StreamResponse:
        # aiohttp sets no event when a client hangs up: look now and then.
        while request.transport is not None and not request.transport.is_closing():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        return web.Response(status=500)

    return fault


def disconnect() -> Fault:
    """Close the connection without an answer."""

    async def fault(request: web.Request) -> web.StreamResponse:
        transport = request.transport
        if transport is not None:
            transport.close()
        await asyncio.sleep(0.05)
        return web.Response(status=500)

    return fault


def truncated_body(promised: int = 1000, sent: bytes = b'{"errorId": 0, "bal') -> Fault:
    """Promise `promised` bytes, send a few, then close the connection."""

    async def fault(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "application/json", "Content-Length": str(promised)}
        )
        await response.prepare(request)
        await response.write(sent)
        if request.transport is not None:
            request.transport.close()
        return response

    return fault


def trickle(
    seconds_per_byte: float = 0.2, body: bytes = b'{"errorId": 0, "balance": 1.0}'
) -> Fault:
    """Send the answer one byte at a time (the whole answer takes far longer than a budget)."""

    async def fault(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "application/json", "Content-Length": str(len(body))}
        )
        await response.prepare(request)
        for byte in body:
            await response.write(bytes([byte]))
            await asyncio.sleep(seconds_per_byte)
        return response

    return fault


def huge_body(size: int = 64 << 20, *, declare_length: bool = False) -> Fault:
    """A body of `size` bytes (JSON-looking whitespace), streamed, optionally announced."""
    chunk = b" " * 65536

    async def fault(request: web.Request) -> web.StreamResponse:
        headers = {"Content-Type": "application/json"}
        if declare_length:
            headers["Content-Length"] = str(size)
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            for _ in range(size // len(chunk)):
                await response.write(chunk)
        return response

    return fault


def endless_body() -> Fault:
    """A body that never ends."""

    async def fault(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            while True:
                await response.write(b"[" * 65536)
        return response

    return fault


@functools.cache
def _inflating(encoding: str, inflated_mib: int, tail: bytes) -> bytes:
    """`inflated_mib` MiB of JSON whitespace, then `tail`, compressed once per test run."""
    bits = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}[encoding]
    packer = zlib.compressobj(9, zlib.DEFLATED, bits)
    spaces = b" " * (1 << 20)
    parts = [packer.compress(spaces) for _ in range(inflated_mib)]
    return b"".join([*parts, packer.compress(tail), packer.flush()])


def compression_bomb(
    encoding: str = "gzip",
    inflated_mib: int = 64,
    tail: bytes = b'{"errorId": 0, "balance": 1.0}',
) -> Fault:
    """A small compressed body (64 KiB for 64 MiB) that inflates past any cap: a valid answer
    after `inflated_mib` MiB of whitespace, which a client decoding it whole reads as fine."""
    body = _inflating(encoding, inflated_mib, tail)
    return respond(
        200, body, headers={"Content-Encoding": encoding}, content_type="application/json"
    )


class HostileLogin:
    """A login service that hands out the tokens it is told to, each living no time at all,
    so that every collection logs in again; the balance call takes any token it issued."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.issued: list[str] = []
        self.app = web.Application()
        self.app.router.add_post("/login", self.login)
        self.app.router.add_get("/balance", self.balance)

    async def login(self, request: web.Request) -> web.Response:
        token = self.tokens[len(self.issued) % len(self.tokens)]
        self.issued.append(token)
        return web.json_response({"token": token, "expires_in": 0})

    async def balance(self, request: web.Request) -> web.Response:
        if request.headers.get("X-Token") not in self.issued:
            return web.json_response({"error": "bad token"}, status=401)
        return web.json_response({"balance": 1.0})


def redirect(location: str, status: int = 302) -> Fault:
    """Send the client elsewhere (a well-behaved client with a key does not follow)."""
    return respond(status, b"", headers={"Location": location})
