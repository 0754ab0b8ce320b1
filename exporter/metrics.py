"""Rendering snapshots as Prometheus metric families, fresh on every scrape.

No long-lived Gauge objects: each scrape builds families from that scrape's snapshots, so an
account that fails or disappears leaves no stale series behind. Sample exposition:

    # HELP apibalance_up 1 if the last collection of the account succeeded, else 0.
    # TYPE apibalance_up gauge
    apibalance_up{account="main",provider="anticaptcha"} 1.0
    # HELP apibalance_balance_usd Money left on the account, in USD. ...
    # TYPE apibalance_balance_usd gauge
    apibalance_balance_usd{account="main",provider="anticaptcha"} 12.3456
    apibalance_credits{account="data",credit_type="email",pool="one_time",provider="ocean"} 100.0
    apibalance_collect_errors_total{account="main",provider="anticaptcha",reason="auth"} 0.0
"""

from __future__ import annotations

import functools
import math
import platform
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.engine import Snapshot
from exporter.model import Reason
from exporter.settings import USD

ACCOUNT_LABELS = ("provider", "account")
CREDIT_LABELS = (*ACCOUNT_LABELS, "credit_type", "pool")
QUEUE_LABELS = (*ACCOUNT_LABELS, "queue")
REASON_LABELS = (*ACCOUNT_LABELS, "reason")
CURRENCY_LABELS = (*ACCOUNT_LABELS, "currency")

CACHED = " Reused for up to the account's cache_ttl after a successful collection."


def _escape_value(value: str) -> str:
    """A label value (or OpenMetrics help text) with backslash, newline and quote escaped."""
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def _value(number: float) -> str:
    """A sample value as prometheus_client writes it (`floatToGoString`: Python's repr, with
    Go's exponent from 1e7 up, `+Inf`, `-Inf`, `NaN`), and the newline."""
    text = repr(float(number))
    dot = text.find(".")
    if dot > 6 and number > 0:
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}\n"
    if text[-1] in "fn":  # inf, -inf, nan
        return ("NaN" if math.isnan(number) else "+Inf" if number > 0 else "-Inf") + "\n"
    return text + "\n"


@dataclass(frozen=True, slots=True)
class Family:
    """One per-account metric family: its name, help, labels and type."""

    name: str
    documentation: str
    labels: tuple[str, ...]
    counter: bool = False
    # Shown even without samples (prometheus_client writes HELP and TYPE of an empty family).
    always: bool = False

    def metric(self) -> GaugeMetricFamily | CounterMetricFamily:
        kind = CounterMetricFamily if self.counter else GaugeMetricFamily
        return kind(self.name, self.documentation, labels=self.labels)

    def header(self, openmetrics: bool) -> tuple[str, str]:
        """The HELP and TYPE lines, and the name every sample line starts with."""
        kind = "counter" if self.counter else "gauge"
        sample = self.name + "_total" if self.counter else self.name
        if openmetrics:
            help_text = _escape_value(self.documentation)
            return f"# HELP {self.name} {help_text}\n# TYPE {self.name} {kind}\n", sample
        help_text = self.documentation.replace("\\", r"\\").replace("\n", r"\n")
        return f"# HELP {sample} {help_text}\n# TYPE {sample} {kind}\n", sample


UP = Family(
    "apibalance_up",
    "1 if the last collection of the account succeeded, else 0." + CACHED,
    ACCOUNT_LABELS,
    always=True,
)
BALANCE = Family(
    "apibalance_balance_usd", "Money left on the account, in USD." + CACHED, ACCOUNT_LABELS
)
# Money in any other currency has a family of its own: a query of a `_usd` name can only ever
# see USD, and amounts in different currencies are never summed by accident.
BALANCE_IN_CURRENCY = Family(
    "apibalance_balance",
    "Money left on an account whose currency is not USD, in that currency (ISO 4217 code)."
    + CACHED,
    CURRENCY_LABELS,
)
CREDITS = Family(
    "apibalance_credits", "Credits left, by credit type and pool." + CACHED, CREDIT_LABELS
)
LIMIT_LEFT = Family(
    "apibalance_daily_limit_remaining", "Requests left today." + CACHED, ACCOUNT_LABELS
)
LIMIT_RESET = Family(
    "apibalance_daily_limit_reset_seconds",
    "Seconds until the daily limit resets, as reported." + CACHED,
    ACCOUNT_LABELS,
)
HOURLY_SPEND = Family(
    "apibalance_hourly_spend_usd",
    'Money spent in the last complete hour, in USD; queue="all" is the total.' + CACHED,
    QUEUE_LABELS,
)
HOURLY_TASKS = Family(
    "apibalance_hourly_tasks", "Tasks in the last complete hour." + CACHED, QUEUE_LABELS
)
DAILY_SPEND = Family(
    "apibalance_daily_spend_usd",
    "Money spent over the complete hourly records returned (up to 24), in USD." + CACHED,
    QUEUE_LABELS,
)
DAILY_TASKS = Family(
    "apibalance_daily_tasks",
    "Tasks over the complete hourly records returned (up to 24)." + CACHED,
    QUEUE_LABELS,
)
THRESHOLD = Family(
    "apibalance_low_balance_threshold_usd",
    "Balance below which the account counts as low, from the config low_balance_usd.",
    ACCOUNT_LABELS,
)
THRESHOLD_IN_CURRENCY = Family(
    "apibalance_low_balance_threshold",
    "Balance below which an account whose currency is not USD counts as low, in that "
    "currency, from the config low_balance.",
    CURRENCY_LABELS,
)
DURATION = Family(
    "apibalance_collect_duration_seconds",
    "Time the last collection of the account took, in seconds.",
    ACCOUNT_LABELS,
)
LAST_SUCCESS = Family(
    "apibalance_last_success_timestamp_seconds",
    "Unix time of the last successful collection of the account.",
    ACCOUNT_LABELS,
)
ERRORS = Family(
    "apibalance_collect_errors",
    "Failed collections of the account, by reason.",
    REASON_LABELS,
    counter=True,
    always=True,
)
# In the order of the exposition.
ACCOUNT_FAMILIES = (
    UP,
    BALANCE,
    BALANCE_IN_CURRENCY,
    CREDITS,
    LIMIT_LEFT,
    LIMIT_RESET,
    HOURLY_SPEND,
    HOURLY_TASKS,
    DAILY_SPEND,
    DAILY_TASKS,
    THRESHOLD,
    THRESHOLD_IN_CURRENCY,
    DURATION,
    LAST_SUCCESS,
    ERRORS,
)
_HEADERS = {
    openmetrics: tuple(family.header(openmetrics) for family in ACCOUNT_FAMILIES)
    for openmetrics in (False, True)
}
# Every reason's line of an account; {0} is `{account="...",provider="..."`.
_REASON_ORDER = tuple(Reason)  # iterating a tuple is much cheaper than iterating the enum
_ERROR_LINES = "".join(
    ERRORS.name + '_total{0},reason="' + reason.value + '"}} {' + str(i) + "}"
    for i, reason in enumerate(Reason, 1)
)


def threshold_in_currency_of(snapshot: Snapshot) -> tuple[float, str] | None:
    """The `low_balance` of an account not known in advance to be in USD, and its currency
    (configured, or said by its answers; not known before the first one)."""
    account = snapshot.account
    currency = account.currency or snapshot.currency
    if account.low_balance is None or currency is None:
        return None
    return account.low_balance, currency


@functools.lru_cache(maxsize=1024)
def _count_value(count: int) -> str:
    return _value(float(count))


@dataclass(frozen=True, slots=True)
class ReloadStatus:
    successful: bool
    last_success_timestamp: float


class AccountCollector(Collector):
    """Per-account series of one scrape (everything `/probe` returns).

    `collect()` gives them to prometheus_client; `exposition()` writes the same text itself,
    which is what `render()` uses: on a scrape of many accounts it is several times faster.
    """

    def __init__(self, snapshots: Sequence[Snapshot]) -> None:
        self._snapshots = snapshots

    def collect(self) -> Iterator[Metric]:
        snapshots = self._snapshots
        up = UP.metric()
        balance = BALANCE.metric()
        balance_in_currency = BALANCE_IN_CURRENCY.metric()
        credits = CREDITS.metric()
        limit_left = LIMIT_LEFT.metric()
        limit_reset = LIMIT_RESET.metric()
        hourly_spend = HOURLY_SPEND.metric()
        hourly_tasks = HOURLY_TASKS.metric()
        daily_spend = DAILY_SPEND.metric()
        daily_tasks = DAILY_TASKS.metric()
        threshold = THRESHOLD.metric()
        threshold_in_currency = THRESHOLD_IN_CURRENCY.metric()
        duration = DURATION.metric()
        last_success = LAST_SUCCESS.metric()
        errors = ERRORS.metric()
        for snapshot in snapshots:
            account = snapshot.account
            ids = [account.provider_type, account.name]
            outcome = snapshot.outcome
            reading = outcome.reading
            up.add_metric(ids, 1.0 if outcome.ok else 0.0)
            if reading is not None:
                if reading.balance_usd is not None:
                    balance.add_metric(ids, reading.balance_usd)
                if reading.balance is not None and reading.currency is not None:
                    balance_in_currency.add_metric([*ids, reading.currency], reading.balance)
                for credit in reading.credits:
                    credits.add_metric([*ids, credit.credit_type, credit.pool], credit.value)
                if reading.daily_limit_remaining is not None:
                    limit_left.add_metric(ids, reading.daily_limit_remaining)
                if reading.daily_limit_reset_seconds is not None:
                    limit_reset.add_metric(ids, reading.daily_limit_reset_seconds)
                for spend in reading.spend:
                    labels = [*ids, spend.queue]
                    hourly_spend.add_metric(labels, spend.hourly_spend_usd)
                    hourly_tasks.add_metric(labels, spend.hourly_tasks)
                    daily_spend.add_metric(labels, spend.daily_spend_usd)
                    daily_tasks.add_metric(labels, spend.daily_tasks)
            if account.low_balance_usd is not None:
                threshold.add_metric(ids, account.low_balance_usd)
            elif (low := threshold_in_currency_of(snapshot)) is not None:
                if low[1] == USD:
                    threshold.add_metric(ids, low[0])
                else:
                    threshold_in_currency.add_metric([*ids, low[1]], low[0])
            duration.add_metric(ids, outcome.duration)
            if snapshot.last_success_wall is not None:
                last_success.add_metric(ids, snapshot.last_success_wall)
            for reason in Reason:
                errors.add_metric([*ids, reason.value], float(snapshot.errors[reason]))
        for family, metric in zip(
            ACCOUNT_FAMILIES,
            (
                up,
                balance,
                balance_in_currency,
                credits,
                limit_left,
                limit_reset,
                hourly_spend,
                hourly_tasks,
                daily_spend,
                daily_tasks,
                threshold,
                threshold_in_currency,
                duration,
                last_success,
                errors,
            ),
            strict=True,
        ):
            if family.always or metric.samples:
                yield metric

    def exposition(self, openmetrics: bool) -> str:
        """The same series as `collect()`, written straight to text (Prometheus 0.0.4 or
        OpenMetrics, without `# EOF`), byte for byte what prometheus_client would write.

        prometheus_client spends most of a scrape of many accounts building sample objects
        and escaping names one character at a time; here names are constants, label values
        are escaped once per account, and each sample is one string concatenation.
        """
        lines: tuple[list[str], ...] = tuple([] for _ in ACCOUNT_FAMILIES)
        (
            up,
            balance,
            balance_in_currency,
            credits,
            limit_left,
            limit_reset,
            hourly_spend,
            hourly_tasks,
            daily_spend,
            daily_tasks,
            threshold,
            threshold_in_currency,
            duration,
            last_success,
            errors,
        ) = lines
        go = _value
        count = _count_value
        error_lines = _ERROR_LINES.format
        reasons = _REASON_ORDER
        for snapshot in self._snapshots:
            account = snapshot.account
            # `{account="...",provider="..."`: label names in sorted order, as prometheus_client.
            name = _escape_value(account.name)
            provider = f'",provider="{_escape_value(account.provider_type)}"'
            ids = '{account="' + name + provider + "} "
            outcome = snapshot.outcome
            reading = outcome.reading
            up.append(ids + ("1.0\n" if outcome.error is None else "0.0\n"))
            if reading is not None:
                if reading.balance_usd is not None:
                    balance.append(ids + go(reading.balance_usd))
                if reading.balance is not None and reading.currency is not None:
                    balance_in_currency.append(
                        f'{{account="{name}",currency="{_escape_value(reading.currency)}'
                        f"{provider}}} " + go(reading.balance)
                    )
                for credit in reading.credits:
                    credits.append(
                        f'{{account="{name}",credit_type="{_escape_value(credit.credit_type)}"'
                        f',pool="{_escape_value(credit.pool)}{provider}}} ' + go(credit.value)
                    )
                if reading.daily_limit_remaining is not None:
                    limit_left.append(ids + go(reading.daily_limit_remaining))
                if reading.daily_limit_reset_seconds is not None:
                    limit_reset.append(ids + go(reading.daily_limit_reset_seconds))
                for spend in reading.spend:
                    queue = f'{{account="{name}{provider},queue="{_escape_value(spend.queue)}"}} '
                    hourly_spend.append(queue + go(spend.hourly_spend_usd))
                    hourly_tasks.append(queue + go(spend.hourly_tasks))
                    daily_spend.append(queue + go(spend.daily_spend_usd))
                    daily_tasks.append(queue + go(spend.daily_tasks))
            if account.low_balance_usd is not None:
                threshold.append(ids + go(account.low_balance_usd))
            elif (low := threshold_in_currency_of(snapshot)) is not None:
                if low[1] == USD:
                    threshold.append(ids + go(low[0]))
                else:
                    threshold_in_currency.append(
                        f'{{account="{name}",currency="{_escape_value(low[1])}{provider}}} '
                        + go(low[0])
                    )
            duration.append(ids + go(outcome.duration))
            if snapshot.last_success_wall is not None:
                last_success.append(ids + go(snapshot.last_success_wall))
            counts = snapshot.errors
            errors.append(
                error_lines('{account="' + name + provider, *[count(counts[r]) for r in reasons])
            )
        out: list[str] = []
        for (header, sample_name), family, samples in zip(
            _HEADERS[openmetrics], ACCOUNT_FAMILIES, lines, strict=True
        ):
            if samples or family.always:
                out.append(header)
                if family is ERRORS:
                    # Each entry is the whole block of an account, sample names included.
                    out.extend(samples)
                else:
                    for line in samples:
                        out.append(sample_name)
                        out.append(line)
        return "".join(out)


class ExporterCollector(Collector):
    """Series about the exporter itself: build and config reload status."""

    def __init__(self, reload_status: Callable[[], ReloadStatus]) -> None:
        self._reload_status = reload_status

    def collect(self) -> Iterator[Metric]:
        build = GaugeMetricFamily(
            "apibalance_build_info",
            "Version of the exporter and of Python; always 1.",
            labels=("version", "python_version"),
        )
        build.add_metric([__version__, platform.python_version()], 1.0)
        yield build
        status = self._reload_status()
        yield GaugeMetricFamily(
            "apibalance_config_last_reload_successful",
            "1 if the last config load or reload succeeded, else 0.",
            value=1.0 if status.successful else 0.0,
        )
        yield GaugeMetricFamily(
            "apibalance_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config load or reload.",
            value=status.last_success_timestamp,
        )


# Escapings of metric and label names that leave this exporter's (legacy) names unchanged; with
# the others prometheus_client rewrites names, so it renders everything itself.
_NAMES_UNCHANGED = frozenset({"underscores", "allow-utf-8"})
_EOF = b"# EOF\n"


def render(collectors: Iterable[Collector], accept: str | None) -> tuple[bytes, str]:
    """Exposition of the collectors in the format the scraper asked for, and its content type.

    Account collectors write their own text (`AccountCollector.exposition`); the rest go
    through prometheus_client, in the order given.
    """
    encoder, content_type = choose_encoder(accept or "")
    openmetrics = content_type.startswith("application/openmetrics-text")
    _, _, escaping = content_type.partition("escaping=")
    fast = (escaping or "underscores") in _NAMES_UNCHANGED
    parts: list[bytes] = []
    pending: list[Collector] = []

    def flush() -> None:
        if not pending:
            return
        registry = CollectorRegistry(auto_describe=False)
        for collector in pending:
            registry.register(collector)
        pending.clear()
        body = encoder(registry)
        parts.append(body.removesuffix(_EOF) if openmetrics else body)

    for collector in collectors:
        if fast and isinstance(collector, AccountCollector):
            flush()
            parts.append(collector.exposition(openmetrics).encode())
        else:
            pending.append(collector)
    flush()
    if openmetrics:
        parts.append(_EOF)
    return b"".join(parts), content_type
