"""The report: tables of what was measured, and the goals (docs/performance.md) met or not."""

from __future__ import annotations

import os
from collections.abc import Sequence

from measurements import Results, Uncached

# The goals in docs/performance.md.
GOAL_RATIO = {100: 1.10, 1000: 1.5}  # median scrape / upstream latency, at 200 ms
GOAL_LATENCY_MS = 200
GOAL_CPU_MS_PER_ACCOUNT = 0.3
GOAL_CACHED_MS = 30.0
GOAL_RSS_MIB = {10: 45.0, 1000: 100.0}
# Over the soak's scrapes, after the heap has grown to what the concurrency needs.
GOAL_RSS_GROWTH_MIB = 2.0


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
    """(goal, measured, met) of one build; met is None when the run did not measure it."""
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
    cached = results.cached[0] if results.cached else None
    name = f"cached scrape of 1000 accounts < {GOAL_CACHED_MS:.0f} ms (median)"
    if cached is not None and cached.accounts == 1000:
        found.append((name, f"{cached.median_ms:.1f} ms", cached.median_ms < GOAL_CACHED_MS))
    elif cached is not None:
        found.append((name, f"not run ({cached.accounts} accounts only)", None))
    for accounts, limit in GOAL_RSS_MIB.items():
        rss_runs = [r.rss_mib for r in results.uncached if r.accounts == accounts]
        if cached is not None and cached.accounts == accounts:
            rss_runs.append(cached.rss_mib)
        name = f"RSS <= {limit:.0f} MiB at {accounts} accounts"
        if rss_runs:
            found.append((name, f"{max(rss_runs):.1f} MiB", max(rss_runs) <= limit))
        else:
            found.append((name, "not run", None))
    if cached is not None:
        found.append(
            (
                f"RSS flat over {cached.soak_scrapes} cached scrapes"
                f" (grows < {GOAL_RSS_GROWTH_MIB:.0f} MiB)",
                f"{cached.rss_growth_mib:+.1f} MiB",
                cached.rss_growth_mib < GOAL_RSS_GROWTH_MIB,
            )
        )
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


def bounds_cells(r: Uncached) -> list[str]:
    default = " (default)" if r.default_concurrency else ""
    per_host = "-" if r.per_host is None else str(r.per_host)
    return [f"{r.max_concurrency}{default}", per_host]


def report(results: Results, seconds: float, placement: str) -> str:
    compare = len(results.builds) > 1
    versions = "; ".join(
        f"{build.name}: {build.versions()}, {build.root}" if compare else build.versions()
        for build in results.builds
    )
    lines = [
        f"apibalance-exporter benchmark: {os.cpu_count()} CPUs, exporter on {versions}; fake"
        " upstream in its own process on loopback; scrapes sent as Prometheus sends them"
        f" (OpenMetrics, gzip); {placement}",
    ]
    if compare:
        lines.append(
            "Builds compared interleaved: one scrape of each in turn, on the same accounts"
        )
    lines += ["", "Uncached scrapes (cache_ttl 0s): every scrape asks every account"]
    rows = []
    for r in results.uncached:
        hand = "-"
        speedup = "-"
        if r.by_hand_seconds is not None:
            hand = fmt(r.by_hand_seconds, 2) + (" (est.)" if r.by_hand_estimated else "")
            speedup = fmt(r.by_hand_seconds * 1000 / r.median_ms) + "x"
        rows.append(
            ([r.build] if compare else [])
            + [str(r.accounts), str(r.latency_ms), *bounds_cells(r), str(r.hosts)]
            + [
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
        (["build"] if compare else [])
        + [
            "accounts",
            "upstream ms",
            "max_concurrency",
            "per host",
            "hosts",
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
    if results.probed:
        lines += [
            "",
            "Probed scrapes (cache_ttl 0s): /probe?account=..., one account a scrape, each in"
            " turn, as a Prometheus job sharing the accounts out as targets asks them",
        ]
        lines += table(
            (["build"] if compare else [])
            + [
                "accounts",
                "upstream ms",
                "scrapes",
                "median ms",
                "p95 ms",
                "median/upstream",
                "CPU ms/probe",
                "upstream requests/probe",
            ],
            [
                ([p.build] if compare else [])
                + [
                    str(p.accounts),
                    str(p.latency_ms),
                    str(len(p.scrapes)),
                    fmt(p.median_ms),
                    fmt(p.p95_ms),
                    fmt(p.ratio, 2) + "x",
                    fmt(p.cpu_ms_per_probe, 3),
                    fmt(p.requests_per_probe, 2),
                ]
                for p in results.probed
            ],
        )
    if results.cached:
        scrapers = results.cached[0].scrapers
        lines += ["", "Cached scrapes (cache_ttl 1h): no upstream request"]
        lines += table(
            (["build"] if compare else [])
            + [
                "accounts",
                "scrapes",
                "median ms",
                "p95 ms",
                "CPU ms/scrape",
                f"scrapes/s ({scrapers} scrapers)",
                "soak scrapes",
                "RSS MiB before soak",
                "RSS MiB",
                "peak RSS MiB",
                "new conns",
            ],
            [
                ([c.build] if compare else [])
                + [
                    str(c.accounts),
                    str(len(c.scrapes)),
                    fmt(c.median_ms),
                    fmt(c.p95_ms),
                    fmt(c.cpu_ms_per_scrape, 2),
                    fmt(c.throughput),
                    str(c.soak_scrapes),
                    fmt(c.rss_before_soak_mib),
                    fmt(c.rss_mib),
                    fmt(c.peak_rss_mib),
                    str(c.new_connections),
                ]
                for c in results.cached
            ],
        )
    for build in results.builds:
        lines += ["", f"Goals ({build.name})" if compare else "Goals"]
        for name, measured, met in goals(results.of(build)):
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
