"""Basic auth and client-certificate checks for every endpoint (`--web.config.file`).

bcrypt is slow on purpose (tens of milliseconds at cost 10), so:
- it runs in a small thread pool, never on the event loop, and no more at once than there are
  cores, so a flood of logins cannot starve scrapes of CPU;
- an unknown user is checked against a dummy hash of the same cost as the real ones, so a
  wrong user costs the same time as a wrong password and names cannot be probed;
- outcomes are cached under an HMAC of user, hash and the presented password (a random key
  per process, so the cache holds no password and no usable digest of one); a changed
  password or hash is a different entry, and concurrent checks of one entry share one bcrypt;
- verified logins are cached apart from failures, so a flood of wrong passwords, however
  many and however varied, never pushes a real client's login out of the cache: a client
  once logged in never waits for bcrypt again;
- at most `MAX_PENDING_PER_WORKER` checks per thread wait their turn; beyond that a login
  that needs bcrypt is refused at once (429), instead of joining a queue that would make
  every newcomer, the real Prometheus included, wait for the whole flood.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import os
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

import bcrypt
from aiohttp import web

from exporter.connections import RateLimitedLog
from exporter.webconfig import WebConfig

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CACHE_SIZE = 1024  # entries, each of successes and of failures
# bcrypt checks waiting or running per thread: a wait of well under a second at cost 10.
MAX_PENDING_PER_WORKER = 8
RETRY_AFTER_SECONDS = 1
# bcrypt reads at most 72 bytes; Go's bcrypt (the toolkit's) refuses longer passwords, so do we.
BCRYPT_MAX_PASSWORD_BYTES = 72
REALM = 'Basic realm="apibalance-exporter", charset="UTF-8"'


class TooManyLogins(Exception):
    """More logins wait for bcrypt than the pool works through in a moment."""


class BasicAuth:
    def __init__(self, users: Mapping[str, bytes], *, workers: int | None = None) -> None:
        self._users = dict(users)
        self._cache_key = secrets.token_bytes(32)
        self._successes: OrderedDict[bytes, None] = OrderedDict()
        self._failures: OrderedDict[bytes, None] = OrderedDict()
        self._inflight: dict[bytes, asyncio.Future[bool]] = {}
        workers = workers or min(4, os.cpu_count() or 1)
        self.max_pending = workers * MAX_PENDING_PER_WORKER
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bcrypt")
        self._refusals = RateLimitedLog(
            "too many logins waiting for bcrypt; refusing", 10.0, logger=log
        )
        cost = max((int(h[4:6]) for h in self._users.values()), default=10)
        self.bcrypt_checks = 0
        self._dummy_hash = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(cost))

    def close(self) -> None:
        # Checks already queued still finish: requests that started before a reload get
        # their answer from the users they started with.
        self._executor.shutdown(wait=False)

    async def check(self, authorization: str | None) -> str | None:
        """The authenticated user name, or None. Raises TooManyLogins when the credentials
        need a bcrypt check and too many already wait for one."""
        credentials = parse_basic(authorization)
        if credentials is None:
            return None
        user, password = credentials
        hashed = self._users.get(user)
        key = self._entry(user.encode(), hashed or b"", password)
        if key in self._successes:
            self._successes.move_to_end(key)
            return user
        if key in self._failures:
            self._failures.move_to_end(key)
            return None
        pending = self._inflight.get(key)
        if pending is None:
            if len(self._inflight) >= self.max_pending:
                self._refusals.hit(max_pending=str(self.max_pending))
                raise TooManyLogins
            self.bcrypt_checks += 1
            loop = asyncio.get_running_loop()
            pending = loop.run_in_executor(
                self._executor, _verify, password, hashed or self._dummy_hash, hashed is not None
            )
            self._inflight[key] = pending
            # Counted until bcrypt is done, not until the request waiting for it goes away:
            # a client hanging up does not take its check out of the queue.
            pending.add_done_callback(lambda done: self._finished(key, done))
        ok = await asyncio.shield(pending)
        return user if ok else None

    def _finished(self, key: bytes, done: asyncio.Future[bool]) -> None:
        self._inflight.pop(key, None)
        if done.cancelled() or done.exception() is not None:
            return
        cache = self._successes if done.result() else self._failures
        cache[key] = None
        if len(cache) > CACHE_SIZE:
            cache.popitem(last=False)

    def _entry(self, *parts: bytes) -> bytes:
        # Length-prefixed, so no choice of user and password can collide with another
        # triple (the toolkit's CVE-2022-46146 was a cache key made by plain concatenation).
        mac = hmac.new(self._cache_key, digestmod=hashlib.sha256)
        for part in parts:
            mac.update(len(part).to_bytes(8, "big"))
            mac.update(part)
        return mac.digest()


def _verify(password: bytes, hashed: bytes, known_user: bool) -> bool:
    if len(password) > BCRYPT_MAX_PASSWORD_BYTES or b"\0" in password:
        # The C bcrypt stops at a NUL byte ("secret\0x" would pass for "secret") and reads
        # 72 bytes at most; Go's bcrypt, the toolkit's, matches neither such password. Spend
        # the same time as a real check, then refuse.
        bcrypt.checkpw(password[:BCRYPT_MAX_PASSWORD_BYTES].replace(b"\0", b"-"), hashed)
        return False
    try:
        ok = bcrypt.checkpw(password, hashed)
    except ValueError:
        # A hash bcrypt cannot read was refused when the web config was loaded; this is the
        # dummy hash path or a password bcrypt rejects. Either way: no.
        return False
    return ok and known_user


def parse_basic(authorization: str | None) -> tuple[str, bytes] | None:
    """(user, password) from an `Authorization: Basic ...` header, or None."""
    if not authorization:
        return None
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None
    try:
        return user.decode("utf-8"), password
    except UnicodeDecodeError:
        return None


class Guard:
    """What the web config asks of every request: basic auth, allowed client certificates,
    extra response headers. Swapped whole on reload, so a request sees one config."""

    def __init__(self, config: WebConfig) -> None:
        self.config = config
        self.auth = BasicAuth(config.users) if config.users else None

    def close(self) -> None:
        if self.auth is not None:
            self.auth.close()


class GuardHolder:
    """The current guard; the middleware reads it per request, reload replaces it."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    def replace(self, guard: Guard) -> None:
        old, self.guard = self.guard, guard
        old.close()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        guard = self.guard
        headers = guard.config.headers
        if guard.config.allowed_sans and not _client_san_allowed(
            request, guard.config.allowed_sans
        ):
            return _refusal(
                headers, web.Response(status=403, text="client certificate not allowed\n")
            )
        if guard.auth is not None:
            try:
                user = await guard.auth.check(request.headers.get("Authorization"))
            except TooManyLogins:
                return _refusal(
                    headers,
                    web.Response(
                        status=429,
                        text="too many logins being checked; try again\n",
                        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
                    ),
                )
            if user is None:
                log.debug(
                    "basic auth failed", extra={"path": request.path, "peer": request.remote or ""}
                )
                return _refusal(
                    headers,
                    web.Response(
                        status=401,
                        text="Unauthorized\n",
                        headers={"WWW-Authenticate": REALM},
                    ),
                )
        try:
            response = await handler(request)
        except web.HTTPException as error:
            _with(headers, error)
            raise
        return _with(headers, response)


def _refusal(headers: Mapping[str, str], response: web.StreamResponse) -> web.StreamResponse:
    """A request the checks refused ends its connection: requests pipelined behind it, tens
    of thousands from a client that never reads, are not answered one by one; a client with
    the password (a browser asked for it) opens a new connection."""
    response.force_close()
    return _with(headers, response)


def _with(headers: Mapping[str, str], response: web.StreamResponse) -> web.StreamResponse:
    """The response with the web config's extra headers (HSTS and the like) set."""
    for name, value in headers.items():
        response.headers[name] = value
    return response


def _client_san_allowed(request: web.Request, allowed: frozenset[str]) -> bool:
    transport = request.transport
    peercert = transport.get_extra_info("peercert") if transport is not None else None
    if not peercert:
        return False
    names = {value for _kind, value in peercert.get("subjectAltName", ())}
    return bool(names & allowed)
