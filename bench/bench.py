"""Benchmark: a scrape costs the slowest upstream and little more (docs/performance.md).

    make bench                      # the full run (several minutes on 2 cores)
    make bench ARGS=--quick         # 10 accounts, a few scrapes: the CI smoke run
    make bench ARGS="--baseline ../main/.venv/bin/python"   # this tree against another

The parts, one module each:

- `fake_upstream`: the fake provider, in its own process on loopback;
- `exporter_process`: the exporter as its own process (`python -m exporter`) on a generated
  config of N accounts pointing at it, its CPU (every thread, from schedstat) and RSS read
  from /proc. With two CPUs or more it is pinned to one and everything else to the others:
  in production the providers and Prometheus are elsewhere;
- `scrapers`: scraping it over HTTP the way Prometheus does (same Accept and
  Accept-Encoding headers), and the "by hand" baseline, what a user copying a provider's
  example would run: a loop of sequential requests, one new connection each (urllib here, as
  `requests.post` without a session), in the same run against the same server;
- `measurements`: uncached and cached scrapes; with `--baseline`, the exporters of both
  trees run side by side and are scraped in turn, so that the shared machine's changes of
  speed meet both alike;
- `report`: the tables and the goals.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from exporter_process import Build, Placement
from fake_upstream import MAX_HOSTS, FakeUpstream, bench_accounts
from measurements import (
    Bounds,
    Results,
    Run,
    measure_cached,
    measure_probed,
    measure_uncached,
    reference_ms,
)
from report import goals, report
from scrapers import by_hand


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
        "--hosts",
        type=int,
        default=20,
        choices=range(1, MAX_HOSTS + 1),
        metavar=f"1-{MAX_HOSTS}",
        help="hosts the accounts are spread over in the runs on the default concurrency",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=5.0,
        help="seconds of concurrent cached scraping before the soak",
    )
    parser.add_argument(
        "--soak-scrapes",
        type=int,
        default=2000,
        help="concurrent cached scrapes over which memory must stay flat",
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
        "--baseline",
        metavar="PYTHON",
        help="also measure the exporter this Python has installed (another checkout's"
        " .venv/bin/python), interleaved with the one under test",
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
        args.soak_scrapes = min(args.soak_scrapes, 200)
    return args


def raise_open_files_limit() -> None:
    """1000 accounts at once need 1000 sockets in the exporter and in the fake upstream."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run(
    args: argparse.Namespace,
    builds: list[Build],
    placement: Placement,
    progress: Callable[[str], None],
) -> Results:
    counts = [int(n) for n in args.accounts.split(",")]
    latencies = [int(n) for n in args.latencies.split(",")]
    results = Results(builds)
    results.reference_ms.append(reference_ms(placement))
    # The smallest bound any build puts on accounts of one host when the config sets none.
    default_bound = min(build.defaults.per_host or build.defaults.total for build in builds)
    upstream = FakeUpstream(max(counts), args.hosts)
    try:
        with tempfile.TemporaryDirectory(prefix="apibalance-bench-") as tmp:
            measured = Run(builds, upstream, Path(tmp), placement)
            for accounts in counts:
                for latency in latencies:
                    # Every account at once on one host; then, where a default bounds them,
                    # the defaults, the accounts spread over several hosts.
                    plans = [(Bounds(max(accounts, 1), max(accounts, 1)), 1)]
                    if accounts > default_bound:
                        plans.append((Bounds(None, None), args.hosts))
                    for bounds, hosts in plans:
                        concurrency = "default" if bounds.default else str(bounds.total)
                        progress(
                            f"uncached: {accounts} accounts, {latency} ms, {hosts} hosts,"
                            f" max_concurrency {concurrency}"
                        )
                        found = measure_uncached(
                            measured,
                            accounts,
                            latency,
                            bounds,
                            hosts,
                            args.scrapes,
                            args.budget,
                        )
                        if not bounds.default:
                            progress(f"by hand: {accounts} accounts, {latency} ms")
                            asked = bench_accounts(min(accounts, args.by_hand_max))
                            seconds = by_hand(upstream, latency, asked) * accounts / len(asked)
                            for result in found:
                                result.by_hand_seconds = seconds
                                result.by_hand_estimated = len(asked) < accounts
                        results.uncached += found
            for latency in latencies:
                progress(f"probed: {max(counts)} accounts, {latency} ms")
                results.probed += measure_probed(
                    measured, max(counts), latency, args.scrapes, args.budget
                )
            cached_accounts = max(counts)
            progress(f"cached: {cached_accounts} accounts")
            results.cached = measure_cached(
                measured,
                cached_accounts,
                args.scrapes,
                args.scrapers,
                args.duration,
                args.soak_scrapes,
            )
    finally:
        upstream.stop()
    results.reference_ms.append(reference_ms(placement))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    builds = [Build.of("this tree", args.python)]
    if args.baseline:
        builds.append(Build.of("baseline", args.baseline))
    raise_open_files_limit()
    placement = Placement()
    where = placement.pin() if args.pin else "no CPU pinning"
    started = time.monotonic()

    def progress(text: str) -> None:
        print(f"... {text}", file=sys.stderr, flush=True)

    results = run(args, builds, placement, progress)
    print(report(results, time.monotonic() - started, where), flush=True)
    missed = [name for name, _, met in goals(results.of(builds[0])) if met is False]
    return 1 if missed and args.fail_on_miss else 0


if __name__ == "__main__":
    sys.exit(main())
