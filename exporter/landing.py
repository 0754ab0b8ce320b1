"""The landing page (`/`): what a person opening the exporter in a browser needs to see.

Each account's balance, credits and daily limit from its last successful collection, with how
old they are, its status and its last error; and, above everything, whether the running config
is older than a failed reload. The page asks no provider: it shows what the collections (the
one at start-up, then every scrape) left behind. It is plain HTML, no script; every value on it
is escaped, and it never shows a key: the reload problems it lists are the redacted ones that
the log and the answer to `POST /-/reload` carry.
"""

from __future__ import annotations

import html
import time
import urllib.parse
from dataclasses import dataclass

from exporter import __version__
from exporter.config import Account
from exporter.engine import AccountState, Engine
from exporter.metrics import ReloadStatus
from exporter.model import Reading
from exporter.settings import human_duration


@dataclass(frozen=True, slots=True)
class ReloadFailure:
    """The last failed reload, while the config it would have replaced still runs."""

    at: float  # unix time
    problems: tuple[str, ...]  # redacted (logs.redact)


def landing_page(
    engine: Engine, reload_status: ReloadStatus, reload_failure: ReloadFailure | None
) -> str:
    now = engine.clock.wall()
    rows = "\n".join(_row(state, now) for state in engine.states.values())
    return PAGE.format(
        version=_text(__version__),
        reload=_reload_notice(reload_status, reload_failure),
        source=_text(engine.config.source),
        loaded=_text(_utc(reload_status.last_success_timestamp)),
        rows=rows or '<tr><td colspan="8">no accounts configured</td></tr>',
    )


def _row(state: AccountState, now: float) -> str:
    account = state.account
    last = state.last
    status = "pending" if last is None else ("up" if last.ok else "down")
    error = (
        ""
        if last is None or last.error is None
        else _text(f"{last.error.reason.value}: {last.error.cause}")
    )
    reading = state.last_reading
    if reading is None or state.last_success_wall is None:
        never = "not collected yet" if last is None else "never collected"
        figures = f'<td class="none">{never}</td><td></td><td></td><td></td>'
    else:
        age = max(0.0, now - state.last_success_wall)
        figures = (
            f"<td>{_balance(reading, account)}</td>"
            f"<td>{_lines(_credits(reading))}</td>"
            f"<td>{_lines(_daily_limit(reading, age))}</td>"
            f"<td>{_text(_age(age))}<br><small>{_text(_utc(state.last_success_wall))}</small></td>"
        )
    probe = "/probe?account=" + urllib.parse.quote(account.name, safe="")
    if status == "down":
        # What the account was asked and answered, for finding out why.
        error += f' <a href="{_text(probe)}&amp;debug=true">debug</a>'
    return (
        f'<tr><td><a href="{_text(probe)}">{_text(account.name)}</a></td>'
        f"<td>{_text(account.provider_type)}</td>"
        f'<td class="{status}">{status}</td>{figures}<td>{error}</td></tr>'
    )


def _balance(reading: Reading, account: Account) -> str:
    money_left = reading.money()
    if money_left is None:
        return ""
    amount, currency = money_left
    text = _text(money(amount, currency))
    low = account.low_balance_in(currency)
    # A threshold in another currency than the answer's says nothing about this amount.
    low_below = low[0] if low is not None and low[1] == currency else None
    if low_below is not None and amount < low_below:
        return f'<span class="low">{text} (low: below {_text(money(low_below, currency))})</span>'
    return text


def _credits(reading: Reading) -> list[str]:
    return [
        f"{credit.credit_type} ({credit.pool}): {number(credit.value)}"
        for credit in reading.credits
    ]


def _daily_limit(reading: Reading, age: float) -> list[str]:
    if reading.daily_limit_remaining is None:
        return []
    text = f"{number(reading.daily_limit_remaining)} left"
    left = reading.daily_limit_resets_in(age)
    if left is not None:
        text += f", resets in {human_duration(left)}" if left > 0 else ", reset due"
    return [text]


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


def _lines(lines: list[str]) -> str:
    return "<br>".join(_text(line) for line in lines)


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>apibalance-exporter</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 0.3em 0.8em; text-align: left; vertical-align: top; }}
small {{ color: #57606a; white-space: nowrap; }}
td:first-child {{ white-space: nowrap; }}
.up {{ color: #1a7f37; }} .down, .low {{ color: #cf222e; }} .pending, .none {{ color: #9a6700; }}
.failed {{ border: 2px solid #cf222e; background: #fff1f0; padding: 0 1em; margin-bottom: 1em; }}
</style>
</head>
<body>
<h1>apibalance-exporter</h1>
<p>Version {version}. Prometheus exporter for the money and quota left on paid API accounts.</p>
{reload}
<h2>Accounts</h2>
<p>Config {source}, loaded at {loaded}. Figures are from each account's last successful
collection, and stay here (with their age) when a later one fails; this page asks no provider,
<a href="/metrics">/metrics</a> collects now.</p>
<table>
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
