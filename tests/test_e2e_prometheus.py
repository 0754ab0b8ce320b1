"""End to end: a real Prometheus scrapes the exporter in --demo with the shipped rules loaded,
a real Alertmanager with the example config delivers to a test webhook, and every dashboard
panel's query returns data.

The rules are loaded as shipped except for `for:`, shortened to 0s so the test does not wait
ten minutes; the Alertmanager config as shipped except for its webhook URLs and group waits.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from tests.helpers import free_port, readme_yaml, require_tool

ROOT = Path(__file__).parent.parent
RULES = ROOT / "alerts" / "rules" / "apibalance.rules.yml"
ALERTMANAGER = ROOT / "alerts" / "alertmanager.yml"
DASHBOARDS = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
JOB = "apibalance"
PROBE_JOB = "apibalance-probe"
PROBED = ["capmonster-low", "anticaptcha-main"]

# The burn-rate rules compare the balance with itself a minute ago: data needs a minute.
BURN_RATE_DATA_AFTER = 65.0
DEADLINE = 180.0

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


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
            if all(alert["labels"].get(k) == v for k, v in labels.items())
        ]


@dataclass
class Stack:
    prometheus: str
    alertmanager: str
    webhook: Webhook
    started: float


def rules_without_waits(directory: Path) -> Path:
    document = yaml.safe_load(RULES.read_text())
    for group in document["groups"]:
        for rule in group["rules"]:
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


def readme_probe_job(exporter: str) -> dict[str, Any]:
    """The documented /probe job, pointed at this exporter and two demo accounts."""
    [block] = [b for b in readme_yaml() if "metrics_path: /probe" in b]
    [job] = yaml.safe_load(block)["scrape_configs"]
    job["static_configs"] = [{"targets": PROBED}]
    for rule in job["relabel_configs"]:
        if rule.get("target_label") == "__address__":
            rule["replacement"] = exporter
    assert isinstance(job, dict)
    return job


def prometheus_config(directory: Path, exporter: str, alertmanager: str, rules: Path) -> Path:
    document = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        "scrape_configs": [
            {"job_name": JOB, "static_configs": [{"targets": [exporter]}]},
            readme_probe_job(exporter),
        ],
    }
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
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

    webhook = Webhook()
    app = web.Application()
    app.router.add_post("/{receiver}", webhook.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    webhook_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", webhook_port).start()

    exporter = f"127.0.0.1:{free_port()}"
    alertmanager = f"127.0.0.1:{free_port()}"
    prometheus = f"127.0.0.1:{free_port()}"

    def start(name: str, *args: str) -> Path:
        log = tmp_path / f"{name}.log"
        with log.open("wb") as sink:
            processes.append(
                subprocess.Popen(args, stdout=sink, stderr=subprocess.STDOUT, cwd=tmp_path)
            )
        return log

    exporter_log = start(
        "exporter",
        sys.executable,
        "-m",
        "exporter",
        "--demo",
        "--web.listen-address",
        exporter,
    )
    # An empty cluster address turns gossip off: one Alertmanager, no port to collide on.
    am_log = start(
        "alertmanager",
        alertmanager_bin,
        f"--config.file={alertmanager_config(tmp_path, f'http://127.0.0.1:{webhook_port}')}",
        f"--storage.path={tmp_path / 'am-data'}",
        f"--web.listen-address={alertmanager}",
        "--cluster.listen-address=",
    )
    prom_config = prometheus_config(tmp_path, exporter, alertmanager, rules_without_waits(tmp_path))
    prom_log = start(
        "prometheus",
        prometheus_bin,
        f"--config.file={prom_config}",
        f"--storage.tsdb.path={tmp_path / 'prom-data'}",
        f"--web.listen-address={prometheus}",
    )
    started = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        await wait_until_up(session, f"http://{exporter}/-/ready", "the exporter", exporter_log)
        await wait_until_up(session, f"http://{alertmanager}/-/ready", "Alertmanager", am_log)
        await wait_until_up(session, f"http://{prometheus}/-/ready", "Prometheus", prom_log)
        try:
            yield (
                Stack(f"http://{prometheus}", f"http://{alertmanager}", webhook, started),
                session,
            )
        finally:
            await runner.cleanup()
    if os.environ.get("APIBALANCE_E2E_LOGS"):
        for log in (exporter_log, am_log, prom_log):
            print(log.read_text())


async def api(session: aiohttp.ClientSession, url: str, **params: str) -> Any:
    async with session.get(url, params=params) as response:
        body = await response.json()
        assert response.status == 200, body
        assert body["status"] == "success", body
        return body["data"]


def panel_queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel title, expr) for every target of every panel, variables filled in."""
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
                    .replace("$job", JOB)
                    .replace("$provider", ".*")
                    .replace("$account", ".*")
                    .replace("$__rate_interval", "1m")
                )
                assert "$" not in expr, f"{panel['title']}: unfilled variable in {expr}"
                found.append((path.name, panel["title"], expr))
    return found


async def test_rules_load_alerts_reach_the_webhook_and_every_panel_has_data(
    stack: tuple[Stack, aiohttp.ClientSession],
) -> None:
    env, session = stack
    deadline = env.started + DEADLINE

    # Every rule group loads and every rule evaluates without error.
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
    unhealthy = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert not unhealthy

    # The demo's capmonster-low account (3.20 USD, threshold 5 USD) is low: the alert goes
    # through Alertmanager's warning route to the chat webhook with its labels.
    while not env.webhook.find(alertname="ApiBalanceLow", account="capmonster-low", job=JOB):
        assert time.monotonic() < deadline, (
            f"no ApiBalanceLow at the webhook: {env.webhook.received}"
        )
        await asyncio.sleep(0.5)
    path, alert = env.webhook.find(alertname="ApiBalanceLow", account="capmonster-low", job=JOB)[0]
    assert path == "/chat"
    assert alert["status"] == "firing"
    assert alert["labels"]["provider"] == "capmonster"
    assert alert["labels"]["severity"] == "warning"
    assert alert["labels"]["job"] == JOB
    assert "capmonster-low" in alert["annotations"]["description"]
    assert alert["annotations"]["runbook_url"].endswith("#apibalancelow")
    # Healthy demo accounts well above their threshold do not fire.
    assert not env.webhook.find(alertname="ApiBalanceLow", account="anticaptcha-main")

    # Money in other currencies: sms-ru (420 RUB, threshold 500 RUB, by config) and voice-eu
    # (12.50 EUR, threshold 15, the currency from the answer) fire too, in their currency.
    for account, currency in (("sms-ru", "RUB"), ("voice-eu", "EUR")):
        while not env.webhook.find(alertname="ApiBalanceLow", account=account, job=JOB):
            assert time.monotonic() < deadline, f"no ApiBalanceLow for {account}"
            await asyncio.sleep(0.5)
        _, alert = env.webhook.find(alertname="ApiBalanceLow", account=account, job=JOB)[0]
        assert alert["labels"]["currency"] == currency
        assert f" {currency} left" in alert["annotations"]["description"]
    money = await api(
        session,
        f"{env.prometheus}/api/v1/query",
        query=f'provider_account:apibalance_balance:all_currencies{{job="{JOB}"}}',
    )
    currencies = {r["metric"]["account"]: r["metric"]["currency"] for r in money["result"]}
    assert currencies["sms-ru"] == "RUB"
    assert currencies["voice-eu"] == "EUR"
    assert currencies["capmonster-low"] == "USD"

    # The documented /probe job: one target per account, instance = account, that account only.
    while True:
        up = await api(session, f"{env.prometheus}/api/v1/query", query=f'up{{job="{PROBE_JOB}"}}')
        if len(up["result"]) == len(PROBED):
            break
        assert time.monotonic() < deadline, f"probe targets not scraped: {up}"
        await asyncio.sleep(0.5)
    assert {r["metric"]["instance"]: r["value"][1] for r in up["result"]} == dict.fromkeys(
        PROBED, "1"
    )
    balances = await api(
        session,
        f"{env.prometheus}/api/v1/query",
        query=f'apibalance_balance_usd{{job="{PROBE_JOB}"}}',
    )
    assert sorted(
        (r["metric"]["instance"], r["metric"]["account"]) for r in balances["result"]
    ) == sorted((name, name) for name in PROBED)

    # Every panel's query returns data once the burn rate has a minute of history.
    queries = panel_queries()
    assert len(queries) >= 20
    await asyncio.sleep(max(0.0, env.started + BURN_RATE_DATA_AFTER - time.monotonic()))
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
