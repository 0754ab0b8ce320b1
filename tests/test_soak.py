"""Soak: 10,000 scrapes with faults mixed in; memory and open sockets stay flat. And every
flood a client can send before logging in, at once: the real Prometheus still gets through.

Prints the figures so a run shows them: `pytest tests/test_soak.py -s`.
"""

from __future__ import annotations

import asyncio
import gc
import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import pytest
from aiohttp import web

from exporter.connections import raise_file_limit
from exporter.demo import NGINX_502, Fault, SimAccount, Simulator, delay, respond
from tests.attacks import (
    UNFINISHED_HEAD_OF_ALLOWED_LINES,
    PipelineFlood,
    Slowloris,
    basic,
    close_all,
    connect,
    http_get,
    password_flood,
)
from tests.conftest import ExporterFactory
from tests.faults import HostileLogin, compression_bomb, disconnect, truncated_body
from tests.helpers import ExporterProcess, account, samples, value, write_config

# 10,000 scrapes: the longest test of all, for the full run only.
pytestmark = pytest.mark.integration

SCRAPES = 10_000
WINDOW = 1_000
SCRAPERS = 4


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def open_sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                count += 1
        except OSError:
            continue
    return count


async def test_ten_thousand_scrapes_with_faults(
    simulator: Simulator, make_exporter: ExporterFactory
) -> None:
    # No auth failures here: their back-off would leave the accounts idle for most of the run.
    # Transient faults are rarer than the others because each costs a retry back-off.
    chaos = [
        (0.004, respond(502, NGINX_502)),
        (0.003, disconnect()),
        (0.003, truncated_body()),
        (0.02, respond(200, "<html>oops</html>")),
        # Each 429 silences its account for a second, hundreds of scrapes at this pace.
        (0.0005, respond(429, {"detail": "slow down"}, headers={"Retry-After": "1"})),
        (0.01, respond(200, {"errorId": 1, "errorCode": "ERROR_SERVICE_UNAVAILABLE"})),
        (0.02, delay(0.01)),
    ]
    accounts = []
    for provider in ("capmonster", "datalabs", "vastcap", "decaptcha", "ocean"):
        key = f"soak-{provider}-key"
        simulator.add(provider, SimAccount(key, balance=5.0, chaos=list(chaos)))
        accounts.append(
            account(
                f"soak-{provider}",
                provider,
                key,
                simulator.base_url(provider),
                cache_ttl="0s",
                timeout="2s",
            )
        )
    _, client = await make_exporter({"accounts": accounts})

    figures: dict[int, tuple[int, int, int]] = {}
    up_seen = 0
    done = 0
    url = client.make_url("/metrics")

    async def scraper(session: aiohttp.ClientSession) -> None:
        nonlocal done, up_seen
        while done < SCRAPES:
            done += 1
            scrape = done
            async with session.get(url) as response:
                assert response.status == 200
                text = await response.text()
            if scrape % 500 == 0:
                found = samples(text)
                up_seen += sum(
                    1 for (name, _), v in found.items() if name == "apibalance_up" and v == 1.0
                )
            if scrape in (WINDOW, SCRAPES):
                gc.collect()
                figures[scrape] = (rss_bytes(), len(gc.get_objects()), open_sockets())

    # Plain sessions, not the test client: the test client keeps every response it returns.
    # Four scrapers at once, as an HA pair of Prometheus servers and a few probes would.
    sessions = [aiohttp.ClientSession() for _ in range(SCRAPERS)]
    try:
        await asyncio.gather(*(scraper(session) for session in sessions))
    finally:
        for session in sessions:
            await session.close()

    (rss_a, objects_a, sockets_a), (rss_b, objects_b, sockets_b) = figures[WINDOW], figures[SCRAPES]
    print(
        f"\nsoak: {SCRAPES} scrapes ({SCRAPERS} at a time) of {len(accounts)} accounts, "
        f"{sum(simulator.calls.values())} upstream requests\n"
        f"  after {WINDOW:>6}: RSS {rss_a / 2**20:6.1f} MiB, {objects_a} Python objects, {sockets_a} sockets\n"
        f"  after {SCRAPES:>6}: RSS {rss_b / 2**20:6.1f} MiB, {objects_b} Python objects, {sockets_b} sockets"
    )
    # Faults were mixed in, yet most collections succeeded.
    assert up_seen > 0.8 * len(accounts) * (SCRAPES // 500)
    # Flat: 9,000 more scrapes leave no more than noise behind.
    assert objects_b - objects_a < 5_000
    assert rss_b - rss_a < 16 << 20
    assert sockets_b - sockets_a <= 3


IDLE_CONNECTIONS = 2000
SLOWLORIS_CONNECTIONS = 500
WRONG_PASSWORDS = 300
PIPELINING_CONNECTIONS = 200  # and up to 200 more while the scrapes run
UNFINISHED_HEADS = 500
LEGITIMATE_SCRAPES = 20


def test_a_scrape_gets_through_idle_slowloris_and_password_floods_at_once(tmp_path: Path) -> None:
    raise_file_limit()  # this process holds about 2,800 sockets
    password = "the real prometheus"
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(10)).decode()
    web_config = tmp_path / "web.yml"
    web_config.write_text(f"basic_auth_users:\n  prometheus: {hashed}\n")
    good = basic("prometheus", password)
    with ExporterProcess("--demo", "--web.config.file", str(web_config)) as exporter:
        # Logged in before the attack, as a Prometheus scraping all along would be.
        assert http_get(exporter.port, "/metrics", good)[0] == 200
        rss_before = exporter.rss_bytes()
        idle = connect(exporter.port, IDLE_CONNECTIONS)
        heads = connect(exporter.port, UNFINISHED_HEADS, UNFINISHED_HEAD_OF_ALLOWED_LINES)
        slowloris = Slowloris(exporter.port, SLOWLORIS_CONNECTIONS)
        slowloris.start()
        pipelining = PipelineFlood(
            exporter.port,
            b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n",
            6000,
            count=PIPELINING_CONNECTIONS,
            limit=2 * PIPELINING_CONNECTIONS,
            every=0.01,
        )
        pipelining.start()
        flood_answers: list[list[int | None]] = []
        flood = threading.Thread(
            target=lambda: flood_answers.append(password_flood(exporter.port, WRONG_PASSWORDS))
        )
        flood.start()
        scrapes = []
        rss_peak = exporter.rss_bytes()
        try:
            for _ in range(LEGITIMATE_SCRAPES):
                scrapes.append(http_get(exporter.port, "/metrics", good))
                rss_peak = max(rss_peak, exporter.rss_bytes())
                time.sleep(0.1)
            flood.join()
        finally:
            slowloris.stop()
            pipelining.stop()
            close_all(idle + heads)
        time.sleep(0.5)
        rss_after = exporter.rss_bytes()
        log = exporter.log()
    [flood_statuses] = flood_answers
    ok = [seconds for status, seconds in scrapes if status == 200]
    # A scrape that failed counts as the slowest: the median is of every attempt.
    median = statistics.median(
        seconds if status == 200 else float("inf") for status, seconds in scrapes
    )
    print(
        f"\nflood soak: {IDLE_CONNECTIONS} idle connections, {SLOWLORIS_CONNECTIONS} slowloris "
        f"({slowloris.cut_off} cut off), {WRONG_PASSWORDS} wrong passwords "
        f"({flood_statuses.count(429)} refused at once, {flood_statuses.count(401)} checked), "
        f"{UNFINISHED_HEADS} unfinished heads of 124 KB, {len(pipelining.sockets)} connections "
        f"pipelining 6000 requests without reading\n"
        f"  legitimate scrapes: {len(ok)}/{len(scrapes)} answered, median {median * 1000:.0f} ms, "
        f"slowest {max(ok, default=float('nan')) * 1000:.0f} ms\n"
        f"  exporter RSS: {rss_before / 2**20:.1f} MiB before, {rss_peak / 2**20:.1f} MiB at the "
        f"peak, {rss_after / 2**20:.1f} MiB after; {len(log.splitlines())} log lines"
    )
    assert median < 1.0
    assert len(ok) >= LEGITIMATE_SCRAPES * 3 // 4
    # Heads held in all, pipelines bounded per connection: before those bounds, 57 MiB more.
    assert rss_peak - rss_before < 32 << 20
    assert "Traceback" not in log


HOSTILE_SCRAPES = 300
HEALTHY_PROVIDERS = ("capmonster", "datalabs", "vastcap", "decaptcha", "ocean")


def hostile_accounts(simulator: Simulator, login_url: str) -> list[dict[str, Any]]:
    """An upstream that attacks: a 1 GiB gzip bomb, a body built to make a regular expression
    backtrack, two equal 450 KB subtrees compared 8,300 times, and 900 KB login tokens; plus
    a login that hands out a new 8 KB token every collection, for the log redactor to forget."""

    def json_account(name: str, fault: Fault | None, **settings: Any) -> dict[str, Any]:
        key = f"hostile-{name}-key"
        simulator.add("json", SimAccount(key, chaos=[] if fault is None else [(1.0, fault)]))
        return {
            "name": f"hostile-{name}",
            "provider": "http_json",
            "api_key": key,
            "cache_ttl": "0s",
            "request": {
                "url": simulator.base_url("json") + "/v1/balance",
                "headers": {"Authorization": "Bearer {api_key}"},
            },
            "values": {"balance_usd": "balance"},
            **settings,
        }

    def login_account(name: str, path: str) -> dict[str, Any]:
        return {
            "name": f"hostile-{name}",
            "provider": "http_json",
            "api_key": f"hostile-{name}-key",
            "cache_ttl": "0s",
            "login": {
                "request": {
                    "url": login_url + path,
                    "method": "POST",
                    "json": {"key": "{api_key}"},
                },
                "token": "token",
                "expires_in": "expires_in",
            },
            "request": {"url": login_url + "/balance", "headers": {"X-Token": "{token}"}},
            "values": {"balance_usd": "balance"},
        }

    digits = respond(200, "9" * 65_000, content_type="text/plain")
    subtree = [0] * 150_000
    equal = respond(200, {"a": subtree, "b": subtree, "n": 1})
    path = "a==b&&" * 166 + "n"
    credits = [{"credit_type": f"c{i}", "pool": "one_time", "path": path} for i in range(50)]
    return [
        json_account("bomb", compression_bomb("gzip", inflated_mib=1024)),
        json_account(
            "regex", digits, response={"format": "text", "pattern": "(?P<balance>[0-9.]+) USD"}
        ),
        json_account("equality", equal, values={"credits": credits}),
        login_account("huge-token", "/huge/login"),
        login_account("new-token", "/rotating/login"),
    ]


async def test_a_hostile_upstream_leaves_the_healthy_accounts_alone(
    simulator: Simulator, aiohttp_server: Any, tmp_path: Path
) -> None:
    huge = HostileLogin(["h" * 900_000])
    rotating = HostileLogin([f"session-{i:05d}-" + "t" * 8000 for i in range(HOSTILE_SCRAPES * 2)])
    logins = web.Application()
    logins.add_subapp("/huge", huge.app)
    logins.add_subapp("/rotating", rotating.app)
    logins.router.add_get("/balance", rotating.balance)
    login_server = await aiohttp_server(logins)
    healthy = []
    for index, provider in enumerate(HEALTHY_PROVIDERS):
        key = f"healthy-{provider}-key"
        simulator.add(provider, SimAccount(key, balance=10.0 + index))
        healthy.append(account(f"healthy-{provider}", provider, key, simulator.base_url(provider)))
    hostile = hostile_accounts(simulator, str(login_server.make_url("")).rstrip("/"))
    config = write_config(tmp_path, {"accounts": healthy})

    exporter = ExporterProcess("--config.file", str(config))
    # Started in a thread: the simulator answers its start-up collection meanwhile.
    await asyncio.to_thread(exporter.__enter__)
    headers = {"X-Prometheus-Scrape-Timeout-Seconds": "5"}
    loop = asyncio.get_running_loop()

    async def scrape(session: aiohttp.ClientSession) -> tuple[float, dict[Any, float]]:
        started = loop.time()
        async with session.get(exporter.url + "/metrics", headers=headers) as response:
            assert response.status == 200
            text = await response.text()
        found = samples(text)
        for index, provider in enumerate(HEALTHY_PROVIDERS):
            name = f"healthy-{provider}"
            assert value(found, "apibalance_up", provider=provider, account=name) == 1.0
            if provider != "ocean":
                balance = value(found, "apibalance_balance_usd", provider=provider, account=name)
                assert balance == 10.0 + index
        return loop.time() - started, found

    try:
        async with aiohttp.ClientSession() as session:
            # The same healthy accounts alone first: what their scrapes cost undisturbed.
            alone = sorted([(await scrape(session))[0] for _ in range(HOSTILE_SCRAPES // 3)])
            write_config(tmp_path, {"accounts": [*healthy, *hostile]})
            async with session.post(exporter.url + "/-/reload") as response:
                assert response.status == 200
            latencies: list[float] = []
            rss: list[int] = []
            for scraped in range(HOSTILE_SCRAPES):
                seconds, found = await scrape(session)
                latencies.append(seconds)
                up = {
                    a["name"]: value(
                        found, "apibalance_up", provider="http_json", account=a["name"]
                    )
                    for a in hostile
                }
                assert up.pop("hostile-new-token") == 1.0
                assert set(up.values()) == {0.0}, up
                if scraped % 50 == 0 or scraped == HOSTILE_SCRAPES - 1:
                    rss.append(exporter.rss_bytes())
        log = exporter.log()
    finally:
        await asyncio.to_thread(exporter.__exit__)
    latencies.sort()
    median = statistics.median(latencies)

    def percentile(seconds: list[float], share: float) -> str:
        return f"{seconds[int(len(seconds) * share)] * 1000:.0f} ms"

    print(
        f"\nhostile soak: {HOSTILE_SCRAPES} scrapes of {len(healthy)} healthy accounts beside "
        f"{len(hostile)} hostile ones (a 1 GiB gzip bomb, a backtracking body, 50x166 "
        f"comparisons of 450 KB subtrees, 900 KB tokens, {len(rotating.issued)} fresh 8 KB "
        f"tokens)\n"
        f"  healthy alone: median {statistics.median(alone) * 1000:.0f} ms, 99th percentile "
        f"{percentile(alone, 0.99)}\n"
        f"  beside them:   median {median * 1000:.0f} ms, 99th percentile "
        f"{percentile(latencies, 0.99)}, slowest {latencies[-1] * 1000:.0f} ms; every healthy "
        f"balance exact in every scrape\n"
        f"  exporter RSS: {rss[0] / 2**20:.1f} MiB after the first scrape, "
        f"{max(rss) / 2**20:.1f} MiB at the peak, {rss[-1] / 2**20:.1f} MiB at the end; "
        f"{len(log.splitlines())} log lines (one per failed collection)"
    )
    assert "Traceback" not in log
    assert "level=error" not in log
    # The hostile accounts cost what reading a 1 MiB answer costs, then their budget ends them:
    # far inside the scrape's 5 s.
    assert latencies[-1] < 2.5
    assert median < 0.5
    # Flat: no bomb is held, no token kept after it is replaced, no answer kept by an error.
    assert max(rss) < 100 << 20
    assert rss[-1] - rss[1] < 8 << 20
