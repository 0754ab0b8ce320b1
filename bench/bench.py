"""Benchmark: a scrape costs the slowest upstream and little more (README: Performance).

    make bench                      # the full run (a few minutes on 2 cores)
    make bench ARGS=--quick         # 10 accounts, a few scrapes: the CI smoke run

A fake provider runs in a separate process on loopback, so that it does not share the
exporter's CPU: the demo's anti-captcha family (`exporter.demo.antigate`: its accounts, keys
and answers, as the tests and `--demo` see them) behind a lean asyncio HTTP/1.1 transport that
answers after a set latency and counts the TCP connections it accepts. The latency is part of
the path (`/lat200/datalabs/getBalance`), so one server plays every latency. The transport is
not the demo's aiohttp server because that costs about 0.15 ms of CPU per request against
0.05 ms here: at 1000 accounts the fake's own queue would add some 100 ms to a 200 ms
upstream and be counted against the exporter. The exporter
runs as its own process (`python -m exporter`) on a generated config of N accounts pointing
at it, and is scraped over HTTP the way Prometheus scrapes it (same Accept and
Accept-Encoding headers). Exporter CPU comes from /proc/<pid>/task/*/schedstat (nanoseconds,
every thread) and RSS from /proc/<pid>/status. With two CPUs or more the exporter is pinned
to one and everything else to the others: in production the providers and Prometheus are
elsewhere.

The "by hand" baseline is what a user copying a provider's example would run: a loop of
sequential requests, one new connection each (urllib here, as `requests.post` without a
session), in the same run against the same server.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import http.client
import json
import math
import multiprocessing
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

from exporter.demo.antigate import CONTENT_TYPE, balance_answer
from exporter.demo.server import FakeServer, SimAccount

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MAX_CONCURRENCY = 64  # exporter.settings.GlobalSettings.max_concurrency
# Prometheus 2.x sends these with every scrape; the exporter answers OpenMetrics, gzipped.
PROMETHEUS_HEADERS = {
    "Accept": (
        "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
        "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    ),
    "Accept-Encoding": "gzip",
    "User-Agent": "Prometheus/2.42.0",
    "X-Prometheus-Scrape-Timeout-Seconds": "60",
}
# Anti-captcha protocol types without a minimum interval (anticaptcha itself is asked at most
# once per 30 s, so it cannot show an uncached scrape).
PROVIDERS = ("datalabs", "twocaptcha", "capmonster")
BALANCE = 12.3456
MIB = 1 << 20

# The goals in README: Performance.
GOAL_RATIO = {100: 1.25, 1000: 1.5}  # median scrape / upstream latency, at 200 ms
GOAL_LATENCY_MS = 200
GOAL_CPU_MS_PER_ACCOUNT = 0.3
GOAL_CACHED_MS = 30.0
GOAL_RSS_MIB = 100.0


# -- the fake provider, in its own process --------------------------------------------------


class UpstreamProtocol(asyncio.Protocol):
    """One connection to the fake provider: HTTP/1.1 with keep-alive, answers after a delay."""

    def __init__(self, demo: FakeServer, connections: Any, requests: Any) -> None:
        self._demo = demo
        self._connections = connections
        self._requests = requests
        self._buffer = b""
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._connections.value += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            head_end = self._buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            lines = self._buffer[:head_end].decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            end = head_end + 4 + int(headers.get("content-length", "0"))
            if len(self._buffer) < end:
                return
            body = self._buffer[head_end + 4 : end]
            self._buffer = self._buffer[end:]
            method, target, _ = lines[0].split(" ", 2)
            close = headers.get("connection", "").lower() == "close"
            self._requests.value += 1
            self._answer(method, target, body, close)

    def _answer(self, method: str, target: str, body: bytes, close: bool) -> None:
        # /lat{ms}/{provider}/getBalance
        prefix, provider, rest = [*target.lstrip("/").split("/", 2), "", ""][:3]
        if (
            method != "POST"
            or rest != "getBalance"
            or not prefix.startswith("lat")
            or provider not in PROVIDERS
        ):
            self._loop.call_soon(self._send, 404, b'{"error": "not found"}', "", close)
            return
        try:
            key = json.loads(body).get("clientKey", "")
        except (ValueError, AttributeError):
            key = ""
        status, payload = balance_answer(self._demo, provider, key if isinstance(key, str) else "")
        latency = int(prefix[3:]) / 1000
        answer = json.dumps(payload).encode()
        self._loop.call_later(latency, self._send, status, answer, CONTENT_TYPE[provider], close)

    def _send(self, status: int, body: bytes, content_type: str, close: bool) -> None:
        transport = self._transport
        if transport is None:
            return
        reason = HTTPStatus(status).phrase
        connection = "Connection: close\r\n" if close else ""
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type or 'application/json'}"
            f"\r\nContent-Length: {len(body)}\r\n{connection}\r\n"
        )
        transport.write(head.encode() + body)
        if close:
            transport.close()


def serve_upstream(ready: Connection, accounts: int, connections: Any, requests: Any) -> None:
    """The fake provider's process: serve until terminated."""
    demo = FakeServer()
    for provider, key in bench_accounts(accounts):
        demo.add(provider, SimAccount(key, balance=BALANCE))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: UpstreamProtocol(demo, connections, requests), "127.0.0.1", 0, backlog=4096
        )
        ready.send(server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    asyncio.run(main())


class FakeUpstream:
    def __init__(self, accounts: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._connections: Synchronized[int] = context.Value("q", 0)
        self._requests: Synchronized[int] = context.Value("q", 0)
        parent, child = context.Pipe()
        self._process = context.Process(
            target=serve_upstream,
            args=(child, accounts, self._connections, self._requests),
            daemon=True,
            name="fake-upstream",
        )
        self._process.start()
        if not parent.poll(30):
            raise RuntimeError("the fake upstream did not start")
        self.url = f"http://127.0.0.1:{parent.recv()}"

    def base_url(self, latency_ms: int, provider: str) -> str:
        return f"{self.url}/lat{latency_ms}/{provider}"

    @property
    def connections(self) -> int:
        return self._connections.value

    @property
    def requests(self) -> int:
        return self._requests.value

    def stop(self) -> None:
        self._process.terminate()
        self._process.join(10)


# -- the exporter, in its own process ---------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def bench_accounts(accounts: int) -> list[tuple[str, str]]:
    """(provider, key) of each account."""
    return [(PROVIDERS[i % len(PROVIDERS)], f"bench-key-{i:05d}") for i in range(accounts)]


def write_config(
    directory: Path,
    upstream: FakeUpstream,
    accounts: int,
    latency_ms: int,
    cache_ttl: str,
    max_concurrency: int | None,
) -> Path:
    settings: dict[str, Any] = {"timeout": "30s", "cache_ttl": cache_ttl}
    if max_concurrency is not None:
        settings["max_concurrency"] = max_concurrency
    lines = ["global:"]
    lines += [f"  {name}: {value}" for name, value in settings.items()]
    lines.append("accounts:")
    for i, (provider, key) in enumerate(bench_accounts(accounts)):
        lines += [
            f"  - name: acct-{i:05d}",
            f"    provider: {provider}",
            f"    api_key: {key}",
            f"    base_url: {upstream.base_url(latency_ms, provider)}",
        ]
    path = directory / f"bench-{accounts}-{cache_ttl}-{max_concurrency}.yml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


# With two CPUs or more, the exporter gets one to itself and the fake upstream and the scrapers
# share the rest: in production providers and Prometheus run on other machines.
EXPORTER_CPUS: set[int] | None = None
# The interpreter that runs the exporter (--python); by default the one running this script.
EXPORTER_PYTHON = sys.executable


def pin_cpus() -> str:
    """Pin this process (and so the fake upstream) away from the exporter's CPU."""
    global EXPORTER_CPUS
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return f"{len(cpus)} CPU shared by the exporter, the fake upstream and the scrapers"
    EXPORTER_CPUS = {cpus[0]}
    os.sched_setaffinity(0, cpus[1:])
    return (
        f"exporter pinned to CPU {cpus[0]}, fake upstream and scrapers to CPU"
        f" {','.join(map(str, cpus[1:]))}"
    )


def reference_ms() -> float:
    """A fixed pure-Python workload on the exporter's CPU, in ms: how fast the
    machine is right now (a shared VM's speed drifts by tens of per cent from run to run).
    Best of six: the first rounds after an idle spell run slower."""
    own = os.sched_getaffinity(0)
    if EXPORTER_CPUS is not None:
        os.sched_setaffinity(0, EXPORTER_CPUS)
    try:
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
    finally:
        os.sched_setaffinity(0, own)


class Exporter:
    """`python -m exporter` on a config, listening on a free loopback port."""

    def __init__(self, config: Path) -> None:
        self.port = free_port()
        self._process = subprocess.Popen(
            [
                EXPORTER_PYTHON,
                "-m",
                "exporter",
                "--config.file",
                str(config),
                "--web.listen-address",
                f"127.0.0.1:{self.port}",
                "--log.level",
                "warn",
            ],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
        )
        self.pid = self._process.pid
        if EXPORTER_CPUS is not None:
            os.sched_setaffinity(self.pid, EXPORTER_CPUS)
        deadline = time.monotonic() + 30
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"the exporter exited with {self._process.returncode}")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                connection.request("GET", "/-/ready")
                if connection.getresponse().status == 200:
                    connection.close()
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def cpu_seconds(self) -> float:
        """CPU time of the exporter so far, every thread, to the nanosecond (schedstat)."""
        total = 0
        for task in Path(f"/proc/{self.pid}/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (FileNotFoundError, ProcessLookupError):
                continue  # a thread that ended meanwhile
        return total / 1e9

    def memory_mib(self) -> tuple[float, float]:
        """Resident set size now and at its peak (VmHWM), MiB."""
        found = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(value.split()[0]) * 1024 / MIB
        return found["VmRSS"], found["VmHWM"]

    def stop(self) -> None:
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(20)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


class Scraper:
    """One Prometheus-like scraper on a keep-alive connection."""

    def __init__(self, port: int) -> None:
        self._connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def scrape(self) -> tuple[float, bytes]:
        """One GET /metrics: seconds until the whole answer is in, and the decoded body."""
        started = time.perf_counter()
        self._connection.request("GET", "/metrics", headers=PROMETHEUS_HEADERS)
        response = self._connection.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - started
        if response.status != 200:
            raise RuntimeError(f"scrape answered {response.status}")
        if response.getheader("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        return elapsed, body

    def close(self) -> None:
        self._connection.close()


def accounts_up(body: bytes) -> int:
    return sum(
        1
        for line in body.splitlines()
        if line.startswith(b"apibalance_up{") and line.endswith(b" 1.0")
    )


# -- measurements -----------------------------------------------------------------------------


class Timed:
    """Scrape durations in seconds, summarised in milliseconds."""

    scrapes: list[float]

    @property
    def median_ms(self) -> float:
        return statistics.median(self.scrapes) * 1000

    @property
    def p95_ms(self) -> float:
        return percentile(self.scrapes, 0.95) * 1000


@dataclass
class Uncached(Timed):
    accounts: int
    latency_ms: int
    max_concurrency: int
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
        """The physical limit: max_concurrency requests at a time, each taking the latency."""
        return math.ceil(self.accounts / self.max_concurrency) * self.latency_ms

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
    accounts: int
    scrapes: list[float]
    cpu_seconds: float
    scrapers: int
    throughput: float
    new_connections: int
    rss_mib: float
    peak_rss_mib: float

    @property
    def cpu_ms_per_scrape(self) -> float:
        return self.cpu_seconds * 1000 / len(self.scrapes)


@dataclass
class Results:
    uncached: list[Uncached] = field(default_factory=list)
    cached: Cached | None = None
    reference_ms: list[float] = field(default_factory=list)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@contextmanager
def running_exporter(config: Path) -> Iterator[Exporter]:
    exporter = Exporter(config)
    try:
        yield exporter
    finally:
        exporter.stop()


def scrape_checked(scraper: Scraper, accounts: int) -> float:
    elapsed, body = scraper.scrape()
    up = accounts_up(body)
    if up != accounts:
        raise RuntimeError(f"only {up} of {accounts} accounts up: the benchmark is broken")
    return elapsed


def scrape_count(requested: int | None, expected_seconds: float, budget_seconds: float) -> int:
    if requested is not None:
        return requested
    return max(5, min(40, int(budget_seconds / expected_seconds)))


def measure_uncached(
    upstream: FakeUpstream,
    workdir: Path,
    accounts: int,
    latency_ms: int,
    max_concurrency: int | None,
    scrapes: int | None,
    budget_seconds: float,
) -> Uncached:
    config = write_config(workdir, upstream, accounts, latency_ms, "0s", max_concurrency)
    concurrency = max_concurrency or DEFAULT_MAX_CONCURRENCY
    rounds = math.ceil(accounts / concurrency)
    count = scrape_count(scrapes, rounds * latency_ms / 1000 + 0.01, budget_seconds)
    with running_exporter(config) as exporter:
        scraper = Scraper(exporter.port)
        # Warm-up: the first scrape opens the upstream connections, the second reuses them.
        for _ in range(2):
            scrape_checked(scraper, accounts)
        connections = upstream.connections
        cpu = exporter.cpu_seconds()
        times = [scrape_checked(scraper, accounts) for _ in range(count)]
        cpu = exporter.cpu_seconds() - cpu
        connections = upstream.connections - connections
        rss, peak = exporter.memory_mib()
        scraper.close()
    return Uncached(
        accounts,
        latency_ms,
        concurrency,
        max_concurrency is None,
        times,
        cpu,
        connections,
        rss,
        peak,
    )


def measure_cached(
    upstream: FakeUpstream,
    workdir: Path,
    accounts: int,
    scrapes: int | None,
    scrapers: int,
    duration: float,
) -> Cached:
    config = write_config(workdir, upstream, accounts, 50, "1h", accounts)
    with running_exporter(config) as exporter:
        scraper = Scraper(exporter.port)
        for _ in range(3):
            scrape_checked(scraper, accounts)
        connections = upstream.connections
        cpu = exporter.cpu_seconds()
        times = [scrape_checked(scraper, accounts) for _ in range(scrapes or 50)]
        cpu = exporter.cpu_seconds() - cpu
        scraper.close()
        throughput = concurrent_scrapes(exporter.port, accounts, scrapers, duration)
        connections = upstream.connections - connections
        rss, peak = exporter.memory_mib()
    return Cached(accounts, times, cpu, scrapers, throughput, connections, rss, peak)


def concurrent_scrapes(port: int, accounts: int, scrapers: int, duration: float) -> float:
    """Scrapes per second that `scrapers` scrapers, each waiting for its answer, get."""
    done = [0] * scrapers
    errors: list[BaseException] = []
    stop = threading.Event()
    barrier = threading.Barrier(scrapers + 1)

    def run(index: int) -> None:
        scraper = Scraper(port)
        try:
            barrier.wait()
            while not stop.is_set():
                _, body = scraper.scrape()
                if index == 0 and done[0] == 0 and accounts_up(body) != accounts:
                    raise RuntimeError("not every account is up")
                done[index] += 1
        except BaseException as error:
            errors.append(error)
            stop.set()
        finally:
            scraper.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(scrapers)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    time.sleep(duration)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return sum(done) / elapsed


def by_hand(upstream: FakeUpstream, latency_ms: int, accounts: Sequence[tuple[str, str]]) -> float:
    """Seconds for the loop a user would write: one request after another, a new connection
    each, as in the providers' examples (`requests.post(url, json=...)` without a session)."""
    started = time.perf_counter()
    for provider, key in accounts:
        request = urllib.request.Request(  # noqa: S310 - a loopback URL built here
            upstream.base_url(latency_ms, provider) + "/getBalance",
            data=json.dumps({"clientKey": key}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            data = json.load(response)
        if data.get("errorId") != 0 or data.get("balance") != BALANCE:
            raise RuntimeError("the by-hand loop got an error")
    return time.perf_counter() - started


# -- the report -------------------------------------------------------------------------------


def fmt(value: float, digits: int = 1) -> str:
    return f"{value:.{digits}f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * width for width in widths))
    lines += [
        "  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    return lines


def goals(results: Results) -> list[tuple[str, str, bool | None]]:
    """(goal, measured, met); met is None when the run did not measure it."""
    found: list[tuple[str, str, bool | None]] = []
    full = [r for r in results.uncached if not r.default_concurrency]
    for accounts, limit in GOAL_RATIO.items():
        run = next(
            (r for r in full if r.accounts == accounts and r.latency_ms == GOAL_LATENCY_MS), None
        )
        name = f"{accounts} accounts at {GOAL_LATENCY_MS} ms: median scrape <= {limit}x upstream"
        if run is None:
            found.append((name, "not run", None))
        else:
            found.append((name, f"{run.ratio:.2f}x", run.ratio <= limit))
    if full:
        worst = max(full, key=lambda r: r.cpu_ms_per_account)
        found.append(
            (
                f"exporter CPU <= {GOAL_CPU_MS_PER_ACCOUNT} ms per account per uncached scrape",
                f"{worst.cpu_ms_per_account:.3f} ms (worst: {worst.accounts} accounts,"
                f" {worst.latency_ms} ms)",
                worst.cpu_ms_per_account <= GOAL_CPU_MS_PER_ACCOUNT,
            )
        )
    cached = results.cached
    biggest = max((r.accounts for r in results.uncached), default=0)
    if cached is not None:
        name = f"cached scrape of 1000 accounts < {GOAL_CACHED_MS:.0f} ms (median)"
        if cached.accounts == 1000:
            found.append((name, f"{cached.median_ms:.1f} ms", cached.median_ms < GOAL_CACHED_MS))
        else:
            found.append((name, f"not run ({cached.accounts} accounts only)", None))
    rss_runs = [r.rss_mib for r in results.uncached if r.accounts == 1000]
    if cached is not None and cached.accounts == 1000:
        rss_runs.append(cached.rss_mib)
    name = f"RSS < {GOAL_RSS_MIB:.0f} MiB at 1000 accounts"
    if rss_runs:
        found.append((name, f"{max(rss_runs):.1f} MiB", max(rss_runs) < GOAL_RSS_MIB))
    else:
        found.append((name, f"not run (largest: {biggest} accounts)", None))
    new = [r.connections_per_scrape for r in results.uncached]
    if cached is not None:
        new.append(cached.new_connections)
    if new:
        found.append(
            (
                "zero new upstream connections per scrape after warm-up",
                f"{max(new):.2f} at most",
                max(new) == 0,
            )
        )
    return found


def exporter_versions() -> str:
    """Python and aiohttp versions of the interpreter that runs the exporter."""
    out = subprocess.run(
        [
            EXPORTER_PYTHON,
            "-c",
            "import platform, aiohttp; print(platform.python_version(), aiohttp.__version__)",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return f"Python {out[0]}, aiohttp {out[1]}"


def report(results: Results, seconds: float, placement: str) -> str:
    lines = [
        f"apibalance-exporter benchmark: {os.cpu_count()} CPUs, exporter on"
        f" {exporter_versions()}; fake upstream in its own process on loopback; scrapes sent"
        f" as Prometheus sends them (OpenMetrics, gzip); {placement}",
        "",
        "Uncached scrapes (cache_ttl 0s): every scrape asks every account",
    ]
    rows = []
    for r in results.uncached:
        hand = "-"
        speedup = "-"
        if r.by_hand_seconds is not None:
            hand = fmt(r.by_hand_seconds, 2) + (" (est.)" if r.by_hand_estimated else "")
            speedup = fmt(r.by_hand_seconds * 1000 / r.median_ms) + "x"
        rows.append(
            [
                str(r.accounts),
                str(r.latency_ms),
                f"{r.max_concurrency}{' (default)' if r.default_concurrency else ''}",
                str(len(r.scrapes)),
                fmt(r.floor_ms, 0),
                fmt(r.median_ms),
                fmt(r.p95_ms),
                fmt(r.ratio, 2) + "x",
                fmt(r.cpu_ms_per_account, 3),
                fmt(r.connections_per_scrape, 2),
                fmt(r.rss_mib),
                hand,
                speedup,
            ]
        )
    lines += table(
        [
            "accounts",
            "upstream ms",
            "max_concurrency",
            "scrapes",
            "floor ms",
            "median ms",
            "p95 ms",
            "median/upstream",
            "CPU ms/account",
            "new conns/scrape",
            "RSS MiB",
            "by hand s",
            "by hand/median",
        ],
        rows,
    )
    cached = results.cached
    if cached is not None:
        lines += ["", "Cached scrapes (cache_ttl 1h): no upstream request"]
        lines += table(
            [
                "accounts",
                "scrapes",
                "median ms",
                "p95 ms",
                "CPU ms/scrape",
                f"scrapes/s ({cached.scrapers} scrapers)",
                "new conns",
                "RSS MiB",
                "peak RSS MiB",
            ],
            [
                [
                    str(cached.accounts),
                    str(len(cached.scrapes)),
                    fmt(cached.median_ms),
                    fmt(cached.p95_ms),
                    fmt(cached.cpu_ms_per_scrape, 2),
                    fmt(cached.throughput),
                    str(cached.new_connections),
                    fmt(cached.rss_mib),
                    fmt(cached.peak_rss_mib),
                ]
            ],
        )
    lines += ["", "Goals"]
    for name, measured, met in goals(results):
        mark = "n/a" if met is None else ("met" if met else "MISSED")
        lines.append(f"  [{mark:>6}] {name}: {measured}")
    lines += [
        "",
        "Machine speed: reference workload "
        + " ms, then ".join(f"{ms:.0f}" for ms in results.reference_ms)
        + " ms (before, after; lower is faster)",
        f"benchmark took {seconds:.0f} s",
    ]
    return "\n".join(lines)


# -- main -------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--quick", action="store_true", help="10 accounts, 3 scrapes each: the CI smoke run"
    )
    parser.add_argument("--accounts", default="10,100,1000", help="comma-separated account counts")
    parser.add_argument(
        "--latencies", default="50,200", help="comma-separated upstream latencies, ms"
    )
    parser.add_argument(
        "--scrapes", type=int, help="measured scrapes per run (default: by time budget)"
    )
    parser.add_argument(
        "--budget", type=float, default=6.0, help="seconds of measured scrapes per run"
    )
    parser.add_argument(
        "--duration", type=float, default=5.0, help="seconds of concurrent cached scraping"
    )
    parser.add_argument("--scrapers", type=int, default=10, help="concurrent cached scrapers")
    parser.add_argument(
        "--by-hand-max",
        type=int,
        default=100,
        help="run the by-hand loop over at most this many accounts; beyond, estimate from it",
    )
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="the Python that runs the exporter (one with the exporter installed)",
    )
    parser.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="do not give the exporter a CPU of its own",
    )
    parser.add_argument(
        "--fail-on-miss", action="store_true", help="exit 1 when a measured goal is missed"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.accounts = "10"
        args.latencies = "50"
        args.scrapes = args.scrapes or 3
        args.duration = min(args.duration, 1.0)
    return args


def raise_open_files_limit() -> None:
    """1000 accounts at once need 1000 sockets in the exporter and in the fake upstream."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run(args: argparse.Namespace, progress: Callable[[str], None]) -> Results:
    counts = [int(n) for n in args.accounts.split(",")]
    latencies = [int(n) for n in args.latencies.split(",")]
    results = Results()
    results.reference_ms.append(reference_ms())
    upstream = FakeUpstream(max(counts))
    try:
        with tempfile.TemporaryDirectory(prefix="apibalance-bench-") as tmp:
            workdir = Path(tmp)
            for accounts in counts:
                for latency in latencies:
                    concurrencies: list[int | None] = [max(accounts, 1)]
                    if accounts > DEFAULT_MAX_CONCURRENCY:
                        concurrencies.append(None)
                    for concurrency in concurrencies:
                        progress(
                            f"uncached: {accounts} accounts, {latency} ms,"
                            f" max_concurrency {concurrency or 'default'}"
                        )
                        result = measure_uncached(
                            upstream,
                            workdir,
                            accounts,
                            latency,
                            concurrency,
                            args.scrapes,
                            args.budget,
                        )
                        if concurrency is not None:
                            progress(f"by hand: {accounts} accounts, {latency} ms")
                            asked = bench_accounts(min(accounts, args.by_hand_max))
                            seconds = by_hand(upstream, latency, asked)
                            result.by_hand_seconds = seconds * accounts / len(asked)
                            result.by_hand_estimated = len(asked) < accounts
                        results.uncached.append(result)
            cached_accounts = max(counts)
            progress(f"cached: {cached_accounts} accounts")
            results.cached = measure_cached(
                upstream, workdir, cached_accounts, args.scrapes, args.scrapers, args.duration
            )
    finally:
        upstream.stop()
    results.reference_ms.append(reference_ms())
    return results


def main(argv: Sequence[str] | None = None) -> int:
    global EXPORTER_PYTHON
    args = parse_args(argv)
    EXPORTER_PYTHON = args.python
    raise_open_files_limit()
    placement = pin_cpus() if args.pin else "no CPU pinning"
    started = time.monotonic()

    def progress(text: str) -> None:
        print(f"... {text}", file=sys.stderr, flush=True)

    results = run(args, progress)
    print(report(results, time.monotonic() - started, placement), flush=True)
    missed = [name for name, _, met in goals(results) if met is False]
    return 1 if missed and args.fail_on_miss else 0


if __name__ == "__main__":
    sys.exit(main())
