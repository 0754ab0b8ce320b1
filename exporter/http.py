"""The exporter's HTTP endpoints (docs/configuration.md: Endpoints).

/metrics, /probe, /, /-/healthy, /-/ready and /-/reload; the landing page itself is
exporter.landing, and what a reload does is exporter.reload.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client.registry import Collector

from exporter.connections import limit_head_size, mark_passed_checks
from exporter.engine import Engine, Snapshot
from exporter.metrics import (
    AccountCollector,
    ExporterCollector,
    ReloadStatus,
    WrittenAccounts,
    render,
)
from exporter.reload import ConfigLoader, Reloader, ReloadFailure, WebConfigLoader
from exporter.runtime import GcPause
from exporter.runtime_series import runtime_series

if TYPE_CHECKING:
    from exporter.auth import GuardHolder
    from exporter.webconfig import WebConfig

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SCRAPE_PATHS = frozenset({"/metrics", "/probe"})
DEFAULT_MAX_REQUESTS = 40
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
        # Every endpoint, unknown paths included, is behind the guard when a web config is set.
        self.guard: GuardHolder | None = None
        if web_config is not None:
            # Basic auth (bcrypt, its thread pool) is loaded only for a web config.
            from exporter.auth import Guard, GuardHolder

            self.guard = GuardHolder(Guard(web_config))
        checks = [self.guard.middleware] if self.guard is not None else []
        middlewares = [limit_head_size, *checks, _passed_checks, *middlewares]
        self.reloader = Reloader(engine, self.guard, loader=loader, web_loader=web_loader)
        self._max_requests = max_requests
        self._active_scrapes = 0
        self._background: set[asyncio.Task[object]] = set()
        self._exporter_collector = ExporterCollector(lambda: self.reload_status)
        self._runtime_collectors = runtime_series()
        self._written = WrittenAccounts()
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

    # -- reload ---------------------------------------------------------------------------

    @property
    def reload_status(self) -> ReloadStatus:
        return self.reloader.status

    @property
    def reload_failure(self) -> ReloadFailure | None:
        return self.reloader.failure

    async def reload(self) -> list[str]:
        """Load the config (and web config) again (exporter.reload); the problems, if any."""
        problems = await self.reloader.reload()
        self._forget_unconfigured()
        return problems

    def _forget_unconfigured(self) -> None:
        self._written.keep_only({name: s.account for name, s in self.engine.states.items()})

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
        config = self.engine.config
        snapshots = await self._collect(None, scrape_timeout(request))
        collectors = (
            AccountCollector(snapshots, self._written),
            self._exporter_collector,
            *self._runtime_collectors,
        )
        response = exposition(request, collectors)
        if self.engine.config is not config:
            # Reloaded while this scrape waited: it has written accounts no longer configured.
            self._forget_unconfigured()
        return response

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
        if request.query.get("debug", "").lower() in ("true", "1"):
            from exporter import debug

            debugged = await debug.traced_collection(self.engine, name)
            return web.Response(text=debug.render(debugged))
        snapshots = await self._collect([name], scrape_timeout(request))
        return exposition(request, (AccountCollector(snapshots),))

    # -- the rest -------------------------------------------------------------------------

    async def healthy(self, request: web.Request) -> web.Response:
        return web.Response(text="Healthy\n")

    async def ready(self, request: web.Request) -> web.Response:
        return web.Response(text="Ready\n")

    async def landing(self, request: web.Request) -> web.Response:
        # Loaded when a person first opens the page, not by every process Prometheus scrapes.
        from exporter.landing import landing_page

        page = landing_page(self.engine, self.reload_status, self.reload_failure)
        return web.Response(text=page, content_type="text/html")


@web.middleware
async def _passed_checks(request: web.Request, handler: Handler) -> web.StreamResponse:
    # Past the guard (basic auth, client certificates), if any: the connection has proved
    # itself, and a flood of connections without the password no longer pushes it out.
    mark_passed_checks(request)
    return await handler(request)


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
