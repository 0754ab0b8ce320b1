"""Structured logging (logfmt or JSON) that never prints a key.

Every key the config loader reads is registered here; a filter on the root handler replaces
any occurrence of one in a message, a field or a traceback with `<redacted>`. Code does not
log keys on purpose; this catches the accident (a provider echoing the key in an error text,
a library putting a request body in an exception).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

REDACTED = "<redacted>"
# Shorter strings would redact ordinary words; real API keys are far longer.
MIN_SECRET_LENGTH = 6
_secrets: set[str] = set()
_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_LEVEL_NAMES = {"WARNING": "warn", "CRITICAL": "error"}


def register_secret(secret: str) -> None:
    if len(secret) >= MIN_SECRET_LENGTH:
        _secrets.add(secret)


def redact(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS}


def _timestamp(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


class _Base(logging.Formatter):
    def pairs(self, record: logging.LogRecord) -> list[tuple[str, Any]]:
        pairs: list[tuple[str, Any]] = [
            ("ts", _timestamp(record)),
            ("level", _LEVEL_NAMES.get(record.levelname, record.levelname.lower())),
            ("logger", record.name),
            ("msg", record.getMessage()),
        ]
        pairs.extend(_fields(record).items())
        if record.exc_info:
            pairs.append(("exc", self.formatException(record.exc_info)))
        return [(key, redact(str(value))) for key, value in pairs]


class LogfmtFormatter(_Base):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{key}={_logfmt_value(value)}" for key, value in self.pairs(record))


class JsonFormatter(_Base):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(dict(self.pairs(record)), ensure_ascii=False)


def _logfmt_value(value: str) -> str:
    if value and not any(ch in value for ch in ' ="\\\n\t'):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def setup(level: str = "info", fmt: str = "logfmt") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log would add a line per scrape; failures are logged by the exporter.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
