"""What a process loads is what its config uses: the provider types, the catalogue's
entries, the http_json engine and the demo are loaded when asked for, not at start; basic
auth and the web config's models with a web config, the landing page when it is opened, the
spelling hints with a misspelt word (docs/performance.md)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import bcrypt

from exporter.providers import BUILT_IN, CATALOGUE, PROVIDERS
from tests.helpers import write_config

# Loads the config in a fresh interpreter, as the exporter does, and says what it loaded.
PROBE = textwrap.dedent(
    """
    import json, sys
    import exporter.cli
    from exporter.config import load_config
    from exporter.configfile import ConfigError
    from exporter.providers import BUILT_IN, CATALOGUE
    try:
        load_config(sys.argv[1])
        problems = []
    except ConfigError as error:
        problems = error.lines
    print(json.dumps({
        "modules": sorted(sys.modules),
        "entries": CATALOGUE.loaded(),
        "built_in": BUILT_IN.loaded(),
        "problems": problems,
    }))
    """
)
LAZY = ("exporter.demo", "exporter.providers.catalogue", "exporter.providers.http_json", "jmespath")
# The built-in types besides datalabs (and antigate, the protocol it shares with others).
OTHER_BUILT_IN = tuple(
    f"exporter.providers.{name}" for name in BUILT_IN if name not in ("datalabs", "http_json")
)
# Loaded by a running exporter only when its config, its flags or a request need them.
LAZY_WHEN_SERVING = (
    *LAZY,
    *OTHER_BUILT_IN,
    "exporter.auth",
    "bcrypt",
    "exporter.webconfig",
    "exporter.landing",
    "exporter.debug",
    "exporter.once",
    "difflib",
)

# Starts the exporter in a fresh interpreter, as `python -m exporter` does, on one datalabs
# account of a real upstream on loopback; scrapes /metrics, opens the landing page, asks for a
# debug collection, and says what was loaded at each step.
SERVING_PROBE = textwrap.dedent(
    """
    import asyncio, base64, json, sys
    from pathlib import Path
    from aiohttp import ClientSession, web
    from exporter import cli

    async def get_balance(request):
        return web.json_response({"errorId": 0, "balance": 12.5})

    async def main(directory, web_config, password):
        upstream = web.AppRunner(web.Application())
        upstream.app.router.add_post("/getBalance", get_balance)
        await upstream.setup()
        site = web.TCPSite(upstream, "127.0.0.1", 0)
        await site.start()
        base_url = f"http://127.0.0.1:{upstream.addresses[0][1]}"
        config = Path(directory) / "apibalance.yml"
        account = {"name": "labs", "provider": "datalabs", "api_key": "k", "base_url": base_url}
        # Asked at every request, so that the debug collection shows its request.
        settings = {"global": {"cache_ttl": "0s"}, "accounts": [account]}
        config.write_text(json.dumps(settings))  # JSON is YAML
        config.chmod(0o600)
        flags = ["--config.file", str(config)]
        if web_config:
            flags += ["--web.config.file", web_config]
        _, running = await cli.start(cli.parse_args(flags), [("127.0.0.1", 0)])
        url = f"http://127.0.0.1:{running.runner.addresses[0][1]}"
        headers = {}
        if password:
            credentials = base64.b64encode(f"prometheus:{password}".encode()).decode()
            headers["Authorization"] = f"Basic {credentials}"
        found = {}
        async with ClientSession(headers=headers) as client:
            async with client.get(url + "/metrics") as answer:
                found["metrics"] = (answer.status, await answer.text())
            found["serving"] = sorted(sys.modules)
            async with client.get(url + "/") as answer:
                found["landing"] = (answer.status, await answer.text())
            found["after_landing"] = sorted(sys.modules)
            async with client.get(url + "/probe?account=labs&debug=true") as answer:
                found["debug"] = (answer.status, await answer.text())
            found["after_debug"] = sorted(sys.modules)
        await running.close()
        await upstream.cleanup()
        print(json.dumps(found))

    asyncio.run(main(*sys.argv[1:]))
    """
)


def loaded_by(config: Path) -> dict[str, list[str]]:
    run = subprocess.run(
        [sys.executable, "-c", PROBE, str(config)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    found: dict[str, list[str]] = json.loads(run.stdout)
    return found


def serving(tmp_path: Path, web_config: str = "", password: str = "") -> dict[str, Any]:
    run = subprocess.run(
        [sys.executable, "-c", SERVING_PROBE, str(tmp_path), web_config, password],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    found: dict[str, Any] = json.loads(run.stdout)
    return found


def test_a_config_of_built_in_types_loads_no_catalogue_entry_nor_http_json(
    tmp_path: Path,
) -> None:
    config = write_config(
        tmp_path,
        "accounts:\n  - {name: a, provider: datalabs, api_key: k}\n",
    )
    found = loaded_by(config)
    assert found["problems"] == []
    assert found["entries"] == []
    assert found["built_in"] == ["datalabs"]
    assert [m for m in found["modules"] if m.startswith(LAZY)] == []
    assert [m for m in found["modules"] if m.startswith(OTHER_BUILT_IN)] == []
    # No word of the file is misspelt: the hints' fuzzy matching is not loaded.
    assert "difflib" not in found["modules"]


def test_a_misspelt_provider_loads_the_hints_and_gets_one(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        "accounts:\n  - {name: a, provider: datalab, api_key: k}\n",
    )
    found = loaded_by(config)
    assert "difflib" in found["modules"]
    assert len(found["problems"]) == 1
    assert "unknown provider 'datalab' (did you mean 'datalabs'?)" in found["problems"][0]


def test_a_running_exporter_loads_what_its_config_and_requests_use(tmp_path: Path) -> None:
    found = serving(tmp_path)
    status, text = found["metrics"]
    assert status == 200
    assert 'apibalance_balance_usd{account="labs",provider="datalabs"} 12.5' in text
    assert [m for m in found["serving"] if m.startswith(LAZY_WHEN_SERVING)] == []
    # Opening the landing page loads it, and it shows the account.
    status, page = found["landing"]
    assert status == 200
    assert "labs" in page
    assert "exporter.landing" in found["after_landing"]
    # So does a debug collection, which shows the request it sent.
    status, text = found["debug"]
    assert status == 200
    assert "request 1: POST http://127.0.0.1:" in text
    assert "exporter.debug" in found["after_debug"]


def test_a_web_config_loads_basic_auth(tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(b"secret-password", bcrypt.gensalt(4)).decode()
    web_config = write_config(
        tmp_path, f"basic_auth_users:\n  prometheus: {hashed}\n", name="web.yml"
    )
    found = serving(tmp_path, str(web_config), "secret-password")
    assert found["metrics"][0] == 200
    assert {"exporter.webconfig", "exporter.auth", "bcrypt"} <= set(found["serving"])
    assert found["landing"][0] == 200


def test_a_catalogue_account_loads_its_own_entry_only(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        "accounts:\n  - {name: s, provider: serpapi, api_key: k}\n",
    )
    found = loaded_by(config)
    assert found["entries"] == ["serpapi"]
    assert "exporter.demo" not in found["modules"]


def test_every_type_is_loaded_under_its_own_name() -> None:
    # Going over them loads them all: each entry's definition is still checked (the tests
    # of the catalogue do so), and a type is the same class however it is reached.
    for name, provider in PROVIDERS.items():
        assert provider.type_name == name
        assert PROVIDERS[name] is provider
        if name in CATALOGUE:
            assert CATALOGUE[name] is provider
