"""Talking to providers: one shared session, bounded concurrency, capped bodies, no redirects.

Every request of a collection goes through `AccountHttp`, which knows the account's base URL
and the collection's deadline. A provider hands it a *path*, never a URL, so a key can only
ever travel to the host the user configured; redirects are refused rather than followed with
the key. Transient failures are retried with jittered back-off while the deadline allows.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import json
import logging
import random
import re
import time
import urllib.parse
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import yarl

from exporter import __version__
from exporter.model import CollectError, Reason
from exporter.trace import TRACE

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20
# The encodings decoded here, within the body cap; an upstream sending any other was not asked
# to and is refused (aiohttp's own decoding reads a whole body however large it inflates).
ACCEPT_ENCODING = "gzip, deflate"
READ_CHUNK_BYTES = 64 * 1024
RETRYABLE_STATUSES = frozenset({502, 503, 504})
MAX_ATTEMPTS = 3
# Back-off before retry n is about BACKOFF_BASE * 2**n seconds, jittered to +-50 %.
BACKOFF_BASE = 0.1
# A retry is pointless if it cannot get this long before the deadline.
MIN_ATTEMPT_SECONDS = 0.25
# Connecting is the step that can hang on a dead host while a retry would reach a live one.
CONNECT_TIMEOUT_SHARE = 0.5
DEFAULT_RETRY_AFTER = 60.0
MAX_RETRY_AFTER = 3600.0
USER_AGENT = f"apibalance-exporter/{__version__}"


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


# One decoder for every answer: `json.loads(..., parse_constant=...)` builds a new one per call.
_JSON_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


# How web pages start (nginx's, Apache's, a framework's error pages), unlike XML or text.
_HTML_START_RE = re.compile(
    rb"\s*<(?:!doctype\s+html|html|head|body|title|h1|p|div|center|pre)\b", re.IGNORECASE
)


@functools.lru_cache(maxsize=4096)
def _url(text: str) -> yarl.URL:
    """The parsed URL, once per URL rather than once per request (the same parse aiohttp does
    with a string; the URLs come from the config, so the cache holds a few per account)."""
    return yarl.URL(text)


@dataclass(frozen=True, slots=True)
class Answer:
    """A complete upstream response: status, headers and (capped) body."""

    status: int
    body: bytes
    # Case-insensitive, as HTTP header names are (aiohttp's own view of the response's).
    headers: Mapping[str, str]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def is_html(self) -> bool:
        """A web page (a server's or a proxy's own), not an API's answer. By its first tag:
        a Content-Type says little, since plain-text APIs in PHP answer `text/html` too."""
        return _HTML_START_RE.match(self.body[:256]) is not None

    def json(self) -> Any:
        """The body as JSON; NaN and Infinity literals are refused like any other non-JSON."""
        body = self.body
        try:
            # What json.loads does with bytes: UTF-8, -16 or -32, told apart by the first bytes.
            return _JSON_DECODER.decode(body.decode(json.detect_encoding(body), "surrogatepass"))
        except (ValueError, UnicodeDecodeError):
            kind = "HTML" if self.body.lstrip()[:1] == b"<" else "not JSON"
            raise CollectError(
                Reason.INVALID_RESPONSE, f"HTTP {self.status} body is {kind}"
            ) from None
        except RecursionError:
            # The decoder recurses per level; no balance answer nests hundreds deep.
            raise CollectError(
                Reason.INVALID_RESPONSE, f"HTTP {self.status} body is JSON nested too deeply"
            ) from None

    def json_or_none(self) -> Any:
        try:
            return self.json()
        except CollectError:
            return None


def parse_retry_after(value: str | None, now: float | None = None) -> float:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), bounded."""
    if not value:
        return DEFAULT_RETRY_AFTER
    value = value.strip()
    seconds: float
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return DEFAULT_RETRY_AFTER
        seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 1.0), MAX_RETRY_AFTER)


class Upstream:
    """The process-wide HTTP client: one `ClientSession`, the `max_concurrency` bound on
    requests in flight and the `max_concurrency_per_host` bound on those to one host."""

    def __init__(self, max_concurrency: int, max_concurrency_per_host: int | None = None) -> None:
        self._limit = asyncio.Semaphore(max_concurrency)
        self._max_concurrency = max_concurrency
        self._per_host = max_concurrency_per_host or max_concurrency
        # By origin (scheme, host, port): a provider's API is one origin, and limits on how
        # many requests a client may send at once are the origin's.
        self._host_limits: dict[tuple[str, str | None, int | None], asyncio.Semaphore] = {}
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=0,  # the semaphore is the bound; a second one here would only queue twice
                ttl_dns_cache=300,
                # Scrapes come every 15-60 s; keep connections across them.
                keepalive_timeout=120,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers={
                    "User-Agent": USER_AGENT,
                    "Accept": "application/json",
                    "Accept-Encoding": ACCEPT_ENCODING,
                },
                auto_decompress=False,
                # Proxies from the environment would see every key; opt-in is a feature for later.
                trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                raise_for_status=False,
            )
        return self._session

    def set_max_concurrency(
        self, max_concurrency: int, max_concurrency_per_host: int | None = None
    ) -> None:
        """New bounds, for requests that start from now on (those in flight keep theirs)."""
        if max_concurrency != self._max_concurrency:
            self._limit = asyncio.Semaphore(max_concurrency)
            self._max_concurrency = max_concurrency
        per_host = max_concurrency_per_host or max_concurrency
        if per_host != self._per_host:
            self._host_limits = {}
            self._per_host = per_host

    @property
    def limit(self) -> asyncio.Semaphore:
        return self._limit

    def host_limit(self, url: yarl.URL) -> asyncio.Semaphore:
        """The bound on requests in flight to the origin of `url`."""
        origin = (url.scheme, url.host, url.port)
        limit = self._host_limits.get(origin)
        if limit is None:
            limit = self._host_limits[origin] = asyncio.Semaphore(self._per_host)
        return limit

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def for_account(self, base_url: str, deadline: float) -> AccountHttp:
        return AccountHttp(self, base_url, deadline)


class AccountHttp:
    """Requests of one collection of one account: relative to its base URL, within its deadline."""

    def __init__(self, upstream: Upstream, base_url: str, deadline: float) -> None:
        self._upstream = upstream
        self._base_url = base_url
        self.deadline = deadline
        self.requests = 0

    def _remaining(self) -> float:
        return self.deadline - asyncio.get_running_loop().time()

    async def request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        json_body: Any = None,
        form: Mapping[str, str] | None = None,
        from_origin: bool = False,
    ) -> Answer:
        """`path` is appended to the account's URL, or with `from_origin` to its origin only
        (scheme, host, port): either way the request goes to the configured host."""
        if from_origin:
            # Not cached: such a path may carry a key, which must not outlive the config.
            url = yarl.URL(str(_url(self._base_url).origin()) + path)
        else:
            url = _url(self._base_url + path)
        send_headers = dict(headers or {})
        data = None
        if json_body is not None:
            data = json.dumps(json_body).encode()
            send_headers["Content-Type"] = "application/json"
        elif form is not None:
            data = urllib.parse.urlencode(form).encode()
            send_headers["Content-Type"] = "application/x-www-form-urlencoded"
        trace = TRACE.get()
        attempt = 0
        while True:
            attempt += 1
            if trace is not None:
                sent = {**self._upstream.session.headers, **send_headers}
                number = trace.sent(method, url, sent, data)
            try:
                answer = await self._attempt(method, url, send_headers, data)
            except CollectError as error:
                if trace is not None:
                    trace.failed(number, error)
                if not self._may_retry(error, attempt):
                    raise
                await self._backoff(attempt)
                continue
            if trace is not None:
                trace.received(number, answer.status, answer.headers, answer.body)
            return answer

    def _may_retry(self, error: CollectError, attempt: int) -> bool:
        return (
            error.transient and attempt < MAX_ATTEMPTS and self._remaining() > MIN_ATTEMPT_SECONDS
        )

    async def _backoff(self, attempt: int) -> None:
        delay = BACKOFF_BASE * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)  # noqa: S311
        await asyncio.sleep(max(0.0, min(delay, self._remaining() - MIN_ATTEMPT_SECONDS)))

    async def _attempt(
        self, method: str, url: yarl.URL, headers: dict[str, str], data: bytes | None
    ) -> Answer:
        remaining = self._remaining()
        if remaining <= 0:
            raise CollectError(Reason.TIMEOUT, "no time left in the scrape budget")
        timeout = _connect_timeout(max(remaining * CONNECT_TIMEOUT_SHARE, 0.05))
        # The host's bound first: a request waiting for its host holds no slot of the
        # process's, which requests to other hosts can use meanwhile. Taken and given back by
        # hand rather than with `async with`, whose enter and exit are two coroutines more per
        # bound and request.
        host_limit = self._upstream.host_limit(url)
        limit = self._upstream.limit
        await host_limit.acquire()
        try:
            await limit.acquire()
            try:
                self.requests += 1
                async with self._upstream.session.request(
                    method,
                    url,
                    headers=headers,
                    data=data,
                    allow_redirects=False,
                    timeout=timeout,
                ) as response:
                    return await self._read(response)
            except aiohttp.ClientError as error:
                raise _collect_error(error) from None
            finally:
                limit.release()
        finally:
            host_limit.release()

    async def _read(self, response: aiohttp.ClientResponse) -> Answer:
        status = response.status
        if 300 <= status < 400:
            # Following would hand the key to wherever the redirect points.
            raise CollectError(Reason.HTTP, f"HTTP {status} redirect refused")
        if status == 429:
            raise CollectError(
                Reason.RATE_LIMITED,
                "HTTP 429 Too Many Requests",
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
            )
        if status in RETRYABLE_STATUSES:
            raise CollectError(Reason.HTTP, f"HTTP {status}", transient=True)
        length = response.content_length
        if length is not None and length > MAX_BODY_BYTES:
            raise CollectError(Reason.INVALID_RESPONSE, "body larger than 1 MiB")
        decoder = _BoundedDecoder.for_encoding(response.headers.get("Content-Encoding", ""))
        if length is not None:
            # aiohttp's parser ends the body at Content-Length (at most MAX_BODY_BYTES here), so
            # it can be read whole, in one step rather than a chunk at a time; a small answer
            # has usually come whole with its head, and is taken without a wait.
            content = response.content
            decoder.feed(content.read_nowait() if content.is_eof() else await content.read())
            return Answer(status, decoder.finish(), response.headers)
        size = 0
        async for chunk in response.content.iter_chunked(READ_CHUNK_BYTES):
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise CollectError(Reason.INVALID_RESPONSE, "body larger than 1 MiB")
            decoder.feed(chunk)
        return Answer(status, decoder.finish(), response.headers)


def _connect_timeout(seconds: float) -> aiohttp.ClientTimeout:
    """aiohttp's timeouts for a request that may take `seconds` to connect, in whole
    hundredths (down): requests sent together share one, whose making was 1.3 % of the
    instructions of a collection (callgrind)."""
    return _connect_timeout_of(int(seconds * 100))


@functools.lru_cache(maxsize=256)
def _connect_timeout_of(hundredths: int) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=None, sock_connect=hundredths / 100)


def _collect_error(error: aiohttp.ClientError) -> CollectError:
    """What a failed request means for the collection."""
    if isinstance(error, aiohttp.ConnectionTimeoutError):
        return CollectError(Reason.CONNECTION, "connect timed out", transient=True)
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return CollectError(Reason.CONNECTION, "server closed the connection", transient=True)
    if isinstance(error, aiohttp.ClientPayloadError):
        return CollectError(Reason.CONNECTION, "response body cut short", transient=True)
    if isinstance(error, aiohttp.ClientConnectorError):
        # The OS error text names host and port only, never path, headers or body.
        return CollectError(
            Reason.CONNECTION,
            f"cannot connect: {error.os_error.strerror or 'refused'}",
            transient=True,
        )
    if isinstance(error, aiohttp.ClientResponseError):
        return CollectError(Reason.HTTP, f"malformed HTTP response ({error.status})")
    return CollectError(Reason.CONNECTION, type(error).__name__, transient=True)


class _BoundedDecoder:
    """A body as it arrives, decoded as it arrives, refused the moment the decoded body passes
    `MAX_BODY_BYTES`: a gzip bomb of a few hundred KiB that would inflate to gigabytes costs
    one megabyte at most."""

    def __init__(self, encoding: str) -> None:
        self._encoding = encoding
        self._parts: list[bytes] = []
        self._size = 0
        self._inflater: Any = None  # zlib's decompress object; created from the first bytes

    @classmethod
    def for_encoding(cls, header: str) -> _BoundedDecoder:
        encoding = header.strip().lower()
        if encoding in ("", "identity"):
            return cls("")
        if encoding in ("gzip", "x-gzip", "deflate"):
            return cls(encoding)
        # Never asked for (ACCEPT_ENCODING), so never trusted: a stacked or unknown encoding
        # could only be decoded unbounded by another library, or read as garbage.
        raise CollectError(
            Reason.INVALID_RESPONSE, f"body in an encoding not asked for: {_known(encoding)}"
        )

    def feed(self, data: bytes) -> None:
        if not self._encoding:
            self._keep(data)
            return
        while data:
            if self._inflater is None:
                self._inflater = zlib.decompressobj(self._window_bits(data))
            # One byte past the cap is enough to know the cap is passed.
            room = MAX_BODY_BYTES - self._size + 1
            try:
                self._keep(self._inflater.decompress(data, room))
            except zlib.error:
                raise CollectError(
                    Reason.INVALID_RESPONSE, f"body is not valid {self._encoding}"
                ) from None
            data = self._inflater.unconsumed_tail
            if self._inflater.eof:
                # Concatenated gzip members are one body (RFC 1952); anything after a deflate
                # stream is left over, as zlib itself leaves it.
                data = self._inflater.unused_data if self._encoding != "deflate" else b""
                self._inflater = None if data else self._inflater

    def finish(self) -> bytes:
        started = self._inflater is not None or self._parts
        if started and self._encoding and (self._inflater is None or not self._inflater.eof):
            raise CollectError(
                Reason.INVALID_RESPONSE, f"{self._encoding} body ends before its stream does"
            )
        return b"".join(self._parts)

    def _window_bits(self, first: bytes) -> int:
        if self._encoding != "deflate":
            return 16 + zlib.MAX_WBITS
        # "deflate" is the zlib format (RFC 9110 8.4.1.2), though some servers send the raw
        # stream: the zlib format's first byte says method 8 in its low four bits.
        return zlib.MAX_WBITS if first[0] & 0x0F == 8 else -zlib.MAX_WBITS

    def _keep(self, decoded: bytes) -> None:
        self._size += len(decoded)
        if self._size > MAX_BODY_BYTES:
            raise CollectError(
                Reason.INVALID_RESPONSE,
                "body larger than 1 MiB"
                + (f" once {self._encoding} is decoded" if self._encoding else ""),
            )
        self._parts.append(decoded)


# The registered content codings (RFC 9110 8.4.1): the only header values a message quotes.
_CODINGS = frozenset(
    {"br", "compress", "deflate", "gzip", "identity", "x-compress", "x-gzip", "zstd"}
)


def _known(encoding: str) -> str:
    """The Content-Encoding as a message may show it: an upstream's free text could be
    anything (the key it was sent, for one), so only registered codings are named."""
    codings = [part.strip() for part in encoding.split(",")]
    return ", ".join(codings) if all(c in _CODINGS for c in codings) else "an unknown one"
