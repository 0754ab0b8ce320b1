"""Logs: structured, one warning per failed collection, and never a key."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator

import pytest

from exporter import logs
from exporter.config import build_config
from exporter.demo import SimAccount, Simulator, respond
from exporter.engine import Engine
from exporter.upstream import Upstream
from tests.helpers import account


class Capture(logging.Handler):
    def __init__(self, formatter: logging.Formatter) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(formatter)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def logfmt() -> Iterator[Capture]:
    capture = Capture(logs.LogfmtFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    yield capture
    root.removeHandler(capture)
    root.setLevel(level)


def test_logfmt_quotes_and_escapes() -> None:
    record = logging.makeLogRecord(
        {
            "name": "exporter.engine",
            "levelname": "WARNING",
            "msg": 'collection "failed"',
            "account": "a b",
            "reason": "auth",
        }
    )
    line = logs.LogfmtFormatter().format(record)
    assert (
        ' level=warn logger=exporter.engine msg="collection \\"failed\\"" account="a b" reason=auth'
        in line
    )
    assert line.startswith("ts=")


def test_json_lines() -> None:
    record = logging.makeLogRecord(
        {"name": "x", "levelname": "INFO", "msg": "hello %s", "args": ("there",), "account": "main"}
    )
    assert json.loads(logs.JsonFormatter().format(record))["msg"] == "hello there"


def test_registered_secrets_are_redacted_everywhere() -> None:
    logs.register_secret("sekrit-value-4242")
    record = logging.makeLogRecord(
        {
            "name": "x",
            "levelname": "ERROR",
            "msg": "boom sekrit-value-4242",
            "cause": "key sekrit-value-4242 refused",
        }
    )
    try:
        raise ValueError("inside sekrit-value-4242")
    except ValueError:
        record.exc_info = sys.exc_info()
    for formatter in (logs.LogfmtFormatter(), logs.JsonFormatter()):
        line = formatter.format(record)
        assert "sekrit-value-4242" not in line
        assert logs.REDACTED in line


async def test_one_warning_per_failed_collection(
    simulator: Simulator, upstream: Upstream, logfmt: Capture
) -> None:
    # The provider echoes the key in its error code: the log must not.
    key = "ECHOED_KEY_1234567"
    simulator.add("datalabs", SimAccount(key).then(respond(200, {"errorId": 1, "errorCode": key})))
    config = build_config(
        {"accounts": [account("main", "datalabs", key, simulator.base_url("datalabs"))]}, source="t"
    )
    await Engine(config, upstream).collect()
    warnings = [line for line in logfmt.lines if "level=warn" in line]
    assert len(warnings) == 1
    assert (
        'msg="collection failed" account=main provider=datalabs reason=provider_error'
        in warnings[0]
    )
    assert "cause=" in warnings[0]
    assert key not in "\n".join(logfmt.lines)


def test_an_echoed_start_of_a_key_is_redacted() -> None:
    logs.register_secret("prefixkey-9b7e3d51a0")
    assert logs.redact("rejected key 'prefixkey-9b7…'") == f"rejected key '{logs.REDACTED}…'"
    assert logs.redact("key prefixk… is wrong") == "key prefixk… is wrong"  # under eight
    assert logs.redact("the prefix-free form") == "the prefix-free form"


def test_a_short_key_is_redacted_where_it_stands_alone() -> None:
    logs.register_secret("q7z")
    assert logs.redact("key q7z refused") == f"key {logs.REDACTED} refused"
    assert logs.redact("account q7zone") == "account q7zone"


def test_an_ordinary_word_a_key_starts_with_is_kept() -> None:
    logs.register_secret("unknown-key-000000")
    assert logs.redact("accounts[0].provider: unknown provider") == (
        "accounts[0].provider: unknown provider"
    )
