"""Garbage-collector tuning around scrapes: the startup heap frozen, collection paused while
scrapes wait."""

from __future__ import annotations

import asyncio
import gc

from pytest_aiohttp import AiohttpClient

from exporter.engine import Engine
from exporter.http import Exporter
from exporter.runtime import GC_YOUNG_THRESHOLD, GcPause, settle_heap
from exporter.upstream import Upstream
from tests.helpers import FrozenClock, gated_config, settle


def test_settle_heap_freezes_the_startup_heap_and_raises_the_young_threshold() -> None:
    before = gc.get_threshold()
    try:
        settle_heap()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, before[1], before[2])
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


async def test_gc_is_paused_while_scrapes_wait_and_resumed_after() -> None:
    assert gc.isenabled()
    pause = GcPause()
    with pause:
        assert not gc.isenabled()
        with pause:  # a second scrape at the same time
            assert not gc.isenabled()
        await asyncio.sleep(0)
        assert not gc.isenabled()
    # Still paused for the rest of this step: the scrape renders and sends its answer in it.
    assert not gc.isenabled()
    await asyncio.sleep(0)
    assert gc.isenabled()


async def test_a_scrape_starting_before_the_collector_resumes_keeps_it_paused() -> None:
    pause = GcPause()
    with pause:
        pass
    with pause:
        await asyncio.sleep(0)
        assert not gc.isenabled()
    await asyncio.sleep(0)
    assert gc.isenabled()


async def test_gc_pause_ends_when_overlapping_scrapes_never_stop() -> None:
    pause = GcPause()
    pause.MAX_SECONDS = 0.0
    pause.__enter__()
    pause.__enter__()
    assert not gc.isenabled()
    pause.__exit__()  # one scrape ends while the other still waits: paused too long
    await asyncio.sleep(0)
    assert gc.isenabled()
    pause.__exit__()
    await asyncio.sleep(0)
    assert gc.isenabled()


async def test_gc_pause_leaves_a_disabled_collector_alone() -> None:
    gc.disable()
    try:
        pause = GcPause()
        with pause:
            pass
        await asyncio.sleep(0)
        assert not gc.isenabled()
    finally:
        gc.enable()


async def test_a_scrape_pauses_the_collector_while_it_waits(
    upstream: Upstream, aiohttp_client: AiohttpClient
) -> None:
    config, (provider,) = gated_config("gc")
    engine = Engine(config, upstream, FrozenClock())
    client = await aiohttp_client(Exporter(engine).app)
    scrape = asyncio.create_task(client.get("/metrics"))
    await settle(lambda: provider.calls == 1)
    assert not gc.isenabled()
    provider.gate.set()
    response = await scrape
    assert response.status == 200
    assert 'apibalance_up{account="gc",provider="gated"} 1.0' in await response.text()
    assert gc.isenabled()
