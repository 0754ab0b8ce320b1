"""The /metrics endpoint against simulated providers of every type."""

from __future__ import annotations

from exporter.demo import SimAccount, Simulator
from tests.conftest import ExporterFactory
from tests.helpers import account, samples, value


async def test_every_provider_reports_its_balance(
    simulator: Simulator, make_exporter: ExporterFactory
) -> None:
    accounts = []
    for provider in (
        "anticaptcha",
        "datalabs",
        "vastcap",
        "decaptcha",
        "twocaptcha",
        "capsolver",
        "capmonster",
    ):
        simulator.add(provider, SimAccount(f"key-{provider}-0001", balance=12.5))
        accounts.append(
            account(provider, provider, f"key-{provider}-0001", simulator.base_url(provider))
        )
    _, client = await make_exporter({"accounts": accounts})
    response = await client.get("/metrics")
    assert response.status == 200
    found = samples(await response.text())
    for provider in (
        "anticaptcha",
        "datalabs",
        "vastcap",
        "decaptcha",
        "twocaptcha",
        "capsolver",
        "capmonster",
    ):
        assert value(found, "apibalance_up", provider=provider, account=provider) == 1.0
        assert value(found, "apibalance_balance_usd", provider=provider, account=provider) == 12.5
