"""Reloading the config and the web config on SIGHUP or `POST /-/reload` (docs/configuration.md:
How collection behaves, Reload; docs/security.md: TLS and basic auth).

Both files are loaded again and applied only if both are valid; otherwise the running ones
stay, the reload is marked failed (`apibalance_config_last_reload_successful` 0, a notice on
the landing page) and its problems are logged and answered, redacted like the log. A renewed
TLS certificate goes into the live TLS context, and a new web config into a new guard that
replaces the old one between requests.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from exporter import logs
from exporter.config import Config
from exporter.configfile import attempt
from exporter.engine import Engine
from exporter.metrics import ReloadStatus

if TYPE_CHECKING:
    # Loaded with a web config only (--web.config.file): exporter.cli and exporter.http.
    from exporter.auth import Guard, GuardHolder
    from exporter.webconfig import WebConfig

log = logging.getLogger(__name__)

ConfigLoader = Callable[[], Config]
WebConfigLoader = Callable[[], "WebConfig"]


@dataclass(frozen=True, slots=True)
class ReloadFailure:
    """The last failed reload, while the config it would have replaced still runs."""

    at: float  # unix time
    problems: tuple[str, ...]  # redacted (logs.redact)


class Reloader:
    """Reloads both configs into the engine and the guard, and keeps the last reload's status."""

    def __init__(
        self,
        engine: Engine,
        guard: GuardHolder | None,
        *,
        loader: ConfigLoader | None = None,
        web_loader: WebConfigLoader | None = None,
    ) -> None:
        self.engine = engine
        self.guard = guard
        self._loader = loader
        self._web_loader = web_loader
        self._lock = asyncio.Lock()
        self.status = ReloadStatus(True, time.time())
        self.failure: ReloadFailure | None = None

    @property
    def web_config(self) -> WebConfig | None:
        """The web config in force (the guard's: reload replaces them together)."""
        return self.guard.guard.config if self.guard is not None else None

    async def reload(self) -> list[str]:
        """Load the config (and web config) again; apply both only if both are valid.

        Returns the problems (empty: success).
        """
        if self._loader is None and self._web_loader is None:
            return []
        async with self._lock:
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
            self.status = ReloadStatus(True, time.time())
            self.failure = None
            log.info("config reloaded", extra={"accounts": str(len(self.engine.config.accounts))})
            return []

    def _load_both(self) -> tuple[Config | None, WebConfig | None, list[str]]:
        problems: list[str] = []
        # Anything a loader raises besides its problems is a failed reload too: the running
        # config stays, and apibalance_config_last_reload_successful says so (a bare 500
        # would leave it at 1).
        config = attempt(self._loader, problems) if self._loader is not None else None
        web_config = attempt(self._web_loader, problems) if self._web_loader is not None else None
        old = self.web_config
        if web_config is not None and old is not None and web_config.tls != old.tls:
            problems.append(f"{web_config.source}: turning TLS on or off needs a restart")
        # Reading a file of 100,000 values leaves tens of MiB of YAML nodes in reference
        # cycles; the collector, tuned for scrapes, would leave them for long. Here, in this
        # thread, a full collection costs the event loop nothing.
        gc.collect()
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
        from exporter.webconfig import ssl_error_reason

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
        self.status = ReloadStatus(False, self.status.last_success_timestamp)
        self.failure = ReloadFailure(time.time(), tuple(problems))
        log.error(
            "config reload failed; keeping the running config",
            extra={"problems": "; ".join(problems)},
        )
        return problems

    def _next_guard(self, new: WebConfig) -> Guard:
        from exporter.auth import Guard

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
