"""The landing page (`/`): what a person opening the exporter in a browser needs to see.

A summary line, then each account, those that need someone first: its balance, credits and
daily limit from its last successful collection, with how old they are (a down account's
marked stale), what each is below when it is low (judged as the alerts judge it, by
`exporter.status`) and where to top up, its status and its last error; and, above everything,
whether the running config is older than a failed reload. The page asks no provider: it shows
what the collections (the one at start-up, then every scrape) left behind. It is plain HTML,
no script; every value on it is escaped, and it never shows a key: the reload problems it
lists are the redacted ones that the log and the answer to `POST /-/reload` carry.
"""

from __future__ import annotations

import html
import time
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING

from exporter import __version__
from exporter.engine import AccountState, Engine
from exporter.metrics import ReloadStatus
from exporter.model import Reading
from exporter.settings import human_duration
from exporter.status import Shortfall, shortfalls, worst

if TYPE_CHECKING:
    from exporter.reload import ReloadFailure


def landing_page(
    engine: Engine, reload_status: ReloadStatus, reload_failure: ReloadFailure | None
) -> str:
    now = engine.clock.wall()
    seen = [_seen(state, now) for state in engine.states.values()]
    # Problems first (down, then nearly empty, then low), each group in config order.
    seen.sort(key=lambda account: _RANKS[account.status])
    rows = "\n".join(account.row for account in seen)
    return PAGE.format(
        version=_text(__version__),
        reload=_reload_notice(reload_status, reload_failure),
        summary=_summary(seen),
        source=_text(engine.config.source),
        loaded=_text(_utc(reload_status.last_success_timestamp)),
        rows=rows or '<tr><td colspan="8">no accounts configured</td></tr>',
    )


@dataclass(frozen=True, slots=True)
class _Seen:
    status: str  # down, nearly empty, low, pending, up
    row: str


# The order of the page: what needs someone first.
_RANKS = {"down": 0, "nearly empty": 1, "low": 2, "pending": 3, "up": 4}


def _summary(seen: list[_Seen]) -> str:
    counts = {status: sum(account.status == status for account in seen) for status in _RANKS}
    low = counts["low"] + counts["nearly empty"]
    parts = [f"{len(seen)} account{'s' if len(seen) != 1 else ''}"]
    parts.append(f'<span class="{"down" if counts["down"] else "ok"}">{counts["down"]} down</span>')
    parts.append(f'<span class="{"low" if low else "ok"}">{low} low</span>')
    if counts["pending"]:
        parts.append(f'<span class="pending">{counts["pending"]} not collected yet</span>')
    parts.append(f'<span class="up">{counts["up"]} up</span>')
    return ", ".join(parts)


def _seen(state: AccountState, now: float) -> _Seen:
    account = state.account
    last = state.last
    reading = state.last_reading
    found: list[Shortfall] = []
    if reading is not None and state.last_success_wall is not None:
        age = max(0.0, now - state.last_success_wall)
        found = shortfalls(
            account, reading, currency=state.currency, age=age, peaks=state.peaks, wall=now
        )
    if last is None:
        status = "pending"
    elif not last.ok:
        status = "down"
    else:
        level = worst(found)
        status = "up" if level is None else level.word
    error = (
        ""
        if last is None or last.error is None
        else _text(f"{last.error.reason.value}: {last.error.cause}")
    )
    # A down account's figures are the last ones read: shown, but not as current.
    stale = status == "down"
    if reading is None or state.last_success_wall is None:
        never = "not collected yet" if last is None else "never collected"
        figures = f'<td class="none">{never}</td><td></td><td></td><td></td>'
    else:
        age = max(0.0, now - state.last_success_wall)
        marks = [] if stale else found
        cell = '<td class="stale">' if stale else "<td>"
        as_of = _text(_age(age))
        if stale:
            as_of = f'<span class="stale-tag">stale</span> {as_of}'
        # The time itself on hovering: one line a row keeps 50 accounts on a screen or two.
        at = _text(_utc(state.last_success_wall))
        figures = (
            f"{cell}{_balance(reading, marks)}</td>"
            f"{cell}{_credits(reading, marks)}</td>"
            f"{cell}{_daily_limit(reading, age, marks)}</td>"
            f'{cell[:-1]} title="{at}">{as_of}</td>'
        )
    probe = "/probe?account=" + urllib.parse.quote(account.name, safe="")
    if status == "down":
        # What the account was asked and answered, for finding out why.
        error += f' <a href="{_text(probe)}&amp;debug=true">debug</a>'
    pay = ""
    if account.top_up_url is not None and status in ("low", "nearly empty"):
        pay = f'<br><a class="pay" href="{_text(account.top_up_url)}">top up</a>'
    row = (
        f'<tr class="row-{_CLASSES[status]}"><td><a href="{_text(probe)}">{_text(account.name)}</a>'
        f"</td><td>{_text(account.provider_type)}</td>"
        f'<td class="{_CLASSES[status]}">{status}{pay}</td>{figures}<td>{error}</td></tr>'
    )
    return _Seen(status, row)


_CLASSES = {
    "down": "down",
    "nearly empty": "empty",
    "low": "low",
    "pending": "pending",
    "up": "up",
}


def _marked(text: str, shortfall: Shortfall | None, threshold: str) -> str:
    """A figure, and what it is below when it is short."""
    if shortfall is None:
        return _text(text)
    return (
        f'<span class="{_CLASSES[shortfall.word]}">{_text(text)} '
        f"<small>({_text(shortfall.word)}: below {_text(threshold)})</small></span>"
    )


def _balance(reading: Reading, found: list[Shortfall]) -> str:
    money_left = reading.money()
    if money_left is None:
        return ""
    amount, currency = money_left
    short = next((s for s in found if s.what == "money"), None)
    below = "" if short is None else money(short.below, currency)
    return _marked(money(amount, currency), short, below)


def _credits(reading: Reading, found: list[Shortfall]) -> str:
    """A line per credit type, its pools side by side: `standard: one_time 5,000 · recurrent
    20,000`, and `credits: team 1,000 of 500,000` where the plan's allowance is known."""
    by_subject = {s.subject: s for s in found if s.what == "credits"}
    by_type: dict[str, list[str]] = {}
    for credit in reading.credits:
        text = f"{credit.pool} {number(credit.value)}"
        if credit.allowance is not None:
            text += f" of {number(credit.allowance)}"
        short = by_subject.pop(f"{credit.credit_type} ({credit.pool})", None)
        marked = _marked(text, short, "" if short is None else number(short.below))
        by_type.setdefault(credit.credit_type, []).append(marked)
    lines = [f"{_text(kind)}: {' · '.join(pools)}" for kind, pools in by_type.items()]
    # Thresholds on a credit type's pools together: a line of their own when short.
    for subject, short in by_subject.items():
        lines.append(_marked(f"{subject}: {number(short.left)}", short, number(short.below)))
    return "<br>".join(lines)


def _daily_limit(reading: Reading, age: float, found: list[Shortfall]) -> str:
    if reading.daily_limit_remaining is None:
        return ""
    text = f"{number(reading.daily_limit_remaining)} left"
    short = next((s for s in found if s.what == "daily limit"), None)
    marked = _marked(text, short, "" if short is None else number(short.below))
    left = reading.daily_limit_resets_in(age)
    if left is None:
        return marked
    resets = f"resets in {human_duration(left)}" if left > 0 else "reset due"
    return f"{marked}<br><small>{resets}</small>"


def _reload_notice(status: ReloadStatus, failure: ReloadFailure | None) -> str:
    if status.successful or failure is None:
        return ""
    problems = "\n".join(f"<li>{_text(line)}</li>" for line in failure.problems)
    return (
        '<div class="failed" role="alert">\n'
        "<h2>Config reload failed</h2>\n"
        f"<p>The reload at {_text(_utc(failure.at))} failed, so this exporter still runs the "
        f"config loaded at {_text(_utc(status.last_success_timestamp))}: changes made since "
        "are not in force. Fix these problems and reload again:</p>\n"
        f"<ul>\n{problems}\n</ul>\n</div>"
    )


def money(amount: float, currency: str) -> str:
    """`1,234.50 USD`: two decimals at least, four at most (captcha tasks cost fractions of
    a cent)."""
    text = f"{amount:,.4f}"
    while text.endswith("0") and len(text) - text.index(".") > 3:
        text = text[:-1]
    return f"{text} {currency}"


def number(value: float) -> str:
    """`85,000` or `12.5`: a count or quantity, thousands separated, no trailing zeros."""
    text = f"{value:,.4f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def _age(seconds: float) -> str:
    return "just now" if seconds < 1 else f"{human_duration(seconds)} ago"


def _utc(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))


def _text(value: str) -> str:
    return html.escape(value, quote=True)


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>apibalance-exporter</title>
<style>
body {{ font-family: system-ui, sans-serif; font-size: 14px; margin: 1.5em 2em; color: #1f2328; }}
h1 {{ margin-bottom: 0.2em; }} h2 {{ margin: 1em 0 0.4em; }}
.summary {{ font-size: 1.25em; font-weight: 600; }}
table {{ border-collapse: collapse; width: 100%; table-layout: fixed; }}
td, th {{ border-bottom: 1px solid #d8dee4; padding: 0.25em 0.6em; text-align: left;
  vertical-align: top; }}
th {{ position: sticky; top: 0; background: #f6f8fa; border-bottom: 2px solid #d0d7de; }}
small {{ color: #57606a; white-space: nowrap; }}
td {{ overflow-wrap: break-word; }}

.up {{ color: #1a7f37; }} .ok {{ color: #57606a; }}
.down, .empty {{ color: #cf222e; font-weight: 600; }} .low {{ color: #bc4c00; font-weight: 600; }}
.pending, .none {{ color: #9a6700; }}
.down small, .empty small, .low small {{ color: inherit; font-weight: normal; }}
tr.row-down, tr.row-empty {{ background: #fff5f5; }} tr.row-low {{ background: #fff8f0; }}
td.stale {{ color: #8c959f; font-style: italic; }}
.stale-tag {{ font-style: normal; font-size: 0.8em; border: 1px solid #8c959f; border-radius: 3px;
  padding: 0 0.3em; }}
.pay {{ font-weight: normal; font-size: 0.9em; }}
.failed {{ border: 2px solid #cf222e; background: #fff1f0; padding: 0 1em; margin-bottom: 1em; }}
</style>
</head>
<body>
<h1>apibalance-exporter</h1>
<p>Version {version}. Prometheus exporter for the money and quota left on paid API accounts.</p>
{reload}
<h2>Accounts</h2>
<p class="summary">{summary}</p>
<p>Config {source}, loaded at {loaded}. Accounts that need someone come first: down, then
nearly empty, then low, by the thresholds and defaults of the shipped alerts. Figures are from
each account's last successful collection; a down account's are marked stale. This page asks no
provider, <a href="/metrics">/metrics</a> collects now.</p>
<table>
<colgroup><col style="width: 13%"><col style="width: 10%"><col style="width: 9%">
<col style="width: 13%"><col style="width: 25%"><col style="width: 10%"><col style="width: 7%">
<col style="width: 13%"></colgroup>
<thead><tr><th>account</th><th>provider</th><th>status</th><th>balance</th><th>credits</th>
<th>daily limit</th><th>as of</th><th>last error</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
<h2>Endpoints</h2>
<ul>
<li><a href="/metrics">/metrics</a>: every account, collected now</li>
<li>/probe?account=NAME: one account (the links above)</li>
<li><a href="/-/healthy">/-/healthy</a> and <a href="/-/ready">/-/ready</a></li>
</ul>
</body>
</html>
"""
