"""The repository explains itself: the README and docs/ document the whole public interface,
and nothing in the repository cites a document a reader of it cannot open.

The lists come from the code (the argument parser, the settings models, the routes, the metric
families), so a new flag, key, endpoint or metric fails here until the documentation has it.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Iterator

import pytest
from prometheus_client.metrics_core import Metric
from pydantic import BaseModel

from exporter.cli import build_parser
from exporter.config import TOP_LEVEL_KEYS, build_config
from exporter.engine import Engine
from exporter.http import Exporter
from exporter.metrics import ACCOUNT_FAMILIES, ExporterCollector, ReloadStatus
from exporter.providers import PROVIDERS
from exporter.settings import GlobalSettings
from exporter.upstream import Upstream
from exporter.webconfig import WebConfigFile
from tests.helpers import README, account, readme_section, readme_text
from tests.shipping import ROOT, tracked_files

# What a reader cannot open: the spec and the provider API samples the project was built
# from, and the tracker's issue numbers. Spelled so that this file does not match itself.
PRIVATE_REFERENCE = re.compile(r"SPEC\.md|seed 00[0-9]|\bseeds?/|\bissue [0-9]+\b")


def code_spans(text: str) -> list[str]:
    return re.findall(r"`([^`\n]+)`", text)


# -- what the code defines ------------------------------------------------------------------


def cli_flags() -> list[str]:
    return [
        option
        for action in build_parser()._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    ]


def models_in(annotation: object) -> Iterator[type[BaseModel]]:
    """The config models an annotation holds (`X | None`, `list[X]`, `dict[str, X]` ...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    for argument in typing.get_args(annotation):
        yield from models_in(argument)


def model_keys(model: type[BaseModel], prefix: str) -> Iterator[str]:
    """Every key a model reads, nested ones as `outer.inner`."""
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        yield key
        for inner in models_in(field.annotation):
            yield from model_keys(inner, key + ".")


def config_keys() -> list[str]:
    keys = list(TOP_LEVEL_KEYS)
    keys += model_keys(GlobalSettings, "global.")
    for provider in PROVIDERS.values():
        keys += model_keys(provider.settings_model, "accounts[].")
    return sorted(set(keys))


def web_config_keys() -> list[str]:
    return sorted(set(model_keys(WebConfigFile, "")))


async def endpoints() -> list[str]:
    upstream = Upstream(max_concurrency=1)
    try:
        only = account("only", "datalabs", "documented-0f3c9a1e7b", "http://127.0.0.1:1")
        config = build_config({"accounts": [only]}, source="test")
        exporter = Exporter(Engine(config, upstream))
        paths = {
            route.resource.canonical
            for route in exporter.app.router.routes()
            if route.resource is not None
        }
    finally:
        await upstream.close()
    return sorted(paths)


def metric_names() -> list[str]:
    """Every metric family /metrics can write, counters with their `_total`."""
    families: list[Metric] = [family.metric() for family in ACCOUNT_FAMILIES]
    families += ExporterCollector(lambda: ReloadStatus(True, 0.0)).collect()
    return [f.name + "_total" if f.type == "counter" else f.name for f in families]


# -- what the documentation says -----------------------------------------------------------------


def undocumented_flags(readme: str, flags: list[str]) -> list[str]:
    spans = code_spans(readme_section("## Command line", readme))
    return [flag for flag in flags if not any(re.match(rf"{flag}(?:\s|$)", s) for s in spans)]


def undocumented_keys(readme: str, keys: list[str]) -> list[str]:
    """Keys whose name is in no code span or YAML block (`accounts[].timeout`, `timeout:`)."""
    code = code_spans(readme) + re.findall(r"```yaml\n(.*?)```", readme, flags=re.DOTALL)
    words = {word for text in code for word in re.findall(r"[A-Za-z_][\w-]*", text)}
    return [key for key in keys if key.rsplit(".", 1)[-1].removesuffix("[]") not in words]


def undocumented_endpoints(readme: str, paths: list[str]) -> list[str]:
    spans = code_spans(readme_section("## Endpoints", readme))
    return [path for path in paths if not any(re.match(rf"{path}(?:\?|\s|$)", s) for s in spans)]


def undocumented_metrics(readme: str, names: list[str]) -> list[str]:
    spans = set(code_spans(readme_section("## Metrics", readme)))
    return [name for name in names if name not in spans]


def test_every_flag_is_in_the_command_line_section() -> None:
    flags = cli_flags()
    assert {"--config.file", "--web.listen-address", "--version"} <= set(flags)
    assert undocumented_flags(readme_text(), flags) == []


def test_every_config_key_is_in_the_readme() -> None:
    keys = config_keys()
    assert {"accounts", "global.timeout", "accounts[].spending_stats.queues"} <= set(keys)
    assert any(key.startswith("accounts[].request.") for key in keys)  # http_json's own
    assert undocumented_keys(readme_text(), keys) == []


def test_every_web_config_key_is_in_the_readme() -> None:
    keys = web_config_keys()
    assert "tls_server_config.client_allowed_sans" in keys
    readme = readme_text()
    assert undocumented_keys(readme_section("# Security", readme), keys) == []


async def test_every_endpoint_is_in_the_endpoints_section() -> None:
    paths = await endpoints()
    assert {"/metrics", "/probe", "/-/reload"} <= set(paths)
    assert undocumented_endpoints(readme_text(), paths) == []


def test_every_metric_is_in_the_metrics_section() -> None:
    names = metric_names()
    assert {"apibalance_up", "apibalance_collect_errors_total", "apibalance_build_info"} <= set(
        names
    )
    assert undocumented_metrics(readme_text(), names) == []


def test_every_provider_type_has_its_row_in_the_readme() -> None:
    """Built-in types in the README's providers table, catalogue entries in its catalogue
    table."""
    readme = README.read_text(encoding="utf-8")
    rows = {
        line.split("|")[1].strip().strip("`") for line in readme.splitlines() if line[:2] == "| "
    }
    assert {"anticaptcha", "http_json"} <= set(PROVIDERS)
    assert sorted(set(PROVIDERS) - rows) == []


def test_the_readers_notice_what_is_missing() -> None:
    readme = readme_text()
    assert undocumented_flags(readme.replace("`--demo`", "demo"), ["--demo"]) == ["--demo"]
    # A flag that only starts like a documented one is not documented by it.
    assert undocumented_flags(readme, ["--config"]) == ["--config"]
    assert undocumented_keys("`accounts[].name`", ["accounts[].names"]) == ["accounts[].names"]
    assert undocumented_keys("```yaml\nglobal:\n  timeout: 1s\n```", ["global.timeout"]) == []
    gone = re.sub(r"`/probe\?account=NAME[^`]*`", "probe", readme)
    assert undocumented_endpoints(gone, ["/probe"]) == ["/probe"]
    gone = readme.replace("`apibalance_hourly_tasks`", "hourly tasks")
    assert undocumented_metrics(gone, ["apibalance_hourly_tasks"]) == ["apibalance_hourly_tasks"]


# -- what the repository cites --------------------------------------------------------------


def private_references(text: str) -> list[str]:
    return [
        f"{number}: {line.strip()}"
        for number, line in enumerate(text.splitlines(), start=1)
        if PRIVATE_REFERENCE.search(line)
    ]


def test_nothing_cites_what_a_reader_cannot_open() -> None:
    found = []
    for name in tracked_files():
        data = (ROOT / name).read_bytes()
        if b"\0" in data:
            continue  # binary, as `git grep -I` skips it
        text = data.decode("utf-8", errors="replace")
        found += [f"{name}:{where}" for where in private_references(text)]
    assert found == [], "cite the README or docs/ section instead:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "line",
    [
        "Flags as in SPEC" + ".md.",
        "DataLabs (seed" + " 000): the protocol",
        "answers from seed" + "s/004.json",
        "The goals of issue" + " 6.",
    ],
)
def test_a_private_reference_is_found(line: str) -> None:
    assert private_references(f"ok\n{line}\n") == [f"2: {line}"]


def test_readme_sections_are_not_private_references() -> None:
    assert private_references("(README: Scrape budget) Issues are welcome; seed=1") == []
