"""Several replicas, one Prometheus: the documented `hashmod` job (docs/deployment.md,
"Several replicas") shares the `/probe` targets out among three exporters that each hold the
whole config. Each account is asked by the one replica that serves it and by no other, its
alerts are one per account, and a replica lost takes down its own share of the targets only.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from exporter.demo import SimAccount, Simulator
from tests.helpers import free_port, readme_yaml, require_tool, write_config
from tests.test_e2e_prometheus import api, processes, rules_without_waits, wait_until_up

REPLICAS = 3
ACCOUNTS = [f"acct-{i:02d}" for i in range(12)]
LOW = {"acct-01", "acct-06", "acct-10"}  # below their 5 USD threshold
JOB = "apibalance-probe"
DEADLINE = 120.0
# Scrapes each target gets (one a second) after all are up, before the calls are counted.
SETTLE_SECONDS = 5.0

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
__all__ = ["processes"]  # the fixture, shared with test_e2e_prometheus


def documented_job(replicas: list[str]) -> dict[str, Any]:
    """The documented sharded job, its targets our accounts and its replicas ours."""
    [block] = [b for b in readme_yaml("## Several replicas") if "hashmod" in b]
    [job] = yaml.safe_load(block)["scrape_configs"]
    job["static_configs"] = [{"targets": ACCOUNTS}]
    to_replica = [rule for rule in job["relabel_configs"] if rule.get("regex") is not None]
    assert [rule["regex"] for rule in to_replica] == [str(n) for n in range(REPLICAS)]
    for rule, replica in zip(to_replica, replicas, strict=True):
        rule["replacement"] = replica
    assert isinstance(job, dict)
    return job


def accounts_config(
    directory: Path, simulator: Simulator, asked_from: dict[str, list[int]]
) -> Path:
    """Every account, for every replica; `asked_from` gets the client port of each request."""
    accounts = []
    for name in ACCOUNTS:
        key = f"key-{name}"

        async def note_client(request: web.Request, name: str = name) -> None:
            assert request.transport is not None
            asked_from[name].append(request.transport.get_extra_info("peername")[1])

        balance = 2.0 if name in LOW else 50.0
        simulator.add("datalabs", SimAccount(key, balance=balance, chaos=[(1.0, note_client)]))
        accounts.append(
            {
                "name": name,
                "provider": "datalabs",
                "api_key": key,
                "base_url": simulator.base_url("datalabs"),
                "low_balance_usd": 5,
            }
        )
    # Every scrape asks: a replica asking an account it does not serve would show.
    return write_config(directory, {"global": {"cache_ttl": "0s"}, "accounts": accounts})


def replica_of_ports(pids: list[int], server_port: int) -> dict[int, int]:
    """Client port -> index of the replica whose connection to the server it is, from the
    kernel's table of TCP connections and each process's open sockets."""
    replica_of_inode = {}
    for index, pid in enumerate(pids):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                replica_of_inode[target[8:-1]] = index
    found = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].split(":")[1], 16)
        remote_port = int(fields[2].split(":")[1], 16)
        if remote_port == server_port and fields[9] in replica_of_inode:
            found[local_port] = replica_of_inode[fields[9]]
    return found


def start(processes: list[subprocess.Popen[bytes]], log: Path, args: list[str], cwd: Path) -> None:
    with log.open("wb") as sink:
        processes.append(subprocess.Popen(args, stdout=sink, stderr=subprocess.STDOUT, cwd=cwd))


async def test_replicas_share_the_accounts_out_and_each_is_asked_by_one(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    prometheus_bin = require_tool("prometheus")
    simulator = Simulator(seed=3)
    await simulator.start()
    asked_from: dict[str, list[int]] = {name: [] for name in ACCOUNTS}
    config = accounts_config(tmp_path, simulator, asked_from)
    replicas = [f"127.0.0.1:{free_port()}" for _ in range(REPLICAS)]
    logs = [tmp_path / f"replica-{n}.log" for n in range(REPLICAS)]
    for replica, log in zip(replicas, logs, strict=True):
        exporter = [sys.executable, "-m", "exporter", "--config.file", str(config)]
        start(processes, log, [*exporter, "--web.listen-address", replica], tmp_path)
    prometheus = f"127.0.0.1:{free_port()}"
    prom_config = tmp_path / "prometheus.yml"
    prom_config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(rules_without_waits(tmp_path))],
                "scrape_configs": [documented_job(replicas)],
            }
        )
    )
    prom_log = tmp_path / "prometheus.log"
    started = time.monotonic()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            for n, replica in enumerate(replicas):
                await wait_until_up(session, f"http://{replica}/-/ready", f"replica {n}", logs[n])
            # The cost of starting: each replica asks every account once, to have figures
            # to show before the first scrape.
            while any(len(ports) < REPLICAS for ports in asked_from.values()):
                assert time.monotonic() < started + DEADLINE, f"start-up: {asked_from}"
                await asyncio.sleep(0.2)
            assert all(len(ports) == REPLICAS for ports in asked_from.values())
            for ports in asked_from.values():
                ports.clear()

            start(
                processes,
                prom_log,
                [
                    prometheus_bin,
                    f"--config.file={prom_config}",
                    f"--storage.tsdb.path={tmp_path / 'prom-data'}",
                    f"--web.listen-address={prometheus}",
                ],
                tmp_path,
            )
            url = f"http://{prometheus}"
            await wait_until_up(session, f"{url}/-/ready", "Prometheus", prom_log)

            # Every account is one target, served by one replica; each replica has a share.
            while True:
                up = await api(session, f"{url}/api/v1/query", query=f'up{{job="{JOB}"}}')
                if len(up["result"]) == len(ACCOUNTS) and all(
                    r["value"][1] == "1" for r in up["result"]
                ):
                    break
                assert time.monotonic() < started + DEADLINE, f"targets not all up: {up}"
                await asyncio.sleep(0.5)
            targets = (await api(session, f"{url}/api/v1/targets", state="active"))["activeTargets"]
            served = {
                t["labels"]["instance"]: next(
                    n for n, a in enumerate(replicas) if t["scrapeUrl"].startswith(f"http://{a}/")
                )
                for t in targets
            }
            assert sorted(served) == ACCOUNTS
            assert sorted(set(served.values())) == list(range(REPLICAS))

            # Each account is asked by the one replica that serves it, and by no other.
            await asyncio.sleep(SETTLE_SECONDS)
            server_port = int(simulator.url.rsplit(":", 1)[1].split("/")[0])
            replica_of = replica_of_ports([p.pid for p in processes[:REPLICAS]], server_port)
            asked_by = {name: {replica_of[port] for port in asked_from[name]} for name in ACCOUNTS}
            assert asked_by == {name: {served[name]} for name in ACCOUNTS}
            assert all(len(asked_from[name]) >= SETTLE_SECONDS - 1 for name in ACCOUNTS)

            # One ApiBalanceLow per low account, none for the others.
            while True:
                alerts = (await api(session, f"{url}/api/v1/alerts"))["alerts"]
                low = Counter(
                    a["labels"]["account"]
                    for a in alerts
                    if a["labels"]["alertname"] == "ApiBalanceLow" and a["state"] == "firing"
                )
                if set(low) == LOW:
                    break
                assert time.monotonic() < started + DEADLINE, f"low alerts: {low}"
                await asyncio.sleep(0.5)
            assert low == dict.fromkeys(LOW, 1)

            # A replica lost: its own accounts' targets go down, the others' stay up.
            processes[1].terminate()
            processes[1].wait(10)
            own = {name for name, n in served.items() if n == 1}
            while True:
                up = await api(session, f"{url}/api/v1/query", query=f'up{{job="{JOB}"}}')
                down = {r["metric"]["instance"] for r in up["result"] if r["value"][1] == "0"}
                assert down <= own, f"accounts of other replicas down: {down - own}"
                if down == own:
                    break
                assert time.monotonic() < started + DEADLINE, f"down: {down}, own: {own}"
                await asyncio.sleep(0.5)
    finally:
        await simulator.stop()
