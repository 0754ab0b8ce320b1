"""The overview dashboard, written as code with Grafana's grafana-foundation-sdk.

    python grafana/generate.py           # write grafana/dashboards/apibalance-overview.json
    python grafana/generate.py --check   # exit 1 if the committed JSON differs from this code

Thresholds match the alerts in alerts/rules/: a balance under its low-balance threshold is
orange (ApiBalanceLow), under a quarter of it red (ApiBalanceNearlyEmpty); fewer than 24 hours
left is orange, fewer than 4 red (ApiBalanceRunsOutWithin24h and ...4h); credits and the daily
limit are drawn against the thresholds their alerts use.

Money is shown in each account's own currency, from the recorded all-currency series, and is
only ever summed by currency: totals are one value per currency present.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TypeVar

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.builders import statushistory as status_history
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import prometheus as prom

PanelBuilder = Builder[model.Panel]
PanelT = TypeVar("PanelT", stat.Panel, timeseries.Panel)
OUTPUT = Path(__file__).parent / "dashboards" / "apibalance-overview.json"
UID = "apibalance-overview"
# Importing through Grafana's UI asks for this input and writes the chosen data source's uid
# wherever `${DS_PROMETHEUS}` stands: here only the data source variable's default, so
# provisioning (which knows no inputs) falls back to the default Prometheus data source.
DATASOURCE_INPUT = "DS_PROMETHEUS"
# The Grafana release the pinned grafana-foundation-sdk models.
GRAFANA_VERSION = "10.1.0"
PANEL_PLUGIN_NAMES = {
    "stat": "Stat",
    "status-history": "Status history",
    "table": "Table",
    "timeseries": "Time series",
}
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
# Every per-account query is narrowed by the template variables.
SEL = 'job=~"$job",provider=~"$provider",account=~"$account"'
ACCOUNT_LEGEND = "{{provider}} / {{account}}"

USD = "currencyUSD"
HOURS = "h"
# Money in a panel that may hold several currencies: a plain number, and the currency's own
# unit for those Grafana knows (matched on the series' display name, which ends in the code).
MONEY = "none"
GRAFANA_CURRENCIES = ("USD", "EUR", "GBP", "JPY", "RUB", "INR", "BRL", "CHF", "PLN")


def recorded(name: str) -> str:
    """A series of the recording rules (alerts/rules/), narrowed by the variables. Those are
    one series per account whichever jobs scrape it, with no job label: the job variable
    keeps the accounts that the chosen job scrapes."""
    return (
        f'({name}{{provider=~"$provider",account=~"$account"}}'
        f" and on (provider, account) apibalance_up{{{SEL}}})"
    )


ALL_BALANCES = recorded("provider_account:apibalance_balance:all_currencies")
ALL_THRESHOLDS = recorded("provider_account:apibalance_low_balance_threshold:all_currencies")
CREDIT_LEGEND = "{{account}} {{credit_type}}/{{pool}}"
CURRENCY_LEGEND = ACCOUNT_LEGEND + " ({{currency}})"


def currency_units(panel: PanelT, name_pattern: str) -> PanelT:
    """Each currency Grafana knows gets its unit: `name_pattern` % code matches its series."""
    for code in GRAFANA_CURRENCIES:
        panel.override_by_regexp(
            name_pattern % code,
            [model.DynamicConfigValue(id_val="unit", value=f"currency{code}")],
        )
    return panel


def query(expr: str, legend: str = ACCOUNT_LEGEND, ref: str = "A") -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref)


def table_query(expr: str, ref: str) -> prometheus.Dataquery:
    return (
        prometheus.Dataquery().expr(expr).instant().format(prom.PromQueryFormat.TABLE).ref_id(ref)
    )


def steps(*pairs: tuple[float | None, str]) -> db.ThresholdsConfig:
    return (
        db.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=value, color=color) for value, color in pairs])
    )


# Below a quarter of the threshold red, below the threshold orange (as the alerts).
THRESHOLD_RATIO_STEPS = steps((None, "red"), (0.25, "orange"), (1, "green"))
HOURS_LEFT_STEPS = steps((None, "red"), (4, "orange"), (24, "green"))
UP_MAPPING = model.ValueMap(
    options={
        "0": model.ValueMappingResult(text="down", color="red", index=0),
        "1": model.ValueMappingResult(text="up", color="green", index=1),
    }
)


def series(title: str, unit: str, description: str) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .height(8)
        .span(12)
        .line_width(2)
        .fill_opacity(10)
        .legend(
            cb.VizLegendOptions()
            .show_legend(True)
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.RIGHT)
            .calcs(["lastNotNull"])
        )
    )


def money_series(title: str, description: str) -> timeseries.Panel:
    """A time series of money in each account's currency (its legends end in `(CODE)`)."""
    return currency_units(series(title, MONEY, description), r".*\(%s\)$")


def dashed_thresholds(panel: timeseries.Panel) -> timeseries.Panel:
    """Series whose legend starts with "threshold " are drawn dashed, without fill."""
    return panel.override_by_regexp(
        "threshold .*",
        [
            model.DynamicConfigValue(
                id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]}
            ),
            model.DynamicConfigValue(id_val="custom.fillOpacity", value=0),
        ],
    )


def single(title: str, unit: str, description: str, expr: str, legend: str = "") -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .height(4)
        .span(6)
        .with_target(query(expr, legend=legend))
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]))
    )


def per_currency(title: str, description: str, expr: str) -> stat.Panel:
    """A stat of one value per currency, each named by its code."""
    panel = (
        single(title, MONEY, description, expr, legend="{{currency}}")
        .thresholds(steps((None, "blue")))
        .decimals(2)
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
    )
    return currency_units(panel, "^%s$")


def overview_stats() -> list[PanelBuilder]:
    return [
        per_currency(
            "Money left",
            "Total balance of the selected accounts, one value per currency (amounts in "
            "different currencies are never added).",
            f"sum by (currency) ({ALL_BALANCES})",
        ),
        per_currency(
            "Spend per hour",
            "Total money spent per hour over the last hour, one value per currency "
            "(balance decreases; top-ups excluded).",
            f"sum by (currency) ({recorded('provider_account:apibalance_spend_per_hour:1h')})",
        ),
        single(
            "First account empty in",
            HOURS,
            "Shortest time until an account is empty at the burn rate of the last 6 hours.",
            f"min({recorded('provider_account:apibalance_hours_until_empty:6h')})",
        ).thresholds(HOURS_LEFT_STEPS),
        single(
            "Accounts down",
            "short",
            "Accounts that no scrape reads (apibalance_up 0 everywhere).",
            f"count({recorded('provider_account:apibalance_up:max')} == 0) or vector(0)",
        ).thresholds(steps((None, "green"), (1, "red"))),
    ]


def accounts_table() -> table.Panel:
    rename = {
        "Value #A": "Balance",
        "Value #B": "Burn rate / h",
        "Value #C": "Empty in",
        "Value #D": "Status",
        "Value #E": "Last success",
        "Value #F": "Balance / threshold",
        "currency": "Currency",
    }
    return (
        table.Panel()
        .title("Accounts")
        .description(
            "One row per account: balance and burn rate of the last hour in the account's "
            "currency, time until empty at the 6-hour burn rate, status of the last "
            "collection, last success, and balance as a multiple of the account's low-balance "
            "threshold (orange below 1, red below 0.25)."
        )
        .datasource(DATASOURCE)
        .height(9)
        .span(24)
        .with_target(table_query(ALL_BALANCES, "A"))
        .with_target(table_query(recorded("provider_account:apibalance_spend_per_hour:1h"), "B"))
        .with_target(table_query(recorded("provider_account:apibalance_hours_until_empty:6h"), "C"))
        .with_target(table_query(recorded("provider_account:apibalance_up:max"), "D"))
        .with_target(
            table_query(
                "max by (provider, account) "
                f"(apibalance_last_success_timestamp_seconds{{{SEL}}}) * 1000",
                "E",
            )
        )
        .with_target(
            table_query(
                f"{ALL_BALANCES} / on (provider, account, currency) {ALL_THRESHOLDS}",
                "F",
            )
        )
        .with_transformation(model.DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(
            model.DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": {"Time": True},
                    "indexByName": {"provider": 0, "account": 1, "Value #A": 2, "currency": 3},
                    "renameByName": rename,
                },
            )
        )
        # Each row's money is in the currency beside it: a plain number, not a $ amount.
        .override_by_name("Balance", [model.DynamicConfigValue(id_val="decimals", value=2)])
        .override_by_name("Burn rate / h", [model.DynamicConfigValue(id_val="decimals", value=2)])
        .override_by_name(
            "Empty in",
            [
                model.DynamicConfigValue(id_val="unit", value=HOURS),
                model.DynamicConfigValue(id_val="thresholds", value=HOURS_LEFT_STEPS.build()),
                model.DynamicConfigValue(
                    id_val="custom.cellOptions", value={"type": "color-background"}
                ),
            ],
        )
        .override_by_name(
            "Status",
            [
                model.DynamicConfigValue(id_val="mappings", value=[UP_MAPPING]),
                model.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-text"}),
            ],
        )
        .override_by_name(
            "Last success", [model.DynamicConfigValue(id_val="unit", value="dateTimeAsIso")]
        )
        .override_by_name(
            "Balance / threshold",
            [
                model.DynamicConfigValue(id_val="unit", value="percentunit"),
                model.DynamicConfigValue(id_val="thresholds", value=THRESHOLD_RATIO_STEPS.build()),
                model.DynamicConfigValue(
                    id_val="custom.cellOptions", value={"type": "color-background"}
                ),
            ],
        )
    )


def balance_panels() -> list[PanelBuilder]:
    return [
        dashed_thresholds(
            money_series(
                "Balance",
                "Money left per account in its currency, with its low-balance threshold dashed.",
            )
        )
        .with_target(query(ALL_BALANCES, legend=CURRENCY_LEGEND))
        .with_target(query(ALL_THRESHOLDS, legend="threshold " + CURRENCY_LEGEND, ref="B")),
        money_series(
            "Burn rate",
            "Money spent per hour in each account's currency: the last hour, and the "
            "6-hour average the forecast uses. Top-ups are payments, not negative spend, "
            "and do not lower it.",
        )
        .with_target(
            query(
                recorded("provider_account:apibalance_spend_per_hour:1h"),
                legend="1h " + CURRENCY_LEGEND,
            )
        )
        .with_target(
            query(
                recorded("provider_account:apibalance_spend_per_hour:6h"),
                legend="6h " + CURRENCY_LEGEND,
                ref="B",
            )
        ),
        series(
            "Forecast: hours until empty",
            HOURS,
            "Balance divided by the 6-hour burn rate. "
            "The red and orange lines are the 4 h and 24 h alerts.",
        )
        .with_target(
            query(recorded("provider_account:apibalance_hours_until_empty:6h"), CURRENCY_LEGEND)
        )
        .thresholds(HOURS_LEFT_STEPS)
        .thresholds_style(cb.GraphThresholdsStyleConfig().mode(common.GraphTresholdsStyleMode.LINE))
        .axis_soft_max(48),
        money_series(
            "Balance forecast, next 24 hours",
            "Where each balance will be over the next day if the 6-hour burn rate holds, "
            "in the account's currency.",
        ).with_target(
            query(
                f"clamp_min({ALL_BALANCES}"
                f" - on (provider, account, currency)"
                f" {recorded('provider_account:apibalance_spend_per_hour:6h')} * 24, 0)",
                legend="in 24h " + CURRENCY_LEGEND,
            )
        ),
    ]


def credit_panels() -> list[PanelBuilder]:
    return [
        dashed_thresholds(
            series(
                "Credits by type and pool",
                "short",
                "Credits left per credit type and pool (Ocean.io standard/email/phone in "
                "one_time and recurrent pools, Anti-Captcha subscription credits, CapSolver "
                "package calls, the catalogue's searches, requests, ...), and a type's total "
                "where its low_credits threshold is for all pools. Dashed: the threshold the "
                "credit alerts use (low_credits, else a tenth of the plan's allowance, else "
                "a tenth of the week's maximum).",
            )
        )
        .with_target(
            query(recorded("provider_account:apibalance_credits:max"), legend=CREDIT_LEGEND)
        )
        .with_target(
            query(
                f"{recorded('provider_account:apibalance_credits:all_pools')}"
                " and on (provider, account, credit_type, pool)"
                " provider_account:apibalance_low_credits_threshold:effective",
                legend=CREDIT_LEGEND,
                ref="B",
            )
        )
        .with_target(
            query(
                recorded("provider_account:apibalance_low_credits_threshold:effective"),
                legend="threshold " + CREDIT_LEGEND,
                ref="C",
            )
        ),
        series(
            "Credits forecast: hours until used up",
            HOURS,
            "Each credit type (all its pools together) divided by its use per hour over the "
            "last 6 hours. The red and orange lines are the 4 h and 24 h alerts.",
        )
        .with_target(
            query(
                recorded("provider_account:apibalance_credits_hours_until_empty:6h"),
                legend="{{account}} {{credit_type}}",
            )
        )
        .thresholds(HOURS_LEFT_STEPS)
        .thresholds_style(cb.GraphThresholdsStyleConfig().mode(common.GraphTresholdsStyleMode.LINE))
        .axis_soft_max(48),
        dashed_thresholds(
            series(
                "Daily limit left",
                "short",
                "Requests left today, and dashed the threshold of the daily-limit alert "
                "(low_daily_limit, else a tenth of the day's allowance).",
            )
        )
        .with_target(query(recorded("provider_account:apibalance_daily_limit_remaining:max")))
        .with_target(
            query(
                recorded("provider_account:apibalance_low_daily_limit_threshold:effective"),
                legend="threshold " + ACCOUNT_LEGEND,
                ref="B",
            )
        ),
        series("Daily limit resets in", "s", "Time until the daily limit resets.").with_target(
            query(recorded("provider_account:apibalance_daily_limit_reset_seconds:max"))
        ),
    ]


def spend_panels() -> list[PanelBuilder]:
    queue_legend = "{{account}} {{queue}}"
    return [
        series(
            "Hourly spend by queue",
            USD,
            "Money spent in the last complete hour, from Anti-Captcha's spending statistics.",
        ).with_target(query(f"apibalance_hourly_spend_usd{{{SEL}}}", legend=queue_legend)),
        series("Hourly tasks by queue", "short", "Tasks in the last complete hour.").with_target(
            query(f"apibalance_hourly_tasks{{{SEL}}}", legend=queue_legend)
        ),
        series(
            "Cost per task",
            USD,
            "Money per task in the last complete hour, by queue.",
        )
        .with_target(
            query(
                f"apibalance_hourly_spend_usd{{{SEL}}} / (apibalance_hourly_tasks{{{SEL}}} > 0)",
                legend=queue_legend,
            )
        )
        .decimals(5),
        series(
            "Spend over the last 24 hours",
            USD,
            "Money spent over the complete hourly records returned (up to 24).",
        ).with_target(query(f"apibalance_daily_spend_usd{{{SEL}}}", legend=queue_legend)),
    ]


def health_panels() -> list[PanelBuilder]:
    return [
        status_history.Panel()
        .title("Collection status")
        .description("apibalance_up per account: green when the last collection succeeded.")
        .datasource(DATASOURCE)
        .height(8)
        .span(12)
        .with_target(query(f"apibalance_up{{{SEL}}}"))
        .mappings([UP_MAPPING]),
        series(
            "Errors by reason",
            "short",
            "Failed collections per interval, by reason (timeout, connection, http, auth, "
            "rate_limited, invalid_response, provider_error).",
        )
        .with_target(
            query(
                f"sum by (provider, account, reason) "
                f"(increase(apibalance_collect_errors_total{{{SEL}}}[$__rate_interval]))",
                legend="{{account}} {{reason}}",
            )
        )
        .draw_style(common.GraphDrawStyle.BARS),
        series(
            "Collect duration", "s", "How long the last collection of each account took."
        ).with_target(query(f"apibalance_collect_duration_seconds{{{SEL}}}")),
        series(
            "Time since last success",
            "s",
            "Seconds since each account's balance was last read successfully.",
        ).with_target(query(f"time() - apibalance_last_success_timestamp_seconds{{{SEL}}}")),
        single(
            "Config reload",
            "short",
            "1 if the exporter's last config load or reload succeeded.",
            'min(apibalance_config_last_reload_successful{job=~"$job"})',
        )
        .mappings(
            [
                model.ValueMap(
                    options={
                        "0": model.ValueMappingResult(text="failed", color="red", index=0),
                        "1": model.ValueMappingResult(text="ok", color="green", index=1),
                    }
                )
            ]
        )
        .span(12),
        single(
            "Exporter version",
            "short",
            "apibalance_build_info of the scraped exporters.",
            'count by (version) (apibalance_build_info{job=~"$job"})',
        )
        .span(12)
        .text_mode(common.BigValueTextMode.NAME),
    ]


def variable(name: str, label: str, query_text: str) -> db.QueryVariable:
    return (
        db.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query({"query": query_text, "refId": name})
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
    )


def build() -> db.Dashboard:
    dashboard = (
        db.Dashboard("API balances")
        .uid(UID)
        .description("Money and quota left on paid API accounts, from apibalance-exporter.")
        .tags(["apibalance", "prometheus"])
        .editable()
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .time("now-24h", "now")
        .refresh("1m")
        .timezone("browser")
        .with_variable(db.DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(
            variable("job", "Job", "label_values(apibalance_build_info, job)")
            .multi(False)
            .include_all(False)
        )
        .with_variable(
            variable("provider", "Provider", 'label_values(apibalance_up{job=~"$job"}, provider)')
        )
        .with_variable(
            variable(
                "account",
                "Account",
                'label_values(apibalance_up{job=~"$job",provider=~"$provider"}, account)',
            )
        )
    )
    sections: list[tuple[str, list[PanelBuilder]]] = [
        ("Overview", [*overview_stats(), accounts_table()]),
        ("Balance and forecast", balance_panels()),
        ("Credits and daily limit", credit_panels()),
        ("Spending (Anti-Captcha spending statistics)", spend_panels()),
        ("Exporter health", health_panels()),
    ]
    panel_id = 0
    for title, panels in sections:
        panel_id += 1
        dashboard.with_row(db.Row(title).id(panel_id))
        for panel in panels:
            panel_id += 1
            # Stable ids keep links to single panels (viewPanel=N) working across versions.
            # Set on the built model: the panel types' builders share no typed id() method.
            panel.build().id_val = panel_id
            dashboard.with_panel(panel)
    return dashboard


def shareable(dashboard: dict[str, Any]) -> dict[str, Any]:
    """The envelope of a dashboard exported "for sharing externally": `__inputs` names the
    data source the import asks for, `__requires` the Grafana, data source and panel plugins."""
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "datasource":
            placeholder = f"${{{DATASOURCE_INPUT}}}"
            variable["current"] = {"selected": False, "text": placeholder, "value": placeholder}
    panel_types = sorted({panel["type"] for panel in dashboard["panels"]} - {"row"})
    requires = [
        {"type": "grafana", "id": "grafana", "name": "Grafana", "version": GRAFANA_VERSION},
        {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
        *(
            {"type": "panel", "id": kind, "name": PANEL_PLUGIN_NAMES[kind], "version": ""}
            for kind in panel_types
        ),
    ]
    inputs = [
        {
            "name": DATASOURCE_INPUT,
            "label": "Prometheus",
            "description": "The Prometheus that scrapes apibalance-exporter",
            "type": "datasource",
            "pluginId": "prometheus",
            "pluginName": "Prometheus",
        }
    ]
    return {"__inputs": inputs, "__requires": requires, **dashboard}


def render() -> str:
    dashboard = json.loads(json.dumps(build().build(), cls=JSONEncoder))
    return json.dumps(shareable(dashboard), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(f"{OUTPUT} differs from grafana/generate.py; run: python grafana/generate.py")
            return 1
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
