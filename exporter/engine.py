"""Collecting accounts: cache, coalescing, back-off and the scrape budget.

One `AccountState` per configured account remembers the last outcome and the error counts.
A scrape asks each account for an outcome:

* a successful outcome younger than `cache_ttl` is reused;
* before `not_before` (the provider's minimum interval, a 429's Retry-After, or the auth
  back-off) the last outcome, success or failure, is reused and the upstream is left alone;
* otherwise the scrape joins the account's in-flight collection, or starts one.

The in-flight collection is bounded by the account's `timeout`. Each scrape waits for it only
within its own budget. A scrape that gives up (its budget ran out, or its client went away)
sees a timeout of its own; the collection goes on, within the account's `timeout`, and its
outcome is the one recorded, counted and reused by later scrapes. The budget comes from a
header any client may send: were a scrape's own timeout recorded as the account's outcome,
one client sending a tiny budget would have every other scraper served that failure for the
whole minimum interval, and would set the upstream asked once per scrape.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

from exporter import logs
from exporter.config import Account, Config
from exporter.model import CollectError, Reading, Reason
from exporter.settings import human_duration
from exporter.status import Peaks
from exporter.trace import TRACE, Trace
from exporter.upstream import DEFAULT_RETRY_AFTER, Upstream

log = logging.getLogger(__name__)

AUTH_BACKOFF_BASE = 60.0
AUTH_BACKOFF_CAP = 15 * 60.0
# Prometheus needs time to receive and store the answer after the exporter has it.
SCRAPE_TIMEOUT_MARGIN = 0.5
# The least a scrape waits for an account (unless the account's own timeout is shorter): a
# header asking for less gets this much, a chance for any upstream to answer.
MIN_SCRAPE_BUDGET = 0.5
# A scrape allowed the account's whole timeout waits this much longer for the collection to
# end by its own deadline, so it shows (and counts) the collection's outcome, not its own.
COLLECTION_DEADLINE_GRACE = 0.2
# Collections a scrape starts before it lets the event loop run. A collection's request is
# built when its task first runs and sent from a task aiohttp starts then: were every
# collection started at once, the first request would leave only once the last was built, so
# that at 1000 accounts building (some 100 ms) would add to the upstream's latency instead of
# overlapping it. Batches let each batch's requests leave while the next is built.
# A scrape that asks any account for the first time starts every collection at once instead:
# with batches, answers that come back while later batches are built free their connections
# for those, so the connection pool grows only to the most requests a scrape's timing ever had
# in flight, and a later scrape that happens to have more opens new connections, each a TCP
# and TLS handshake with the provider. Started at once, the first collection (at start, or of
# the accounts a reload adds) opens one connection for every request that can be in flight,
# and later scrapes find one free whatever their timing.
FAN_OUT_BATCH = 32
# Collection deadlines are rounded up to this fraction of a second, so that the collections of
# a scrape share one timer (see Deadlines).
DEADLINE_STEPS_PER_SECOND = 64


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def wall(self) -> float: ...

    async def wait(self, tasks: set[asyncio.Task[Outcome]], deadline: float) -> None:
        """Until every task is done or `monotonic()` reaches `deadline`."""


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def wait(self, tasks: set[asyncio.Task[Outcome]], deadline: float) -> None:
        await asyncio.wait(tasks, timeout=deadline - time.monotonic())


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one collection: a reading, or an error."""

    reading: Reading | None
    error: CollectError | None
    finished_at: float  # monotonic
    duration: float

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def reason(self) -> Reason | None:
        return None if self.error is None else self.error.reason


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one scrape shows of one account."""

    account: Account
    outcome: Outcome
    errors: Mapping[Reason, int]
    last_success_wall: float | None
    # The account's currency: configured, or the one its answers have reported (None until
    # the first successful collection of an account whose answers say it).
    currency: str | None = None
    # Whole seconds since the outcome's answer: more than 0 when it is reused from the cache.
    age: float = 0.0


def scrape_budget(account_timeout: float, scrape_timeout: float | None) -> float:
    """How long a scrape may wait for an account (docs/configuration.md: How collection behaves)."""
    if scrape_timeout is None or not math.isfinite(scrape_timeout) or scrape_timeout <= 0:
        return account_timeout
    # Below 1 s, leaving a fixed 0.5 s would leave nothing; leave half instead.
    usable = max(scrape_timeout - SCRAPE_TIMEOUT_MARGIN, scrape_timeout / 2, MIN_SCRAPE_BUDGET)
    return min(account_timeout, usable)


class InFlight:
    """An account's collection in flight, and the scrapes waiting for it.

    Every scrape that `join`s stops waiting exactly once: `leave` gives it the collection's
    outcome, or its own timeout if the collection is not done; `walk_away` is for a scrape
    cancelled meanwhile (its client went away), which takes nothing. Neither ends the
    collection: it goes on within the account's timeout, and only its outcome is recorded
    (see the module docstring).
    """

    def __init__(self, task: asyncio.Task[Outcome], trace: Trace | None = None) -> None:
        self.task = task
        self.waiting = 0
        # Set when a debug request started the collection: it records into this.
        self.trace = trace

    def join(self) -> None:
        self.waiting += 1

    def leave(self, budget: float, started: float, now: float) -> Outcome:
        """The outcome for a scrape that joined at `started` and waited within `budget`."""
        self._stop_waiting()
        task = self.task
        if task.done() and not task.cancelled():
            return task.result()
        error = CollectError(Reason.TIMEOUT, f"no answer within the {budget:.3g}s budget")
        return Outcome(None, error, now, now - started)

    def walk_away(self) -> None:
        self._stop_waiting()

    def _stop_waiting(self) -> None:
        if self.waiting <= 0:
            raise RuntimeError("a scrape stopped waiting for a collection it had not joined")
        self.waiting -= 1


class Deadlines:
    """The collections' deadlines: one timer for all those due at the same time.

    A timer per collection (`asyncio.timeout_at`) cost about a twentieth of a collection's
    CPU: each goes into the event loop's heap of timers, ordered by comparisons written in
    Python, and stays there, cancelled, long after its collection has ended. The collections a
    scrape starts at once have the same timeout; rounded up to 1/64 s, their deadlines are
    one, and so is their timer.
    """

    def __init__(self) -> None:
        self._due: dict[float, set[asyncio.Task[Outcome]]] = {}
        self._expired: set[asyncio.Task[Outcome]] = set()

    def enforce(self, task: asyncio.Task[Outcome], deadline: float) -> float:
        """Cancel `task` if it is not released by `deadline` (event loop time, rounded up as
        the class says); the deadline it will have."""
        when = math.ceil(deadline * DEADLINE_STEPS_PER_SECOND) / DEADLINE_STEPS_PER_SECOND
        due = self._due.get(when)
        if due is None:
            due = self._due[when] = set()
            asyncio.get_running_loop().call_at(when, self._expire, when)
        due.add(task)
        return when

    def expired(self, task: asyncio.Task[Outcome]) -> bool:
        """Whether `task` was cancelled because its deadline passed."""
        return task in self._expired

    def release(self, task: asyncio.Task[Outcome], when: float) -> None:
        """`task` has ended: nothing to enforce, nothing to remember."""
        due = self._due.get(when)
        if due is not None:
            due.discard(task)
        self._expired.discard(task)

    def _expire(self, when: float) -> None:
        for task in self._due.pop(when, ()):
            self._expired.add(task)
            task.cancel()


class AccountState:
    def __init__(
        self,
        account: Account,
        upstream: Upstream,
        clock: Clock,
        deadlines: Deadlines,
    ) -> None:
        self.account = account
        self._upstream = upstream
        self._clock = clock
        self._deadlines = deadlines
        self.last: Outcome | None = None
        self.last_success_wall: float | None = None
        # Kept after failures for the landing page only: metrics never show a stale value.
        self.last_reading: Reading | None = None
        # The most each series held lately: the landing page's history-based thresholds.
        self.peaks = Peaks()
        # Replaced, never changed in place: every snapshot shares it, no copy per scrape.
        self.errors: Mapping[Reason, int] = MappingProxyType(dict.fromkeys(Reason, 0))
        self.not_before = -math.inf
        self.auth_failures = 0
        self.currency = account.currency
        self.inflight: InFlight | None = None
        # The last debug collection (exporter.debug), kept to show with its outcome.
        self.last_trace: tuple[Outcome, Trace] | None = None

    def snapshot(self, outcome: Outcome) -> Snapshot:
        # Whole seconds: the answer of this very scrape shows what the service said, not a
        # hair less.
        age = float(max(0, math.floor(self._clock.monotonic() - outcome.finished_at)))
        return Snapshot(
            self.account, outcome, self.errors, self.last_success_wall, self.currency, age
        )

    def reusable(self) -> Outcome | None:
        """The outcome to show without asking upstream, if the rules say to reuse one."""
        last = self.last
        if last is None:
            return None
        now = self._clock.monotonic()
        if last.ok and now - last.finished_at < self.account.cache_ttl:
            return last
        if now < self.not_before:
            return last
        return None

    async def observe(self, budget: float) -> Outcome:
        """Join (or start) the in-flight collection and wait for it within `budget`."""
        return (await observe_all([self], [budget], self._clock))[0]

    def join(self, trace: Trace | None = None) -> Outcome | InFlight:
        """The outcome to reuse, or the in-flight collection (started if need be, recording
        into `trace` if given), joined: the caller waits for it, then leaves it or walks away."""
        reused = self.reusable()
        if reused is not None:
            return reused
        inflight = self.inflight
        if inflight is None:
            loop = asyncio.get_running_loop()
            if trace is None:
                task = loop.create_task(self._collect())
            else:
                # Only this task sees the trace: the hooks on the normal path find none.
                context = contextvars.copy_context()
                context.run(TRACE.set, trace)
                task = loop.create_task(self._collect(), context=context)
            inflight = InFlight(task, trace)
            self.inflight = inflight
        inflight.join()
        return inflight

    async def _collect(self) -> Outcome:
        account = self.account
        task: asyncio.Task[Outcome] = asyncio.current_task()  # type: ignore[assignment]
        deadline = self._deadlines.enforce(
            task, asyncio.get_running_loop().time() + account.timeout
        )
        http = self._upstream.for_account(account.base_url, deadline)
        started = self._clock.monotonic()
        reading: Reading | None = None
        error: CollectError | None = None
        try:
            fetched = await account.provider.fetch(http)
            self._check_currency(fetched)
            reading = fetched
        except (asyncio.CancelledError, TimeoutError) as stopped:
            # As asyncio.timeout does: a cancellation from anywhere else (shutdown) goes on.
            if isinstance(stopped, asyncio.CancelledError) and (
                not self._deadlines.expired(task) or task.uncancel() > 0
            ):
                raise
            error = CollectError(Reason.TIMEOUT, f"no answer within {account.timeout:.3g}s")
        except CollectError as failure:
            # Its traceback holds every frame the error passed through, the answer's body and
            # what was read from it among their locals, in a cycle with this frame: only the
            # garbage collector, which waits while a scrape does, would free them. A hostile
            # upstream's megabyte answers would pile up until it ran.
            failure.__traceback__ = None
            failure.__context__ = None
            error = failure
        except Exception as bug:
            # A shape the provider code did not foresee. The type is enough to find it; the
            # message could quote the answer.
            log.exception("unexpected error reading the answer", extra=self._log_fields())
            error = CollectError(
                Reason.INVALID_RESPONSE, f"unexpected answer ({type(bug).__name__})"
            )
        finally:
            self._deadlines.release(task, deadline)
            if self.inflight is not None and self.inflight.task is task:
                self.inflight = None
        outcome = self._outcome(reading, error, started)
        self._record(outcome)
        return outcome

    def _check_currency(self, reading: Reading) -> None:
        """The money is in the account's currency: the configured one, or the one its answers
        said before. A change would put a number in another unit on the same series."""
        said = reading.currency
        if said is None:
            return
        if self.currency is None:
            self.currency = said
        elif said != self.currency:
            raise CollectError(
                Reason.INVALID_RESPONSE,
                f"the answer is in {said}, the account in {self.currency}",
            )

    def _outcome(
        self, reading: Reading | None, error: CollectError | None, started: float
    ) -> Outcome:
        now = self._clock.monotonic()
        return Outcome(reading, error, now, now - started)

    def _record(self, outcome: Outcome) -> None:
        previous = self.last
        self.last = outcome
        interval_end = outcome.finished_at - outcome.duration + self.account.provider.min_interval
        error = outcome.error
        if error is None:
            self.last_success_wall = self._clock.wall()
            self.last_reading = outcome.reading
            if outcome.reading is not None:
                self.peaks.record(outcome.reading, self.last_success_wall)
            self.auth_failures = 0
            self.not_before = interval_end
            if previous is not None and not previous.ok:
                log.info("collection recovered", extra=self._log_fields())
            return
        errors = dict(self.errors)
        errors[error.reason] += 1
        self.errors = MappingProxyType(errors)
        wait = 0.0
        if error.reason is Reason.AUTH:
            self.auth_failures += 1
            wait = min(AUTH_BACKOFF_CAP, AUTH_BACKOFF_BASE * 2 ** (self.auth_failures - 1))
        elif error.reason is Reason.RATE_LIMITED:
            wait = error.retry_after if error.retry_after is not None else DEFAULT_RETRY_AFTER
        self.not_before = max(interval_end, outcome.finished_at + wait)
        fields = self._log_fields(reason=error.reason.value, cause=error.cause)
        if wait:
            # As the landing page and --collect.once write a length of time.
            fields["retry_in"] = human_duration(wait)
        log.warning("collection failed", extra=fields)

    def _log_fields(self, **more: str) -> dict[str, str]:
        return {"account": self.account.name, "provider": self.account.provider_type, **more}


async def observe_all(
    states: Sequence[AccountState], budgets: Sequence[float], clock: Clock
) -> list[Outcome]:
    """Wait for the collections of these accounts, each within its own budget.

    One wait for all the accounts of a budget (usually all of them), not a task and a timer
    per account: at 1000 accounts those cost more than the requests themselves.
    """
    outcomes: list[Outcome | None] = [None] * len(states)
    waiting: dict[int, InFlight] = {}
    start = clock.monotonic()
    in_batches = all(state.last is not None for state in states)
    try:
        for i, state in enumerate(states):
            joined = state.join()
            if isinstance(joined, Outcome):
                outcomes[i] = joined
                continue
            waiting[i] = joined
            if in_batches and len(waiting) % FAN_OUT_BATCH == 0:
                # The batch's requests are built when their tasks first run, and sent by
                # aiohttp from tasks of their own: both need the event loop.
                await asyncio.sleep(0)
        for budget in sorted({budgets[i] for i in waiting}):
            deadline = start + budget
            if any(budget >= states[i].account.timeout for i in waiting if budgets[i] == budget):
                deadline += COLLECTION_DEADLINE_GRACE
            pending = {f.task for f in waiting.values() if not f.task.done()}
            if pending and deadline > clock.monotonic():
                await clock.wait(pending, deadline)
            now = clock.monotonic()
            for i in [i for i, f in waiting.items() if f.task.done() or budgets[i] <= budget]:
                outcomes[i] = waiting.pop(i).leave(budgets[i], start, now)
    finally:
        for inflight in waiting.values():  # cancelled: the scrape's client went away
            inflight.walk_away()
    return [outcome for outcome in outcomes if outcome is not None]


class Engine:
    """All account states of the running config, and how a scrape collects them."""

    def __init__(self, config: Config, upstream: Upstream, clock: Clock | None = None) -> None:
        self._upstream = upstream
        self.clock = clock or SystemClock()
        self._deadlines = Deadlines()
        self.config = config
        self.states: dict[str, AccountState] = {}
        self.apply(config)

    def apply(self, config: Config) -> None:
        """Switch to a new config; accounts that ask the same upstream the same way keep
        their cache, counters and back-off. Scrapes in flight finish on the states they hold.

        The accounts' keys and secrets are registered with the log redactor first, so that
        one echoed in an error of their first collection is already redacted.
        """
        logs.register_secrets(config.secret_values())
        states: dict[str, AccountState] = {}
        for account in config.accounts:
            old = self.states.get(account.name)
            if old is not None and old.account.same_upstream(account):
                old.account = account
                states[account.name] = old
            else:
                states[account.name] = AccountState(
                    account, self._upstream, self.clock, self._deadlines
                )
        self.config = config
        self.states = states
        settings = config.global_settings
        self._upstream.set_max_concurrency(
            settings.max_concurrency, settings.max_concurrency_per_host
        )

    async def collect(
        self, names: Iterable[str] | None = None, scrape_timeout: float | None = None
    ) -> list[Snapshot]:
        states = (
            list(self.states.values()) if names is None else [self.states[name] for name in names]
        )
        budgets = [scrape_budget(state.account.timeout, scrape_timeout) for state in states]
        outcomes = await observe_all(states, budgets, self.clock)
        return [state.snapshot(outcome) for state, outcome in zip(states, outcomes, strict=True)]
