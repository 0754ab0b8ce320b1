"""What a debug collection records as it goes: the requests sent, the answers received and
the values read (exporter.debug shows them; docs/configuration.md: Debugging an account).

Every collection passes the hooks (in exporter.upstream and the http_json expressions), so
this is what every process loads; showing a trace, `traced_collection` and `render`, is
exporter.debug, loaded by the first debug request or `--collect.once`. The hooks cost the
normal scrape nothing but a context-variable lookup per request and per expression: they
find `TRACE` unset unless the collection's task was started by a debug collection.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from exporter import logs
from exporter.model import CollectError

# Set only in the task of a debug collection (tasks copy the context they are created in).
TRACE: ContextVar[Trace | None] = ContextVar("apibalance_debug_trace", default=None)

MAX_BODY_SHOWN = 4096
# Of an answer, a trace keeps what can be shown (up to 4 bytes a character) and as much again
# for a key that starts within it: the last trace of each account stays in memory.
KEPT_BODY_BYTES = 8 * MAX_BODY_SHOWN
# Headers whose values are the client's own, never a credential.
PLAIN_HEADERS = frozenset({"user-agent", "accept", "accept-encoding", "content-type"})


@dataclass(frozen=True, slots=True)
class Sent:
    number: int
    method: str
    url: str
    header_names: tuple[str, ...]
    body: bytes | None


@dataclass(frozen=True, slots=True)
class Received:
    number: int
    status: int
    content_type: str
    size: int
    body: bytes  # the start only: what is shown, and room for a key running past its end


@dataclass(frozen=True, slots=True)
class NoAnswer:
    number: int
    error: CollectError


@dataclass(frozen=True, slots=True)
class ValueRead:
    what: str
    expression: str
    result: Any = None
    error: str | None = None


@dataclass
class Trace:
    """What one collection sent and received, and what its expressions found, in order."""

    steps: list[Sent | Received | NoAnswer | ValueRead] = field(default_factory=list)

    requests: int = 0
    # The values of the headers sent (but the client's own): a header carries a credential
    # in forms the secrets themselves are not in (`Basic dXNlcjprZXk=`, a login's token).
    header_values: set[str] = field(default_factory=set)

    def sent(self, method: str, url: object, headers: Mapping[str, str], body: bytes | None) -> int:
        """Record a request; its number, for its answer (requests may run side by side)."""
        self.requests += 1
        self.steps.append(Sent(self.requests, method, str(url), tuple(headers), body))
        for name, value in headers.items():
            if name.lower() not in PLAIN_HEADERS:
                self.header_values.update(
                    part for part in (value, *value.split()) if len(part) >= logs.MIN_SECRET_LENGTH
                )
        return self.requests

    def received(self, number: int, status: int, headers: Mapping[str, str], body: bytes) -> None:
        kind = headers.get("Content-Type", "")
        self.steps.append(Received(number, status, kind, len(body), body[:KEPT_BODY_BYTES]))

    def failed(self, number: int, error: CollectError) -> None:
        self.steps.append(NoAnswer(number, error))

    def read(
        self, what: str, expression: str, result: Any = None, error: str | None = None
    ) -> None:
        self.steps.append(ValueRead(what, expression, result, error))
