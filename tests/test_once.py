"""`--collect.once`: every account collected once, printed as a table, exit 0 only when all
are up, and never a key in what it prints."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from exporter.cli import main
from exporter.demo import catalogue_accounts, demo_accounts
from exporter.engine import Outcome, Snapshot
from exporter.model import Credit, Reading
from exporter.once import rows
from exporter.thresholds import CreditThreshold
from tests.helpers import gated_config, write_config

CANARY = "CANARY-once-5f3a9b1c7d-KEY"


def test_the_demo_config(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--collect.once", "--demo", "--log.level", "error"])
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == [
        "ACCOUNT",
        "PROVIDER",
        "UP",
        "REASON",
        "BALANCE",
        "CREDITS",
        "DAILY",
        "LIMIT",
        "DURATION",
    ]
    by_name = {line.split()[0]: line for line in lines[1:] if not line.startswith(" ")}
    assert set(by_name) == {a.name for a in [*demo_accounts(), *catalogue_accounts()]}
    assert by_name["decaptcha-main"].split()[1:5] == ["decaptcha", "1", "1,250.75", "USD"]
    # Ocean reports six credit series: one on the account's line, five below it.
    ocean = lines.index(by_name["ocean-main"])
    assert "standard/one_time=5,000" in lines[ocean]
    assert [line.split()[0] for line in lines[ocean + 1 : ocean + 6]] == [
        "standard/recurrent=20,000",
        "email/one_time=800",
        "email/recurrent=2,000",
        "phone/one_time=50",
        "phone/recurrent=100",
    ]
    # The flaky demo accounts may fail on any run: the exit code says whether all were up.
    every_up = all(line.split()[2] == "1" for line in by_name.values())
    assert code == (0 if every_up else 1)


def test_a_failing_account_exits_1_and_never_prints_its_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(
        tmp_path,
        {
            "accounts": [
                {
                    "name": "nowhere",
                    "provider": "http_json",
                    "api_key": CANARY,
                    "request": {
                        "url": "http://127.0.0.1:1/v1/{api_key}/balance",
                        "query": {"api_key": "{api_key}"},
                    },
                    "values": {"balance_usd": "balance"},
                }
            ]
        },
    )
    code = main(["--collect.once", "--config.file", str(path)])
    captured = capsys.readouterr()
    assert code == 1
    [_header, line] = captured.out.splitlines()
    assert line.split()[:4] == ["nowhere", "http_json", "0", "connection:"]
    assert CANARY not in captured.out + captured.err


def test_a_broken_config_is_refused_with_its_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, "accounts:\n  - name: x\n    provider: nope\n")
    assert main(["--collect.once", "--config.file", str(path)]) == 1
    assert "accounts[0].provider: unknown provider 'nope'" in capsys.readouterr().err


def test_money_in_another_currency_is_shown_in_it() -> None:
    config, _ = gated_config("rub")
    reading = Reading(balance=1500.5, currency="RUB")
    snapshot = Snapshot(config.accounts[0], Outcome(reading, None, 0.0, 0.1), {}, None)
    [line] = rows(snapshot)
    assert line[4] == "1,500.5 RUB"


def test_low_accounts_are_marked_as_the_alerts_and_the_landing_page_mark_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The demo's low accounts: money under its threshold, money under 1 USD without one,
    credits under a tenth of the plan's allowance; low is not down (exit 0 if all are up)."""
    code = main(["--collect.once", "--demo", "--log.level", "error"])
    lines = capsys.readouterr().out.splitlines()
    by_name = {line.split()[0]: line for line in lines[1:] if not line.startswith(" ")}
    up = {name: line.split()[2] == "1" for name, line in by_name.items()}
    if up["capmonster-low"]:
        assert " USD LOW (below 5 USD)" in by_name["capmonster-low"]
    if up["twilio-main"]:
        assert " USD NEARLY EMPTY (below 1 USD)" in by_name["twilio-main"]
    if up["firecrawl-main"]:
        assert "credits/team=1,000 NEARLY EMPTY (below 12,500)" in by_name["firecrawl-main"]
    assert "LOW" not in by_name["decaptcha-main"]
    assert "EMPTY" not in by_name["decaptcha-main"]
    assert code == (0 if all(up.values()) else 1)


def test_credit_and_daily_limit_thresholds_are_marked() -> None:
    config, _ = gated_config("ocean")
    account = replace(
        config.accounts[0],
        low_credits=(
            CreditThreshold("standard", "all", 3000),
            CreditThreshold("email", "one_time", 10),
        ),
        low_daily_limit=100,
    )
    reading = Reading(
        credits=(
            Credit("standard", "one_time", 100),
            Credit("standard", "recurrent", 2500),
            Credit("email", "one_time", 20),
        ),
        daily_limit_remaining=20,
        daily_limit_reset_seconds=7200,
    )
    snapshot = Snapshot(account, Outcome(reading, None, 0.0, 0.1), {}, None, age=600)
    lines = rows(snapshot)
    assert [line[5] for line in lines] == [
        "standard/one_time=100",
        "standard/recurrent=2,500",
        "email/one_time=20",
        "standard/all=2,600 LOW (below 3,000)",
    ]
    # Under a quarter of its threshold; the reset counted down from the answer's.
    assert lines[0][6] == "20 NEARLY EMPTY (below 25) (resets in 1 h 50 min)"
