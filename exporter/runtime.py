"""Process-wide tuning of the garbage collector for scrapes of many accounts.

None of this changes what a scrape shows; it changes what the scrape costs. `settle_heap`
runs once, when the exporter has started; `GcPause` is held around every scrape that collects
(exporter/http.py).
"""

from __future__ import annotations

import asyncio
import gc
import time

# Allocations between young collections (CPython's default is 700); see settle_heap.
GC_YOUNG_THRESHOLD = 10_000


def settle_heap() -> None:
    """Tune the garbage collector for scrapes that keep many objects alive while they wait.

    A scrape of 1000 accounts holds tens of thousands of objects (requests in flight) for the
    upstream's latency. With the default settings that set off several collections per
    scrape, full ones included, each going over the whole heap: about a third of the CPU of
    a scrape (bench/bench.py). Freezing what lives as long as the process (modules, classes,
    the config) keeps it out of every collection, and a larger first-generation threshold
    makes the young collections fewer, for a little more garbage between them.
    """
    gc.collect()
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, second, third)


class GcPause:
    """Automatic garbage collection paused while scrapes wait for their upstreams.

    While a scrape of many accounts waits, every request in flight keeps its objects alive
    (tens of thousands at 1000 accounts), and each collection the allocations set off goes
    over all of them, to free nothing: about a tenth of the CPU of such a scrape. Once the
    answers are in, reference counting frees nearly all of them, and the collection that
    follows the pause has little left to look at. A pause lasts until no scrape waits, or at
    most `MAX_SECONDS` when scrapes keep overlapping, so cyclic garbage cannot pile up.

    The collector resumes once the event loop has run the rest of the step that ended the
    pause: the scrape renders its exposition and writes it to the socket in that step, and
    the collection its allocations are due would otherwise run in the middle of it (several
    milliseconds at 1000 accounts, added to the scrape). Must be used within an event loop.
    """

    MAX_SECONDS = 30.0

    def __init__(self) -> None:
        self._waiting = 0
        self._paused_at: float | None = None

    def __enter__(self) -> None:
        # A pause whose resumption is still to run goes on, with the time it began.
        if self._waiting == 0 and self._paused_at is None and gc.isenabled():
            gc.disable()
            self._paused_at = time.monotonic()
        self._waiting += 1

    def __exit__(self, *exc_info: object) -> None:
        self._waiting -= 1
        paused_at = self._paused_at
        if paused_at is None:
            return
        too_long = time.monotonic() - paused_at > self.MAX_SECONDS
        if self._waiting == 0 or too_long:
            asyncio.get_running_loop().call_soon(self._resume, too_long)

    def _resume(self, regardless: bool) -> None:
        if self._paused_at is not None and (regardless or self._waiting == 0):
            self._paused_at = None
            gc.enable()
