"""The http_json provider: config refusals with their places, the request as sent, every kind
of value and error, the engine's cache and coalescing, and the examples of docs/http_json.md, run against
simulated servers."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

import pytest
import yaml

from exporter.config import build_config, parse_config
from exporter.configfile import ConfigError
from exporter.demo import Fault, SimAccount, Simulator, delay, respond
from exporter.demo.json_apis import JsonAccount
from exporter.engine import Engine, Snapshot
from exporter.model import CollectError, Credit, Reading, Reason
from exporter.providers.http_json.expressions import Budget, compile_expression, search
from exporter.upstream import Upstream
from tests.conftest import ExporterFactory
from tests.helpers import (
    account,
    assert_promtool_accepts_metrics,
    http_json_account,
    no_secret_in,
    readme_yaml,
    samples,
    value,
)

KEY = "hj-key-0123456789abcdef"
SECTION = "# Any JSON balance API: http_json"


def json_account(simulator: Simulator, path: str = "/v1/balance", **more: Any) -> dict[str, Any]:
    """An http_json account asking the simulator's generic JSON endpoint."""
    request = {"headers": {"Authorization": "Bearer {api_key}"}, **more.pop("request", {})}
    return http_json_account(simulator.base_url("json") + path, KEY, request=request, **more)


async def collect(
    simulator: Simulator,
    upstream: Upstream,
    settings: dict[str, Any],
    *faults: Fault,
    payload: Any = None,
) -> Snapshot:
    simulator.add("json", JsonAccount(KEY, balance=12.5, payload=payload).then(*faults))
    config = build_config({"accounts": [settings]}, source="test")
    [snapshot] = await Engine(config, upstream).collect()
    return snapshot


def raw(status: int, text: str) -> Fault:
    return respond(status, text.encode(), content_type="application/json")


# -- config -----------------------------------------------------------------------------

BASE = """\
accounts:
  - name: j
    provider: http_json
    api_key: hj-key-0123456789abcdef
    request:
      url: https://api.example.com/v1/balance
      headers: {Authorization: "Bearer {api_key}"}
    values:
      balance_usd: data.balance
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="cfg.yml", environ={})
    return caught.value.lines


def variant(old: str, new: str) -> str:
    assert old in BASE
    return BASE.replace(old, new)


def test_the_documented_shape_loads() -> None:
    config = parse_config(BASE, source="cfg.yml", environ={})
    [acct] = config.accounts
    assert acct.provider_type == "http_json"
    # The request goes to request.url itself: it is the account's upstream URL.
    assert acct.base_url == "https://api.example.com/v1/balance"


BALANCE = "      balance_usd: data.balance\n"
CREDITS = BALANCE + "      credits:\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            variant("balance_usd: data.balance", "balance_usd: 'data.'"),
            "cfg.yml:9: accounts[0].values.balance_usd: not a valid JMESPath expression: "
            "unexpected end of expression at column 5",
        ),
        (
            variant("balance_usd: data.balance", "balance_usd: 'a ~ b'"),
            "cfg.yml:9: accounts[0].values.balance_usd: not a valid JMESPath expression: "
            "Unknown token ~ at column 2",
        ),
        (
            variant("balance_usd: data.balance", "balance_usd: 'data[0'"),
            "cfg.yml:9: accounts[0].values.balance_usd: incomplete JMESPath expression",
        ),
        (
            variant("balance_usd: data.balance", "balance_usd: 'to_num(data)'"),
            "cfg.yml:9: accounts[0].values.balance_usd: unknown JMESPath function to_num()",
        ),
        (
            variant("balance_usd: data.balance", "balance_usd: 'abs(a, b)'"),
            "cfg.yml:9: accounts[0].values.balance_usd: JMESPath function abs() takes 1 "
            "argument(s), not 2",
        ),
        (
            variant("balance_usd: data.balance", "balance_usd: ''"),
            "cfg.yml:9: accounts[0].values.balance_usd: String should have at least 1 character",
        ),
        (
            variant("      balance_usd: data.balance\n", "      balanse_usd: data.balance\n"),
            "cfg.yml:9: accounts[0].values.balanse_usd: unknown key (did you mean 'balance_usd'?)",
        ),
        (
            variant("    values:\n      balance_usd: data.balance\n", "    values: {}\n"),
            "cfg.yml:8: accounts[0].values: nothing to read: give at least one of balance",
        ),
        (
            variant("    values:\n      balance_usd: data.balance\n", ""),
            "cfg.yml:2: accounts[0].values: required",
        ),
        (
            variant(BALANCE, CREDITS + "        - {credit_type: sms, pool: x, path: 'a['}\n"),
            "cfg.yml:11: accounts[0].values.credits[0].path: incomplete JMESPath expression",
        ),
        (
            variant(
                BALANCE,
                CREDITS + '        - {credit_type: "sms\\n", pool: x, path: a}\n',
            ),
            "cfg.yml:11: accounts[0].values.credits[0].credit_type: must not contain control "
            "characters or line breaks",
        ),
        (
            variant(BALANCE, CREDITS + "        - {credit_type: sms, pool: '', path: a}\n"),
            "cfg.yml:11: accounts[0].values.credits[0].pool: String should have at least 1",
        ),
        (
            variant(
                BALANCE,
                CREDITS
                + "        - {credit_type: sms, pool: x, path: a}\n"
                + "        - {credit_type: sms, pool: x, path: b}\n",
            ),
            "cfg.yml:11: accounts[0].values.credits: credit_type 'sms' with pool 'x' is given "
            "twice",
        ),
        (
            variant(BALANCE, CREDITS + "        - {credit_type: sms, path: a}\n"),
            "cfg.yml:11: accounts[0].values.credits[0].pool: required",
        ),
        (
            variant("/v1/balance", "/v1/balance?key={api_key}"),
            "cfg.yml:6: accounts[0].request.url: placeholders may only be in the path; put "
            "query parameters in query",
        ),
        (
            variant("api.example.com", "{api_key}.example.com"),
            "cfg.yml:6: accounts[0].request.url: placeholders may only be in the path: the "
            "host is fixed",
        ),
        (
            variant("/v1/balance", "/v1/%7Bapi_key%7D"),
            "cfg.yml:6: accounts[0].request.url: write placeholders as {name}, not percent-encoded",
        ),
        (
            variant("/v1/balance", "/v1/balance?token=hj-key-0123456789abcdef"),
            "cfg.yml:6: accounts[0].request.url: contains the account's key or a secret; use a "
            "placeholder",
        ),
        (
            variant("    request:\n", "    request:\n      form: {a: b}\n      json: {a: 1}\n"),
            "cfg.yml:6: accounts[0].request: json and form are both request bodies",
        ),
        (
            variant("    request:\n", "    request:\n      method: GET\n      form: {a: b}\n"),
            "cfg.yml:6: accounts[0].request: form is a request body: use method POST",
        ),
        (
            variant(
                "{Authorization:",
                "{X-A: b}\n      basic_auth: {username: u, password: p}\n      h2: {Authorization:",
            ).replace('      h2: {Authorization: "Bearer {api_key}"}\n', ""),
            "cfg.yml:2: accounts[0]: the key would never be sent",
        ),
        (
            variant(
                '{Authorization: "Bearer {api_key}"}',
                '{Authorization: "Bearer {api_key}"}\n      basic_auth: {username: u, password: p}',
            ),
            "cfg.yml:6: accounts[0].request: basic_auth sets the Authorization header",
        ),
        (
            variant("    request:\n", "    secrets: {sid: {env: SID}}\n    request:\n"),
            "cfg.yml:2: accounts[0]: secrets.sid would never be sent: use {sid} somewhere",
        ),
        (
            variant("    request:\n", "    secrets: {token: {env: SID}}\n    request:\n"),
            "cfg.yml:5: accounts[0].secrets: token is a placeholder of its own",
        ),
        (
            variant("    request:\n", "    secrets: {sid: {env: SID, value: x}}\n    request:\n"),
            "cfg.yml:5: accounts[0].secrets.sid: exactly one of file, env, value is required "
            "(found: env, value)",
        ),
        (
            variant("    request:\n", "    secrets: {Sid: {env: SID}}\n    request:\n"),
            "cfg.yml:5: accounts[0].secrets.Sid: String should match pattern",
        ),
        (
            variant("    request:\n", "    response: {format: text}\n    request:\n"),
            "cfg.yml:5: accounts[0].response: format text needs a pattern with named groups",
        ),
        (
            variant(
                "    request:\n", "    response: {format: text, pattern: '[0-9'}\n    request:\n"
            ),
            "cfg.yml:5: accounts[0].response: pattern is not a valid regular expression: "
            "unterminated character set at position 0",
        ),
        (
            variant(
                "    request:\n",
                "    response: {format: text, pattern: '([0-9]+)'}\n    request:\n",
            ),
            "cfg.yml:5: accounts[0].response: pattern needs at least one named group",
        ),
        # What only a backtracking engine runs: refused at load, as RE2 (Prometheus's) does.
        (
            variant(
                "    request:\n",
                "    response: {format: text, pattern: '(?P<b>[0-9])\\1'}\n    request:\n",
            ),
            "cfg.yml:5: accounts[0].response: pattern uses what RE2 syntax (as in Prometheus) "
            "does not have (invalid escape sequence: \\1): backreferences, lookaheads and "
            "lookbehinds cannot be matched in linear time",
        ),
        (
            variant(
                "    request:\n",
                "    response: {format: text, pattern: '(?P<b>[0-9.]+)(?= USD)'}\n    request:\n",
            ),
            "cfg.yml:5: accounts[0].response: pattern uses what RE2 syntax (as in Prometheus) "
            "does not have (invalid perl operator: (?=)",
        ),
        (
            variant("    request:\n", "    response: {pattern: '(?P<b>1)'}\n    request:\n"),
            "cfg.yml:5: accounts[0].response: pattern is for format text",
        ),
        (
            variant("    request:\n", "    error_reasons: {auth: [BAD_KEY]}\n    request:\n"),
            "cfg.yml:2: accounts[0]: error_reasons maps values of error: give error too",
        ),
        (
            variant(
                "    request:\n",
                "    error: e\n    error_reasons: {auth: [X], rate_limited: [X]}\n    request:\n",
            ),
            "cfg.yml:6: accounts[0].error_reasons: 'X' is listed under both auth and rate_limited",
        ),
        (
            variant(
                "    request:\n",
                "    error: e\n    error_reasons: {revoked: [X]}\n    request:\n",
            ),
            "cfg.yml:6: accounts[0].error_reasons.revoked: unknown key",
        ),
        (
            variant("balance_usd: data.balance", "balance_usd: 'subtract(a)'"),
            "cfg.yml:9: accounts[0].values.balance_usd: JMESPath function subtract() takes 2 "
            "argument(s), not 1",
        ),
        (
            variant(
                "    request:\n",
                "    login:\n      request: {url: 'https://api.example.com/login'}\n"
                "      token: token\n    request:\n",
            ),
            "cfg.yml:2: accounts[0]: the login token would never be sent: put {token} in the "
            "request",
        ),
        (
            variant(
                '"Bearer {api_key}"',
                '"Bearer {token}"',
            ).replace(
                "    request:\n",
                "    login:\n      request: {url: 'https://api.example.com/login/{token}', "
                "headers: {X-Key: '{api_key}'}}\n      token: token\n    request:\n",
                1,
            ),
            "cfg.yml:2: accounts[0]: {token} is what login returns",
        ),
        (
            variant(
                '"Bearer {api_key}"',
                '"Bearer {token}"',
            ).replace(
                "    request:\n",
                "    login:\n      request: {url: 'https://api.example.com/login', "
                "headers: {X-Key: '{api_key}'}}\n      token: token\n      expires_in: e\n"
                "      lifetime: 1h\n    request:\n",
                1,
            ),
            "cfg.yml:6: accounts[0].login: give expires_in (read from the answer) or lifetime",
        ),
        (
            variant("https://api.example.com", "ftp://api.example.com"),
            "cfg.yml:6: accounts[0].request.url: must be an http:// or https:// URL with a host",
        ),
        (
            variant("url: https://api.example.com/v1/balance", "url: api.example.com/v1"),
            "cfg.yml:6: accounts[0].request.url: must be an http:// or https:// URL with a host",
        ),
        (
            variant("https://api.example.com", "https://user:pw@api.example.com"),
            "cfg.yml:6: accounts[0].request.url: must not carry credentials",
        ),
        (
            variant("/v1/balance", "/v1/balance#top"),
            "cfg.yml:6: accounts[0].request.url: must not have a fragment",
        ),
        (
            variant("    request:\n", "    base_url: https://api.example.com\n    request:\n"),
            "cfg.yml:5: accounts[0].base_url: http_json has no base_url: request.url is the "
            "whole URL",
        ),
        (
            variant("    request:\n", "    request:\n      method: GET\n      json: {a: 1}\n"),
            "cfg.yml:6: accounts[0].request: json is a request body: use method POST",
        ),
        (
            variant("    request:\n", "    request:\n      method: PUT\n"),
            "cfg.yml:6: accounts[0].request.method: Input should be 'GET' or 'POST'",
        ),
        (
            variant("    request:\n", "    request:\n      methd: POST\n"),
            "cfg.yml:6: accounts[0].request.methd: unknown key (did you mean 'method'?)",
        ),
        (
            variant('"Bearer {api_key}"', '"Bearer {apikey}"'),
            "cfg.yml:2: accounts[0]: the key would never be sent: put {api_key} in a header "
            "value, a query value, the URL path, a string of the json or form body, or "
            "basic_auth",
        ),
        (
            variant('"Bearer {api_key}"', '"Bearer {api_key}\\r\\nX-Evil: 1"'),
            "cfg.yml:7: accounts[0].request.headers.Authorization: a header value must be "
            "printable ASCII on one line",
        ),
        (
            variant("{Authorization:", "{Host: api.example.com, Authorization:"),
            "cfg.yml:7: accounts[0].request.headers: Host is set by the HTTP client",
        ),
        # Only the encodings the client decodes within the 1 MiB cap are asked for.
        (
            variant("{Authorization:", "{Accept-Encoding: br, Authorization:"),
            "cfg.yml:7: accounts[0].request.headers: Accept-Encoding is set by the HTTP client",
        ),
        (
            variant("{Authorization:", '{"Bad Name": x, Authorization:'),
            "cfg.yml:7: accounts[0].request.headers: 'Bad Name' is not a valid header name",
        ),
        (
            variant("{Authorization:", "{authorization: x, Authorization:"),
            "cfg.yml:7: accounts[0].request.headers: header Authorization is given twice",
        ),
        (
            variant(
                '{Authorization: "Bearer {api_key}"}',
                "{Content-Type: text/plain}\n      json: {key: '{api_key}'}",
            ),
            "cfg.yml:6: accounts[0].request: with json, Content-Type is application/json",
        ),
        (
            variant("    request:\n", "    error: 'error.'\n    request:\n"),
            "cfg.yml:5: accounts[0].error: not a valid JMESPath expression",
        ),
        (
            variant("    request:\n", "    ok_status: [200, 401]\n    request:\n"),
            "cfg.yml:5: accounts[0].ok_status: 401 cannot be ok: 401/403 are auth or their "
            "status_reasons",
        ),
        (
            variant("    request:\n", "    ok_status: [302]\n    request:\n"),
            "cfg.yml:5: accounts[0].ok_status: 302 is not a final, non-redirect HTTP status",
        ),
        (
            variant("    request:\n", "    ok_status: [200, 200]\n    request:\n"),
            "cfg.yml:5: accounts[0].ok_status: statuses must not repeat",
        ),
        (
            variant("    request:\n", "    ok_status: []\n    request:\n"),
            "cfg.yml:5: accounts[0].ok_status: List should have at least 1 item",
        ),
        (
            variant("    request:\n", "    ok_status: [ok]\n    request:\n"),
            "cfg.yml:5: accounts[0].ok_status[0]: Input should be a valid integer",
        ),
        (
            variant("    request:\n", "    status_reasons: {403: throttled}\n    request:\n"),
            "cfg.yml:5: accounts[0].status_reasons[403]: Input should be 'auth', 'rate_limited'",
        ),
        (
            variant("    request:\n", "    status_reasons: {302: http}\n    request:\n"),
            "cfg.yml:5: accounts[0].status_reasons: 302 is not a refusal: give a status from 400",
        ),
        (
            variant("    request:\n", "    status_reasons: {600: http}\n    request:\n"),
            "cfg.yml:5: accounts[0].status_reasons: 600 is not a refusal",
        ),
        (
            variant("    request:\n", "    status_reasons: {429: auth}\n    request:\n"),
            "cfg.yml:5: accounts[0].status_reasons: 429 never reaches the definition",
        ),
        (
            variant(
                "    request:\n",
                "    ok_status: [200, 404]\n    status_reasons: {404: http}\n    request:\n",
            ),
            "cfg.yml:2: accounts[0]: 404 is in both ok_status and status_reasons",
        ),
    ],
)
def test_refusals_name_their_place(text: str, expected: str) -> None:
    lines = problems_of(text)
    assert any(line.startswith(expected) for line in lines), lines


def test_every_problem_at_once() -> None:
    text = variant(
        "    values:\n      balance_usd: data.balance\n",
        "    error: '[['\n    values:\n      balance_usd: 'x.'\n      daily_limit_remaining: 'y('\n",
    )
    lines = problems_of(text)
    assert [line.split(": ")[1] for line in lines] == [
        "accounts[0].error",
        "accounts[0].values.balance_usd",
        "accounts[0].values.daily_limit_remaining",
    ]


def test_a_key_in_a_base_url_is_refused_for_every_provider() -> None:
    text = (
        "accounts:\n  - name: d\n    provider: decaptcha\n    api_key: secret-key-42424242\n"
        "    base_url: https://proxy.example.com/secret-key-42424242\n"
    )
    [line] = problems_of(text)
    assert line == (
        "cfg.yml:5: accounts[0].base_url: contains the account's key or a secret; use a placeholder"
    )
    assert "secret-key-42424242" not in line


# -- the request as sent ----------------------------------------------------------------


async def test_get_sends_the_key_in_a_header_only(simulator: Simulator, upstream: Upstream) -> None:
    settings = json_account(
        simulator,
        request={"headers": {"Authorization": "Bearer {api_key}", "X-Literal": "{not_the_key}"}},
    )
    snapshot = await collect(simulator, upstream, settings)
    assert snapshot.outcome.ok, snapshot.outcome.error
    [seen] = simulator.requests
    assert (seen.method, seen.path, seen.query, seen.body) == ("GET", "/json/v1/balance", "", b"")
    assert seen.headers["Authorization"] == f"Bearer {KEY}"
    # Only {api_key} is a placeholder: other braces are sent as written.
    assert seen.headers["X-Literal"] == "{not_the_key}"
    assert KEY not in seen.path + seen.query


async def test_a_static_query_string_is_kept(simulator: Simulator, upstream: Upstream) -> None:
    settings = json_account(simulator, path="/v1/balance?currency=USD&format=json")
    snapshot = await collect(simulator, upstream, settings)
    assert snapshot.outcome.ok, snapshot.outcome.error
    [seen] = simulator.requests
    assert seen.query == "currency=USD&format=json"


async def test_post_fills_the_key_into_body_strings_at_any_depth(
    simulator: Simulator, upstream: Upstream
) -> None:
    body = {
        "key": "{api_key}",
        "auth": {"token": "{api_key}", "nested": [{"k": "pre-{api_key}-post"}]},
        "list": ["{api_key}", 5, None, True, 1.5],
        "{api_key}": "{other} stays",
    }
    settings = json_account(simulator, request={"headers": {}, "json": body})
    snapshot = await collect(simulator, upstream, settings)
    assert snapshot.outcome.ok, snapshot.outcome.error
    [seen] = simulator.requests
    # json given and no method: POST.
    assert (seen.method, seen.path, seen.query) == ("POST", "/json/v1/balance", "")
    assert seen.headers["Content-Type"] == "application/json"
    assert json.loads(seen.body) == {
        "key": KEY,
        "auth": {"token": KEY, "nested": [{"k": f"pre-{KEY}-post"}]},
        "list": [KEY, 5, None, True, 1.5],
        "{api_key}": "{other} stays",
    }
    assert "Authorization" not in seen.headers


async def test_explicit_post_without_body(simulator: Simulator, upstream: Upstream) -> None:
    settings = json_account(simulator, request={"method": "POST"})
    snapshot = await collect(simulator, upstream, settings)
    assert snapshot.outcome.ok, snapshot.outcome.error
    [seen] = simulator.requests
    assert (seen.method, seen.body) == ("POST", b"")


async def test_an_unknown_key_is_auth(simulator: Simulator, upstream: Upstream) -> None:
    settings = json_account(simulator, api_key="not-the-simulated-key-1")
    snapshot = await collect(simulator, upstream, settings)
    assert snapshot.outcome.reason is Reason.AUTH


# -- values -----------------------------------------------------------------------------

ALL_VALUES = {
    "balance_usd": "data.balance",
    "daily_limit_remaining": "limits.left",
    "daily_limit_reset_seconds": "limits.reset_in",
    "credits": [
        {"credit_type": "sms", "pool": "one_time", "path": "credits.sms"},
        {"credit_type": "sms", "pool": "monthly", "path": "credits.monthly[0].left"},
        {"credit_type": "email", "pool": "one_time", "path": "sum(credits.email[*].n)"},
    ],
}


def full_payload(balance: Any) -> dict[str, Any]:
    return {
        "data": {"balance": balance},
        "limits": {"left": "4,200", "reset_in": 3600},
        "credits": {"sms": 830, "monthly": [{"left": "1,000.5"}], "email": [{"n": 2}, {"n": 3}]},
    }


@pytest.mark.parametrize(
    ("balance", "expected"),
    [
        (12, 12.0),
        (12.75, 12.75),
        (0, 0.0),
        ("1,250.75", 1250.75),
        ("300.00", 300.0),
        (" 42 ", 42.0),
        ("1e3", 1000.0),
        (-2.5, -2.5),
        ("-2.50", -2.5),
    ],
)
async def test_every_value_kind(
    simulator: Simulator, upstream: Upstream, balance: Any, expected: float
) -> None:
    settings = json_account(simulator, values=ALL_VALUES)
    snapshot = await collect(simulator, upstream, settings, payload=full_payload(balance))
    assert snapshot.outcome.reading == Reading(
        balance_usd=expected,
        credits=(
            Credit("sms", "one_time", 830.0),
            Credit("sms", "monthly", 1000.5),
            Credit("email", "one_time", 5.0),
        ),
        daily_limit_remaining=4200.0,
        daily_limit_reset_seconds=3600.0,
    )


async def test_values_not_configured_are_not_reported(
    simulator: Simulator, upstream: Upstream
) -> None:
    settings = json_account(
        simulator,
        values={"credits": [{"credit_type": "gb", "pool": "traffic", "path": "left"}]},
    )
    snapshot = await collect(simulator, upstream, settings, payload={"left": 3, "balance": 9})
    assert snapshot.outcome.reading == Reading(credits=(Credit("gb", "traffic", 3.0),))


async def test_a_bare_number_answer(simulator: Simulator, upstream: Upstream) -> None:
    settings = json_account(simulator, values={"balance_usd": "@"})
    snapshot = await collect(simulator, upstream, settings, raw(200, "884.05"))
    assert snapshot.outcome.reading == Reading(balance_usd=884.05)


@pytest.mark.parametrize(
    ("fault", "cause"),
    [
        (respond(200, {"data": {"balance": None}}), "values.balance_usd is null or missing"),
        (respond(200, {"data": {}}), "values.balance_usd is null or missing"),
        (respond(200, {"other": 1}), "values.balance_usd is null or missing"),
        (respond(200, {"data": {"balance": True}}), "values.balance_usd is not a number"),
        (respond(200, {"data": {"balance": [1]}}), "values.balance_usd is not a number"),
        (respond(200, {"data": {"balance": {"usd": 1}}}), "values.balance_usd is not a number"),
        (respond(200, {"data": {"balance": "abc"}}), "values.balance_usd is not a numeric"),
        (respond(200, {"data": {"balance": "1.250,75"}}), "values.balance_usd is not a numeric"),
        (respond(200, {"data": {"balance": "NaN"}}), "values.balance_usd is not a numeric"),
        (respond(200, {"data": {"balance": "inf"}}), "values.balance_usd is not a numeric"),
        (respond(200, {"data": {"balance": ""}}), "values.balance_usd is not a numeric"),
        (raw(200, '{"data": {"balance": NaN}}'), "HTTP 200 body is not JSON"),
        (raw(200, '{"data": {"balance": Infinity}}'), "HTTP 200 body is not JSON"),
        (raw(200, '{"data": {"balance": 1e999}}'), "values.balance_usd is not a finite number"),
        (respond(200, "<html><body>maintenance</body></html>"), "HTTP 200 body is HTML"),
        (raw(200, ""), "HTTP 200 body is not JSON"),
        (raw(200, '{"data": '), "HTTP 200 body is not JSON"),
        (raw(200, "[1, 2]"), "values.balance_usd is null or missing"),
    ],
)
async def test_values_that_are_not_numbers(
    simulator: Simulator, upstream: Upstream, fault: Fault, cause: str
) -> None:
    settings = json_account(simulator, values={"balance_usd": "data.balance"})
    snapshot = await collect(simulator, upstream, settings, fault)
    assert snapshot.outcome.reason is Reason.INVALID_RESPONSE
    assert snapshot.outcome.error is not None
    assert snapshot.outcome.error.cause.startswith(cause), snapshot.outcome.error.cause
    assert snapshot.outcome.reading is None


@pytest.mark.parametrize(
    ("payload", "cause"),
    [
        ({"credits": {"sms": -1}}, "values.credits[0] is negative"),
        ({"credits": {"sms": "-1"}}, "values.credits[0] is negative"),
        ({"credits": {}}, "values.credits[0] is null or missing"),
        ({"credits": {"sms": 5}, "left": -3}, "values.daily_limit_remaining is negative"),
    ],
)
async def test_only_the_balance_may_be_negative(
    simulator: Simulator, upstream: Upstream, payload: Any, cause: str
) -> None:
    values = {
        "daily_limit_remaining": "left || `0`",
        "credits": [{"credit_type": "sms", "pool": "one_time", "path": "credits.sms"}],
    }
    settings = json_account(simulator, values=values)
    snapshot = await collect(simulator, upstream, settings, payload=payload)
    assert snapshot.outcome.error is not None
    assert (snapshot.outcome.reason, snapshot.outcome.error.cause) == (
        Reason.INVALID_RESPONSE,
        cause,
    )


@pytest.mark.parametrize(
    ("plan", "allowance"),
    [({"limit": 5000}, 5000.0), ({"limit": "5,000"}, 5000.0), ({"limit": None}, None), ({}, None)],
)
async def test_a_plans_allowance_is_read_where_the_answer_says_it(
    simulator: Simulator, upstream: Upstream, plan: dict[str, Any], allowance: float | None
) -> None:
    """A null or missing allowance is a plan that grants none (pay as you go), not a fault."""
    credit = {"credit_type": "sms", "pool": "monthly", "path": "left", "allowance": "plan.limit"}
    settings = json_account(simulator, values={"credits": [credit]})
    snapshot = await collect(simulator, upstream, settings, payload={"left": 328, "plan": plan})
    assert snapshot.outcome.reading is not None
    assert snapshot.outcome.reading.credits == (Credit("sms", "monthly", 328.0, allowance),)


@pytest.mark.parametrize(
    ("limit", "cause"),
    [
        (-1, "values.credits[0].allowance is negative"),
        ("plenty", "values.credits[0].allowance is not a numeric string"),
        ([5000], "values.credits[0].allowance is not a number"),
    ],
)
async def test_an_allowance_that_is_not_a_count_fails_the_collection(
    simulator: Simulator, upstream: Upstream, limit: Any, cause: str
) -> None:
    credit = {"credit_type": "sms", "pool": "monthly", "path": "left", "allowance": "limit"}
    settings = json_account(simulator, values={"credits": [credit]})
    snapshot = await collect(simulator, upstream, settings, payload={"left": 1, "limit": limit})
    assert snapshot.outcome.error is not None
    assert (snapshot.outcome.reason, snapshot.outcome.error.cause) == (
        Reason.INVALID_RESPONSE,
        cause,
    )


async def test_an_expression_that_fails_on_the_answer(
    simulator: Simulator, upstream: Upstream
) -> None:
    settings = json_account(simulator, values={"balance_usd": "abs(data.balance)"})
    payload = {"data": {"balance": "secret provider text"}}
    snapshot = await collect(simulator, upstream, settings, payload=payload)
    assert snapshot.outcome.error is not None
    assert snapshot.outcome.reason is Reason.INVALID_RESPONSE
    assert snapshot.outcome.error.cause == (
        "values.balance_usd: the expression does not apply to this answer"
    )


@pytest.mark.parametrize(
    "expression",
    ["[@,@][]" * 21, " | ".join(["[@,@][]"] * 21), " | ".join(["{a: @, b: @}"] * 11)],
    ids=["chained", "piped", "objects"],
)
def test_an_expression_that_multiplies_its_input_is_refused(expression: str) -> None:
    text = variant("balance_usd: data.balance", f"balance_usd: 'length({expression})'")
    [line] = problems_of(text)
    assert line.startswith("cfg.yml:9: accounts[0].values.balance_usd: the multi-selects ")
    assert line.endswith("times; at most 1000 is allowed")


async def test_reading_an_answer_has_a_bounded_cost(
    simulator: Simulator, upstream: Upstream
) -> None:
    # Each expression is cheap; together, on a long answer, they would hold the event loop.
    expression = "length(items[*].[@, @][])"
    settings = json_account(
        simulator,
        values={
            "balance_usd": expression,
            "credits": [{"credit_type": "sms", "pool": "one_time", "path": expression}],
        },
    )
    short = await collect(simulator, upstream, settings, payload={"items": [1] * 1000})
    assert short.outcome.reading is not None
    assert short.outcome.reading.balance_usd == 2000.0
    long = await collect(simulator, upstream, settings, payload={"items": [1] * 5000})
    assert long.outcome.reason is Reason.INVALID_RESPONSE
    assert long.outcome.error is not None
    assert long.outcome.error.cause == (
        "values.credits[0]: reading this answer takes more than 100000 steps"
    )


# -- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "reason", "cause"),
    [
        (
            respond(200, {"error": {"message": "Card 4111 declined, call +1 555"}}),
            Reason.PROVIDER_ERROR,
            "error field set",
        ),
        (
            respond(200, {"error": {"message": ""}, "balance": 3}),
            Reason.PROVIDER_ERROR,
            "error field set",
        ),
        (
            respond(400, {"error": {"message": "insufficient funds for Card 4111"}}),
            Reason.PROVIDER_ERROR,
            "HTTP 400, error field set",
        ),
        (respond(400, {"detail": "bad request"}), Reason.HTTP, "HTTP 400"),
        (respond(404, "<html>Not Found</html>"), Reason.HTTP, "HTTP 404"),
        (
            respond(500, {"error": {"message": "database down"}}),
            Reason.HTTP,
            "HTTP 500",
        ),
        (respond(401, {"error": {"message": "bad key"}}), Reason.AUTH, "HTTP 401: key rejected"),
        (respond(403, "<html>Forbidden</html>"), Reason.AUTH, "HTTP 403: key rejected"),
        (
            respond(429, {"error": {"message": "slow"}}, headers={"Retry-After": "30"}),
            Reason.RATE_LIMITED,
            "HTTP 429 Too Many Requests",
        ),
        (respond(302, "", headers={"Location": "http://elsewhere.invalid/"}), Reason.HTTP, ""),
        (respond(202, {"balance": 1}), Reason.HTTP, "HTTP 202"),
    ],
)
async def test_errors(
    simulator: Simulator, upstream: Upstream, fault: Fault, reason: Reason, cause: str
) -> None:
    settings = json_account(simulator, error="error.message", ok_status=[200])
    snapshot = await collect(simulator, upstream, settings, fault)
    error = snapshot.outcome.error
    assert error is not None
    assert error.reason is reason
    assert error.cause.startswith(cause), error.cause
    # The provider's free text never becomes the cause.
    assert "4111" not in error.cause
    assert "database" not in error.cause
    assert snapshot.errors[reason] == 1
    if reason is Reason.RATE_LIMITED:
        assert error.retry_after == 30


async def test_error_null_is_success(simulator: Simulator, upstream: Upstream) -> None:
    settings = json_account(simulator, error="error.message")
    payload = {"balance": 7, "error": {"message": None}}
    snapshot = await collect(simulator, upstream, settings, payload=payload)
    assert snapshot.outcome.reading == Reading(balance_usd=7.0)


@pytest.mark.parametrize(
    ("success", "reason"),
    [(True, None), (False, Reason.PROVIDER_ERROR), (None, None)],
)
async def test_a_condition_as_error(
    simulator: Simulator, upstream: Upstream, success: bool | None, reason: Reason | None
) -> None:
    settings = json_account(simulator, error="success == `false` || null")
    payload = {"balance": 7, "success": success}
    snapshot = await collect(simulator, upstream, settings, payload=payload)
    assert snapshot.outcome.reason is reason


async def test_listed_statuses_are_read(simulator: Simulator, upstream: Upstream) -> None:
    settings = json_account(simulator, ok_status=[200, 402], error="error")
    ok = await collect(simulator, upstream, settings, respond(402, {"balance": 0}))
    assert ok.outcome.reading == Reading(balance_usd=0.0)
    refused = await collect(
        simulator, upstream, settings, respond(402, {"balance": 0, "error": "no money"})
    )
    assert refused.outcome.reason is Reason.PROVIDER_ERROR


async def test_a_slow_answer_is_a_timeout(simulator: Simulator, upstream: Upstream) -> None:
    settings = json_account(simulator, timeout="300ms")
    snapshot = await collect(simulator, upstream, settings, delay(2))
    assert snapshot.outcome.reason is Reason.TIMEOUT


# -- through the exporter: metrics, cache, coalescing ----------------------------------


async def test_metrics_cache_and_coalescing(
    simulator: Simulator, make_exporter: ExporterFactory, caplog: pytest.LogCaptureFixture
) -> None:
    simulator.add(
        "json",
        JsonAccount(KEY, payload=full_payload("1,250.75")).then(delay(0.3)),
    )
    settings = json_account(simulator, values=ALL_VALUES, cache_ttl="60s", low_balance_usd=100)
    settings["name"] = "sms"
    _, client = await make_exporter({"accounts": [settings]})
    caplog.set_level(logging.DEBUG)

    # Three scrapes at once share one upstream request; a later one is served from the cache.
    responses = await asyncio.gather(*(client.get("/metrics") for _ in range(3)))
    texts = [await response.text() for response in responses]
    again = await client.get("/probe", params={"account": "sms"})
    texts.append(await again.text())
    assert simulator.calls[("json", KEY)] == 1

    for text in texts:
        found = samples(text)
        ids = {"provider": "http_json", "account": "sms"}
        assert value(found, "apibalance_up", **ids) == 1.0
        assert value(found, "apibalance_balance_usd", **ids) == 1250.75
        assert value(found, "apibalance_low_balance_threshold_usd", **ids) == 100.0
        assert value(found, "apibalance_daily_limit_remaining", **ids) == 4200.0
        assert value(found, "apibalance_daily_limit_reset_seconds", **ids) == 3600.0
        assert (
            value(found, "apibalance_credits", **ids, credit_type="sms", pool="monthly") == 1000.5
        )
        assert value(found, "apibalance_credits", **ids, credit_type="email", pool="one_time") == 5
    no_secret_in([*texts, *(str(record.__dict__) for record in caplog.records)], KEY)


async def test_a_failure_shows_up_0_and_no_balance(
    simulator: Simulator, make_exporter: ExporterFactory, caplog: pytest.LogCaptureFixture
) -> None:
    simulator.add(
        "json",
        SimAccount(KEY).then(respond(200, {"balance": 5, "error": {"message": f"bad {KEY}"}})),
    )
    settings = json_account(simulator, error="error.message", cache_ttl="0s")
    _, client = await make_exporter({"accounts": [settings]})
    caplog.set_level(logging.DEBUG)
    text = await (await client.get("/metrics")).text()
    found = samples(text)
    ids = {"provider": "http_json", "account": "acct"}
    assert value(found, "apibalance_up", **ids) == 0.0
    assert value(found, "apibalance_balance_usd", **ids) is None
    assert value(found, "apibalance_collect_errors_total", **ids, reason="provider_error") == 1.0
    causes = [getattr(record, "cause", None) for record in caplog.records]
    assert "error field set" in causes
    # Next scrape: the script is used up and the answer is good again.
    found = samples(await (await client.get("/metrics")).text())
    assert value(found, "apibalance_up", **ids) == 1.0
    assert value(found, "apibalance_balance_usd", **ids) == 10.0
    no_secret_in([text, *(str(record.__dict__) for record in caplog.records)], KEY)


async def test_promtool_accepts_http_json_series(
    simulator: Simulator, make_exporter: ExporterFactory
) -> None:
    simulator.add("json", JsonAccount(KEY, payload=full_payload(3)))
    _, client = await make_exporter(
        {"accounts": [json_account(simulator, values=ALL_VALUES, low_balance_usd=1)]}
    )
    body = await (await client.get("/metrics")).read()
    assert_promtool_accepts_metrics(body)


# -- the documented examples ----------------------------------------------------------

# Where each example's real service is played by the simulator (its origin -> a prefix).
SIMULATED_ORIGINS = {
    "https://api.example.com": "json",
    "https://api.telnyx.com": "telnyx",
    "https://api.deepseek.com": "deepseek",
    "https://api.evomi.com": "evomi",
    "https://captcha.datalabs.net": "datalabs",
    "https://openrouter.ai": "json",
}
EXAMPLE_PAYLOAD = {
    "data": {"balance": "1,250.75"},
    "limits": {"left": 4200, "reset_in": 3600},
    "credits": {"sms": 830},
    "error": None,
}
# account name -> (the simulated account, what it must read, the reason for a wrong key)
EXPECTED: dict[str, tuple[SimAccount, Reading, Reason]] = {
    "sms": (
        JsonAccount("readme-sms-key-0001", payload=EXAMPLE_PAYLOAD),
        Reading(
            balance_usd=1250.75,
            credits=(Credit("sms", "one_time", 830.0),),
            daily_limit_remaining=4200.0,
            daily_limit_reset_seconds=3600.0,
        ),
        Reason.AUTH,
    ),
    "telnyx": (
        SimAccount("readme-telnyx-key-0001", balance=300.0),
        Reading(balance_usd=300.0),
        Reason.AUTH,
    ),
    "deepseek": (
        SimAccount("readme-deepseek-key-0001", balance=42.5),
        Reading(balance_usd=42.5),
        Reason.AUTH,
    ),
    "proxies": (
        JsonAccount(
            "readme-evomi-key-0001",
            balance=133700.848432,
            proxy_mb={"rp": 2048.0, "mp": 512.5, "dcp": 0.0},
        ),
        Reading(
            credits=(
                Credit("traffic_mb", "core_residential", 133700.848432),
                Credit("traffic_mb", "premium_residential", 2048.0),
                Credit("traffic_mb", "mobile", 512.5),
            )
        ),
        Reason.AUTH,
    ),
    # OpenRouter's current-key answer (its SDK's GetCurrentKeyResponse example).
    "openrouter-key": (
        JsonAccount(
            "readme-openrouter-key-0001",
            payload={
                "data": {
                    "label": "sk-or-v1-au7...890",
                    "limit": 100,
                    "limit_remaining": 74.5,
                    "limit_reset": "monthly",
                    "usage": 25.5,
                    "is_free_tier": False,
                    "is_management_key": False,
                }
            },
        ),
        Reading(balance_usd=74.5),
        Reason.AUTH,
    ),
    # The anti-captcha protocol answers a wrong key with HTTP 200 and an errorCode.
    "datalabs": (
        SimAccount("readme-datalabs-key-0001", balance=12.5),
        Reading(balance_usd=12.5),
        Reason.AUTH,
    ),
}


def readme_examples() -> list[str]:
    return readme_yaml(SECTION)


def readme_accounts() -> list[dict[str, Any]]:
    accounts = []
    for block in readme_examples():
        data = yaml.safe_load(block)
        accounts.extend(data["accounts"])
    return accounts


def test_the_readme_examples_are_all_checked() -> None:
    blocks = readme_examples()
    assert len(blocks) >= 4
    names = [acct["name"] for acct in readme_accounts()]
    assert sorted(names) == sorted(EXPECTED)
    for block in blocks:
        # Every block is a whole config file that loads as written (secrets aside).
        data = yaml.safe_load(block)
        assert set(data) == {"accounts"}
        for acct in data["accounts"]:
            assert acct["provider"] == "http_json"
            origin = re.match(r"https://[^/]+", acct["request"]["url"])
            assert origin is not None
            assert origin.group(0) in SIMULATED_ORIGINS
        env = dict.fromkeys(
            ("SMS_KEY", "TELNYX_API_KEY", "EVOMI_API_KEY", "DATALABS_KEY", "OPENROUTER_API_KEY"),
            "x" * 20,
        )
        # The only acceptable problem is a key file that exists on a real machine only.
        for line in load_problems(block, env):
            assert "api_key_file: cannot read the file it names" in line


def load_problems(text: str, env: dict[str, str]) -> list[str]:
    try:
        parse_config(text, source="README.md", environ=env)
    except ConfigError as error:
        return error.lines
    return []


def simulated(acct: dict[str, Any], simulator: Simulator, key: str) -> dict[str, Any]:
    """The documented account as written, but asking the simulator, with a literal test key."""
    settings = {k: v for k, v in acct.items() if k not in ("api_key_env", "api_key_file")}
    url = acct["request"]["url"]
    origin = re.match(r"https://[^/]+", url)
    assert origin is not None
    prefix = simulator.base_url(SIMULATED_ORIGINS[origin.group(0)])
    settings["request"] = {**acct["request"], "url": prefix + url[len(origin.group(0)) :]}
    return {**settings, "api_key": key}


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_readme_example(simulator: Simulator, upstream: Upstream, name: str) -> None:
    [acct] = [a for a in readme_accounts() if a["name"] == name]
    sim, expected, bad_key_reason = EXPECTED[name]
    origin = re.match(r"https://[^/]+", acct["request"]["url"])
    assert origin is not None
    simulator.add(SIMULATED_ORIGINS[origin.group(0)], sim)
    good = simulated(acct, simulator, sim.key)
    wrong = {**simulated(acct, simulator, "readme-wrong-key-0001"), "name": "wrong"}
    config = build_config({"accounts": [good, wrong]}, source="README.md")
    snapshots = await Engine(config, upstream).collect()
    by_name = {snapshot.account.name: snapshot.outcome for snapshot in snapshots}
    assert by_name[name].error is None, by_name[name].error
    assert by_name[name].reading == expected
    assert by_name["wrong"].reason is bad_key_reason
    for seen in simulator.requests:
        assert sim.key not in seen.path + seen.query


async def test_datalabs_by_config_matches_the_built_in_provider(
    simulator: Simulator, make_exporter: ExporterFactory
) -> None:
    [acct] = [a for a in readme_accounts() if a["name"] == "datalabs"]
    simulator.add("datalabs", SimAccount("same-datalabs-key-0001", balance=25.0))
    by_config = {**simulated(acct, simulator, "same-datalabs-key-0001"), "low_balance_usd": 5}
    built_in = account(
        "datalabs",
        "datalabs",
        "same-datalabs-key-0001",
        simulator.base_url("datalabs"),
        low_balance_usd=5,
    )
    by_config["name"] = "datalabs-by-config"
    _, client = await make_exporter({"accounts": [built_in, by_config]})
    found = samples(await (await client.get("/metrics")).text())

    def series(provider: str, name: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        picked = {}
        for (metric, labels), number in found.items():
            tags = dict(labels)
            if (tags.get("provider"), tags.get("account")) != (provider, name):
                continue
            if metric.startswith(
                ("apibalance_collect_duration", "apibalance_last_success_timestamp")
            ):
                continue  # timings differ between any two requests
            if metric == "apibalance_account_info":
                continue  # a configured API is named by its host, and knows no page to pay on
            rest = frozenset((k, v) for k, v in labels if k not in ("provider", "account"))
            picked[(metric, rest)] = number
        return picked

    mine = series("http_json", "datalabs-by-config")
    theirs = series("datalabs", "datalabs")
    assert mine == theirs
    assert mine[("apibalance_balance_usd", frozenset())] == 25.0
    assert mine[("apibalance_up", frozenset())] == 1.0


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("a == b", True),
        ("a != c", True),
        ("a == c", False),
        ("s < t", True),
        ("n >= `2`", True),
        ("a < b", None),  # ordering is for numbers and strings only
        ("`true` < `false`", None),
        ("contains(a, `2`)", True),
        ("to_string(n)", "2"),
        ("length(s)", 5),
    ],
)
def test_comparisons_and_functions_keep_their_meaning_under_the_budget(
    expression: str, expected: Any
) -> None:
    body = {
        "a": [1, 2, {"x": "y"}],
        "b": [1, 2, {"x": "y"}],
        "c": [1, 2],
        "s": "apple",
        "t": "b",
        "n": 2,
    }
    assert search(compile_expression(expression), body, "test", Budget()) == expected


@pytest.mark.parametrize(
    ("expression", "at_least"),
    [
        ("a == b", 120_000),
        ("a != b", 120_000),
        ("contains(a, `1`)", 120_000),
        ("to_string(a)", 120_000),
        # A string is compared a KiB to a step.
        ("s == t", 195),
        ("s < t", 195),
    ],
)
def test_a_comparison_or_function_is_charged_what_it_reads(expression: str, at_least: int) -> None:
    items: list[Any] = [[0, {"k": "v"}]] * 40_000  # 120,000 values in one shallow list
    body = {"a": items, "b": list(items), "s": "x" * 200_000, "t": "x" * 200_000}
    budget = Budget(10_000_000)
    search(compile_expression(expression), body, "test", budget)
    assert 10_000_000 - budget.steps_left >= at_least


def test_comparing_subtrees_larger_than_the_budget_is_refused() -> None:
    body = {"a": [0] * 150_000, "b": [0] * 150_000}
    with pytest.raises(CollectError, match="takes more than 100000 steps"):
        search(compile_expression("a == b"), body, "test", Budget())
