"""Money in other currencies: the config keys, the currency read from an answer, and the
series they give, while USD accounts keep their series as they were."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from exporter.config import build_config, parse_config
from exporter.configfile import ConfigError
from exporter.demo import SimAccount, Simulator, start_demo
from exporter.demo.json_apis import JsonAccount
from exporter.engine import Engine, Snapshot
from exporter.metrics import AccountCollector
from exporter.model import Reason
from exporter.upstream import Upstream
from tests.helpers import (
    assert_promtool_accepts_metrics,
    http_json_account,
    readme_section,
    readme_yaml,
    samples,
    series_of,
    value,
)

KEY = "cur-key-0123456789abcdef"


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="cfg.yml", environ={})
    return caught.value.lines


HTTP_JSON = """\
accounts:
  - name: j
    provider: http_json
    api_key: cur-key-0123456789abcdef
    request:
      url: https://api.example.com/v1/balance
      headers: {Authorization: "Bearer {api_key}"}
    values:
      balance: data.balance
"""
BUILT_IN = """\
accounts:
  - name: b
    provider: capmonster
    api_key: cur-key-0123456789abcdef
"""


def test_a_configured_currency_and_its_threshold_load() -> None:
    config = parse_config(
        HTTP_JSON + "    currency: RUB\n    low_balance: 500\n", source="cfg.yml", environ={}
    )
    [acct] = config.accounts
    assert (acct.currency, acct.low_balance, acct.low_balance_usd) == ("RUB", 500.0, None)


def test_without_currency_an_account_is_in_usd() -> None:
    config = parse_config(HTTP_JSON + "    low_balance: 5\n", source="cfg.yml", environ={})
    [acct] = config.accounts
    assert (acct.currency, acct.low_balance, acct.low_balance_usd) == ("USD", 5.0, 5.0)


def test_a_currency_read_from_the_answer_is_not_known_at_load() -> None:
    text = HTTP_JSON + "      currency: data.currency\n    low_balance: 15\n"
    [acct] = parse_config(text, source="cfg.yml", environ={}).accounts
    assert (acct.currency, acct.low_balance, acct.low_balance_usd) == (None, 15.0, None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        *(
            (
                HTTP_JSON + f"    currency: {code}\n",
                f"cfg.yml:10: accounts[0].currency: {shown} is not a currency code: give the "
                "ISO 4217 code in three capital letters, like USD, EUR or RUB",
            )
            for code, shown in (("rub", "'rub'"), ("EURO", "'EURO'"), ("R1B", "'R1B'"))
        ),
        (
            BUILT_IN + "    currency: RUB\n",
            "cfg.yml:5: accounts[0].currency: this provider's API reports money in USD; "
            "currency can only be USD (or left out)",
        ),
        (
            BUILT_IN + "    low_balance: 5\n    low_balance_usd: 5\n",
            "cfg.yml:2: accounts[0]: give low_balance or low_balance_usd, not both",
        ),
        (
            HTTP_JSON + "    currency: RUB\n    low_balance_usd: 5\n",
            "cfg.yml:2: accounts[0]: low_balance_usd is for accounts in USD; it is in RUB: "
            "use low_balance, in the account's currency",
        ),
        (
            HTTP_JSON + "      currency: data.currency\n    low_balance_usd: 5\n",
            "cfg.yml:2: accounts[0]: low_balance_usd is for accounts in USD; its currency is "
            "read from the answer: use low_balance",
        ),
        (
            HTTP_JSON.replace("balance: data.balance", "balance_usd: data.balance")
            + "    currency: EUR\n",
            "cfg.yml:2: accounts[0]: values.balance_usd is for accounts in USD; it is in EUR: "
            "read it with values.balance",
        ),
        (
            HTTP_JSON + "      balance_usd: data.usd\n",
            "cfg.yml:9: accounts[0].values: give balance or balance_usd, not both",
        ),
        (
            HTTP_JSON.replace("balance: data.balance", "currency: data.currency"),
            "cfg.yml:9: accounts[0].values: currency says what balance is in: give balance too",
        ),
        (
            HTTP_JSON.replace("balance: data.balance", "balance_usd: data.balance")
            + "      currency: data.currency\n",
            "cfg.yml:9: accounts[0].values: balance_usd is always USD; with currency read "
            "from the answer, use balance",
        ),
        (
            HTTP_JSON + "      currency: 'data.'\n",
            "cfg.yml:10: accounts[0].values.currency: not a valid JMESPath expression",
        ),
        (
            BUILT_IN + "    low_balance: -1\n",
            "cfg.yml:5: accounts[0].low_balance:",
        ),
    ],
)
def test_refusals_name_their_place(text: str, expected: str) -> None:
    lines = problems_of(text)
    assert any(line.startswith(expected) for line in lines), lines


def test_usd_on_a_built_in_is_accepted() -> None:
    [acct] = parse_config(BUILT_IN + "    currency: USD\n", source="cfg.yml", environ={}).accounts
    assert acct.currency == "USD"


# -- collections ------------------------------------------------------------------------


def json_account(simulator: Simulator, values: dict[str, Any], **more: Any) -> dict[str, Any]:
    return http_json_account(
        simulator.base_url("json") + "/balance",
        KEY,
        request={"headers": {"Authorization": "Bearer {api_key}"}},
        values=values,
        cache_ttl="0s",
        **more,
    )


def exposition(snapshots: list[Snapshot]) -> str:
    return AccountCollector(snapshots).exposition(openmetrics=False)


FROM_ANSWER = {"balance": "money", "currency": "cur"}


async def test_a_configured_currency_gives_its_own_series(
    simulator: Simulator, upstream: Upstream
) -> None:
    simulator.add("json", JsonAccount(KEY, payload={"balance": 420.5}))
    settings = json_account(simulator, {"balance": "balance"}, currency="RUB", low_balance=500)
    config = build_config({"accounts": [settings]}, source="test")
    text = exposition(await Engine(config, upstream).collect())
    assert 'apibalance_balance{account="acct",currency="RUB",provider="http_json"} 420.5\n' in text
    assert (
        'apibalance_low_balance_threshold{account="acct",currency="RUB",provider="http_json"} '
        "500.0\n"
    ) in text
    # A non-USD amount never appears under a _usd name.
    assert "_usd" not in text


async def test_the_currency_read_from_the_answer(simulator: Simulator, upstream: Upstream) -> None:
    sim = simulator.add("json", JsonAccount(KEY, payload={"money": "12.50", "cur": "eur"}))
    settings = json_account(simulator, FROM_ANSWER, low_balance=15)
    engine = Engine(build_config({"accounts": [settings]}, source="test"), upstream)
    found = samples(exposition(await engine.collect()))
    ids = {"provider": "http_json", "account": "acct"}
    assert value(found, "apibalance_balance", currency="EUR", **ids) == 12.5
    assert value(found, "apibalance_low_balance_threshold", currency="EUR", **ids) == 15.0
    assert series_of(found, "apibalance_balance_usd") == []

    # The answer now claims another currency: this collection is invalid, with no money shown,
    # and the threshold keeps the currency the account has been in.
    sim.payload = {"money": "12.40", "cur": "USD"}
    [snapshot] = await engine.collect()
    assert snapshot.outcome.reason is Reason.INVALID_RESPONSE
    assert snapshot.outcome.reading is None
    found = samples(exposition([snapshot]))
    assert value(found, "apibalance_up", **ids) == 0.0
    assert series_of(found, "apibalance_balance") == []
    assert series_of(found, "apibalance_balance_usd") == []
    assert value(found, "apibalance_low_balance_threshold", currency="EUR", **ids) == 15.0

    sim.payload = {"money": "12.30", "cur": "EUR"}
    [snapshot] = await engine.collect()
    assert snapshot.outcome.ok
    assert value(samples(exposition([snapshot])), "apibalance_balance", currency="EUR", **ids) == (
        12.3
    )


async def test_no_threshold_before_the_currency_is_known(
    simulator: Simulator, upstream: Upstream
) -> None:
    simulator.add("json", JsonAccount(KEY, payload={"money": "12.50"}))
    settings = json_account(simulator, FROM_ANSWER, low_balance=15)
    config = build_config({"accounts": [settings]}, source="test")
    [snapshot] = await Engine(config, upstream).collect()
    assert snapshot.outcome.reason is Reason.INVALID_RESPONSE
    assert "threshold" not in exposition([snapshot])


@pytest.mark.parametrize("currency", ["EURO", "E1R", "", " EUR", "EUR\n", 978, None, ["EUR"]])
async def test_a_currency_that_is_not_a_code_is_invalid(
    simulator: Simulator, upstream: Upstream, currency: Any
) -> None:
    simulator.add("json", JsonAccount(KEY, payload={"money": 5, "cur": currency}))
    config = build_config({"accounts": [json_account(simulator, FROM_ANSWER)]}, source="test")
    [snapshot] = await Engine(config, upstream).collect()
    assert snapshot.outcome.reason is Reason.INVALID_RESPONSE
    assert snapshot.outcome.error is not None
    assert "values.currency" in snapshot.outcome.error.cause
    found = samples(exposition([snapshot]))
    assert series_of(found, "apibalance_balance") == []
    assert series_of(found, "apibalance_balance_usd") == []


async def test_an_answer_in_another_currency_than_configured_is_invalid(
    simulator: Simulator, upstream: Upstream
) -> None:
    simulator.add("json", JsonAccount(KEY, payload={"money": 5, "cur": "USD"}))
    settings = json_account(simulator, FROM_ANSWER, currency="RUB")
    config = build_config({"accounts": [settings]}, source="test")
    [snapshot] = await Engine(config, upstream).collect()
    assert snapshot.outcome.reason is Reason.INVALID_RESPONSE
    assert snapshot.outcome.reading is None


async def test_money_the_answer_says_is_usd_stays_under_the_usd_name(
    simulator: Simulator, upstream: Upstream
) -> None:
    simulator.add("json", JsonAccount(KEY, payload={"money": "7.25", "cur": "USD"}))
    settings = json_account(simulator, FROM_ANSWER, low_balance=5)
    config = build_config({"accounts": [settings]}, source="test")
    text = exposition(await Engine(config, upstream).collect())
    ids = '{account="acct",provider="http_json"}'
    assert f"apibalance_balance_usd{ids} 7.25\n" in text
    assert f"apibalance_low_balance_threshold_usd{ids} 5.0\n" in text
    assert "currency=" not in text


async def test_low_balance_of_a_usd_account_is_the_usd_threshold(
    simulator: Simulator, upstream: Upstream
) -> None:
    """`low_balance` and `low_balance_usd` give the same series on a USD account."""
    simulator.add("capmonster", SimAccount(KEY, balance=3.5))

    async def text_with(threshold: dict[str, Any]) -> str:
        acct = {
            "name": "m",
            "provider": "capmonster",
            "api_key": KEY,
            "base_url": simulator.base_url("capmonster"),
            **threshold,
        }
        config = build_config({"accounts": [acct]}, source="test")
        snapshots = await Engine(config, upstream).collect()
        return exposition(snapshots).split("apibalance_collect_duration")[0]

    assert await text_with({"low_balance": 5}) == await text_with({"low_balance_usd": 5})


async def test_promtool_accepts_the_currency_series(
    simulator: Simulator, upstream: Upstream
) -> None:
    simulator.add("json", JsonAccount(KEY, payload={"money": 99, "cur": "CNY"}))
    simulator.add("json", JsonAccount("rub-key", payload={"money": 420, "cur": "x"}))
    rub = json_account(simulator, {"balance": "money"}, currency="RUB", low_balance=500)
    rub.update(name="rub", api_key="rub-key")
    accounts = [json_account(simulator, FROM_ANSWER, low_balance=10), rub]
    config = build_config({"accounts": accounts}, source="test")
    body = exposition(await Engine(config, upstream).collect()).encode()
    assert b'currency="CNY"' in body
    assert b'currency="RUB"' in body
    assert_promtool_accepts_metrics(body)


# -- the documented example -------------------------------------------------------------

SECTION = "## Currencies"


async def test_the_readme_example_gives_the_series_shown(
    simulator: Simulator, upstream: Upstream
) -> None:
    [example] = readme_yaml(SECTION)
    data = yaml.safe_load(example)
    payloads = {
        "sms-ru": {"balance": 420.5},
        "voice-eu": {"data": {"balance": "12.50", "currency": "EUR"}},
    }
    for acct in data["accounts"]:
        name = acct["name"]
        simulator.add("json", JsonAccount(f"{name}-key", payload=payloads[name]))
        acct.pop("api_key_env")
        acct["api_key"] = f"{name}-key"
        acct["request"]["url"] = simulator.base_url("json") + "/balance"
    text = exposition(await Engine(build_config(data, source="readme"), upstream).collect())
    section = readme_section(SECTION)
    shown = re.search(r"```text\n(.*?)```", section, flags=re.DOTALL)
    assert shown is not None
    for line in shown.group(1).splitlines():
        assert line + "\n" in text


async def test_the_demo_has_a_rub_and_a_eur_account(upstream: Upstream) -> None:
    simulator, config = await start_demo(Simulator(seed=0))
    # Only the accounts under test: the demo's flaky one may hang until its timeout.
    names = ["sms-ru", "voice-eu", "sms-gateway"]
    try:
        found = samples(exposition(await Engine(config, upstream).collect(names)))
    finally:
        await simulator.stop()
    for account, currency, threshold in (("sms-ru", "RUB", 500.0), ("voice-eu", "EUR", 15.0)):
        ids = {"provider": "http_json", "account": account, "currency": currency}
        balance = value(found, "apibalance_balance", **ids)
        assert balance is not None
        # Below the threshold: the demo's ApiBalanceLow fires for money in other currencies.
        assert balance < threshold == value(found, "apibalance_low_balance_threshold", **ids)
    usd = {dict(labels)["account"] for labels in series_of(found, "apibalance_balance_usd")}
    assert "sms-gateway" in usd
    assert not usd & {"sms-ru", "voice-eu"}


async def test_a_reload_that_changes_only_the_threshold_keeps_the_currency_learnt(
    simulator: Simulator, upstream: Upstream
) -> None:
    sim = simulator.add("json", JsonAccount(KEY, payload={"money": 9, "cur": "EUR"}))
    settings = json_account(simulator, FROM_ANSWER, low_balance=15)
    engine = Engine(build_config({"accounts": [settings]}, source="test"), upstream)
    await engine.collect()
    engine.apply(build_config({"accounts": [{**settings, "low_balance": 20}]}, source="test"))
    sim.payload = {"money": 9, "cur": "USD"}
    [snapshot] = await engine.collect()
    # Still the same account asked the same way: it is in EUR, so the USD answer is refused.
    assert snapshot.outcome.reason is Reason.INVALID_RESPONSE
    found = samples(exposition([snapshot]))
    ids = {"provider": "http_json", "account": "acct", "currency": "EUR"}
    assert value(found, "apibalance_low_balance_threshold", **ids) == 20.0
