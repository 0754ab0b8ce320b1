from __future__ import annotations

import logging
import types
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from aiohttp.web import Application

from exporter import logs
from exporter.config import Config, load_config
from exporter.demo import Simulator
from exporter.engine import Engine
from exporter.http import Exporter
from exporter.upstream import Upstream
from tests.helpers import INTEGRATION_HELPERS, write_config

AiohttpClient = Callable[[Application], Awaitable[TestClient[Any, Any]]]
TESTS = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `integration` every test that uses an integration helper (tests/helpers.py),
    directly or through the test code and fixtures it uses."""
    for item in items:
        if item.get_closest_marker("integration") is None and uses_integration_helper(item):
            item.add_marker(pytest.mark.integration)


def uses_integration_helper(item: pytest.Item) -> bool:
    if not isinstance(item, pytest.Function):
        return False
    fixtures = [definitions[-1].func for definitions in item._fixtureinfo.name2fixturedefs.values()]
    seen: set[int] = set()
    return any(reaches_integration(code, seen) for code in [item.obj, *fixtures])


def reaches_integration(code: object, seen: set[int]) -> bool:
    """Whether test code (a function, or a class and its methods) refers to an integration
    helper, following the test code it refers to in turn."""
    if any(code is helper for helper in INTEGRATION_HELPERS):
        return True
    if id(code) in seen or not defined_in_tests(code):
        return False
    seen.add(id(code))
    if isinstance(code, type):
        return any(reaches_integration(member, seen) for member in vars(code).values())
    function = getattr(code, "__func__", code)  # a method, static or class method
    if not isinstance(function, types.FunctionType):
        return False
    scope = function.__globals__
    helper_modules = {helper.__module__ for helper in INTEGRATION_HELPERS}
    modules = [
        value
        for value in scope.values()
        if isinstance(value, types.ModuleType)
        and (defined_in_tests(value) or value.__name__ in helper_modules)
    ]
    for name in names_used(function.__code__):
        found = [scope.get(name), *(getattr(module, name, None) for module in modules)]
        if any(reaches_integration(target, seen) for target in found if target is not None):
            return True
    return False


def names_used(code: types.CodeType) -> Iterator[str]:
    """The global and attribute names a function uses, in its nested functions too."""
    yield from code.co_names
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            yield from names_used(constant)


def defined_in_tests(code: object) -> bool:
    if isinstance(code, types.ModuleType):
        return code.__name__.startswith("tests.") or code.__name__ == "tests"
    if isinstance(code, staticmethod | classmethod):
        code = code.__func__
    return str(getattr(code, "__module__", "")).startswith("tests")


@pytest.fixture(autouse=True)
def no_log_handlers_from_other_tests() -> Iterator[None]:
    # `main()` run in-process installs a handler on the stderr of its test: left there, the
    # next test's log lines would land in that test's captured stderr.
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(autouse=True)
def no_secrets_from_other_tests() -> None:
    # Keys registered by one test would redact words in the next one's messages (a test's
    # three-letter key "key" blanks out every "key" word), as no single process would.
    logs.forget_secrets()


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
