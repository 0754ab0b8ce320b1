"""The systemd unit and its environment file (docs/deployment.md, "systemd"): `systemd-analyze verify`
accepts the unit as shipped, it is locked down, reloads with SIGHUP, and the environment
file's flags start the exporter."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import require_tool, unavailable
from tests.shipping import ROOT

# systemd-analyze and unshare, Debian tools outside the fast loop.
pytestmark = pytest.mark.integration

UNIT = ROOT / "deploy" / "systemd" / "apibalance-exporter.service"
ENVIRONMENT = ROOT / "deploy" / "systemd" / "apibalance-exporter.env"
# The console script of the environment running the tests (make test: .venv).
VENV_SCRIPT = Path(sys.executable).parent / "apibalance-exporter"


def directives(section: str) -> list[tuple[str, str]]:
    """(key, value) pairs of a unit section in order; keys may repeat, as systemd allows."""
    found, current = [], ""
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
        elif line and not line.startswith("#") and current == section:
            key, _, value = line.partition("=")
            found.append((key, value))
    return found


def service(key: str) -> list[str]:
    return [value for k, value in directives("Service") if k == key]


def environment() -> dict[str, str]:
    values = {}
    for line in ENVIRONMENT.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            [values[key.strip()]] = shlex.split(value)
    return values


def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze", package="systemd")
    unshare = require_tool("unshare", package="util-linux")
    if os.geteuid() != 0:
        unavailable(
            "verifying the unit needs root: it mounts the command where the unit expects it"
        )
    [start] = service("ExecStart")
    command = Path(start.split()[0])
    # verify insists the command exists: in a mount namespace of its own, the console script
    # of this checkout stands where the documented pipx command installs it.
    stand_in = tmp_path / "bin"
    stand_in.mkdir()
    shutil.copy2(VENV_SCRIPT, stand_in / command.name)
    script = (
        f"mount --bind {shlex.quote(str(stand_in))} {shlex.quote(str(command.parent))}"
        f" && exec {shlex.quote(analyze)} verify {shlex.quote(str(UNIT))}"
    )
    result = subprocess.run(
        [unshare, "--mount", "sh", "-c", script], capture_output=True, text=True, check=False
    )
    # verify exits 0 even on an unknown key or a bad value: any word from it is a problem.
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""


def test_the_unit_is_locked_down_and_reloads_with_sighup() -> None:
    assert service("DynamicUser") == ["yes"]
    assert service("NoNewPrivileges") == ["yes"]
    assert service("ProtectSystem") == ["strict"]
    assert service("CapabilityBoundingSet") == [""]
    assert service("ExecReload") == ["/bin/kill -HUP $MAINPID"]
    assert service("EnvironmentFile") == ["/etc/default/apibalance-exporter"]
    [start] = service("ExecStart")
    assert start == "/usr/local/bin/apibalance-exporter $APIBALANCE_ARGS"
    assert ("WantedBy", "multi-user.target") in directives("Install")


def test_the_environment_files_flags_start_the_exporter(tmp_path: Path) -> None:
    """The flags as shipped, with the config path pointing at a config that reads its key
    from a variable, the way the environment file suggests."""
    args = shlex.split(environment()["APIBALANCE_ARGS"])
    assert "--config.file=/etc/apibalance/apibalance.yml" in args
    config = tmp_path / "apibalance.yml"
    config.write_text(
        "accounts:\n"
        "  - name: backup-solver\n"
        "    provider: capsolver\n"
        "    api_key_env: CAPSOLVER_KEY\n"
    )
    args = [f"--config.file={config}" if a.startswith("--config.file=") else a for a in args]
    result = subprocess.run(
        [str(VENV_SCRIPT), *args, "--config.check"],
        env={**os.environ, "CAPSOLVER_KEY": "a-key-from-the-environment-file"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "#CAPSOLVER_KEY=" in ENVIRONMENT.read_text()
