"""Balance APIs of services without a built-in provider, for `http_json` accounts: Telnyx,
DeepSeek, Evomi as they document them, and a generic `/json/...` endpoint answering a payload
set per account. Each is served at `/<name><path>`, so `base_url(name)` stands for the
service's origin."""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from exporter.demo.server import FakeServer, SimAccount


@dataclass
class JsonAccount(SimAccount):
    # the currency of the account, for the APIs that say it (Telnyx)
    currency: str = "USD"
    # the generic `/json/...` endpoint: the body it answers (default `{"balance": ...}`)
    payload: Any = None
    # evomi: megabytes of traffic left in the other products; core residential is `balance`
    proxy_mb: dict[str, float] = field(
        default_factory=lambda: {"rp": 2048.0, "mp": 512.5, "dcp": 0.0}
    )


def install(server: FakeServer) -> None:
    async def answer(request: web.Request) -> web.StreamResponse:
        name = request.path.split("/")[1]
        api = JSON_APIS[name]
        key = api.key(request, await request.read())
        override = await server.seen(request, name, key)
        if override is not None:
            return override
        account = server.account(name, key)
        if account is None:
            status, body = api.bad_key
            return web.json_response(body, status=status)
        extra = account if isinstance(account, JsonAccount) else JsonAccount(account.key)
        return web.json_response(api.answer(server.balance_of(account), extra))

    for name, api in JSON_APIS.items():
        for method in api.methods:
            server.route(method, f"/{name}{api.path}", answer)


@dataclass(frozen=True, slots=True)
class JsonApi:
    """A balance endpoint as its service documents it: served at `/{name}{path}`, so the
    prefix `base_url(name)` stands for the service's origin."""

    path: str
    key: Callable[[web.Request, bytes], str]
    answer: Callable[[float, JsonAccount], Any]
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


def _telnyx_balance(balance: float, account: JsonAccount) -> Any:
    # Telnyx (GET /v2/balance): money as decimal strings, in the account's currency.
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


def _deepseek_balance(balance: float, account: JsonAccount) -> Any:
    # DeepSeek (GET /user/balance): one entry per currency the account holds money in.
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


def _evomi_products(balance: float, account: JsonAccount) -> Any:
    # Evomi (GET /public): per proxy product, its credentials and the megabytes left.
    megabytes = {**account.proxy_mb, "rpc": balance}
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


def _generic_payload(balance: float, account: JsonAccount) -> Any:
    if account.payload is not None:
        return account.payload
    return {"balance": balance}


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
