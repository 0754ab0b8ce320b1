"""The landing page as a person sees it: rendered by headless Chromium from a real server.

Chromium is Debian's `chromium` package, which `make test` installs; outside CI the browser
tests skip with the reason when it is missing.
"""

from __future__ import annotations

import asyncio
import html
import json
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from exporter.config import Config, load_config
from exporter.demo import SimAccount, Simulator, delay
from exporter.demo.antigate import AntigateAccount
from exporter.demo.json_apis import JsonAccount
from exporter.demo.ocean import OceanAccount
from exporter.engine import Engine
from exporter.http import Exporter
from exporter.landing import money, number
from exporter.upstream import Upstream
from tests.helpers import FrozenClock, account, require_tool, write_config
from tests.test_cli import exporter_process

SECRET = "landing-secret-key-0001"
BROWSER_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium() -> str:
    return require_tool("chromium", "chromium-browser", package="chromium package")


async def browser_dom(url: str, *flags: str) -> str:
    """The page's DOM after Chromium has loaded and parsed it (and run its scripts)."""
    browser = chromium()
    with tempfile.TemporaryDirectory() as profile:
        process = await asyncio.create_subprocess_exec(
            browser,
            *BROWSER_FLAGS,
            f"--user-data-dir={profile}",
            *flags,
            "--dump-dom",
            url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), timeout=120)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert process.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()


class Seen(HTMLParser):
    """What a person sees of a DOM: its text, the table's rows (cell texts), script elements."""

    HIDDEN = frozenset({"head", "style", "script", "title"})

    def __init__(self, dom: str) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.rows: list[list[str]] = []
        self.scripts = 0
        self._hidden = 0
        self._cell: list[str] | None = None
        self.feed(dom)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.HIDDEN:
            self._hidden += 1
        self.scripts += tag == "script"
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "br" and self._cell is not None:
            self._cell.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.HIDDEN:
            self._hidden -= 1
        elif tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._hidden:
            return
        self.parts.append(data)
        if self._cell is not None:
            self._cell.append(data)

    @property
    def text(self) -> str:
        return " ".join("".join(self.parts).split())

    def row(self, first_cell: str) -> dict[str, str]:
        """The row of an account, by column heading."""
        headings = self.rows[0]
        found = [row for row in self.rows[1:] if row and row[0] == first_cell]
        assert len(found) == 1, (first_cell, self.rows)
        return dict(zip(headings, found[0], strict=True))


def landing_accounts(simulator: Simulator) -> dict[str, Any]:
    simulator.add("anticaptcha", AntigateAccount(SECRET, balance=12.3456, captcha_credits=85000))
    simulator.add(
        "ocean",
        OceanAccount(
            "landing-ocean-key-01",
            daily_limit=950,
            credits={"credits": {"oneTime": 100, "recurrent": 2500}},
        ),
    )
    simulator.add("json", SimAccount("landing-rub-key-0001", balance=420.0))
    rubles = {
        "name": "sms-ru",
        "provider": "http_json",
        "api_key": "landing-rub-key-0001",
        "currency": "RUB",
        "low_balance": 500,
        "request": {
            "url": simulator.base_url("json") + "/balance",
            "headers": {"X-Api-Key": "{api_key}"},
        },
        "values": {"balance": "balance"},
    }
    return {
        "accounts": [
            rubles,
            account(
                "main", "anticaptcha", SECRET, simulator.base_url("anticaptcha"), low_balance_usd=20
            ),
            account("data", "ocean", "landing-ocean-key-01", simulator.base_url("ocean")),
            account(
                "revoked", "capmonster", "landing-unknown-key-1", simulator.base_url("capmonster")
            ),
        ]
    }


async def test_a_person_sees_money_its_age_errors_and_a_failed_reload(
    simulator: Simulator, upstream: Upstream, tmp_path: Path
) -> None:
    # The config's path is shown on the page: one that needs escaping.
    directory = tmp_path / 'conf <i>&"x"'
    directory.mkdir()
    path = write_config(directory, landing_accounts(simulator))

    def loader() -> Config:
        return load_config(path)

    clock = FrozenClock()
    exporter = Exporter(Engine(loader(), upstream, clock), loader=loader)
    async with TestServer(exporter.app, host="127.0.0.1") as server:
        url = str(server.make_url("/"))
        seen = Seen(await browser_dom(url))
        assert "not collected yet" in seen.row("main")["balance"]
        await exporter.engine.collect()
        clock.advance(5 * 60 + 3)
        # A reload that fails: a key pasted into a duration, and a key name that is markup.
        text = path.read_text(encoding="utf-8")
        path.write_text(
            f'global:\n  timeout: "{SECRET}"\n  "<script>alert(1)</script>": 1\n' + text,
            encoding="utf-8",
        )
        problems = await exporter.reload()
        assert problems
        dom = await browser_dom(url)
    seen = Seen(dom)

    main = seen.row("main")
    # Below its low_balance_usd: low, as ApiBalanceLow says, with where to pay.
    assert main["status"] == "low\ntop up"
    assert main["balance"] == "12.3456 USD (low: below 20.00 USD)"
    assert main["credits"] == "captcha: subscription 85,000"
    assert main["as of"] == "5 min ago"
    collected_at = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(clock.wall() - 303))
    assert f'title="{collected_at}"' in dom
    assert seen.row("sms-ru")["balance"] == "420.00 RUB (low: below 500.00 RUB)"
    data = seen.row("data")
    assert data["credits"].splitlines()[0] == "standard: one_time 100 · recurrent 2,500"
    assert data["daily limit"].startswith("949 left\nresets in ")  # the balance call is one
    revoked = seen.row("revoked")
    assert revoked["status"] == "down"
    assert revoked["balance"] == "never collected"
    assert revoked["last error"].startswith("auth: ")

    # The failed reload, plainly, with its time and problems; the page is not "normal".
    assert "Config reload failed" in seen.text
    failed_at = time.strftime("%Y-%m-%d %H:%M", time.gmtime(exporter.reload_failure.at))  # type: ignore[union-attr]
    assert f"The reload at {failed_at}" in seen.text
    assert "still runs the config loaded at" in seen.text
    assert "global.timeout: not a duration: '<redacted>'" in seen.text
    assert "global.<script>alert(1)</script>: unknown key" in seen.text
    assert str(directory) in seen.text  # escaped, so shown as it is
    assert seen.scripts == 0
    assert SECRET not in dom
    assert "landing-ocean-key-01" not in dom
    assert simulator.base_url("anticaptcha") not in dom


async def test_a_later_failure_keeps_the_figures_with_their_age(
    simulator: Simulator, make_exporter: Any
) -> None:
    simulator.add("capmonster", SimAccount("landing-later-key-01", balance=7.25))
    base_url = simulator.base_url("capmonster")
    config = {
        "accounts": [
            account("later", "capmonster", "landing-later-key-01", base_url, cache_ttl="0s")
        ]
    }
    _, client = await make_exporter(config)
    await client.get("/metrics")
    simulator.accounts["capmonster"].clear()  # the key is now unknown upstream
    await client.get("/metrics")
    page = await (await client.get("/")).text()
    row = page[page.index(">later</a>") :].split("</tr>")[0]
    assert '<td class="down">down</td>' in row
    # The figures of the last success, marked as what they are.
    assert '<td class="stale">7.25 USD</td>' in row
    assert '<span class="stale-tag">stale</span>' in row
    assert "<td>auth: " in row


# Run in the page as the browser lays it out: the text of every cell whose content is wider
# than the cell, so spills over its neighbour.
OVERFLOW_PROBE = """<script>
const spilled = [...document.querySelectorAll("tbody td")]
  .filter((cell) => cell.scrollWidth > cell.clientWidth + 1)
  .map((cell) => cell.textContent.trim());
document.body.insertAdjacentHTML(
  "beforeend", `<pre id="spilled">${JSON.stringify(spilled)}</pre>`);
</script>"""


async def test_no_cell_spills_into_the_next_at_1280_pixels(
    simulator: Simulator, upstream: Upstream, tmp_path: Path
) -> None:
    simulator.add("capmonster", SimAccount("landing-spill-key-01", balance=7.25))
    base_url = simulator.base_url("capmonster")
    config = {
        "accounts": [
            account("long-down", "capmonster", "landing-spill-key-01", base_url, cache_ttl="0s"),
            account("long-up", "capmonster", "landing-spill-key-02", base_url, cache_ttl="0s"),
        ]
    }
    simulator.add("capmonster", SimAccount("landing-spill-key-02", balance=3.5))
    path = write_config(tmp_path, config)
    clock = FrozenClock()
    engine = Engine(load_config(path), upstream, clock)
    await engine.collect()
    # One account down for hours; the figures of both are hours old.
    del simulator.accounts["capmonster"]["landing-spill-key-01"]
    clock.advance(21 * 3600 + 28 * 60)
    await engine.collect(["long-down"])
    exporter = Exporter(engine, loader=lambda: load_config(path))
    async with TestClient(TestServer(exporter.app, host="127.0.0.1")) as client:
        page = await (await client.get("/")).text()
    assert '<span class="stale-tag">stale</span> 21 h 28 min ago' in page
    assert page.count("21 h 28 min ago") == 2
    measured = tmp_path / "landing.html"
    measured.write_text(page.replace("</body>", OVERFLOW_PROBE + "</body>"), encoding="utf-8")
    dom = await browser_dom(measured.as_uri(), "--window-size=1280,1600")
    spilled = dom.rsplit('<pre id="spilled">', 1)[1].split("</pre>")[0]
    assert json.loads(html.unescape(spilled)) == []


async def test_reload_success_clears_the_notice(simulator: Simulator, make_exporter: Any) -> None:
    _, client = await make_exporter(landing_accounts(simulator))
    config_path = make_exporter.config_path
    good = config_path.read_text(encoding="utf-8")
    config_path.write_text("accounts: [", encoding="utf-8")
    assert (await client.post("/-/reload")).status == 500
    assert "Config reload failed" in await (await client.get("/")).text()
    config_path.write_text(good, encoding="utf-8")
    assert (await client.post("/-/reload")).status == 200
    assert "Config reload failed" not in await (await client.get("/")).text()


async def test_start_up_collects_in_the_background(simulator: Simulator, tmp_path: Path) -> None:
    simulator.add("capmonster", SimAccount("landing-slow-key-01", balance=42.5))
    simulator.accounts["capmonster"]["landing-slow-key-01"].script.append(delay(2.0))
    path = write_config(
        tmp_path,
        {
            "accounts": [
                account(
                    "slow", "capmonster", "landing-slow-key-01", simulator.base_url("capmonster")
                )
            ]
        },
    )
    async with exporter_process("--config.file", str(path)) as running:
        # Healthy at once, while the start-up collection still waits for its answer.
        status, _ = await running.get("/-/healthy")
        assert status == 200
        assert simulator.calls[("capmonster", "landing-slow-key-01")] <= 1
        page = ""
        for _ in range(200):  # the page fills in without any scrape
            _, page = await running.get("/")
            if "42.50 USD" in page:
                break
            await asyncio.sleep(0.05)
        assert "42.50 USD" in page
        assert simulator.calls[("capmonster", "landing-slow-key-01")] == 1


def test_amounts_read_as_money() -> None:
    assert money(12.3456, "USD") == "12.3456 USD"
    assert money(5.5, "EUR") == "5.50 EUR"
    assert money(1250.0, "USD") == "1,250.00 USD"
    assert money(0.00012, "USD") == "0.0001 USD"
    assert number(85000.0) == "85,000"
    assert number(2.5) == "2.5"
    assert number(0.0) == "0"


def json_api(simulator: Simulator, name: str, payload: Any, **more: Any) -> dict[str, Any]:
    """An http_json account whose answer is `payload`."""
    key = f"landing-{name}-key-0001"
    simulator.add("json", JsonAccount(key, payload=payload))
    return {
        "name": name,
        "provider": "http_json",
        "api_key": key,
        "request": {
            "url": simulator.base_url("json") + "/v1",
            "headers": {"Authorization": "Bearer {api_key}"},
        },
        **more,
    }


async def test_problems_come_first_judged_as_the_alerts_judge_them(
    simulator: Simulator, make_exporter: Any
) -> None:
    """55 accounts: a summary line; down, nearly empty and low accounts above the rest, each
    by the thresholds and defaults of the shipped alerts (docs/alerts.md)."""
    healthy = []
    for i in range(49):
        key = f"landing-healthy-{i:04d}"
        simulator.add("datalabs", SimAccount(key, balance=25.0))
        healthy.append(account(f"healthy-{i:02d}", "datalabs", key, simulator.base_url("datalabs")))
    simulator.add("capmonster", SimAccount("landing-gone-key-0001", balance=7.25))
    simulator.add("capmonster", SimAccount("landing-pennies-0001", balance=0.05))
    simulator.add(
        "ocean",
        OceanAccount(
            "landing-ocean-key-02",
            daily_limit=950,
            credits={"credits": {"oneTime": 100, "recurrent": 2500}},
        ),
    )
    credits = {"credit_type": "searches", "pool": "monthly", "path": "left", "allowance": "plan"}
    problems = [
        # Goes down after one success: its figures stay, marked stale; down, not low.
        account(
            "gone",
            "capmonster",
            "landing-gone-key-0001",
            simulator.base_url("capmonster"),
            cache_ttl="0s",
            low_balance_usd=100,
        ),
        # USD without a threshold: nearly empty under 1 USD (ApiBalanceNearlyEmpty's default).
        account("pennies", "capmonster", "landing-pennies-0001", simulator.base_url("capmonster")),
        # Another currency without a threshold: no default, so up.
        json_api(
            simulator, "kopecks", {"balance": 0.5}, currency="RUB", values={"balance": "balance"}
        ),
        # A monthly plan of 5,000 searches on day 28: 328 left is under a tenth of it.
        json_api(simulator, "monthly", {"left": 328, "plan": 5000}, values={"credits": [credits]}),
        # ... and 600 left is not.
        json_api(simulator, "early", {"left": 600, "plan": 5000}, values={"credits": [credits]}),
        # All pools of a type together against low_credits; the daily limit against its own.
        account(
            "data",
            "ocean",
            "landing-ocean-key-02",
            simulator.base_url("ocean"),
            low_credits={"standard": 5000},
            low_daily_limit=1000,
        ),
    ]
    _, client = await make_exporter({"accounts": [*healthy, *problems]})
    await client.get("/metrics")
    simulator.accounts["capmonster"].pop("landing-gone-key-0001")
    await client.get("/metrics")
    seen = Seen(await (await client.get("/")).text())

    assert "55 accounts, 1 down, 3 low, 51 up" in seen.text
    order = [row[0] for row in seen.rows[1:]]
    assert order[:4] == ["gone", "pennies", "monthly", "data"]
    assert order[4:] == [*(f"healthy-{i:02d}" for i in range(49)), "kopecks", "early"]
    statuses = {name: seen.row(name)["status"] for name in order[:4]}
    assert statuses == {
        "gone": "down",
        "pennies": "nearly empty\ntop up",
        "monthly": "low",  # http_json: no page to pay on unless the config names one
        "data": "low\ntop up",
    }
    gone = seen.row("gone")
    assert gone["balance"] == "7.25 USD"  # below its threshold, but stale: not marked low
    assert gone["as of"].startswith("stale ")
    assert seen.row("pennies")["balance"] == "0.05 USD (nearly empty: below 1.00 USD)"
    assert seen.row("kopecks")["status"] == "up"
    assert seen.row("monthly")["credits"] == "searches: monthly 328 of 5,000 (low: below 500)"
    assert seen.row("early")["credits"] == "searches: monthly 600 of 5,000"
    data = seen.row("data")
    assert data["credits"].splitlines() == [
        "standard: one_time 100 · recurrent 2,500",
        "standard (all pools): 2,600 (low: below 5,000)",
    ]
    assert data["daily limit"].startswith("949 left (low: below 1,000)\nresets in ")
