"""The exporter under measurement: `python -m exporter` as its own process, on a generated
config, pinned to a CPU of its own, its CPU time and memory read from /proc."""

from __future__ import annotations

import http.client
import itertools
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fake_upstream import FakeUpstream, bench_accounts

MIB = 1 << 20
_config_numbers = itertools.count()


@dataclass(frozen=True)
class Defaults:
    """The build's concurrency bounds when the config sets none (per host: None if it has
    no such bound)."""

    total: int
    per_host: int | None


# Printed by the build's own interpreter: where its package is and its defaults.
_DESCRIBE = """
import json, pathlib, exporter
from exporter.settings import GlobalSettings
fields = GlobalSettings.model_fields
per_host = fields.get("max_concurrency_per_host")
print(json.dumps([
    str(pathlib.Path(exporter.__file__).parent.parent),
    fields["max_concurrency"].default,
    None if per_host is None else per_host.default,
]))
"""


@dataclass(frozen=True)
class Build:
    """An exporter to measure: an interpreter that has it installed, the tree it runs from
    (`python -m exporter` imports the package of its working directory first) and its
    defaults."""

    name: str
    python: str
    root: Path
    defaults: Defaults

    @classmethod
    def of(cls, name: str, python: str) -> Build:
        if os.sep in python:
            # Asked from another directory below; not resolved, or a venv's python would
            # lose its venv.
            python = os.path.abspath(python)
        found = subprocess.run(
            [python, "-c", _DESCRIBE], cwd="/", capture_output=True, text=True, check=True
        ).stdout
        root, total, per_host = json.loads(found)
        # The exporter runs from bytecode compiled beforehand, as the image (Dockerfile) and a
        # pip install have it. Where PYTHONDONTWRITEBYTECODE is set and the tree has none,
        # every start would compile every module of the exporter, and the compiler's leftovers
        # are 1.3 MiB of RSS at 10 accounts that no installed exporter has.
        subprocess.run(
            [python, "-m", "compileall", "-q", str(Path(root) / "exporter")], cwd="/", check=True
        )
        return cls(name, python, Path(root), Defaults(total, per_host))

    def versions(self) -> str:
        """Python and aiohttp versions of the interpreter."""
        out = subprocess.run(
            [
                self.python,
                "-c",
                "import platform, aiohttp; print(platform.python_version(), aiohttp.__version__)",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        return f"Python {out[0]}, aiohttp {out[1]}"


@dataclass
class Placement:
    """With two CPUs or more, the exporter gets one to itself and the fake upstream and the
    scrapers share the rest: in production providers and Prometheus run on other machines."""

    exporter_cpus: set[int] | None = None

    def pin(self) -> str:
        """Pin this process (and so the fake upstream) away from the exporter's CPU."""
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            return f"{len(cpus)} CPU shared by the exporter, the fake upstream and the scrapers"
        self.exporter_cpus = {cpus[0]}
        os.sched_setaffinity(0, cpus[1:])
        return (
            f"exporter pinned to CPU {cpus[0]}, fake upstream and scrapers to CPU"
            f" {','.join(map(str, cpus[1:]))}"
        )

    @contextmanager
    def on_exporter_cpu(self) -> Iterator[None]:
        """Run this process's code on the exporter's CPU meanwhile."""
        own = os.sched_getaffinity(0)
        if self.exporter_cpus is not None:
            os.sched_setaffinity(0, self.exporter_cpus)
        try:
            yield
        finally:
            os.sched_setaffinity(0, own)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def account_name(index: int) -> str:
    """The name of the config's account number `index` (from 0)."""
    return f"acct-{index:05d}"


def write_config(
    directory: Path,
    upstream: FakeUpstream,
    accounts: int,
    latency_ms: int,
    global_settings: Mapping[str, Any],
    hosts: int = 1,
) -> Path:
    """A config of `accounts` accounts of the fake upstream, spread over `hosts` of its ports."""
    lines = ["global:"]
    lines += [f"  {name}: {value}" for name, value in global_settings.items()]
    lines.append("accounts:")
    for i, (provider, key) in enumerate(bench_accounts(accounts)):
        lines += [
            f"  - name: {account_name(i)}",
            f"    provider: {provider}",
            f"    api_key: {key}",
            f"    base_url: {upstream.base_url(latency_ms, provider, i % hosts)}",
        ]
    path = directory / f"bench-{next(_config_numbers)}.yml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


class Exporter:
    """`python -m exporter` on a config, listening on a free loopback port."""

    def __init__(self, build: Build, config: Path, placement: Placement) -> None:
        self.build = build
        self.port = free_port()
        self._process = subprocess.Popen(
            [
                build.python,
                "-m",
                "exporter",
                "--config.file",
                str(config),
                "--web.listen-address",
                f"127.0.0.1:{self.port}",
                "--log.level",
                "warn",
            ],
            cwd=build.root,
            stdin=subprocess.DEVNULL,
        )
        self.pid = self._process.pid
        if placement.exporter_cpus is not None:
            os.sched_setaffinity(self.pid, placement.exporter_cpus)
        deadline = time.monotonic() + 30
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"the exporter exited with {self._process.returncode}")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                connection.request("GET", "/-/ready")
                if connection.getresponse().status == 200:
                    connection.close()
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def cpu_seconds(self) -> float:
        """CPU time of the exporter so far, every thread, to the nanosecond (schedstat)."""
        total = 0
        for task in Path(f"/proc/{self.pid}/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (FileNotFoundError, ProcessLookupError):
                continue  # a thread that ended meanwhile
        return total / 1e9

    def memory_mib(self) -> tuple[float, float]:
        """Resident set size now and at its peak (VmHWM), MiB."""
        found = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(value.split()[0]) * 1024 / MIB
        return found["VmRSS"], found["VmHWM"]

    def stop(self) -> None:
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(20)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


@contextmanager
def running_exporters(
    configs: Mapping[Build, Path], placement: Placement
) -> Iterator[list[Exporter]]:
    """One exporter of each build, on its config."""
    exporters: list[Exporter] = []
    try:
        for build, config in configs.items():
            exporters.append(Exporter(build, config, placement))
        yield exporters
    finally:
        for exporter in exporters:
            exporter.stop()
