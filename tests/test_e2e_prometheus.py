"""End to end: a real Prometheus evaluates the shipped rules, a real Alertmanager with the
example config delivers to a test webhook, and every dashboard panel's query returns data.

The exporter is scraped the three ways the documentation describes, each its own set of
accounts: "single" (one `/metrics` job), "probed" (a `/metrics` job and the documented `/probe`
job beside it) and "replicas" (two exporter processes with one config, two targets of one
job). Each set has money in USD, roubles and euros, and an Ocean.io account with credits and
a daily limit, all under their thresholds and running out; every alert about them must fire
once per account, carrying the account's `team` and its top-up link.

Time runs 60 times faster, so that an hour of history takes a minute: the simulated providers
spend and count down 60 times faster than the clock, and every duration in the rules (ranges,
subquery steps, offsets) is divided by 60, with Prometheus scraping and evaluating every
second, which is a minute at that speed. `for:` is 0s, so nothing waits. The Alertmanager
config is as shipped except for its webhook URLs and group waits.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from exporter.demo import DemoAccount, SimAccount, Simulator
from exporter.demo.antigate import AntigateAccount
from exporter.demo.json_apis import JsonAccount
from exporter.demo.ocean import OceanAccount
from tests.helpers import free_port, readme_yaml, require_tool

ROOT = Path(__file__).parent.parent
RULES = ROOT / "alerts" / "rules" / "apibalance.rules.yml"
ALERTMANAGER = ROOT / "alerts" / "alertmanager.yml"
DASHBOARDS = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
SPEEDUP = 60
SETUPS = ("single", "probed", "replicas")
JOBS = {"single": "apibalance-single", "probed": "apibalance", "replicas": "apibalance-replicas"}
PROBE_JOB = "apibalance-probe"
TEAM = "growth"
# The simulated clock starts at the last noon (UTC): the day's request limit resets in 12
# hours, and Anti-Captcha's hourly records of the simulated past are in the exporter's past.
DAY = 86400
DEADLINE = 180.0

# (alert, account in each setup): every one must fire, once, in every setup.
EXPECTED = {
    ("ApiBalanceLow", "usd"),
    ("ApiBalanceRunsOutWithin24h", "usd"),
    ("ApiBalanceRunsOutWithin4h", "usd"),
    ("ApiBalanceLow", "usd-empty"),
    ("ApiBalanceNearlyEmpty", "usd-empty"),
    ("ApiBalanceLow", "rub"),
    ("ApiBalanceRunsOutWithin24h", "rub"),
    ("ApiBalanceRunsOutWithin4h", "rub"),
    ("ApiBalanceLow", "eur"),
    ("ApiBalanceCreditsLow", "ocean"),
    ("ApiBalanceCreditsLow", "plan"),
    ("ApiBalanceCreditsNearlyEmpty", "ocean"),
    ("ApiBalanceCreditsRunOutWithin24h", "ocean"),
    ("ApiBalanceCreditsRunOutWithin4h", "ocean"),
    ("ApiBalanceDailyLimitNearlyUsed", "ocean"),
    ("ApiBalanceDailyLimitRunsOutBeforeReset", "ocean"),
}
CURRENCIES = {"usd": "USD", "usd-empty": "USD", "rub": "RUB", "eur": "EUR"}

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def accounts(setup: str) -> list[DemoAccount]:
    """The accounts of one setup, all of team growth and all in trouble, at 60x speed."""

    def key(name: str) -> str:
        return f"e2e-{setup}-{name}-key"

    team = {"labels": {"team": TEAM}}
    found = [
        # 4.50 USD under its 5 USD threshold, empty in 3.75 hours.
        DemoAccount(
            f"{setup}-usd",
            "capmonster",
            SimAccount(key("usd"), balance=4.5, burn_per_hour=1.2),
            {"low_balance_usd": 5, **team},
        ),
        # 0.90 USD: under a quarter of its 5 USD threshold.
        DemoAccount(
            f"{setup}-usd-empty",
            "twocaptcha",
            SimAccount(key("usd-empty"), balance=0.9),
            {"low_balance_usd": 5, **team},
        ),
        # 420 RUB under 500, empty in 3.5 hours.
        DemoAccount(
            f"{setup}-rub",
            "http_json",
            SimAccount(key("rub"), balance=420.0, burn_per_hour=120.0),
            {
                "currency": "RUB",
                "low_balance": 500,
                "request": {"url": "/balance", "headers": {"X-Api-Key": "{api_key}"}},
                "values": {"balance": "balance"},
                "top_up_url": "https://sms.example/pay",
                **team,
            },
            api="json",
        ),
        # 12.50 EUR under 15, the currency from the answer.
        DemoAccount(
            f"{setup}-eur",
            "http_json",
            JsonAccount(key("eur"), balance=12.5, currency="EUR"),
            {
                "low_balance": 15,
                "request": {
                    "url": "/v2/balance",
                    "headers": {"Authorization": "Bearer {api_key}"},
                },
                "values": {"balance": "data.balance", "currency": "data.currency"},
                "error": "errors[0].code",
                "top_up_url": "https://voice.example/billing",
                **team,
            },
            api="telnyx",
        ),
        # 380 standard credits (threshold 1,000), used up in 3.8 hours; 50 email credits, under
        # a quarter of their 400; 600 requests left today, one used per scrape, 12 hours to
        # the reset, and a threshold of 590.
        DemoAccount(
            f"{setup}-ocean",
            "ocean",
            OceanAccount(
                key("ocean"),
                burn_per_hour=100.0,
                daily_limit=600,
                credits={
                    "credits": {"oneTime": 380, "recurrent": 0},
                    "emailCredits": {"oneTime": 50, "recurrent": 0},
                },
            ),
            {
                # Ocean.io accounts reuse an answer for 15 minutes unless told otherwise.
                "cache_ttl": "0s",
                "low_credits": {"standard": 1000, "email.one_time": 400},
                "low_daily_limit": 590,
                **team,
            },
        ),
        # A monthly plan of 5,000 with 328 left and no low_credits: under a tenth of the
        # allowance the answer reports.
        DemoAccount(
            f"{setup}-plan",
            "http_json",
            JsonAccount(key("plan"), payload={"requestLimit": 5000, "requestCount": 4672}),
            {
                "request": {"url": "/account", "query": {"api_key": "{api_key}"}},
                "values": {
                    "credits": [
                        {
                            "credit_type": "api_credits",
                            "pool": "monthly",
                            "path": "subtract(requestLimit, requestCount)",
                            "allowance": "requestLimit",
                        }
                    ]
                },
                "top_up_url": "https://scraper.example/billing",
                **team,
            },
            api="json",
        ),
    ]
    if setup == "single":
        # Anti-Captcha's spending statistics, for the dashboard's Spending panels.
        found.append(
            DemoAccount(
                f"{setup}-anticaptcha",
                "anticaptcha",
                AntigateAccount(
                    key("anticaptcha"),
                    balance=48.0,
                    burn_per_hour=0.9,
                    queue_shares={"Recaptcha Proxyless": 0.7, "ImageToText": 0.2},
                ),
                {"spending_stats": {"queues": ["Recaptcha Proxyless", "ImageToText"]}},
            )
        )
    return found


def exporter_config(directory: Path, setup: str, simulator: Simulator) -> Path:
    document = {
        "global": {"timeout": "5s", "cache_ttl": "0s"},
        "accounts": [
            {
                "name": account.name,
                "provider": account.provider,
                "api_key": account.sim.key,
                **account.settings,
                **account.upstream(simulator),
            }
            for account in accounts(setup)
        ],
    }
    path = directory / f"{setup}.yml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def faster(expr: str, speedup: int) -> str:
    """`expr` with every duration (ranges, subquery steps, offsets) divided by `speedup`."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

    def shorter(duration: str) -> str:
        seconds = int(duration[:-1]) * units[duration[-1]]
        assert seconds % speedup == 0, duration
        return f"{seconds // speedup}s"

    expr = re.sub(
        r"\[(\d+[smhdw])(?::(\d+[smhdw]))?\]",
        lambda m: f"[{shorter(m[1])}" + (f":{shorter(m[2])}" if m[2] else "") + "]",
        expr,
    )
    return re.sub(r"\boffset (\d+[smhdw])", lambda m: f"offset {shorter(m[1])}", expr)


def rules_without_waits(directory: Path, speedup: int = 1) -> Path:
    """The shipped rules with `for: 0s`, and at `speedup` times the speed of time."""
    document = yaml.safe_load(RULES.read_text())
    for group in document["groups"]:
        for rule in group["rules"]:
            rule["expr"] = faster(rule["expr"], speedup)
            if "alert" in rule:
                rule["for"] = "0s"
    path = directory / "rules.yml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def alertmanager_config(directory: Path, webhook_base: str) -> Path:
    document = yaml.safe_load(ALERTMANAGER.read_text())
    document["route"].update(group_wait="1s", group_interval="1s")
    for receiver in document["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = re.sub(r"^https?://[^/]+", webhook_base, hook["url"])
    path = directory / "alertmanager.yml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def readme_probe_job(exporter: str, targets: list[str]) -> dict[str, Any]:
    """The documented /probe job, pointed at this exporter and these accounts."""
    [block] = [b for b in readme_yaml() if "metrics_path: /probe" in b]
    [job] = yaml.safe_load(block)["scrape_configs"]
    job["static_configs"] = [{"targets": targets}]
    for rule in job["relabel_configs"]:
        if rule.get("target_label") == "__address__":
            rule["replacement"] = exporter
    assert isinstance(job, dict)
    assert job["job_name"] == PROBE_JOB
    return job


def prometheus_config(
    directory: Path, exporters: dict[str, list[str]], alertmanager: str, rules: Path
) -> Path:
    document = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        "scrape_configs": [
            *(
                {"job_name": JOBS[setup], "static_configs": [{"targets": exporters[setup]}]}
                for setup in SETUPS
            ),
            readme_probe_job(
                exporters["probed"][0], [account.name for account in accounts("probed")]
            ),
        ],
    }
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@dataclass
class Webhook:
    """Alertmanager's webhook receiver: keeps every alert it is sent, by receiver path."""

    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        payload = await request.json()
        for alert in payload["alerts"]:
            self.received.append((request.path, alert))
        return web.Response(text="ok")

    def find(self, **labels: str) -> list[tuple[str, dict[str, Any]]]:
        return [
            (path, alert)
            for path, alert in self.received
            if alert["status"] == "firing"
            and all(alert["labels"].get(k) == v for k, v in labels.items())
        ]


@dataclass
class Stack:
    prometheus: str
    webhook: Webhook
    started: float


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        process.terminate()
    for process in started:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def wait_until_up(session: aiohttp.ClientSession, url: str, name: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            async with session.get(url) as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    tail = log.read_text()[-3000:]  # noqa: ASYNC240 (the test has failed; blocking is harmless)
    pytest.fail(f"{name} did not come up at {url}:\n{tail}")


@pytest.fixture
async def stack(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> AsyncIterator[tuple[Stack, aiohttp.ClientSession]]:
    prometheus_bin = require_tool("prometheus")
    alertmanager_bin = require_tool("prometheus-alertmanager")

    real_start = time.time()
    simulated_start = real_start - (real_start - DAY / 2) % DAY
    simulator = Simulator(
        clock=lambda: simulated_start + (time.time() - real_start) * SPEEDUP, seed=23
    )
    for setup in SETUPS:
        for account in accounts(setup):
            simulator.add(account.api or account.provider, account.sim)
    await simulator.start()

    webhook = Webhook()
    app = web.Application()
    app.router.add_post("/{receiver}", webhook.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    webhook_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", webhook_port).start()

    def start(name: str, *args: str) -> Path:
        log = tmp_path / f"{name}.log"
        with log.open("wb") as sink:
            processes.append(
                subprocess.Popen(args, stdout=sink, stderr=subprocess.STDOUT, cwd=tmp_path)
            )
        return log

    ready: list[tuple[str, str, Path]] = []
    exporters: dict[str, list[str]] = {}
    for setup in SETUPS:
        config = exporter_config(tmp_path, setup, simulator)
        exporters[setup] = []
        for replica in range(2 if setup == "replicas" else 1):
            address = f"127.0.0.1:{free_port()}"
            exporters[setup].append(address)
            name = f"exporter-{setup}-{replica}"
            log = start(
                name,
                sys.executable,
                "-m",
                "exporter",
                "--config.file",
                str(config),
                "--web.listen-address",
                address,
            )
            ready.append((f"http://{address}/-/ready", name, log))
    alertmanager = f"127.0.0.1:{free_port()}"
    prometheus = f"127.0.0.1:{free_port()}"
    # An empty cluster address turns gossip off: one Alertmanager, no port to collide on.
    am_log = start(
        "alertmanager",
        alertmanager_bin,
        f"--config.file={alertmanager_config(tmp_path, f'http://127.0.0.1:{webhook_port}')}",
        f"--storage.path={tmp_path / 'am-data'}",
        f"--web.listen-address={alertmanager}",
        "--cluster.listen-address=",
    )
    ready.append((f"http://{alertmanager}/-/ready", "Alertmanager", am_log))
    prom_config = prometheus_config(
        tmp_path, exporters, alertmanager, rules_without_waits(tmp_path, SPEEDUP)
    )
    prom_log = start(
        "prometheus",
        prometheus_bin,
        f"--config.file={prom_config}",
        f"--storage.tsdb.path={tmp_path / 'prom-data'}",
        f"--web.listen-address={prometheus}",
    )
    ready.append((f"http://{prometheus}/-/ready", "Prometheus", prom_log))
    started = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        for url, name, log in ready:
            await wait_until_up(session, url, name, log)
        try:
            yield Stack(f"http://{prometheus}", webhook, started), session
        finally:
            await runner.cleanup()
            await simulator.stop()
    if os.environ.get("APIBALANCE_E2E_LOGS"):
        for _, _, log in ready:
            print(log.read_text())


async def api(session: aiohttp.ClientSession, url: str, **params: str) -> Any:
    async with session.get(url, params=params) as response:
        body = await response.json()
        assert response.status == 200, body
        assert body["status"] == "success", body
        return body["data"]


def panel_queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel title, expr) for every target of every panel, variables filled in
    (the job that scrapes the Anti-Captcha account, whose spending statistics fill the
    Spending panels)."""
    found = []
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        panels = list(dashboard["panels"])
        for panel in list(panels):
            panels.extend(panel.get("panels", []))  # panels inside collapsed rows
        for panel in panels:
            for target in panel.get("targets", []):
                expr = (
                    target["expr"]
                    .replace("$job", JOBS["single"])
                    .replace("$provider", ".*")
                    .replace("$account", ".*")
                    .replace("$__rate_interval", "1m")
                )
                assert "$" not in expr, f"{panel['title']}: unfilled variable in {expr}"
                found.append((path.name, panel["title"], expr))
    return found


def firing(alerts: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {
        (a["labels"]["alertname"], a["labels"].get("account", ""))
        for a in alerts
        if a["state"] == "firing"
    }


async def test_every_alert_fires_once_per_account_with_its_team_and_top_up_link(
    stack: tuple[Stack, aiohttp.ClientSession],
) -> None:
    env, session = stack
    deadline = env.started + DEADLINE

    # Every rule loads and evaluates without error.
    while True:
        groups = (await api(session, f"{env.prometheus}/api/v1/rules"))["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        evaluated = [rule for rule in rules if rule.get("lastEvaluation", "").startswith("20")]
        if rules and len(evaluated) == len(rules):
            break
        assert time.monotonic() < deadline, "Prometheus did not evaluate every rule"
        await asyncio.sleep(0.5)
    shipped = yaml.safe_load(RULES.read_text())["groups"]
    assert len(rules) == sum(len(group["rules"]) for group in shipped)

    # Every expected alert fires for every setup's account.
    wanted = {(alert, f"{setup}-{name}") for setup in SETUPS for alert, name in EXPECTED}
    while True:
        alerts = (await api(session, f"{env.prometheus}/api/v1/alerts"))["alerts"]
        missing = wanted - firing(alerts)
        if not missing:
            break
        assert time.monotonic() < deadline, f"not firing: {sorted(missing)}"
        await asyncio.sleep(1)
    unhealthy = [
        (rule["name"], rule.get("lastError"))
        for group in (await api(session, f"{env.prometheus}/api/v1/rules"))["groups"]
        for rule in group["rules"]
        if rule["health"] != "ok"
    ]
    assert not unhealthy

    # Once per account, however it is scraped: no alert name and account twice, and each
    # carries the account's team, its top-up link, and (money) its currency.
    live = [a for a in alerts if a["state"] == "firing"]
    counts = Counter((a["labels"]["alertname"], a["labels"].get("account")) for a in live)
    assert {key: n for key, n in counts.items() if n > 1} == {}
    for alert in live:
        labels, description = alert["labels"], alert["annotations"]["description"]
        if (labels["alertname"], labels["account"].split("-", 1)[1]) not in EXPECTED:
            continue
        assert labels["team"] == TEAM, alert
        assert "job" not in labels, alert
        assert "instance" not in labels, alert
        assert labels["top_up_url"].startswith("https://"), alert
        assert labels["top_up_url"] in description, alert
        currency = CURRENCIES.get(labels["account"].split("-", 1)[1])
        if currency and not labels["alertname"].startswith("ApiBalanceCredits"):
            assert labels["currency"] == currency, alert
            assert f" {currency} " in description, alert

    # Without low_credits, a tenth of the plan's allowance is the threshold.
    for setup in SETUPS:
        [plan] = [
            a
            for a in live
            if a["labels"]["account"] == f"{setup}-plan"
            and a["labels"]["alertname"] == "ApiBalanceCreditsLow"
        ]
        assert (
            "api_credits (monthly pool) 328 left, threshold 500;"
            in (plan["annotations"]["description"])
        )

    # The recorded money view is one series per account, in its currency.
    money = await api(
        session,
        f"{env.prometheus}/api/v1/query",
        query="provider_account:apibalance_balance:all_currencies",
    )
    per_account = Counter(r["metric"]["account"] for r in money["result"])
    assert set(per_account.values()) == {1}
    currencies = {r["metric"]["account"]: r["metric"]["currency"] for r in money["result"]}
    for setup in SETUPS:
        for name, currency in CURRENCIES.items():
            assert currencies[f"{setup}-{name}"] == currency

    # The documented /probe job scraped one target per account, instance = account.
    up = await api(session, f"{env.prometheus}/api/v1/query", query=f'up{{job="{PROBE_JOB}"}}')
    assert {r["metric"]["instance"]: r["value"][1] for r in up["result"]} == {
        account.name: "1" for account in accounts("probed")
    }

    # Alertmanager routes by team: the warnings to the team's chat, the critical ones to its
    # pager, once per alert and account.
    for setup in SETUPS:
        for alertname, account, receiver in (
            ("ApiBalanceLow", f"{setup}-usd", "/growth-chat"),
            ("ApiBalanceNearlyEmpty", f"{setup}-usd-empty", "/growth-pager"),
            ("ApiBalanceCreditsLow", f"{setup}-ocean", "/growth-chat"),
            ("ApiBalanceDailyLimitNearlyUsed", f"{setup}-ocean", "/growth-chat"),
        ):
            while not env.webhook.find(alertname=alertname, account=account):
                assert time.monotonic() < deadline, f"{alertname} for {account} not delivered"
                await asyncio.sleep(0.5)
            received = env.webhook.find(alertname=alertname, account=account)
            assert {path for path, _ in received} == {receiver}
            assert len({alert["fingerprint"] for _, alert in received}) == 1
            assert received[0][1]["labels"]["team"] == TEAM

    # Every panel's query returns data.
    queries = panel_queries()
    assert len(queries) >= 20
    empty = queries
    while empty:
        still_empty = []
        for dashboard, title, expr in empty:
            data = await api(session, f"{env.prometheus}/api/v1/query", query=expr)
            if not data["result"]:
                still_empty.append((dashboard, title, expr))
        empty = still_empty
        if empty:
            assert time.monotonic() < deadline, f"panels without data: {empty}"
            await asyncio.sleep(2)
