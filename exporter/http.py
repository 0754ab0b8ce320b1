"""The exporter's HTTP endpoints (README: Endpoints).

/metrics, /probe, /, /-/healthy, /-/ready and /-/reload; the landing page itself is
exporter.landing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import zlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from aiohttp import web
from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR
from prometheus_client.registry import Collector

from exporter import logs
from exporter.auth import Guard, GuardHolder
from exporter.config import Config
from exporter.configfile import ConfigError
from exporter.engine import Engine, Snapshot
from exporter.landing import ReloadFailure, landing_page
from exporter.metrics import AccountCollector, ExporterCollector, ReloadStatus, render
from exporter.runtime import GcPause
from exporter.webconfig import WebConfig, ssl_error_reason

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ConfigLoader = Callable[[], Config]
WebConfigLoader = Callable[[], WebConfig]
T = TypeVar("T")
SCRAPE_PATHS = frozenset({"/metrics", "/probe"})
DEFAULT_MAX_REQUESTS = 40
RUNTIME_COLLECTORS: tuple[Collector, ...] = (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR)
# 1000 accounts are about 1 MB of text: 1.9 ms to compress at level 1 (60 KB), 5.6 ms at 6.
GZIP_LEVEL = 1
GZIP_WBITS = 16 + zlib.MAX_WBITS  # the gzip container


class Exporter:
    """The running exporter: the engine, how to reload its config, and the web application."""

    def __init__(
        self,
        engine: Engine,
        *,
        loader: ConfigLoader | None = None,
        max_requests: int = DEFAULT_MAX_REQUESTS,
        middlewares: Sequence[Any] = (),
        web_config: WebConfig | None = None,
        web_loader: WebConfigLoader | None = None,
    ) -> None:
        self.engine = engine
        self._loader = loader
        self._web_loader = web_loader
        # Every endpoint, unknown paths included, is behind the guard when a web config is set.
        self.guard = GuardHolder(Guard(web_config)) if web_config is not None else None
        if self.guard is not None:
            middlewares = [self.guard.middleware, *middlewares]
        self._max_requests = max_requests
        self._active_scrapes = 0
        self._reload_lock = asyncio.Lock()
        self.reload_status = ReloadStatus(True, time.time())
        self.reload_failure: ReloadFailure | None = None
        self._background: set[asyncio.Task[object]] = set()
        self._exporter_collector = ExporterCollector(lambda: self.reload_status)
        self._gc_pause = GcPause()
        self.app = web.Application(middlewares=[*middlewares, self._limit_scrapes])
        self.app.router.add_get("/", self.landing)
        self.app.router.add_get("/metrics", self.metrics)
        self.app.router.add_get("/probe", self.probe)
        self.app.router.add_get("/-/healthy", self.healthy)
        self.app.router.add_get("/-/ready", self.ready)
        self.app.router.add_post("/-/reload", self.reload_endpoint)
        self.app.on_cleanup.append(self._stop_background)

    def collect_in_background(self) -> None:
        """Collect every account once now, without anyone waiting: the landing page has
        figures to show before Prometheus first scrapes. A scrape meanwhile joins it."""
        task: asyncio.Task[object] = asyncio.get_running_loop().create_task(self._collect())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _collect(
        self, names: Sequence[str] | None = None, scrape_timeout: float | None = None
    ) -> list[Snapshot]:
        """The engine's collection, with the garbage collector paused while it waits."""
        with self._gc_pause:
            return await self.engine.collect(names, scrape_timeout)

    async def _stop_background(self, app: web.Application) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    @property
    def web_config(self) -> WebConfig | None:
        """The web config in force (the guard's: reload replaces them together)."""
        return self.guard.guard.config if self.guard is not None else None

    # -- reload ---------------------------------------------------------------------------

    async def reload(self) -> list[str]:
        """Load the config (and web config) again; apply both only if both are valid.

        Returns the problems (empty: success).
        """
        if self._loader is None and self._web_loader is None:
            return []
        async with self._reload_lock:
            # Reading key and certificate files is blocking I/O: off the event loop.
            config, web_config, problems = await asyncio.to_thread(self._load_both)
            if not problems and web_config is not None:
                problems = self._renew_certificate(web_config)
            if problems:
                return self._reload_failed(problems)
            guard = None
            if web_config is not None:
                # A new guard makes its dummy bcrypt hash, as slow as a login: off the loop too.
                guard = await asyncio.to_thread(self._next_guard, web_config)
            if config is not None:
                for warning in config.warnings:
                    log.warning(warning)
                self.engine.apply(config)
            if guard is not None:
                assert self.guard is not None
                self.guard.replace(guard)
            self.reload_status = ReloadStatus(True, time.time())
            self.reload_failure = None
            log.info("config reloaded", extra={"accounts": str(len(self.engine.config.accounts))})
            return []

    def _load_both(self) -> tuple[Config | None, WebConfig | None, list[str]]:
        problems: list[str] = []
        config: Config | None = None
        web_config: WebConfig | None = None
        config = _attempt(self._loader, problems)
        web_config = _attempt(self._web_loader, problems)
        old = self.web_config
        if web_config is not None and old is not None and web_config.tls != old.tls:
            problems.append(f"{web_config.source}: turning TLS on or off needs a restart")
        return config, web_config, problems

    def _renew_certificate(self, new: WebConfig) -> list[str]:
        """Load the (possibly renewed) certificate into the live TLS context.

        Listening sockets keep the context they were opened with, so this is how new
        connections get a renewed certificate without a restart. The pair was just loaded
        once while validating; this fails only if the files changed since.
        """
        old = self.web_config
        if old is None or old.ssl_context is None or new.cert_paths is None:
            return []
        try:
            old.ssl_context.load_cert_chain(*new.cert_paths)
        except OSError as error:  # ssl.SSLError included
            reason = ssl_error_reason(error, "not a PEM certificate and matching private key")
            return [f"{new.source}: cannot load the new certificate and key: {reason}"]
        return []

    def _reload_failed(self, problems: list[str]) -> list[str]:
        """Mark the reload failed and log why; the problems as the log shows them.

        The answer to `POST /-/reload` goes to whoever may reload, perhaps through a proxy's
        log: it is redacted like the log, not only the log line.
        """
        problems = [logs.redact(problem) for problem in problems]
        self.reload_status = ReloadStatus(False, self.reload_status.last_success_timestamp)
        self.reload_failure = ReloadFailure(time.time(), tuple(problems))
        log.error(
            "config reload failed; keeping the running config",
            extra={"problems": "; ".join(problems)},
        )
        return problems

    def _next_guard(self, new: WebConfig) -> Guard:
        old = self.web_config
        assert old is not None
        before, after = old.settings.tls_server_config, new.settings.tls_server_config
        applied_live = {"cert_file", "key_file", "client_allowed_sans"}
        if (
            before is not None
            and after is not None
            and (before.model_dump(exclude=applied_live) != after.model_dump(exclude=applied_live))
        ):
            log.warning(
                "TLS settings other than the certificate and allowed SANs take effect at restart",
                extra={"web_config": new.source},
            )
        # Listening sockets keep the context they opened with; the new pair is loaded into it.
        return Guard(dataclasses.replace(new, ssl_context=old.ssl_context))

    async def reload_endpoint(self, request: web.Request) -> web.Response:
        problems = await self.reload()
        if problems:
            return web.Response(
                status=500, text="config reload failed:\n" + "\n".join(problems) + "\n"
            )
        return web.Response(text="config reloaded\n")

    # -- scrapes --------------------------------------------------------------------------

    @web.middleware
    async def _limit_scrapes(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in SCRAPE_PATHS:
            return await handler(request)
        if self._active_scrapes >= self._max_requests:
            return web.Response(
                status=503,
                text=f"too many concurrent scrapes (--web.max-requests={self._max_requests})\n",
            )
        self._active_scrapes += 1
        try:
            return await handler(request)
        finally:
            self._active_scrapes -= 1

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        snapshots = await self._collect(None, scrape_timeout(request))
        collectors = (AccountCollector(snapshots), self._exporter_collector, *RUNTIME_COLLECTORS)
        return exposition(request, collectors)

    async def probe(self, request: web.Request) -> web.StreamResponse:
        if "target" in request.query:
            return web.Response(
                status=400,
                text="this exporter probes configured accounts only: use ?account=NAME\n",
            )
        name = request.query.get("account", "")
        if not name:
            return web.Response(status=400, text="missing parameter: account\n")
        if name not in self.engine.states:
            return web.Response(status=400, text="unknown account (not in the config)\n")
        snapshots = await self._collect([name], scrape_timeout(request))
        return exposition(request, (AccountCollector(snapshots),))

    # -- the rest -------------------------------------------------------------------------

    async def healthy(self, request: web.Request) -> web.Response:
        return web.Response(text="Healthy\n")

    async def ready(self, request: web.Request) -> web.Response:
        return web.Response(text="Ready\n")

    async def landing(self, request: web.Request) -> web.Response:
        page = landing_page(self.engine, self.reload_status, self.reload_failure)
        return web.Response(text=page, content_type="text/html")


def _attempt(load: Callable[[], T] | None, problems: list[str]) -> T | None:
    """What `load` returns, or None with its problems added.

    Anything else it raises is a failed reload too: the running config stays, and
    `apibalance_config_last_reload_successful` says so (a bare 500 would leave it at 1).
    """
    if load is None:
        return None
    try:
        return load()
    except ConfigError as error:
        problems.extend(error.lines)
    except Exception as error:
        log.exception("unexpected error loading a config file")
        problems.append(f"cannot load the config: unexpected {type(error).__name__} (see the log)")
    return None


def scrape_timeout(request: web.Request) -> float | None:
    """Prometheus's scrape timeout for this request, from its header."""
    value = request.headers.get("X-Prometheus-Scrape-Timeout-Seconds")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def exposition(request: web.Request, collectors: Sequence[Collector]) -> web.StreamResponse:
    body, content_type = render(collectors, request.headers.get("Accept"))
    headers = {"Content-Type": content_type, "Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("Accept-Encoding", "").lower():
        # Compressed here, at the fastest level, rather than by aiohttp: its default level
        # takes three times as long for 15 % less, and it hands big bodies to a thread pool
        # whose threads and allocator arenas cost more memory than the few ms they save.
        body = zlib.compress(body, GZIP_LEVEL, wbits=GZIP_WBITS)
        headers["Content-Encoding"] = "gzip"
    return web.Response(body=body, headers=headers)
