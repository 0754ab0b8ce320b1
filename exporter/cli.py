"""Command line: flags in the Prometheus exporter style (docs/configuration.md: Command line)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import os
import platform
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from aiohttp import web

from exporter import __version__, logs
from exporter.config import Config, load_config
from exporter.configfile import ConfigError, Problem, attempt
from exporter.connections import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_READ_HEADER_TIMEOUT,
    DEFAULT_WRITE_TIMEOUT,
    AcceptErrorFilter,
    ConnectionLimits,
    LimitedRunner,
    LimitedSite,
    fit_to_file_limit,
    raise_file_limit,
)
from exporter.engine import Engine
from exporter.http import DEFAULT_MAX_REQUESTS, Exporter
from exporter.runtime import settle_heap
from exporter.settings import parse_duration
from exporter.upstream import Upstream

if TYPE_CHECKING:
    # The demo (its simulator, and every catalogue entry it serves) is loaded with --demo only,
    # the web config (its models, basic auth and bcrypt) with --web.config.file only.
    from exporter.demo import Simulator
    from exporter.webconfig import WebConfig

log = logging.getLogger("exporter")
T = TypeVar("T")

DEFAULT_CONFIG = "apibalance.yml"
DEFAULT_LISTEN = ":9877"
# How long SIGTERM waits for scrapes in flight before closing their connections.
SHUTDOWN_GRACE_SECONDS = 15.0
# Connections the kernel queues before they are accepted (it caps this at somaxconn). With
# aiohttp's 128, a burst of connections fills the queue and a scraper's connection waits
# for a SYN retransmission, a second or more; the cap on open connections sorts them out.
LISTEN_BACKLOG = 4096


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.collect_debug and not args.collect_once:
        parser.error("--collect.debug goes with --collect.once")
    return args


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="apibalance-exporter",
        description="Prometheus exporter for the money and quota left on paid API accounts.",
    )
    parser.add_argument(
        "--config.file",
        dest="config_file",
        default=DEFAULT_CONFIG,
        metavar="PATH",
        help=f"YAML config file (default {DEFAULT_CONFIG})",
    )
    parser.add_argument(
        "--config.expand-env",
        dest="config_expand_env",
        action="store_true",
        help="expand ${VAR} and ${VAR:-default} in the config file from the environment "
        "before parsing it (an unset variable without a default is an error)",
    )
    parser.add_argument(
        "--config.check",
        dest="config_check",
        action="store_true",
        help="validate the config (and --web.config.file), print every problem, exit 0 or 1",
    )
    parser.add_argument(
        "--collect.once",
        dest="collect_once",
        action="store_true",
        help="collect every account once, print a table, exit 0 when all are up, else 1",
    )
    parser.add_argument(
        "--collect.debug",
        dest="collect_debug",
        action="store_true",
        help="with --collect.once: also print, for each account, the requests as sent (secrets "
        "redacted), the answers and each value read, as /probe?account=NAME&debug=true does",
    )
    parser.add_argument(
        "--web.listen-address",
        dest="listen_addresses",
        action="append",
        metavar="HOST:PORT",
        help=f"address to listen on; repeatable (default {DEFAULT_LISTEN})",
    )
    parser.add_argument(
        "--web.config.file",
        dest="web_config_file",
        metavar="PATH",
        help="TLS and basic auth, in the Prometheus exporter-toolkit web-config.yml format",
    )
    parser.add_argument(
        "--web.max-requests",
        dest="max_requests",
        type=_positive_int,
        default=DEFAULT_MAX_REQUESTS,
        metavar="N",
        help="concurrent /metrics and /probe requests served at once; 503 beyond",
    )
    parser.add_argument(
        "--web.max-connections",
        dest="max_connections",
        type=_positive_int,
        default=DEFAULT_MAX_CONNECTIONS,
        metavar="N",
        help="open client connections; beyond it the longest idle one is closed, or, if all "
        "are busy, the new one gets 503 at once (lowered to fit the open files limit)",
    )
    parser.add_argument(
        "--web.read-header-timeout",
        dest="read_header_timeout",
        type=_positive_duration,
        default=DEFAULT_READ_HEADER_TIMEOUT,
        metavar="DURATION",
        help="time a new connection has to finish its TLS handshake and send its first "
        "request head "
        f"(default {DEFAULT_READ_HEADER_TIMEOUT:.0f}s)",
    )
    parser.add_argument(
        "--web.idle-timeout",
        dest="idle_timeout",
        type=_positive_duration,
        default=DEFAULT_IDLE_TIMEOUT,
        metavar="DURATION",
        help="keep-alive: a connection without a request for this long is closed "
        f"(default {DEFAULT_IDLE_TIMEOUT:.0f}s)",
    )
    parser.add_argument(
        "--web.write-timeout",
        dest="write_timeout",
        type=_positive_duration,
        default=DEFAULT_WRITE_TIMEOUT,
        metavar="DURATION",
        help="a client that takes none of an answer for this long is cut off "
        f"(default {DEFAULT_WRITE_TIMEOUT:.0f}s)",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="serve simulated accounts of every provider type; no config needed",
    )
    parser.add_argument(
        "--log.level",
        dest="log_level",
        default="info",
        choices=("debug", "info", "warn", "error"),
    )
    parser.add_argument(
        "--log.format", dest="log_format", default="logfmt", choices=("logfmt", "json")
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"apibalance-exporter, version {__version__} (python {platform.python_version()})",
    )
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _positive_duration(text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError("must be longer than 0s")
    return seconds


def parse_listen_address(text: str) -> tuple[str | None, int]:
    """`HOST:PORT`, `:PORT` (every interface) or `[IPv6]:PORT`."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"listen address {text!r} is not HOST:PORT")
    host = host.removeprefix("[").removesuffix("]")
    return (host or None), int(port_text)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logs.setup("warning" if args.log_level == "warn" else args.log_level, args.log_format)
    if args.config_check:
        return check(args)
    if args.collect_once:
        return asyncio.run(collect_once_and_print(args))
    try:
        addresses = [parse_listen_address(a) for a in args.listen_addresses or [DEFAULT_LISTEN]]
    except ValueError as error:
        print(f"apibalance-exporter: {error}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(serve(args, addresses))
    except ConfigError as error:
        for line in error.lines:
            print(line, file=sys.stderr)
        return 1
    except OSError as error:
        print(f"apibalance-exporter: cannot listen: {error.strerror or error}", file=sys.stderr)
        return 1


SECRET_KEYS = frozenset({"api_key", "api_key_env", "api_key_file", "secrets"})
SECRET_SOURCES = frozenset({"api_key_env", "api_key_file", "env", "file"})


def config_loader(args: argparse.Namespace, *, at_start: bool = True) -> Callable[[str], Config]:
    """How the config file is read, as the flags say (`--config.expand-env`); a config
    refused at start-up says what to do when there is none, or when keys cannot be read."""
    load = functools.partial(load_config, expand_env=args.config_expand_env)
    if not at_start:
        return load

    def load_or_explain(path: str) -> Config:
        try:
            return load(path)
        except ConfigError as error:
            notes = refusal_notes(error, path, args)
            if not notes:
                raise
            raise ConfigError(
                error.source, error.problems, (*error.notes, *notes), secrets=error.secrets
            ) from None

    return load_or_explain


def _names_an_unreadable_secret(problem: Problem) -> bool:
    """A key's file or variable that could not be read; not a key that is there but wrong
    (written as `${VAR}`, of the wrong shape), whose own line says how to fix it."""
    loc = [str(part) for part in problem.loc]
    return bool(loc) and bool(SECRET_KEYS.intersection(loc)) and loc[-1] in SECRET_SOURCES


def refusal_notes(error: ConfigError, path: str, args: argparse.Namespace) -> list[str]:
    notes = []
    if not os.path.lexists(path):
        notes.append(
            f"no config file {path}: write one (docs/configuration.md), give its path with "
            "--config.file PATH, or try the exporter on simulated accounts with --demo"
        )
    unreadable = [p for p in error.problems if _names_an_unreadable_secret(p)]
    if unreadable:
        what = "the secret" if len(unreadable) == 1 else f"these {len(unreadable)} secrets"
        action = "nothing is collected" if args.collect_once else "the exporter does not start"
        notes.append(
            f"{action} while {what} cannot be read: it runs only with every account's key, so "
            "that no account goes unwatched unnoticed; provide them, or remove those accounts"
        )
    return notes


def check(args: argparse.Namespace) -> int:
    """Validate the config and the web config; every problem of both, then exit 0 or 1."""
    failed = False
    if args.demo:
        from exporter.demo import DEMO_SOURCE

        print(f"{DEMO_SOURCE}: OK, built-in demo accounts")
    else:
        config = _checked(config_loader(args), args.config_file)
        if config is not None:
            for warning in config.warnings:
                print(f"warning: {warning}", file=sys.stderr)
            print(config.summary())
        failed = config is None
    if args.web_config_file:
        from exporter.webconfig import load_web_config

        web_config = _checked(load_web_config, args.web_config_file)
        if web_config is not None:
            print(web_config.summary())
        failed = failed or web_config is None
    return 1 if failed else 0


def _checked(load: Callable[[str], T], path: str) -> T | None:
    """What `load` returns, or None after printing its problems.

    The same path as a reload's: an unexpected exception is one line (and a logged
    traceback), and the other file is still checked.
    """
    problems: list[str] = []
    loaded = attempt(lambda: load(path), problems)
    for line in problems:
        print(line, file=sys.stderr)
    return loaded


async def collect_once_and_print(args: argparse.Namespace) -> int:
    """Collect every account once and print the table; 0 when every account is up."""
    from exporter import debug, once

    simulator: Simulator | None = None
    try:
        if args.demo:
            from exporter.demo import start_demo

            simulator, config = await start_demo()
        else:
            config = await asyncio.to_thread(config_loader(args), args.config_file)
    except ConfigError as error:
        for line in error.lines:
            print(line, file=sys.stderr)
        return 1
    try:
        for warning in config.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        debugged = await once.collect_once(config, debug=args.collect_debug)
    finally:
        if simulator is not None:
            await simulator.stop()
    snapshots = [d.snapshot for d in debugged]
    print(once.table(snapshots))
    if args.collect_debug:
        for each in debugged:
            print("\n" + debug.render(each), end="")
    return 0 if once.all_up(snapshots) else 1


@dataclass
class Running:
    runner: web.AppRunner
    upstream: Upstream
    simulator: Simulator | None
    closed: bool = False

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        await self.runner.cleanup()
        await self.upstream.close()
        if self.simulator is not None:
            await self.simulator.stop()


async def start(
    args: argparse.Namespace, addresses: Sequence[tuple[str | None, int]]
) -> tuple[Exporter, Running]:
    simulator: Simulator | None = None
    config: Config
    web_config: WebConfig | None = None
    web_loader = None
    if args.web_config_file:
        from exporter.webconfig import load_web_config

        web_config_file = args.web_config_file
        web_config = await asyncio.to_thread(load_web_config, web_config_file)

        def web_loader() -> WebConfig:
            return load_web_config(web_config_file)

    if args.demo:
        from exporter.demo import start_demo

        simulator, config = await start_demo()
        loader = None
    else:
        config_file = args.config_file
        config = await asyncio.to_thread(config_loader(args), config_file)
        # A reload keeps the running config: the notes on not starting do not apply to it.
        reload = config_loader(args, at_start=False)

        def loader() -> Config:
            return reload(config_file)

    for warning in config.warnings:
        log.warning(warning)
    upstream = Upstream(
        config.global_settings.max_concurrency, config.global_settings.max_concurrency_per_host
    )
    engine = Engine(config, upstream)
    exporter = Exporter(
        engine,
        loader=loader,
        max_requests=args.max_requests,
        web_config=web_config,
        web_loader=web_loader,
    )
    limits = ConnectionLimits(
        max_connections=fit_to_file_limit(
            args.max_connections,
            # No more upstream connections at once than accounts, whatever max_concurrency.
            min(config.global_settings.max_concurrency, len(config.accounts)),
            raise_file_limit(),
        ),
        read_header_timeout=args.read_header_timeout,
        idle_timeout=args.idle_timeout,
        write_timeout=args.write_timeout,
    )
    runner = LimitedRunner(
        exporter.app,
        limits,
        access_log=None,
        handle_signals=False,
        shutdown_timeout=SHUTDOWN_GRACE_SECONDS,
    )
    await runner.setup()
    running = Running(runner, upstream, simulator)
    ssl_context = web_config.ssl_context if web_config is not None else None
    try:
        for host, port in addresses:
            site = LimitedSite(
                runner,
                host,
                port,
                reuse_address=True,
                ssl_context=ssl_context,
                backlog=LISTEN_BACKLOG,
            )
            await site.start()
            bound = port or runner.addresses[-1][1]
            log.info(
                "listening",
                extra={
                    "address": f"{host or ''}:{port}",
                    "tls": str(ssl_context is not None),
                    "url": landing_url(host, bound, tls=ssl_context is not None),
                },
            )
    except BaseException:
        await running.close()
        raise
    return exporter, running


def landing_url(host: str | None, port: int, *, tls: bool) -> str:
    """Where a browser on this machine finds the landing page (`make run` shows it)."""
    if host in (None, "", "0.0.0.0", "::"):  # every interface: this machine's too
        host = "localhost"
    elif ":" in host:
        host = f"[{host}]"
    return f"{'https' if tls else 'http'}://{host}:{port}/"


async def serve(args: argparse.Namespace, addresses: Sequence[tuple[str | None, int]]) -> int:
    exporter, running = await start(args, addresses)
    settle_heap()
    # After settle_heap: the objects of collections in flight are not frozen with the heap.
    exporter.collect_in_background()
    log.info(
        "started",
        extra={
            "version": __version__,
            "config": exporter.engine.config.source,
            "accounts": str(len(exporter.engine.config.accounts)),
        },
    )
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(AcceptErrorFilter())
    stop = asyncio.Event()
    reloads: set[asyncio.Task[list[str]]] = set()

    def reload_on_signal() -> None:
        task = loop.create_task(exporter.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload_on_signal)
    try:
        await stop.wait()
        log.info("shutting down; finishing scrapes in flight")
        # Handlers stay installed until the scrapes are done: a second SIGTERM (a supervisor
        # repeating itself) must not kill the process halfway through its answers.
        await running.close()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signum)
        await running.close()
    log.info("stopped")
    return 0
