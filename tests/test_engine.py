"""The engine's rules: cache, minimum interval, back-off, coalescing, budgets, concurrency."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from aiohttp import web

from exporter.config import Config, build_config
from exporter.demo import SimAccount, Simulator, delay, respond
from exporter.demo.ocean import OceanAccount
from exporter.engine import (
    AUTH_BACKOFF_BASE,
    DEADLINE_STEPS_PER_SECOND,
    FAN_OUT_BATCH,
    Engine,
    InFlight,
    Outcome,
    Snapshot,
    scrape_budget,
)
from exporter.metrics import AccountCollector
from exporter.model import Reason
from exporter.once import rows
from exporter.upstream import Upstream
from tests.helpers import FrozenClock, account, gated_config, settle


def config_of(simulator: Simulator, *accounts: dict[str, Any], **global_settings: Any) -> Config:
    return build_config({"global": global_settings, "accounts": list(accounts)}, source="test")


def one(simulator: Simulator, provider: str, key: str, **more: Any) -> dict[str, Any]:
    simulator.accounts.setdefault(provider, {}).setdefault(key, SimAccount(key, balance=7.0))
    return account(key, provider, key, simulator.base_url(provider), **more)


def frozen_engine(
    simulator: Simulator, upstream: Upstream, *accounts: dict[str, Any]
) -> tuple[Engine, FrozenClock]:
    """An engine on these accounts whose clock moves only when the test moves it."""
    clock = FrozenClock()
    return Engine(config_of(simulator, *accounts), upstream, clock), clock


async def test_cache_ttl_reuses_a_success(simulator: Simulator, upstream: Upstream) -> None:
    engine, clock = frozen_engine(
        simulator, upstream, one(simulator, "datalabs", "k-cache", cache_ttl="60s")
    )
    for _ in range(3):
        [snapshot] = await engine.collect()
        assert snapshot.outcome.ok
    assert simulator.calls[("datalabs", "k-cache")] == 1
    clock.advance(61)
    await engine.collect()
    assert simulator.calls[("datalabs", "k-cache")] == 2


async def test_cache_ttl_zero_always_asks(simulator: Simulator, upstream: Upstream) -> None:
    engine, _ = frozen_engine(
        simulator, upstream, one(simulator, "datalabs", "k-nocache", cache_ttl="0s")
    )
    for _ in range(3):
        await engine.collect()
    assert simulator.calls[("datalabs", "k-nocache")] == 3


async def test_anticaptcha_is_asked_at_most_every_30s(
    simulator: Simulator, upstream: Upstream
) -> None:
    engine, clock = frozen_engine(
        simulator, upstream, one(simulator, "anticaptcha", "k-anti", cache_ttl="0s")
    )
    await engine.collect()
    clock.advance(29)
    [snapshot] = await engine.collect()
    assert snapshot.outcome.ok
    assert snapshot.outcome.reading is not None
    assert simulator.calls[("anticaptcha", "k-anti")] == 1
    clock.advance(2)
    await engine.collect()
    assert simulator.calls[("anticaptcha", "k-anti")] == 2


async def test_anticaptcha_reuses_a_failure_within_30s(
    simulator: Simulator, upstream: Upstream
) -> None:
    simulator.add("anticaptcha", SimAccount("k-anti-fail").then(respond(500, "<html></html>")))
    engine, clock = frozen_engine(
        simulator, upstream, one(simulator, "anticaptcha", "k-anti-fail", cache_ttl="0s")
    )
    for _ in range(3):
        [snapshot] = await engine.collect()
        assert snapshot.outcome.reason is Reason.HTTP
        assert snapshot.errors[Reason.HTTP] == 1
        clock.advance(10)
    assert simulator.calls[("anticaptcha", "k-anti-fail")] == 1
    clock.advance(1)
    [snapshot] = await engine.collect()
    assert snapshot.outcome.ok
    assert simulator.calls[("anticaptcha", "k-anti-fail")] == 2


async def test_failure_after_the_cache_expired_shows_no_stale_balance(
    simulator: Simulator, upstream: Upstream
) -> None:
    engine, clock = frozen_engine(
        simulator, upstream, one(simulator, "capmonster", "k-stale", cache_ttl="30s")
    )
    [first] = await engine.collect()
    assert first.outcome.reading is not None
    assert first.last_success_wall == clock.wall()
    success_time = clock.wall()
    simulator.accounts["capmonster"]["k-stale"].then(respond(500, "down"))
    clock.advance(10)
    [cached] = await engine.collect()
    assert cached.outcome.ok  # still within cache_ttl: the cached value may stand
    clock.advance(25)
    [failed] = await engine.collect()
    assert failed.outcome.reason is Reason.HTTP
    assert failed.outcome.reading is None
    assert failed.last_success_wall == success_time


async def test_429_is_honoured_until_retry_after(simulator: Simulator, upstream: Upstream) -> None:
    simulator.add(
        "ocean",
        SimAccount("k-429").then(respond(429, {"detail": "slow"}, headers={"Retry-After": "120"})),
    )
    engine, clock = frozen_engine(
        simulator, upstream, one(simulator, "ocean", "k-429", cache_ttl="0s")
    )
    [snapshot] = await engine.collect()
    assert snapshot.outcome.reason is Reason.RATE_LIMITED
    clock.advance(119)
    [snapshot] = await engine.collect()
    assert snapshot.outcome.reason is Reason.RATE_LIMITED
    assert snapshot.errors[Reason.RATE_LIMITED] == 1
    assert simulator.calls[("ocean", "k-429")] == 1
    clock.advance(2)
    [snapshot] = await engine.collect()
    assert snapshot.outcome.ok
    assert simulator.calls[("ocean", "k-429")] == 2


async def test_rejected_key_backs_off_exponentially(
    simulator: Simulator, upstream: Upstream
) -> None:
    bad = account(
        "revoked", "datalabs", "not-a-known-key-1", simulator.base_url("datalabs"), cache_ttl="0s"
    )
    engine, clock = frozen_engine(simulator, upstream, bad)
    calls = []
    for step in (0, AUTH_BACKOFF_BASE - 1, 2, 2 * AUTH_BACKOFF_BASE - 2, 3):
        clock.advance(step)
        [snapshot] = await engine.collect()
        assert snapshot.outcome.reason is Reason.AUTH
        calls.append(simulator.calls[("datalabs", "not-a-known-key-1")])
    # Asked at 0 s; held off for 60 s; asked at 61 s; held off for 120 s; asked at 184 s.
    assert calls == [1, 1, 2, 2, 3]
    assert snapshot.errors[Reason.AUTH] == 3


async def test_a_rotated_key_starts_afresh(simulator: Simulator, upstream: Upstream) -> None:
    base = simulator.base_url("datalabs")
    engine, _ = frozen_engine(
        simulator, upstream, account("acct", "datalabs", "old-revoked-key", base)
    )
    [snapshot] = await engine.collect()
    assert snapshot.outcome.reason is Reason.AUTH
    simulator.add("datalabs", SimAccount("new-good-key-1", balance=3.0))
    engine.apply(config_of(simulator, account("acct", "datalabs", "new-good-key-1", base)))
    [snapshot] = await engine.collect()
    assert snapshot.outcome.ok
    assert snapshot.errors[Reason.AUTH] == 0


async def test_reload_keeps_cache_when_only_the_threshold_changes(
    simulator: Simulator, upstream: Upstream
) -> None:
    engine, _ = frozen_engine(
        simulator, upstream, one(simulator, "vastcap", "k-keep", low_balance_usd=1)
    )
    await engine.collect()
    # Thresholds, labels and the page to pay on change nothing the upstream is asked.
    more = {"labels": {"team": "growth"}, "top_up_url": "https://pay.example.com/vast"}
    changed = one(simulator, "vastcap", "k-keep", low_balance_usd=2, **more)
    engine.apply(config_of(simulator, changed))
    [snapshot] = await engine.collect()
    assert simulator.calls[("vastcap", "k-keep")] == 1
    assert snapshot.account.low_balance_usd == 2
    assert snapshot.account.labels == (("team", "growth"),)
    assert snapshot.account.top_up_url == "https://pay.example.com/vast"


def waiting(engine: Engine, name: str) -> int:
    """How many scrapes wait for the account's collection in flight (0 when there is none)."""
    inflight = engine.states[name].inflight
    return 0 if inflight is None else inflight.waiting


async def test_concurrent_scrapes_share_one_request_per_account(upstream: Upstream) -> None:
    names = [f"coalesce-{i}" for i in range(10)]
    config, providers = gated_config(*names, cache_ttl="0s")
    engine = Engine(config, upstream, FrozenClock())
    scrapes = [asyncio.create_task(engine.collect()) for _ in range(20)]
    await settle(lambda: all(waiting(engine, name) == 20 for name in names))
    for provider in providers:
        provider.gate.set()
    for snapshots in await asyncio.gather(*scrapes):
        assert [s.account.name for s in snapshots] == names
        assert all(s.outcome.ok for s in snapshots)
    assert [provider.calls for provider in providers] == [1] * 10


async def test_a_scrape_waits_only_within_its_budget(upstream: Upstream) -> None:
    clock = FrozenClock()
    config, (slow_provider, fast_provider) = gated_config("slow", "fast", timeout="30s")
    engine = Engine(config, upstream, clock)
    fast_provider.gate.set()
    scrape = asyncio.create_task(engine.collect(scrape_timeout=1.0))  # a budget of 0.5 s
    await settle(lambda: engine.states["fast"].last is not None and slow_provider.calls == 1)
    clock.advance(0.4)
    for _ in range(20):  # turns of the event loop in which the scrape could (wrongly) end
        await asyncio.sleep(0)
    assert not scrape.done()
    clock.advance(0.2)
    slow, fast = await scrape
    assert slow.outcome.reason is Reason.TIMEOUT
    assert slow.outcome.duration == pytest.approx(0.6)
    assert fast.outcome.ok
    # The timeout was this scrape's, not the account's: nothing recorded, nothing counted,
    # and the collection goes on within the account's own timeout.
    state = engine.states["slow"]
    assert state.last is None
    assert state.errors[Reason.TIMEOUT] == 0
    assert state.inflight is not None
    assert state.inflight.waiting == 0
    assert not state.inflight.task.done()
    state.inflight.task.cancel()


async def test_a_longer_budget_gets_the_answer_a_shorter_one_gave_up_on(
    upstream: Upstream,
) -> None:
    clock = FrozenClock()
    config, (provider,) = gated_config("shared", cache_ttl="0s")
    engine = Engine(config, upstream, clock)
    short = asyncio.create_task(engine.collect(scrape_timeout=0.4))  # the 0.5 s floor
    long = asyncio.create_task(engine.collect(scrape_timeout=5.0))
    await settle(lambda: waiting(engine, "shared") == 2)
    clock.advance(0.6)
    [short_snapshot] = await short
    assert short_snapshot.outcome.reason is Reason.TIMEOUT
    assert not long.done()
    provider.gate.set()
    [long_snapshot] = await long
    assert long_snapshot.outcome.ok
    assert provider.calls == 1
    # The short scrape's timeout was its own: the account's record is the success.
    assert engine.states["shared"].errors[Reason.TIMEOUT] == 0


async def test_max_concurrency_bounds_upstream_requests(
    simulator: Simulator, upstream: Upstream
) -> None:
    accounts = []
    for i in range(6):
        key = f"k-bound-{i}"
        simulator.add("datalabs", SimAccount(key, chaos=[(1.0, delay(0.1))]))
        accounts.append(one(simulator, "datalabs", key))
    engine = Engine(config_of(simulator, *accounts, max_concurrency=2), upstream)
    snapshots = await engine.collect()
    assert all(s.outcome.ok for s in snapshots)
    assert simulator.peak_in_flight == 2


async def test_requests_leave_while_the_last_collections_are_still_to_start(
    simulator: Simulator, upstream: Upstream
) -> None:
    # Were every collection started before the first request went out, building the requests
    # of many accounts would add to the upstream's latency instead of overlapping it.
    count = 8 * FAN_OUT_BATCH
    started_when_the_first_arrived: list[int] = []

    async def note_the_first(request: web.Request) -> None:
        if not started_when_the_first_arrived:
            started = sum(state.inflight is not None for state in engine.states.values())
            started_when_the_first_arrived.append(started)

    accounts = []
    for i in range(count):
        key = f"k-fan-{i}"
        simulator.add("datalabs", SimAccount(key, chaos=[(1.0, note_the_first)]))
        accounts.append(one(simulator, "datalabs", key, cache_ttl="0s"))
    engine = Engine(config_of(simulator, *accounts, max_concurrency=count), upstream)
    await engine.collect()  # the connections are opened
    started_when_the_first_arrived.clear()
    snapshots = await engine.collect()
    assert all(s.outcome.ok for s in snapshots)
    [started] = started_when_the_first_arrived
    assert started < count


async def test_the_first_collection_starts_every_account_at_once(
    simulator: Simulator, upstream: Upstream
) -> None:
    # So that the connection pool opens one connection for every request that can be in
    # flight: a pool grown only to what one batched scrape's timing had in flight would open
    # new connections on a later scrape that happens to have more.
    count = 4 * FAN_OUT_BATCH
    connections: set[object] = set()

    async def note(request: web.Request) -> None:
        connections.add(request.transport)

    accounts = []
    for i in range(count):
        key = f"k-first-{i}"
        simulator.add("datalabs", SimAccount(key, chaos=[(1.0, note)]))
        accounts.append(one(simulator, "datalabs", key, cache_ttl="0s"))
    config = config_of(simulator, *accounts, max_concurrency=count, max_concurrency_per_host=count)
    engine = Engine(config, upstream)

    async def started_before_the_loop_ran() -> int:
        """Collections the scrape had started when the event loop first ran something else."""
        seen: list[int] = []
        asyncio.get_running_loop().call_soon(
            lambda: seen.append(sum(s.inflight is not None for s in engine.states.values()))
        )
        snapshots = await engine.collect()
        assert all(s.outcome.ok for s in snapshots)
        return seen[0]

    assert await started_before_the_loop_ran() == count
    assert len(connections) == count
    assert await started_before_the_loop_ran() == FAN_OUT_BATCH
    # Accounts a reload adds are asked for the first time: at once again.
    simulator.add("datalabs", SimAccount("k-first-new"))
    accounts.append(one(simulator, "datalabs", "k-first-new", cache_ttl="0s"))
    engine.apply(
        config_of(simulator, *accounts, max_concurrency=count, max_concurrency_per_host=count)
    )
    assert await started_before_the_loop_ran() == count + 1


async def test_max_concurrency_per_host_bounds_each_host_apart(
    simulator: Simulator, upstream: Upstream
) -> None:
    in_flight = peak = 0

    async def hold(request: web.Request) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            await asyncio.sleep(0.1)
        finally:
            in_flight -= 1

    other = Simulator(seed=2)
    await other.start()
    try:
        accounts = []
        for host_name, host in (("a", simulator), ("b", other)):
            for i in range(6):
                key = f"k-host-{i}"
                host.add("datalabs", SimAccount(key, chaos=[(1.0, hold)]))
                url = host.base_url("datalabs")
                accounts.append(account(f"{host_name}-{i}", "datalabs", key, url))
        config = config_of(simulator, *accounts, max_concurrency=12, max_concurrency_per_host=2)
        engine = Engine(config, upstream)
        snapshots = await engine.collect()
        assert all(s.outcome.ok for s in snapshots)
        # Two at a time to each host, and both hosts at once.
        assert (simulator.peak_in_flight, other.peak_in_flight) == (2, 2)
        assert peak == 4
    finally:
        await other.stop()


async def test_a_collection_past_its_deadline_ends_as_a_timeout(upstream: Upstream) -> None:
    config, _ = gated_config("late", timeout="200ms")
    engine = Engine(config, upstream)
    loop = asyncio.get_running_loop()
    started = loop.time()
    [snapshot] = await engine.collect()
    waited = loop.time() - started
    assert snapshot.outcome.reason is Reason.TIMEOUT
    assert snapshot.outcome.error is not None
    assert snapshot.outcome.error.cause == "no answer within 0.2s"
    # Its own deadline, rounded up to the shared timer's step at most.
    assert 0.2 <= waited < 0.2 + 1 / DEADLINE_STEPS_PER_SECOND + 0.5
    assert snapshot.errors[Reason.TIMEOUT] == 1
    # The next collection of the account is ended by its own deadline again.
    [snapshot] = await engine.collect()
    assert snapshot.outcome.reason is Reason.TIMEOUT


async def test_a_collection_cancelled_from_elsewhere_is_not_a_timeout(upstream: Upstream) -> None:
    # Shutdown cancels collections in flight: that must end them, not be read as a timeout.
    config, (provider,) = gated_config("stopped", timeout="30s")
    engine = Engine(config, upstream)
    state = engine.states["stopped"]
    joined = state.join()
    assert isinstance(joined, InFlight)
    await settle(lambda: provider.calls == 1)
    joined.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await joined.task
    joined.walk_away()
    assert state.last is None


async def test_collections_started_together_share_one_deadline_timer(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [f"shared-deadline-{i}" for i in range(50)]
    config, providers = gated_config(*names, timeout="30s")
    engine = Engine(config, upstream)
    loop = asyncio.get_running_loop()
    deadline_timers = 0
    call_at = loop.call_at

    def counting_call_at(when: float, callback: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal deadline_timers
        deadline_timers += getattr(callback, "__name__", "") == "_expire"
        return call_at(when, callback, *args, **kwargs)

    monkeypatch.setattr(loop, "call_at", counting_call_at)
    scrape = asyncio.create_task(engine.collect())
    await settle(lambda: all(p.calls == 1 for p in providers))
    for provider in providers:
        provider.gate.set()
    snapshots = await scrape
    assert all(s.outcome.ok for s in snapshots)
    # One, or two where the scrape's start straddles a step of the rounding.
    assert 1 <= deadline_timers <= 2


def test_scrape_budget() -> None:
    assert scrape_budget(10.0, None) == 10.0
    assert scrape_budget(10.0, 5.0) == 4.5
    assert scrape_budget(3.0, 15.0) == 3.0
    assert scrape_budget(10.0, 1.2) == 0.7
    # A floor: a client asking for (next to) nothing still gives the upstream a chance.
    assert scrape_budget(10.0, 0.6) == 0.5
    assert scrape_budget(10.0, 0.001) == 0.5
    assert scrape_budget(0.2, 0.001) == 0.2
    assert scrape_budget(10.0, 0.0) == 10.0
    assert scrape_budget(10.0, float("nan")) == 10.0


async def test_a_scrape_arriving_after_the_last_waiter_left_joins_the_same_collection(
    upstream: Upstream,
) -> None:
    clock = FrozenClock()
    config, (provider,) = gated_config("race", cache_ttl="0s")
    engine = Engine(config, upstream, clock)
    state = engine.states["race"]
    first = asyncio.create_task(state.observe(0.05))
    await settle(lambda: waiting(engine, "race") == 1)
    clock.advance(0.1)
    gave_up = await first
    assert gave_up.reason is Reason.TIMEOUT
    assert waiting(engine, "race") == 0
    second = asyncio.create_task(state.observe(5.0))
    await settle(lambda: waiting(engine, "race") == 1)
    provider.gate.set()
    outcome = await second
    assert outcome.ok
    assert provider.calls == 1


async def test_a_scrape_whose_client_went_away_walks_away(upstream: Upstream) -> None:
    config, (provider,) = gated_config("gone", cache_ttl="0s")
    engine = Engine(config, upstream, FrozenClock())
    state = engine.states["gone"]
    scrape = asyncio.create_task(engine.collect())
    await settle(lambda: waiting(engine, "gone") == 1)
    scrape.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await scrape
    # Nobody waits, the collection goes on, and the next scrape joins it.
    assert state.inflight is not None
    assert state.inflight.waiting == 0
    assert not state.inflight.task.done()
    again = asyncio.create_task(engine.collect())
    await settle(lambda: waiting(engine, "gone") == 1)
    provider.gate.set()
    [snapshot] = await again
    assert snapshot.outcome.ok
    assert provider.calls == 1
    assert state.last is snapshot.outcome


async def test_leaving_a_collection_not_joined_is_a_bug() -> None:
    async def collection() -> Outcome:
        return Outcome(None, None, 0.0, 0.0)

    inflight = InFlight(asyncio.create_task(collection()))
    inflight.join()
    inflight.walk_away()
    with pytest.raises(RuntimeError):
        inflight.walk_away()
    with pytest.raises(RuntimeError):
        inflight.leave(1.0, 0.0, 0.0)
    await inflight.task


async def test_a_cached_countdown_goes_on_counting_down(upstream: Upstream) -> None:
    """Ocean's answer is reused for 15 minutes; the seconds until its daily limit resets
    are the answer's, less the time since it came, on /metrics and everywhere else."""
    midnight_in = 3600
    simulator = Simulator(clock=lambda: 86400 * 19_000 - midnight_in, seed=0)
    await simulator.start()
    try:
        simulator.add("ocean", OceanAccount("k-ocean"))
        engine, clock = frozen_engine(simulator, upstream, one(simulator, "ocean", "k-ocean"))
        [fresh] = await engine.collect()
        clock.advance(8)
        [cached] = await engine.collect()
        clock.advance(3600)
        [later] = await engine.collect()
    finally:
        await simulator.stop()
    assert simulator.calls[("ocean", "k-ocean")] == 2
    assert cached.outcome is fresh.outcome
    assert [line for line in series(fresh) if "reset" in line] == [
        'apibalance_daily_limit_reset_seconds{account="k-ocean",provider="ocean"} 3600.0'
    ]
    assert [line for line in series(cached) if "reset" in line] == [
        'apibalance_daily_limit_reset_seconds{account="k-ocean",provider="ocean"} 3592.0'
    ]
    assert rows(fresh)[0][6].endswith("(resets in 1 h)")
    assert rows(cached)[0][6].endswith("(resets in 59 min)")
    # Asked again after the cache expired: the simulator's clock stood still, so 3600 again.
    assert later.age == 0.0
    assert later.outcome.reading is not None
    assert later.outcome.reading.daily_limit_resets_in(later.age) == 3600.0


def series(snapshot: Snapshot) -> list[str]:
    text = AccountCollector([snapshot]).exposition(openmetrics=False)
    return [line for line in text.splitlines() if not line.startswith("#")]


async def test_a_snapshot_keeps_the_error_counts_it_was_taken_with(
    simulator: Simulator, upstream: Upstream
) -> None:
    simulator.add("datalabs", SimAccount("k-counted", chaos=[(1.0, respond(500, "down"))]))
    engine, clock = frozen_engine(
        simulator, upstream, one(simulator, "datalabs", "k-counted", cache_ttl="0s")
    )
    [first] = await engine.collect()
    clock.advance(3600)
    [second] = await engine.collect()
    assert first.outcome.reason is second.outcome.reason is Reason.HTTP
    assert first.errors[Reason.HTTP] == 1
    assert second.errors[Reason.HTTP] == 2
