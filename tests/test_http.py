"""The HTTP endpoints: landing page, health, probe, the scrape limit and config reload."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from exporter import metrics
from exporter.demo import SimAccount, Simulator, delay
from exporter.engine import Engine, Snapshot
from exporter.http import Exporter
from exporter.upstream import Upstream
from tests.conftest import ExporterFactory
from tests.helpers import (
    account,
    accounts_in,
    gated_config,
    samples,
    value,
    write_config,
)

SECRET = "canary-key-7f3a9c1e5b"


def two_accounts(simulator: Simulator, **more: Any) -> dict[str, Any]:
    simulator.add("datalabs", SimAccount(SECRET, balance=5.5))
    simulator.add("ocean", SimAccount("ocean-key-123456"))
    return {
        "accounts": [
            account("labs", "datalabs", SECRET, simulator.base_url("datalabs"), **more),
            account("data", "ocean", "ocean-key-123456", simulator.base_url("ocean"), **more),
        ]
    }


async def test_health_ready_and_landing(
    simulator: Simulator, make_exporter: ExporterFactory
) -> None:
    _, client = await make_exporter(two_accounts(simulator))
    assert (await client.get("/-/healthy")).status == 200
    assert (await client.get("/-/ready")).status == 200
    page = await (await client.get("/")).text()
    assert "apibalance-exporter" in page
    assert 'href="/metrics"' in page
    assert "pending" in page  # nothing collected yet, and the page asks no provider
    assert sum(simulator.calls.values()) == 0
    await client.get("/metrics")
    simulator.accounts["datalabs"].clear()  # the key is now unknown upstream
    page = await (await client.get("/")).text()
    assert page.count('<td class="up">up</td>') == 2
    assert SECRET not in page
    assert simulator.base_url("datalabs") not in page


async def test_probe_collects_one_account(
    simulator: Simulator, make_exporter: ExporterFactory
) -> None:
    _, client = await make_exporter(two_accounts(simulator))
    response = await client.get("/probe", params={"account": "labs"})
    assert response.status == 200
    found = samples(await response.text())
    assert accounts_in(found, "apibalance_up") == {"labs"}
    assert value(found, "apibalance_balance_usd", provider="datalabs", account="labs") == 5.5
    assert simulator.calls[("ocean", "ocean-key-123456")] == 0
    assert not any(name.startswith(("process_", "apibalance_build")) for name, _ in found)


async def test_probe_refusals(simulator: Simulator, make_exporter: ExporterFactory) -> None:
    _, client = await make_exporter(two_accounts(simulator))
    for params in ({"account": "nope"}, {}, {"target": "http://evil.example/"}):
        response = await client.get("/probe", params=params)
        assert response.status == 400, params
        assert "evil" not in await response.text()
    assert sum(simulator.calls.values()) == 0


async def test_scrapes_beyond_max_requests_get_503_at_once(
    simulator: Simulator, make_exporter: ExporterFactory
) -> None:
    simulator.add("capmonster", SimAccount("slow-key-000000", chaos=[(1.0, delay(0.5))]))
    config = {
        "accounts": [
            account(
                "slow",
                "capmonster",
                "slow-key-000000",
                simulator.base_url("capmonster"),
                cache_ttl="0s",
            )
        ]
    }
    _, client = await make_exporter(config, max_requests=2)
    loop = asyncio.get_running_loop()

    async def scrape() -> tuple[int, float]:
        started = loop.time()
        response = await client.get("/metrics")
        await response.read()
        return response.status, loop.time() - started

    first = [asyncio.ensure_future(scrape()) for _ in range(2)]
    await asyncio.sleep(0.1)
    status, took = await scrape()
    assert status == 503
    assert took < 0.4  # answered before the slow upstream could have
    assert [(await f)[0] for f in first] == [200, 200]
    assert (await client.get("/-/healthy")).status == 200


async def test_reload(simulator: Simulator, make_exporter: ExporterFactory) -> None:
    _, client = await make_exporter(two_accounts(simulator))
    await client.get("/metrics")
    assert make_exporter.config_path is not None
    # Drop one account, keep the other as it is.
    write_config(make_exporter.tmp_path, {"accounts": two_accounts(simulator)["accounts"][:1]})
    response = await client.post("/-/reload")
    assert response.status == 200
    found = samples(await (await client.get("/metrics")).text())
    assert accounts_in(found, "apibalance_up") == {"labs"}
    assert value(found, "apibalance_config_last_reload_successful") == 1.0
    # The unchanged account kept its cache (cache_ttl 60s): no second upstream call.
    assert simulator.calls[("datalabs", SECRET)] == 1


async def test_invalid_reload_keeps_the_running_config(
    simulator: Simulator, make_exporter: ExporterFactory
) -> None:
    _, client = await make_exporter(two_accounts(simulator))
    before = samples(await (await client.get("/metrics")).text())
    loaded_at = value(before, "apibalance_config_last_reload_success_timestamp_seconds")
    write_config(
        make_exporter.tmp_path,
        "accounts:\n  - name: x\n    provider: antcaptcha\n    api_key: kkkkkkkk\n",
    )
    response = await client.post("/-/reload")
    assert response.status == 500
    text = await response.text()
    assert "accounts[0].provider: unknown provider 'antcaptcha'" in text
    found = samples(await (await client.get("/metrics")).text())
    assert accounts_in(found, "apibalance_up") == {"labs", "data"}
    assert value(found, "apibalance_config_last_reload_successful") == 0.0
    assert value(found, "apibalance_config_last_reload_success_timestamp_seconds") == loaded_at
    # Fixing the file recovers.
    write_config(make_exporter.tmp_path, two_accounts(simulator))
    assert (await client.post("/-/reload")).status == 200
    found = samples(await (await client.get("/metrics")).text())
    assert value(found, "apibalance_config_last_reload_successful") == 1.0


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "the config is empty (or only comments)"),
        ("accounts: []\n", "no accounts"),
        ("accounts:\n  - " + "[" * 10_000 + "]" * 10_000 + "\n", "nested more than 64 levels"),
    ],
    ids=["truncated", "no-accounts", "deep-nesting"],
)
async def test_a_reload_that_cannot_load_keeps_the_accounts_and_says_so(
    simulator: Simulator, make_exporter: ExporterFactory, text: str, reason: str
) -> None:
    _, client = await make_exporter(two_accounts(simulator))
    write_config(make_exporter.tmp_path, text)
    response = await client.post("/-/reload")
    assert response.status == 500
    assert reason in await response.text()
    found = samples(await (await client.get("/metrics")).text())
    assert accounts_in(found, "apibalance_up") == {"labs", "data"}
    assert value(found, "apibalance_config_last_reload_successful") == 0.0


async def test_reload_needs_post(simulator: Simulator, make_exporter: ExporterFactory) -> None:
    _, client = await make_exporter(two_accounts(simulator))
    response = await client.get("/-/reload")
    assert response.status == 405
    assert "POST" in response.headers.get("Allow", "")


async def test_gzip_when_asked(simulator: Simulator, make_exporter: ExporterFactory) -> None:
    _, client = await make_exporter(two_accounts(simulator))
    response = await client.get("/metrics", headers={"Accept-Encoding": "gzip"})
    assert response.headers.get("Content-Encoding") == "gzip"
    assert "apibalance_up" in await response.text()


async def test_series_shown_as_before_are_not_written_again(
    upstream: Upstream, aiohttp_client: AiohttpClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, (fast, slow) = gated_config("fast", "slow", cache_ttl="1h")
    client = await aiohttp_client(Exporter(Engine(config, upstream)).app)
    write = metrics.account_lines
    written: list[str] = []

    def noting(snapshot: Snapshot) -> tuple[bytes, ...]:
        written.append(snapshot.account.name)
        return write(snapshot)

    monkeypatch.setattr(metrics, "account_lines", noting)
    fast.gate.set()
    slow.gate.set()
    first = await (await client.get("/metrics")).text()
    assert sorted(written) == ["fast", "slow"]
    assert accounts_in(samples(first), "apibalance_up") == {"fast", "slow"}
    again = await (await client.get("/metrics")).text()
    assert len(written) == 2  # both answers reused: nothing written anew
    assert [line for line in again.splitlines() if line.startswith("apibalance_")] == [
        line for line in first.splitlines() if line.startswith("apibalance_")
    ]


async def test_concurrent_scrapes_never_duplicate_a_series(
    simulator: Simulator, make_exporter: ExporterFactory
) -> None:
    accounts = []
    for i in range(10):
        key = f"parallel-key-{i:04d}"
        simulator.add("twocaptcha", SimAccount(key, balance=float(i), chaos=[(1.0, delay(0.2))]))
        accounts.append(
            account(f"a{i}", "twocaptcha", key, simulator.base_url("twocaptcha"), cache_ttl="0s")
        )
    _, client = await make_exporter({"accounts": accounts})

    async def scrape() -> str:
        response = await client.get("/metrics")
        assert response.status == 200
        return await response.text()

    texts = await asyncio.gather(*(scrape() for _ in range(20)))
    assert sum(simulator.calls.values()) == 10
    for text in texts:
        lines = [line for line in text.splitlines() if line.startswith("apibalance_")]
        assert len(lines) == len(set(lines))
        series = [line.rsplit(" ", 1)[0] for line in lines]
        assert len(series) == len(set(series))
        found = samples(text)
        for i in range(10):
            assert value(
                found, "apibalance_balance_usd", provider="twocaptcha", account=f"a{i}"
            ) == float(i)


async def test_reload_does_not_drop_a_scrape_in_flight(
    simulator: Simulator, make_exporter: ExporterFactory
) -> None:
    simulator.add(
        "capmonster", SimAccount("inflight-key-0001", balance=9.0, chaos=[(1.0, delay(0.5))])
    )
    simulator.add("capmonster", SimAccount("other-key-0000001", balance=1.0))
    base = simulator.base_url("capmonster")
    slow = account("slow", "capmonster", "inflight-key-0001", base)
    other = account("other", "capmonster", "other-key-0000001", base)
    exporter, client = await make_exporter({"accounts": [slow, other]})
    scrape = asyncio.ensure_future(client.get("/metrics"))
    await asyncio.sleep(0.1)
    write_config(make_exporter.tmp_path, {"accounts": [other]})
    assert (await client.post("/-/reload")).status == 200
    response = await scrape
    found = samples(await response.text())
    assert value(found, "apibalance_balance_usd", provider="capmonster", account="slow") == 9.0
    # Its series, written for that scrape, are not kept: they hold its provider and key.
    assert list(exporter._written._by_name) == ["other"]
    after = samples(await (await client.get("/metrics")).text())
    assert accounts_in(after, "apibalance_up") == {"other"}
