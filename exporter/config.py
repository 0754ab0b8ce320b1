"""Loading the config file: its accounts resolved and cross-checked, every problem at once.

    apibalance.yml:7: accounts[1].provider: unknown provider 'antcaptcha'; known: anticaptcha, ...

The file is read and its problems worded by `exporter.configfile`; the keys each section takes
are the pydantic models of `exporter.settings` and the providers.

Secrets are read here (from `api_key_file`, `api_key_env` or `api_key`), checked, and kept in
`SecretStr`, so they print as `**********` wherever an account object ends up. Reading them
registers nothing: the engine that applies a config registers its secrets with the log
redactor (`Config.secret_values`).
"""

from __future__ import annotations

import os
import re
import stat
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr, ValidationError

from exporter.configfile import (
    ENV_REFERENCE_RE,
    ConfigError,
    Loc,
    Locator,
    Problem,
    UnreadableFile,
    expand_env_references,
    format_loc,
    known_keys,
    read_config_file,
    read_regular_file,
    read_yaml,
    validation_problems,
)
from exporter.hints import closest, did_you_mean
from exporter.model import Reports
from exporter.providers import PROVIDERS, Provider
from exporter.settings import USD, AccountSettings, GlobalSettings, SecretSource
from exporter.thresholds import (
    CreditThreshold,
    credit_series,
    daily_limit_threshold_problem,
    money_threshold_problem,
    unknown_credit_key,
)

MAX_KEY_FILE_BYTES = 64 * 1024
KEY_SOURCES = frozenset({"api_key_file", "api_key_env", "api_key"})


@dataclass(frozen=True, slots=True)
class Account:
    """A configured account, resolved: its provider object (which holds its key and secrets)
    and effective settings."""

    name: str
    provider: Provider
    base_url: str
    timeout: float
    cache_ttl: float
    settings: AccountSettings
    # None when each answer says which currency the money is in.
    currency: str | None = USD
    # In the account's currency.
    low_balance: float | None = None
    # What the account is an account of, in words (the `service` label).
    service: str = ""
    # Where to pay: the account's own `top_up_url`, else its provider's (None: unknown).
    top_up_url: str | None = None
    # The account's own `labels`, sorted by name.
    labels: tuple[tuple[str, str], ...] = ()
    low_credits: tuple[CreditThreshold, ...] = ()
    low_daily_limit: float | None = None

    @property
    def provider_type(self) -> str:
        return self.provider.type_name

    @property
    def low_balance_usd(self) -> float | None:
        return self.low_balance if self.currency == USD else None

    def low_balance_in(self, answer_currency: str | None) -> tuple[float, str] | None:
        """`low_balance` and its currency: the configured one, else the one the answers name
        (so none before the first answer of such an account)."""
        currency = self.currency or answer_currency
        if self.low_balance is None or currency is None:
            return None
        return self.low_balance, currency

    @property
    def api_key(self) -> SecretStr:
        return SecretStr(self.provider.api_key)

    @property
    def secrets(self) -> dict[str, SecretStr]:
        return {name: SecretStr(value) for name, value in self.provider.secrets.items()}

    def same_upstream(self, other: Account) -> bool:
        """Asks the same upstream the same way (so a reload may keep its cache and counters).

        Thresholds, timeouts and cache lifetimes do not change what the upstream answers; the
        key does (a rotated key starts afresh, without the old key's auth back-off).
        """
        ignored = {
            "low_balance_usd",
            "low_balance",
            "timeout",
            "cache_ttl",
            "labels",
            "top_up_url",
            "low_credits",
            "low_daily_limit",
        } | KEY_SOURCES
        return (
            self.provider_type == other.provider_type
            and self.base_url == other.base_url
            and self.provider.api_key == other.provider.api_key
            and self.provider.secrets == other.provider.secrets
            and self.settings.model_dump(exclude=ignored)
            == other.settings.model_dump(exclude=ignored)
        )


@dataclass(frozen=True, slots=True)
class Config:
    source: str
    global_settings: GlobalSettings
    accounts: tuple[Account, ...]
    warnings: tuple[str, ...] = ()

    def account(self, name: str) -> Account | None:
        return next((a for a in self.accounts if a.name == name), None)

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for account in self.accounts:
            counts[account.provider_type] = counts.get(account.provider_type, 0) + 1
        by_type = ", ".join(f"{t}: {n}" for t, n in sorted(counts.items())) or "none"
        return f"{self.source}: OK, {len(self.accounts)} account(s) ({by_type})"

    def secret_values(self) -> list[str]:
        """Every account's key and named secrets, revealed: for the log redactor only."""
        return [
            secret
            for account in self.accounts
            for secret in (account.provider.api_key, *account.provider.secrets.values())
        ]


TOP_LEVEL_KEYS = ("global", "accounts")
# An environment variable as a shell writes it; no key is an upper-case name after a `$`.
SHELL_VARIABLE_RE = re.compile(r"\$([A-Z_][A-Z0-9_]*)")
EXPAND_ENV_FLAG = "--config.expand-env"


def load_config(
    path: str | os.PathLike[str],
    *,
    expand_env: bool = False,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """The config of this file; with `expand_env` (`--config.expand-env`), its `${VAR}`s
    expanded from the environment first."""
    source = str(path)
    text = read_config_file(path)
    env = os.environ if environ is None else environ
    raw_text = text
    if expand_env:
        text = expand_env_references(text, source, env)
    try:
        config = parse_config(text, source=source, base_dir=Path(path).parent, environ=env)
    except ConfigError as error:
        if expand_env:
            raise
        raise ConfigError(
            source, _hint_expand_env(error.problems, text), secrets=error.secrets
        ) from None
    # A key that `${VAR}` brought in from the environment is not written in the file.
    from_env = _expanded_values(raw_text, env) if expand_env else frozenset()
    mode = _mode(path)
    if mode & 0o077 and any(
        a.settings.api_key is not None
        and a.settings.api_key.get_secret_value().strip() not in from_env
        for a in config.accounts
    ):
        literal = (
            f"{source}: holds literal api_key values and is readable by group or others "
            f"(mode {stat.filemode(mode)}); prefer api_key_file or api_key_env, or chmod 600"
        )
        return Config(
            config.source, config.global_settings, config.accounts, (*config.warnings, literal)
        )
    return config


def _expanded_values(text: str, environ: Mapping[str, str]) -> frozenset[str]:
    """What each `${VAR}` of the text expands to (as `expand_env_references` expands it)."""
    return frozenset(
        environ.get(match.group(1), match.group(2) or "").strip()
        for match in ENV_REFERENCE_RE.finditer(text)
    )


def _hint_expand_env(problems: Sequence[Problem], text: str) -> list[Problem]:
    """A problem on a line that holds `${VAR}` says that it was not expanded."""
    lines = text.splitlines()
    hinted = []
    for problem in problems:
        line = lines[problem.line - 1] if problem.line and problem.line <= len(lines) else ""
        reference = ENV_REFERENCE_RE.search(line)
        if reference is not None and EXPAND_ENV_FLAG not in problem.message:
            message = (
                f"{problem.message} ({reference.group(0)} is expanded only with {EXPAND_ENV_FLAG})"
            )
            problem = Problem(problem.loc, message, problem.line)
        hinted.append(problem)
    return hinted


def _mode(path: str | os.PathLike[str]) -> int:
    try:
        return os.stat(path).st_mode
    except OSError:
        return 0


def parse_config(
    text: str,
    *,
    source: str = "<config>",
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Validate config text; raise `ConfigError` listing every problem found."""
    data, locator = read_yaml(text, source)
    duplicates = list(locator.duplicate_keys())
    try:
        config = build_config(
            data,
            source=source,
            base_dir=base_dir,
            environ=environ,
            locator=locator,
        )
    except ConfigError as error:
        raise ConfigError(source, [*duplicates, *error.problems], secrets=error.secrets) from None
    if duplicates:
        raise ConfigError(source, duplicates, secrets=config.secret_values())
    return config


def build_config(
    data: object,
    *,
    source: str,
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
    locator: Locator | None = None,
) -> Config:
    """Validate already-parsed config data (the demo builds its config this way)."""
    locator = locator or Locator(None)
    problems: list[Problem] = []
    if data is None:
        # What an editor leaves for a moment while saving; applied, it would stop every check.
        message = "the config is empty (or only comments); it must list at least one account"
        raise ConfigError(source, [Problem((), message, 1)])
    if not isinstance(data, dict):
        problems.append(Problem((), "the config must be a mapping with 'global' and 'accounts'", 1))
        raise ConfigError(source, problems)

    # Sections are validated independently, so a typo in `global` still lets every account
    # problem be reported in the same run.
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            hint = did_you_mean(str(key), TOP_LEVEL_KEYS)
            problems.append(locator.problem((str(key),), f"unknown key{hint}"))
    global_settings = GlobalSettings()
    try:
        global_settings = GlobalSettings.model_validate(data.get("global") or {})
    except ValidationError as error:
        problems.extend(validation_problems(error, ("global",), locator, model=GlobalSettings))
    raw_accounts = data.get("accounts")
    if raw_accounts is None or raw_accounts == []:
        where = ("accounts",) if "accounts" in data else ()
        problems.append(
            locator.problem(where, "no accounts: the config must list at least one account")
        )
        raw_accounts = []
    elif not isinstance(raw_accounts, list):
        problems.append(locator.problem(("accounts",), "must be a list of accounts"))
        raw_accounts = []

    env = os.environ if environ is None else environ
    accounts: list[Account] = []
    names: dict[str, int] = {}
    for index, raw in enumerate(raw_accounts):
        loc: Loc = ("accounts", index)
        account, found = _account(raw, loc, global_settings, base_dir, env, locator)
        problems.extend(found)
        name = raw.get("name") if isinstance(raw, dict) else None
        if isinstance(name, str):
            if name in names:
                problems.append(
                    locator.problem(
                        (*loc, "name"),
                        f"duplicate account name '{name}' (also accounts[{names[name]}]); "
                        "names must be unique in the file",
                    )
                )
            else:
                names[name] = index
        if account is not None:
            accounts.append(account)
    if problems:
        raise ConfigError(source, problems, secrets=_secrets_in_places(raw_accounts, base_dir, env))
    return Config(source, global_settings, tuple(accounts))


# The keys of an account (and of each `secrets` entry) that hold a secret or say where it is.
_SECRET_PLACES = {"api_key": "value", "api_key_env": "env", "api_key_file": "file"}
_SOURCE_PLACES = ("value", "env", "file")


def _secrets_in_places(
    raw_accounts: Sequence[object], base_dir: Path | None, environ: Mapping[str, str]
) -> set[str]:
    """What a refused config holds in a key's place, and the keys those places lead to, for
    its problems to be shown without them (even when the account itself did not validate).
    A value pasted in the wrong place (the key as `provider`) is quoted redacted."""
    found: set[str] = set()
    for raw in raw_accounts:
        if not isinstance(raw, dict):
            continue
        places = [(raw.get(key), kind) for key, kind in _SECRET_PLACES.items()]
        secrets = raw.get("secrets")
        if isinstance(secrets, dict):
            for source in secrets.values():
                if isinstance(source, dict):
                    places += [(source.get(key), key) for key in _SOURCE_PLACES]
        places += [(password, "value") for password in _basic_auth_passwords(raw)]
        for value, kind in places:
            # `${VAR}` unexpanded (or a shell's `$VAR`) is a variable's name, which the
            # problem is about.
            if (
                isinstance(value, str)
                and value
                and not ENV_REFERENCE_RE.fullmatch(value)
                and not SHELL_VARIABLE_RE.fullmatch(value.strip())
            ):
                # A name of a variable or file is not quoted where it stands (read_secret);
                # a key pasted there instead is quoted nowhere else either.
                found.add(value)
                found.update(_resolved(value, kind, base_dir, environ))
    return found


def _basic_auth_passwords(raw: Mapping[str, object]) -> list[object]:
    requests = [
        raw.get("request"),
        *(login.get("request") for login in [raw.get("login")] if isinstance(login, dict)),
    ]
    return [
        request["basic_auth"].get("password")
        for request in requests
        if isinstance(request, dict) and isinstance(request.get("basic_auth"), dict)
    ]


def _resolved(
    value: str, kind: str, base_dir: Path | None, environ: Mapping[str, str]
) -> list[str]:
    """The secret an `env` or `file` place names, if it can be had; nothing else."""
    if kind == "env":
        secret = environ.get(value, "").strip()
        return [secret] if secret else []
    if kind != "file":
        return []
    path = Path(value)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    try:
        text = read_regular_file(path, MAX_KEY_FILE_BYTES).decode("utf-8", "replace").strip()
    except (UnreadableFile, ValueError):
        return []
    return [text] if text else []


def _account(
    raw: object,
    loc: Loc,
    global_settings: GlobalSettings,
    base_dir: Path | None,
    environ: Mapping[str, str],
    locator: Locator,
) -> tuple[Account | None, list[Problem]]:
    if not isinstance(raw, dict):
        return None, [locator.problem(loc, "an account must be a mapping")]
    provider_type = raw.get("provider")
    if provider_type is None:
        misspelt = next(
            (str(key) for key in raw if closest(str(key), ["provider"]) == "provider"), None
        )
        if misspelt is not None:
            message = "unknown key (did you mean 'provider'?); provider is required"
            return None, [locator.problem((*loc, misspelt), message)]
        return None, [locator.problem(loc, "provider is required")]
    provider_cls = PROVIDERS.get(provider_type) if isinstance(provider_type, str) else None
    if provider_cls is None:
        known = ", ".join(PROVIDERS)
        hint = did_you_mean(str(provider_type), PROVIDERS, _service_names())
        return None, [
            locator.problem(
                (*loc, "provider"), f"unknown provider '{provider_type}'{hint}; known: {known}"
            )
        ]
    try:
        settings = provider_cls.settings_model.model_validate(raw)
    except ValidationError as error:
        return None, validation_problems(
            error,
            loc,
            locator,
            model=provider_cls.settings_model,
            elsewhere=_keys_of_other_providers(provider_cls.type_name),
        )

    problems: list[Problem] = []
    base_url = provider_cls.upstream_url(settings)
    url_setting = provider_cls.url_setting
    if base_url is None:
        problems.append(
            locator.problem(
                loc, f"{format_loc(url_setting)} is required for provider {provider_type}"
            )
        )
    key, key_problem = _read_key(settings, base_dir, environ)
    secrets, secret_problems = _read_secrets(
        provider_cls.secret_sources(settings), loc, base_dir, environ, locator
    )
    problems.extend(secret_problems)
    if key_problem is not None:
        field_name = next(f for f in sorted(KEY_SOURCES) if getattr(settings, f) is not None)
        problems.append(locator.problem((*loc, field_name), key_problem))
    elif key is not None and base_url is not None:
        for secret in (key, *secrets.values()):
            if _key_in_url(secret, base_url):
                # A key pasted into the URL would travel in every request line and land in
                # proxy logs; placeholders are filled when the request is made.
                problems.append(
                    locator.problem(
                        (*loc, *url_setting),
                        "contains the account's key or a secret; use a placeholder",
                    )
                )
                break
    if key is not None:
        problems.extend(_secrets_in_labels(settings, (key, *secrets.values()), loc, locator))
    reports = provider_cls.reports(settings)
    low_credits, threshold_problems = _thresholds(settings, reports, loc, locator)
    problems.extend(threshold_problems)
    if problems or key is None or base_url is None:
        return None, problems
    account = Account(
        name=settings.name,
        provider=provider_cls(settings, key, secrets),
        base_url=base_url,
        timeout=settings.timeout if settings.timeout is not None else global_settings.timeout,
        cache_ttl=(
            settings.cache_ttl
            if settings.cache_ttl is not None
            else max(global_settings.cache_ttl, provider_cls.default_cache_ttl_floor)
        ),
        settings=settings,
        currency=settings.known_currency(),
        low_balance=settings.threshold,
        service=provider_cls.service(settings),
        top_up_url=settings.top_up_url or provider_cls.top_up_url_of(settings),
        labels=tuple(sorted(settings.labels.items())),
        low_credits=low_credits,
        low_daily_limit=settings.low_daily_limit,
    )
    return account, []


def _thresholds(
    settings: AccountSettings, reports: Reports, loc: Loc, locator: Locator
) -> tuple[tuple[CreditThreshold, ...], list[Problem]]:
    """The account's credit thresholds, read against what it reports; and every threshold
    it can never be compared with, as a problem with a hint to the key that would."""
    problems: list[Problem] = []
    money = money_threshold_problem(reports)
    if money is not None:
        for key in ("low_balance", "low_balance_usd"):
            if getattr(settings, key) is not None:
                problems.append(locator.problem((*loc, key), money))
    daily = daily_limit_threshold_problem(reports)
    if daily is not None and settings.low_daily_limit is not None:
        problems.append(locator.problem((*loc, "low_daily_limit"), daily))
    thresholds = []
    for key, below in settings.low_credits.items():
        series = credit_series(key, reports)
        if series is None:
            problems.append(
                locator.problem((*loc, "low_credits", key), unknown_credit_key(key, reports))
            )
        else:
            thresholds.append(CreditThreshold(*series, below))
    return tuple(thresholds), problems


def _secrets_in_labels(
    settings: AccountSettings, secrets: tuple[SecretStr, ...], loc: Loc, locator: Locator
) -> list[Problem]:
    """Where the account's key or a secret was pasted into a value that becomes a label:
    labels are shown on /metrics, on the landing page and on every alert."""
    shown: list[tuple[Loc, str]] = [
        (("labels", name), value) for name, value in settings.labels.items()
    ]
    if settings.top_up_url is not None:
        shown.append((("top_up_url",), settings.top_up_url))
    return [
        locator.problem((*loc, *where), "contains the account's key or a secret")
        for where, value in shown
        if any(_key_in_url(secret, value) for secret in secrets)
    ]


def _read_key(
    settings: AccountSettings, base_dir: Path | None, environ: Mapping[str, str]
) -> tuple[SecretStr | None, str | None]:
    """The account's key, or why it cannot be had. Messages never contain the key."""
    return read_secret(
        settings.api_key, settings.api_key_env, settings.api_key_file, base_dir, environ, "key"
    )


# A secret written as a variable's name, and how to write it instead: a shell's `$NAME`, which
# no flag expands, and `${NAME}`, which only --config.expand-env does.
_VARIABLE_IN_PLACE = (
    (
        SHELL_VARIABLE_RE,
        "${name}, which is never expanded; read it from the environment with api_key_env: "
        "{name} (for secrets: {{env: {name}}}), or write ${{{name}}} and pass {flag}",
    ),
    (
        ENV_REFERENCE_RE,
        "${{{name}}}, which is expanded only with {flag}; pass that flag, or read it from the "
        "environment with api_key_env: {name} (for secrets: {{env: {name}}})",
    ),
)


def _variable_in_place_of(text: str, what: str) -> str | None:
    """Why a secret written as a variable's name is not taken as the secret, if it is one."""
    for pattern, instead in _VARIABLE_IN_PLACE:
        if (match := pattern.fullmatch(text)) is not None:
            how = instead.format(name=match.group(1), flag=EXPAND_ENV_FLAG)
            return f"the {what} is written as {how}"
    return None


def read_secret(
    value: SecretStr | None,
    env: str | None,
    file: Path | None,
    base_dir: Path | None,
    environ: Mapping[str, str],
    what: str = "secret",
) -> tuple[SecretStr | None, str | None]:
    """A secret from exactly one of its sources, or why it cannot be had: never quoting it, nor
    the variable or file that holds it (a key pasted there by mistake would be shown)."""
    if value is not None:
        text = value.get_secret_value()
    elif env is not None:
        if env not in environ:
            return None, "the environment variable it names is not set"
        text = environ[env]
    else:
        assert file is not None
        path = file
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        try:
            raw = read_regular_file(path, MAX_KEY_FILE_BYTES)
        except UnreadableFile as error:
            return None, f"cannot read the file it names: {error}"
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return None, "the file it names is not UTF-8 text"
    text = text.strip()
    if not text:
        return None, f"the {what} is empty"
    if value is not None and (written := _variable_in_place_of(text, what)) is not None:
        # Taken literally, it would be sent as the key, and refused only at the first scrape.
        return None, written
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        return None, f"the {what} contains control characters or line breaks"
    return SecretStr(text), None


def _read_secrets(
    sources: Mapping[str, SecretSource],
    loc: Loc,
    base_dir: Path | None,
    environ: Mapping[str, str],
    locator: Locator,
) -> tuple[dict[str, SecretStr], list[Problem]]:
    secrets: dict[str, SecretStr] = {}
    problems: list[Problem] = []
    for name, source in sources.items():
        secret, problem = read_secret(source.value, source.env, source.file, base_dir, environ)
        if problem is not None:
            field_name = next(f for f in ("env", "file", "value") if getattr(source, f) is not None)
            problems.append(locator.problem((*loc, "secrets", name, field_name), problem))
        elif secret is not None:
            secrets[name] = secret
    return secrets, problems


def _key_in_url(key: SecretStr, url: str) -> bool:
    secret = key.get_secret_value()
    return secret in url or secret in urllib.parse.unquote(url)


def _service_names() -> dict[str, str]:
    """The services' own names, as someone may write them for `provider`, with their types."""
    return {name: type_name for type_name, cls in PROVIDERS.items() for name in cls.service_names}


def _keys_of_other_providers(type_name: str) -> dict[str, list[str]]:
    """Each account key that some other provider type has, with those types."""
    own = set(known_keys(PROVIDERS[type_name].settings_model, ()))
    owners: dict[str, list[str]] = {}
    for other, provider_cls in PROVIDERS.items():
        for key in known_keys(provider_cls.settings_model, ()):
            if key not in own:
                owners.setdefault(key, []).append(other)
    return owners
