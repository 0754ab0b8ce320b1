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

ACCOUNT_LABELS = ("provider", "account")
CREDIT_LABELS = (*ACCOUNT_LABELS, "credit_type", "pool")
QUEUE_LABELS = (*ACCOUNT_LABELS, "queue")
REASON_LABELS = (*ACCOUNT_LABELS, "reason")

CACHED = " Reused for up to the account's cache_ttl after a successful collection."


@dataclass(frozen=True, slots=True)
class ReloadStatus:
    successful: bool
    last_success_timestamp: float


class AccountCollector(Collector):
    """Per-account series of one scrape (everything `/probe` returns)."""

    def __init__(self, snapshots: Sequence[Snapshot]) -> None:
        self._snapshots = snapshots

    def collect(self) -> Iterator[Metric]:
        snapshots = self._snapshots
        up = GaugeMetricFamily(
            "apibalance_up",
            "1 if the last collection of the account succeeded, else 0." + CACHED,
            labels=ACCOUNT_LABELS,
        )
        balance = GaugeMetricFamily(
            "apibalance_balance_usd",
            "Money left on the account, in USD." + CACHED,
            labels=ACCOUNT_LABELS,
        )
        credits = GaugeMetricFamily(
            "apibalance_credits",
            "Credits left, by credit type and pool." + CACHED,
            labels=CREDIT_LABELS,
        )
        limit_left = GaugeMetricFamily(
            "apibalance_daily_limit_remaining",
            "Requests left today." + CACHED,
            labels=ACCOUNT_LABELS,
        )
        limit_reset = GaugeMetricFamily(
            "apibalance_daily_limit_reset_seconds",
            "Seconds until the daily limit resets, as reported." + CACHED,
            labels=ACCOUNT_LABELS,
        )
        hourly_spend = GaugeMetricFamily(
            "apibalance_hourly_spend_usd",
            'Money spent in the last complete hour, in USD; queue="all" is the total.' + CACHED,
            labels=QUEUE_LABELS,
        )
        hourly_tasks = GaugeMetricFamily(
            "apibalance_hourly_tasks",
            "Tasks in the last complete hour." + CACHED,
            labels=QUEUE_LABELS,
        )
        daily_spend = GaugeMetricFamily(
            "apibalance_daily_spend_usd",
            "Money spent over the complete hourly records returned (up to 24), in USD." + CACHED,
            labels=QUEUE_LABELS,
        )
        daily_tasks = GaugeMetricFamily(
            "apibalance_daily_tasks",
            "Tasks over the complete hourly records returned (up to 24)." + CACHED,
            labels=QUEUE_LABELS,
        )
        threshold = GaugeMetricFamily(
            "apibalance_low_balance_threshold_usd",
            "Balance below which the account counts as low, from the config low_balance_usd.",
            labels=ACCOUNT_LABELS,
        )
        duration = GaugeMetricFamily(
            "apibalance_collect_duration_seconds",
            "Time the last collection of the account took, in seconds.",
            labels=ACCOUNT_LABELS,
        )
        last_success = GaugeMetricFamily(
            "apibalance_last_success_timestamp_seconds",
            "Unix time of the last successful collection of the account.",
            labels=ACCOUNT_LABELS,
        )
        errors = CounterMetricFamily(
            "apibalance_collect_errors",
            "Failed collections of the account, by reason.",
            labels=REASON_LABELS,
        )
        for snapshot in snapshots:
            account = snapshot.account
            ids = [account.provider_type, account.name]
            outcome = snapshot.outcome
            reading = outcome.reading
            up.add_metric(ids, 1.0 if outcome.ok else 0.0)
            if reading is not None:
                if reading.balance_usd is not None:
                    balance.add_metric(ids, reading.balance_usd)
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
            duration.add_metric(ids, outcome.duration)
            if snapshot.last_success_wall is not None:
                last_success.add_metric(ids, snapshot.last_success_wall)
            for reason in Reason:
                errors.add_metric([*ids, reason.value], float(snapshot.errors[reason]))
        yield up
        for family in (
            balance,
            credits,
            limit_left,
            limit_reset,
            hourly_spend,
            hourly_tasks,
            daily_spend,
            daily_tasks,
            threshold,
            duration,
            last_success,
        ):
            if family.samples:
                yield family
        yield errors


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


def render(collectors: Iterable[Collector], accept: str | None) -> tuple[bytes, str]:
    """Exposition of the collectors in the format the scraper asked for, and its content type."""
    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type
