"""base_url and url mistakes (docs/providers.md: Failure reasons): a 404 says which path was
asked and, for a catalogue account, that base_url is the service's host only; a web page (a
404 page, a proxy's page) is never the service's error, whatever the definition's `error`
would read in it. Every upstream is a real server on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from exporter.config import build_config
from exporter.engine import Engine, Snapshot
from exporter.model import Reason
from exporter.upstream import Upstream

KEY = "wrong-place-key-0123456789"
NGINX_404 = (
    "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n"
    "<center><h1>404 Not Found</h1></center>\r\n</body>\r\n</html>\r\n"
)


class Host:
    """Some other web server: every path answers this status and body."""

    def __init__(self) -> None:
        self.status = 404
        self.body = "404: Not Found"
        self.content_type = "text/plain"
        self.url = ""

    async def answer(self, request: web.Request) -> web.Response:
        return web.Response(status=self.status, text=self.body, content_type=self.content_type)


@pytest.fixture
async def host() -> AsyncIterator[Host]:
    server = Host()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield server
    await runner.cleanup()


async def collect(upstream: Upstream, **settings: Any) -> Snapshot:
    account = {"name": "acct", "api_key": KEY, "cache_ttl": "0s", **settings}
    config = build_config({"accounts": [account]}, source="test", environ={})
    [snapshot] = await Engine(config, upstream).collect()
    return snapshot


def failure(snapshot: Snapshot) -> tuple[Reason, str]:
    error = snapshot.outcome.error
    assert error is not None
    return error.reason, error.cause


async def test_a_base_url_with_the_api_path_is_named(host: Host, upstream: Upstream) -> None:
    # The base URL OpenAI-style clients take: the entry adds /api/v1/credits to it again.
    snapshot = await collect(upstream, provider="openrouter", base_url=host.url + "/api/v1")
    assert failure(snapshot) == (
        Reason.HTTP,
        f"HTTP 404 for /api/v1/api/v1/credits: base_url is the service's host only "
        f"({host.url}); the path /api/v1/credits is added to it",
    )


@pytest.mark.parametrize(
    ("body", "content_type"),
    [("404: Not Found", "text/plain"), (NGINX_404, "text/html")],
    ids=["plain text", "nginx page"],
)
async def test_sms_activate_on_a_wrong_host_is_http(
    host: Host, upstream: Upstream, body: str, content_type: str
) -> None:
    host.body, host.content_type = body, content_type
    snapshot = await collect(upstream, provider="smsactivate", base_url=host.url)
    reason, cause = failure(snapshot)
    assert reason is Reason.HTTP
    assert cause == (
        f"HTTP 404 for /stubs/handler_api.php: is base_url ({host.url}) the service's host? "
        "/stubs/handler_api.php is added to it"
    )


@pytest.mark.parametrize("status", [400, 403, 500])
async def test_an_html_page_is_never_the_services_error(
    host: Host, upstream: Upstream, status: int
) -> None:
    host.status, host.body, host.content_type = status, NGINX_404, "text/html"
    # `error: text` would read any text as the service's error.
    snapshot = await collect(upstream, provider="smsactivate", base_url=host.url)
    assert failure(snapshot)[0] is (Reason.AUTH if status == 403 else Reason.HTTP)


async def test_an_html_page_where_a_text_answer_belongs_is_invalid(
    host: Host, upstream: Upstream
) -> None:
    host.status, host.body = 200, "<!DOCTYPE html><html><body>Welcome to nginx!</body></html>"
    snapshot = await collect(upstream, provider="smsactivate", base_url=host.url)
    assert failure(snapshot) == (Reason.INVALID_RESPONSE, "HTTP 200 body is HTML")


async def test_a_json_404_the_service_documents_stays_its_error(
    host: Host, upstream: Upstream
) -> None:
    host.content_type = "application/json"
    account = {
        "provider": "http_json",
        "request": {"url": host.url + "/v1/{api_key}/balance"},
        "values": {"balance_usd": "balance"},
        "error": "error.message",
    }
    host.body = '{"error": {"message": "no such account"}}'
    snapshot = await collect(upstream, **account)
    assert failure(snapshot) == (Reason.PROVIDER_ERROR, "HTTP 404, error field set")
    host.body = "{}"
    snapshot = await collect(upstream, **account)
    # The path as written: a key in it is never shown.
    assert failure(snapshot) == (
        Reason.HTTP,
        "HTTP 404 for /v1/{api_key}/balance: the host has no such path; check the url",
    )


async def test_a_built_in_provider_says_what_base_url_is(host: Host, upstream: Upstream) -> None:
    snapshot = await collect(upstream, provider="datalabs", base_url=host.url + "/api")
    assert failure(snapshot) == (
        Reason.HTTP,
        "HTTP 404: no such path; base_url is what comes before the documented path",
    )
