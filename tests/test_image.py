"""The container image, built from the unchanged Dockerfile and run (docs/deployment.md,
"Docker"): its `docker build` and `docker run` lines, run with buildah and podman (see
tests/container.py for how they stand in for Docker here)."""

from __future__ import annotations

import os
import secrets
import shlex
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.container import Containers, debian_mirror, require_container_tools
from tests.helpers import free_port, readme_section, value, yaml_blocks
from tests.shipping import copy_checkout, demo_account_names, scrape_until, shell_commands

# Building the base and the image takes a minute or two; the tests after it, seconds.
pytestmark = pytest.mark.timeout(1200)

IMAGE_USER = "10001"
CANARY = f"planted-key-{secrets.token_hex(8)}"
# The documented config account is pointed at a simulated provider run inside the container.
SIMULATOR_PORT = 18080
SIMULATED_BALANCE = 42.5
RUN_FLAGS = [
    # Both limits are needed for runc to start a container on this kind of host.
    "--ulimit",
    "nofile=4096:4096",
    "--ulimit",
    "nproc=4096:4096",
    # No systemd timer here: the test runs the health check itself.
    "--health-interval",
    "disable",
]


def docker_commands(verb: str) -> list[list[str]]:
    """The documented `docker <verb> ...` lines, as words, with $PWD left in place."""
    found = []
    for command in shell_commands(readme_section("## Docker")):
        words = shlex.split(command.replace("$PWD", "@PWD@"))
        if words[:2] == ["docker", verb]:
            found.append(words[2:])
    return found


@pytest.fixture(scope="module")
def containers() -> Iterator[Containers]:
    require_container_tools()
    containers = Containers()
    try:
        containers.make_base_image()
        yield containers
    finally:
        containers.remove_everything()


@pytest.fixture(scope="module")
def image(containers: Containers, tmp_path_factory: pytest.TempPathFactory) -> str:
    [build] = docker_commands("build")
    assert build[0] == "-t"
    assert build[2] == "."
    tag = build[1]
    context = copy_checkout(tmp_path_factory.mktemp("context"))
    # What a user may have lying in the checkout: .dockerignore must keep it all out.
    (context / "apibalance.yml").write_text(f"accounts:\n  - {{api_key: {CANARY}}}\n")
    (context / "keys").mkdir()
    (context / "keys" / "anticaptcha").write_text(CANARY)
    (context / "exporter.key").write_text(CANARY)
    containers.build(context, tag)
    return tag


def run(containers: Containers, image: str, arguments: list[str], pwd: Path) -> tuple[str, int]:
    """`docker run ARGUMENTS` as podman runs it here: detached, the port published on loopback
    only, $PWD replaced by `pwd`. `--rm` is left out so the exit status and logs can be read;
    the fixture removes every container. The container id and the published port."""
    port = free_port()
    translated: list[str] = []
    words = iter(arguments)
    for word in words:
        if word == "--rm":
            continue
        if word == "-p":
            published = next(words)
            assert published == "9877:9877"
            translated += ["-p", f"127.0.0.1:{port}:9877"]
        elif word == image:
            translated += [word, *words]
        else:
            translated.append(word.replace("@PWD@", str(pwd)))
    container = containers.podman("run", "-d", *RUN_FLAGS, *translated).stdout.strip()
    return container, port


def demo_line() -> list[str]:
    [line] = [words for words in docker_commands("run") if "--demo" in words]
    return line


@pytest.fixture(scope="module")
def demo(containers: Containers, image: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    container, port = run(containers, image, demo_line(), tmp_path_factory.mktemp("pwd"))
    scrape_until(f"http://127.0.0.1:{port}/metrics", demo_account_names())
    return container


def test_the_image_serves_every_demo_account(containers: Containers, image: str) -> None:
    container, port = run(containers, image, demo_line(), Path("/nonexistent"))
    found = scrape_until(f"http://127.0.0.1:{port}/metrics", demo_account_names())
    assert demo_account_names() <= {
        dict(labels)["account"] for name, labels in found if name == "apibalance_up"
    }
    containers.podman("rm", "--force", "--time", "0", container)


def test_the_process_runs_as_the_unprivileged_user(containers: Containers, demo: str) -> None:
    pid = containers.podman("inspect", "--format", "{{.State.Pid}}", demo).stdout.strip()
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    assert status["Uid"].split() == [IMAGE_USER] * 4
    assert status["Gid"].split() == [IMAGE_USER] * 4
    assert "apibalance-exporter" in Path(f"/proc/{pid}/cmdline").read_text()


def test_the_healthcheck_passes(containers: Containers, demo: str) -> None:
    result = containers.podman("healthcheck", "run", demo, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_sigterm_stops_it_within_seconds(containers: Containers, image: str) -> None:
    container, port = run(containers, image, demo_line(), Path("/nonexistent"))
    scrape_until(f"http://127.0.0.1:{port}/metrics", demo_account_names())
    started = time.monotonic()
    containers.podman("kill", "--signal", "TERM", container)
    status = containers.podman("wait", container).stdout.strip()
    elapsed = time.monotonic() - started
    logs = containers.podman("logs", container).stderr
    # A process that ignored SIGTERM would still run: Docker kills it only after 10 s.
    assert elapsed < 10, logs
    assert status == "0", logs
    assert "msg=stopped" in logs


def test_a_mounted_config_and_key_file_work_as_the_readme_says(
    containers: Containers, image: str, tmp_path: Path
) -> None:
    [line] = [words for words in docker_commands("run") if any(w == "-v" for w in words)]
    [block] = yaml_blocks(readme_section("## Docker"))
    config = yaml.safe_load(block)
    [account] = config["accounts"]
    account["base_url"] = f"http://127.0.0.1:{SIMULATOR_PORT}/{account['provider']}"
    (tmp_path / "apibalance.yml").write_text(yaml.safe_dump(config))
    (tmp_path / "apibalance.yml").chmod(0o644)
    key_name = Path(account["api_key_file"]).name
    keys = tmp_path / "keys"
    keys.mkdir()
    key = f"mounted-{secrets.token_hex(8)}"
    (keys / key_name).write_text(key + "\n")
    # As docs/deployment.md says: the keys stay mode 600, owned by the image's user.
    (keys / key_name).chmod(0o600)
    os.chown(keys / key_name, int(IMAGE_USER), int(IMAGE_USER))
    container, port = run(containers, image, line, tmp_path)
    # The provider, simulated in the container's own network namespace, knows only `key`.
    containers.podman(
        "exec",
        "-d",
        container,
        "python",
        "-c",
        "import asyncio\n"
        "from exporter.demo import SimAccount, Simulator\n"
        "async def main():\n"
        "    simulator = Simulator()\n"
        f"    simulator.add({account['provider']!r}, "
        f"SimAccount({key!r}, balance={SIMULATED_BALANCE}))\n"
        f"    await simulator.start(port={SIMULATOR_PORT})\n"
        "    await asyncio.Event().wait()\n"
        "asyncio.run(main())\n",
    )
    found = scrape_until(f"http://127.0.0.1:{port}/metrics", {account["name"]}, up_only=True)
    balance = value(
        found, "apibalance_balance_usd", provider=account["provider"], account=account["name"]
    )
    assert balance == SIMULATED_BALANCE
    logs = containers.podman("logs", container)
    assert key not in logs.stdout + logs.stderr


def test_dockerignore_keeps_planted_keys_out_of_the_image(
    containers: Containers, image: str
) -> None:
    mounted = Path(containers.podman("image", "mount", image).stdout.strip())
    try:
        assert (mounted / "opt/apibalance/bin/apibalance-exporter").is_file()
        carrying = []
        for directory, _, files in os.walk(mounted):
            for name in files:
                path = Path(directory) / name
                if path.is_symlink() or not path.is_file():
                    continue
                if CANARY.encode() in path.read_bytes():
                    carrying.append(str(path.relative_to(mounted)))
        assert not carrying, f"the planted key reached the image: {carrying}"
    finally:
        containers.podman("image", "unmount", image, check=False)


def test_the_base_comes_from_the_debian_archive_apt_uses(tmp_path: Path) -> None:
    one_line = tmp_path / "sources.list"
    one_line.write_text(
        "# deb http://old.example/debian bookworm main\n"
        "deb http://security.example/debian-security bookworm-security main\n"
        "deb [arch=amd64] http://mirror.example/debian bookworm main contrib\n"
    )
    deb822 = tmp_path / "debian.sources"
    deb822.write_text(
        "Types: deb\nURIs: http://security.example/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n\n"
        "Types: deb deb-src\nURIs: http://deb822.example/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n"
    )
    assert debian_mirror([one_line]) == "http://mirror.example/debian"
    assert debian_mirror([tmp_path / "missing.list", deb822]) == "http://deb822.example/debian"
