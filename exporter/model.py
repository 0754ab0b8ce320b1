"""What a provider reads from its upstream, and the ways a collection can fail."""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass, field

from exporter.settings import USD


class Reason(enum.StrEnum):
    """Why a collection failed. The values are the `reason` label, a fixed set
    (docs/configuration.md: Metrics)."""

    TIMEOUT = "timeout"
    CONNECTION = "connection"
    HTTP = "http"
    AUTH = "auth"
    RATE_LIMITED = "rate_limited"
    INVALID_RESPONSE = "invalid_response"
    PROVIDER_ERROR = "provider_error"


class CollectError(Exception):
    """A failed collection: a reason from the fixed set and a short cause for logs.

    The cause is written by this program (plus, at most, a provider's error *code*); it never
    carries a URL, a header or a key, so it is safe to log and to show on the landing page.
    """

    def __init__(
        self,
        reason: Reason,
        cause: str,
        *,
        retry_after: float | None = None,
        transient: bool = False,
    ) -> None:
        super().__init__(cause)
        self.reason = reason
        self.cause = cause
        # Seconds the provider asked us to stay away (429 Retry-After).
        self.retry_after = retry_after
        # Worth another attempt within the same scrape (connection reset, 502/503/504).
        self.transient = transient

    def __repr__(self) -> str:
        return f"CollectError({self.reason.value}, {self.cause!r})"


@dataclass(frozen=True, slots=True)
class Reports:
    """What an account's answers can hold, as its definition says: the thresholds it can be
    compared with (a threshold on anything else is refused at load)."""

    money: bool = True
    # The (credit_type, pool) series its answers can hold.
    credits: tuple[tuple[str, str], ...] = ()
    # Pools of credit types the answers name themselves (Ocean.io: any `<type>Credits`), so
    # that any type name may be given a threshold; empty when every type is known.
    pools_of_any_type: tuple[str, ...] = ()
    daily_limit: bool = False

    @property
    def credit_types(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(credit_type for credit_type, _ in self.credits))

    @property
    def any_credits(self) -> bool:
        return bool(self.credits or self.pools_of_any_type)

    def in_words(self) -> str:
        """What it reports, for a refusal's hint: `money and credits: captcha (pool
        subscription)`."""
        parts = ["money"] if self.money else []
        if self.credits:
            listed = []
            for credit_type in self.credit_types:
                pools = [pool for kind, pool in self.credits if kind == credit_type]
                listed.append(
                    f"{credit_type} (pool{'s' if len(pools) > 1 else ''} {', '.join(pools)})"
                )
            more = ", and any type the answers add" if self.pools_of_any_type else ""
            parts.append(f"credits: {', '.join(listed)}{more}")
        elif self.pools_of_any_type:
            parts.append(f"credits in pools {', '.join(self.pools_of_any_type)}")
        if self.daily_limit:
            parts.append("a daily limit")
        return "; ".join(parts) if parts else "nothing"


@dataclass(frozen=True, slots=True)
class Credit:
    credit_type: str
    pool: str
    value: float
    # What the plan grants of this pool per period, where the service reports it.
    allowance: float | None = None


@dataclass(frozen=True, slots=True)
class Spend:
    """Spending statistics of one queue (`all` for the account's total)."""

    queue: str
    hourly_spend_usd: float
    hourly_tasks: float
    daily_spend_usd: float
    daily_tasks: float


@dataclass(frozen=True, slots=True)
class Reading:
    """Everything one successful collection learnt about an account. Absent means not reported.

    Money is `balance_usd` when it is in USD, else `balance` in `currency`: an amount in
    another currency never sits in the USD field. `currency`, when set, is the currency the
    answer (or the account's config) says the money is in; the engine checks it against the
    account's.
    """

    balance_usd: float | None = None
    credits: tuple[Credit, ...] = ()
    daily_limit_remaining: float | None = None
    daily_limit_reset_seconds: float | None = None
    spend: tuple[Spend, ...] = field(default=())
    balance: float | None = None
    currency: str | None = None

    def daily_limit_resets_in(self, age: float) -> float | None:
        """Seconds until the daily limit resets, `age` seconds after the answer reported it:
        a reading reused from the cache counts down like the limit does."""
        if self.daily_limit_reset_seconds is None:
            return None
        return max(0.0, self.daily_limit_reset_seconds - max(0.0, age))

    def money(self) -> tuple[float, str] | None:
        """The money left and its currency, whichever field holds it (None: not reported)."""
        if self.balance_usd is not None:
            return self.balance_usd, USD
        if self.balance is not None and self.currency is not None:
            return self.balance, self.currency
        return None


def finite_number(value: object, what: str, *, minimum: float | None = 0.0) -> float:
    """A JSON number that is finite (and not below `minimum`), or an invalid_response error.

    JSON booleans are Python ints; they are refused here because `true` is not a balance.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CollectError(Reason.INVALID_RESPONSE, f"{what} is not a number")
    try:
        number = float(value)
    except OverflowError:  # an integer of hundreds of digits
        number = math.inf
    if not math.isfinite(number):
        raise CollectError(Reason.INVALID_RESPONSE, f"{what} is not a finite number")
    if minimum is not None and number < minimum:
        raise CollectError(Reason.INVALID_RESPONSE, f"{what} is negative")
    return number


# Commas only as thousands separators: "1.250,75" (a European decimal comma) must not pass as
# 1.25075. float() alone would also take "nan", "inf" and "1_000".
_NUMERIC_STRING_RE = re.compile(r"^[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d*)?(?:[eE][+-]?\d+)?\Z")


def numeric_string(value: object, what: str, *, minimum: float | None = 0.0) -> float:
    """A number written as a string, possibly with thousands separators ("1,250.75")."""
    if not isinstance(value, str):
        raise CollectError(Reason.INVALID_RESPONSE, f"{what} is not a string")
    text = value.strip()
    if not any(ch.isdigit() for ch in text) or not _NUMERIC_STRING_RE.match(text):
        raise CollectError(Reason.INVALID_RESPONSE, f"{what} is not a numeric string")
    try:
        number = float(text.replace(",", ""))
    except ValueError:
        raise CollectError(Reason.INVALID_RESPONSE, f"{what} is not a numeric string") from None
    return finite_number(number, what, minimum=minimum)
