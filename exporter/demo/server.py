"""The small server every fake provider runs in: loopback HTTP, routing, bookkeeping and the
fault hook.

Every provider lives under its own prefix (`http://127.0.0.1:PORT/anticaptcha` is an
Anti-Captcha `base_url`), and accounts are looked up by key, so a wrong key gets that
provider's documented "bad key" answer. A fake (one module per provider family) adds its
routes and, in each handler, calls `seen()` first: that counts the request, remembers it and
gives the account's faults their turn.

Faults are plain coroutines that may answer in place of the provider (`respond(502, ...)`) or
delay it (`delay(2)`); the tests add socket-level ones (`tests/faults.py`). They can be
scripted for the next requests of an account or drawn at random with a probability.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Self, TypeVar

from aiohttp import web

Fault = Callable[[web.Request], Awaitable[web.StreamResponse | None]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SECONDS_PER_HOUR = 3600.0
MAX_REMEMBERED_REQUESTS = 1000


def respond(
    status: int,
    body: Any = b"",
    *,
    headers: dict[str, str] | None = None,
    content_type: str | None = None,
) -> Fault:
    """Answer with this status and body (bytes/str as they are, anything else as JSON)."""
    if isinstance(body, bytes | str):
        payload = body.encode() if isinstance(body, str) else body
        kind = content_type or "text/html"
    else:
        payload = json.dumps(body).encode()
        kind = content_type or "application/json"

    async def fault(request: web.Request) -> web.StreamResponse:
        return web.Response(
            status=status, body=payload, headers={"Content-Type": kind, **(headers or {})}
        )

    return fault


def delay(seconds: float) -> Fault:
    """Answer normally, `seconds` late."""

    async def fault(request: web.Request) -> None:
        await asyncio.sleep(seconds)

    return fault


NGINX_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


@dataclass
class SimAccount:
    """One simulated account. Money drifts down by `burn_per_hour` from the server's start
    and, with `topup_amount`, jumps back up whenever it would fall below `topup_below`.
    Burning stops at zero, but an account set up below zero (overdrawn: the services charge
    tasks in flight after the money has run out) answers its negative balance. A provider
    family that answers more than money has its own subclass in its fake's module."""

    key: str
    balance: float = 10.0
    burn_per_hour: float = 0.0
    topup_below: float = 0.0
    topup_amount: float = 0.0
    # faults: scripted for the next requests, then drawn at random
    script: deque[Fault] = field(default_factory=deque)
    chaos: list[tuple[float, Fault]] = field(default_factory=list)

    def then(self, *faults: Fault) -> Self:
        self.script.extend(faults)
        return self


AccountT = TypeVar("AccountT", bound=SimAccount)


@dataclass(frozen=True, slots=True)
class SeenRequest:
    provider: str
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


class FakeServer:
    """Accounts by provider and key, what was asked, and the HTTP server the fakes route in."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
    ) -> None:
        self.clock = clock
        self._started = clock()
        self.random = random.Random(seed)  # noqa: S311 - simulated trouble, not cryptography
        self.accounts: dict[str, dict[str, SimAccount]] = {}
        self.calls: Counter[tuple[str, str]] = Counter()
        self.requests: deque[SeenRequest] = deque(maxlen=MAX_REMEMBERED_REQUESTS)
        self.in_flight = 0
        self.peak_in_flight = 0
        self.app = web.Application(client_max_size=1 << 20, middlewares=[self._count_in_flight])
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- set-up ---------------------------------------------------------------------------

    def add(self, provider: str, account: AccountT) -> AccountT:
        self.accounts.setdefault(provider, {})[account.key] = account
        return account

    def account(self, provider: str, key: str) -> SimAccount | None:
        return self.accounts.get(provider, {}).get(key)

    def base_url(self, provider: str) -> str:
        return f"{self.url}/{provider}"

    def route(self, method: str, path: str, handler: Handler) -> None:
        self.app.router.add_route(method, path, handler)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        # A hanging fault never ends by itself; don't let it hold up the shutdown.
        self._runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=0.25
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self.url = f"http://{host}:{sockets[0].getsockname()[1]}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- simulated state ------------------------------------------------------------------

    def hours_elapsed(self) -> float:
        return max(0.0, self.clock() - self._started) / SECONDS_PER_HOUR

    def balance_of(self, account: SimAccount) -> float:
        value = account.balance - account.burn_per_hour * self.hours_elapsed()
        if account.topup_amount > 0 and value < account.topup_below:
            value += math.ceil((account.topup_below - value) / account.topup_amount) * (
                account.topup_amount
            )
        return round(max(value, min(account.balance, 0.0)), 6)

    # -- the hook every handler calls first -----------------------------------------------

    async def seen(
        self, request: web.Request, provider: str, key: str
    ) -> web.StreamResponse | None:
        """Bookkeeping and faults shared by every route: a response to send instead, or None."""
        self.calls[(provider, key)] += 1
        self.requests.append(
            SeenRequest(
                provider,
                request.method,
                request.path,
                request.query_string,
                dict(request.headers),
                await request.read(),
            )
        )
        account = self.account(provider, key)
        if account is None:
            return None
        faults: list[Fault] = []
        if account.script:
            faults.append(account.script.popleft())
        else:
            faults.extend(f for p, f in account.chaos if self.random.random() < p)
        for fault in faults[:1]:
            answer = await fault(request)
            if answer is not None:
                return answer
        return None

    @web.middleware
    async def _count_in_flight(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            return await handler(request)
        finally:
            self.in_flight -= 1


async def client_key(request: web.Request) -> str:
    """The `clientKey` of a JSON body, the anti-captcha protocol's (and VastCap's) key."""
    try:
        body = json.loads(await request.read() or b"{}")
    except ValueError:
        return ""
    key = body.get("clientKey") if isinstance(body, dict) else None
    return key if isinstance(key, str) else ""
