"""The catalogue: every entry's documented answers, served by the simulator over loopback, give
the exact metrics and the right reason; an account of a catalogue type takes only the common
keys and the secrets its service needs; the README lists every entry and the examples of
docs/providers.md run."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from aiohttp import web

from exporter.config import build_config, parse_config
from exporter.configfile import ConfigError
from exporter.demo import Fault, SimAccount, Simulator
from exporter.demo.catalogue import documented_answer
from exporter.engine import Engine
from exporter.model import Reason
from exporter.providers import BUILT_IN, CATALOGUE
from exporter.providers.catalogue import (
    FAMILIES,
    CatalogueProvider,
    answers_of,
    entry_files,
    load_entry,
)
from exporter.upstream import Upstream
from tests.conftest import ExporterFactory
from tests.helpers import README, readme_section, readme_yaml, samples

KEY = "catalogue-key-0123456789abcdef"
ENTRIES = sorted(CATALOGUE)
TABLE = "## Ready providers: the catalogue"  # in the README
SECTION = "## Catalogue entries"  # docs/providers.md


def entry_class(name: str) -> type[CatalogueProvider]:
    provider = CATALOGUE[name]
    assert issubclass(provider, CatalogueProvider)
    return provider


def secret_value(name: str, secret: str) -> str:
    return f"{name}-{secret}-secret-value"


def account_of(name: str, simulator: Simulator, key: str = KEY, **more: Any) -> dict[str, Any]:
    secrets = {
        secret: {"value": secret_value(name, secret)} for secret in entry_class(name).entry.secrets
    }
    settings: dict[str, Any] = {
        "name": name,
        "provider": name,
        "api_key": key,
        "base_url": simulator.base_url(f"catalogue/{name}"),
        "cache_ttl": "0s",
        **more,
    }
    if secrets:
        settings["secrets"] = secrets
    return settings


def served(answer: dict[str, Any]) -> Fault:
    async def fault(request: web.Request) -> web.StreamResponse:
        return documented_answer(answer)

    return fault


def test_there_are_entries_beyond_the_built_ins() -> None:
    assert len(ENTRIES) >= 54
    assert len({entry_class(name).entry.family for name in ENTRIES}) >= 6
    assert not set(ENTRIES) & set(BUILT_IN)
    assert set(entry_files()) == set(ENTRIES)


@pytest.mark.parametrize("name", ENTRIES)
def test_the_entry_describes_itself(name: str) -> None:
    entry = entry_class(name).entry
    # The type is the service's name in lower case without punctuation.
    assert name == re.sub(r"[^a-z0-9]", "", entry.service.lower())
    assert entry.family in FAMILIES
    assert all(url.startswith("https://") for url in entry.source)
    answers = answers_of(name)
    assert answers["success"]["expect"]
    assert answers["errors"], "at least one documented error answer"
    assert {error["reason"] for error in answers["errors"]} <= {r.value for r in Reason}


@pytest.mark.parametrize("name", ENTRIES)
def test_the_page_to_pay_on_follows_the_host(name: str) -> None:
    lines = entry_files()[name].splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("base_url:"))
    assert lines[at + 1].startswith("top_up_url: https://")
    assert entry_class(name).top_up_url == entry_class(name).entry.top_up_url


SampleKey = tuple[str, frozenset[tuple[str, str]]]
MONEY_AND_QUOTA = (
    "apibalance_up",
    "apibalance_balance",
    "apibalance_balance_usd",
    "apibalance_credits",
    "apibalance_credits_allowance",
    "apibalance_daily_limit_remaining",
    "apibalance_daily_limit_reset_seconds",
)


async def exported(name: str, client: Any) -> dict[SampleKey, float]:
    """What the exporter's /metrics says of the account, money and quota only."""
    found = samples(await (await client.get("/metrics")).text())
    return {
        (metric, frozenset((k, v) for k, v in labels if k not in ("provider", "account"))): value
        for (metric, labels), value in found.items()
        if ("account", name) in labels
        and ("provider", name) in labels
        and metric in MONEY_AND_QUOTA
    }


def wanted_samples(expect: dict[str, Any]) -> dict[SampleKey, float]:
    """The samples an answer's `expect` means."""
    wanted: dict[SampleKey, float] = {("apibalance_up", frozenset()): 1.0}
    for metric in ("balance_usd", "daily_limit_remaining", "daily_limit_reset_seconds"):
        if metric in expect:
            wanted[(f"apibalance_{metric}", frozenset())] = float(expect[metric])
    if "balance" in expect:
        # Money in its currency: USD under the _usd name as ever, any other with its code.
        if expect["currency"] == "USD":
            wanted[("apibalance_balance_usd", frozenset())] = float(expect["balance"])
        else:
            labels = frozenset({("currency", expect["currency"])})
            wanted[("apibalance_balance", labels)] = float(expect["balance"])
    # [credit_type, pool, credits left] and, where the answer says it, the plan's allowance.
    for credit_type, pool, number, *allowance in expect.get("credits", []):
        labels = frozenset({("credit_type", credit_type), ("pool", pool)})
        wanted[("apibalance_credits", labels)] = float(number)
        for granted in allowance:
            wanted[("apibalance_credits_allowance", labels)] = float(granted)
    return wanted


@pytest.mark.parametrize("name", ENTRIES)
async def test_the_documented_success_gives_the_exact_metrics(
    name: str, simulator: Simulator, make_exporter: ExporterFactory
) -> None:
    simulator.add(f"catalogue/{name}", SimAccount(KEY))
    _, client = await make_exporter({"accounts": [account_of(name, simulator)]})
    expect = answers_of(name)["success"]["expect"]
    assert await exported(name, client) == pytest.approx(wanted_samples(expect))


VARIANTS = [
    (name, index) for name in ENTRIES for index in range(len(answers_of(name).get("variants", [])))
]


@pytest.mark.parametrize(("name", "index"), VARIANTS)
async def test_each_documented_variant_reads_as_the_service_meant_it(
    name: str, index: int, simulator: Simulator, make_exporter: ExporterFactory
) -> None:
    """Answers some accounts get (an older plan, a null field, another key kind): the exact
    metrics, or the reason the account is down, never a number the service did not mean."""
    variant = answers_of(name)["variants"][index]
    simulator.add(f"catalogue/{name}", SimAccount(KEY).then(served(variant)))
    settings = account_of(name, simulator, **variant.get("account", {}))
    _, client = await make_exporter({"accounts": [settings]})
    found = await exported(name, client)
    if "reason" in variant:
        assert found == {("apibalance_up", frozenset()): 0.0}
        errors = samples(await (await client.get("/metrics")).text())
        reasons = {
            dict(labels)["reason"]
            for (metric, labels), value in errors.items()
            if metric == "apibalance_collect_errors_total" and ("account", name) in labels and value
        }
        assert reasons == {variant["reason"]}
    else:
        assert found == pytest.approx(wanted_samples(variant["expect"]))


@pytest.mark.parametrize(
    ("name", "index"),
    [(name, index) for name in ENTRIES for index in range(len(answers_of(name)["errors"]))],
)
async def test_each_documented_error_gives_its_reason(
    name: str, index: int, simulator: Simulator, upstream: Upstream
) -> None:
    error = answers_of(name)["errors"][index]
    simulator.add(f"catalogue/{name}", SimAccount(KEY).then(served(error)))
    config = build_config({"accounts": [account_of(name, simulator)]}, source="test")
    [snapshot] = await Engine(config, upstream).collect()
    assert snapshot.outcome.reason is Reason(error["reason"])
    assert snapshot.outcome.reading is None


@pytest.mark.parametrize("name", ENTRIES)
async def test_a_key_the_service_does_not_know_is_auth(
    name: str, simulator: Simulator, upstream: Upstream
) -> None:
    simulator.add(f"catalogue/{name}", SimAccount(KEY))
    wrong = account_of(name, simulator, key="not-the-key-0123456789")
    config = build_config({"accounts": [wrong]}, source="test")
    [snapshot] = await Engine(config, upstream).collect()
    assert snapshot.outcome.reason is Reason.AUTH


@pytest.mark.parametrize("name", ENTRIES)
def test_the_default_host_is_the_services(name: str) -> None:
    entry = entry_class(name).entry
    settings = {k: v for k, v in account_of(name, Simulator()).items() if k != "base_url"}
    [acct] = build_config({"accounts": [settings]}, source="t").accounts
    assert acct.base_url.startswith(entry.base_url + "/")


def test_an_accounts_definition_is_built_once_per_service_and_host() -> None:
    name = ENTRIES[0]
    accounts = [
        {**account_of(name, Simulator()), "name": account, "base_url": base_url}
        for account, base_url in [
            ("first", "http://127.0.0.1:9"),
            ("second", "http://127.0.0.1:9"),
            ("elsewhere", "http://h.test"),
        ]
    ]
    config = build_config({"accounts": accounts}, source="t")
    one, two, other = (acct.provider for acct in config.accounts)
    assert isinstance(one, CatalogueProvider)
    assert isinstance(two, CatalogueProvider)
    assert isinstance(other, CatalogueProvider)
    assert one.config is two.config
    assert one.config is type(one).definition_of(config.accounts[0].settings)
    assert other.config is not one.config
    assert other.config.request.url.startswith("http://h.test/")


def test_an_account_takes_only_the_common_keys_and_its_secrets() -> None:
    text = """\
accounts:
  - name: s
    provider: serpapi
    api_key: k-0123456789
    request: {url: "https://elsewhere.example.com"}
  - name: t
    provider: twilio
    api_key: k-0123456789
  - name: u
    provider: serpapi
    api_key: k-0123456789
    secrets: {account_sid: {value: x}}
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="cfg.yml")
    joined = "\n".join(caught.value.lines)
    assert "cfg.yml:5: accounts[0].request: unknown key" in joined
    assert "accounts[1]: secrets.account_sid is required for twilio" in joined
    assert "accounts[2]: serpapi takes no secret account_sid" in joined


def moonshot_account(**settings: Any) -> dict[str, Any]:
    return {"name": "kimi", "provider": "moonshot", "api_key": "k-0123456789", **settings}


@pytest.mark.parametrize(
    ("settings", "currency"),
    [
        ({}, "USD"),
        ({"base_url": "https://api.moonshot.ai"}, "USD"),
        ({"base_url": "https://api.moonshot.cn"}, "CNY"),
        # A proxy or another host: the service's default, or the account's choice among its own.
        ({"base_url": "https://llm-proxy.internal.example"}, "USD"),
        ({"base_url": "https://llm-proxy.internal.example", "currency": "CNY"}, "CNY"),
        ({"base_url": "https://api.moonshot.cn", "currency": "USD"}, "USD"),
    ],
)
def test_the_host_says_which_currency_the_service_bills_in(
    settings: dict[str, Any], currency: str
) -> None:
    [acct] = build_config({"accounts": [moonshot_account(**settings)]}, source="t").accounts
    assert acct.currency == currency
    provider = acct.provider
    assert isinstance(provider, CatalogueProvider)
    assert provider.config.known_currency() == currency


@pytest.mark.parametrize(
    ("settings", "top_up_url"),
    [
        ({}, "https://cloud.siliconflow.com/expensebill"),
        ({"base_url": "https://api.siliconflow.cn"}, "https://cloud.siliconflow.cn/expensebill"),
        (
            {"base_url": "https://llm-proxy.internal.example"},
            "https://cloud.siliconflow.com/expensebill",
        ),
        (
            {"base_url": "https://api.siliconflow.cn", "top_up_url": "https://pay.example.com"},
            "https://pay.example.com",
        ),
    ],
)
def test_the_host_says_where_to_pay(settings: dict[str, Any], top_up_url: str) -> None:
    account = {"name": "sf", "provider": "siliconflow", "api_key": "k-0123456789", **settings}
    [acct] = build_config({"accounts": [account]}, source="t").accounts
    assert acct.top_up_url == top_up_url


def test_a_currency_the_service_does_not_bill_in_is_refused() -> None:
    text = """\
accounts:
  - name: kimi
    provider: moonshot
    api_key: k-0123456789
    currency: EUR
  - name: kimi-cn
    provider: moonshot
    api_key: k-0123456789
    base_url: https://api.moonshot.cn
    low_balance_usd: 5
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="cfg.yml")
    joined = "\n".join(caught.value.lines)
    assert "accounts[0]: this provider's API reports money in USD or CNY (by host)" in joined
    assert "accounts[1]: low_balance_usd is for accounts in USD; it is in CNY" in joined


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"currency_by_host": {"api.example.com": "CNY"}}, "api.example.com is the default host"),
        (
            {"top_up_url_by_host": {"api.example.com": "https://example.com/pay"}},
            "its page is top_up_url",
        ),
        ({"top_up_url_by_host": {"cn.example.com": "ftp://example.com"}}, "must be an http"),
        (
            {"currency": "answer", "currency_by_host": {"cn.example.com": "CNY"}},
            "currency_by_host is for a service whose answers do not name it",
        ),
        ({"currency_by_host": {"cn.example.com": "yuan"}}, "is not a currency code"),
        ({"currency_by_host": {"https://cn.example.com": "CNY"}}, "String should match pattern"),
    ],
)
def test_an_entrys_hosts_and_currencies_are_checked(change: dict[str, Any], problem: str) -> None:
    entry = {
        "service": "Example",
        "family": "llm",
        "source_strength": "official",
        "source": ["https://docs.example.com"],
        "base_url": "https://api.example.com",
        "top_up_url": "https://example.com/billing",
        "reports": "money",
        "key": "header",
        "http_json": {
            "request": {"url": "{base_url}/balance", "headers": {"X-Key": "{api_key}"}},
            "values": {"balance": "balance"},
        },
        **change,
    }
    if entry.get("currency") == "answer":
        entry["http_json"]["values"]["currency"] = "currency"
    with pytest.raises(ValueError, match="catalogue entry example") as caught:
        load_entry("example", yaml.safe_dump(entry))
    assert problem in str(caught.value)


def test_a_service_with_one_currency_takes_no_other() -> None:
    text = """\
accounts:
  - name: eu
    provider: vonage
    api_key: k-0123456789
    secrets: {account_key: {value: abc123}}
    currency: USD
  - name: ru
    provider: smsactivate
    api_key: k-0123456789
    low_balance_usd: 5
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="cfg.yml")
    joined = "\n".join(caught.value.lines)
    assert "this provider's API reports money in EUR" in joined
    assert "low_balance_usd is for accounts in USD; it is in RUB" in joined


async def test_the_currency_an_answer_names_must_be_the_accounts(
    simulator: Simulator, upstream: Upstream
) -> None:
    answer = {
        "status": 200,
        "json": {"account_sid": "AC1", "balance": "7.50", "currency": "EUR"},
    }
    accounts = [
        {**account_of("twilio", simulator, low_balance=5), "name": "any-currency"},
        {**account_of("twilio", simulator, currency="USD"), "name": "usd-only"},
    ]
    simulator.add("catalogue/twilio", SimAccount(KEY).then(served(answer)).then(served(answer)))
    config = build_config({"accounts": accounts}, source="test")
    snapshots = {s.account.name: s for s in await Engine(config, upstream).collect()}
    reading = snapshots["any-currency"].outcome.reading
    assert reading is not None
    assert (reading.balance, reading.currency) == (7.5, "EUR")
    assert snapshots["usd-only"].outcome.reason is Reason.INVALID_RESPONSE


async def test_the_requests_as_the_services_document_them(
    simulator: Simulator, upstream: Upstream
) -> None:
    """The done-when services: key in the query, Basic auth with two secrets, plain text,
    limit minus used, a login first."""
    names = ["serpapi", "twilio", "smsactivate", "scraperapi", "textverified"]
    for name in names:
        simulator.add(f"catalogue/{name}", SimAccount(KEY))
    config = build_config({"accounts": [account_of(name, simulator) for name in names]}, source="t")
    snapshots = await Engine(config, upstream).collect()
    assert all(snapshot.outcome.ok for snapshot in snapshots), [s.outcome.error for s in snapshots]
    seen = {(r.provider.removeprefix("catalogue/"), r.path): r for r in simulator.requests}
    serp = seen[("serpapi", "/catalogue/serpapi/account.json")]
    assert serp.query == f"api_key={KEY}"
    sid = secret_value("twilio", "account_sid")
    twilio = seen[("twilio", f"/catalogue/twilio/2010-04-01/Accounts/{sid}/Balance.json")]
    assert twilio.headers["Authorization"].startswith("Basic ")
    sms = seen[("smsactivate", "/catalogue/smsactivate/stubs/handler_api.php")]
    assert sms.query == f"api_key={KEY}&action=getBalance"
    login = seen[("textverified", "/catalogue/textverified/api/pub/v2/auth")]
    assert (login.method, login.headers["X-API-KEY"]) == ("POST", KEY)
    assert login.headers["X-API-USERNAME"] == secret_value("textverified", "username")
    me = seen[("textverified", "/catalogue/textverified/api/pub/v2/account/me")]
    assert me.headers["Authorization"].startswith("Bearer sim-textverified-token-")


def readme_rows() -> dict[str, list[str]]:
    """The catalogue table of the README: type -> the cells of its row."""
    section = readme_section(TABLE, README.read_text(encoding="utf-8"))
    table = section[section.index("\n|---") :]
    rows: dict[str, list[str]] = {}
    for line in table.splitlines():
        found = re.match(r"^\| `([a-z0-9]+)` \|(.*)\|$", line)
        if found is not None:
            rows[found.group(1)] = [cell.strip() for cell in found.group(2).split(" | ")]
    return rows


def test_the_readme_lists_every_entry_and_how_strong_its_source_is() -> None:
    rows = readme_rows()
    assert set(rows) == set(ENTRIES)
    for name in ENTRIES:
        entry = entry_class(name).entry
        service, family, *_, strength = rows[name]
        assert (service, family, strength) == (entry.service, entry.family, entry.source_strength)


def test_an_entry_says_how_strong_its_source_is() -> None:
    text = entry_files()[ENTRIES[0]]
    weak = text.replace("source_strength: official", "source_strength: hearsay")
    with pytest.raises(ValueError, match="source_strength"):
        load_entry(ENTRIES[0], weak)
    missing = text.replace("source_strength: official\n", "")
    with pytest.raises(ValueError, match="source_strength"):
        load_entry(ENTRIES[0], missing)


def readme_accounts() -> list[dict[str, Any]]:
    return [a for block in readme_yaml(SECTION) for a in yaml.safe_load(block)["accounts"]]


def test_the_readme_shows_the_done_when_services() -> None:
    providers = {acct["provider"] for acct in readme_accounts()}
    assert {"serpapi", "twilio", "smsactivate", "scraperapi", "textverified"} <= providers


@pytest.mark.parametrize("index", range(len(readme_accounts())))
async def test_the_readme_examples_run(
    index: int, simulator: Simulator, upstream: Upstream
) -> None:
    acct = readme_accounts()[index]
    name = acct["provider"]
    settings = {k: v for k, v in acct.items() if k not in ("api_key_env", "api_key_file")}
    settings["api_key"] = KEY
    settings["base_url"] = simulator.base_url(f"catalogue/{name}")
    if "secrets" in settings:
        settings["secrets"] = {s: {"value": secret_value(name, s)} for s in settings["secrets"]}
    simulator.add(f"catalogue/{name}", SimAccount(KEY))
    config = build_config({"accounts": [settings]}, source="README.md")
    [snapshot] = await Engine(config, upstream).collect()
    assert snapshot.outcome.ok, snapshot.outcome.error
