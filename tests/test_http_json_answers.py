"""http_json for answers that differ from account to account: quota in response headers
(`header('Name')`), values only some answers hold (`when`), and OAuth 2 client-credentials
logins that refuse in their own words. Every request goes over loopback to a real server."""

from __future__ import annotations

import base64
import urllib.parse
from typing import Any

import pytest
from aiohttp import web

from exporter.config import build_config
from exporter.configfile import ConfigError
from exporter.demo import SimAccount, Simulator, respond
from exporter.engine import Engine
from exporter.model import Credit, Reading, Reason
from exporter.upstream import Upstream
from tests.helpers import collect_accounts, collect_one, http_json_account

KEY = "answers-key-0123456789abcdef"
CLIENT_ID = "client-id-0123456789"


def account(url: str, **more: Any) -> dict[str, Any]:
    return http_json_account(
        url, KEY, cache_ttl="0s", request={"headers": {"Authorization": "Bearer {api_key}"}}, **more
    )


def problems_of(settings: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        build_config({"accounts": [settings]}, source="cfg.yml", environ={})
    return [line.split(": ", 1)[1] for line in caught.value.lines]


# -- header() ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "reading", "reason"),
    [
        (
            {"X-RateLimit-Remaining": "9,500", "x-ratelimit-reset": "3600"},
            Reading(daily_limit_remaining=9500.0, daily_limit_reset_seconds=3600.0),
            None,
        ),
        # The names are case-insensitive, as HTTP's are.
        (
            {"x-ratelimit-remaining": "7", "X-RATELIMIT-RESET": "60"},
            Reading(daily_limit_remaining=7.0, daily_limit_reset_seconds=60.0),
            None,
        ),
        ({"X-RateLimit-Reset": "60"}, None, Reason.INVALID_RESPONSE),
        ({"X-RateLimit-Remaining": "-1", "X-RateLimit-Reset": "60"}, None, Reason.INVALID_RESPONSE),
    ],
)
async def test_quota_read_from_the_response_headers(
    simulator: Simulator,
    upstream: Upstream,
    headers: dict[str, str],
    reading: Reading | None,
    reason: Reason | None,
) -> None:
    settings = account(
        simulator.base_url("json") + "/v1/account",
        values={
            "daily_limit_remaining": "header('X-RateLimit-Remaining')",
            "daily_limit_reset_seconds": "number(header('X-RateLimit-Reset'))",
        },
    )
    answer = respond(200, {"ok": True}, headers=headers)
    snapshot = await collect_one(simulator, upstream, settings, answer)
    assert snapshot.outcome.reading == reading
    assert snapshot.outcome.reason is reason


async def test_headers_and_body_together_and_in_error(
    simulator: Simulator, upstream: Upstream
) -> None:
    settings = account(
        simulator.base_url("json") + "/v1/account",
        values={
            "credits": [
                {
                    "credit_type": "requests",
                    "pool": "monthly",
                    "path": "subtract(header('X-Limit'), used)",
                }
            ]
        },
        error="header('X-Error')",
        error_reasons={"auth": ["key-revoked"]},
    )
    good = respond(200, {"used": 250}, headers={"X-Limit": "1000"})
    revoked = respond(200, {"used": 250}, headers={"X-Limit": "1000", "X-Error": "key-revoked"})
    simulator.add("json", SimAccount(KEY).then(good, revoked))
    [first] = await collect_accounts(upstream, settings)
    [second] = await collect_accounts(upstream, settings)
    assert first.outcome.reading == Reading(credits=(Credit("requests", "monthly", 750.0),))
    assert second.outcome.reason is Reason.AUTH


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("header(name)", "header() takes one header name in quotes"),
        ("header('X-A', 'X-B')", "header() takes one header name in quotes"),
        ("header()", "header() takes one header name in quotes"),
        ("header('bad name')", "header() takes one header name in quotes"),
        ("header(`1`)", "header() takes one header name in quotes"),
        ("subtract(header('X-Limit'), hdr('X-Used'))", "unknown JMESPath function hdr()"),
    ],
)
def test_a_header_call_is_checked_at_load(expression: str, problem: str) -> None:
    settings = account("https://api.example.com/v1", values={"balance_usd": expression})
    [line] = problems_of(settings)
    assert line.startswith(f"accounts[0].values.balance_usd: {problem}")


# -- values some answers hold -----------------------------------------------------------

# An account answers in money or in credits, and says which in `type`.
MONEY_OR_CREDITS = {
    "balance": {"path": "amount", "when": "type == 'euros'"},
    "credits": [
        {"credit_type": "sms", "pool": "prepaid", "path": "amount", "when": "type == 'credits'"}
    ],
}


@pytest.mark.parametrize(
    ("payload", "reading", "reason"),
    [
        (
            {"type": "euros", "amount": 12.5},
            Reading(balance=12.5, currency="EUR"),
            None,
        ),
        (
            {"type": "credits", "amount": 830},
            Reading(credits=(Credit("sms", "prepaid", 830.0),)),
            None,
        ),
        # Zero is a value (JMESPath's 0 is true): an empty account, not a missing one.
        ({"type": "euros", "amount": 0}, Reading(balance=0.0, currency="EUR"), None),
        # An answer that holds none of the values is no reading, not an empty one.
        ({"type": "dollars", "amount": 3}, None, Reason.INVALID_RESPONSE),
        # A condition that holds reads its value as strictly as ever.
        ({"type": "credits", "amount": None}, None, Reason.INVALID_RESPONSE),
    ],
)
async def test_money_or_credits_as_the_answer_says(
    simulator: Simulator,
    upstream: Upstream,
    payload: dict[str, Any],
    reading: Reading | None,
    reason: Reason | None,
) -> None:
    settings = account(
        simulator.base_url("json") + "/balance", values=MONEY_OR_CREDITS, currency="EUR"
    )
    snapshot = await collect_one(simulator, upstream, settings, respond(200, payload))
    assert snapshot.outcome.reading == reading
    assert snapshot.outcome.reason is reason


@pytest.mark.parametrize(
    ("paygo_limit", "credits"),
    [
        (2000, (Credit("api_credits", "plan", 600.0), Credit("api_credits", "paygo", 1900.0))),
        # A null limit is no pay-as-you-go series, and the plan's credits are still known.
        (None, (Credit("api_credits", "plan", 600.0),)),
    ],
)
async def test_a_field_sent_as_null_leaves_the_other_values(
    simulator: Simulator,
    upstream: Upstream,
    paygo_limit: int | None,
    credits: tuple[Credit, ...],
) -> None:
    settings = account(
        simulator.base_url("json") + "/usage",
        values={
            "credits": [
                {"credit_type": "api_credits", "pool": "plan", "path": "subtract(limit, usage)"},
                {
                    "credit_type": "api_credits",
                    "pool": "paygo",
                    "path": "subtract(paygo_limit, paygo_usage)",
                    "when": "paygo_limit",
                },
            ]
        },
    )
    payload = {"limit": 1000, "usage": 400, "paygo_limit": paygo_limit, "paygo_usage": 100}
    snapshot = await collect_one(simulator, upstream, settings, respond(200, payload))
    assert snapshot.outcome.reading == Reading(credits=credits)


async def test_without_when_a_null_still_fails_the_collection(
    simulator: Simulator, upstream: Upstream
) -> None:
    settings = account(
        simulator.base_url("json") + "/usage",
        values={
            "credits": [{"credit_type": "api_credits", "pool": "paygo", "path": "paygo_limit"}]
        },
    )
    snapshot = await collect_one(simulator, upstream, settings, respond(200, {"paygo_limit": None}))
    assert snapshot.outcome.reason is Reason.INVALID_RESPONSE
    assert snapshot.outcome.error is not None
    assert snapshot.outcome.error.cause == "values.credits[0] is null or missing"


def test_a_condition_is_checked_at_load() -> None:
    settings = account(
        "https://api.example.com/v1",
        values={"balance_usd": {"path": "amount", "when": "type =="}, "credits": []},
    )
    assert problems_of(settings) == [
        "accounts[0].values.balance_usd.when: incomplete JMESPath expression"
    ]
    settings["values"] = {"balance_usd": {"path": "amount"}}
    assert problems_of(settings) == ["accounts[0].values.balance_usd.when: required"]
    settings["values"] = {"balance_usd": {"path": "amount", "when": "type", "wen": "type"}}
    assert problems_of(settings) == [
        "accounts[0].values.balance_usd.wen: unknown key (did you mean 'when'?)"
    ]


# -- OAuth 2 client credentials ---------------------------------------------------------


class TokenService:
    """An OAuth 2 client-credentials token endpoint (RFC 6749, 4.4 and 5.2) and a balance call
    that takes its bearer token."""

    def __init__(self) -> None:
        self.app = web.Application()
        self.app.router.add_post("/oauth/token", self.token)
        self.app.router.add_get("/balance", self.balance)
        self.issued: set[str] = set()
        self.seen_forms: list[dict[str, str]] = []

    def credentials(self, request: web.Request, form: dict[str, str]) -> tuple[str, str]:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        if scheme == "Basic":
            client_id, _, secret = base64.b64decode(encoded).decode().partition(":")
            return client_id, secret
        return form.get("client_id", ""), form.get("client_secret", "")

    async def token(self, request: web.Request) -> web.Response:
        form = dict(urllib.parse.parse_qsl((await request.read()).decode()))
        self.seen_forms.append(form)
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        if self.credentials(request, form) != (CLIENT_ID, KEY):
            return web.json_response({"error": "invalid_client"}, status=400)
        token = f"access-{len(self.issued)}-abcdefgh"
        self.issued.add(token)
        return web.json_response(
            {"access_token": token, "token_type": "Bearer", "expires_in": 3600}
        )

    async def balance(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization", "").removeprefix("Bearer ") not in self.issued:
            return web.json_response({"error": "invalid_token"}, status=401)
        return web.json_response({"balance": "25000.00"})


@pytest.fixture
async def token_service(aiohttp_server: Any) -> tuple[TokenService, str]:
    service = TokenService()
    server = await aiohttp_server(service.app)
    return service, str(server.make_url(""))


def oauth_account(url: str, credentials: str, client_id: str = CLIENT_ID) -> dict[str, Any]:
    request: dict[str, Any] = {"url": url + "/oauth/token"}
    if credentials == "form":
        request["form"] = {
            "grant_type": "client_credentials",
            "client_id": "{client_id}",
            "client_secret": "{api_key}",
        }
    else:
        request["form"] = {"grant_type": "client_credentials"}
        request["basic_auth"] = {"username": "{client_id}", "password": "{api_key}"}
    return http_json_account(
        url + "/balance",
        KEY,
        cache_ttl="0s",
        request={"headers": {"Authorization": "Bearer {token}"}},
        secrets={"client_id": {"value": client_id}},
        values={"credits": [{"credit_type": "credits", "pool": "balance", "path": "balance"}]},
        login={
            "request": request,
            "token": "access_token",
            "expires_in": "expires_in",
            "error": "error",
            "error_reasons": {"auth": ["invalid_client", "invalid_grant", "unauthorized_client"]},
        },
    )


@pytest.mark.parametrize("credentials", ["form", "basic"])
async def test_an_oauth_client_credentials_login(
    token_service: tuple[TokenService, str], upstream: Upstream, credentials: str
) -> None:
    service, url = token_service
    config = build_config({"accounts": [oauth_account(url, credentials)]}, source="t")
    engine = Engine(config, upstream)
    for _ in range(2):
        [snapshot] = await engine.collect()
        assert snapshot.outcome.reading == Reading(credits=(Credit("credits", "balance", 25000),))
    # The token lives an hour: one login for both collections.
    assert len(service.issued) == 1
    [form] = service.seen_forms
    assert form["grant_type"] == "client_credentials"
    assert ("client_secret" in form) is (credentials == "form")


@pytest.mark.parametrize("credentials", ["form", "basic"])
async def test_a_refused_client_is_a_rejected_key(
    token_service: tuple[TokenService, str], upstream: Upstream, credentials: str
) -> None:
    _, url = token_service
    [snapshot] = await collect_accounts(
        upstream, oauth_account(url, credentials, client_id="someone-else")
    )
    assert snapshot.outcome.reason is Reason.AUTH
    assert snapshot.outcome.error is not None
    assert snapshot.outcome.error.cause == "login: HTTP 400, error invalid_client"


async def test_a_login_error_not_listed_is_the_providers(
    token_service: tuple[TokenService, str], upstream: Upstream
) -> None:
    _, url = token_service
    settings = oauth_account(url, "form")
    settings["login"]["request"]["form"]["grant_type"] = "password"
    [snapshot] = await collect_accounts(upstream, settings)
    assert snapshot.outcome.reason is Reason.PROVIDER_ERROR
    assert snapshot.outcome.error is not None
    assert snapshot.outcome.error.cause == "login: HTTP 400, error field set"


def test_login_error_reasons_need_login_error() -> None:
    settings = oauth_account("https://auth.example.com", "form")
    del settings["login"]["error"]
    assert problems_of(settings) == [
        "accounts[0].login: error_reasons maps values of error: give error too"
    ]


async def test_a_login_whose_token_comes_in_a_header(
    aiohttp_server: Any, upstream: Upstream
) -> None:
    """Some logins answer the token in a response header, not the body."""
    issued: list[str] = []

    async def login(request: web.Request) -> web.Response:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        if (scheme, base64.b64decode(encoded).decode()) != ("Basic", f"{CLIENT_ID}:{KEY}"):
            return web.json_response({"error": "invalid_client"}, status=401)
        issued.append(f"session-{len(issued)}-abcdefgh")
        return web.json_response({"ok": True}, headers={"X-Auth-Token": issued[-1]})

    async def balance(request: web.Request) -> web.Response:
        if request.headers.get("X-Auth-Token") not in issued:
            return web.json_response({}, status=401)
        return web.json_response({"balance": 12.5})

    app = web.Application()
    app.router.add_post("/session", login)
    app.router.add_get("/balance", balance)
    url = str((await aiohttp_server(app)).make_url(""))
    settings = http_json_account(
        url + "/balance",
        KEY,
        cache_ttl="0s",
        request={"headers": {"X-Auth-Token": "{token}"}},
        secrets={"client_id": {"value": CLIENT_ID}},
        login={
            "request": {
                "url": url + "/session",
                "method": "POST",
                "basic_auth": {"username": "{client_id}", "password": "{api_key}"},
            },
            "token": "header('X-Auth-Token')",
            "lifetime": "10m",
        },
    )
    [snapshot] = await collect_accounts(upstream, settings)
    assert snapshot.outcome.reading == Reading(balance_usd=12.5)
    assert issued == ["session-0-abcdefgh"]
    wrong = {**settings, "secrets": {"client_id": {"value": "someone-else"}}}
    [refused] = await collect_accounts(upstream, wrong)
    assert refused.outcome.reason is Reason.AUTH
