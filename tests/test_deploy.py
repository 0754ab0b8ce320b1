"""The Dockerfile, its build context, and the compose stack: what a user starts with one
command must be complete and valid. No Docker engine is needed: the build context is
reproduced from .dockerignore and installed into a fresh venv as the image's build stage
does, and every config the stack mounts is checked by its own tool."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from exporter.webconfig import load_web_config
from tests.helpers import promtool, readme_yaml, require_tool
from tests.shipping import ROOT, tracked_files

DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def bind_mounts(service: str) -> dict[str, Path]:
    """Container path -> host path of a service's bind mounts (named volumes skipped)."""
    mounts = {}
    for volume in compose()["services"][service].get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts[target] = (ROOT / source).resolve()
    return mounts


def on_host(service: str, container_path: str) -> Path:
    for target, source in sorted(bind_mounts(service).items(), key=lambda m: -len(m[0])):
        if container_path == target or container_path.startswith(target + "/"):
            return source / container_path.removeprefix(target).lstrip("/")
    raise AssertionError(f"{service}: {container_path} is not mounted from the repository")


# -- compose ------------------------------------------------------------------------------


def test_the_stack_has_every_part() -> None:
    services = compose()["services"]
    assert set(services) == {"exporter", "prometheus", "alertmanager", "grafana"}
    assert services["exporter"]["build"] == "."
    assert "--demo" in services["exporter"]["command"]
    assert "9877:9877" in services["exporter"]["ports"]


def test_every_mounted_path_exists() -> None:
    for name in compose()["services"]:
        for target, source in bind_mounts(name).items():
            assert source.exists(), f"{name}: {source} (mounted at {target}) does not exist"
            assert ROOT in source.parents, f"{name}: {source} is outside the repository"


def test_prometheus_config_passes_promtool_with_the_mounted_rules(tmp_path: Path) -> None:
    service = compose()["services"]["prometheus"]
    flag = next(a for a in service["command"] if a.startswith("--config.file="))
    config_path = on_host("prometheus", flag.split("=", 1)[1])
    config = yaml.safe_load(config_path.read_text())
    # Point rule_files at the host side of their mounts, so promtool checks the real rules.
    config["rule_files"] = [str(on_host("prometheus", p)) for p in config["rule_files"]]
    local = tmp_path / "prometheus.yml"
    local.write_text(yaml.safe_dump(config))
    result = promtool("check", "config", str(local))
    assert result.returncode == 0, result.stdout + result.stderr
    shipped = sum(
        len(group["rules"])
        for path in (ROOT / "alerts" / "rules").glob("*.yml")
        for group in yaml.safe_load(path.read_text())["groups"]
    )
    assert f"SUCCESS: {shipped} rules found" in result.stdout, result.stdout

    targets = [
        target
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    ]
    assert "exporter:9877" in targets
    alertmanagers = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert alertmanagers == ["alertmanager:9093"]


def test_alertmanager_config_passes_amtool() -> None:
    amtool = require_tool("amtool")
    service = compose()["services"]["alertmanager"]
    flag = next(a for a in service["command"] if a.startswith("--config.file="))
    path = on_host("alertmanager", flag.split("=", 1)[1])
    result = subprocess.run(
        [amtool, "check-config", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_is_provisioned_with_the_datasource_and_dashboards() -> None:
    provisioning = on_host("grafana", "/etc/grafana/provisioning")
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    [source] = datasources["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert source["uid"] == "prometheus"
    providers = yaml.safe_load((provisioning / "dashboards" / "apibalance.yml").read_text())
    [provider] = providers["providers"]
    dashboards = on_host("grafana", provider["options"]["path"])
    assert sorted(p.name for p in dashboards.glob("*.json")) == ["apibalance-overview.json"]
    home = compose()["services"]["grafana"]["environment"][
        "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"
    ]
    assert on_host("grafana", home).is_file()


# -- Dockerfile ---------------------------------------------------------------------------


def instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def test_dockerfile_is_multi_stage_slim_and_non_root() -> None:
    steps = instructions()
    stages = [rest for keyword, rest in steps if keyword == "FROM"]
    assert len(stages) >= 2
    assert all(re.match(r"python:3\.11-slim\b", stage) for stage in stages)
    final = steps[max(i for i, (k, _) in enumerate(steps) if k == "FROM") :]
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users, "the final stage sets no USER"
    assert users[-1].split(":")[0] not in ("root", "0")
    assert ("EXPOSE", "9877") in final
    healthcheck = next(rest for keyword, rest in final if keyword == "HEALTHCHECK")
    assert "http://127.0.0.1:9877/-/healthy" in healthcheck
    assert ("ENTRYPOINT", '["apibalance-exporter"]') in final
    assert any(k == "COPY" and rest.startswith("--from=build") for k, rest in final)


def dockerignore_patterns() -> list[tuple[bool, str]]:
    patterns = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negated = line.startswith("!")
            patterns.append((negated, line.removeprefix("!").rstrip("/")))
    return patterns


def ignored(path: str, patterns: list[tuple[bool, str]]) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern matching a directory
    matches everything under it; `**` matches any number of directories."""
    result = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for negated, pattern in patterns:
        regex = fnmatch.translate(pattern).replace(".*.*/", "(.*/)?")
        if any(re.match(regex, prefix) for prefix in prefixes):
            result = not negated
    return result


def build_context() -> list[str]:
    patterns = dockerignore_patterns()
    return [name for name in tracked_files() if not ignored(name, patterns)]


def test_dockerignore_is_an_allowlist() -> None:
    assert dockerignore_patterns()[0] == (False, "*")
    context = build_context()
    assert "pyproject.toml" in context
    assert "exporter/cli.py" in context
    assert all(f in ("pyproject.toml", "README.md") or f.startswith("exporter/") for f in context)
    assert ignored("exporter/__pycache__/cli.cpython-311.pyc", dockerignore_patterns())
    assert ignored("apibalance.yml", dockerignore_patterns())
    assert ignored(".git/config", dockerignore_patterns())


def test_every_copy_source_is_in_the_build_context() -> None:
    context = build_context()
    for keyword, rest in instructions():
        if keyword != "COPY" or rest.startswith("--from"):
            continue
        *sources, _destination = rest.split()
        for source in sources:
            assert any(f == source or f.startswith(source + "/") for f in context), source


@pytest.mark.integration  # pip installs the build context into a fresh venv
@pytest.mark.timeout(600)
def test_the_build_context_installs_and_runs(tmp_path: Path) -> None:
    """What the image's build stage does, minus Docker: install the context into a fresh venv
    and run the console script the ENTRYPOINT names."""
    context = tmp_path / "context"
    for name in build_context():
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, context / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    result = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--no-compile", str(context)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    version = subprocess.run(
        [str(venv / "bin" / "apibalance-exporter"), "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert version.stdout.startswith("apibalance-exporter, version ")
    check = subprocess.run(
        [str(venv / "bin" / "apibalance-exporter"), "--config.check", "--demo"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    # The catalogue is package data: the installed package serves and reads every entry.
    once = subprocess.run(
        [str(venv / "bin" / "apibalance-exporter"), "--collect.once", "--demo"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert once.returncode in (0, 1), once.stderr
    for line in once.stdout.splitlines():
        if line.startswith(("serpapi-main ", "twilio-main ", "smsactivate-main ")):
            assert line.split()[2] == "1", line
    assert "textverified-main" in once.stdout


# -- the documented examples --------------------------------------------------------------


def test_readme_prometheus_examples_pass_promtool(tmp_path: Path) -> None:
    blocks = [b for b in readme_yaml() if "scrape_configs" in b]
    # The quick start; /probe; /probe shared out among replicas; behind TLS and basic auth.
    assert len(blocks) == 4
    for index, block in enumerate(blocks):
        # Files a real setup has (a CA, a password file) are made here so promtool finds them.
        for path in re.findall(r"(?:ca_file|password_file): (\S+)", block):
            local = tmp_path / Path(path).name
            local.write_text("placeholder\n")
            block = block.replace(path, str(local))
        config = tmp_path / f"prometheus-{index}.yml"
        config.write_text(block)
        result = promtool("check", "config", str(config))
        assert result.returncode == 0, block + result.stdout + result.stderr


def test_readme_web_config_example_loads(tmp_path: Path) -> None:
    [block] = [b for b in readme_yaml("# Security") if "tls_server_config" in b]
    cert = trustme.CA().issue_cert("localhost")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "server.crt"))
    cert.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    (tmp_path / "web.yml").write_text(block)
    config = load_web_config(tmp_path / "web.yml")
    assert config.tls
    assert set(config.users) == {"prometheus"}
