"""The shipped rules and Alertmanager example: valid, unit-tested, and complete."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import promtool, require_tool

ROOT = Path(__file__).parent.parent
RULES = sorted((ROOT / "alerts" / "rules").glob("*.yml"))
RULE_TESTS = sorted((ROOT / "alerts" / "tests").glob("*.yml"))
ALERTMANAGER = ROOT / "alerts" / "alertmanager.yml"
RUNBOOK = ROOT / "docs" / "alerts.md"


def alerting_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for path in RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules.extend(rule for rule in group["rules"] if "alert" in rule)
    return rules


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)


def test_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", *map(str, RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stdout + result.stderr


def test_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", *map(str, RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("rule", alerting_rules(), ids=lambda rule: rule["alert"])
def test_alert_follows_the_mixin_conventions(rule: dict[str, Any]) -> None:
    assert re.fullmatch(r"ApiBalance[A-Z][A-Za-z0-9]+", rule["alert"])
    assert "for" in rule
    assert rule["labels"]["severity"] in ("critical", "warning", "info")
    annotations = rule["annotations"]
    assert annotations["summary"].endswith(".")
    assert "description" in annotations
    anchor = rule["alert"].lower()
    assert annotations["runbook_url"].endswith(f"docs/alerts.md#{anchor}")
    # The runbook section exists: a heading of docs/alerts.md whose GitHub anchor is the
    # alert's name.
    assert re.search(rf"^#+ {rule['alert']}$", RUNBOOK.read_text(), re.MULTILINE), rule["alert"]


def test_per_account_alerts_name_provider_and_account() -> None:
    for rule in alerting_rules():
        if rule["alert"] in EXPORTER_ALERTS:
            continue
        description = rule["annotations"]["description"]
        assert "{{ $labels.provider }}" in description, rule["alert"]
        assert "{{ $labels.account }}" in description, rule["alert"]


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    fired: set[str] = set()
    silent: set[str] = set()
    for path in RULE_TESTS:
        for group in yaml.safe_load(path.read_text())["tests"]:
            accounts = {
                m.group(1)
                for series in group.get("input_series", [])
                if (m := re.search(r'account="([^"]+)"', series["series"]))
            }
            for case in group.get("alert_rule_test", []):
                expected = case.get("exp_alerts") or []
                if expected:
                    fired.add(case["alertname"])
                # Silent: nothing expected at this time, or an account of the input that does not fire.
                if not expected or accounts - {a["exp_labels"].get("account") for a in expected}:
                    silent.add(case["alertname"])
    names = {rule["alert"] for rule in alerting_rules()}
    assert names - fired == set()
    assert names - silent == set()


def test_alertmanager_example_is_valid() -> None:
    amtool = require_tool("amtool")
    result = run(amtool, "check-config", str(ALERTMANAGER))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (
            ["alertname=ApiBalanceNearlyEmpty", "severity=critical", "provider=ocean", "account=a"],
            "pager",
        ),
        (["alertname=ApiBalanceLow", "severity=warning", "provider=ocean", "account=a"], "chat"),
        (["alertname=Whatever", "severity=info"], "null"),
        # The account's team (its `labels:` in the exporter's config) picks the receivers.
        (
            ["alertname=ApiBalanceNearlyEmpty", "severity=critical", "account=a", "team=growth"],
            "growth-pager",
        ),
        (
            ["alertname=ApiBalanceCreditsLow", "severity=warning", "account=a", "team=growth"],
            "growth-chat",
        ),
        (["alertname=Whatever", "severity=info", "team=growth"], "null"),
        # A team without a route of its own gets the shared receivers.
        (["alertname=ApiBalanceLow", "severity=warning", "account=a", "team=other"], "chat"),
    ],
)
def test_alertmanager_routes_by_team_and_severity(labels: list[str], receiver: str) -> None:
    amtool = require_tool("amtool")
    result = run(amtool, "config", "routes", "test", "--config.file", str(ALERTMANAGER), *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


def test_a_down_account_does_not_alert_for_what_it_last_read() -> None:
    config = yaml.safe_load(ALERTMANAGER.read_text())
    rule = next(
        r for r in config["inhibit_rules"] if "ApiBalanceAccountDown" in r["source_matchers"][0]
    )
    [target] = rule["target_matchers"]
    silenced = set(re.fullmatch(r'alertname=~"(.*)"', target).group(1).split("|"))  # type: ignore[union-attr]
    readings = {r["alert"] for r in alerting_rules()} - EXPORTER_ALERTS - ACCOUNT_STATE_ALERTS
    assert silenced == readings
    assert rule["equal"] == ["provider", "account"]


# Alerts about the exporter itself, not about one account.
EXPORTER_ALERTS = {"ApiBalanceExporterAbsent", "ApiBalanceConfigReloadFailed"}
# Alerts about whether an account can be read at all.
ACCOUNT_STATE_ALERTS = {"ApiBalanceAccountDown", "ApiBalanceKeyRejected"}


def test_per_account_alerts_carry_the_account_labels() -> None:
    """Every per-account alert is its condition times the account's info series (labels,
    service, top_up_url), matched on provider and account only: one alert per account
    whichever jobs and instances scraped it."""
    for rule in alerting_rules():
        if rule["alert"] in EXPORTER_ALERTS:
            continue
        expr = " ".join(rule["expr"].split())
        assert expr.startswith(
            "provider_account:apibalance_account_info:labels * on (provider, account) group_left"
        ), rule["alert"]
