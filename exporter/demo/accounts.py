"""`--demo`: simulated accounts of every provider type, served through the real provider code.

A `Simulator` on loopback plays each provider; the demo config points one always-healthy
account per type at it, plus accounts that show what trouble looks like: one below its
low-balance threshold and burning fast (low-balance and forecast alerts), and two that fail
now and then with the errors real providers give (a 502 page from a proxy, a 429). Two
accounts are billed in other currencies, both under their thresholds: one in roubles by its
config, one in euros as its answers say.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from exporter.config import Config, build_config
from exporter.demo.antigate import AntigateAccount
from exporter.demo.json_apis import JsonAccount
from exporter.demo.ocean import OceanAccount
from exporter.demo.server import NGINX_502, SimAccount, delay, respond
from exporter.demo.simulator import Simulator
from exporter.providers import CATALOGUE
from exporter.providers.catalogue import CatalogueProvider

DEMO_SOURCE = "<demo>"
# Ocean.io accounts reuse an answer for 15 minutes unless they set their own cache_ttl, to
# spare the real service's request limits; the simulator has none, and the demo should move.
OCEAN_DEMO_SETTINGS: dict[str, Any] = {
    "cache_ttl": "5s",
    # All pools of a credit type together, and the day's requests: thresholds of their own.
    "low_credits": {"standard": 2000},
    "low_daily_limit": 500,
    "labels": {"team": "growth"},
}


@dataclass(frozen=True)
class DemoAccount:
    name: str
    provider: str
    sim: SimAccount
    settings: dict[str, Any] = field(default_factory=dict)
    # The simulated API that answers it, when not its provider's own (http_json accounts).
    api: str | None = None

    def upstream(self, simulator: Simulator) -> dict[str, Any]:
        """The keys pointing the account at the simulator: `base_url`, or for an account with
        a `request` (http_json) its `request.url`, given here relative to the simulated API."""
        prefix = simulator.base_url(self.api or self.provider)
        request = self.settings.get("request")
        if request is None:
            return {"base_url": prefix}
        return {"request": {**request, "url": prefix + request["url"]}}


def demo_accounts() -> list[DemoAccount]:
    def key(name: str) -> str:
        return f"demo-{name}-key"

    return [
        DemoAccount(
            "anticaptcha-main",
            "anticaptcha",
            AntigateAccount(
                key("anticaptcha-main"),
                balance=48.0,
                burn_per_hour=0.9,
                topup_below=5.0,
                topup_amount=50.0,
                captcha_credits=85000,
                queue_shares={"Recaptcha Proxyless": 0.7, "ImageToText": 0.2},
            ),
            {
                "low_balance_usd": 10,
                "spending_stats": {"queues": ["Recaptcha Proxyless", "ImageToText"]},
                "labels": {"team": "scraping"},
            },
        ),
        DemoAccount(
            "datalabs-main",
            "datalabs",
            SimAccount(key("datalabs-main"), balance=25.0, burn_per_hour=0.4),
            {"low_balance_usd": 5},
        ),
        DemoAccount(
            "vastcap-main",
            "vastcap",
            SimAccount(key("vastcap-main"), balance=10.25, burn_per_hour=0.2),
            {"low_balance_usd": 2},
        ),
        DemoAccount(
            "decaptcha-main",
            "decaptcha",
            SimAccount(key("decaptcha-main"), balance=1250.75, burn_per_hour=6.0),
            {"low_balance_usd": 100},
        ),
        DemoAccount(
            "ocean-main",
            "ocean",
            OceanAccount(key("ocean-main"), burn_per_hour=40.0, daily_limit=5000),
            OCEAN_DEMO_SETTINGS,
        ),
        DemoAccount(
            "twocaptcha-main",
            "twocaptcha",
            SimAccount(key("twocaptcha-main"), balance=32.0, burn_per_hour=0.5),
            {"low_balance_usd": 5},
        ),
        DemoAccount(
            "capsolver-main",
            "capsolver",
            AntigateAccount(
                key("capsolver-main"),
                balance=71.5,
                burn_per_hour=0.8,
                packages=[
                    {
                        "packageId": "65a1f0c2e4b0d7a9c3f1e2d4",
                        "type": 2,
                        "title": "reCAPTCHA v2 500K",
                        "numberOfCalls": 412000,
                        "status": 1,
                        "token": "CAP-DEMO-PACKAGE-TOKEN",
                        "expireTime": 4102444800,
                    }
                ],
            ),
            {"low_balance_usd": 10},
        ),
        DemoAccount(
            "capmonster-main",
            "capmonster",
            SimAccount(key("capmonster-main"), balance=345.678, burn_per_hour=2.0),
            {"low_balance_usd": 20},
        ),
        DemoAccount(
            "capmonster-low",
            "capmonster",
            SimAccount(key("capmonster-low"), balance=3.2, burn_per_hour=1.2),
            {"low_balance_usd": 5},
        ),
        DemoAccount(
            "sms-gateway",
            "http_json",
            SimAccount(key("sms-gateway"), balance=86.4, burn_per_hour=0.6),
            {
                "low_balance_usd": 20,
                "request": {
                    "url": "/v2/balance",
                    "headers": {"Authorization": "Bearer {api_key}"},
                },
                "values": {"balance_usd": "data.balance"},
                "error": "errors[0].code",
            },
            api="telnyx",
        ),
        DemoAccount(
            "sms-ru",
            "http_json",
            SimAccount(key("sms-ru"), balance=420.0, burn_per_hour=3.0),
            {
                "currency": "RUB",
                "low_balance": 500,
                "request": {"url": "/balance", "headers": {"X-Api-Key": "{api_key}"}},
                "values": {"balance": "balance"},
            },
            api="json",
        ),
        DemoAccount(
            "voice-eu",
            "http_json",
            JsonAccount(key("voice-eu"), balance=12.5, burn_per_hour=0.1, currency="EUR"),
            {
                "low_balance": 15,
                "request": {
                    "url": "/v2/balance",
                    "headers": {"Authorization": "Bearer {api_key}"},
                },
                "values": {"balance": "data.balance", "currency": "data.currency"},
                "error": "errors[0].code",
            },
            api="telnyx",
        ),
        DemoAccount(
            "twocaptcha-flaky",
            "twocaptcha",
            SimAccount(
                key("twocaptcha-flaky"),
                balance=18.0,
                burn_per_hour=0.3,
                chaos=[(0.15, respond(502, NGINX_502)), (0.05, delay(30))],
            ),
            {"low_balance_usd": 5},
        ),
        DemoAccount(
            "ocean-flaky",
            "ocean",
            SimAccount(
                key("ocean-flaky"),
                burn_per_hour=10.0,
                chaos=[
                    (
                        0.1,
                        respond(
                            429,
                            {"detail": "Too Many Requests"},
                            headers={"Retry-After": "20"},
                        ),
                    )
                ],
            ),
            OCEAN_DEMO_SETTINGS,
        ),
    ]


def catalogue_accounts() -> list[DemoAccount]:
    """One account of every catalogue service, answered with its documented success answer."""
    accounts = []
    for type_name, provider in CATALOGUE.items():
        assert issubclass(provider, CatalogueProvider)
        secrets = {name: {"value": f"demo-{type_name}-{name}"} for name in provider.entry.secrets}
        accounts.append(
            DemoAccount(
                f"{type_name}-main",
                type_name,
                SimAccount(f"demo-{type_name}-main-key"),
                {"secrets": secrets} if secrets else {},
                api=f"catalogue/{type_name}",
            )
        )
    return accounts


async def start_demo(simulator: Simulator | None = None) -> tuple[Simulator, Config]:
    """Start the simulator on loopback and build the demo config pointing at it."""
    simulator = simulator or Simulator()
    accounts = [*demo_accounts(), *catalogue_accounts()]
    for account in accounts:
        simulator.add(account.api or account.provider, account.sim)
    await simulator.start()
    config = build_config(
        {
            # Short enough that a 1 s Prometheus scrape sees values move; Anti-Captcha still
            # holds its own 30 s minimum.
            "global": {"timeout": "5s", "cache_ttl": "5s"},
            "accounts": [
                {
                    "name": account.name,
                    "provider": account.provider,
                    "api_key": account.sim.key,
                    **account.settings,
                    **account.upstream(simulator),
                }
                for account in accounts
            ],
        },
        source=DEMO_SOURCE,
    )
    return simulator, config
