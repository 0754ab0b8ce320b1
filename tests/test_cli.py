"""The real program as a user runs it: flags, --config.check, --demo, SIGHUP, SIGTERM.

Each test starts the exporter as its own process (a second of CPU for the imports alone), so
every one is `integration`: `make test` runs them, the fast loop leaves them out."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from exporter import __version__, cli
from exporter.config import Config
from exporter.configfile import ConfigError
from exporter.demo import SimAccount, Simulator, catalogue_accounts, delay, demo_accounts
from exporter.providers import PROVIDERS
from tests.helpers import (
    account,
    accounts_in,
    free_port,
    integration,
    samples,
    value,
    write_config,
)

PYTHON = sys.executable


@integration
def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "exporter", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        check=False,
    )


class Running:
    def __init__(self, process: asyncio.subprocess.Process, url: str) -> None:
        self.process = process
        self.url = url
        self.terminated = False

    def terminate(self) -> None:
        self.terminated = True
        self.process.send_signal(signal.SIGTERM)

    async def get(self, path: str) -> tuple[int, str]:
        async with aiohttp.ClientSession() as session, session.get(self.url + path) as response:
            return response.status, await response.text()

    async def stop(self) -> tuple[int, str]:
        if self.process.returncode is None and not self.terminated:
            self.terminate()
        _, stderr = await asyncio.wait_for(self.process.communicate(), 30)
        assert self.process.returncode is not None
        return self.process.returncode, stderr.decode()


@integration
@asynccontextmanager
async def exporter_process(*args: str) -> AsyncIterator[Running]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        PYTHON,
        "-m",
        "exporter",
        "--web.listen-address",
        f"127.0.0.1:{port}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    running = Running(process, f"http://127.0.0.1:{port}")
    try:
        for _ in range(200):
            try:
                if (await running.get("/-/ready"))[0] == 200:
                    break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)
            if process.returncode is not None:
                raise AssertionError(
                    f"exporter exited: {(await process.communicate())[1].decode()}"
                )
        else:
            raise AssertionError("exporter did not become ready")
        yield running
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert f"version {__version__}" in result.stdout


def test_config_check_ok(tmp_path: Path) -> None:
    path = write_config(
        tmp_path, {"accounts": [account("a", "datalabs", "kkkkkkkk", "https://x.example")]}
    )
    result = run("--config.check", "--config.file", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{path}: OK, 1 account(s) (datalabs: 1)"


def test_config_check_reports_every_problem(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        "global:\n  timout: 5s\naccounts:\n  - {name: a, provider: antcaptcha, api_key: kkkkkkkk}\n",
    )
    result = run("--config.check", "--config.file", str(path))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{path}:2: global.timout: unknown key (did you mean 'timeout'?)",
        f"{path}:4: accounts[0].provider: unknown provider 'antcaptcha' (did you mean "
        "'anticaptcha'?); known: " + ", ".join(PROVIDERS),
    ]
    assert "Traceback" not in result.stderr
    path = write_config(
        tmp_path,
        "accounts:\n  - {name: a, provider: antcaptcha, api_key: kkkkkkkk}\n  - {name: b, provider: datalabs}\n",
    )
    lines = run("--config.check", "--config.file", str(path)).stderr.splitlines()
    assert [line.split(": ")[0] for line in lines] == [f"{path}:2", f"{path}:3"]


def test_missing_config_says_what_to_do(tmp_path: Path) -> None:
    result = run(cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "apibalance.yml: cannot read config file: No such file or directory",
        "no config file apibalance.yml: write one (docs/configuration.md), give its path with "
        "--config.file PATH, or try the exporter on simulated accounts with --demo",
    ]


MISSING_SECRETS = """\
accounts:
  - {name: a, provider: twocaptcha, api_key_file: keys/a}
  - {name: b, provider: capsolver, api_key_file: keys/b}
  - {name: c, provider: capsolver, api_key_env: NOPE_KEY_FOR_TESTS}
  - {name: d, provider: twilio, api_key: twilio-token-01234, secrets: {account_sid: {file: sid}}}
"""


@pytest.mark.parametrize(
    ("flags", "action"),
    [
        (["--web.listen-address", "127.0.0.1:0"], "the exporter does not start"),
        (["--collect.once"], "nothing is collected"),
    ],
)
def test_every_missing_secret_is_listed_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], action: str
) -> None:
    path = write_config(tmp_path, MISSING_SECRETS)
    assert cli.main(["--config.file", str(path), *flags]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(": ")[1] for line in lines[:4]] == [
        "accounts[0].api_key_file",
        "accounts[1].api_key_file",
        "accounts[2].api_key_env",
        "accounts[3].secrets.account_sid.file",
    ]
    assert lines[4].startswith(f"{action} while these 4 secrets cannot be read")
    assert len(lines) == 5


def test_a_key_that_is_there_but_wrong_is_not_called_unreadable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Written as ${VAR} without --config.expand-env, a secret of the wrong shape: each has its
    # own fix on its line; neither is a file or variable that could not be read.
    path = write_config(
        tmp_path,
        "accounts:\n"
        "  - {name: a, provider: twocaptcha, api_key: '${TWOCAPTCHA_KEY}'}\n"
        "  - {name: b, provider: twilio, api_key: twilio-token-01234, secrets: {account_sid: AC1}}\n",
    )
    assert cli.main(["--config.file", str(path), "--config.check"]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(": ")[1] for line in lines] == [
        "accounts[0].api_key",
        "accounts[1].secrets.account_sid",
    ]


def test_a_reload_is_not_told_it_does_not_start(tmp_path: Path) -> None:
    path = write_config(tmp_path, MISSING_SECRETS)
    args = cli.parse_args(["--config.file", str(path)])
    with pytest.raises(ConfigError) as caught:
        cli.config_loader(args, at_start=False)(str(path))
    assert caught.value.notes == ()


@pytest.mark.parametrize(
    ("host", "tls", "url"),
    [
        (None, False, "http://localhost:9877/"),
        ("0.0.0.0", True, "https://localhost:9877/"),
        ("127.0.0.1", False, "http://127.0.0.1:9877/"),
        ("::1", False, "http://[::1]:9877/"),
    ],
)
def test_the_landing_url(host: str | None, tls: bool, url: str) -> None:
    assert cli.landing_url(host, 9877, tls=tls) == url


def test_bad_listen_address() -> None:
    result = run("--demo", "--web.listen-address", "localhost")
    assert result.returncode == 2
    assert "not HOST:PORT" in result.stderr


async def test_demo_serves_every_provider_type() -> None:
    async with exporter_process("--demo", "--log.format", "json") as running:
        status, text = await running.get("/metrics")
        assert status == 200
        found = samples(text)
        demo = [*demo_accounts(), *catalogue_accounts()]
        healthy = {a.name: a.provider for a in demo if not a.name.endswith("-flaky")}
        assert set(PROVIDERS) <= set(healthy.values())
        for name, provider in healthy.items():
            assert value(found, "apibalance_up", provider=provider, account=name) == 1.0, name
        assert accounts_in(found, "apibalance_up") == {a.name for a in demo}
        status, page = await running.get("/")
        assert "capmonster-low" in page
        code, stderr = await running.stop()
    assert code == 0
    # What `make run` shows: where to point the browser.
    assert f'"url": "{running.url}/"' in stderr
    for line in stderr.splitlines():
        record = json.loads(line)  # --log.format json: every line is JSON
        assert record["level"] in ("info", "warn")
        assert "demo-" not in line or "-key" not in line


async def test_sighup_reloads_and_sigterm_finishes_scrapes(
    simulator: Simulator, tmp_path: Path
) -> None:
    simulator.add("capmonster", SimAccount("first-key-000001", balance=1.0))
    simulator.add(
        "capmonster", SimAccount("second-key-00002", balance=2.0, chaos=[(1.0, delay(1.0))])
    )
    first = account("first", "capmonster", "first-key-000001", simulator.base_url("capmonster"))
    second = account(
        "second", "capmonster", "second-key-00002", simulator.base_url("capmonster"), cache_ttl="0s"
    )
    path = write_config(tmp_path, {"accounts": [first]})
    async with exporter_process("--config.file", str(path)) as running:
        assert accounts_in(samples((await running.get("/metrics"))[1]), "apibalance_up") == {
            "first"
        }
        write_config(tmp_path, {"accounts": [first, second]})
        running.process.send_signal(signal.SIGHUP)
        for _ in range(100):
            found = samples((await running.get("/metrics"))[1])
            if accounts_in(found, "apibalance_up") == {"first", "second"}:
                break
            await asyncio.sleep(0.05)
        assert (
            value(found, "apibalance_balance_usd", provider="capmonster", account="second") == 2.0
        )
        # A scrape in flight when SIGTERM arrives still gets its answer.
        scrape = asyncio.ensure_future(running.get("/metrics"))
        await asyncio.sleep(0.3)
        running.terminate()
        status, text = await scrape
        assert status == 200
        assert value(samples(text), "apibalance_up", provider="capmonster", account="second") == 1.0
        code, stderr = await running.stop()
    assert code == 0
    assert 'msg="config reloaded"' in stderr
    assert "Traceback" not in stderr


def test_python_dash_m_and_console_script_agree() -> None:
    script = Path(PYTHON).parent / "apibalance-exporter"
    if not script.exists():  # run outside the project's venv
        return
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=False)
    assert result.stdout == run("--version").stdout


@pytest.mark.parametrize(
    "fixture", ["invalid-alias-bomb.yml", "invalid-deep-nesting.yml", "invalid-nul-bytes.yml"]
)
def test_config_check_of_a_hostile_file_is_one_line(fixture: str) -> None:
    path = Path(__file__).parent / "testdata" / fixture
    result = run("--config.check", "--config.file", str(path))
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"{path}:")
    assert "invalid YAML" in line


async def test_a_fifo_key_file_fails_the_reload_and_sigterm_still_stops(
    simulator: Simulator, tmp_path: Path
) -> None:
    simulator.add("capmonster", SimAccount("fifo-test-key-0001", balance=1.0))
    first = account("first", "capmonster", "fifo-test-key-0001", simulator.base_url("capmonster"))
    path = write_config(tmp_path, {"accounts": [first]})
    async with exporter_process("--config.file", str(path)) as running:
        os.mkfifo(tmp_path / "key.fifo")
        by_fifo = {k: v for k, v in first.items() if k != "api_key"} | {"api_key_file": "key.fifo"}
        write_config(tmp_path, {"accounts": [by_fifo]})
        running.process.send_signal(signal.SIGHUP)
        for _ in range(100):
            found = samples((await running.get("/metrics"))[1])
            if value(found, "apibalance_config_last_reload_successful") == 0.0:
                break
            await asyncio.sleep(0.05)
        assert value(found, "apibalance_config_last_reload_successful") == 0.0
        assert accounts_in(found, "apibalance_up") == {"first"}
        running.terminate()
        code, stderr = await running.stop()
    assert code == 0
    assert "is a FIFO, not a regular file" in stderr


def test_config_check_turns_an_unexpected_error_into_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """As a reload does: no traceback on the terminal, and the web config is still checked."""

    def broken_loader(path: str, **options: object) -> Config:
        raise RuntimeError(f"a bug reading {path}")

    monkeypatch.setattr(cli, "load_config", broken_loader)
    web = tmp_path / "web.yml"
    web.write_text("basic_auth_users:\n  prometheus: plaintext-password\n")
    status = cli.check(cli.parse_args(["--config.check", "--web.config.file", str(web)]))
    assert status == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "cannot load the config: unexpected RuntimeError (see the log)"
    assert lines[1].startswith(f"{web}:2: basic_auth_users.prometheus: not a bcrypt hash")
    assert len(lines) == 2
