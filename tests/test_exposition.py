"""The exposition, byte for byte, for a known set of provider answers; and promtool's opinion.

Regenerate the golden file after an intended change with `UPDATE_GOLDEN=1 pytest tests/test_exposition.py`
and review the diff.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from prometheus_client.openmetrics.parser import text_string_to_metric_families

from exporter.config import build_config
from exporter.engine import Engine
from exporter.metrics import AccountCollector, render
from exporter.simulator import SimAccount, Simulator, respond
from exporter.upstream import Upstream
from tests.conftest import ExporterFactory
from tests.helpers import FrozenClock, account, require_tool

GOLDEN = Path(__file__).parent / "golden"
FROZEN_TIME = 1_700_000_000.0


def known_answers(simulator: Simulator) -> dict[str, object]:
    """One account of every provider type with fixed answers, and two failing accounts."""
    hours = [
        {
            "dateFrom": 1_600_000_000 + i * 3600,
            "dateTill": 1_600_003_599 + i * 3600,
            "volume": 1000 + i,
            "money": 1.5 + i / 100,
        }
        for i in range(24)
    ]
    simulator.add(
        "anticaptcha",
        SimAccount("golden-anticaptcha", balance=12.3456, captcha_credits=85000, spending=hours),
    )
    simulator.add("datalabs", SimAccount("golden-datalabs", balance=0.0))
    simulator.add("vastcap", SimAccount("golden-vastcap", balance=10.25))
    simulator.add("decaptcha", SimAccount("golden-decaptcha", balance=1250.75))
    simulator.add(
        "ocean",
        SimAccount(
            "golden-ocean",
            daily_limit=10,
            ocean_credits={
                "credits": {"oneTime": 100, "recurrent": 250},
                "emailCredits": {"oneTime": 20, "recurrent": 0},
                "phoneCredits": {"oneTime": 3, "recurrent": 7},
            },
        ),
    )
    simulator.add("twocaptcha", SimAccount("golden-twocaptcha", balance=3.2))
    simulator.add(
        "capsolver",
        SimAccount(
            "golden-capsolver",
            balance=1071.5,
            packages=[
                {
                    "packageId": "p",
                    "type": 2,
                    "title": "t",
                    "numberOfCalls": 500000,
                    "status": 1,
                    "token": "CAP-TOKEN",
                    "expireTime": 4102444800,
                }
            ],
        ),
    )
    simulator.add("capmonster", SimAccount("golden-capmonster", balance=345.678))
    broken = SimAccount("golden-broken")
    broken.chaos.append((1.0, respond(500, "<html><h1>500</h1></html>")))
    simulator.add("capmonster", broken)

    def acct(name: str, provider: str, key: str, **more: object) -> dict[str, object]:
        return account(name, provider, key, simulator.base_url(provider), **more)

    return {
        "accounts": [
            acct(
                "main",
                "anticaptcha",
                "golden-anticaptcha",
                low_balance_usd=5,
                spending_stats={"queues": ["Recaptcha Proxyless"]},
            ),
            acct("labs", "datalabs", "golden-datalabs", low_balance_usd=1.5),
            acct("vast", "vastcap", "golden-vastcap"),
            acct("de", "decaptcha", "golden-decaptcha", low_balance_usd=100),
            acct("data", "ocean", "golden-ocean"),
            acct("two", "twocaptcha", "golden-twocaptcha"),
            acct("solver", "capsolver", "golden-capsolver"),
            acct("monster", "capmonster", "golden-capmonster"),
            acct("revoked", "capmonster", "golden-revoked-key"),
            acct("broken", "capmonster", "golden-broken"),
        ]
    }


async def test_golden_exposition(upstream: Upstream) -> None:
    simulator = Simulator(clock=lambda: FROZEN_TIME, seed=0)
    await simulator.start()
    try:
        config = build_config(known_answers(simulator), source="golden")
        engine = Engine(config, upstream, clock=FrozenClock(wall=FROZEN_TIME))
        snapshots = await engine.collect()
    finally:
        await simulator.stop()
    body, content_type = render([AccountCollector(snapshots)], None)
    assert content_type.startswith("text/plain; version=0.0.4")
    golden = GOLDEN / "accounts.prom"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_bytes(body)
    assert body.decode() == golden.read_text()


async def test_promtool_accepts_the_full_exposition(
    simulator: Simulator, make_exporter: ExporterFactory, tmp_path: Path
) -> None:
    promtool = require_tool("promtool")
    _, client = await make_exporter(known_answers(simulator))
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    body = await response.read()
    check = await asyncio.create_subprocess_exec(
        promtool,
        "check",
        "metrics",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await check.communicate(body)
    assert check.returncode == 0, (stdout, stderr)
    # promtool prints lint findings (missing HELP, bad suffixes ...) even when it exits 0.
    assert stdout + stderr == b"", (stdout, stderr)


async def test_openmetrics_on_request(simulator: Simulator, make_exporter: ExporterFactory) -> None:
    _, client = await make_exporter(known_answers(simulator))
    response = await client.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    text = await response.text()
    assert text.endswith("# EOF\n")
    families = {f.name: f for f in text_string_to_metric_families(text)}  # type: ignore[no-untyped-call]
    assert families["apibalance_collect_errors"].type == "counter"
    assert families["apibalance_up"].type == "gauge"
