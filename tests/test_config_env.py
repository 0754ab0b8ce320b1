"""`--config.expand-env`: `${VAR}` in the config file expanded from the environment before it
is parsed (docs/configuration.md: Command line); without it, a secret written as `${VAR}` is
refused with a hint rather than sent as the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter import cli
from exporter.config import load_config
from exporter.configfile import ConfigError
from tests.helpers import write_config

CONFIG = """\
global:
  timeout: ${TIMEOUT:-7s}
accounts:
  - name: main
    provider: twocaptcha
    api_key: ${TWOCAPTCHA_KEY}
    base_url: ${BASE_URL}
"""


def test_variables_are_expanded_before_parsing(tmp_path: Path) -> None:
    path = write_config(tmp_path, CONFIG)
    env = {"TWOCAPTCHA_KEY": "env-key-0123456789", "BASE_URL": "http://127.0.0.1:9"}
    config = load_config(path, expand_env=True, environ=env)
    [account] = config.accounts
    assert account.api_key.get_secret_value() == "env-key-0123456789"
    assert account.base_url == "http://127.0.0.1:9"
    assert account.timeout == 7.0  # the default after :-


def test_every_unset_variable_is_named_with_its_line(tmp_path: Path) -> None:
    path = write_config(tmp_path, CONFIG)
    with pytest.raises(ConfigError) as caught:
        load_config(path, expand_env=True, environ={})
    assert caught.value.lines == [
        f"{path}:6: ${{TWOCAPTCHA_KEY}}: environment variable TWOCAPTCHA_KEY is not set",
        f"{path}:7: ${{BASE_URL}}: environment variable BASE_URL is not set",
    ]


def test_a_bare_dollar_is_left_alone(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        "accounts:\n  - {name: a, provider: twocaptcha, api_key: 'ab$cd$EF-0123'}\n",
    )
    [account] = load_config(path, expand_env=True, environ={}).accounts
    assert account.api_key.get_secret_value() == "ab$cd$EF-0123"


def test_without_the_flag_a_secret_written_as_a_variable_is_refused(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """\
accounts:
  - name: main
    provider: twocaptcha
    api_key: ${TWOCAPTCHA_KEY}
  - name: sms
    provider: twilio
    api_key_env: TWILIO_TOKEN
    secrets:
      account_sid: {value: "${TWILIO_SID}"}
""",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={"TWILIO_TOKEN": "twilio-token-0123456789"})
    lines = caught.value.lines
    assert lines[0] == (
        f"{path}:4: accounts[0].api_key: the key is written as ${{TWOCAPTCHA_KEY}}, which is "
        "expanded only with --config.expand-env; pass that flag, or read it from the "
        "environment with api_key_env: TWOCAPTCHA_KEY (for secrets: {env: TWOCAPTCHA_KEY})"
    )
    assert "the secret is written as ${TWILIO_SID}" in lines[1]
    assert len(lines) == 2


def test_the_flag_on_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, CONFIG)
    monkeypatch.setenv("TWOCAPTCHA_KEY", "env-key-0123456789")
    monkeypatch.setenv("BASE_URL", "http://127.0.0.1:9")
    assert cli.check(cli.parse_args(["--config.check", "--config.file", str(path)])) == 1
    assert "--config.expand-env" in capsys.readouterr().err
    args = ["--config.check", "--config.expand-env", "--config.file", str(path)]
    assert cli.check(cli.parse_args(args)) == 0
    assert "env-key-0123456789" not in capsys.readouterr().out


def test_a_key_taken_from_the_environment_is_not_a_literal_key_in_the_file(
    tmp_path: Path,
) -> None:
    path = write_config(tmp_path, CONFIG)
    path.chmod(0o644)
    env = {"TWOCAPTCHA_KEY": "env-key-0123456789", "BASE_URL": "http://127.0.0.1:9"}
    assert load_config(path, expand_env=True, environ=env).warnings == ()
    literal = CONFIG + "  - {name: other, provider: datalabs, api_key: kkkkkkkk}\n"
    path.write_text(literal, encoding="utf-8")
    [warning] = load_config(path, expand_env=True, environ=env).warnings
    assert "literal api_key" in warning


@pytest.mark.parametrize("expand_env", [False, True])
def test_a_key_written_as_a_shell_variable_is_refused(tmp_path: Path, expand_env: bool) -> None:
    # `$NAME` is expanded by neither this exporter nor Loki's -config.expand-env: only ${NAME}.
    path = write_config(
        tmp_path, "accounts:\n  - {name: main, provider: twocaptcha, api_key: $TWOCAPTCHA_KEY}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, expand_env=expand_env, environ={"TWOCAPTCHA_KEY": "k" * 20})
    assert caught.value.lines == [
        f"{path}:2: accounts[0].api_key: the key is written as $TWOCAPTCHA_KEY, which is never "
        "expanded; read it from the environment with api_key_env: TWOCAPTCHA_KEY (for "
        "secrets: {env: TWOCAPTCHA_KEY}), or write ${TWOCAPTCHA_KEY} and pass "
        "--config.expand-env"
    ]


def test_a_key_with_a_dollar_inside_is_a_key(tmp_path: Path) -> None:
    path = write_config(
        tmp_path, "accounts:\n  - {name: main, provider: twocaptcha, api_key: $ab12Cd$xYz90}\n"
    )
    [account] = load_config(path, environ={}).accounts
    assert account.api_key.get_secret_value() == "$ab12Cd$xYz90"
