"""Typed helpers shared by the tests: config files, exposition parsing, external tools."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from exporter.config import Config, build_config
from exporter.demo import SimAccount, Simulator
from exporter.engine import Engine, Snapshot
from exporter.model import Reading
from exporter.providers.base import Provider
from exporter.settings import AccountSettings
from exporter.upstream import AccountHttp, Upstream

IN_CI = os.environ.get("CI") == "true"

Labels = frozenset[tuple[str, str]]
Samples = dict[tuple[str, Labels], float]


def write_config(
    directory: Path, data: Mapping[str, Any] | str, name: str = "apibalance.yml"
) -> Path:
    """Write a config file (a mapping is dumped as YAML; text is written as it is)."""
    path = directory / name
    text = data if isinstance(data, str) else yaml.safe_dump(dict(data), sort_keys=False)
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


def account(name: str, provider: str, key: str, base_url: str, **more: Any) -> dict[str, Any]:
    return {"name": name, "provider": provider, "api_key": key, "base_url": base_url, **more}


def http_json_account(url: str, key: str, **more: Any) -> dict[str, Any]:
    """An http_json account `acct` with this key, asking `url`: `request` adds to the request,
    `values` replaces the default (balance_usd read from `balance`), the rest are account keys."""
    return {
        "name": "acct",
        "provider": "http_json",
        "api_key": key,
        "timeout": "2s",
        "request": {"url": url, **more.pop("request", {})},
        "values": more.pop("values", {"balance_usd": "balance"}),
        **more,
    }


def simulated_json_account(
    simulator: Simulator, name: str, key: str, **settings: Any
) -> dict[str, Any]:
    """An http_json account `name` asking the simulator's JSON API (/v1/balance, its key as a
    bearer token) for balance_usd; `settings` add to or replace its definition."""
    return {
        "name": name,
        "provider": "http_json",
        "api_key": key,
        "request": {
            "url": simulator.base_url("json") + "/v1/balance",
            "headers": {"Authorization": "Bearer {api_key}"},
        },
        "values": {"balance_usd": "balance"},
        **settings,
    }


async def collect_accounts(upstream: Upstream, *settings: dict[str, Any]) -> list[Snapshot]:
    """One collection of the accounts defined so, the environment left out of the config."""
    config = build_config({"accounts": list(settings)}, source="test", environ={})
    return await Engine(config, upstream).collect()


async def collect_one(
    simulator: Simulator, upstream: Upstream, settings: dict[str, Any], *answers: Any
) -> Snapshot:
    """One collection of the account `settings`, the simulator's JSON API answering its
    api_key with `answers` in turn (its default balance after them)."""
    simulator.add("json", SimAccount(settings["api_key"]).then(*answers))
    [snapshot] = await collect_accounts(upstream, settings)
    return snapshot


def samples(exposition: str) -> Samples:
    """Every sample of a text exposition, keyed by (name, labels)."""
    found: Samples = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def labels(**pairs: str) -> Labels:
    return frozenset(pairs.items())


def value(found: Samples, name: str, **pairs: str) -> float | None:
    return found.get((name, labels(**pairs)))


def series_of(found: Samples, name: str) -> list[Labels]:
    return [key[1] for key in found if key[0] == name]


def accounts_in(found: Samples, name: str) -> set[str]:
    return {dict(lbls)["account"] for lbls in series_of(found, name)}


README = Path(__file__).parent.parent / "README.md"
DOCS = README.parent / "docs"


def documentation() -> list[Path]:
    """The README and the files of docs/ it links to: the documentation, in reading order."""
    return [README, *sorted(DOCS.glob("*.md"))]


def readme_text() -> str:
    """The whole documentation as one text; each file starts with its `# ` title, so no
    section runs on into the next file."""
    return "\n".join(path.read_text(encoding="utf-8") for path in documentation())


def readme_yaml(heading: str | None = None) -> list[str]:
    """The ```yaml blocks of the documentation, or of its section under `heading` (`## ...`)."""
    text = readme_text() if heading is None else readme_section(heading)
    return yaml_blocks(text)


def readme_section(heading: str, readme: str | None = None) -> str:
    """The documentation's text (or `readme`'s) under `heading` (`## Docker`) up to the next
    heading of its level or a higher one (a `#` line inside a code block is no heading)."""
    level = len(heading.split()[0])
    lines = (readme_text() if readme is None else readme).splitlines()
    assert lines.count(heading) == 1, f"{heading!r} is a heading {lines.count(heading)} times"
    start = lines.index(heading)
    section, fenced = [], False
    for line in lines[start + 1 :]:
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (marks := re.match(r"(#+) ", line)) and len(marks[1]) <= level:
            break
        section.append(line)
    return "\n".join(section) + "\n"


def yaml_blocks(section: str) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", section, flags=re.DOTALL)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for programs that must be told a port to listen on)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# Helpers that run an external tool or something slow (a real Prometheus, a browser, a build,
# the exporter started as its own process).
# A test that uses one, directly or through other test code or a fixture, is marked
# `integration` at collection (tests/conftest.py), so `pytest -m 'not integration'` leaves
# it out of the fast loop (docs/development.md) without a decorator to remember.
INTEGRATION_HELPERS: set[Callable[..., Any]] = set()
F = TypeVar("F", bound=Callable[..., Any])
# A test that looks a program up on PATH needs it (a browser, a container runtime ...).
INTEGRATION_HELPERS.add(shutil.which)


def integration(helper: F) -> F:
    """Mark a helper as needing an external tool: every test using it is `integration`."""
    INTEGRATION_HELPERS.add(helper)
    return helper


def unavailable(reason: str) -> NoReturn:
    """Skip the test for a missing tool or privilege; in CI, where nothing may be missing, fail."""
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


@integration
def require_tool(name: str, *other_names: str, package: str = "prometheus packages") -> str:
    """The path of an external tool (under any of its names); skip (fail in CI) with the
    reason when it is missing: `make test` installs Debian's `package`."""
    for candidate in (name, *other_names):
        path = shutil.which(candidate)
        if path is not None:
            return path
    unavailable(f"{name} is not installed (make test installs Debian's {package})")


@integration
def promtool(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """Run `promtool ARGS` from the repository root (its output as text, never raising)."""
    return subprocess.run(
        [require_tool("promtool"), *args],
        input=None if stdin is None else stdin.decode(),
        capture_output=True,
        text=True,
        cwd=README.parent,
        timeout=120,
        check=False,
    )


def assert_promtool_accepts_metrics(exposition: bytes) -> None:
    """`promtool check metrics` accepts the exposition and has nothing to say about it."""
    result = promtool("check", "metrics", stdin=exposition)
    assert result.returncode == 0, result.stdout + result.stderr
    # promtool prints lint findings (missing HELP, bad suffixes ...) even when it exits 0.
    assert result.stdout + result.stderr == "", result.stdout + result.stderr


def no_secret_in(texts: Iterable[str | bytes], secret: str) -> None:
    for text in texts:
        data = text.encode() if isinstance(text, str) else text
        assert secret.encode() not in data


class FrozenClock:
    """A clock for the engine that moves only when told (durations 0, fixed timestamps).

    A scrape's wait for collections ends when they are done or when `advance` has moved the
    clock past the scrape's budget, whatever time the machine takes.
    """

    def __init__(self, wall: float = 1_700_000_000.0, monotonic: float = 1000.0) -> None:
        self._wall = wall
        self._monotonic = monotonic
        self._moved: list[asyncio.Future[None]] = []

    def wall(self) -> float:
        return self._wall

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> None:
        self._wall += seconds
        self._monotonic += seconds
        moved, self._moved = self._moved, []
        for future in moved:
            if not future.done():
                future.set_result(None)

    async def wait(self, tasks: set[asyncio.Task[Any]], deadline: float) -> None:
        while self._monotonic < deadline:
            pending = {task for task in tasks if not task.done()}
            if not pending:
                return
            moved = asyncio.get_running_loop().create_future()
            self._moved.append(moved)
            try:
                await asyncio.wait({*pending, moved}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                moved.cancel()


class Gated(Provider):
    """A provider whose answer waits until the test opens its gate: a collection stays in
    flight exactly as long as the test wants, whatever the machine's speed."""

    type_name = "gated"

    def __init__(
        self, settings: AccountSettings, balance: float = 1.0, api_key: str = "gated"
    ) -> None:
        super().__init__(settings, SecretStr(api_key))
        self.gate = asyncio.Event()
        self.calls = 0
        self.balance = balance

    async def fetch(self, http: AccountHttp) -> Reading:
        self.calls += 1
        await self.gate.wait()
        return Reading(balance_usd=self.balance)


def gated_config(*names: str, **settings: Any) -> tuple[Config, list[Gated]]:
    """A config of accounts named so, each asking its own `Gated` provider."""
    data = {
        "accounts": [
            account(name, "datalabs", f"key-{name}", "http://127.0.0.1:9", **settings)
            for name in names
        ]
    }
    config = build_config(data, source="test")
    providers = [Gated(a.provider.settings, api_key=a.provider.api_key) for a in config.accounts]
    accounts = tuple(
        dataclasses.replace(a, provider=p) for a, p in zip(config.accounts, providers, strict=True)
    )
    return dataclasses.replace(config, accounts=accounts), providers


async def settle(condition: Callable[[], bool]) -> None:
    """Let the event loop run until `condition` holds: a few turns, never a timed wait."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the event loop never got there")


@integration
class ExporterProcess:
    """The exporter as its own process on a loopback port, for what a test must measure from
    outside: its memory, its open files, its log. Starting one costs a second of CPU for the
    imports alone, so tests using it are `integration`."""

    def __init__(self, *args: str, file_limit: int | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._args = [*args, "--web.listen-address", f"127.0.0.1:{self.port}"]
        self._file_limit = file_limit
        self.process: subprocess.Popen[bytes] | None = None
        # Kept open for the object's life: the process writes to it, the test reads it.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115

    def __enter__(self) -> ExporterProcess:
        limit = self._file_limit

        def limit_files() -> None:
            if limit is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        self.process = subprocess.Popen(
            [sys.executable, "-m", "exporter", *self._args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=limit_files,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.05)
        self.__exit__()
        raise AssertionError(f"the exporter did not start:\n{self.log()}")

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def rss_bytes(self) -> int:
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def cpu_share(self, seconds: float) -> float:
        """The share of one CPU the process uses over the next `seconds`."""
        before, started = self.cpu_seconds(), time.monotonic()
        time.sleep(seconds)
        return (self.cpu_seconds() - before) / (time.monotonic() - started)

    def cpu_seconds(self) -> float:
        """User and system CPU time the process has used so far."""
        assert self.process is not None
        # The command name, in parentheses, may hold spaces: the fields follow its end.
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rpartition(")")[2].split()
        user, system = int(fields[11]), int(fields[12])
        return (user + system) / os.sysconf("SC_CLK_TCK")

    def log(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")
