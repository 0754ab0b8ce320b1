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

import abc
import functools
import math
import operator
import platform
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.config import Account
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


def _label_text(labels: Iterable[tuple[str, str]]) -> str:
    """`name="value"` pairs, sorted by name as prometheus_client sorts them, values escaped."""
    return ",".join(f'{name}="{_escape_value(value)}"' for name, value in sorted(labels))


def value_text(number: float) -> str:
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


@dataclass(frozen=True, slots=True, eq=False)  # eq=False: hashed by identity, cheaply
class Family:
    """One per-account metric family: its name, help, labels and type.

    Every family's labels start with the account's (`ACCOUNT_LABELS`).
    """

    name: str
    documentation: str
    labels: tuple[str, ...]
    counter: bool = False
    # Shown even without samples (prometheus_client writes HELP and TYPE of an empty family).
    always: bool = False
    # A sample line up to its value is `sample_name`, the account's `{account="..."`, the
    # family's other labels that sort before `provider`, the account's `,provider="..."`, the
    # labels after it and `} `: labels sorted by name, as prometheus_client writes them.
    sample_name: str = field(init=False)
    # `pieces(())` of a family without labels of its own (None: its pieces depend on values).
    plain: tuple[str, str, str] | None = field(init=False)

    def __post_init__(self) -> None:
        own = self.labels[len(ACCOUNT_LABELS) :]
        if self.labels[: len(ACCOUNT_LABELS)] != ACCOUNT_LABELS or min(own, default="b") < "b":
            # The pieces of a sample line start with `{account="...`, the first label.
            raise ValueError(
                f"{self.name}: labels start {ACCOUNT_LABELS}, others sort after account"
            )
        sample_name = self.name + "_total" if self.counter else self.name
        object.__setattr__(self, "sample_name", sample_name)
        object.__setattr__(self, "plain", None if own else self.pieces(()))

    def pieces(self, values: tuple[str, ...]) -> tuple[str, str, str]:
        """The sample name, and the text before and after the `provider` label, of a sample
        whose labels after the account's have these (escaped) values."""
        pairs = sorted(zip(self.labels[len(ACCOUNT_LABELS) :], values, strict=True))
        before = "".join(f',{label}="{value}"' for label, value in pairs if label < "provider")
        after = "".join(f',{label}="{value}"' for label, value in pairs if label > "provider")
        return self.sample_name, before, after + "} "

    def metric(self) -> GaugeMetricFamily | CounterMetricFamily:
        kind = CounterMetricFamily if self.counter else GaugeMetricFamily
        return kind(self.name, self.documentation, labels=self.labels)

    def header(self, openmetrics: bool) -> str:
        """The HELP and TYPE lines."""
        kind = "counter" if self.counter else "gauge"
        if openmetrics:
            help_text = _escape_value(self.documentation)
            return f"# HELP {self.name} {help_text}\n# TYPE {self.name} {kind}\n"
        sample = self.sample_name
        help_text = self.documentation.replace("\\", r"\\").replace("\n", r"\n")
        return f"# HELP {sample} {help_text}\n# TYPE {sample} {kind}\n"


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
ALLOWANCE = Family(
    "apibalance_credits_allowance",
    "What the plan grants of the pool per period, where the service reports it." + CACHED,
    CREDIT_LABELS,
)
LIMIT_LEFT = Family(
    "apibalance_daily_limit_remaining", "Requests left today." + CACHED, ACCOUNT_LABELS
)
LIMIT_RESET = Family(
    "apibalance_daily_limit_reset_seconds",
    "Seconds until the daily limit resets, as reported; a reused answer's count goes on "
    "down." + CACHED,
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
LOW_CREDITS = Family(
    "apibalance_low_credits_threshold",
    "Credits below which the account counts as low, from the config low_credits; "
    'pool="all" is a threshold on all pools of the credit type together.',
    CREDIT_LABELS,
)
LOW_DAILY_LIMIT = Family(
    "apibalance_low_daily_limit_threshold",
    "Requests left today below which the account counts as low, from the config low_daily_limit.",
    ACCOUNT_LABELS,
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
# Its labels besides the account's differ from one account to the next (`service`,
# `top_up_url` when known, and the account's own `labels`): rendered by `info_sample`.
INFO = Family(
    "apibalance_account_info",
    "Always 1: what the account is an account of (service), where to pay for it "
    "(top_up_url) and its own labels from the config.",
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
    INFO,
    BALANCE,
    BALANCE_IN_CURRENCY,
    CREDITS,
    ALLOWANCE,
    LIMIT_LEFT,
    LIMIT_RESET,
    HOURLY_SPEND,
    HOURLY_TASKS,
    DAILY_SPEND,
    DAILY_TASKS,
    THRESHOLD,
    THRESHOLD_IN_CURRENCY,
    LOW_CREDITS,
    LOW_DAILY_LIMIT,
    DURATION,
    LAST_SUCCESS,
    ERRORS,
)
_HEADERS = {
    openmetrics: {family: family.header(openmetrics).encode() for family in ACCOUNT_FAMILIES}
    for openmetrics in (False, True)
}
# Each reason and its label values, made once: an enum member's `.value` is slow to read.
_REASON_LABELS = tuple((reason, (reason.value,)) for reason in Reason)

# A series of an account: its family, the values of the family's labels after the account's
# own (`ACCOUNT_LABELS`), and its value.
Series = tuple[Family, tuple[str, ...], float]


def account_series(snapshot: Snapshot) -> Iterator[Series]:
    """Every series one scrape shows of one account: the one description both renderers of
    `AccountCollector` follow."""
    yield from series_but_errors(snapshot)
    counts = snapshot.errors
    for reason, labels in _REASON_LABELS:
        yield ERRORS, labels, counts[reason]


def series_but_errors(snapshot: Snapshot) -> Iterator[Series]:
    """`account_series` but the error counts, which come last: those are the same on most
    scrapes, and `account_lines` writes them once for each set of counts."""
    outcome = snapshot.outcome
    reading = outcome.reading
    yield UP, (), 1.0 if outcome.error is None else 0.0
    if reading is not None:
        if reading.balance_usd is not None:
            yield BALANCE, (), reading.balance_usd
        if reading.balance is not None and reading.currency is not None:
            yield BALANCE_IN_CURRENCY, (reading.currency,), reading.balance
        for credit in reading.credits:
            yield CREDITS, (credit.credit_type, credit.pool), credit.value
        for credit in reading.credits:
            if credit.allowance is not None:
                yield ALLOWANCE, (credit.credit_type, credit.pool), credit.allowance
        if reading.daily_limit_remaining is not None:
            yield LIMIT_LEFT, (), reading.daily_limit_remaining
        reset_in = reading.daily_limit_resets_in(snapshot.age)
        if reset_in is not None:
            yield LIMIT_RESET, (), reset_in
        for spend in reading.spend:
            queue = (spend.queue,)
            yield HOURLY_SPEND, queue, spend.hourly_spend_usd
            yield HOURLY_TASKS, queue, spend.hourly_tasks
            yield DAILY_SPEND, queue, spend.daily_spend_usd
            yield DAILY_TASKS, queue, spend.daily_tasks
    if (low := snapshot.account.low_balance_in(snapshot.currency)) is not None:
        amount, currency = low
        if currency == USD:
            yield THRESHOLD, (), amount
        else:
            yield THRESHOLD_IN_CURRENCY, (currency,), amount
    for low_credits in snapshot.account.low_credits:
        yield LOW_CREDITS, (low_credits.credit_type, low_credits.pool), low_credits.below
    if snapshot.account.low_daily_limit is not None:
        yield LOW_DAILY_LIMIT, (), snapshot.account.low_daily_limit
    yield DURATION, (), outcome.duration
    if snapshot.last_success_wall is not None:
        yield LAST_SUCCESS, (), snapshot.last_success_wall


def info_labels(account: Account) -> dict[str, str]:
    """The labels of the account's apibalance_account_info series, its own among them."""
    labels = {"provider": account.provider_type, "account": account.name, **dict(account.labels)}
    labels["service"] = account.service
    if account.top_up_url is not None:
        labels["top_up_url"] = account.top_up_url
    return labels


def info_sample(account: Account) -> bytes:
    """The account's apibalance_account_info line, labels sorted as prometheus_client sorts
    them."""
    return _info_line(
        account.provider_type, account.name, account.labels, account.service, account.top_up_url
    )


# The line is the same on every scrape until the config changes; sorting and escaping its
# labels anew was a tenth of a cached scrape of 1000 accounts. Keyed by what the line shows.
@functools.lru_cache(maxsize=4096)
def _info_line(
    provider_type: str,
    name: str,
    labels: tuple[tuple[str, str], ...],
    service: str,
    top_up_url: str | None,
) -> bytes:
    pairs = {"provider": provider_type, "account": name, **dict(labels), "service": service}
    if top_up_url is not None:
        pairs["top_up_url"] = top_up_url
    text = _label_text(pairs.items())
    return f"{INFO.name}{{{text}}} 1.0\n".encode()


@dataclass(frozen=True, slots=True)
class ReloadStatus:
    successful: bool
    last_success_timestamp: float


class TextCollector(Collector):
    """A collector that also writes its series as text itself: byte for byte what
    prometheus_client would write of `collect()` (Prometheus 0.0.4 or OpenMetrics, without
    `# EOF`) when the scrape's escaping leaves names unchanged. `render` uses it."""

    @abc.abstractmethod
    def write(self, openmetrics: bool, out: list[bytes]) -> None:
        """Add the text, in pieces, to `out`: the answer is joined once, from every piece."""

    def exposition(self, openmetrics: bool) -> str:
        out: list[bytes] = []
        self.write(openmetrics, out)
        return b"".join(out).decode()


class AccountCollector(TextCollector):
    """Per-account series of one scrape (everything `/probe` returns), as `account_series`
    describes them.

    `collect()` gives them to prometheus_client; `write()` writes the same text itself, which
    is what `render()` uses: on a scrape of many accounts it is several times faster.
    With `written`, accounts shown as the scrape before showed them (a cached answer) are not
    written again.
    """

    def __init__(
        self, snapshots: Sequence[Snapshot], written: WrittenAccounts | None = None
    ) -> None:
        self._snapshots = snapshots
        self._written = written

    def collect(self) -> Iterator[Metric]:
        metrics = {family: family.metric() for family in ACCOUNT_FAMILIES}
        for snapshot in self._snapshots:
            ids = (snapshot.account.provider_type, snapshot.account.name)
            for family, labels, value in account_series(snapshot):
                metrics[family].add_metric((*ids, *labels), value)
            metrics[INFO].add_sample(INFO.name, info_labels(snapshot.account), 1.0)
        for family, metric in metrics.items():
            if family.always or metric.samples:
                yield metric

    def write(self, openmetrics: bool, out: list[bytes]) -> None:
        """The same series as `collect()`, written straight to text (Prometheus 0.0.4 or
        OpenMetrics, without `# EOF`), byte for byte what prometheus_client would write.

        Each account's samples are the same text in both formats (`account_lines`); only the
        HELP and TYPE lines differ.
        """
        lines_of = account_lines if self._written is None else self._written.lines
        # Family by family, every account's lines of it.
        columns = list(zip(*map(lines_of, self._snapshots), strict=True))
        empty: list[tuple[bytes, ...]] = [()] * len(ACCOUNT_FAMILIES)
        headers = _HEADERS[openmetrics]
        for family, column in zip(ACCOUNT_FAMILIES, columns or empty, strict=True):
            if family.always or any(column):
                out.append(headers[family])
                out.extend(column)


def account_lines(snapshot: Snapshot) -> tuple[bytes, ...]:
    """The sample lines of one account, one text for each of `ACCOUNT_FAMILIES` (empty for a
    family it has no series of): the same in both formats.

    prometheus_client spends most of a scrape of many accounts building sample objects and
    escaping names one character at a time; here the text around label values is made once
    per family and label values (`_pieces`), the account's label values are escaped once,
    and each sample is a few concatenations.
    """
    account = snapshot.account
    name, provider = _account_labels(account.name, account.provider_type)
    ids = name + provider
    lines = list(_NO_LINES)
    lines[_POSITION[INFO]] = info_sample(account)
    lines[_POSITION[ERRORS]] = _error_lines(name, provider, _error_counts(snapshot.errors))
    for family, labels, value in series_but_errors(snapshot):
        pieces = family.plain
        if pieces is None:
            pieces = _pieces(family, labels)
        sample_name, before, after = pieces
        # `up` is nearly always 1.
        text = "1.0\n" if value == 1.0 else value_text(value)
        if before:
            line = sample_name + name + before + provider + after + text
        else:
            line = sample_name + ids + after + text
        lines[_POSITION[family]] += line.encode()
    return tuple(lines)


@functools.lru_cache(maxsize=4096)
def _account_labels(name: str, provider_type: str) -> tuple[str, str]:
    """The text of the account's `account` and `provider` labels in a sample line."""
    account = '{account="' + _escape_value(name) + '"'
    return account, ',provider="' + _escape_value(provider_type) + '"'


_POSITION = {family: position for position, family in enumerate(ACCOUNT_FAMILIES)}
_NO_LINES = (b"",) * len(ACCOUNT_FAMILIES)
_error_counts = operator.itemgetter(*Reason)


# Nearly always all 0, and the same from one scrape to the next: 7 of an account's 11 lines.
@functools.lru_cache(maxsize=4096)
def _error_lines(name: str, provider: str, counts: tuple[int, ...]) -> bytes:
    lines = []
    for (_, labels), count in zip(_REASON_LABELS, counts, strict=True):
        sample_name, before, after = _pieces(ERRORS, labels)
        lines.append(sample_name + name + before + provider + after + value_text(count))
    return "".join(lines).encode()


# The same few label values (reasons, queues, credit types) come back on every account.
@functools.lru_cache(maxsize=1024)
def _pieces(family: Family, labels: tuple[str, ...]) -> tuple[str, str, str]:
    return family.pieces(tuple(map(_escape_value, labels)))


# What an account's lines are written from: `Snapshot` less its `age`, which they show only
# as the seconds until the daily limit resets. Any other field of a snapshot must be here
# (tests/test_exposition.py checks that the list is whole).
_LINE_INPUTS = ("account", "outcome", "errors", "last_success_wall", "currency")


_fields_read = operator.attrgetter(*_LINE_INPUTS)


def _line_inputs(snapshot: Snapshot) -> tuple[object, object]:
    reading = snapshot.outcome.reading
    reset_in = None if reading is None else reading.daily_limit_resets_in(snapshot.age)
    return _fields_read(snapshot), reset_in


class WrittenAccounts:
    """The lines each account was last shown with, and what they were written from.

    A scrape shows most accounts as the one before did: a cached answer with the same error
    counts, written once (a cached scrape of 1000 accounts took 16.7 ms of CPU, 7.3 now).
    """

    def __init__(self) -> None:
        self._by_name: dict[str, tuple[Account, tuple[object, object], tuple[bytes, ...]]] = {}

    def lines(self, snapshot: Snapshot) -> tuple[bytes, ...]:
        """`account_lines(snapshot)`, written again only if what it shows has changed."""
        inputs = _line_inputs(snapshot)
        account = snapshot.account
        known = self._by_name.get(account.name)
        if known is not None and known[1] == inputs:
            return known[2]
        lines = account_lines(snapshot)
        self._by_name[account.name] = (account, inputs, lines)
        return lines

    def keep_only(self, accounts: Mapping[str, Account]) -> None:
        """Forget the accounts not configured as these are: what their lines were written from
        holds their provider, and with it their keys (gone from logs' redaction only once
        nothing holds them)."""
        self._by_name = {
            name: known for name, known in self._by_name.items() if accounts.get(name) is known[0]
        }


# Escapings of metric and label names that leave this exporter's (legacy) names unchanged; with
# the others prometheus_client rewrites names, so it renders everything itself.
_NAMES_UNCHANGED = frozenset({"underscores", "allow-utf-8"})
_EOF = b"# EOF\n"


# Names prometheus_client writes as they are under the escapings of _NAMES_UNCHANGED.
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# The sample name of each plain type, and its type in the Prometheus 0.0.4 text format.
_PLAIN_TYPES = {
    "gauge": ("", "gauge"),
    "counter": ("_total", "counter"),
    "info": ("_info", "gauge"),
}


def plain_exposition(metrics: Iterable[Metric], openmetrics: bool) -> str | None:
    """Families of gauges, counters and infos whose samples are plain (no `_created`, unit,
    timestamp or exemplar) written as prometheus_client writes them; None if any is not.

    The exporter's own and the process, platform and garbage collector series are such
    families. prometheus_client's writers check every name against the rules for UTF-8
    names, which costs about as much as the rest of a small scrape: at ten accounts, a
    fifth of its CPU.
    """
    out: list[str] = []
    for metric in metrics:
        plain = _PLAIN_TYPES.get(metric.type)
        if plain is None or metric.unit or not _METRIC_NAME.fullmatch(metric.name):
            return None
        suffix, text_type = plain
        sample_name = metric.name + suffix
        if openmetrics:
            help_text = _escape_value(metric.documentation)
            out.append(f"# HELP {metric.name} {help_text}\n# TYPE {metric.name} {metric.type}\n")
        else:
            help_text = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
            out.append(f"# HELP {sample_name} {help_text}\n# TYPE {sample_name} {text_type}\n")
        for sample in metric.samples:
            if (
                sample.name != sample_name
                or sample.timestamp is not None
                or sample.exemplar is not None
                or getattr(sample, "native_histogram", None) is not None
            ):
                return None
            if sample.labels:
                if not all(_LABEL_NAME.fullmatch(name) for name in sample.labels):
                    return None
                pairs = _label_text(sample.labels.items())
                out.append(f"{sample_name}{{{pairs}}} {value_text(sample.value)}")
            else:
                out.append(f"{sample_name} {value_text(sample.value)}")
    return "".join(out)


# The label values of a sample (in the order of its family's labels) and its value.
PlainSample = tuple[tuple[str, ...], float]


class PlainFamily:
    """A gauge or counter family without the account's labels (the exporter's own series,
    the process's, Python's): its HELP and TYPE lines and the text before each sample's
    value, written once by `plain_exposition`'s rules rather than on every scrape."""

    def __init__(
        self, name: str, documentation: str, labels: tuple[str, ...] = (), *, counter: bool = False
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = labels
        self.counter = counter
        self._sample_name = name + "_total" if counter else name
        self._headers = tuple(self._header(openmetrics) for openmetrics in (False, True))
        # The few label values each family ever has (a GC generation, the build's versions).
        self._prefixes: dict[tuple[str, ...], str] = {}

    def _header(self, openmetrics: bool) -> str:
        header = plain_exposition([self.metric()], openmetrics)
        if header is None:
            raise ValueError(f"{self.name}: not a name prometheus_client writes as it is")
        return header

    def metric(self) -> GaugeMetricFamily | CounterMetricFamily:
        kind = CounterMetricFamily if self.counter else GaugeMetricFamily
        return kind(self.name, self.documentation, labels=self.labels)

    def text(self, samples: Iterable[PlainSample], openmetrics: bool) -> str:
        """The family's HELP and TYPE lines and these samples."""
        out = [self._headers[openmetrics]]
        for values, value in samples:
            prefix = self._prefixes.get(values)
            if prefix is None:
                prefix = self._prefixes[values] = self._prefix(values)
            out.append(prefix + value_text(value))
        return "".join(out)

    def _prefix(self, values: tuple[str, ...]) -> str:
        if not values:
            return self._sample_name + " "
        pairs = _label_text(zip(self.labels, values, strict=True))
        return f"{self._sample_name}{{{pairs}}} "


class PlainCollector(TextCollector):
    """Families of `PlainFamily`, each with the samples `families()` gives on this scrape."""

    @abc.abstractmethod
    def families(self) -> Iterable[tuple[PlainFamily, Sequence[PlainSample]]]: ...

    def collect(self) -> Iterator[Metric]:
        for family, samples in self.families():
            metric = family.metric()
            for values, value in samples:
                metric.add_metric(values, value)
            yield metric

    def write(self, openmetrics: bool, out: list[bytes]) -> None:
        text = "".join(family.text(samples, openmetrics) for family, samples in self.families())
        out.append(text.encode())


BUILD_INFO = PlainFamily(
    "apibalance_build_info",
    "Version of the exporter and of Python; always 1.",
    ("version", "python_version"),
)
RELOAD_SUCCESSFUL = PlainFamily(
    "apibalance_config_last_reload_successful",
    "1 if the last config load or reload succeeded, else 0.",
)
RELOAD_SUCCESS_TIME = PlainFamily(
    "apibalance_config_last_reload_success_timestamp_seconds",
    "Unix time of the last successful config load or reload.",
)


class ExporterCollector(PlainCollector):
    """Series about the exporter itself: build and config reload status."""

    def __init__(self, reload_status: Callable[[], ReloadStatus]) -> None:
        self._reload_status = reload_status
        self._build = ((__version__, platform.python_version()), 1.0)

    def families(self) -> Iterator[tuple[PlainFamily, Sequence[PlainSample]]]:
        yield BUILD_INFO, (self._build,)
        status = self._reload_status()
        yield RELOAD_SUCCESSFUL, (((), 1.0 if status.successful else 0.0),)
        yield RELOAD_SUCCESS_TIME, (((), status.last_success_timestamp),)


class Collected(Collector):
    """Metrics already collected, for prometheus_client to write (as many times as asked)."""

    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return iter(self._metrics)


def render(collectors: Iterable[Collector], accept: str | None) -> tuple[bytes, str]:
    """Exposition of the collectors in the format the scraper asked for, and its content type.

    Collectors that can write their own text do (`TextCollector`), other plain families are
    written by `plain_exposition`; the rest go through prometheus_client, in the order given.
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
        if not fast:
            pending.append(collector)
        elif isinstance(collector, TextCollector):
            flush()
            collector.write(openmetrics, parts)
        else:
            metrics = list(collector.collect())
            text = plain_exposition(metrics, openmetrics)
            if text is None:
                pending.append(Collected(metrics))
            else:
                flush()
                parts.append(text.encode())
    flush()
    if openmetrics:
        parts.append(_EOF)
    return b"".join(parts), content_type
