"""The benchmark's smoke run (`bench/bench.py --quick`, 10 accounts) still works and prints
every part of its table. Timings are the benchmark's business, not asserted here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Starts the fake provider and the exporter as processes and scrapes them for a while.
pytestmark = pytest.mark.integration


def quick_benchmark(*args: str) -> str:
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench.py"), "--quick", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_quick_benchmark_prints_the_whole_table() -> None:
    out = quick_benchmark()
    for heading in (
        "apibalance-exporter benchmark:",
        "Uncached scrapes (cache_ttl 0s)",
        "Cached scrapes (cache_ttl 1h)",
        "Probed scrapes (cache_ttl 0s)",
        "Goals",
    ):
        assert heading in out, heading
    for column in (
        "median ms",
        "p95 ms",
        "median/upstream",
        "CPU ms/account",
        "new conns/scrape",
        "RSS MiB",
        "by hand s",
        "by hand/median",
        "scrapes/s (10 scrapers)",
        "CPU ms/scrape",
        "soak scrapes",
        "RSS MiB before soak",
        "CPU ms/probe",
        "upstream requests/probe",
    ):
        assert column in out, column
    # The uncached row: 10 accounts at 50 ms, max_concurrency 10, and the by-hand ratio.
    uncached = row_after(out, "Uncached")
    assert uncached[:3] == ["10", "50", "10"]
    assert uncached[-1].endswith("x")
    assert row_after(out, "Cached")[0] == "10"
    # Each probe asked its one account upstream: nothing came from a cache.
    probed = row_after(out, "Probed")
    assert probed[:2] == ["10", "50"]
    assert probed[-1] == "1.00"
    for goal in (
        "100 accounts at 200 ms",
        "1000 accounts at 200 ms",
        "exporter CPU <= 0.3 ms per account",
        "cached scrape of 1000 accounts",
        "RSS <= 45 MiB at 10 accounts",
        "RSS <= 100 MiB at 1000 accounts",
        "RSS flat over",
        "zero new upstream connections per scrape",
    ):
        assert goal in out, goal


def row_after(out: str, title: str) -> list[str]:
    """The first data row of the table under the line starting with `title`."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    # title, column names, dashes, then the rows
    return lines[start + 3].split()


def test_a_baseline_is_measured_beside_this_tree() -> None:
    # The same interpreter twice is enough to see both builds scraped and reported.
    out = quick_benchmark("--baseline", sys.executable)
    assert "Builds compared interleaved" in out
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Uncached"))
    assert lines[start + 3].split()[:3] == ["this", "tree", "10"]
    assert lines[start + 4].split()[:2] == ["baseline", "10"]
    start = next(i for i, line in enumerate(lines) if line.startswith("Probed"))
    assert lines[start + 3].split()[:3] == ["this", "tree", "10"]
    assert lines[start + 4].split()[:2] == ["baseline", "10"]
    assert "Goals (this tree)" in out
    assert "Goals (baseline)" in out
