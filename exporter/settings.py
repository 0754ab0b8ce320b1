"""Config file models: the shapes every account and the `global` section must have.

Provider modules subclass `AccountSettings` for their own keys; `exporter.config` loads the
file, picks the model by `provider`, and turns every problem into one located `ConfigError`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, ClassVar, Protocol, Self, TypeVar, runtime_checkable

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from yarl import URL

_DURATION_RE = re.compile(
    r"^(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m(?!s))?(?:(?P<s>\d+)s)?(?:(?P<ms>\d+)ms)?\Z"
)
_UNIT_SECONDS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(value: object) -> float:
    """Prometheus-style duration (`500ms`, `10s`, `5m`, `1h30m`, `0s`) to seconds."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f"expected a duration with a unit, like 10s or 500ms; got {value!r}")
    text = value.strip()
    match = _DURATION_RE.match(text)
    if text == "0":
        return 0.0
    if not text or match is None:
        raise ValueError(f"not a duration: {value!r} (use units ms, s, m, h, d, like 10s or 1m30s)")
    return sum(float(n) * _UNIT_SECONDS[unit] for unit, n in match.groupdict().items() if n)


def human_duration(seconds: float) -> str:
    """`21 h 28 min`: a length of time as the landing page, `--collect.once` and the debug
    output write it for people."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if minutes < 60:
        return f"{minutes} min"
    if hours < 24:
        return f"{hours} h {minutes % 60} min" if minutes % 60 else f"{hours} h"
    return f"{days} d {hours % 24} h" if hours % 24 else f"{days} d"


def _positive(seconds: float) -> float:
    if seconds <= 0:
        raise ValueError("must be longer than 0s")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
PositiveDuration = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_positive)]

# Account names become the `account` label and the `/probe?account=` value: keep them plain.
_ACCOUNT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*\Z")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def _account_name(value: str) -> str:
    if not _ACCOUNT_NAME_RE.match(value):
        raise ValueError(
            f"{value!r} is not a valid account name: it must start with a letter or digit "
            "and have only letters, digits, '_', '.', ':' and '-'"
        )
    return value


def _env_name(value: str) -> str:
    # The value is not quoted: a key pasted here by mistake must not be printed.
    if not _ENV_NAME_RE.match(value):
        raise ValueError(
            "not an environment variable name: letters, digits and '_', not starting with a digit"
        )
    return value


def _no_control_characters(value: str) -> str:
    if _CONTROL_RE.search(value):
        raise ValueError("must not contain control characters or line breaks")
    return value


AccountName = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_account_name)]
LabelValue = Annotated[
    str, Field(min_length=1, max_length=128), AfterValidator(_no_control_characters)
]


def check_http_url(url: URL, with_credentials: str) -> None:
    """An http(s) URL with a host and no user or password; `with_credentials` is the error
    when it has them, saying what to do instead for this kind of URL."""
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("must be an http:// or https:// URL with a host")
    if url.user is not None or url.password is not None:
        raise ValueError(with_credentials)


def check_base_url(value: str) -> str:
    """An http(s) origin plus path; no credentials, query or fragment, no trailing slash."""
    url = URL(value)
    check_http_url(url, "must not carry credentials; use api_key_file or api_key_env")
    if url.query_string or url.fragment:
        raise ValueError("must not have a query string or fragment")
    return value.rstrip("/")


BaseUrl = Annotated[str, AfterValidator(check_base_url)]


def check_top_up_url(value: str) -> str:
    """A page a person opens to pay: an http(s) URL with a host and no credentials."""
    _no_control_characters(value)
    check_http_url(URL(value), "must not carry credentials: it is shown on every alert and page")
    return value


# The `top_up_url` label of apibalance_account_info, linked from alerts and the landing page.
TopUpUrl = Annotated[str, Field(max_length=512), AfterValidator(check_top_up_url)]

# Labels the exporter, Prometheus or the alerts set themselves: an account's own `labels`
# would clash with them on apibalance_account_info or on the alerts that carry its labels.
RESERVED_LABELS = frozenset(
    {
        "provider",
        "account",
        "currency",
        "service",
        "top_up_url",
        "credit_type",
        "pool",
        "queue",
        "reason",
        "version",
        "python_version",
        "job",
        "instance",
        "le",
        "quantile",
        "alertname",
        "severity",
    }
)
_LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*\Z")
MAX_ACCOUNT_LABELS = 16


def _label_name(value: str) -> str:
    if not _LABEL_NAME_RE.match(value):
        raise ValueError(
            f"{value!r} is not a Prometheus label name: letters, digits and '_', "
            "not starting with a digit"
        )
    if value.startswith("__"):
        raise ValueError(f"{value!r}: names starting with '__' are reserved for Prometheus")
    if value in RESERVED_LABELS:
        raise ValueError(
            f"{value!r} is a label the exporter or Prometheus sets itself; choose another "
            f"name (taken: {', '.join(sorted(RESERVED_LABELS))})"
        )
    return value


LabelName = Annotated[str, Field(max_length=64), AfterValidator(_label_name)]

USD = "USD"
_CURRENCY_RE = re.compile(r"[A-Z]{3}")


def check_currency_code(value: str) -> str:
    if not _CURRENCY_RE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a currency code: give the ISO 4217 code in three capital "
            "letters, like USD, EUR or RUB"
        )
    return value


CurrencyCode = Annotated[str, AfterValidator(check_currency_code)]
Threshold = Annotated[float, Field(ge=0, allow_inf_nan=False)]
# A `low_credits` key: a credit type, or a type and a pool after a dot.
CreditKey = Annotated[
    str, Field(min_length=1, max_length=257), AfterValidator(_no_control_characters)
]


# A union told apart by the shape of its value, a string or a mapping, tags its branches so.
# The tags are no keys of the file: the places config errors name leave them out.
STRING_FORM = "<string>"
MAPPING_FORM = "<mapping>"
FORM_TAGS = frozenset({STRING_FORM, MAPPING_FORM})


class Strict(BaseModel):
    """Every config model refuses keys it does not know, so typos are errors, not no-ops."""

    model_config = ConfigDict(extra="forbid", frozen=True)


StrictModel = TypeVar("StrictModel", bound=Strict)


def exactly_one(model: StrictModel, keys: tuple[str, ...]) -> StrictModel:
    """`model`, if exactly one of these keys is given (a key or secret has one source)."""
    given = [key for key in keys if getattr(model, key) is not None]
    if len(given) != 1:
        found = ", ".join(given) if given else "none"
        raise ValueError(f"exactly one of {', '.join(keys)} is required (found: {found})")
    return model


# Named secrets become `{name}` placeholders; `api_key`, `token` and `base_url` are taken.
SecretName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
EnvName = Annotated[str, AfterValidator(_env_name)]


class SecretSource(Strict):
    """Where a named secret is read from, like the key: a file, a variable or (discouraged) here."""

    file: Path | None = None
    env: EnvName | None = None
    value: SecretStr | None = None

    @model_validator(mode="before")
    @classmethod
    def _a_source(cls, data: object) -> object:
        # `account_sid: AC...` is the natural first try; say how instead of "not a dict".
        if not isinstance(data, dict | SecretSource):
            raise ValueError(
                "a secret is read like the key: write {env: NAME}, {file: PATH} or, "
                "discouraged, {value: ...}"
            )
        return data

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        return exactly_one(self, ("file", "env", "value"))


@runtime_checkable
class NamesSecrets(Protocol):
    """Settings of a type whose accounts name secrets besides their key (`secrets:`)."""

    @property
    def secrets(self) -> Mapping[str, SecretSource]: ...


class GlobalSettings(Strict):
    timeout: PositiveDuration = 10.0
    cache_ttl: Duration = 60.0
    # docs/configuration.md "Concurrency" says why these defaults.
    max_concurrency: int = Field(default=256, ge=1, le=100_000)
    max_concurrency_per_host: int = Field(default=16, ge=1, le=100_000)


class AccountSettings(Strict):
    """Keys common to every provider type."""

    name: AccountName
    provider: str
    api_key_file: Path | None = None
    api_key_env: EnvName | None = None
    api_key: SecretStr | None = None
    base_url: BaseUrl | None = None
    timeout: PositiveDuration | None = None
    cache_ttl: Duration | None = None
    low_balance_usd: Threshold | None = None
    currency: CurrencyCode | None = None
    # In the account's currency; for a USD account the same as low_balance_usd.
    low_balance: Threshold | None = None
    # Below this many credits: `<credit_type>` (all its pools together) or
    # `<credit_type>.<pool>`; read against what the account reports (exporter.thresholds).
    low_credits: dict[CreditKey, Threshold] = Field(default_factory=dict, max_length=64)
    # Below this many requests left today.
    low_daily_limit: Threshold | None = None
    # Static labels of the account (its owner, its cost centre), for routing its alerts.
    labels: dict[LabelName, LabelValue] = Field(default_factory=dict, max_length=MAX_ACCOUNT_LABELS)
    # Where to pay, when not the provider's own page (a reseller, an internal request form).
    top_up_url: TopUpUrl | None = None

    # The currency the provider's API reports money in. Built-in types read a fixed field of
    # a fixed API, so a different `currency:` could only mislabel the amount; a type whose
    # answers are configured (http_json) sets None and lets the config say.
    fixed_currency: ClassVar[str | None] = USD

    @field_validator("currency")
    @classmethod
    def _currency_of_the_api(cls, value: str | None) -> str | None:
        fixed = cls.fixed_currency
        if value is not None and fixed is not None and value != fixed:
            raise ValueError(
                f"this provider's API reports money in {fixed}; currency can only be {fixed} "
                "(or left out)"
            )
        return value

    @model_validator(mode="after")
    def _one_threshold(self) -> Self:
        if self.low_balance is not None and self.low_balance_usd is not None:
            raise ValueError(
                "give low_balance or low_balance_usd, not both (for a USD account they are "
                "the same threshold)"
            )
        if self.low_balance_usd is not None and self.known_currency() != USD:
            raise ValueError(
                f"low_balance_usd is for accounts in USD; {self.currency_description()}: "
                "use low_balance, in the account's currency"
            )
        return self

    def known_currency(self) -> str | None:
        """The account's currency as far as the config tells (None: read from each answer)."""
        return self.currency or self.fixed_currency or USD

    def currency_description(self) -> str:
        known = self.known_currency()
        return "its currency is read from the answer" if known is None else f"it is in {known}"

    @property
    def threshold(self) -> float | None:
        """The low-balance threshold in the account's currency, whichever key gave it."""
        return self.low_balance if self.low_balance is not None else self.low_balance_usd

    @model_validator(mode="after")
    def _one_key_source(self) -> Self:
        return exactly_one(self, ("api_key_file", "api_key_env", "api_key"))
