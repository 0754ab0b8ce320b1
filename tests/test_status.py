"""Whether an account is low, as the alerts judge it (docs/alerts.md): the one judgement the
landing page and `--collect.once` share."""

from __future__ import annotations

from dataclasses import replace

from exporter.config import Account
from exporter.model import Credit, Reading
from exporter.status import Level, Peaks, Shortfall, shortfalls
from exporter.thresholds import CreditThreshold
from tests.helpers import gated_config

NOW = 1_700_000_000.0
DAY = 86400.0


def judged(
    reading: Reading, *, peaks: Peaks | None = None, age: float = 0.0, **settings: object
) -> list[tuple[str, str, float, float, Level]]:
    account: Account = replace(gated_config("a")[0].accounts[0], **settings)  # type: ignore[arg-type]
    found: list[Shortfall] = shortfalls(
        account, reading, currency=reading.currency, age=age, peaks=peaks, wall=NOW
    )
    return [(s.what, s.subject, s.left, s.below, s.level) for s in found]


def test_money_against_its_threshold_and_the_usd_default() -> None:
    assert judged(Reading(balance_usd=4.0), low_balance=5.0) == [
        ("money", "USD", 4.0, 5.0, Level.LOW)
    ]
    # Nearly empty names the bound it is under, a quarter of the threshold, as the alert does.
    assert judged(Reading(balance_usd=1.0), low_balance=5.0) == [
        ("money", "USD", 1.0, 1.25, Level.NEARLY_EMPTY)
    ]
    assert judged(Reading(balance_usd=5.0), low_balance=5.0) == []
    # No threshold: nearly empty under 1 USD; no default in any other currency.
    assert judged(Reading(balance_usd=0.99)) == [("money", "USD", 0.99, 1.0, Level.NEARLY_EMPTY)]
    assert judged(Reading(balance=0.5, currency="RUB"), currency=None) == []


def test_credits_against_their_thresholds_the_allowance_and_the_weeks_peak() -> None:
    peaks = Peaks()
    peaks.record(
        Reading(credits=(Credit("searches", "monthly", 5000), Credit("x", "p", 0))), NOW - 6 * DAY
    )
    peaks.record(Reading(credits=(Credit("old", "p", 9000),)), NOW - 8 * DAY)
    peaks.record(Reading(credits=(Credit("old", "p", 50),)), NOW - 7 * DAY + 3600)
    reading = Reading(
        credits=(
            Credit("searches", "monthly", 400),  # under a tenth of the week's 5,000
            Credit("x", "p", 0),  # held nothing all week: never low
            Credit("old", "p", 4),  # the 9,000 is over a week old: the peak is 50
            Credit("plan", "monthly", 328, allowance=5000),  # under a tenth of its plan
            Credit("plan", "extra", 9, allowance=None),  # no allowance, no history: no default
        )
    )
    assert judged(reading, peaks=peaks) == [
        ("credits", "searches (monthly)", 400, 500, Level.LOW),
        ("credits", "old (p)", 4, 5, Level.LOW),
        ("credits", "plan (monthly)", 328, 500, Level.LOW),
    ]


def test_a_credit_types_own_threshold_replaces_the_defaults_of_all_its_pools() -> None:
    reading = Reading(
        credits=(Credit("standard", "one_time", 100, 5000), Credit("standard", "recurrent", 2500))
    )
    thresholds = (CreditThreshold("standard", "all", 2000),)
    assert judged(reading, low_credits=thresholds) == []
    thresholds = (CreditThreshold("standard", "recurrent", 3000),)
    assert judged(reading, low_credits=thresholds) == [
        ("credits", "standard (recurrent)", 2500, 3000, Level.LOW)
    ]
    thresholds = (CreditThreshold("standard", "all", 3000),)
    assert judged(reading, low_credits=thresholds) == [
        ("credits", "standard (all pools)", 2600, 3000, Level.LOW)
    ]


def test_a_daily_limit_against_its_threshold_or_the_days_peak_well_before_its_reset() -> None:
    peaks = Peaks()
    peaks.record(Reading(daily_limit_remaining=1000), NOW - 20 * 3600)
    used = Reading(daily_limit_remaining=80, daily_limit_reset_seconds=3 * 3600)
    assert judged(used, peaks=peaks) == [("daily limit", "requests today", 80, 100, Level.LOW)]
    # Read an hour ago: the reset is now two hours away, and a limit nearly used so close to
    # its reset is how a well-used limit looks.
    assert judged(used, peaks=peaks, age=3600) == []
    # A threshold of its own holds whenever.
    assert judged(used, peaks=peaks, age=3600, low_daily_limit=500) == [
        ("daily limit", "requests today", 80, 125, Level.NEARLY_EMPTY)
    ]
    # The day's peak only: yesterday's is gone.
    stale = Peaks()
    stale.record(Reading(daily_limit_remaining=1000), NOW - 25 * 3600)
    assert judged(used, peaks=stale) == []
