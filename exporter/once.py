"""`--collect.once`: every account collected once, as a table, to try a config before trusting it.

    ACCOUNT   PROVIDER  UP  REASON  BALANCE    CREDITS                  DAILY LIMIT  DURATION
    serp      serpapi   1           -          searches/plan=4250       -            0.21s
    sms       twilio    0   auth    -          -                        -            0.08s

Only what the metrics would show: values, reasons and the cause the exporter wrote, never a
URL or a key.
"""

from __future__ import annotations

from collections.abc import Sequence

from exporter.config import Config
from exporter.engine import Engine, Snapshot
from exporter.upstream import Upstream

COLUMNS = ("ACCOUNT", "PROVIDER", "UP", "REASON", "BALANCE", "CREDITS", "DAILY LIMIT", "DURATION")


async def collect_once(config: Config) -> list[Snapshot]:
    upstream = Upstream(config.global_settings.max_concurrency)
    try:
        return await Engine(config, upstream).collect()
    finally:
        await upstream.close()


def _number(value: float) -> str:
    # As precise as the service answered (to a millionth), without trailing zeros.
    return f"{value:,.6f}".rstrip("0").rstrip(".")


def rows(snapshot: Snapshot) -> list[tuple[str, ...]]:
    """The account's line, and a line more for each credit series after the first."""
    outcome = snapshot.outcome
    reading = outcome.reading
    balance = daily = "-"
    credits = ["-"]
    if reading is not None:
        money = reading.money()
        if money is not None:
            balance = f"{_number(money[0])} {money[1]}"
        if reading.credits:
            credits = [f"{c.credit_type}/{c.pool}={_number(c.value)}" for c in reading.credits]
        if reading.daily_limit_remaining is not None:
            daily = _number(reading.daily_limit_remaining)
            if reading.daily_limit_reset_seconds is not None:
                daily += f" (resets in {reading.daily_limit_reset_seconds:.0f}s)"
    first = (
        snapshot.account.name,
        snapshot.account.provider_type,
        "1" if outcome.ok else "0",
        "" if outcome.error is None else f"{outcome.error.reason.value}: {outcome.error.cause}",
        balance,
        credits[0],
        daily,
        f"{outcome.duration:.2f}s",
    )
    return [first, *(("", "", "", "", "", more, "", "") for more in credits[1:])]


def table(snapshots: Sequence[Snapshot]) -> str:
    lines = [COLUMNS, *(line for snapshot in snapshots for line in rows(snapshot))]
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def all_up(snapshots: Sequence[Snapshot]) -> bool:
    return all(snapshot.outcome.ok for snapshot in snapshots)
