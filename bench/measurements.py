"""What a run measures: uncached and cached scrapes of each build, interleaved."""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exporter_process import (
    Build,
    Exporter,
    Placement,
    account_name,
    running_exporters,
    write_config,
)
from fake_upstream import BALANCE, FakeUpstream
from scrapers import Scraper, concurrent_scrapes

# However slow the machine, a soak ends after this long.
SOAK_TIME_LIMIT = 600.0


class Timed:
    """Scrape durations in seconds, summarised in milliseconds."""

    scrapes: list[float]

    @property
    def median_ms(self) -> float:
        return statistics.median(self.scrapes) * 1000

    @property
    def p95_ms(self) -> float:
        return percentile(self.scrapes, 0.95) * 1000


@dataclass(frozen=True)
class Bounds:
    """The concurrency bounds of a run: set in the config, or the build's defaults (None)."""

    total: int | None
    per_host: int | None

    def settings(self, build: Build) -> dict[str, int]:
        """The config's global keys for these bounds, as far as the build knows them."""
        found: dict[str, int] = {}
        if self.total is not None:
            found["max_concurrency"] = self.total
        if self.per_host is not None and build.defaults.per_host is not None:
            found["max_concurrency_per_host"] = self.per_host
        return found

    def effective(self, build: Build) -> tuple[int, int | None]:
        """(total, per host) as the build applies them."""
        total = self.total if self.total is not None else build.defaults.total
        per_host = build.defaults.per_host
        if per_host is not None and self.per_host is not None:
            per_host = self.per_host
        return total, per_host

    @property
    def default(self) -> bool:
        return self.total is None and self.per_host is None


@dataclass
class Uncached(Timed):
    build: str
    accounts: int
    hosts: int
    latency_ms: int
    max_concurrency: int
    per_host: int | None
    default_concurrency: bool
    scrapes: list[float]
    cpu_seconds: float
    new_connections: int
    rss_mib: float
    peak_rss_mib: float
    by_hand_seconds: float | None = None
    by_hand_estimated: bool = False

    @property
    def floor_ms(self) -> float:
        """The physical limit: so many requests at a time, each taking the latency."""
        per_host = math.ceil(self.accounts / self.hosts)
        rounds = math.ceil(self.accounts / self.max_concurrency)
        if self.per_host is not None:
            rounds = max(rounds, math.ceil(per_host / self.per_host))
        return rounds * self.latency_ms

    @property
    def ratio(self) -> float:
        return self.median_ms / self.latency_ms

    @property
    def cpu_ms_per_account(self) -> float:
        return self.cpu_seconds * 1000 / (len(self.scrapes) * self.accounts)

    @property
    def connections_per_scrape(self) -> float:
        return self.new_connections / len(self.scrapes)


@dataclass
class Cached(Timed):
    build: str
    accounts: int
    scrapes: list[float]
    cpu_seconds: float
    scrapers: int
    soak_scrapes: int
    throughput: float
    new_connections: int
    rss_before_soak_mib: float
    rss_mib: float
    peak_rss_mib: float

    @property
    def cpu_ms_per_scrape(self) -> float:
        return self.cpu_seconds * 1000 / len(self.scrapes)

    @property
    def rss_growth_mib(self) -> float:
        return self.rss_mib - self.rss_before_soak_mib


@dataclass
class Probed(Timed):
    """Scrapes of one account each through `/probe`, as a sharded Prometheus job sends them."""

    build: str
    accounts: int  # in the config; each scrape asks one of them
    latency_ms: int
    scrapes: list[float]
    cpu_seconds: float
    upstream_requests: int

    @property
    def ratio(self) -> float:
        return self.median_ms / self.latency_ms

    @property
    def cpu_ms_per_probe(self) -> float:
        return self.cpu_seconds * 1000 / len(self.scrapes)

    @property
    def requests_per_probe(self) -> float:
        return self.upstream_requests / len(self.scrapes)


@dataclass
class Results:
    builds: list[Build]
    uncached: list[Uncached] = field(default_factory=list)
    cached: list[Cached] = field(default_factory=list)
    probed: list[Probed] = field(default_factory=list)
    reference_ms: list[float] = field(default_factory=list)

    def of(self, build: Build) -> Results:
        """The results of one build only."""
        return Results(
            [build],
            [r for r in self.uncached if r.build == build.name],
            [r for r in self.cached if r.build == build.name],
            [r for r in self.probed if r.build == build.name],
            self.reference_ms,
        )


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def reference_ms(placement: Placement) -> float:
    """A fixed pure-Python workload on the exporter's CPU, in ms: how fast the
    machine is right now (a shared VM's speed drifts by tens of per cent from run to run).
    Best of six: the first rounds after an idle spell run slower."""
    with placement.on_exporter_cpu():
        best = math.inf
        data = {"errorId": 0, "balance": BALANCE, "clientKey": "bench-key-00000"}
        for _ in range(6):
            started = time.perf_counter()
            for i in range(20_000):
                text = json.dumps(data)
                json.loads(text)
                _ = f'{{account="acct-{i:05d}",provider="datalabs"}} {text}\n'
            best = min(best, time.perf_counter() - started)
        return best * 1000


def scrape_count(requested: int | None, expected_seconds: float, budget_seconds: float) -> int:
    if requested is not None:
        return requested
    return max(5, min(40, int(budget_seconds / expected_seconds)))


@dataclass(frozen=True)
class Run:
    """What every measurement of a run shares."""

    builds: list[Build]
    upstream: FakeUpstream
    workdir: Path
    placement: Placement


def configs(
    run: Run,
    accounts: int,
    latency_ms: int,
    hosts: int,
    cache_ttl: str,
    bounds: Bounds,
) -> dict[Build, Path]:
    """Each build's config: the same accounts, and the bounds in the keys it knows."""
    found = {}
    for build in run.builds:
        settings: dict[str, Any] = {"timeout": "30s", "cache_ttl": cache_ttl}
        settings.update(bounds.settings(build))
        found[build] = write_config(
            run.workdir, run.upstream, accounts, latency_ms, settings, hosts
        )
    return found


@dataclass
class Turns:
    """Each build's scrape times, CPU seconds and growth of an upstream count, by build."""

    times: list[list[float]]
    cpu: list[float]
    counted: list[int]


def in_turns(
    exporters: Sequence[Exporter],
    scrapers: Sequence[Scraper],
    rounds: int,
    scrape: Callable[[Scraper, int], float],
    count: Callable[[], int],
) -> Turns:
    """`rounds` rounds of one scrape of each build in turn, so that a change of the machine's
    speed meets them all alike: `scrape(scraper, round)` gives its time; the exporter's CPU
    and what `count` counts (at the upstream) are read around each."""
    turns = Turns([[] for _ in exporters], [0.0] * len(exporters), [0] * len(exporters))
    for n in range(rounds):
        for i, (exporter, scraper) in enumerate(zip(exporters, scrapers, strict=True)):
            before_cpu = exporter.cpu_seconds()
            before = count()
            turns.times[i].append(scrape(scraper, n))
            turns.cpu[i] += exporter.cpu_seconds() - before_cpu
            turns.counted[i] += count() - before
    return turns


def measure_uncached(
    run: Run,
    accounts: int,
    latency_ms: int,
    bounds: Bounds,
    hosts: int,
    scrapes: int | None,
    budget_seconds: float,
) -> list[Uncached]:
    """Every build's exporter on the same accounts, scraped in turn (one scrape of each, then
    the next round), so that a change of the machine's speed meets them all alike."""
    slowest = max(
        math.ceil(accounts / bounds.effective(build)[0])
        * max(1, math.ceil(math.ceil(accounts / hosts) / (bounds.effective(build)[1] or accounts)))
        for build in run.builds
    )
    count = scrape_count(
        scrapes, len(run.builds) * (slowest * latency_ms / 1000 + 0.01), budget_seconds
    )
    with running_exporters(
        configs(run, accounts, latency_ms, hosts, "0s", bounds), run.placement
    ) as exporters:
        scrapers = [Scraper(exporter.port) for exporter in exporters]
        # Warm-up: the first scrape opens the upstream connections, the second reuses them.
        for _ in range(2):
            for scraper in scrapers:
                scraper.checked(accounts)
        turns = in_turns(
            exporters,
            scrapers,
            count,
            lambda scraper, _: scraper.checked(accounts),
            lambda: run.upstream.connections,
        )
        results = []
        for i, exporter in enumerate(exporters):
            rss, peak = exporter.memory_mib()
            scrapers[i].close()
            total, per_host = bounds.effective(exporter.build)
            results.append(
                Uncached(
                    exporter.build.name,
                    accounts,
                    hosts,
                    latency_ms,
                    total,
                    per_host,
                    bounds.default,
                    turns.times[i],
                    turns.cpu[i],
                    turns.counted[i],
                    rss,
                    peak,
                )
            )
    return results


def measure_cached(
    run: Run,
    accounts: int,
    scrapes: int | None,
    scrapers: int,
    duration: float,
    soak_scrapes: int,
) -> list[Cached]:
    """Cached scrapes, timed one at a time (interleaved between builds), then `scrapers` at
    once for `soak_scrapes` scrapes (one build after the other): how many a second, and
    whether memory stays flat."""
    bounds = Bounds(accounts, accounts)
    with running_exporters(configs(run, accounts, 50, 1, "1h", bounds), run.placement) as exporters:
        sequential = [Scraper(exporter.port) for exporter in exporters]
        for _ in range(3):
            for scraper in sequential:
                scraper.checked(accounts)
        turns = in_turns(
            exporters,
            sequential,
            scrapes or 50,
            lambda scraper, _: scraper.checked(accounts),
            lambda: run.upstream.connections,
        )
        connections = turns.counted
        for scraper in sequential:
            scraper.close()
        results = []
        for i, exporter in enumerate(exporters):
            before_connections = run.upstream.connections
            # The first scrapes at this concurrency grow the heap to what it needs; past
            # them, memory should stay where it is.
            concurrent_scrapes(exporter.port, accounts, scrapers, duration, soak_scrapes // 10)
            before_soak, _ = exporter.memory_mib()
            done, seconds = concurrent_scrapes(
                exporter.port, accounts, scrapers, SOAK_TIME_LIMIT, soak_scrapes
            )
            rss, peak = exporter.memory_mib()
            connections[i] += run.upstream.connections - before_connections
            results.append(
                Cached(
                    exporter.build.name,
                    accounts,
                    turns.times[i],
                    turns.cpu[i],
                    scrapers,
                    done,
                    done / seconds,
                    connections[i],
                    before_soak,
                    rss,
                    peak,
                )
            )
    return results


def measure_probed(
    run: Run, accounts: int, latency_ms: int, scrapes: int | None, budget_seconds: float
) -> list[Probed]:
    """Each account asked through `/probe` in turn, one scrape each, nothing cached: what a
    scrape costs when Prometheus shares the accounts out as targets (several replicas)
    rather than asking them all with one `/metrics`. Interleaved between builds."""
    bounds = Bounds(max(accounts, 1), max(accounts, 1))
    count = scrape_count(scrapes, len(run.builds) * (latency_ms / 1000 + 0.005), budget_seconds)
    with running_exporters(
        configs(run, accounts, latency_ms, 1, "0s", bounds), run.placement
    ) as exporters:
        scrapers = [Scraper(exporter.port) for exporter in exporters]
        # Warm-up: a /metrics scrape opens a connection for every account, as Prometheus's
        # first round of probes would; then a probe, the first down this path.
        for scraper in scrapers:
            scraper.checked(accounts)
            scraper.probe(account_name(0))
        turns = in_turns(
            exporters,
            scrapers,
            count,
            lambda scraper, n: scraper.probe(account_name(n % accounts)),
            lambda: run.upstream.requests,
        )
        for scraper in scrapers:
            scraper.close()
        return [
            Probed(
                exporter.build.name,
                accounts,
                latency_ms,
                turns.times[i],
                turns.cpu[i],
                turns.counted[i],
            )
            for i, exporter in enumerate(exporters)
        ]
