"""Simulated providers: a real HTTP server that speaks each provider's documented API.

`--demo` starts one on loopback and points the demo accounts at it, so the real provider code
runs end to end; the tests use it as their fake upstream. Every provider lives under its own
prefix (`http://127.0.0.1:PORT/anticaptcha` is an Anti-Captcha `base_url`), and accounts are
looked up by key, so a wrong key gets that provider's documented "bad key" answer. For
`http_json` accounts it also plays a few services without a built-in provider (`JSON_APIS`:
Telnyx, DeepSeek, Evomi) and a generic `/json/...` endpoint answering a configured payload.

Faults are plain coroutines that may answer in place of the provider (`respond(502, ...)`),
delay it (`delay(2)`), or misbehave at the socket (`hang()`, `disconnect()`). They can be
scripted for the next requests of an account or drawn at random with a probability.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import math
import random
import time
import urllib.parse
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from exporter.providers import CATALOGUE
from exporter.providers.catalogue import answers_of

Fault = Callable[[web.Request], Awaitable[web.StreamResponse | None]]
ANTIGATE_TYPES = ("anticaptcha", "datalabs", "twocaptcha", "capsolver", "capmonster")
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


def hang() -> Fault:
    """Never answer."""

    async def fault(request: web.Request) -> web.StreamResponse:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

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


def redirect(location: str, status: int = 302) -> Fault:
    """Send the client elsewhere (a well-behaved client with a key does not follow)."""
    return respond(status, b"", headers={"Location": location})


NGINX_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


@dataclass
class SimAccount:
    """One simulated account. Money drifts down by `burn_per_hour` from the simulator's start
    and, with `topup_amount`, jumps back up whenever it would fall below `topup_below`.
    Burning stops at zero, but an account set up below zero (overdrawn: the services charge
    tasks in flight after the money has run out) answers its negative balance."""

    key: str
    balance: float = 10.0
    burn_per_hour: float = 0.0
    topup_below: float = 0.0
    topup_amount: float = 0.0
    # the currency of the account, for the APIs that say it (Telnyx)
    currency: str = "USD"
    # anticaptcha
    captcha_credits: int | None = None
    spending: list[dict[str, Any]] | None = None  # fixed getSpendingStats records
    # Anti-Captcha's records are rolling hours, not clock hours: each starts this many seconds
    # past the hour (the documented example starts at :45:00; :57:30 is seen too).
    spending_phase: int = 45 * 60
    queue_shares: dict[str, float] = field(default_factory=dict)
    # capsolver
    packages: list[dict[str, Any]] | None = None
    # ocean: credit field -> {"oneTime": n, "recurrent": n}
    ocean_credits: dict[str, dict[str, float]] | None = None
    daily_limit: int = 1000
    # the generic `/json/...` endpoint: the body it answers (default `{"balance": ...}`)
    payload: Any = None
    # evomi: megabytes of traffic left in the other products; core residential is `balance`
    proxy_mb: dict[str, float] = field(
        default_factory=lambda: {"rp": 2048.0, "mp": 512.5, "dcp": 0.0}
    )
    # faults: scripted for the next requests, then drawn at random
    script: deque[Fault] = field(default_factory=deque)
    chaos: list[tuple[float, Fault]] = field(default_factory=list)

    def then(self, *faults: Fault) -> SimAccount:
        self.script.extend(faults)
        return self


@dataclass(frozen=True, slots=True)
class SeenRequest:
    provider: str
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


class Simulator:
    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
    ) -> None:
        self._clock = clock
        self._started = clock()
        self._random = random.Random(seed)
        self.accounts: dict[str, dict[str, SimAccount]] = {}
        self.calls: Counter[tuple[str, str]] = Counter()
        self.requests: deque[SeenRequest] = deque(maxlen=MAX_REMEMBERED_REQUESTS)
        self.in_flight = 0
        self.peak_in_flight = 0
        self.app = web.Application(client_max_size=1 << 20, middlewares=[self._count_in_flight])
        self._routes()
        self._runner: web.AppRunner | None = None
        self.url = ""
        # Login tokens handed out by catalogue services: token -> (service, key).
        self.tokens: dict[str, tuple[str, str]] = {}

    # -- set-up ---------------------------------------------------------------------------

    def add(self, provider: str, account: SimAccount) -> SimAccount:
        self.accounts.setdefault(provider, {})[account.key] = account
        return account

    def base_url(self, provider: str) -> str:
        return f"{self.url}/{provider}"

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
        return max(0.0, self._clock() - self._started) / SECONDS_PER_HOUR

    def balance_of(self, account: SimAccount) -> float:
        value = account.balance - account.burn_per_hour * self.hours_elapsed()
        if account.topup_amount > 0 and value < account.topup_below:
            value += math.ceil((account.topup_below - value) / account.topup_amount) * (
                account.topup_amount
            )
        return round(max(value, min(account.balance, 0.0)), 6)

    def spending_of(self, account: SimAccount, queue: str | None) -> list[dict[str, Any]]:
        if account.spending is not None:
            return account.spending
        share = 1.0 if queue is None else account.queue_shares.get(queue, 0.0)
        now = int(self._clock())
        phase = account.spending_phase % 3600
        this_hour = now - (now - phase) % 3600
        records = []
        # 23 complete hours and the current one, which has not ended yet.
        for start in range(this_hour - 23 * 3600, this_hour + 1, 3600):
            wobble = 0.75 + 0.5 * ((start // 3600) * 7919 % 100) / 100
            money = round(account.burn_per_hour * share * wobble, 6)
            records.append(
                {
                    "dateFrom": start,
                    "dateTill": start + 3599,
                    "volume": int(money / 0.0015),
                    # An idle hour is the integer 0 in the real answers, not 0.0.
                    "money": money or 0,
                }
            )
        return records

    def ocean_of(self, account: SimAccount) -> dict[str, Any]:
        used = int(self.hours_elapsed() * account.burn_per_hour)
        credits = account.ocean_credits or {
            "credits": {"oneTime": 5000, "recurrent": 20000},
            "emailCredits": {"oneTime": 800, "recurrent": 2000},
            "phoneCredits": {"oneTime": 50, "recurrent": 100},
            "previewCredits": {"oneTime": 0, "recurrent": 300},
        }
        body: dict[str, Any] = {
            name: {
                pool: max(0, value - (used if name == "credits" else 0))
                for pool, value in pools.items()
            }
            for name, pools in credits.items()
        }
        now = self._clock()
        body["dailyLimitRateLeft"] = max(
            0, account.daily_limit - self.calls[("ocean", account.key)]
        )
        body["dailyLimitRateSecondsToReset"] = int(86400 - now % 86400)
        return body

    # -- HTTP -----------------------------------------------------------------------------

    @web.middleware
    async def _count_in_flight(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            return await handler(request)
        finally:
            self.in_flight -= 1

    def _routes(self) -> None:
        for provider in ANTIGATE_TYPES:
            self.app.router.add_post(f"/{provider}/getBalance", self._antigate_balance)
        self.app.router.add_post("/anticaptcha/getSpendingStats", self._spending_stats)
        self.app.router.add_post("/vastcap/getBalance", self._vastcap)
        self.app.router.add_get("/decaptcha/api/balance", self._decaptcha)
        self.app.router.add_get("/ocean/v2/credits/balance", self._ocean)
        for name, api in JSON_APIS.items():
            for method in api.methods:
                self.app.router.add_route(method, f"/{name}{api.path}", self._json_api)
        self.app.router.add_route("*", "/catalogue/{service}/{tail:.*}", self._catalogue)

    async def _seen(
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
        account = self.accounts.get(provider, {}).get(key)
        if account is None:
            return None
        faults: list[Fault] = []
        if account.script:
            faults.append(account.script.popleft())
        else:
            faults.extend(f for p, f in account.chaos if self._random.random() < p)
        for fault in faults[:1]:
            answer = await fault(request)
            if answer is not None:
                return answer
        return None

    async def _client_key(self, request: web.Request) -> str:
        try:
            body = json.loads(await request.read() or b"{}")
        except ValueError:
            return ""
        key = body.get("clientKey") if isinstance(body, dict) else None
        return key if isinstance(key, str) else ""

    async def _antigate_balance(self, request: web.Request) -> web.StreamResponse:
        provider = request.path.split("/")[1]
        key = await self._client_key(request)
        override = await self._seen(request, provider, key)
        if override is not None:
            return override
        account = self.accounts.get(provider, {}).get(key)
        if account is None:
            if provider == "capsolver":
                return _capsolver_bad_key()
            return _antigate_bad_key(status=200, content_type=_ANTIGATE_CONTENT_TYPE[provider])
        body: dict[str, Any] = {"errorId": 0, "balance": self.balance_of(account)}
        if provider == "anticaptcha" and account.captcha_credits is not None:
            body["captchaCredits"] = account.captcha_credits
        if provider == "capsolver":
            body["packages"] = account.packages or []
        return web.json_response(body, content_type=_ANTIGATE_CONTENT_TYPE[provider])

    async def _spending_stats(self, request: web.Request) -> web.StreamResponse:
        key = await self._client_key(request)
        override = await self._seen(request, "anticaptcha", key)
        if override is not None:
            return override
        account = self.accounts.get("anticaptcha", {}).get(key)
        if account is None:
            return _antigate_bad_key(status=200)
        payload = json.loads(await request.read())
        queue = payload.get("queue") if isinstance(payload, dict) else None
        return web.json_response({"errorId": 0, "data": self.spending_of(account, queue)})

    async def _vastcap(self, request: web.Request) -> web.StreamResponse:
        key = await self._client_key(request)
        override = await self._seen(request, "vastcap", key)
        if override is not None:
            return override
        account = self.accounts.get("vastcap", {}).get(key)
        if account is None:
            return web.json_response(
                {
                    "error": {
                        "errorId": 1,
                        "errorCode": "ERROR_KEY_DOES_NOT_EXIST",
                        "errorDescription": "Invalid API key",
                    }
                },
                status=401,
            )
        return web.json_response({"balance": self.balance_of(account)})

    async def _decaptcha(self, request: web.Request) -> web.StreamResponse:
        key = request.headers.get("x-api-key", "")
        override = await self._seen(request, "decaptcha", key)
        if override is not None:
            return override
        account = self.accounts.get("decaptcha", {}).get(key)
        if account is None:
            return web.json_response(
                {
                    "isSuccess": False,
                    "statusCode": 401,
                    "errorMessage": "Invalid API key",
                    "data": None,
                },
                status=401,
            )
        return web.json_response(
            {
                "isSuccess": True,
                "statusCode": 200,
                "errorMessage": None,
                "data": f"{self.balance_of(account):,.2f}",
            }
        )

    async def _ocean(self, request: web.Request) -> web.StreamResponse:
        header = request.headers.get("x-api-token")
        query = request.query.get("apiToken")
        key = header or query or ""
        override = await self._seen(request, "ocean", key)
        if override is not None:
            return override
        if header and query and header != query:
            return web.json_response(
                {"detail": "Conflicting API tokens provided in query parameters and headers"},
                status=400,
            )
        if not key:
            return web.json_response(
                {"detail": "API token should be provided in headers or query parameters"},
                status=403,
            )
        account = self.accounts.get("ocean", {}).get(key)
        if account is None:
            return web.json_response(
                {"detail": "Current API token is not registered in our database"}, status=403
            )
        return web.json_response(self.ocean_of(account))

    async def _json_api(self, request: web.Request) -> web.StreamResponse:
        name = request.path.split("/")[1]
        api = JSON_APIS[name]
        key = api.key(request, await request.read())
        override = await self._seen(request, name, key)
        if override is not None:
            return override
        account = self.accounts.get(name, {}).get(key)
        if account is None:
            status, body = api.bad_key
            return web.json_response(body, status=status)
        return web.json_response(api.answer(self, account))

    async def _catalogue(self, request: web.Request) -> web.StreamResponse:
        """Any catalogue service, from its documented answers (exporter/catalogue/answers/):
        served under `/catalogue/<type>`, so `base_url("catalogue/<type>")` is its host."""
        service = request.match_info["service"]
        answers = catalogue_answers(service)
        if answers is None:
            raise web.HTTPNotFound()
        provider = f"catalogue/{service}"
        body = await request.read()
        key = self._key_anywhere(provider, request, body)
        override = await self._seen(request, provider, key)
        if override is not None:
            return override
        if key not in self.accounts.get(provider, {}):
            return documented_answer(unknown_key_answer(answers))
        login = answers.get("login")
        if login is not None and "/" + request.match_info["tail"] == login["path"]:
            token = f"sim-{service}-token-{len(self.tokens)}-{self._random.getrandbits(32):08x}"
            self.tokens[token] = (service, key)
            return documented_answer(login, token)
        return documented_answer(answers["success"])

    def _key_anywhere(self, provider: str, request: web.Request, body: bytes) -> str:
        """The key of a known account, or of a token it was given, wherever it was sent: the
        path, the query, a header, Basic auth or the body. The fake does not care where; the
        tests of each entry check the request it makes."""
        service = provider.removeprefix("catalogue/")
        places = [urllib.parse.unquote_plus(request.path_qs), body.decode(errors="replace")]
        places.append(urllib.parse.unquote_plus(places[-1]))
        for value in request.headers.values():
            places.append(value)
            scheme, _, encoded = value.partition(" ")
            if scheme.lower() == "basic":
                with contextlib.suppress(ValueError, UnicodeDecodeError):
                    places.append(base64.b64decode(encoded.strip()).decode())
        text = "\n".join(places)
        for key in self.accounts.get(provider, {}):
            if key in text:
                return key
        for token, (owner, key) in self.tokens.items():
            if owner == service and token in text:
                return key
        return ""


# -- catalogue services: their documented answers ------------------------------------------


@functools.cache
def catalogue_answers(service: str) -> dict[str, Any] | None:
    if service not in CATALOGUE:
        return None
    return answers_of(service)


def unknown_key_answer(answers: dict[str, Any]) -> dict[str, Any]:
    """What the service answers a key it does not know: its first documented `auth` error."""
    for error in answers["errors"]:
        if error["reason"] == "auth":
            found: dict[str, Any] = error
            return found
    return {"status": 401, "text": "Unauthorized"}


def documented_answer(answer: dict[str, Any], token: str = "") -> web.Response:
    """A documented answer: `{status, json}` or `{status, text}`; "{token}" strings in the JSON
    become the token handed out."""
    status = int(answer["status"])
    if "text" in answer:
        return web.Response(status=status, text=str(answer["text"]), content_type="text/plain")
    body = json.dumps(answer["json"]).replace('"{token}"', json.dumps(token))
    return web.Response(status=status, text=body, content_type="application/json")


# -- JSON balance APIs of services without a built-in provider, for `http_json` ------------


@dataclass(frozen=True, slots=True)
class JsonApi:
    """A balance endpoint as its service documents it: served at `/{name}{path}`, so the
    prefix `base_url(name)` stands for the service's origin."""

    path: str
    key: Callable[[web.Request, bytes], str]
    answer: Callable[[Simulator, SimAccount], Any]
    bad_key: tuple[int, Any]
    methods: tuple[str, ...] = ("GET",)


def _bearer(request: web.Request, body: bytes) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _header(name: str) -> Callable[[web.Request, bytes], str]:
    def read(request: web.Request, body: bytes) -> str:
        return request.headers.get(name, "")

    return read


def _basic_password(request: web.Request) -> str:
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return ""
    try:
        pair = base64.b64decode(encoded.strip(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return ""
    return pair.partition(":")[2]


def _bearer_header_or_body(request: web.Request, body: bytes) -> str:
    """The generic endpoint takes the key wherever a config is likely to put it: a bearer
    token, `X-Api-Key`, the `api_key` query parameter, a Basic password, or `key` in a JSON
    or form body."""
    found = (
        _bearer(request, body)
        or request.headers.get("X-Api-Key", "")
        or request.query.get("api_key", "")
        or _basic_password(request)
    )
    if found:
        return found
    if request.content_type == "application/x-www-form-urlencoded":
        form = urllib.parse.parse_qs(body.decode(errors="replace"))
        return (form.get("key") or [""])[0]
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        return ""
    key = data.get("key") if isinstance(data, dict) else None
    return key if isinstance(key, str) else ""


def _telnyx_balance(simulator: Simulator, account: SimAccount) -> Any:
    # Telnyx (GET /v2/balance): money as decimal strings, in the account's currency.
    balance = simulator.balance_of(account)
    return {
        "data": {
            "record_type": "balance",
            "pending": "0.00",
            "balance": f"{balance:.2f}",
            "credit_limit": "100.00",
            "available_credit": f"{balance + 100:.2f}",
            "currency": account.currency,
        }
    }


def _deepseek_balance(simulator: Simulator, account: SimAccount) -> Any:
    # DeepSeek (GET /user/balance): one entry per currency the account holds money in.
    balance = simulator.balance_of(account)
    return {
        "is_available": balance > 0,
        "balance_infos": [
            {
                "currency": "CNY",
                "total_balance": "110.00",
                "granted_balance": "10.00",
                "topped_up_balance": "100.00",
            },
            {
                "currency": "USD",
                "total_balance": f"{balance:.2f}",
                "granted_balance": "0.00",
                "topped_up_balance": f"{balance:.2f}",
            },
        ],
    }


EVOMI_PRODUCTS = {
    "rp": ("premium-residential.evomi.com", 1000),
    "rpc": ("core-residential.evomi.com", 1000),
    "mp": ("mp.evomi.com", 3000),
    "dcp": ("dcp.evomi.com", 2000),
}


def _evomi_products(simulator: Simulator, account: SimAccount) -> Any:
    # Evomi (GET /public): per proxy product, its credentials and the megabytes left.
    megabytes = {**account.proxy_mb, "rpc": simulator.balance_of(account)}
    return {
        "success": True,
        "products": {
            code: {
                "username": "proxy_username",
                "password": "proxy_password",
                "balance_mb": megabytes.get(code, 0.0),
                "endpoint": host,
                "ports": {"http": port, "socks5": port + 2},
            }
            for code, (host, port) in EVOMI_PRODUCTS.items()
        },
    }


def _generic_payload(simulator: Simulator, account: SimAccount) -> Any:
    if account.payload is not None:
        return account.payload
    return {"balance": simulator.balance_of(account)}


JSON_APIS: dict[str, JsonApi] = {
    "telnyx": JsonApi(
        "/v2/balance",
        _bearer,
        _telnyx_balance,
        (
            401,
            {
                "errors": [
                    {
                        "code": "10009",
                        "title": "Authentication failed",
                        "detail": "Could not understand the provided credentials.",
                    }
                ]
            },
        ),
    ),
    "deepseek": JsonApi(
        "/user/balance",
        _bearer,
        _deepseek_balance,
        (
            401,
            {
                "error": {
                    "message": "Authentication Fails (no such user)",
                    "type": "authentication_error",
                    "param": None,
                    "code": "invalid_request_error",
                }
            },
        ),
    ),
    # The bad-key answer is not documented; this is a plausible one.
    "evomi": JsonApi(
        "/public",
        _header("x-apikey"),
        _evomi_products,
        (401, {"success": False, "message": "Invalid API key"}),
    ),
    # Any path under /json/, GET or POST: the payload configured per account.
    "json": JsonApi(
        "/{tail:.*}",
        _bearer_header_or_body,
        _generic_payload,
        (401, {"error": {"message": "invalid api key"}}),
        methods=("GET", "POST"),
    ),
}


# CapMonster Cloud labels its JSON text/plain; the others say what it is.
_ANTIGATE_CONTENT_TYPE = dict.fromkeys(ANTIGATE_TYPES, "application/json") | {
    "capmonster": "text/plain"
}


def _antigate_bad_key(status: int, content_type: str = "application/json") -> web.Response:
    return web.json_response(
        {
            "errorId": 1,
            "errorCode": "ERROR_KEY_DOES_NOT_EXIST",
            "errorDescription": "Account authorization key not found in the system",
        },
        status=status,
        content_type=content_type,
    )


def _capsolver_bad_key() -> web.Response:
    # CapSolver: 401 for a key it does not know, 400 for every other error
    # (https://docs.capsolver.com/en/guide/api-error/).
    return web.json_response(
        {
            "errorId": 1,
            "errorCode": "ERROR_KEY_DENIED_ACCESS",
            "errorDescription": "Wrong account key",
        },
        status=401,
    )


def capsolver_error(code: str, description: str, status: int = 400) -> Fault:
    """CapSolver's error answer: `errorId` 1 and the code, with HTTP 400 (or as given)."""
    return respond(status, {"errorId": 1, "errorCode": code, "errorDescription": description})


def capsolver_rate_limited() -> Fault:
    """CapSolver over its request rate: HTTP 429 with its JSON error body, no Retry-After."""
    return capsolver_error("ERROR_RATE_LIMIT", "Request frequency/rate limit", status=429)


def capsolver_key_temp_blocked() -> Fault:
    """CapSolver's temporary block after too many bad requests (lifted after 5 minutes)."""
    return capsolver_error(
        "ERROR_KEY_TEMP_BLOCKED",
        "Due to too many error requests, you have been blocked temporarily, "
        "and will be automatically unblocked in 5 minutes",
    )
