"""Tests are marked `integration` by what they use (tests/conftest.py), so the fast loop
`pytest -m 'not integration'` (docs/development.md) leaves out every test that needs an
external tool, including tests written after this one, with no decorator to remember."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests import shipping
from tests.conftest import reaches_integration
from tests.helpers import (
    ExporterProcess,
    assert_promtool_accepts_metrics,
    promtool,
    require_tool,
    samples,
)

# Test code of every shape the marking follows. They are looked up by name below, so the tests
# that check them do not refer to them (and are not marked themselves).


def calls_a_tool() -> None:
    require_tool("promtool")


def through_test_code() -> None:
    calls_a_tool()


class Stack:
    def start(self) -> None:
        promtool("--version")


def through_a_class() -> None:
    Stack()


def through_a_module() -> None:
    shipping.copy_checkout(Path("/nonexistent"))


def in_a_nested_function() -> Callable[[], None]:
    def later() -> None:
        assert_promtool_accepts_metrics(b"")

    return later


def looks_a_program_up() -> str | None:
    return shutil.which("chromium")


def starts_the_exporter() -> None:
    with ExporterProcess("--demo"):
        pass


def plain() -> None:
    samples("")


@pytest.mark.parametrize(
    ("name", "integration"),
    [
        ("calls_a_tool", True),
        ("through_test_code", True),
        ("through_a_class", True),
        ("through_a_module", True),
        ("in_a_nested_function", True),
        ("looks_a_program_up", True),
        ("starts_the_exporter", True),
        ("plain", False),
    ],
)
def test_what_reaches_an_integration_helper(name: str, integration: bool) -> None:
    assert reaches_integration(globals()[name], set()) is integration


@pytest.fixture
def tool_finder() -> Callable[[str], str]:
    return require_tool


def test_a_fixture_that_uses_a_helper_marks_the_test(
    tool_finder: Callable[[str], str], request: pytest.FixtureRequest
) -> None:
    assert request.node.get_closest_marker("integration") is not None


def test_a_test_using_no_helper_is_not_marked(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("integration") is None
