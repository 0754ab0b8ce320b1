"""Who asks: Prometheus-like scrapers of the exporter, and the loop a user would write by hand."""

from __future__ import annotations

import gzip
import http.client
import json
import threading
import time
import urllib.request
from collections.abc import Sequence

from fake_upstream import BALANCE, FakeUpstream

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


class Scraper:
    """One Prometheus-like scraper on a keep-alive connection."""

    def __init__(self, port: int) -> None:
        self._connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def scrape(self, path: str = "/metrics") -> tuple[float, bytes]:
        """One GET of `path`: seconds until the whole answer is in, and the decoded body."""
        started = time.perf_counter()
        self._connection.request("GET", path, headers=PROMETHEUS_HEADERS)
        response = self._connection.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - started
        if response.status != 200:
            raise RuntimeError(f"scrape answered {response.status}")
        if response.getheader("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        return elapsed, body

    def checked(self, accounts: int) -> float:
        """One scrape that must show every account up: seconds it took."""
        elapsed, body = self.scrape()
        up = accounts_up(body)
        if up != accounts:
            raise RuntimeError(f"only {up} of {accounts} accounts up: the benchmark is broken")
        return elapsed

    def probe(self, account: str) -> float:
        """One GET /probe of `account`, which must be up: seconds it took."""
        elapsed, body = self.scrape(f"/probe?account={account}")
        if accounts_up(body) != 1:
            raise RuntimeError(f"{account} is not up: the benchmark is broken")
        return elapsed

    def close(self) -> None:
        self._connection.close()


def accounts_up(body: bytes) -> int:
    return sum(
        1
        for line in body.splitlines()
        if line.startswith(b"apibalance_up{") and line.endswith(b" 1.0")
    )


def concurrent_scrapes(
    port: int, accounts: int, scrapers: int, duration: float, total: int | None = None
) -> tuple[int, float]:
    """Scrapes that `scrapers` scrapers, each waiting for its answer, get in `duration`
    seconds (or until `total` are done, if that comes first), and the seconds it took."""
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
                if total is not None and sum(done) >= total:
                    stop.set()
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
    stop.wait(duration)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return sum(done), elapsed


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
