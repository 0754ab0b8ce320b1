"""What a process loads is what its config uses: the catalogue's entries, the http_json
engine and the demo are loaded when asked for, not at start (docs/performance.md)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from exporter.providers import CATALOGUE, PROVIDERS
from tests.helpers import write_config

# Loads the config in a fresh interpreter, as the exporter does, and says what it loaded.
PROBE = textwrap.dedent(
    """
    import json, sys
    import exporter.cli
    from exporter.config import load_config
    from exporter.providers import CATALOGUE
    load_config(sys.argv[1])
    print(json.dumps({
        "modules": sorted(sys.modules),
        "entries": CATALOGUE.loaded(),
    }))
    """
)
LAZY = ("exporter.demo", "exporter.providers.catalogue", "exporter.providers.http_json", "jmespath")


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


def test_a_config_of_built_in_types_loads_no_catalogue_entry_nor_http_json(
    tmp_path: Path,
) -> None:
    config = write_config(
        tmp_path,
        "accounts:\n  - {name: a, provider: datalabs, api_key: k}\n",
    )
    found = loaded_by(config)
    assert found["entries"] == []
    assert [m for m in found["modules"] if m.startswith(LAZY)] == []


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
