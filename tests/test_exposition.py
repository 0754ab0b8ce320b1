"""The exposition, byte for byte, for a known set of provider answers; and promtool's opinion.

Regenerate the golden file after an intended change with `UPDATE_GOLDEN=1 pytest tests/test_exposition.py`
and review the diff.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
)
from prometheus_client.core import CounterMetricFamily, SummaryMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from exporter import metrics as metrics_module
from exporter.config import Account, build_config
from exporter.demo import SimAccount, Simulator, respond
from exporter.demo.antigate import AntigateAccount
from exporter.demo.json_apis import JsonAccount
from exporter.demo.ocean import OceanAccount
from exporter.engine import Engine, Outcome, Snapshot
from exporter.metrics import (
    AccountCollector,
    Collected,
    ExporterCollector,
    PlainCollector,
    PlainFamily,
    PlainSample,
    ReloadStatus,
    WrittenAccounts,
    account_lines,
    render,
)
from exporter.model import Reading, Reason
from exporter.runtime_series import GcSeries, PlatformSeries, ProcessSeries, runtime_series
from exporter.upstream import Upstream
from tests.conftest import ExporterFactory
from tests.helpers import FrozenClock, account, assert_promtool_accepts_metrics

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
        AntigateAccount(
            "golden-anticaptcha", balance=12.3456, captcha_credits=85000, spending=hours
        ),
    )
    simulator.add("datalabs", SimAccount("golden-datalabs", balance=0.0))
    simulator.add("vastcap", SimAccount("golden-vastcap", balance=10.25))
    simulator.add("decaptcha", SimAccount("golden-decaptcha", balance=1250.75))
    simulator.add(
        "ocean",
        OceanAccount(
            "golden-ocean",
            daily_limit=10,
            credits={
                "credits": {"oneTime": 100, "recurrent": 250},
                "emailCredits": {"oneTime": 20, "recurrent": 0},
                "phoneCredits": {"oneTime": 3, "recurrent": 7},
            },
        ),
    )
    simulator.add("twocaptcha", SimAccount("golden-twocaptcha", balance=3.2))
    simulator.add(
        "capsolver",
        AntigateAccount(
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
                labels={"team": "growth", "Zone": 'eu "west" \\ 1', "_cost": "cc-42"},
            ),
            acct(
                "labs",
                "datalabs",
                "golden-datalabs",
                low_balance_usd=1.5,
                top_up_url="https://billing.example.com/pay?account=labs",
            ),
            acct("vast", "vastcap", "golden-vastcap"),
            acct("de", "decaptcha", "golden-decaptcha", low_balance_usd=100),
            acct(
                "data",
                "ocean",
                "golden-ocean",
                low_credits={"standard": 500, "email.recurrent": 50, "future": 1},
                low_daily_limit=20,
            ),
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
    _, client = await make_exporter(known_answers(simulator))
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    body = await response.read()
    assert_promtool_accepts_metrics(body)


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


# What Prometheus 2 and 3 send, and the variants prometheus_client knows.
ACCEPT_HEADERS = [
    None,
    "text/plain;version=0.0.4",
    "text/plain;version=1.0.0;escaping=allow-utf-8",
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
    "application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;"
    "escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
    "application/openmetrics-text",
    "application/openmetrics-text;version=1.0.0;escaping=underscores",
    "application/openmetrics-text;version=1.0.0;escaping=dots",
    "application/openmetrics-text;version=1.0.0;escaping=values",
]


def awkward_labels(simulator: Simulator) -> list[dict[str, object]]:
    """Label values with a quote, a backslash and non-ASCII text, which need escaping."""
    simulator.add(
        "anticaptcha",
        AntigateAccount("odd-anticaptcha", balance=1e7, captcha_credits=0, queue_shares={}),
    )
    simulator.add("json", JsonAccount("odd-json", payload={"a": 123456789.5, "b": 1e-7, "c": -0.0}))
    return [
        account(
            "odd.queue:1",
            "anticaptcha",
            "odd-anticaptcha",
            simulator.base_url("anticaptcha"),
            spending_stats={"queues": ['say "hi"', "back\\slash", "Überwachung"]},
            labels={"owner": 'Jürgen "J" \\ Ops', "a": "first"},
            top_up_url='https://example.com/zahlen?konto=ü&x="',
        ),
        {
            "name": "odd-json",
            "provider": "http_json",
            "api_key": "odd-json",
            "request": {
                "url": simulator.base_url("json") + "/balance",
                "headers": {"X-Api-Key": "{api_key}"},
            },
            "values": {
                "credits": [
                    {"credit_type": 'quote"d', "pool": "a\\b", "path": "a", "allowance": "a"},
                    {"credit_type": "ünïcode", "pool": "p", "path": "b"},
                    {"credit_type": "negative_zero", "pool": "p", "path": "c"},
                ]
            },
        },
        *other_currencies(simulator),
    ]


def other_currencies(simulator: Simulator) -> list[dict[str, object]]:
    """Money in roubles by config and in euros by the answer, each with its threshold."""
    simulator.add("json", JsonAccount("rub-json", payload={"balance": 420.5}))
    simulator.add("json", JsonAccount("eur-json", payload={"money": "12.50", "cur": "EUR"}))

    def json_account(name: str, values: dict[str, str], **more: object) -> dict[str, object]:
        return {
            "name": name,
            "provider": "http_json",
            "api_key": name,
            "request": {
                "url": simulator.base_url("json") + "/balance",
                "headers": {"X-Api-Key": "{api_key}"},
            },
            "values": values,
            **more,
        }

    return [
        json_account("rub-json", {"balance": "balance"}, currency="RUB", low_balance=500),
        json_account("eur-json", {"balance": "money", "currency": "cur"}, low_balance=15),
    ]


@pytest.mark.parametrize("accept", ACCEPT_HEADERS)
async def test_own_renderer_writes_what_prometheus_client_writes(
    upstream: Upstream, accept: str | None
) -> None:
    """`render` writes account series itself; byte for byte what prometheus_client writes."""
    simulator = Simulator(seed=0)
    await simulator.start()
    try:
        data = known_answers(simulator)
        data["accounts"] = [*data["accounts"], *awkward_labels(simulator)]  # type: ignore[misc]
        config = build_config(data, source="equivalence")
        snapshots = await Engine(config, upstream).collect()
    finally:
        await simulator.stop()
    assert len(snapshots) == 14
    assert {s.currency for s in snapshots[-2:]} == {"RUB", "EUR"}
    reload_status = ReloadStatus(True, time.time())
    # The runtime series as one collection of them, so both writers see the same values; a
    # summary and a counter with `_created`, which only prometheus_client writes.
    runtime = [
        metric
        for c in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR)
        for metric in c.collect()
    ]
    summary = SummaryMetricFamily("bench_seconds", "A summary.", count_value=3, sum_value=1.5)
    created = CounterMetricFamily("made", 'A counter\\with "help".', labels=["kind"])
    created.add_metric(["a\nb"], 2.0, created=1_700_000_000.0)
    # The exporter's own runtime series, their values held still for both writers.
    own_runtime = [
        Held(list(ProcessSeries().families())),
        PlatformSeries(),
        Held(list(GcSeries().families())),
    ]
    for chosen in ([], snapshots[:1], snapshots):
        collectors: list[Collector] = [
            AccountCollector(chosen),
            ExporterCollector(lambda: reload_status),
            *own_runtime,
            Collected(runtime),
            Collected([summary]),
            Collected([created]),
            Collected(runtime),  # after those, in the order given
        ]
        body, content_type = render(collectors, accept)
        registry = CollectorRegistry(auto_describe=False)
        for collector in collectors:
            registry.register(collector)
        encoder, expected_type = choose_encoder(accept or "")
        assert content_type == expected_type
        assert body.decode() == encoder(registry).decode()
        # /probe: account series only.
        body, _ = render(collectors[:1], accept)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(collectors[0])
        assert body.decode() == encoder(registry).decode()
        # Written once and shown again from what was written.
        written = WrittenAccounts()
        for _ in range(2):
            assert render([AccountCollector(chosen, written)], accept)[0] == body


class Held(PlainCollector):
    """Families of a `PlainCollector` as they were once: the same values for every writer."""

    def __init__(self, families: list[tuple[PlainFamily, Sequence[PlainSample]]]) -> None:
        self._families = families

    def families(self) -> list[tuple[PlainFamily, Sequence[PlainSample]]]:
        return self._families


def test_runtime_series_are_prometheus_clients() -> None:
    """The process, platform and GC series the exporter reads itself are the ones
    prometheus_client's default collectors show: names, help, types, labels, and values."""
    ours = [metric for collector in runtime_series() for metric in collector.collect()]
    theirs = [
        metric
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR)
        for metric in collector.collect()
    ]
    assert [(m.name, m.documentation, m.type, m.unit) for m in ours] == [
        (m.name, m.documentation, m.type, m.unit) for m in theirs
    ]
    assert len(ours) == 10  # six of the process, python_info, three of the GC
    ours_by_name = {m.name: m for m in ours}
    for metric in theirs:
        samples = ours_by_name[metric.name].samples
        assert [(s.name, s.labels) for s in samples] == [(s.name, s.labels) for s in metric.samples]
        for mine, expected in zip(samples, metric.samples, strict=True):
            if metric.name in ("process_cpu_seconds", "process_resident_memory_bytes"):
                assert mine.value == pytest.approx(expected.value, rel=0.2, abs=0.5)
            elif metric.name.startswith("python_gc") or metric.name == "process_open_fds":
                # Collections and files may come and go between the two reads.
                assert mine.value == pytest.approx(expected.value, abs=3)
            else:
                assert mine.value == expected.value, metric.name


async def test_accounts_are_written_again_when_what_they_show_changes(upstream: Upstream) -> None:
    """`WrittenAccounts` gives what `account_lines` would write of each snapshot: the lines
    written before when nothing they show has changed, new ones when anything has."""
    simulator = Simulator(seed=0)
    await simulator.start()
    try:
        config = build_config(known_answers(simulator), source="written")
        snapshots = await Engine(config, upstream).collect()
    finally:
        await simulator.stop()
    [ocean] = [s for s in snapshots if s.account.name == "data"]
    assert ocean.outcome.reading is not None
    assert ocean.outcome.reading.daily_limit_resets_in(0.0) is not None
    [failed] = [s for s in snapshots if not s.outcome.ok][:1]
    written = WrittenAccounts()
    for snapshot in snapshots:
        lines = written.lines(snapshot)
        assert lines == account_lines(snapshot)
        # Shown again as it was, or only older where the age shows nowhere.
        assert written.lines(dataclasses.replace(snapshot)) is lines
        if snapshot is not ocean:
            assert written.lines(dataclasses.replace(snapshot, age=snapshot.age + 5)) is lines
        errors = {**snapshot.errors, Reason.AUTH: snapshot.errors[Reason.AUTH] + 1}
        account = dataclasses.replace(snapshot.account, labels=(("team", "moved"),))
        changes: list[dict[str, object]] = [
            {"errors": errors},
            {"last_success_wall": 1_800_000_000.0},
            {"currency": "EUR"},
            {"account": account},
            {"outcome": failed.outcome},
        ]
        for change in changes:
            changed = dataclasses.replace(snapshot, **change)  # type: ignore[arg-type]
            assert written.lines(changed) == account_lines(changed), change
            assert written.lines(snapshot) == lines
    later = dataclasses.replace(ocean, age=ocean.age + 8)
    assert written.lines(later) == account_lines(later) != written.lines(ocean)


def test_written_lines_depend_on_every_field_of_a_snapshot_but_its_age() -> None:
    # A field added to Snapshot that the lines show must be among what they are kept by.
    assert set(metrics_module._LINE_INPUTS) == {f.name for f in dataclasses.fields(Snapshot)} - {
        "age"
    }


def test_written_accounts_forget_those_no_longer_configured_so() -> None:
    """What an account's lines were written from holds its provider, and its keys with it:
    after a reload only accounts configured as they were are kept."""
    written = WrittenAccounts()
    accounts = some_accounts(3)
    snapshots = [Snapshot(a, OUTCOME, dict.fromkeys(Reason, 0), None) for a in accounts]
    for snapshot in snapshots:
        written.lines(snapshot)
    first = written.lines(snapshots[0])
    rotated = dataclasses.replace(accounts[2], top_up_url="https://pay.example.com")
    written.keep_only({"acct-0": accounts[0], "acct-2": rotated})
    assert written.lines(snapshots[0]) is first
    assert list(written._by_name) == ["acct-0"]


OUTCOME = Outcome(Reading(balance_usd=1.0), None, 0.0, 0.1)


def some_accounts(count: int) -> list[Account]:
    data = {
        "accounts": [
            account(f"acct-{i}", "datalabs", f"k-{i}", "http://127.0.0.1:9") for i in range(count)
        ]
    }
    return list(build_config(data, source="test").accounts)
