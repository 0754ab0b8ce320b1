"""`/probe?account=NAME&debug=true` and `--collect.once --collect.debug`: the requests as sent,
the answers, each value read and the outcome, with every secret redacted wherever it travels
(docs/configuration.md: Debugging an account). The upstream is a real server on loopback that
echoes everything it received, so each secret comes back in the answer too."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from exporter import debug
from exporter.cli import main
from exporter.config import build_config
from exporter.engine import Engine
from exporter.once import collect_once
from exporter.trace import MAX_BODY_SHOWN, TRACE
from exporter.upstream import Upstream
from exporter.webconfig import load_web_config
from tests.helpers import http_json_account, write_config

CANARY = "CANARY-dbg-0f3c9a1e7b5d"
# A key with the characters that a query string, a path segment, a form and JSON each encode.
ODD_CANARY = 'CANARY/odd+key=&?"é-9d8c7b'
USER = "CANARY-user-5a6b7c8d9e"
TOKEN = "CANARY-token-1a2b3c4d5e6f"


class Echo:
    """Answers every request with a balance and all it received: path, query, headers, body."""

    def __init__(self) -> None:
        self.balance: Any = 12.5
        self.status = 200
        self.runner: web.AppRunner | None = None
        self.url = ""
        self.requests = 0
        self.asked = asyncio.Event()
        # When set: answers wait until it is released.
        self.hold: asyncio.Event | None = None

    async def answer(self, request: web.Request) -> web.Response:
        self.requests += 1
        self.asked.set()
        if self.hold is not None:
            await self.hold.wait()
        body = await request.read()
        if request.path.endswith("/login"):
            return web.json_response({"token": TOKEN, "echo": dict(request.headers)})
        seen = {
            "path": request.raw_path,
            "headers": dict(request.headers),
            "body": body.decode("utf-8", errors="replace"),
        }
        return web.json_response(
            {"data": {"balance": self.balance}, "seen": seen}, status=self.status
        )

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.answer)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"


@pytest.fixture
async def echo() -> AsyncIterator[Echo]:
    server = Echo()
    await server.start()
    yield server
    assert server.runner is not None
    await server.runner.cleanup()


PLACEMENTS: dict[str, dict[str, Any]] = {
    "header": {"request": {"headers": {"X-Token": "{api_key}"}}},
    "query": {"request": {"query": {"api_key": "{api_key}"}}},
    "json body": {"request": {"json": {"key": "{api_key}"}}},
    "form body": {"request": {"form": {"key": "{api_key}"}}},
    "basic auth": {
        "request": {"basic_auth": {"username": "{user}", "password": "{api_key}"}},
        "secrets": {"user": {"value": USER}},
    },
}


def settings(echo: Echo, key: str, placement: str, **more: Any) -> dict[str, Any]:
    url = echo.url + ("/v1/{api_key}/balance" if placement == "path" else "/v1/balance")
    extra = PLACEMENTS.get(placement, {})
    return http_json_account(
        url,
        key,
        values={"balance_usd": "data.balance"},
        **{**extra, "request": {**extra.get("request", {})}},
        **more,
    )


def asking(echo: Echo, headers: dict[str, str] | None = None, **more: Any) -> dict[str, Any]:
    """An http_json account asking the echo server for its balance, the key in a header."""
    return http_json_account(
        echo.url + "/v1/balance",
        CANARY,
        request={"headers": headers or {"X-Token": "{api_key}"}},
        **{"values": {"balance_usd": "data.balance"}, **more},
    )


def assert_no_secret(text: str, *secrets: str) -> None:
    for secret in secrets:
        encoded = base64.b64encode(f"{USER}:{secret}".encode()).decode()
        for form in (secret, json.dumps(secret)[1:-1], encoded, secret[:12]):
            assert form not in text, form
    # The encodings a URL and a form give the odd key: none of its URL-encoded forms either.
    assert "odd%2B" not in text
    assert "odd+key" not in text
    assert "CANARY%2F" not in text


async def traced(echo: Echo, upstream: Upstream, account: dict[str, Any]) -> str:
    engine = Engine(build_config({"accounts": [account]}, source="test", environ={}), upstream)
    return debug.render(await debug.traced_collection(engine, "acct"))


# A header cannot carry the odd key (it is no valid header value).
CASES = [(p, CANARY) for p in [*PLACEMENTS, "path"]] + [
    (p, ODD_CANARY) for p in ("query", "json body", "form body", "path")
]


@pytest.mark.parametrize(("placement", "key"), CASES)
async def test_every_placement_is_shown_with_the_key_redacted(
    echo: Echo, upstream: Upstream, placement: str, key: str
) -> None:
    text = await traced(echo, upstream, settings(echo, key, placement))
    assert_no_secret(text, key, USER)
    lines = text.splitlines()
    method = "POST" if "body" in placement else "GET"
    assert any(line.startswith(f"request 1: {method} {echo.url}/v1/") for line in lines), text
    assert "answer 1: HTTP 200, application/json; charset=utf-8" in text
    assert "  values.balance_usd: data.balance -> 12.5" in lines
    assert "read: balance 12.5 USD" in lines
    assert lines[-1].startswith("outcome: up 1")
    # The answer echoed the key back: it is there, redacted.
    assert '"seen": {"path": "/v1/' in text
    assert "<redacted>" in text


async def test_a_login_token_is_redacted_in_the_request_and_both_answers(
    echo: Echo, upstream: Upstream
) -> None:
    login = {
        "request": {"url": echo.url + "/v1/login", "headers": {"X-Key": "{api_key}"}},
        "token": "token",
    }
    account = asking(echo, headers={"Authorization": "Bearer {token}"}, login=login)
    text = await traced(echo, upstream, account)
    assert_no_secret(text, CANARY, TOKEN)
    assert "  login.token: token -> <redacted>" in text.splitlines()
    assert "request 2: GET" in text
    assert "headers: User-Agent, Accept, Accept-Encoding, Authorization" in text


async def test_a_path_typo_shows_the_answer_and_why_the_value_failed(
    echo: Echo, upstream: Upstream
) -> None:
    account = asking(echo, values={"balance_usd": "data.balanse"})
    lines = (await traced(echo, upstream, account)).splitlines()
    assert (
        "  values.balance_usd: data.balanse -> null (values.balance_usd is null or missing)"
        in lines
    )
    assert lines[-1].startswith(
        "outcome: up 0, reason invalid_response: values.balance_usd is null or missing"
    )


async def test_a_long_answer_is_cut_after_redaction(echo: Echo, upstream: Upstream) -> None:
    echo.balance = "x" * 10_000
    text = await traced(echo, upstream, settings(echo, CANARY, "header"))
    assert '"x' + "x" * 100 in text
    assert "... (cut)" in text
    assert "answer 1: HTTP 200, application/json; charset=utf-8, 10" in text
    assert max(len(line) for line in text.splitlines()) < MAX_BODY_SHOWN + 100
    # A key echoed across the cut: redacted first, so not even its start is left standing.
    head = '{"data": {"balance": "'
    # Seven characters before the cut: too few for the log's rule on echoed starts of keys.
    echo.balance = "x" * (MAX_BODY_SHOWN - 7 - len(head)) + CANARY
    text = await traced(echo, upstream, settings(echo, CANARY, "header"))
    assert CANARY[:7] not in text


async def test_the_cache_and_minimum_interval_are_kept_and_said(
    echo: Echo, upstream: Upstream
) -> None:
    config = build_config(
        {"accounts": [settings(echo, CANARY, "header", cache_ttl="1h")]},
        source="test",
        environ={},
    )
    engine = Engine(config, upstream)
    first = debug.render(await debug.traced_collection(engine, "acct"))
    assert "not asked" not in first
    again = debug.render(await debug.traced_collection(engine, "acct"))
    assert echo.requests == 1
    assert "not asked by this request: the last answer is 0 s old, within cache_ttl (1 h)" in again
    # The debug collection that gave the outcome shown is shown with it.
    assert "request 1: GET" in again
    # A scrape's collection, not a debug one: nothing recorded to show.
    await engine.collect()
    assert echo.requests == 1
    engine.states["acct"].last_trace = None
    third = debug.render(await debug.traced_collection(engine, "acct"))
    assert "request 1" not in third
    assert third.splitlines()[-1].startswith("outcome: up 1")


async def test_a_rejected_key_is_not_asked_again_within_its_back_off(
    echo: Echo, upstream: Upstream
) -> None:
    echo.status = 401
    engine = Engine(
        build_config({"accounts": [settings(echo, CANARY, "header")]}, source="test", environ={}),
        upstream,
    )
    first = debug.render(await debug.traced_collection(engine, "acct"))
    assert "answer 1: HTTP 401" in first
    again = debug.render(await debug.traced_collection(engine, "acct"))
    assert echo.requests == 1
    assert re.search(
        r"not asked by this request: the upstream may not be asked again for (59 s|1 min)", again
    )
    assert again.splitlines()[-1].startswith("outcome: up 0, reason auth")


async def test_the_normal_path_records_nothing(echo: Echo, upstream: Upstream) -> None:
    engine = Engine(
        build_config({"accounts": [settings(echo, CANARY, "header")]}, source="test", environ={}),
        upstream,
    )
    await engine.collect()
    assert TRACE.get() is None
    assert engine.states["acct"].last_trace is None


async def test_probe_debug_answers_text_behind_the_same_checks(
    echo: Echo, make_exporter: Any
) -> None:
    _, client = await make_exporter({"accounts": [settings(echo, CANARY, "query")]})
    response = await client.get("/probe", params={"account": "acct", "debug": "true"})
    assert response.status == 200
    assert response.content_type == "text/plain"
    text = await response.text()
    assert_no_secret(text, CANARY)
    assert "?api_key=<redacted>" in text
    unknown = await client.get("/probe", params={"account": "nope", "debug": "true"})
    assert unknown.status == 400


async def test_collect_once_debug(echo: Echo, upstream: Upstream) -> None:
    config = build_config(
        {"accounts": [settings(echo, CANARY, "json body")]}, source="test", environ={}
    )
    [debugged] = await collect_once(config, debug=True)
    text = debug.render(debugged)
    assert "request 1: POST" in text
    assert_no_secret(text, CANARY)


def test_collect_debug_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(
        tmp_path,
        {
            "accounts": [
                {
                    "name": "gone",
                    "provider": "datalabs",
                    "api_key": CANARY,
                    "base_url": "http://127.0.0.1:9",
                    "timeout": "1s",
                }
            ]
        },
    )
    code = main(["--collect.once", "--collect.debug", "--config.file", str(path)])
    out = capsys.readouterr().out
    assert code == 1
    assert "request 1: POST http://127.0.0.1:9/getBalance" in out
    assert "answer 1: none: connection" in out
    assert CANARY not in out
    assert "<redacted>" in out
    with pytest.raises(SystemExit):
        main(["--collect.debug", "--config.file", str(path)])


async def test_the_landing_page_links_the_debug_output_of_an_account_that_is_down(
    echo: Echo, make_exporter: Any
) -> None:
    echo.status = 500
    _, client = await make_exporter({"accounts": [settings(echo, CANARY, "header")]})
    await client.get("/probe", params={"account": "acct"})
    page = await (await client.get("/")).text()
    assert '<a href="/probe?account=acct&amp;debug=true">debug</a>' in page
    echo.status = 200
    await client.get("/probe", params={"account": "acct"})
    assert "debug=true" not in await (await client.get("/")).text()


async def test_the_back_off_is_logged_as_the_landing_page_writes_it(
    echo: Echo, upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    echo.status = 401
    config = build_config(
        {"accounts": [settings(echo, CANARY, "header")]}, source="test", environ={}
    )
    await Engine(config, upstream).collect()
    [record] = [r for r in caplog.records if r.getMessage() == "collection failed"]
    assert record.__dict__["retry_in"] == "1 min"


async def test_probe_debug_asks_for_the_same_credentials_as_probe(
    echo: Echo, make_exporter: Any, tmp_path: Path
) -> None:
    import aiohttp
    import bcrypt

    web = tmp_path / "web.yml"
    hashed = bcrypt.hashpw(b"pw-0123456789", bcrypt.gensalt(4)).decode()
    web.write_text(f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    _, client = await make_exporter(
        {"accounts": [settings(echo, CANARY, "header")]}, web_config=load_web_config(web)
    )
    params = {"account": "acct", "debug": "true"}
    refused = await client.get("/probe", params=params)
    assert refused.status == 401
    assert echo.requests == 0
    auth = {"Authorization": aiohttp.encode_basic_auth("prometheus", "pw-0123456789")}
    answered = await client.get("/probe", params=params, headers=auth)
    assert answered.status == 200
    assert "request 1: GET" in await answered.text()


async def test_a_collection_in_flight_is_joined_not_doubled(echo: Echo, upstream: Upstream) -> None:
    echo.hold = asyncio.Event()
    engine = Engine(
        build_config({"accounts": [settings(echo, CANARY, "header")]}, source="test", environ={}),
        upstream,
    )
    scrape = asyncio.create_task(engine.collect())
    await echo.asked.wait()
    traced = asyncio.create_task(debug.traced_collection(engine, "acct"))
    await asyncio.sleep(0)  # it joins the scrape's collection, then waits for it
    echo.hold.set()
    text = debug.render(await traced)
    await scrape
    assert echo.requests == 1
    assert "a collection was already in flight (a scrape's) and was joined" in text
    assert text.splitlines()[-1].startswith("outcome: up 1")
