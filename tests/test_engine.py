"""The engine's rules: cache, minimum interval, back-off, coalescing, budgets, concurrency."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from exporter.config import Config, build_config
from exporter.engine import AUTH_BACKOFF_BASE, Engine, GcPause, scrape_budget
from exporter.model import Reason
from exporter.simulator import SimAccount, Simulator, delay, hang, respond
from exporter.upstream import Upstream
from tests.helpers import FrozenClock, account


def config_of(simulator: Simulator, *accounts: dict[str, Any], **global_settings: Any) -> Config:
    return build_config({"global": global_settings, "accounts": list(accounts)}, source="test")


def one(simulator: Simulator, provider: str, key: str, **more: Any) -> dict[str, Any]:
    simulator.accounts.setdefault(provider, {}).setdefault(key, SimAccount(key, balance=7.0))
    return account(key, provider, key, simulator.base_url(provider), **more)


async def test_cache_ttl_reuses_a_success(simulator: Simulator, upstream: Upstream) -> None:
    clock = FrozenClock()
    engine = Engine(
        config_of(simulator, one(simulator, "datalabs", "k-cache", cache_ttl="60s")),
        upstream,
        clock,
    )
    for _ in range(3):
        [snapshot] = await engine.collect()
        assert snapshot.outcome.ok
    assert simulator.calls[("datalabs", "k-cache")] == 1
    clock.advance(61)
    await engine.collect()
    assert simulator.calls[("datalabs", "k-cache")] == 2


async def test_cache_ttl_zero_always_asks(simulator: Simulator, upstream: Upstream) -> None:
    engine = Engine(
        config_of(simulator, one(simulator, "datalabs", "k-nocache", cache_ttl="0s")),
        upstream,
        FrozenClock(),
    )
    for _ in range(3):
        await engine.collect()
    assert simulator.calls[("datalabs", "k-nocache")] == 3


async def test_anticaptcha_is_asked_at_most_every_30s(
    simulator: Simulator, upstream: Upstream
) -> None:
    clock = FrozenClock()
    config = config_of(simulator, one(simulator, "anticaptcha", "k-anti", cache_ttl="0s"))
    engine = Engine(config, upstream, clock)
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
    clock = FrozenClock()
    simulator.add("anticaptcha", SimAccount("k-anti-fail").then(respond(500, "<html></html>")))
    config = config_of(simulator, one(simulator, "anticaptcha", "k-anti-fail", cache_ttl="0s"))
    engine = Engine(config, upstream, clock)
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
    clock = FrozenClock()
    engine = Engine(
        config_of(simulator, one(simulator, "capmonster", "k-stale", cache_ttl="30s")),
        upstream,
        clock,
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
    clock = FrozenClock()
    simulator.add(
        "ocean",
        SimAccount("k-429").then(respond(429, {"detail": "slow"}, headers={"Retry-After": "120"})),
    )
    engine = Engine(
        config_of(simulator, one(simulator, "ocean", "k-429", cache_ttl="0s")), upstream, clock
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
    clock = FrozenClock()
    bad = account(
        "revoked", "datalabs", "not-a-known-key-1", simulator.base_url("datalabs"), cache_ttl="0s"
    )
    engine = Engine(config_of(simulator, bad), upstream, clock)
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
    clock = FrozenClock()
    base = simulator.base_url("datalabs")
    engine = Engine(
        config_of(simulator, account("acct", "datalabs", "old-revoked-key", base)), upstream, clock
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
    clock = FrozenClock()
    engine = Engine(
        config_of(simulator, one(simulator, "vastcap", "k-keep", low_balance_usd=1)),
        upstream,
        clock,
    )
    await engine.collect()
    engine.apply(config_of(simulator, one(simulator, "vastcap", "k-keep", low_balance_usd=2)))
    [snapshot] = await engine.collect()
    assert simulator.calls[("vastcap", "k-keep")] == 1
    assert snapshot.account.low_balance_usd == 2


async def test_concurrent_scrapes_share_one_request_per_account(
    simulator: Simulator, upstream: Upstream
) -> None:
    accounts = []
    for i in range(10):
        key = f"k-coalesce-{i}"
        simulator.add("capmonster", SimAccount(key, balance=float(i), chaos=[(1.0, delay(0.2))]))
        accounts.append(one(simulator, "capmonster", key, cache_ttl="0s"))
    engine = Engine(config_of(simulator, *accounts), upstream)
    scrapes = await asyncio.gather(*(engine.collect() for _ in range(20)))
    assert sum(simulator.calls.values()) == 10
    for snapshots in scrapes:
        assert [s.account.name for s in snapshots] == [a["name"] for a in accounts]
        assert all(s.outcome.ok for s in snapshots)


async def test_a_scrape_waits_only_within_its_budget(
    simulator: Simulator, upstream: Upstream
) -> None:
    simulator.add("twocaptcha", SimAccount("k-slow", chaos=[(1.0, hang())]))
    config = config_of(
        simulator,
        one(simulator, "twocaptcha", "k-slow", timeout="30s"),
        one(simulator, "twocaptcha", "k-fast", timeout="30s"),
    )
    engine = Engine(config, upstream)
    loop = asyncio.get_running_loop()
    started = loop.time()
    slow, fast = await engine.collect(scrape_timeout=1.0)
    elapsed = loop.time() - started
    assert slow.outcome.reason is Reason.TIMEOUT
    assert fast.outcome.ok
    assert 0.5 <= elapsed < 5.0  # budget 0.5 s; the slack is for loaded CI machines
    # The timeout was this scrape's, not the account's: nothing recorded, nothing counted,
    # and the collection goes on within the account's own timeout.
    state = engine.states["k-slow"]
    assert state.last is None
    assert state.errors[Reason.TIMEOUT] == 0
    assert state._inflight is not None
    assert not state._inflight.done()
    state._inflight.cancel()


async def test_a_longer_budget_gets_the_answer_a_shorter_one_gave_up_on(
    simulator: Simulator, upstream: Upstream
) -> None:
    simulator.add("capsolver", SimAccount("k-shared", balance=4.0, chaos=[(1.0, delay(0.6))]))
    engine = Engine(
        config_of(simulator, one(simulator, "capsolver", "k-shared", cache_ttl="0s")), upstream
    )
    short, long = await asyncio.gather(
        engine.collect(scrape_timeout=0.4), engine.collect(scrape_timeout=5.0)
    )
    assert short[0].outcome.reason is Reason.TIMEOUT
    assert long[0].outcome.ok
    assert simulator.calls[("capsolver", "k-shared")] == 1
    # The short scrape's timeout was its own: the account's record is the success.
    assert engine.states["k-shared"].errors[Reason.TIMEOUT] == 0


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
    simulator: Simulator, upstream: Upstream
) -> None:
    simulator.add("datalabs", SimAccount("k-race", balance=2.0, chaos=[(1.0, delay(0.3))]))
    engine = Engine(
        config_of(simulator, one(simulator, "datalabs", "k-race", cache_ttl="0s")), upstream
    )
    state = engine.states["k-race"]
    gave_up = await state.observe(0.05)
    assert gave_up.reason is Reason.TIMEOUT
    outcome = await state.observe(5.0)
    assert outcome.ok
    assert simulator.calls[("datalabs", "k-race")] == 1


def test_gc_is_paused_while_scrapes_wait_and_resumed_after() -> None:
    assert gc.isenabled()
    pause = GcPause()
    with pause:
        assert not gc.isenabled()
        with pause:  # a second scrape at the same time
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_gc_pause_ends_when_overlapping_scrapes_never_stop() -> None:
    pause = GcPause()
    pause.MAX_SECONDS = 0.0
    pause.__enter__()
    pause.__enter__()
    assert not gc.isenabled()
    pause.__exit__()  # one scrape ends while the other still waits: paused too long
    assert gc.isenabled()
    pause.__exit__()
    assert gc.isenabled()


def test_gc_pause_leaves_a_disabled_collector_alone() -> None:
    gc.disable()
    try:
        pause = GcPause()
        with pause:
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


async def test_a_scrape_leaves_the_collector_enabled(
    simulator: Simulator, upstream: Upstream
) -> None:
    simulator.add("datalabs", SimAccount("k-gc", chaos=[(1.0, delay(0.05))]))
    engine = Engine(config_of(simulator, one(simulator, "datalabs", "k-gc")), upstream)
    scrape = asyncio.get_running_loop().create_task(engine.collect())
    await asyncio.sleep(0.02)
    assert not gc.isenabled()
    assert (await scrape)[0].outcome.ok
    assert gc.isenabled()
