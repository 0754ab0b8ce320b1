"""Whether an account is low, judged as the shipped alerts judge it (docs/alerts.md), for the
landing page and `--collect.once`: one place decides, so the page, the table and the alerts
agree on every account.

Money: below `low_balance` (in the account's currency) is low, below a quarter of it nearly
empty; a USD account without a threshold is nearly empty below 1 USD (no default in other
currencies: 1 RUB and 1 EUR are not the same warning).

Credits: below the account's `low_credits` for the pool, or for the credit type with all its
pools added up; a type with a threshold of its own takes no default for any of its pools.
Otherwise a pool is low below a tenth of the plan's allowance where the service reports it,
else below a tenth of the most it held over the last 7 days (a pool that held nothing all that
time is never low). Nearly empty: below a quarter of the threshold.

Daily limit: below `low_daily_limit`; without one, below a tenth of the most left over the
last day while the reset is more than two hours away (a well-used limit is nearly used just
before it resets).

The alerts see the last 7 days in Prometheus; this process sees what it collected since it
started (`Peaks`), and `--collect.once` only its one answer: the history-based defaults can
only fire once there is history.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field

from exporter.config import Account
from exporter.model import Reading
from exporter.settings import USD
from exporter.thresholds import ALL_POOLS

# Defaults of the alerts (docs/alerts.md): nearly empty under a quarter of the threshold;
# without a threshold, money under 1 USD, credits under a tenth of the allowance or of the
# week's peak, a daily limit under a tenth of the day's peak with over 2 h to its reset.
NEARLY_EMPTY_SHARE = 0.25
DEFAULT_USD_NEARLY_EMPTY = 1.0
DEFAULT_SHARE = 0.1
CREDITS_PEAK_WINDOW = 7 * 86400.0
DAILY_LIMIT_PEAK_WINDOW = 86400.0
DAILY_LIMIT_DEFAULT_MIN_RESET = 7200.0
_BUCKET = 3600.0


class Level(enum.IntEnum):
    """How short an account is of something; the worst one is the account's."""

    LOW = 1
    NEARLY_EMPTY = 2

    @property
    def word(self) -> str:
        return "nearly empty" if self is Level.NEARLY_EMPTY else "low"


@dataclass(frozen=True, slots=True)
class Shortfall:
    """One thing an account is low on: what, how much is left, the threshold it is under."""

    what: str  # "money", "credits" or "daily limit"
    subject: str  # "USD", "searches (all pools)", "email (recurrent)", "requests today"
    left: float
    below: float
    level: Level

    @property
    def word(self) -> str:
        return self.level.word


@dataclass
class Peaks:
    """The most each credit pool and the daily limit held, per hour, over the last week:
    what the alerts' history-based defaults read from Prometheus, kept by this process."""

    credits: dict[tuple[str, str], dict[int, float]] = field(default_factory=dict)
    daily_limit: dict[int, float] = field(default_factory=dict)
    # Hours older than the window are dropped when the hour changes, not on every reading.
    _pruned_in: int | None = field(default=None, repr=False, compare=False)

    def record(self, reading: Reading, wall: float) -> None:
        hour = int(wall // _BUCKET)
        for credit in reading.credits:
            _keep_max(
                self.credits.setdefault((credit.credit_type, credit.pool), {}), hour, credit.value
            )
        if reading.daily_limit_remaining is not None:
            _keep_max(self.daily_limit, hour, reading.daily_limit_remaining)
        if hour == self._pruned_in:
            return
        self._pruned_in = hour
        oldest = hour - int(CREDITS_PEAK_WINDOW // _BUCKET)
        for hours in (*self.credits.values(), self.daily_limit):
            for stale in [h for h in hours if h < oldest]:
                del hours[stale]

    def credit_peak(self, credit_type: str, pool: str, wall: float) -> float | None:
        return _peak(self.credits.get((credit_type, pool), {}), wall, CREDITS_PEAK_WINDOW)

    def daily_limit_peak(self, wall: float) -> float | None:
        return _peak(self.daily_limit, wall, DAILY_LIMIT_PEAK_WINDOW)


def _keep_max(hours: dict[int, float], hour: int, value: float) -> None:
    hours[hour] = max(value, hours.get(hour, value))


def _peak(hours: dict[int, float], wall: float, window: float) -> float | None:
    first = int((wall - window) // _BUCKET)
    return max((value for hour, value in hours.items() if hour >= first), default=None)


def shortfalls(
    account: Account,
    reading: Reading,
    *,
    currency: str | None,
    age: float,
    peaks: Peaks | None,
    wall: float,
) -> list[Shortfall]:
    """Everything the account is low on in this reading, `age` seconds after its answer."""
    return [
        *_money(account, reading, currency),
        *_credits(account, reading, peaks, wall),
        *_daily_limit(account, reading, age, peaks, wall),
    ]


def worst(found: list[Shortfall]) -> Level | None:
    return max((shortfall.level for shortfall in found), default=None)


def _shortfall(what: str, subject: str, left: float, low: float) -> Iterator[Shortfall]:
    """A shortfall against the low threshold `low`, naming the bound actually crossed: nearly
    empty is under a quarter of it, as the alert's description says."""
    nearly_empty = NEARLY_EMPTY_SHARE * low
    if left < nearly_empty:
        yield Shortfall(what, subject, left, nearly_empty, Level.NEARLY_EMPTY)
    elif left < low:
        yield Shortfall(what, subject, left, low, Level.LOW)


def _money(account: Account, reading: Reading, currency: str | None) -> Iterator[Shortfall]:
    money = reading.money()
    if money is None:
        return
    amount, in_currency = money
    low = account.low_balance_in(currency or in_currency)
    if low is not None and low[1] == in_currency:
        yield from _shortfall("money", in_currency, amount, low[0])
    elif low is None and in_currency == USD and amount < DEFAULT_USD_NEARLY_EMPTY:
        yield Shortfall("money", USD, amount, DEFAULT_USD_NEARLY_EMPTY, Level.NEARLY_EMPTY)


def _credits(
    account: Account, reading: Reading, peaks: Peaks | None, wall: float
) -> Iterator[Shortfall]:
    pools: dict[str, dict[str, float]] = {}
    for credit in reading.credits:
        pools.setdefault(credit.credit_type, {})[credit.pool] = credit.value
    configured = {threshold.credit_type for threshold in account.low_credits}
    for threshold in account.low_credits:
        held = pools.get(threshold.credit_type)
        if held is None:
            continue
        if threshold.pool == ALL_POOLS:
            left, subject = sum(held.values()), f"{threshold.credit_type} (all pools)"
        elif threshold.pool in held:
            left, subject = held[threshold.pool], f"{threshold.credit_type} ({threshold.pool})"
        else:
            continue
        yield from _shortfall("credits", subject, left, threshold.below)
    for credit in reading.credits:
        if credit.credit_type in configured:
            continue
        if credit.allowance is not None:
            below = DEFAULT_SHARE * credit.allowance
        else:
            peak = (
                None if peaks is None else peaks.credit_peak(credit.credit_type, credit.pool, wall)
            )
            if peak is None:
                continue
            below = DEFAULT_SHARE * peak
        subject = f"{credit.credit_type} ({credit.pool})"
        yield from _shortfall("credits", subject, credit.value, below)


def _daily_limit(
    account: Account, reading: Reading, age: float, peaks: Peaks | None, wall: float
) -> Iterator[Shortfall]:
    left = reading.daily_limit_remaining
    if left is None:
        return
    if account.low_daily_limit is not None:
        below = account.low_daily_limit
    else:
        resets_in = reading.daily_limit_resets_in(age)
        peak = None if peaks is None else peaks.daily_limit_peak(wall)
        if peak is None or resets_in is None or resets_in <= DAILY_LIMIT_DEFAULT_MIN_RESET:
            return
        below = DEFAULT_SHARE * peak
    yield from _shortfall("daily limit", "requests today", left, below)
