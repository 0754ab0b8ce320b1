"""Soak: 10,000 scrapes with faults mixed in; memory and open sockets stay flat.

Prints the figures (first window after warm-up against the last window) so a run shows them:
`pytest tests/test_soak.py -s`.
"""

from __future__ import annotations

import asyncio
import gc
import os
from pathlib import Path

import aiohttp
import pytest

from exporter.simulator import (
    NGINX_502,
    SimAccount,
    Simulator,
    delay,
    disconnect,
    respond,
    truncated_body,
)
from tests.conftest import ExporterFactory
from tests.helpers import account, samples

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
