"""The overview dashboard: generated from code, and every query speaks about real series."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from exporter.metrics import AccountCollector
from tests.helpers import unavailable

ROOT = Path(__file__).parent.parent
DASHBOARD = ROOT / "grafana" / "dashboards" / "apibalance-overview.json"
RULES = ROOT / "alerts" / "rules" / "apibalance.rules.yml"


def generator() -> ModuleType:
    if importlib.util.find_spec("grafana_foundation_sdk") is None:
        unavailable(
            "grafana-foundation-sdk is not installed (make test installs the dashboards extra)"
        )
    spec = importlib.util.spec_from_file_location(
        "grafana_generate", ROOT / "grafana" / "generate.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every query of every panel."""
    return [(p["title"], t["expr"]) for p in panels() for t in p["targets"]]


def test_committed_json_is_what_the_code_generates() -> None:
    assert DASHBOARD.read_text() == generator().render()


def test_template_variables() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert list(variables) == ["datasource", "job", "provider", "account"]
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("provider", "account"):
        assert variables[name]["includeAll"]
        assert variables[name]["multi"]


def test_every_panel_has_the_datasource_a_unit_and_a_description() -> None:
    for panel in panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["description"], panel["title"]
        if panel["type"] != "table":
            assert panel["fieldConfig"]["defaults"].get("unit") or panel["fieldConfig"][
                "defaults"
            ].get("mappings"), panel["title"]


def test_every_query_uses_known_series_and_the_variables() -> None:
    exported = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in AccountCollector([]).collect()
    } | {
        "apibalance_balance_usd",
        "apibalance_balance",
        "apibalance_low_balance_threshold",
        "apibalance_credits",
        "apibalance_daily_limit_remaining",
        "apibalance_daily_limit_reset_seconds",
        "apibalance_hourly_spend_usd",
        "apibalance_hourly_tasks",
        "apibalance_daily_spend_usd",
        "apibalance_low_balance_threshold_usd",
        "apibalance_collect_duration_seconds",
        "apibalance_last_success_timestamp_seconds",
        "apibalance_build_info",
        "apibalance_config_last_reload_successful",
    }
    recorded = {
        rule["record"]
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    }
    for title, expr in panel_queries():
        names = set(re.findall(r"\b((?:apibalance_|provider_account:)[a-z_:0-9]+)", expr))
        assert names, (title, expr)
        assert names <= exported | recorded, (title, names - exported - recorded)
        assert "$job" in expr, (title, expr)


def test_the_overview_has_what_users_look_for() -> None:
    titles = {p["title"] for p in panels()}
    for wanted in (
        "Money left",
        "Accounts",
        "Balance",
        "Burn rate",
        "Forecast: hours until empty",
        "Credits by type and pool",
        "Daily limit left",
        "Daily limit resets in",
        "Hourly spend by queue",
        "Hourly tasks by queue",
        "Cost per task",
        "Collection status",
        "Collect duration",
        "Errors by reason",
    ):
        assert wanted in titles


def test_provisioning_points_at_the_dashboards() -> None:
    datasource = yaml.safe_load(
        (ROOT / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    assert datasource["datasources"][0]["type"] == "prometheus"
    provider = yaml.safe_load((ROOT / "grafana/provisioning/dashboards/apibalance.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_importing_through_the_ui_asks_for_the_prometheus_data_source() -> None:
    """Grafana's import writes the chosen data source's uid over every `${<input>}`: the
    data source variable then defaults to it; panels keep following the variable."""
    data = dashboard()
    [wanted] = data["__inputs"]
    assert wanted["type"] == "datasource"
    assert wanted["pluginId"] == "prometheus"
    placeholder = "${" + wanted["name"] + "}"
    imported = json.loads(json.dumps(data).replace(placeholder, "chosen-prometheus"))
    variables = {v["name"]: v for v in imported["templating"]["list"]}
    assert variables["datasource"]["current"]["value"] == "chosen-prometheus"
    requires = {(r["type"], r["id"]) for r in data["__requires"]}
    assert {("grafana", "grafana"), ("datasource", "prometheus")} <= requires
    assert {("panel", p["type"]) for p in panels()} <= requires


def test_provisioning_needs_no_import_input() -> None:
    """Provisioning substitutes no inputs: nothing but the variable's default may name one,
    or a panel would look for a data source called `${DS_PROMETHEUS}`."""
    [wanted] = dashboard()["__inputs"]
    placeholder = "${" + wanted["name"] + "}"
    for panel in dashboard()["panels"]:
        assert placeholder not in json.dumps(panel), panel["title"]
    for variable in dashboard()["templating"]["list"]:
        without_default = {k: v for k, v in variable.items() if k != "current"}
        assert placeholder not in json.dumps(without_default), variable["name"]


MONEY_SERIES = re.compile(
    r"apibalance_balance|apibalance_low_balance_threshold|spend(_usd)?_per_hour"
)


def test_money_is_never_summed_across_currencies() -> None:
    money = [(title, expr) for title, expr in panel_queries() if MONEY_SERIES.search(expr)]
    assert money
    for title, expr in money:
        # The balance and burn-rate panels read every currency, from the all-currency series.
        assert "apibalance_balance_usd" not in expr, (title, expr)
        assert "spend_usd_per_hour" not in expr, (title, expr)
        for aggregation in re.finditer(r"\b(sum|avg|max|min|count)\b\s*(by\s*\(([^)]*)\))?", expr):
            assert "currency" in (aggregation.group(3) or ""), (title, expr)


def test_totals_are_per_currency() -> None:
    by_title = {p["title"]: p for p in panels()}
    for title in ("Money left", "Spend per hour"):
        [target] = by_title[title]["targets"]
        assert target["expr"].startswith("sum by (currency) ("), target["expr"]
        assert target["legendFormat"] == "{{currency}}"


def test_the_accounts_table_shows_each_balance_with_its_currency() -> None:
    table = next(p for p in panels() if p["title"] == "Accounts")
    organize = next(t for t in table["transformations"] if t["id"] == "organize")["options"]
    assert organize["renameByName"]["currency"] == "Currency"
    assert organize["indexByName"]["Value #A"] + 1 == organize["indexByName"]["currency"]
    # Every recorded series that has a currency gives it to every account, USD ones
    # included, so the rows of an account merge into one.
    recorded = {
        rule["record"]: " ".join(rule["expr"].split())
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    }
    for target in table["targets"]:
        for name in re.findall(r"provider_account:[a-z_:0-9]+", target["expr"]):
            if "currency" in target["expr"] or "hours_until_empty" in name:
                assert "all_currencies" in name + recorded[name], (name, recorded[name])


def test_the_docs_name_exactly_the_panels_that_need_the_recording_rules() -> None:
    text = " ".join((ROOT / "docs" / "alerts.md").read_text().split())
    needing = re.search(r"Most panels need the recording rules above .*?: (.*?)\. Those", text)
    without = re.search(r"work without the rules: (.*?) \(per scrape target", text)
    assert needing, "docs/alerts.md no longer lists the panels that need the rules"
    assert without, "docs/alerts.md no longer lists the panels that work without the rules"

    def titles(listing: str) -> set[str]:
        return set(re.findall(r"\*([^*]+)\*", listing))

    recorded = {title for title, expr in panel_queries() if "provider_account:" in expr}
    assert titles(needing.group(1)) == recorded
    assert titles(without.group(1)) == {p["title"] for p in panels()} - recorded
