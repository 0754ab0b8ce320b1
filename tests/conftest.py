from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from aiohttp.web import Application

from exporter.config import Config, load_config
from exporter.engine import Engine
from exporter.http import Exporter
from exporter.simulator import Simulator
from exporter.upstream import Upstream
from tests.helpers import write_config

AiohttpClient = Callable[[Application], Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    sim = Simulator(seed=1)
    await sim.start()
    yield sim
    await sim.stop()


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    client = Upstream(max_concurrency=64)
    yield client
    await client.close()


class ExporterFactory:
    """Builds an exporter on a config written to tmp_path and a test client for it."""

    def __init__(self, tmp_path: Path, upstream: Upstream, aiohttp_client: AiohttpClient) -> None:
        self.tmp_path = tmp_path
        self.upstream = upstream
        self._client = aiohttp_client
        self.config_path: Path | None = None

    async def __call__(
        self, data: dict[str, Any] | str, **exporter_args: Any
    ) -> tuple[Exporter, TestClient[Any, Any]]:
        self.config_path = write_config(self.tmp_path, data)
        path = self.config_path
        config = load_config(path)

        def loader() -> Config:
            return load_config(path)

        exporter = Exporter(Engine(config, self.upstream), loader=loader, **exporter_args)
        return exporter, await self._client(exporter.app)


@pytest.fixture
def make_exporter(
    tmp_path: Path, upstream: Upstream, aiohttp_client: AiohttpClient
) -> ExporterFactory:
    return ExporterFactory(tmp_path, upstream, aiohttp_client)
