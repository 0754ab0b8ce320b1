"""The fault suite: every way an upstream can misbehave, for every provider family.

For each fault the scrape answers 200 within its budget, the faulty account is `up 0` with the
right reason and no balance, every other account is exact, the next scrape works, and the
canary key of the faulty account appears nowhere: not in logs, expositions or HTTP answers.
Two catalogue services are among the families: SerpApi, whose key travels in the query
string, and Twilio, whose second secret (a canary too) travels in the URL path and Basic auth.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient

from exporter import cli, logs, upstream
from exporter.config import build_config, parse_config
from exporter.configfile import ConfigError
from exporter.demo import Fault, SimAccount, Simulator, delay, respond
from exporter.engine import Engine
from exporter.model import CollectError, Reason
from exporter.providers import BUILT_IN
from exporter.upstream import Upstream
from tests.conftest import AiohttpClient, ExporterFactory
from tests.faults import (
    HostileLogin,
    compression_bomb,
    endless_body,
    hang,
    huge_body,
    redirect,
    trickle,
    truncated_body,
)
from tests.helpers import (
    account,
    assert_promtool_accepts_metrics,
    samples,
    simulated_json_account,
    value,
    write_config,
)

CANARY = "CANARY-9d1e4c7b2a-KEY"
CANARY_SECRET = "CANARY-SECRET-4e8a1f0c63"
SEEN = web.AppKey("seen", list[bytes])
SCRAPE_TIMEOUT = 2.0  # seconds, as Prometheus would send it: the budget is 1.5 s
# The faulty account's timeout in the timeout cases: within the budget, so it is the account's
# own outcome the scrape shows (docs/configuration.md, "How collection behaves"). Its length changes no
# outcome, and each of a case's three requests waits it out: short. Half of it is left for
# connecting, a moment even on a loaded machine.
FAULTY_TIMEOUT = "500ms"
BUDGET_SLACK = 1.5  # loaded CI machines are slow; the point is "bounded", not "fast"
FAMILIES = ("anticaptcha", "vastcap", "decaptcha", "ocean", "serpapi", "twilio")
# Catalogue services: served by the simulator from their documented answers.
CATALOGUE_FAMILIES = {"serpapi": {}, "twilio": {"account_sid": {"value": CANARY_SECRET}}}

# The documented success answer of each family, with the number under test left open.
TEMPLATES = {
    "anticaptcha": '{"errorId": 0, "balance": %s}',
    "vastcap": '{"balance": %s}',
    "decaptcha": '{"isSuccess": true, "statusCode": 200, "errorMessage": null, "data": %s}',
    "ocean": '{"credits": {"oneTime": %s, "recurrent": 1}, "dailyLimitRateLeft": 1, "dailyLimitRateSecondsToReset": 1}',
    "serpapi": '{"total_searches_left": %s, "plan_searches_left": 1}',
    "twilio": '{"account_sid": "AC1", "balance": %s, "currency": "USD"}',
}
# Families that document the balance as a string.
STRING_NUMBERS = frozenset({"decaptcha", "twilio"})
# Numbers as each family documents them: DeCaptcha writes its balance as a string. A negative
# number is no fault for a balance (overdrawn accounts exist): see test_providers.
BAD_NUMBERS = {
    "nan": ("NaN", '"NaN"'),
    "infinity": ("Infinity", '"Infinity"'),
    "string number": ('"12.5"', "12.5"),  # the undocumented type for each family
    "huge exponent": ("1e999", '"1e999"'),
    "400-digit number": ("9" * 400, '"' + "9" * 400 + '"'),
}


def with_number(name: str, family: str) -> Fault:
    plain, decaptcha = BAD_NUMBERS[name]
    body = TEMPLATES[family] % (decaptcha if family in STRING_NUMBERS else plain)
    return respond(200, body.encode(), content_type="application/json")


@dataclass(frozen=True)
class Case:
    name: str
    reason: Reason
    fault: Callable[[str], Fault] | None  # by family; None: the base_url points nowhere


CASES = [
    Case("connection refused", Reason.CONNECTION, None),
    Case("closed mid-response", Reason.CONNECTION, lambda f: truncated_body()),
    Case("hang", Reason.TIMEOUT, lambda f: hang()),
    # Bytes keep coming, a few within the account's timeout, the whole answer far later.
    Case("slow body", Reason.TIMEOUT, lambda f: trickle(0.1)),
    Case(
        "500 html",
        Reason.HTTP,
        lambda f: respond(500, "<html><body><h1>500 Internal Server Error</h1></body></html>"),
    ),
    Case(
        "429 retry-after",
        Reason.RATE_LIMITED,
        lambda f: respond(429, "Too Many Requests", headers={"Retry-After": "120"}),
    ),
    Case("401", Reason.AUTH, lambda f: respond(401, "<html>Unauthorized</html>")),
    Case("403", Reason.AUTH, lambda f: respond(403, {"detail": "Forbidden"})),
    Case(
        "non-json",
        Reason.INVALID_RESPONSE,
        lambda f: respond(200, "balance: lots", content_type="text/plain"),
    ),
    Case(
        "html 200",
        Reason.INVALID_RESPONSE,
        lambda f: respond(200, "<!DOCTYPE html><title>Captive portal</title>"),
    ),
    Case("wrong shape", Reason.INVALID_RESPONSE, lambda f: respond(200, {"unexpected": [1, 2]})),
    *(Case(name, Reason.INVALID_RESPONSE, partial(with_number, name)) for name in BAD_NUMBERS),
    Case(
        "100,000-deep JSON",
        Reason.INVALID_RESPONSE,
        lambda f: respond(200, b"[" * 100_000 + b"]" * 100_000, content_type="application/json"),
    ),
    Case("64 MiB body", Reason.INVALID_RESPONSE, lambda f: huge_body()),
    Case("64 MiB announced", Reason.INVALID_RESPONSE, lambda f: huge_body(declare_length=True)),
    Case("endless body", Reason.INVALID_RESPONSE, lambda f: endless_body()),
    # 64 KiB on the wire, under the cap; 64 MiB once inflated, over it.
    Case("gzip bomb", Reason.INVALID_RESPONSE, lambda f: compression_bomb("gzip")),
    Case("deflate bomb", Reason.INVALID_RESPONSE, lambda f: compression_bomb("deflate")),
    # Never asked for: brotli (or zstd) would be decoded by another library, unbounded.
    Case(
        "brotli answer",
        Reason.INVALID_RESPONSE,
        lambda f: respond(200, b"\x1b\xff\xff", headers={"Content-Encoding": "br"}),
    ),
    Case("redirect elsewhere", Reason.HTTP, lambda f: redirect("http://127.0.0.1:1/elsewhere")),
]


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logs.LogfmtFormatter())
        self.text: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.text.append(self.format(record))


@pytest.fixture
def captured_logs() -> Iterator[Capture]:
    capture = Capture()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    yield capture
    root.removeHandler(capture)
    root.setLevel(old_level)


@pytest.fixture
def quick_back_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retry connection faults after 10 ms, not 100 ms and 200 ms: the back-off's length is
    no part of any outcome here, and each of a case's three requests waits it out (the
    back-off itself: test_providers)."""
    monkeypatch.setattr(upstream, "BACKOFF_BASE", 0.01)


@pytest.fixture
async def elsewhere(aiohttp_client: AiohttpClient) -> TestClient[Any, Any]:
    """Another host a redirect could point at; it records whatever reaches it."""
    seen: list[bytes] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(
            request.method.encode()
            + request.path_qs.encode()
            + str(dict(request.headers)).encode()
            + await request.read()
        )
        return web.json_response({"errorId": 0, "balance": 999.0})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    app[SEEN] = seen
    return await aiohttp_client(app)


def simulated(family: str) -> str:
    """Where the simulator serves a family: catalogue services under `catalogue/`."""
    return f"catalogue/{family}" if family in CATALOGUE_FAMILIES else family


def healthy_accounts(simulator: Simulator) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """One healthy account of every built-in provider type, each with its own balance."""
    accounts, balances = [], {}
    for index, provider in enumerate(BUILT_IN):
        key = f"healthy-{provider}-key"
        balance = 10.0 + index
        balances[f"ok-{provider}"] = balance
        if provider == "http_json":
            simulator.add("json", SimAccount(key, balance=balance))
            accounts.append(simulated_json_account(simulator, f"ok-{provider}", key))
            continue
        simulator.add(provider, SimAccount(key, balance=balance))
        accounts.append(account(f"ok-{provider}", provider, key, simulator.base_url(provider)))
    return accounts, balances


def assert_healthy_exact(found: dict[Any, float], balances: dict[str, float]) -> None:
    for name, balance in balances.items():
        provider = name.removeprefix("ok-")
        assert value(found, "apibalance_up", provider=provider, account=name) == 1.0, name
        if provider == "ocean":
            assert (
                value(
                    found,
                    "apibalance_credits",
                    provider=provider,
                    account=name,
                    credit_type="standard",
                    pool="one_time",
                )
                == 5000.0
            )
        else:
            assert (
                value(found, "apibalance_balance_usd", provider=provider, account=name) == balance
            ), name


def applies(case: Case, family: str) -> bool:
    """http_json reads a number or a numeric string alike: no fault for a catalogue service."""
    return not (family in CATALOGUE_FAMILIES and case.name == "string number")


@pytest.mark.parametrize(
    ("case", "family"),
    [
        pytest.param(case, family, id=f"{case.name}-{family}")
        for family in FAMILIES
        for case in CASES
        if applies(case, family)
    ],
)
async def test_fault(
    case: Case,
    family: str,
    simulator: Simulator,
    make_exporter: ExporterFactory,
    captured_logs: Capture,
    elsewhere: TestClient[Any, Any],
    quick_back_off: None,
) -> None:
    accounts, balances = healthy_accounts(simulator)
    if case.fault is None:
        base_url = "http://127.0.0.1:1"  # nothing listens on port 1
    else:
        fault = case.fault(family)
        if case.name == "redirect elsewhere":
            fault = redirect(str(elsewhere.make_url("/steal")))
        simulator.add(simulated(family), SimAccount(CANARY, chaos=[(1.0, fault)]))
        base_url = simulator.base_url(simulated(family))
    timeout = {"timeout": FAULTY_TIMEOUT} if case.reason is Reason.TIMEOUT else {}
    faulty = account("faulty", family, CANARY, base_url, cache_ttl="0s", **timeout)
    if CATALOGUE_FAMILIES.get(family):
        faulty["secrets"] = CATALOGUE_FAMILIES[family]
    accounts.append(faulty)
    _, client = await make_exporter({"accounts": accounts})
    headers = {"X-Prometheus-Scrape-Timeout-Seconds": str(SCRAPE_TIMEOUT)}
    answers: list[str] = []

    loop = asyncio.get_running_loop()
    tracemalloc.start()
    try:
        started = loop.time()
        response = await client.get("/metrics", headers=headers)
        text = await response.text()
        elapsed = loop.time() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    answers.append(text)
    assert response.status == 200
    assert elapsed < SCRAPE_TIMEOUT - 0.5 + BUDGET_SLACK, elapsed
    # A 64 MiB or endless body must not be held in memory.
    assert peak < 16 << 20, peak

    found = samples(text)
    assert value(found, "apibalance_up", provider=family, account="faulty") == 0.0
    assert (
        value(
            found,
            "apibalance_collect_errors_total",
            provider=family,
            account="faulty",
            reason=case.reason.value,
        )
        == 1.0
    )
    assert (
        sum(
            v
            for (n, lbls), v in found.items()
            if n == "apibalance_collect_errors_total" and ("account", "faulty") in lbls
        )
        == 1.0
    )
    assert value(found, "apibalance_balance_usd", provider=family, account="faulty") is None
    assert not [k for k in found if k[0] == "apibalance_credits" and ("account", "faulty") in k[1]]
    assert_healthy_exact(found, balances)

    # The process lives: the next scrape works, and the landing page and probe answer. At
    # once, as Prometheus scrapes /metrics and /probe targets: the scrape and the probe share
    # one collection of the faulty account (docs/configuration.md, "How collection behaves": coalescing).
    async def fetch(path: str) -> tuple[int, str]:
        async with client.get(path, headers=headers) as page:
            return page.status, await page.text()

    again, *pages = await asyncio.gather(
        *(fetch(path) for path in ("/metrics", "/", "/probe?account=faulty"))
    )
    for status, text in [again, *pages]:
        assert status == 200
        answers.append(text)
    assert_healthy_exact(samples(again[1]), balances)

    for text in [*answers, *captured_logs.text]:
        assert CANARY not in text
        assert CANARY_SECRET not in text
    assert elsewhere.app[SEEN] == []
    # A bad answer is one warning line with its reason, never an error with a traceback.
    exporter_lines = [line for line in captured_logs.text if " logger=exporter" in line]
    assert [line for line in exporter_lines if "level=error" in line] == []
    assert any(
        "account=faulty" in line and f"reason={case.reason.value}" in line
        for line in exporter_lines
        if "level=warn" in line
    )


def faulty_json_account(simulator: Simulator, fault: Fault, **settings: Any) -> dict[str, Any]:
    """An `http_json` account "faulty" whose every answer is `fault`; `settings` add to or
    replace its definition (`values`, `response`)."""
    simulator.add("json", SimAccount(CANARY, chaos=[(1.0, fault)]))
    return simulated_json_account(simulator, "faulty", CANARY, cache_ttl="0s", **settings)


async def assert_down_within_budget_beside_the_healthy(
    client: TestClient[Any, Any], balances: dict[str, float]
) -> None:
    """Two scrapes, each within its budget: "faulty" down, every healthy account exact."""
    headers = {"X-Prometheus-Scrape-Timeout-Seconds": str(SCRAPE_TIMEOUT)}
    loop = asyncio.get_running_loop()
    for _ in range(2):
        started = loop.time()
        found = samples(await (await client.get("/metrics", headers=headers)).text())
        assert loop.time() - started < SCRAPE_TIMEOUT - 0.5 + BUDGET_SLACK
        assert value(found, "apibalance_up", provider="http_json", account="faulty") == 0.0
        assert_healthy_exact(found, balances)


HUGE = "9" * 400


@pytest.mark.parametrize(
    "path",
    [
        "divide(n, `100`)",
        "subtract(n, `1`)",
        "subtract(`1`, n)",
        "multiply(n, `2`)",
        "add(n, number(s))",
        "avg([n, n])",
    ],
)
async def test_a_number_too_large_to_compute_is_one_warning(
    path: str, simulator: Simulator, make_exporter: ExporterFactory, captured_logs: Capture
) -> None:
    """Integers of hundreds of digits through the arithmetic functions (seven catalogue
    entries use them): `invalid_response` and one warning, every collection, no traceback."""
    answer = respond(200, {"n": int(HUGE), "s": HUGE})
    faulty = faulty_json_account(simulator, answer, values={"balance_usd": path})
    _, client = await make_exporter({"accounts": [faulty]})
    for collection in (1, 2):
        found = samples(await (await client.get("/metrics")).text())
        assert value(found, "apibalance_up", provider="http_json", account="faulty") == 0.0
        errors = value(
            found,
            "apibalance_collect_errors_total",
            provider="http_json",
            account="faulty",
            reason="invalid_response",
        )
        assert errors == collection
    exporter_lines = [line for line in captured_logs.text if " logger=exporter" in line]
    assert [
        line for line in exporter_lines if "level=warn" not in line and "account=" in line
    ] == []
    warnings = [line for line in exporter_lines if "level=warn" in line]
    assert len(warnings) == 2, warnings
    assert all("reason=invalid_response" in line for line in warnings)
    assert not [line for line in captured_logs.text if "Traceback" in line or "level=error" in line]


@pytest.mark.parametrize(
    ("pattern", "body"),
    [
        # An ordinary pattern: a backtracking engine tries every start in the digits, and
        # from each scans to their end for " USD" (about 2 billion steps).
        pytest.param("(?P<balance>[0-9.]+) USD", "9" * 65_000, id="ordinary pattern"),
        # A nested quantifier: 2**26 ways to split the digits before giving up.
        pytest.param("(?P<balance>([0-9]+)+)x", "9" * 26, id="nested quantifier"),
    ],
)
async def test_a_text_answer_built_to_backtrack_costs_no_more_than_reading_it(
    pattern: str,
    body: str,
    simulator: Simulator,
    make_exporter: ExporterFactory,
    captured_logs: Capture,
) -> None:
    accounts, balances = healthy_accounts(simulator)
    text = respond(200, body, content_type="text/plain")
    response = {"format": "text", "pattern": pattern}
    accounts.append(faulty_json_account(simulator, text, response=response))
    _, client = await make_exporter({"accounts": accounts})
    await assert_down_within_budget_beside_the_healthy(client, balances)
    assert not [line for line in captured_logs.text if "level=error" in line]


async def test_comparing_two_large_equal_subtrees_costs_their_size(
    simulator: Simulator, make_exporter: ExporterFactory
) -> None:
    """50 credits of 166 comparisons each over two equal 150,000-item lists: a few steps of the
    tree walk per comparison, each a walk of both lists inside Python's ==. The comparison is
    charged what it compares, so the budget ends it, and other accounts' scrapes with it."""
    accounts, balances = healthy_accounts(simulator)
    items = [0] * 150_000
    answer = respond(200, {"a": items, "b": items, "n": 1})
    path = "a==b&&" * 166 + "n"
    credits = [{"credit_type": f"c{i}", "pool": "one_time", "path": path} for i in range(50)]
    accounts.append(faulty_json_account(simulator, answer, values={"credits": credits}))
    _, client = await make_exporter({"accounts": accounts})
    await assert_down_within_budget_beside_the_healthy(client, balances)
    loop = asyncio.get_running_loop()
    started = loop.time()
    probe = samples(await (await client.get("/probe?account=ok-anticaptcha")).text())
    assert loop.time() - started < BUDGET_SLACK
    assert value(probe, "apibalance_up", provider="anticaptcha", account="ok-anticaptcha") == 1.0


async def test_promtool_accepts_the_exposition_during_every_fault_at_once(
    simulator: Simulator, make_exporter: ExporterFactory
) -> None:
    accounts, balances = healthy_accounts(simulator)
    for index, case in enumerate(CASES):
        if case.fault is None:
            accounts.append(
                account(f"faulty-{index}", "datalabs", f"faulty-key-{index}", "http://127.0.0.1:1")
            )
            continue
        family = next(f for f in FAMILIES[index % len(FAMILIES) :] + FAMILIES if applies(case, f))
        key = f"faulty-key-{index}"
        simulator.add(simulated(family), SimAccount(key, chaos=[(1.0, case.fault(family))]))
        faulty = account(f"faulty-{index}", family, key, simulator.base_url(simulated(family)))
        if CATALOGUE_FAMILIES.get(family):
            faulty["secrets"] = {"account_sid": {"value": f"faulty-sid-{index}"}}
        accounts.append(faulty)
    _, client = await make_exporter({"accounts": accounts})
    response = await client.get("/metrics", headers={"X-Prometheus-Scrape-Timeout-Seconds": "2"})
    body = await response.read()
    found = samples(body.decode())
    assert_healthy_exact(found, balances)
    for index, case in enumerate(CASES):
        up = [
            v
            for (n, lbls), v in found.items()
            if n == "apibalance_up" and ("account", f"faulty-{index}") in lbls
        ]
        assert up == [0.0], case.name
    assert_promtool_accepts_metrics(body)


def login_account(base_url: str) -> dict[str, Any]:
    return {
        "name": "hostile",
        "provider": "http_json",
        "api_key": CANARY,
        "cache_ttl": "0s",
        "login": {
            "request": {"url": base_url + "/login", "method": "POST", "json": {"key": "{api_key}"}},
            "token": "token",
            "expires_in": "expires_in",
        },
        "request": {"url": base_url + "/balance", "headers": {"X-Token": "{token}"}},
        "values": {"balance_usd": "balance"},
    }


async def scrape_hostile(client: TestClient[Any, Any]) -> dict[Any, float]:
    return samples(await (await client.get("/metrics")).text())


@pytest.mark.parametrize(
    ("token", "cause"),
    [
        ("x" * 900_000, "login.token is longer than 8192 characters"),
        ("a-session-token-0123456789\n", "login.token is not printable ASCII"),
        ("a-session\r\ntoken-0123456789", "login.token is not printable ASCII"),
    ],
    ids=["900 KB", "ends in a line break", "line break inside"],
)
async def test_a_login_token_unfit_for_a_header_is_refused_in_one_line(
    token: str,
    cause: str,
    aiohttp_server: Any,
    simulator: Simulator,
    make_exporter: ExporterFactory,
    captured_logs: Capture,
) -> None:
    service = HostileLogin([token])
    server = await aiohttp_server(service.app)
    accounts, balances = healthy_accounts(simulator)
    _, client = await make_exporter(
        {"accounts": [*accounts, login_account(str(server.make_url("")))]}
    )
    for _ in range(3):
        found = await scrape_hostile(client)
        assert value(found, "apibalance_up", provider="http_json", account="hostile") == 0.0
        assert_healthy_exact(found, balances)
    failures = [line for line in captured_logs.text if "account=hostile" in line]
    assert len(failures) == 3, failures
    assert all("level=warn" in line and "reason=invalid_response" in line for line in failures)
    assert all(cause in line for line in failures)
    assert not [line for line in captured_logs.text if "level=error" in line or "Traceback" in line]
    assert logs.redact(token) == token  # never registered: nothing held for it


async def test_a_replaced_login_token_is_forgotten_by_the_log(
    aiohttp_server: Any, make_exporter: ExporterFactory
) -> None:
    """Each login's token was kept for redaction for good: 150 logins of 900 KB tokens took
    RSS from 58 to 190 MiB. A token is redacted while it is the one in use."""
    tokens = [f"session-{index:04d}-" + "t" * 8000 for index in range(40)]
    service = HostileLogin(tokens)
    server = await aiohttp_server(service.app)
    _, client = await make_exporter({"accounts": [login_account(str(server.make_url("")))]})
    for collection in range(40):
        found = await scrape_hostile(client)
        assert value(found, "apibalance_up", provider="http_json", account="hostile") == 1.0
        current = service.issued[-1]
        assert logs.redact(f"sent {current}") == f"sent {logs.REDACTED}"
        if collection:
            earlier = service.issued[-2]
            assert logs.redact(earlier) == earlier
    assert len(service.issued) == 40
    # A reload that drops the account (its provider with it) forgets its token too.
    write_config(
        make_exporter.tmp_path,
        {"accounts": [account("other", "datalabs", "k" * 16, "http://127.0.0.1:1")]},
    )
    assert (await client.post("/-/reload")).status == 200
    gc.collect()
    assert logs.redact(service.issued[-1]) == service.issued[-1]


async def test_a_failed_collection_keeps_nothing_of_the_answer_until_the_gc_runs(
    aiohttp_server: Any, upstream: Upstream
) -> None:
    """A refused 900 KB token: the error's traceback held the login's frames (the body, the
    document, the token) in a cycle, which the garbage collector, paused while scrapes wait,
    freed only now and then: 300 scrapes took RSS from 58 to 369 MiB."""
    service = HostileLogin(["h" * 900_000])
    server = await aiohttp_server(service.app)
    config = build_config({"accounts": [login_account(str(server.make_url("")))]}, source="t")
    engine = Engine(config, upstream)
    [snapshot] = await engine.collect()
    assert snapshot.outcome.reason is Reason.INVALID_RESPONSE
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for _ in range(10):
            await engine.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        gc.enable()
    assert after - before < 4 << 20, after - before


async def test_a_token_that_is_an_ordinary_word_blanks_no_log_line(
    aiohttp_server: Any,
    simulator: Simulator,
    make_exporter: ExporterFactory,
    captured_logs: Capture,
) -> None:
    """The service chooses the token: `warn`, `timeout`, `connection` or `anticaptcha` once
    turned unrelated lines into `level=<redacted> ... reason=<redacted>`."""
    words = [
        "warn",
        "timeout",
        "connection",
        "anticaptcha",
        "invalid_response",
        "collection-failed",
    ]
    service = HostileLogin(words)
    server = await aiohttp_server(service.app)
    refused = account("refused", "anticaptcha", "refused-key-0123", "http://127.0.0.1:1")
    _, client = await make_exporter(
        {"accounts": [login_account(str(server.make_url(""))), refused]}
    )
    for _ in words:
        found = await scrape_hostile(client)
        assert value(found, "apibalance_up", provider="http_json", account="hostile") == 1.0
    lines = [line for line in captured_logs.text if "account=refused" in line]
    assert lines
    assert all("level=warn" in line and "reason=connection" in line for line in lines), lines
    assert all(logs.REDACTED not in line for line in lines), lines


LINE_BREAK_CONFIG = """\
accounts:
  - name: j
    provider: http_json
    api_key: hj-key-0123456789abcdef
    request:
      url: https://api.example.com/v1/balance
      headers: {Authorization: "Bearer {api_key}", X-Client: "exporter"}
    values:
      balance_usd: data.balance
"""


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        # A value ending in a line break passed a check anchored with $, which matches before
        # a final newline; the HTTP client then refused the header at every collection.
        (
            '"Bearer {api_key}"',
            '"Bearer {api_key}\\n"',
            "cfg.yml:7: accounts[0].request.headers.Authorization: a header value must be "
            "printable ASCII on one line",
        ),
        (
            '"exporter"',
            '"exporter\\u0007"',
            "cfg.yml:7: accounts[0].request.headers.X-Client: a header value must be "
            "printable ASCII on one line",
        ),
        (
            "X-Client:",
            '"X-Client\\n":',
            "cfg.yml:7: accounts[0].request.headers: 'X-Client\\n' is not a valid header name",
        ),
        (
            "name: j",
            'name: "j\\n"',
            "cfg.yml:2: accounts[0].name: 'j\\n' is not a valid account name",
        ),
    ],
)
def test_a_line_break_at_the_end_of_a_value_is_refused_at_load(
    old: str, new: str, expected: str
) -> None:
    assert old in LINE_BREAK_CONFIG
    with pytest.raises(ConfigError) as caught:
        parse_config(LINE_BREAK_CONFIG.replace(old, new), source="cfg.yml", environ={})
    assert any(line.startswith(expected) for line in caught.value.lines), caught.value.lines


async def test_a_failed_reload_never_shows_the_keys(
    simulator: Simulator, make_exporter: ExporterFactory, captured_logs: Capture
) -> None:
    accounts, _ = healthy_accounts(simulator)
    accounts.append(account("canary", "datalabs", CANARY, simulator.base_url("datalabs")))
    _, client = await make_exporter({"accounts": accounts})
    broken = [*accounts[:-1], {**accounts[-1], "provider": "datalabz", "api_kee": CANARY}]
    write_config(make_exporter.tmp_path, {"accounts": broken})
    response = await client.post("/-/reload")
    assert response.status == 500
    text = await response.text()
    assert "unknown provider 'datalabz'" in text
    assert CANARY not in text
    assert all(CANARY not in line for line in captured_logs.text)


NEW_KEY = "NEWKEY-5b1f9e27c4d8a3"


def new_account(key_file: Path, **change: Any) -> dict[str, Any]:
    """An account added by the reload, its key (only in the new config) read from a file."""
    fresh: dict[str, Any] = {
        "name": "fresh",
        "provider": "http_json",
        "api_key_file": str(key_file),
        "request": {
            "url": "https://api.example.com/v1/balance",
            "headers": {"Authorization": "Bearer {api_key}"},
        },
        "values": {"balance_usd": "balance"},
    }
    for where, new in change.items():
        *parents, last = where.split(".")
        target = fresh
        for part in parents:
            target = target[part]
        if last.startswith("-"):
            del target[last[1:]]
        else:
            target[last] = new
    return fresh


# The new key pasted where a message quotes what it finds: every one was shown in clear.
NEW_KEY_SHAPES: dict[str, dict[str, Any]] = {
    "provider": {"provider": NEW_KEY},
    "timeout": {"timeout": NEW_KEY},
    "name": {"name": NEW_KEY + "!"},
    "unknown key": {NEW_KEY: 1},
    "currency": {"currency": NEW_KEY},
    "header name": {"request.headers.-Authorization": None, f"request.headers.{NEW_KEY} x": "v"},
    # The key pasted as the path of its own file.
    "key file's path": {"api_key_file": NEW_KEY},
}


@pytest.mark.parametrize("shape", NEW_KEY_SHAPES)
async def test_a_key_only_in_a_refused_reload_is_never_shown(
    shape: str,
    simulator: Simulator,
    make_exporter: ExporterFactory,
    captured_logs: Capture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A problem message never quotes a value from a key's place, and quotes any other value
    only after redacting the keys of both configs: the running one and the one refused."""
    accounts, _ = healthy_accounts(simulator)
    _, client = await make_exporter({"accounts": accounts})
    key_file = make_exporter.tmp_path / "fresh.key"
    key_file.write_text(NEW_KEY + "\n")
    key_file.chmod(0o600)
    fresh = new_account(key_file, **NEW_KEY_SHAPES[shape])
    path = write_config(make_exporter.tmp_path, {"accounts": [*accounts, fresh]})
    response = await client.post("/-/reload")
    assert response.status == 500
    answer = await response.text()
    assert f"accounts[{len(accounts)}]" in answer  # the problem is there, only the key is not
    landing = await (await client.get("/")).text()
    # What --config.check prints, without the logging set-up of a command of its own.
    assert cli.check(cli.parse_args(["--config.file", str(path), "--config.check"])) == 1
    checked = capsys.readouterr()
    for text in [answer, landing, checked.out, checked.err, *captured_logs.text]:
        assert NEW_KEY not in text
        assert NEW_KEY[:12] not in text
    assert f"accounts[{len(accounts)}]" in checked.err


async def test_a_huge_config_is_refused_by_its_size_before_it_is_read(
    simulator: Simulator, make_exporter: ExporterFactory
) -> None:
    """3.8 MB, a list of 1.9 million items and no alias: it took 73.5 s to parse on reload,
    RSS 56 to 330 MiB, and was refused as aliases expanding too far."""
    accounts, _ = healthy_accounts(simulator)
    _, client = await make_exporter({"accounts": accounts})
    text = yaml.safe_dump({"accounts": accounts}) + "padding:\n" + "- 1\n" * 1_900_000
    path = write_config(make_exporter.tmp_path, text)
    response = await client.post("/-/reload")
    assert response.status == 500
    assert f"{path}: cannot read config file: is larger than 1024 KiB" in await response.text()


async def test_a_config_of_too_many_values_is_refused_as_such_and_health_answers_meanwhile(
    simulator: Simulator, make_exporter: ExporterFactory
) -> None:
    """Under the size bound, the most values a file can hold: refused after the first 100,000
    are read (in a thread: /-/healthy answers all along), as too many values, not as aliases
    expanding too far, which it has none of."""
    accounts, _ = healthy_accounts(simulator)
    _, client = await make_exporter({"accounts": accounts})
    text = yaml.safe_dump({"accounts": accounts}) + "padding: [" + "1," * 500_000 + "1]\n"
    assert len(text) < 1024 * 1024
    path = write_config(make_exporter.tmp_path, text)
    loop = asyncio.get_running_loop()
    reload = asyncio.ensure_future(client.post("/-/reload"))
    slowest = 0.0
    while not reload.done():
        started = loop.time()
        healthy = await client.get("/-/healthy")
        assert healthy.status == 200
        slowest = max(slowest, loop.time() - started)
        await asyncio.sleep(0.02)
    response = await reload
    assert response.status == 500
    answer = await response.text()
    assert f"{path}:{len(text.splitlines())}: invalid YAML: more than 100000 values" in answer
    assert "aliases" not in answer
    assert slowest < 1.0, slowest


async def test_a_reload_answer_is_redacted_like_the_log(
    simulator: Simulator, make_exporter: ExporterFactory, captured_logs: Capture
) -> None:
    # The running key pasted into api_key_env by mistake: the loader's message names the
    # variable, which is the key. Neither the log nor the answer may show it.
    key = "PASTED_KEY_4f2a9c71"
    simulator.add("datalabs", SimAccount(key))
    running = account("pasted", "datalabs", key, simulator.base_url("datalabs"))
    _, client = await make_exporter({"accounts": [running]})
    mistaken = {k: v for k, v in running.items() if k != "api_key"} | {"api_key_env": key}
    write_config(make_exporter.tmp_path, {"accounts": [mistaken]})
    response = await client.post("/-/reload")
    assert response.status == 500
    text = await response.text()
    assert "the environment variable it names is not set" in text
    assert key not in text
    assert all(key not in line for line in captured_logs.text)


async def test_a_scrape_giving_up_early_hides_nothing_from_other_scrapers(
    simulator: Simulator, make_exporter: ExporterFactory
) -> None:
    """Any client may send a tiny scrape timeout: its scrape times out, no one else's does.

    Anti-Captcha is asked at most once per 30 s, and within that the last outcome is reused:
    were the impatient scrape's timeout recorded, every scraper would be served `up 0` for 30 s.
    """
    simulator.add(
        "anticaptcha", SimAccount("impatient-key", balance=7.5, chaos=[(1.0, delay(1.0))])
    )
    accounts = [account("ac", "anticaptcha", "impatient-key", simulator.base_url("anticaptcha"))]
    _, client = await make_exporter({"accounts": accounts})
    impatient = {"X-Prometheus-Scrape-Timeout-Seconds": "0.001"}

    loop = asyncio.get_running_loop()
    started = loop.time()
    first = samples(await (await client.get("/metrics", headers=impatient)).text())
    # The budget has a floor: the impatient scrape still waited a while for an answer.
    assert loop.time() - started >= 0.45
    assert value(first, "apibalance_up", provider="anticaptcha", account="ac") == 0.0

    # Prometheus, scraping right after, gets the balance of the same (only) upstream request.
    found = samples(await (await client.get("/metrics")).text())
    assert value(found, "apibalance_up", provider="anticaptcha", account="ac") == 1.0
    assert value(found, "apibalance_balance_usd", provider="anticaptcha", account="ac") == 7.5
    assert not [k for k, v in found.items() if k[0] == "apibalance_collect_errors_total" and v]

    # And the impatient client, scraping again within the minimum interval, changes nothing.
    for _ in range(3):
        await client.get("/metrics", headers=impatient)
    found = samples(await (await client.get("/metrics")).text())
    assert value(found, "apibalance_up", provider="anticaptcha", account="ac") == 1.0
    assert simulator.calls[("anticaptcha", "impatient-key")] == 1


@pytest.fixture
def unanswered_connect() -> Iterator[str]:
    """A base URL on loopback whose connections are never completed, as behind a firewall
    that drops packets: a listening socket whose queue (of one) is full, so the kernel drops
    every further handshake."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = listener.getsockname()
        fillers: list[socket.socket] = []
        try:
            while True:  # until a handshake goes unanswered: the queue is full
                assert len(fillers) < 16, "the listening queue never filled"
                try:
                    fillers.append(socket.create_connection(address, timeout=0.2))
                except TimeoutError:
                    break
            yield f"http://127.0.0.1:{address[1]}"
        finally:
            for filler in fillers:
                filler.close()


async def test_a_connection_never_completed_is_given_up_within_the_deadline(
    unanswered_connect: str, upstream: Upstream
) -> None:
    # Connecting may take half of what is left: the first attempt gives up at half the
    # deadline, leaving time for another.
    loop = asyncio.get_running_loop()
    started = loop.time()
    http = upstream.for_account(unanswered_connect, started + 1.0)
    with pytest.raises(CollectError) as raised:
        async with asyncio.timeout(5):  # without a connect timeout it would wait for ever
            await http.request("GET", "/balance")
    assert (raised.value.reason, raised.value.cause) == (Reason.CONNECTION, "connect timed out")
    assert http.requests >= 2
    assert loop.time() - started < 1.0
