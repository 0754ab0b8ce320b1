"""One collection of one account, step by step: what `/probe?account=NAME&debug=true` and
`--collect.once --collect.debug` show (docs/configuration.md: Debugging an account).

    request 1: GET https://api.example.com/v1/balance?api_key=<redacted>
      headers: User-Agent, Accept, Accept-Encoding, X-Token
    answer 1: HTTP 200, application/json, 31 bytes
      {"data": {"balance": "12.50"}}
    values:
      values.balance_usd: data.balanse -> null (values.balance_usd is null or missing)
    outcome: up 0, reason invalid_response: values.balance_usd is null or missing

What is recorded, and how, is exporter.trace: every process loads it, while this module is
loaded by the first debug request. A trace holds what was sent and received as it was, keys
included; `render` redacts every registered secret, in every encoding it may travel in (a
query string, a path segment, a JSON string), before anything is shown.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from exporter import logs
from exporter.model import CollectError, Reading
from exporter.settings import human_duration
from exporter.trace import MAX_BODY_SHOWN, Received, Sent, Trace, ValueRead

if TYPE_CHECKING:
    from exporter.engine import AccountState, Clock, Engine, Outcome, Snapshot

MAX_RESULT_SHOWN = 300
# Expressions whose result is itself a secret: shown as redacted whatever it is.
SECRET_RESULTS = frozenset({"login.token"})


@dataclass(frozen=True, slots=True)
class Debugged:
    """A debug collection of one account, or why the last outcome was shown instead."""

    snapshot: Snapshot
    trace: Trace | None
    # Why the upstream was not asked (None: it was); the trace then is the last debug
    # collection's, when the outcome shown is its.
    not_asked: str | None = None
    at: float = field(default_factory=time.time)


async def traced_collection(engine: Engine, name: str) -> Debugged:
    """Collect the account now with a trace, within its own timeout, as any scrape would:
    within its minimum interval (or a Retry-After, or the back-off after a rejected key) or
    its cache_ttl the upstream is not asked and the last outcome is shown, and a collection
    already in flight is joined rather than doubled."""
    from exporter.engine import COLLECTION_DEADLINE_GRACE, Outcome

    state = engine.states[name]
    clock = engine.clock
    trace = Trace()
    joined = state.join(trace)
    if isinstance(joined, Outcome):
        last = state.last_trace
        shown = last[1] if last is not None and last[0] is joined else None
        return Debugged(state.snapshot(joined), shown, _why_not_asked(state, joined, clock))
    started = clock.monotonic()
    timeout = state.account.timeout
    try:
        if not joined.task.done():
            await clock.wait({joined.task}, started + timeout + COLLECTION_DEADLINE_GRACE)
    except BaseException:
        joined.walk_away()
        raise
    outcome = joined.leave(timeout, started, clock.monotonic())
    if joined.trace is not trace:
        return Debugged(
            state.snapshot(outcome),
            None,
            "a collection was already in flight (a scrape's) and was joined; its requests "
            "were not recorded: ask again",
        )
    state.last_trace = (outcome, trace)
    return Debugged(state.snapshot(outcome), trace)


def _why_not_asked(state: AccountState, outcome: Outcome, clock: Clock) -> str:
    now = clock.monotonic()
    age = now - outcome.finished_at
    if outcome.ok and age < state.account.cache_ttl:
        return (
            f"the last answer is {human_duration(age)} old, within cache_ttl "
            f"({human_duration(state.account.cache_ttl)}): shown again; the upstream is "
            f"asked after {human_duration(state.account.cache_ttl - age)}"
        )
    return (
        f"the upstream may not be asked again for {human_duration(state.not_before - now)} "
        "(the provider's minimum interval, a Retry-After, a documented block or the back-off "
        "after a rejected key): the last outcome, from "
        f"{human_duration(age)} ago, is shown"
    )


# -- rendering ---------------------------------------------------------------------------


def render(debugged: Debugged) -> str:
    snapshot = debugged.snapshot
    account = snapshot.account
    outcome = snapshot.outcome
    lines = [
        f"account {account.name} (provider {account.provider_type}), "
        f"at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(debugged.at))}"
    ]
    if debugged.not_asked is not None:
        lines.append(f"not asked by this request: {debugged.not_asked}")
        if debugged.trace is not None:
            lines.append("the debug collection that gave this outcome:")
        elif not outcome.ok:
            lines.append("(no debug collection gave this outcome: no requests to show)")
    if debugged.trace is not None:
        lines.extend(_steps(debugged.trace, outcome.error))
    if outcome.reading is not None:
        lines.append("read: " + describe(outcome.reading))
    if outcome.error is None:
        lines.append(f"outcome: up 1 (in {outcome.duration:.2f} s)")
    else:
        error = outcome.error
        lines.append(
            f"outcome: up 0, reason {error.reason.value}: {error.cause} "
            f"(in {outcome.duration:.2f} s)"
        )
    return redact("\n".join(lines) + "\n", _header_values(debugged.trace))


def _header_values(trace: Trace | None) -> Iterable[str]:
    return () if trace is None else trace.header_values


def _steps(trace: Trace, error: CollectError | None) -> list[str]:
    lines: list[str] = []
    in_values = False
    for step in trace.steps:
        if isinstance(step, ValueRead):
            if not in_values:
                lines.append("values:")
                in_values = True
            lines.append("  " + _value(step, error))
            continue
        in_values = False
        if isinstance(step, Sent):
            lines.append(f"request {step.number}: {step.method} {step.url}")
            lines.append(f"  headers: {', '.join(step.header_names) or '-'}")
            if step.body is not None:
                lines.append("  body: " + _body(step.body, trace.header_values))
        elif isinstance(step, Received):
            kind = f", {step.content_type}" if step.content_type else ""
            lines.append(f"answer {step.number}: HTTP {step.status}{kind}, {step.size} bytes")
            lines.append("  " + _body(step.body, trace.header_values).replace("\n", "\n  "))
        else:
            failure = step.error
            lines.append(f"answer {step.number}: none: {failure.reason.value}: {failure.cause}")
    if not trace.steps:
        lines.append("(no request was made)")
    return lines


def _value(step: ValueRead, error: CollectError | None) -> str:
    head = f"{step.what}: {step.expression} -> "
    if step.error is not None:
        return head + f"failed: {step.error}"
    if step.what in SECRET_RESULTS and step.result is not None:
        shown = logs.REDACTED
    else:
        shown = _cap(json.dumps(step.result, ensure_ascii=False, default=str), MAX_RESULT_SHOWN)
    # The reader's complaint about this value (`values.balance is null or missing`).
    if error is not None and error.cause.startswith((step.what + " ", step.what + ":")):
        shown += f" ({error.cause})"
    return head + shown


def _body(body: bytes, secrets: Iterable[str]) -> str:
    if not body:
        return "(empty)"
    text = body.decode("utf-8", errors="replace")
    # Redacted before it is cut, so that a cut never leaves the start of a key standing.
    return _cap(redact(text, secrets), MAX_BODY_SHOWN)


def _cap(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + " ... (cut)"


def describe(reading: Reading) -> str:
    parts = []
    money = reading.money()
    if money is not None:
        parts.append(f"balance {number(money[0])} {money[1]}")
    parts.extend(f"credits {c.credit_type}/{c.pool} {number(c.value)}" for c in reading.credits)
    if reading.daily_limit_remaining is not None:
        parts.append(f"daily limit left {number(reading.daily_limit_remaining)}")
    if reading.daily_limit_reset_seconds is not None:
        parts.append(f"resets in {human_duration(reading.daily_limit_reset_seconds)}")
    parts.extend(f"spend {s.queue} {number(s.hourly_spend_usd)} USD/h" for s in reading.spend)
    return ", ".join(parts) or "nothing"


def number(value: float) -> str:
    """As precise as the service answered (to a millionth), without trailing zeros."""
    return f"{value:,.6f}".rstrip("0").rstrip(".")


def redact(text: str, more: Iterable[str] = ()) -> str:
    """`text` without any registered secret (or any of `more`), as it is or however a URL, a
    form or a JSON string encodes it, each character its own way; then as the log redacts
    (the echoed start of a key, short keys as words)."""
    for secret in sorted({*logs.registered_secrets(), *more}, key=len, reverse=True):
        if len(secret) < logs.MIN_SECRET_LENGTH:
            continue  # as words only, by logs.redact: "key" must not blank out "keys"
        text = _encoded_pattern(secret).sub(logs.REDACTED, text)
    return logs.redact(text)


def _encoded_pattern(secret: str) -> re.Pattern[str]:
    return re.compile("".join(_character_forms(c) for c in secret))


def _character_forms(character: str) -> str:
    """Every way a URL, a form or JSON may write this character: as it is, percent-encoded
    (either case of hex), `+` for a space, or a JSON escape."""
    forms = {re.escape(character)}
    percent = "".join(f"%{byte:02X}" for byte in character.encode())
    forms.add("(?i:" + re.escape(percent) + ")")
    if character == " ":
        forms.add(re.escape("+"))
    if character in '"\\/':
        forms.add(re.escape("\\" + character))
    if not character.isascii() or not character.isprintable():
        forms.add("(?i:" + re.escape(f"\\u{ord(character):04x}") + ")")
    return "(?:" + "|".join(sorted(forms)) + ")"


async def debug_all(engine: Engine) -> list[Debugged]:
    """A debug collection of every account at once (`--collect.once --collect.debug`)."""
    return list(await asyncio.gather(*(traced_collection(engine, n) for n in engine.states)))
