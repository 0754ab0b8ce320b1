"""Structured logging (logfmt or JSON) that never prints a key.

The engine registers here the key and named secrets of every account it is given (the
http_json provider its login tokens while it uses them); the formatters replace any occurrence
of one in a message, a field or a traceback with `<redacted>`. Code does not
log keys on purpose; this catches the accident (a provider echoing the key in an error text,
a library putting a request body in an exception).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

REDACTED = "<redacted>"
# A key this long is redacted wherever it appears.
MIN_SECRET_LENGTH = 6
# Text that starts like a key for this many characters is redacted as far as it goes on
# matching (an upstream echoing "abcdef12..." of a rejected key). Shorter, it would catch
# ordinary words: a key "unknown-key-1" must not blank out "unknown provider".
MIN_ECHOED_PREFIX = 8
# Characters that continue a word: a shorter key is redacted only where it stands alone, so
# a three-letter key does not blank out every word containing those letters.
_WORD = r"[A-Za-z0-9_\-]"
_secrets: set[str] = set()
_by_prefix: dict[str, list[str]] = {}
_whole_secrets: set[str] = set()
_short_secrets: dict[str, re.Pattern[str]] = {}
# Login tokens are chosen by the service, not the user: one could be `warn`, `timeout` or
# `invalid_response`, which redacted would blank every log line that has the word. A token is
# redacted only whole, only while in use, and only from this length and when it is no word:
# shorter, or letters alone, it is no secret worth the name.
MIN_TOKEN_LENGTH = 12
_WORDLIKE = re.compile(r"[A-Za-z]+(?:[_.\-][A-Za-z]+)*")
_tokens: Counter[str] = Counter()
_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_LEVEL_NAMES = {"WARNING": "warn", "CRITICAL": "error"}


def register_secret(secret: str) -> None:
    if not secret or secret in _secrets:
        return
    _secrets.add(secret)
    if len(secret) >= MIN_ECHOED_PREFIX:
        _by_prefix.setdefault(secret[:MIN_ECHOED_PREFIX], []).append(secret)
    elif len(secret) >= MIN_SECRET_LENGTH:
        _whole_secrets.add(secret)
    else:
        _short_secrets[secret] = re.compile(f"(?<!{_WORD}){re.escape(secret)}(?!{_WORD})")


def register_secrets(secrets: Iterable[str]) -> None:
    for secret in secrets:
        register_secret(secret)


def registered_secrets() -> frozenset[str]:
    """The keys and secrets, and the login tokens in use."""
    return frozenset(_secrets | _tokens.keys())


def register_token(token: str) -> None:
    """Redact a login token wherever it appears whole, until `forget_token`."""
    if len(token) >= MIN_TOKEN_LENGTH and not _WORDLIKE.fullmatch(token):
        _tokens[token] += 1


def forget_token(token: str) -> None:
    """Stop redacting a token that was replaced or expired (once each account holding it has
    forgotten it): a token a login brings every collection must not pile up here."""
    if _tokens[token] > 1:
        _tokens[token] -= 1
    else:
        _tokens.pop(token, None)


def forget_secrets() -> None:
    """Forget every registered key (a fresh process knows none; the tests start each so)."""
    _tokens.clear()
    _secrets.clear()
    _by_prefix.clear()
    _whole_secrets.clear()
    _short_secrets.clear()


def redact(text: str) -> str:
    """`text` with every registered key, and every echoed start of one, as `<redacted>`."""
    for prefix, secrets in _by_prefix.items():
        if prefix in text:
            text = _redact_prefixed(text, prefix, secrets)
    for secret in _whole_secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    for secret, pattern in _short_secrets.items():
        if secret in text:
            text = pattern.sub(REDACTED, text)
    for token in _tokens:
        if token in text:
            text = text.replace(token, REDACTED)
    return text


def redact_also(text: str, secrets: Iterable[str]) -> str:
    """`text` redacted as the log is, and of `secrets` too: values a config holds in a key's
    place that were never registered (a config refused on reload, or by --config.check)."""
    text = redact(text)
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        if secret not in text:
            continue
        if len(secret) >= MIN_SECRET_LENGTH:
            text = text.replace(secret, REDACTED)
        else:
            text = re.sub(f"(?<!{_WORD}){re.escape(secret)}(?!{_WORD})", REDACTED, text)
    return text


def _redact_prefixed(text: str, prefix: str, secrets: list[str]) -> str:
    parts: list[str] = []
    start = 0
    while (found := text.find(prefix, start)) >= 0:
        # Redact as far as the text goes on matching the longest-matching key.
        end = max(found + _common_length(text, found, secret) for secret in secrets)
        parts.append(text[start:found])
        parts.append(REDACTED)
        start = end
    parts.append(text[start:])
    return "".join(parts)


def _common_length(text: str, at: int, secret: str) -> int:
    length = 0
    limit = min(len(secret), len(text) - at)
    while length < limit and text[at + length] == secret[length]:
        length += 1
    return length


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
