"""Config loading: every refusal names the file, line and key; every problem at once."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from exporter.config import Account, load_config, parse_config
from exporter.configfile import ConfigError
from exporter.providers import BUILT_IN, PROVIDERS
from exporter.settings import RESERVED_LABELS, parse_duration
from tests.helpers import write_config

GOOD = """\
global:
  timeout: 5s
  cache_ttl: 0s
  max_concurrency: 8
  max_concurrency_per_host: 4
accounts:
  - name: main
    provider: anticaptcha
    api_key: literal-key-123456
    low_balance_usd: 5
    spending_stats: {queues: ["Recaptcha Proxyless"]}
  - name: data
    provider: ocean
    api_key_env: OCEAN_TEST_TOKEN
    timeout: 2s
    cache_ttl: 5m
  - name: solver
    provider: decaptcha
    api_key_file: keys/decaptcha
    base_url: https://decaptcha.example.com/
"""


def problems_of(text: str, tmp_path: Path | None = None, **env: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="cfg.yml", base_dir=tmp_path, environ=env)
    return caught.value.lines


def test_good_config_resolves_everything(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "decaptcha").write_text("file-key-abcdef\n")
    config = parse_config(
        GOOD, source="cfg.yml", base_dir=tmp_path, environ={"OCEAN_TEST_TOKEN": "env-token-xyz"}
    )
    main, data, solver = config.accounts
    assert config.global_settings.max_concurrency == 8
    assert config.global_settings.max_concurrency_per_host == 4
    assert (main.timeout, main.cache_ttl, main.low_balance_usd) == (5.0, 0.0, 5.0)
    assert main.base_url == "https://api.anti-captcha.com"
    assert main.api_key.get_secret_value() == "literal-key-123456"
    assert (data.timeout, data.cache_ttl, data.low_balance_usd) == (2.0, 300.0, None)
    assert data.api_key.get_secret_value() == "env-token-xyz"
    assert solver.api_key.get_secret_value() == "file-key-abcdef"
    assert solver.base_url == "https://decaptcha.example.com"
    assert config.summary() == "cfg.yml: OK, 3 account(s) (anticaptcha: 1, decaptcha: 1, ocean: 1)"


def test_keys_never_show_in_reprs(tmp_path: Path) -> None:
    config = parse_config(GOOD.split("  - name: data")[0], source="cfg.yml")
    assert "literal-key-123456" not in repr(config)
    assert "literal-key-123456" not in repr(config.accounts[0].settings)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "global:\n  timout: 5s\n",
            "cfg.yml:2: global.timout: unknown key (did you mean 'timeout'?)",
        ),
        ("acounts: []\n", "cfg.yml:1: acounts: unknown key (did you mean 'accounts'?)"),
        (
            "global:\n  timeout: 10\n",
            "cfg.yml:2: global.timeout: expected a duration with a unit, like 10s or 500ms; got 10",
        ),
        (
            "global:\n  timeout: 10 parsecs\n",
            "cfg.yml:2: global.timeout: not a duration: '10 parsecs'",
        ),
        ("global:\n  timeout: 0s\n", "cfg.yml:2: global.timeout: must be longer than 0s"),
        ("global:\n  cache_ttl: -5s\n", "cfg.yml:2: global.cache_ttl: not a duration: '-5s'"),
        (
            "global:\n  max_concurrency: 0\n",
            "cfg.yml:2: global.max_concurrency: Input should be greater than or equal to 1",
        ),
        (
            "global:\n  timeout: 5s\n  max_concurrency_per_host: many\n",
            "cfg.yml:3: global.max_concurrency_per_host: Input should be a valid integer,"
            " unable to parse string as an integer",
        ),
        (
            "global:\n  max_concurrency_per_host: 0\n",
            "cfg.yml:2: global.max_concurrency_per_host: Input should be greater than or equal"
            " to 1",
        ),
        ("accounts: {}\n", "cfg.yml:1: accounts: must be a list of accounts"),
        ("global: 5\n", "cfg.yml:1: global: Input should be a valid dictionary"),
        ("- 1\n", "cfg.yml:1: the config must be a mapping with 'global' and 'accounts'"),
        ("accounts:\n  - just-a-string\n", "cfg.yml:2: accounts[0]: an account must be a mapping"),
        (
            "accounts:\n  - name: a\n    api_key: k\n",
            "cfg.yml:2: accounts[0]: provider is required",
        ),
    ],
)
def test_refusals_name_their_place(text: str, expected: str) -> None:
    lines = problems_of(text)
    assert any(line.startswith(expected) for line in lines), lines


def test_unknown_provider_suggests_and_lists() -> None:
    [line] = problems_of(
        "accounts:\n  - name: a\n    provider: antcaptcha\n    api_key: kkkkkkkk\n"
    )
    assert line.startswith(
        "cfg.yml:3: accounts[0].provider: unknown provider 'antcaptcha' (did you mean 'anticaptcha'?); known: anticaptcha, "
    )
    assert "capmonster" in line


ACCOUNT = "accounts:\n  - name: a\n    provider: datalabs\n"


@pytest.mark.parametrize("key", ["<script>alert(1)</script>", "<string>", "<mapping>", "<x"])
def test_an_unknown_key_in_angle_brackets_is_named(key: str) -> None:
    """Keys that look like markup, or like the tags of a union's forms, are keys all the same."""
    lines = problems_of(f'global:\n  "{key}": 1\n' + ACCOUNT + "    api_key: kkkkkkkk\n")
    assert lines == [f"cfg.yml:2: global.{key}: unknown key"]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            "    api_key: kkkkkkkk\n    timout: 1s\n",
            "cfg.yml:5: accounts[0].timout: unknown key (did you mean 'timeout'?)",
        ),
        (
            "    api_key: kkkkkkkk\n    spending_stats: true\n",
            "cfg.yml:5: accounts[0].spending_stats: unknown key",
        ),
        (
            "",
            "cfg.yml:2: accounts[0]: exactly one of api_key_file, api_key_env, api_key is required (found: none)",
        ),
        (
            "    api_key: kkkkkkkk\n    api_key_env: X\n",
            "cfg.yml:2: accounts[0]: exactly one of api_key_file, api_key_env, api_key is required (found: api_key_env, api_key)",
        ),
        (
            "    api_key_env: NOT_SET_ANYWHERE\n",
            "cfg.yml:4: accounts[0].api_key_env: the environment variable it names is not set",
        ),
        (
            "    api_key_env: 1BAD\n",
            "cfg.yml:4: accounts[0].api_key_env: not an environment variable name: letters, "
            "digits and '_', not starting with a digit",
        ),
        (
            "    api_key_file: /nonexistent/key\n",
            "cfg.yml:4: accounts[0].api_key_file: cannot read the file it names: No such file or directory",
        ),
        ("    api_key: '   '\n", "cfg.yml:4: accounts[0].api_key: the key is empty"),
        (
            '    api_key: "a\\nb"\n',
            "cfg.yml:4: accounts[0].api_key: the key contains control characters or line breaks",
        ),
        (
            "    api_key: kkkkkkkk\n    base_url: ftp://x\n",
            "cfg.yml:5: accounts[0].base_url: must be an http:// or https:// URL with a host",
        ),
        (
            "    api_key: kkkkkkkk\n    base_url: https://u:p@x\n",
            "cfg.yml:5: accounts[0].base_url: must not carry credentials",
        ),
        (
            "    api_key: kkkkkkkk\n    base_url: https://x/?key=1\n",
            "cfg.yml:5: accounts[0].base_url: must not have a query string or fragment",
        ),
        (
            "    api_key: kkkkkkkk\n    low_balance_usd: -1\n",
            "cfg.yml:5: accounts[0].low_balance_usd: Input should be greater than or equal to 0",
        ),
        (
            "    api_key: kkkkkkkk\n    timeout: 5\n",
            "cfg.yml:5: accounts[0].timeout: expected a duration",
        ),
    ],
)
def test_account_refusals(extra: str, expected: str) -> None:
    lines = problems_of(ACCOUNT + extra)
    assert any(line.startswith(expected) for line in lines), lines


def test_account_name_rules() -> None:
    [line] = problems_of(
        "accounts:\n  - name: 'has space'\n    provider: datalabs\n    api_key: kkkkkkkk\n"
    )
    # The value and the rule in words, not the regular expression.
    assert line == (
        "cfg.yml:2: accounts[0].name: 'has space' is not a valid account name: it must start "
        "with a letter or digit and have only letters, digits, '_', '.', ':' and '-'"
    )


def test_key_file_problems(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    unreadable = tmp_path / "unreadable"
    unreadable.write_text("key-material-1234")
    unreadable.chmod(0)
    text = (
        f"accounts:\n  - name: a\n    provider: datalabs\n    api_key_file: {empty}\n"
        f"  - name: b\n    provider: datalabs\n    api_key_file: {tmp_path}\n"
    )
    if os.geteuid() != 0:  # root reads anything
        text += f"  - name: c\n    provider: datalabs\n    api_key_file: {unreadable}\n"
    lines = problems_of(text)
    assert lines[0] == "cfg.yml:4: accounts[0].api_key_file: the key is empty"
    assert (
        lines[1] == "cfg.yml:7: accounts[1].api_key_file: cannot read the file it names: "
        "is a directory, not a regular file"
    )
    if os.geteuid() != 0:
        assert (
            lines[2]
            == "cfg.yml:10: accounts[2].api_key_file: cannot read the file it names: Permission denied"
        )


def test_relative_key_file_is_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("relative-key-42\n")
    path = write_config(
        tmp_path, "accounts:\n  - {name: a, provider: datalabs, api_key_file: secret}\n"
    )
    assert load_config(path).accounts[0].api_key.get_secret_value() == "relative-key-42"


def test_decaptcha_needs_base_url() -> None:
    [line] = problems_of("accounts:\n  - name: d\n    provider: decaptcha\n    api_key: kkkkkkkk\n")
    assert line == "cfg.yml:2: accounts[0]: base_url is required for provider decaptcha"


def test_duplicate_names() -> None:
    text = (
        "accounts:\n"
        "  - {name: a, provider: datalabs, api_key: kkkkkkkk}\n"
        "  - {name: a, provider: capmonster, api_key: kkkkkkkk}\n"
    )
    [line] = problems_of(text)
    assert line == (
        "cfg.yml:3: accounts[1].name: duplicate account name 'a' (also accounts[0]); "
        "names must be unique in the file"
    )


def test_duplicate_yaml_keys_are_refused() -> None:
    lines = problems_of(
        "global:\n  timeout: 5s\n  timeout: 6s\n"
        "accounts:\n  - {name: a, provider: ocean, api_key: kkkkkkkk}\n"
    )
    assert lines == [
        "cfg.yml:3: global.timeout: duplicate key (YAML would silently keep only the last)"
    ]


def test_spending_stats_queues() -> None:
    base = "accounts:\n  - name: a\n    provider: anticaptcha\n    api_key: kkkkkkkk\n"
    lines = problems_of(base + "    spending_stats: {queues: [all]}\n")
    assert lines[0].startswith("cfg.yml:5: accounts[0].spending_stats.queues: ")
    assert "'all' is the total" in lines[0]
    lines = problems_of(base + "    spending_stats: {queues: [a, a]}\n")
    assert "queues must not repeat" in lines[0]
    lines = problems_of(base + "    spending_stats: {queue: [a]}\n")
    assert lines[0].startswith(
        "cfg.yml:5: accounts[0].spending_stats.queue: unknown key (did you mean 'queues'?)"
    )
    lines = problems_of(base + "    spending_stats: yes please\n")
    assert lines[0].startswith("cfg.yml:5: accounts[0].spending_stats:")


def test_yaml_syntax_error_has_a_line() -> None:
    [line] = problems_of("global:\n  timeout: [5s\naccounts: []\n")
    assert line.startswith("cfg.yml:3: invalid YAML")


def test_every_problem_at_once_in_file_order() -> None:
    text = (
        "global:\n"
        "  timeout: soon\n"
        "accounts:\n"
        "  - {name: a, provider: antcaptcha, api_key: kkkkkkkk}\n"
        "  - {name: b, provider: datalabs}\n"
        "  - {name: c, provider: ocean, api_key: kkkkkkkk, extra: 1}\n"
    )
    lines = problems_of(text)
    assert lines[0] == (
        "cfg.yml:2: global.timeout: not a duration: 'soon' (use units ms, s, m, h, d, like 10s or 1m30s)"
    )
    assert [line.split(":")[1] for line in lines] == ["2", "4", "5", "6"]


def test_secret_values_never_reach_messages() -> None:
    text = "accounts:\n  - name: a\n    provider: datalabs\n    api_key: {nested: super-secret-value}\n"
    lines = problems_of(text)
    assert lines
    assert all("super-secret-value" not in line for line in lines)


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "absent.yml")
    assert caught.value.lines == [
        f"{tmp_path / 'absent.yml'}: cannot read config file: No such file or directory"
    ]


def test_literal_keys_in_a_readable_file_draw_a_warning(tmp_path: Path) -> None:
    path = write_config(
        tmp_path, "accounts:\n  - {name: a, provider: datalabs, api_key: kkkkkkkk}\n"
    )
    assert load_config(path).warnings == ()
    path.chmod(0o644)
    [warning] = load_config(path).warnings
    assert "literal api_key" in warning
    assert "-rw-r--r--" in warning


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("10s", 10.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("1d", 86400.0),
        ("0s", 0.0),
        ("0", 0.0),
        ("1m30s500ms", 90.5),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "s", "5 s", "1.5s", "-1s", "5ms5s", "1h1h", "10S"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


TESTDATA = Path(__file__).parent / "testdata"


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        (
            "invalid-empty.yml",
            ":1: the config is empty (or only comments); it must list at least one account",
        ),
        (
            "invalid-comments-only.yml",
            ":1: the config is empty (or only comments); it must list at least one account",
        ),
        (
            "invalid-no-accounts.yml",
            ":3: accounts: no accounts: the config must list at least one account",
        ),
        (
            "invalid-alias-bomb.yml",
            ":6: invalid YAML: aliases expand to more than 100000 values (anchors repeating "
            "other anchors); write the values out instead",
        ),
        (
            "invalid-alias-cycle.yml",
            ":1: invalid YAML: an alias refers to a node that contains it",
        ),
        ("invalid-deep-nesting.yml", ":2: invalid YAML: nested more than 64 levels deep"),
        (
            "invalid-nul-bytes.yml",
            ":1: invalid YAML: a NUL byte at column 1; a YAML file is text "
            "(was it overwritten with binary data?)",
        ),
        (
            "invalid-tab-indent.yml",
            ":3: invalid YAML: found character '\\t' that cannot start any token at column 1; "
            "YAML indents with spaces, not tabs",
        ),
        (
            "invalid-provider-key-misspelt.yml",
            ":3: accounts[0].provder: unknown key (did you mean 'provider'?); provider is required",
        ),
        (
            "invalid-provider-service-name.yml",
            ":3: accounts[0].provider: unknown provider '2captcha' (did you mean 'twocaptcha'?); "
            "known: " + ", ".join(PROVIDERS),
        ),
        (
            "invalid-key-of-another-provider.yml",
            ":5: accounts[0].spending_stats: unknown key: spending_stats is a key of provider "
            "anticaptcha only",
        ),
        (
            "invalid-account-name.yml",
            ":2: accounts[0].name: 'main account' is not a valid account name: it must start "
            "with a letter or digit and have only letters, digits, '_', '.', ':' and '-'",
        ),
        (
            "invalid-label-reserved.yml",
            ":7: accounts[0].labels.job: 'job' is a label the exporter or Prometheus sets "
            "itself; choose another name (taken: " + ", ".join(sorted(RESERVED_LABELS)) + ")",
        ),
        (
            "invalid-label-name.yml",
            ":6: accounts[0].labels.cost-centre: 'cost-centre' is not a Prometheus label name: "
            "letters, digits and '_', not starting with a digit",
        ),
        (
            "invalid-label-dunder.yml",
            ":5: accounts[0].labels.__name__: '__name__': names starting with '__' are "
            "reserved for Prometheus",
        ),
        (
            "invalid-top-up-url.yml",
            ":5: accounts[0].top_up_url: must be an http:// or https:// URL with a host",
        ),
        (
            "invalid-top-up-url-credentials.yml",
            ":5: accounts[0].top_up_url: must not carry credentials: it is shown on every "
            "alert and page",
        ),
        (
            "invalid-key-in-label.yml",
            ":6: accounts[0].labels.owner: contains the account's key or a secret",
        ),
    ],
)
def test_invalid_config_fixtures(fixture: str, expected: str) -> None:
    path = TESTDATA / fixture
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.lines == [f"{path}{expected}"]


@pytest.mark.parametrize(
    ("written", "meant"),
    [
        ("2captcha", "twocaptcha"),
        ("2Captcha.com", "twocaptcha"),
        ("anti-captcha", "anticaptcha"),
        ("Anti-Captcha", "anticaptcha"),
        ("capmonster cloud", "capmonster"),
        ("ocean.io", "ocean"),
        ("antcaptcha", "anticaptcha"),
        ("capsolvr", "capsolver"),
    ],
)
def test_a_provider_written_as_the_service_is_called(written: str, meant: str) -> None:
    [line] = problems_of(f"accounts:\n  - {{name: a, provider: '{written}', api_key: kkkkkkkk}}\n")
    assert f"unknown provider '{written}' (did you mean '{meant}'?)" in line


def test_aliases_within_the_bound_load_and_are_walked_once() -> None:
    # Five levels of nine: 59049 values once expanded, under the bound. Walking every path
    # to every node (as the duplicate-key check once did) would take minutes.
    anchors = ["a0: &a0 {k: v}"] + [
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 5)
    ]
    lines = problems_of("\n".join([*anchors, "accounts: *a4", "accounts: *a4"]) + "\n")
    assert lines[0] == "cfg.yml:1: a0: unknown key"
    assert "cfg.yml:7: accounts: duplicate key (YAML would silently keep only the last)" in lines


def test_config_and_key_file_must_be_regular_files(tmp_path: Path) -> None:
    # A FIFO would block the reading thread for good (and with it the reload and the exit);
    # the loader runs in a daemon thread here so a regression fails instead of hanging.
    fifo = tmp_path / "key.fifo"
    os.mkfifo(fifo)
    config = write_config(
        tmp_path, "accounts:\n  - {name: a, provider: datalabs, api_key_file: key.fifo}\n"
    )
    outcome: list[str] = []

    def load(path: Path) -> None:
        try:
            load_config(path)
        except ConfigError as error:
            outcome.extend(error.lines)

    for path in (config, fifo):
        outcome.clear()
        thread = threading.Thread(target=load, args=(path,), daemon=True)
        thread.start()
        thread.join(timeout=30)
        assert not thread.is_alive(), f"loading {path.name} hangs on a FIFO"
        if path == config:
            assert outcome == [
                f"{config}:2: accounts[0].api_key_file: cannot read the file it names: "
                "is a FIFO, not a regular file"
            ]
        else:
            assert outcome == [f"{fifo}: cannot read config file: is a FIFO, not a regular file"]


def test_an_account_knows_its_service_its_page_to_pay_on_and_its_labels() -> None:
    text = """\
accounts:
  - name: search
    provider: serpapi
    api_key_env: KEY
    labels: {team: growth, cost_centre: cc-42}
  - name: search-resold
    provider: serpapi
    api_key_env: KEY
    top_up_url: https://reseller.example.com/pay?service=serpapi
  - name: own-api
    provider: http_json
    api_key_env: KEY
    request: {url: "https://balance.example.com/v1/left", headers: {X-Key: "{api_key}"}}
    values: {balance_usd: left}
"""
    search, resold, own = parse_config(text, environ={"KEY": "k-123456"}).accounts
    assert (search.service, search.top_up_url) == ("SerpApi", "https://serpapi.com/change-plan")
    assert search.labels == (("cost_centre", "cc-42"), ("team", "growth"))
    assert resold.top_up_url == "https://reseller.example.com/pay?service=serpapi"
    assert resold.labels == ()
    # A configured API names no service: its host does; where to pay is only what the config says.
    assert (own.service, own.top_up_url) == ("balance.example.com", None)


def test_every_built_in_service_knows_where_to_pay() -> None:
    documented = (Path(__file__).parent.parent / "docs" / "providers.md").read_text()
    for name, provider in BUILT_IN.items():
        if name != "http_json":
            assert provider.top_up_url is not None, name
            assert provider.top_up_url.startswith("https://"), name
            assert f"| `{name}` | {provider.top_up_url}" in documented, name


def test_more_than_sixteen_labels_are_refused() -> None:
    labels = ", ".join(f"l{i}: v" for i in range(17))
    text = (
        f"accounts:\n  - {{name: a, provider: twocaptcha, api_key_env: K, labels: {{{labels}}}}}\n"
    )
    [line] = problems_of(text, K="k-123456")
    assert line.startswith("cfg.yml:2: accounts[0].labels: ")
    assert "at most 16" in line


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        (
            "invalid-low-balance-on-credits.yml",
            ":5: accounts[0].low_balance: this account reports credits, not money; use "
            "low_credits (it reports credits: searches (pool total))",
        ),
        (
            "invalid-low-credits-unknown-type.yml",
            ":6: accounts[0].low_credits.search: this account reports no credit type or pool "
            "'search' (did you mean 'searches'?): write a credit type for all its pools "
            "together, or <credit_type>.<pool> (it reports credits: searches (pool total))",
        ),
        (
            "invalid-low-credits-on-money.yml",
            ":5: accounts[0].low_credits.captcha: this account reports no credits; use "
            "low_balance (it reports money)",
        ),
        (
            "invalid-low-credits-ocean-pool.yml",
            ":6: accounts[0].low_credits.standard.monthly: no credit type or pool "
            "'standard.monthly' (did you mean 'standard.one_time'?): write a credit type, or a "
            "type and one of its pools (one_time, recurrent) after a dot",
        ),
        (
            "invalid-low-credits-http-json.yml",
            ":12: accounts[0].low_credits.requests.daily: this account reports no credit type "
            "or pool 'requests.daily' (did you mean 'requests'?): write a credit type for all "
            "its pools together, or <credit_type>.<pool> (it reports credits: requests (pool "
            "monthly))",
        ),
        (
            "invalid-low-daily-limit-without-limit.yml",
            ":5: accounts[0].low_daily_limit: this account reports no daily limit; use "
            "low_balance (it reports money)",
        ),
    ],
)
def test_a_threshold_that_can_never_apply_is_refused_with_a_hint(
    fixture: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("SERPAPI_KEY", "TWOCAPTCHA_KEY", "OCEAN_TOKEN", "OWN_KEY", "CAPMONSTER_KEY"):
        monkeypatch.setenv(variable, "key-0123456789")
    path = TESTDATA / fixture
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.lines == [f"{path}{expected}"]


def test_credit_thresholds_are_read_against_what_the_account_reports() -> None:
    text = """\
accounts:
  - name: search
    provider: serpapi
    api_key_env: KEY
    low_credits: {searches: 500, searches.total: 100}
  - name: data
    provider: ocean
    api_key_env: KEY
    low_credits: {standard: 5, email.recurrent: 3, company_lookup: 2, company_lookup.one_time: 1}
    low_daily_limit: 40
  - name: dotted
    provider: http_json
    api_key_env: KEY
    request: {url: "https://balance.example.com/v1/left", headers: {X-Key: "{api_key}"}}
    values:
      credits:
        - {credit_type: api.v2, pool: monthly, path: a}
        - {credit_type: api, pool: v2, path: b}
    low_credits: {api.v2: 10, api.v2.monthly: 5, api: 3}
"""
    search, data, dotted = parse_config(text, environ={"KEY": "k-123456"}).accounts

    def thresholds(account: Account) -> list[tuple[str, str, float]]:
        return [(t.credit_type, t.pool, t.below) for t in account.low_credits]

    assert thresholds(search) == [("searches", "all", 500), ("searches", "total", 100)]
    assert thresholds(data) == [
        ("standard", "all", 5),
        ("email", "recurrent", 3),
        # Ocean exports every credit type its answers hold, types added later too.
        ("company_lookup", "all", 2),
        ("company_lookup", "one_time", 1),
    ]
    assert data.low_daily_limit == 40
    # A credit type holding a dot is read whole before the last dot is taken for a pool.
    assert thresholds(dotted) == [
        ("api.v2", "all", 10),
        ("api.v2", "monthly", 5),
        ("api", "all", 3),
    ]


def test_an_unknown_key_that_looks_like_markup_is_named_as_written() -> None:
    text = (
        'global:\n  "<script>": 1\naccounts:\n  - {name: a, provider: twocaptcha, api_key_env: K}\n'
    )
    assert problems_of(text, K="k-123456") == ["cfg.yml:2: global.<script>: unknown key"]


def test_a_secret_written_as_a_bare_value_says_how_to_write_it() -> None:
    text = (
        "accounts:\n  - name: a\n    provider: twilio\n    api_key: kkkkkkkk\n"
        "    secrets: {account_sid: AC0123456789secret}\n"
    )
    [line] = problems_of(text)
    assert line == (
        "cfg.yml:5: accounts[0].secrets.account_sid: a secret is read like the key: write "
        "{env: NAME}, {file: PATH} or, discouraged, {value: ...}"
    )
