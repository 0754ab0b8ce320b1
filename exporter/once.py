"""`--collect.once`: every account collected once, as a table, to try a config before trusting it.

    ACCOUNT  PROVIDER  UP  REASON  BALANCE                              CREDITS
    serp     serpapi   1           -                                    searches/total=328 LOW ...
    sms      twilio    1           0.05 USD NEARLY EMPTY (below 1 USD)  -
    voice    telnyx    0   auth    -                                    -

(then the DAILY LIMIT and DURATION columns).

What is low is marked as the landing page and the alerts mark it, with the threshold it is
below (`LOW (below 500)`).

Only what the metrics would show: values, reasons and the cause the exporter wrote, never a
URL or a key.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from exporter.config import Config
from exporter.debug import Debugged, debug_all, number
from exporter.engine import Engine, Snapshot
from exporter.settings import human_duration
from exporter.status import Shortfall, shortfalls
from exporter.upstream import Upstream

COLUMNS = ("ACCOUNT", "PROVIDER", "UP", "REASON", "BALANCE", "CREDITS", "DAILY LIMIT", "DURATION")


async def collect_once(config: Config, *, debug: bool = False) -> list[Debugged]:
    """Every account collected once; with `debug`, each collection records its steps."""
    upstream = Upstream(
        config.global_settings.max_concurrency, config.global_settings.max_concurrency_per_host
    )
    try:
        engine = Engine(config, upstream)
        if debug:
            return await debug_all(engine)
        return [Debugged(snapshot, None) for snapshot in await engine.collect()]
    finally:
        await upstream.close()


def rows(snapshot: Snapshot) -> list[tuple[str, ...]]:
    """The account's line, and a line more for each credit series after the first.

    What is low is marked as the landing page and the alerts mark it (exporter.status); one
    collection has no history, so only thresholds, allowances and the 1 USD default apply.
    """
    outcome = snapshot.outcome
    reading = outcome.reading
    balance = daily = "-"
    credits = ["-"]
    if reading is not None:
        found = shortfalls(
            snapshot.account,
            reading,
            currency=snapshot.currency,
            age=snapshot.age,
            peaks=None,
            wall=time.time(),
        )
        short = {(s.what, s.subject): s for s in found}
        money = reading.money()
        if money is not None:
            balance = f"{number(money[0])} {money[1]}"
            balance += _mark(short.pop(("money", money[1]), None), f" {money[1]}")
        if reading.credits:
            credits = [
                f"{c.credit_type}/{c.pool}={number(c.value)}"
                + _mark(short.pop(("credits", f"{c.credit_type} ({c.pool})"), None))
                for c in reading.credits
            ]
        # A credit type's pools together, below its threshold: a line of its own.
        credits += [
            f"{s.subject.removesuffix(' (all pools)')}/all={number(s.left)}{_mark(s)}"
            for (what, _), s in short.items()
            if what == "credits"
        ]
        if reading.daily_limit_remaining is not None:
            daily = number(reading.daily_limit_remaining)
            daily += _mark(short.pop(("daily limit", "requests today"), None))
            reset_in = reading.daily_limit_resets_in(snapshot.age)
            if reset_in is not None:
                daily += f" (resets in {human_duration(reset_in)})"
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


def _mark(shortfall: Shortfall | None, unit: str = "") -> str:
    """` LOW (below 500)`, ` NEARLY EMPTY (below 1 USD)`: what the alerts would say."""
    if shortfall is None:
        return ""
    return f" {shortfall.word.upper()} (below {number(shortfall.below)}{unit})"


def table(snapshots: Sequence[Snapshot]) -> str:
    lines = [COLUMNS, *(line for snapshot in snapshots for line in rows(snapshot))]
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def all_up(snapshots: Sequence[Snapshot]) -> bool:
    return all(snapshot.outcome.ok for snapshot in snapshots)
