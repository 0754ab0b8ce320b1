"""http_json for the balance APIs that are not a header and a JSON body: keys in the query or
the path, more secrets, Basic auth, form bodies, plain-text answers, arithmetic, error values
mapped to reasons, and a login call first. Every request goes over loopback to a real server."""

from __future__ import annotations

import base64
import json
import logging
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from exporter import logs
from exporter.config import build_config
from exporter.configfile import ConfigError
from exporter.demo import SimAccount, Simulator, respond
from exporter.demo.json_apis import JsonAccount
from exporter.engine import Engine
from exporter.model import Credit, Reading, Reason
from exporter.upstream import Upstream
from tests.helpers import collect_accounts, collect_one, http_json_account

KEY = "reach-key-0123456789abcdef"
SID = "AC-reach-sid-9876543210"


def account(url: str, **more: Any) -> dict[str, Any]:
    return http_json_account(url, KEY, cache_ttl="0s", **more)


def text(status: int, body: str) -> Any:
    return respond(status, body, content_type="text/plain")


# -- where the secrets go ---------------------------------------------------------------


async def test_key_in_the_query_and_a_secret_in_the_path(
    simulator: Simulator, upstream: Upstream
) -> None:
    settings = account(
        simulator.base_url("json") + "/v1/accounts/{account_sid}/balance?format=json",
        request={"query": {"api_key": "{api_key}", "action": "getBalance", "other": "{x}"}},
        secrets={"account_sid": {"value": SID + "/?&"}},
    )
    snapshot = await collect_one(simulator, upstream, settings)
    assert snapshot.outcome.reading == Reading(balance_usd=10.0)
    [seen] = simulator.requests
    # The secret is one path segment, its slash and query characters encoded.
    assert seen.path == f"/json/v1/accounts/{SID}/?&/balance"
    assert urllib.parse.parse_qsl(seen.query) == [
        ("format", "json"),
        ("api_key", KEY),
        ("action", "getBalance"),
        ("other", "{x}"),
    ]
    assert "Authorization" not in seen.headers


async def test_basic_auth_with_two_secrets(simulator: Simulator, upstream: Upstream) -> None:
    settings = account(
        simulator.base_url("json") + "/Accounts/{account_sid}/Balance.json",
        request={"basic_auth": {"username": "{account_sid}", "password": "{api_key}"}},
        secrets={"account_sid": {"env": "TEST_SID"}},
    )
    simulator.add("json", SimAccount(KEY))
    config = build_config({"accounts": [settings]}, source="test", environ={"TEST_SID": SID})
    [snapshot] = await Engine(config, upstream).collect()
    assert snapshot.outcome.ok, snapshot.outcome.error
    [seen] = simulator.requests
    assert seen.path == f"/json/Accounts/{SID}/Balance.json"
    scheme, _, encoded = seen.headers["Authorization"].partition(" ")
    assert (scheme, base64.b64decode(encoded).decode()) == ("Basic", f"{SID}:{KEY}")


async def test_a_form_body(simulator: Simulator, upstream: Upstream) -> None:
    settings = account(
        simulator.base_url("json") + "/api/user",
        request={"form": {"key": "{api_key}", "action": "balance"}},
    )
    snapshot = await collect_one(simulator, upstream, settings)
    assert snapshot.outcome.ok, snapshot.outcome.error
    [seen] = simulator.requests
    assert seen.method == "POST"
    assert seen.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert urllib.parse.parse_qs(seen.body.decode()) == {"key": [KEY], "action": ["balance"]}


def test_secrets_are_read_like_the_key(tmp_path: Path) -> None:
    (tmp_path / "sid").write_text(f"  {SID}\n")
    settings = account(
        "https://api.example.com/{a}/{b}/{c}",
        request={"query": {"k": "{api_key}"}},
        secrets={"a": {"file": "sid"}, "b": {"env": "MISSING"}, "c": {"file": "absent"}},
    )
    with pytest.raises(ConfigError) as caught:
        build_config({"accounts": [settings]}, source="cfg.yml", base_dir=tmp_path, environ={})
    assert [line.split(": ", 1)[1] for line in caught.value.lines] == [
        "accounts[0].secrets.b.env: the environment variable it names is not set",
        "accounts[0].secrets.c.file: cannot read the file it names: No such file or directory",
    ]
    settings["secrets"] = {
        "a": {"file": "sid"},
        "b": {"value": "bb-secret"},
        "c": {"value": "cc-secret"},
    }
    config = build_config({"accounts": [settings]}, source="cfg.yml", base_dir=tmp_path)
    [acct] = config.accounts
    assert {name: s.get_secret_value() for name, s in acct.secrets.items()} == {
        "a": SID,
        "b": "bb-secret",
        "c": "cc-secret",
    }
    assert SID not in repr(acct)
    logs.register_secrets(config.secret_values())
    assert SID not in logs.redact(f"x {SID} y")


def test_a_rotated_secret_is_another_upstream() -> None:
    def loaded(sid: str) -> Any:
        settings = account(
            "https://api.example.com/{sid}",
            request={"query": {"k": "{api_key}"}},
            secrets={"sid": {"value": sid}},
        )
        return build_config({"accounts": [settings]}, source="t").accounts[0]

    assert loaded("sid-one-1234").same_upstream(loaded("sid-one-1234"))
    assert not loaded("sid-one-1234").same_upstream(loaded("sid-two-1234"))


def test_a_secret_written_into_the_url_is_refused() -> None:
    settings = account(
        f"https://api.example.com/{SID}/balance",
        request={"query": {"k": "{api_key}"}},
        secrets={"sid": {"value": SID}},
        values={"balance_usd": "b"},
    )
    settings["request"]["headers"] = {"X-Sid": "{sid}"}
    with pytest.raises(ConfigError) as caught:
        build_config({"accounts": [settings]}, source="cfg.yml")
    [line] = caught.value.lines
    assert line == (
        "cfg.yml: accounts[0].request.url: contains the account's key or a secret; use a "
        "placeholder"
    )


# -- plain text, arithmetic, error values ---------------------------------------------

SMS = {
    "response": {"format": "text", "pattern": r"^ACCESS_BALANCE:(?P<balance>-?[0-9.]+)$"},
    "values": {"credits": [{"credit_type": "rub", "pool": "balance", "path": "balance"}]},
    "error": "text",
    "error_reasons": {"auth": ["BAD_KEY"], "rate_limited": ["ERROR_TOO_MANY"]},
}


@pytest.mark.parametrize(
    ("answer", "reading", "reason"),
    [
        (
            text(200, "ACCESS_BALANCE:25.50\n"),
            Reading(credits=(Credit("rub", "balance", 25.5),)),
            None,
        ),
        (text(200, "BAD_KEY"), None, Reason.AUTH),
        (text(200, "ERROR_TOO_MANY"), None, Reason.RATE_LIMITED),
        (text(200, "ERROR_SQL"), None, Reason.PROVIDER_ERROR),
        (text(200, "ACCESS_BALANCE:-1"), None, Reason.INVALID_RESPONSE),
        (respond(200, b"ACCESS_BALANCE:\xff"), None, Reason.INVALID_RESPONSE),
        (text(400, "BAD_KEY"), None, Reason.AUTH),
        (text(500, "ERROR_SQL"), None, Reason.HTTP),
        (text(200, "x" * (64 * 1024 + 1)), None, Reason.INVALID_RESPONSE),
    ],
)
async def test_a_plain_text_answer(
    simulator: Simulator, upstream: Upstream, answer: Any, reading: Reading | None, reason: Reason
) -> None:
    settings = account(
        simulator.base_url("json") + "/stubs/handler_api.php",
        request={"query": {"api_key": "{api_key}", "action": "getBalance"}},
        **SMS,
    )
    snapshot = await collect_one(simulator, upstream, settings, answer)
    assert snapshot.outcome.reading == reading
    assert snapshot.outcome.reason is reason


async def test_the_cause_names_only_listed_values(simulator: Simulator, upstream: Upstream) -> None:
    settings = account(
        simulator.base_url("json") + "/b", request={"query": {"api_key": "{api_key}"}}, **SMS
    )
    listed = await collect_one(simulator, upstream, settings, text(200, "BAD_KEY"))
    unlisted = await collect_one(simulator, upstream, settings, text(200, "Your key is abc"))
    assert listed.outcome.error is not None
    assert unlisted.outcome.error is not None
    assert listed.outcome.error.cause == "error BAD_KEY"
    assert unlisted.outcome.error.cause == "error field set"


@pytest.mark.parametrize(
    ("expression", "payload", "expected"),
    [
        ("subtract(limit, used)", {"limit": 5000, "used": 1250}, 3750.0),
        ("subtract(limit, used)", {"limit": "5,000", "used": "1,250.5"}, 3749.5),
        ("divide(cents, `100`)", {"cents": 12345}, 123.45),
        ("multiply(gb, `1024`)", {"gb": 1.5}, 1536.0),
        ("add(a, b)", {"a": 1, "b": 2.5}, 3.5),
        ("number(s)", {"s": "1,250.75"}, 1250.75),
        ("divide(a, b)", {"a": 1, "b": 0}, None),
        ("subtract(limit, used)", {"limit": 1}, None),
        ("subtract(limit, used)", {"limit": "lots", "used": 1}, None),
    ],
)
async def test_arithmetic(
    simulator: Simulator, upstream: Upstream, expression: str, payload: Any, expected: float | None
) -> None:
    settings = account(
        simulator.base_url("json") + "/b",
        request={"headers": {"Authorization": "Bearer {api_key}"}},
        values={"daily_limit_remaining": expression},
    )
    simulator.add("json", JsonAccount(KEY, payload=payload))
    [snapshot] = await collect_accounts(upstream, settings)
    if expected is None:
        assert snapshot.outcome.reason is Reason.INVALID_RESPONSE
    else:
        assert snapshot.outcome.reading is not None
        assert snapshot.outcome.reading.daily_limit_remaining == pytest.approx(expected)


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (respond(200, {"error": "invalid_api_key"}), Reason.AUTH),
        (respond(200, {"error": 1015}), Reason.RATE_LIMITED),
        (respond(200, {"error": "plan_expired"}), Reason.PROVIDER_ERROR),
        (respond(400, {"error": "invalid_api_key"}), Reason.AUTH),
        (respond(402, {"error": "plan_expired"}), Reason.PROVIDER_ERROR),
        (respond(200, {"error": None, "balance": 3}), None),
    ],
)
async def test_error_values_mapped_to_reasons(
    simulator: Simulator, upstream: Upstream, answer: Any, reason: Reason | None
) -> None:
    settings = account(
        simulator.base_url("json") + "/b",
        request={"headers": {"Authorization": "Bearer {api_key}"}},
        error="error",
        error_reasons={"auth": ["invalid_api_key"], "rate_limited": [1015]},
    )
    snapshot = await collect_one(simulator, upstream, settings, answer)
    assert snapshot.outcome.reason is reason


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (respond(403, {"errors": [{"code": 403}]}), Reason.RATE_LIMITED),
        (respond(422, {"error": "slow down"}), Reason.RATE_LIMITED),
        (respond(402, {}), Reason.PROVIDER_ERROR),
        # The status decides, whatever the body's `error` says.
        (respond(403, {"error": "invalid_api_key"}), Reason.RATE_LIMITED),
        (respond(401, {}), Reason.AUTH),
        (respond(404, {}), Reason.HTTP),
        (respond(200, {"balance": 3}), None),
    ],
)
async def test_statuses_mapped_to_reasons(
    simulator: Simulator, upstream: Upstream, answer: Any, reason: Reason | None
) -> None:
    settings = account(
        simulator.base_url("json") + "/b",
        request={"headers": {"Authorization": "Bearer {api_key}"}},
        error="error",
        error_reasons={"auth": ["invalid_api_key"]},
        status_reasons={403: "rate_limited", 422: "rate_limited", 402: "provider_error"},
    )
    snapshot = await collect_one(simulator, upstream, settings, answer)
    assert snapshot.outcome.reason is reason


async def test_a_status_mapped_to_http_is_not_a_rejected_key(
    simulator: Simulator, upstream: Upstream
) -> None:
    settings = account(
        simulator.base_url("json") + "/b",
        request={"headers": {"Authorization": "Bearer {api_key}"}},
        status_reasons={"403": "http"},
    )
    snapshot = await collect_one(simulator, upstream, settings, respond(403, {}))
    assert snapshot.outcome.reason is Reason.HTTP


# -- a login call first -----------------------------------------------------------------


class LoginService:
    """A service that trades a key for a token with a lifetime, then answers by token."""

    def __init__(self, expires_in: int = 3600) -> None:
        self.expires_in = expires_in
        self.logins = 0
        self.balance_calls = 0
        self.revoked: set[str] = set()
        self.login_answer: Callable[[], web.Response] | None = None
        self.app = web.Application()
        self.app.router.add_post("/auth", self.login)
        self.app.router.add_get("/me", self.me)

    async def login(self, request: web.Request) -> web.Response:
        self.logins += 1
        if self.login_answer is not None:
            return self.login_answer()
        if request.headers.get("X-Api-Key") != KEY or request.headers.get("X-User") != "me@x":
            return web.json_response({"error": "bad credentials"}, status=401)
        return web.json_response(
            {"token": f"tok-{self.logins}-abcdefgh", "expiresIn": self.expires_in}
        )

    async def me(self, request: web.Request) -> web.Response:
        self.balance_calls += 1
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not token.startswith("tok-") or token in self.revoked:
            return web.json_response({"error": "unauthorized"}, status=401)
        return web.json_response({"currentBalance": 12.5, "token_was": token})


@pytest.fixture
async def service(aiohttp_server: Any) -> tuple[LoginService, str]:
    login = LoginService()
    server = await aiohttp_server(login.app)
    return login, str(server.make_url(""))


def login_account(url: str, **login: Any) -> dict[str, Any]:
    return account(
        url + "/me",
        request={"headers": {"Authorization": "Bearer {token}"}},
        secrets={"username": {"value": "me@x"}},
        values={"balance_usd": "currentBalance"},
        login={
            "request": {
                "url": url + "/auth",
                "method": "POST",
                "headers": {"X-Api-Key": "{api_key}", "X-User": "{username}"},
            },
            "token": "token",
            **login,
        },
    )


async def test_the_token_is_reused_until_a_401_then_renewed_once(
    service: tuple[LoginService, str], upstream: Upstream
) -> None:
    login, url = service
    config = build_config({"accounts": [login_account(url, expires_in="expiresIn")]}, source="t")
    engine = Engine(config, upstream)
    for _ in range(3):
        [snapshot] = await engine.collect()
        assert snapshot.outcome.reading == Reading(balance_usd=12.5)
    assert (login.logins, login.balance_calls) == (1, 3)
    login.revoked.add("tok-1-abcdefgh")
    [snapshot] = await engine.collect()
    assert snapshot.outcome.ok
    assert (login.logins, login.balance_calls) == (2, 5)
    # A fresh token that is refused is not retried: the key itself is the problem.
    login.revoked.add("tok-2-abcdefgh")
    login.revoked.add("tok-3-abcdefgh")
    [snapshot] = await engine.collect()
    assert snapshot.outcome.reason is Reason.AUTH
    assert (login.logins, login.balance_calls) == (3, 7)
    # The token is redacted like the key wherever it would be logged.
    assert logs.redact("Bearer tok-3-abcdefgh") == f"Bearer {logs.REDACTED}"


async def test_an_expired_token_is_renewed_before_use(
    service: tuple[LoginService, str], upstream: Upstream
) -> None:
    login, url = service
    login.expires_in = 0
    config = build_config({"accounts": [login_account(url, expires_in="expiresIn")]}, source="t")
    engine = Engine(config, upstream)
    for _ in range(2):
        [snapshot] = await engine.collect()
        assert snapshot.outcome.ok
    assert (login.logins, login.balance_calls) == (2, 2)


@pytest.mark.parametrize(
    ("answer", "reason", "cause"),
    [
        (lambda: web.json_response({"error": "x"}, status=401), Reason.AUTH, "login: HTTP 401"),
        (lambda: web.json_response({"error": "x"}, status=500), Reason.HTTP, "login: HTTP 500"),
        (
            lambda: web.json_response({"token": None}),
            Reason.INVALID_RESPONSE,
            "login.token is not a string",
        ),
        (
            lambda: web.json_response({"token": "t\nx"}),
            Reason.INVALID_RESPONSE,
            "login.token is not printable ASCII",
        ),
        (lambda: web.Response(text="<html>"), Reason.INVALID_RESPONSE, "HTTP 200 body is HTML"),
    ],
)
async def test_a_failed_login(
    service: tuple[LoginService, str],
    upstream: Upstream,
    answer: Callable[[], web.Response],
    reason: Reason,
    cause: str,
) -> None:
    login, url = service
    login.login_answer = answer
    [snapshot] = await collect_accounts(upstream, login_account(url, lifetime="10m"))
    assert snapshot.outcome.reason is reason
    assert snapshot.outcome.error is not None
    assert snapshot.outcome.error.cause.startswith(cause)
    assert login.balance_calls == 0


async def test_a_mapped_status_means_the_same_from_the_login(
    service: tuple[LoginService, str], upstream: Upstream
) -> None:
    login, url = service
    login.login_answer = lambda: web.json_response({}, status=403)
    settings = {**login_account(url, lifetime="10m"), "status_reasons": {403: "rate_limited"}}
    [snapshot] = await collect_accounts(upstream, settings)
    assert snapshot.outcome.reason is Reason.RATE_LIMITED
    assert snapshot.outcome.error is not None
    assert snapshot.outcome.error.cause == "login: HTTP 403"


async def test_nothing_about_a_request_carries_its_secrets(
    simulator: Simulator, upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    """Keys in the query and the path: no cause, no log line, no exception text names them."""
    settings = account(
        "http://127.0.0.1:1/{account_sid}/balance",
        request={"query": {"api_key": "{api_key}"}},
        secrets={"account_sid": {"value": SID}},
    )
    caplog.set_level(logging.DEBUG)
    [snapshot] = await collect_accounts(upstream, settings)
    assert snapshot.outcome.reason is Reason.CONNECTION
    assert snapshot.outcome.error is not None
    shown = [str(snapshot.outcome.error), repr(snapshot.outcome.error), caplog.text]
    assert all(KEY not in part and SID not in part for part in shown)


def test_the_placeholders_are_filled_once() -> None:
    from exporter.providers.http_json.settings import fill

    assert fill("{a}-{b}-{c}", {"a": "{b}", "b": "x"}) == "{b}-x-{c}"
    assert json.dumps(fill("{a}", {"a": "/"}, urllib.parse.quote)) == '"/"'
