"""The simulator: one fake server playing every provider family at once, as `--demo` and the
tests use it. A new provider family adds its fake module to `FAKES`."""

from __future__ import annotations

import time
from collections.abc import Callable

from exporter.demo import antigate, catalogue, decaptcha, json_apis, ocean, vastcap
from exporter.demo.server import FakeServer

FAKES = (antigate, vastcap, decaptcha, ocean, json_apis, catalogue)


class Simulator(FakeServer):
    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
    ) -> None:
        super().__init__(clock=clock, seed=seed)
        for fake in FAKES:
            fake.install(self)
