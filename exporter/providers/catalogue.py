"""Ready providers for known services: each is data, an `http_json` definition in a YAML file.

    accounts:
      - name: search
        provider: serpapi
        api_key_env: SERPAPI_KEY

`exporter/catalogue/<type>.yml` describes one service: where its documents are (`source`,
and `source_strength`: the service's own or a third party's), its `family`, its host
(`base_url`, which an account's `base_url` overrides: the definition says `{base_url}` where
the host goes), the secrets it needs besides the key, how often it may
be asked (`min_interval`), and the `http_json` definition that asks and reads it. The type
name is the file name: the service's name in lower case without punctuation.

An account of a catalogue type takes only the keys every provider takes, plus `secrets` for
the ones the service needs (Twilio's `account_sid`); everything else is the entry's.
`exporter/catalogue/answers/<type>.yml` holds the service's documented answers, which the
simulator serves and the tests check.
"""

from __future__ import annotations

import functools
import importlib.resources
import urllib.parse
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal, Self, get_args

import yaml
from pydantic import Field, JsonValue, ValidationError, model_validator

from exporter.providers.http_json import HttpJson, HttpJsonSettings
from exporter.providers.http_json.settings import RequestSettings
from exporter.settings import (
    AccountSettings,
    BaseUrl,
    CurrencyCode,
    Duration,
    SecretName,
    SecretSource,
    Strict,
    TopUpUrl,
)

Family = Literal["captcha", "proxy", "scraping", "serp", "sms", "enrichment", "llm", "messaging"]
FAMILIES: tuple[str, ...] = get_args(Family)
SourceStrength = Literal["official", "third-party"]
BASE_URL = "{base_url}"
HostName = Annotated[str, Field(pattern=r"^[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?$")]


class Entry(Strict):
    """One catalogue file."""

    service: Annotated[str, Field(min_length=1, max_length=64)]
    family: Family
    # How far `source` can be trusted, shown in the README's table: `official` when the request
    # and the answers read come from the service's own documents or its own client,
    # `third-party` when any of it rests on others' code or reports only (check those first).
    source_strength: SourceStrength
    source: list[Annotated[str, Field(pattern=r"^https://")]] = Field(min_length=1)
    base_url: BaseUrl
    # The service's page where an account is paid for or topped up (cited in the file).
    top_up_url: TopUpUrl
    # For the README's providers table: what the metrics say, and where the key travels.
    reports: Annotated[str, Field(min_length=1)]
    key: Annotated[str, Field(min_length=1)]
    # name: what the secret is, for the error that asks for it
    secrets: dict[SecretName, str] = Field(default_factory=dict)
    min_interval: Duration = 0.0
    # The currency the service bills in (ISO 4217), or `answer` when each answer names it
    # (the definition's values.currency): an account's `currency:` may only agree.
    currency: Annotated[str, Field(pattern=r"^(?:[A-Z]{3}|answer)$")] = "USD"
    # Hosts of the service that bill in another currency (Moonshot's api.moonshot.cn in CNY):
    # an account whose `base_url` is such a host is in its currency, unless the account's
    # `currency:` names another the service bills in.
    currency_by_host: dict[HostName, CurrencyCode] = Field(default_factory=dict, max_length=20)
    # Where an account on such a host pays, when that is not `top_up_url` (cited in the file).
    top_up_url_by_host: dict[HostName, TopUpUrl] = Field(default_factory=dict, max_length=20)
    http_json: dict[str, JsonValue]

    @property
    def fixed_currency(self) -> str | None:
        """The currency of the default host (None: each answer names it)."""
        return None if self.currency == "answer" else self.currency

    @property
    def currencies(self) -> tuple[str, ...]:
        """Every currency the service bills in, the default host's first."""
        if self.fixed_currency is None:
            return ()
        return tuple(dict.fromkeys((self.fixed_currency, *self.currency_by_host.values())))

    def currency_at(self, base_url: str | None) -> str | None:
        """The currency an account asking `base_url` (None: the default host) is billed in."""
        if base_url is None or self.fixed_currency is None:
            return self.fixed_currency
        return self.currency_by_host.get(_host(base_url), self.fixed_currency)

    def top_up_url_at(self, base_url: str | None) -> str:
        """Where an account asking `base_url` (None: the default host) pays."""
        if base_url is None:
            return self.top_up_url
        return self.top_up_url_by_host.get(_host(base_url), self.top_up_url)

    @model_validator(mode="after")
    def _hosts_with_currencies(self) -> Self:
        if self.currency_by_host and self.fixed_currency is None:
            raise ValueError("currency_by_host is for a service whose answers do not name it")
        default_host = _host(self.base_url)
        if default_host in self.currency_by_host:
            raise ValueError(f"{default_host} is the default host: its currency is currency")
        if default_host in self.top_up_url_by_host:
            raise ValueError(f"{default_host} is the default host: its page is top_up_url")
        return self

    @model_validator(mode="after")
    def _currency_is_read(self) -> Self:
        values = self.http_json.get("values")
        reads_currency = isinstance(values, dict) and "currency" in values
        if reads_currency != (self.currency == "answer"):
            raise ValueError("currency: answer and http_json.values.currency go together")
        return self

    @model_validator(mode="after")
    def _host_is_a_placeholder(self) -> Self:
        request = self.http_json.get("request")
        url = request.get("url") if isinstance(request, dict) else None
        if not isinstance(url, str) or not url.startswith(BASE_URL + "/"):
            raise ValueError("http_json.request.url must start with {base_url}/")
        return self

    def definition(self, base_url: str | None, currency: str | None = None) -> HttpJsonSettings:
        """The http_json settings of an account of this service, asking `base_url`, billed in
        `currency` (by default the one of its host)."""
        currency = currency or self.currency_at(base_url)
        origin = base_url or self.base_url
        data = _with_base_url(self.http_json, origin)
        assert isinstance(data, dict)
        return HttpJsonSettings.model_validate(
            {
                **data,
                "name": "catalogue",
                "provider": "http_json",
                # The key and secrets are read by the loader from the account's own settings;
                # these only satisfy the model, which checks every secret is sent somewhere.
                "api_key": "unused",
                "secrets": {name: {"value": "unused"} for name in self.secrets},
                **({} if currency is None else {"currency": currency}),
            }
        )


def _host(url: str) -> str:
    return urllib.parse.urlsplit(url).hostname or ""


def _with_base_url(value: JsonValue, origin: str) -> JsonValue:
    """The definition with `{base_url}` replaced in the URLs (`request.url`, `login.request.url`)."""
    if isinstance(value, dict):
        return {
            name: (
                item.replace(BASE_URL, origin, 1)
                if name == "url" and isinstance(item, str)
                else _with_base_url(item, origin)
            )
            for name, item in value.items()
        }
    return value


class CatalogueSettings(AccountSettings):
    """An account of a catalogue type: the common keys, and the secrets the service needs."""

    secrets: dict[SecretName, SecretSource] = Field(default_factory=dict)
    needed_secrets: ClassVar[Mapping[str, str]] = {}
    entry: ClassVar[Entry]

    def known_currency(self) -> str | None:
        if self.currency is not None:
            return self.currency
        # None: each answer names it.
        return self.entry.currency_at(self.base_url)

    @model_validator(mode="after")
    def _a_currency_the_service_bills_in(self) -> Self:
        # One currency is the `fixed_currency` check every provider has; this is for several.
        billed = self.entry.currencies
        if self.currency is not None and len(billed) > 1 and self.currency not in billed:
            raise ValueError(
                f"this provider's API reports money in {' or '.join(billed)} (by host); "
                f"currency can only be one of them (or left out)"
            )
        return self

    @model_validator(mode="after")
    def _the_secrets_the_service_needs(self) -> Self:
        for name in self.secrets:
            if name not in self.needed_secrets:
                needed = ", ".join(self.needed_secrets) or "none besides the key"
                raise ValueError(f"{self.provider} takes no secret {name} (it needs: {needed})")
        for name, what in self.needed_secrets.items():
            if name not in self.secrets:
                raise ValueError(
                    f"secrets.{name} is required for {self.provider}: {what} "
                    f"(secrets: {{{name}: {{env: VARIABLE}}}})"
                )
        return self


class CatalogueProvider(HttpJson):
    """A catalogue entry, run by the http_json engine."""

    entry: ClassVar[Entry]
    settings_model: ClassVar[type[AccountSettings]] = CatalogueSettings
    url_setting: ClassVar[tuple[str, ...]] = ("base_url",)

    @classmethod
    def service(cls, settings: AccountSettings) -> str:
        return cls.entry.service

    def not_found(self, request: RequestSettings) -> str:
        """A 404 is nearly always a `base_url` that is more than the host (the base URL an
        OpenAI-style client takes, `.../api/v1`): say what was asked and what to write."""
        asked = urllib.parse.urlsplit(request.url).path or "/"
        given = self.settings.base_url
        if given is None:
            return (
                f"HTTP 404 for {asked} at {self.entry.base_url}: the service no longer "
                "answers there"
            )
        parts = urllib.parse.urlsplit(given)
        if parts.path.rstrip("/"):
            host = urllib.parse.urlunsplit((parts.scheme, parts.netloc, "", "", ""))
            return (
                f"HTTP 404 for {asked}: base_url is the service's host only ({host}); "
                f"the path {asked.removeprefix(parts.path.rstrip('/'))} is added to it"
            )
        return f"HTTP 404 for {asked}: is base_url ({given}) the service's host? {asked} is added to it"

    @classmethod
    def top_up_url_of(cls, settings: AccountSettings) -> str | None:
        return cls.entry.top_up_url_at(settings.base_url)

    @classmethod
    def definition_of(cls, settings: AccountSettings) -> HttpJsonSettings:
        """The entry's definition, asking the account's `base_url` if it sets one."""
        currency = settings.known_currency() if cls.entry.fixed_currency is not None else None
        return cls._definition(settings.base_url, currency)

    @classmethod
    @functools.lru_cache(maxsize=1024)
    def _definition(cls, base_url: str | None, currency: str | None) -> HttpJsonSettings:
        # Validating a definition is most of the cost of loading such an account, and the
        # loader asks for it twice (for the upstream URL, then for the provider); accounts of
        # one service on one host, in one currency, share it (the settings are frozen).
        return cls.entry.definition(base_url, currency)


def provider_for(type_name: str, entry: Entry) -> type[CatalogueProvider]:
    settings_model = type(
        f"{type_name}_settings",
        (CatalogueSettings,),
        {
            "__module__": __name__,
            "needed_secrets": dict(entry.secrets),
            # A service billing in several currencies leaves the choice to the account's host
            # or `currency:`, checked against the ones it bills in.
            "fixed_currency": entry.fixed_currency if len(entry.currencies) <= 1 else None,
            "entry": entry,
        },
    )
    return type(
        f"{type_name}_provider",
        (CatalogueProvider,),
        {
            "__module__": __name__,
            "type_name": type_name,
            "service_names": (entry.service,),
            "default_base_url": entry.base_url,
            "top_up_url": entry.top_up_url,
            "settings_model": settings_model,
            "min_interval": entry.min_interval,
            "entry": entry,
        },
    )


def entry_files() -> dict[str, str]:
    """Type name -> text of every catalogue file shipped in the package."""
    folder = importlib.resources.files("exporter") / "catalogue"
    return {
        item.name.removesuffix(".yml"): item.read_text(encoding="utf-8")
        for item in sorted(folder.iterdir(), key=lambda item: item.name)
        if item.name.endswith(".yml")
    }


def load_entry(type_name: str, text: str) -> Entry:
    """The entry, with its definition checked as an account's would be; ValueError if broken."""
    try:
        entry = Entry.model_validate(yaml.safe_load(text))
        entry.definition(None)
    except ValidationError as error:
        raise ValueError(f"catalogue entry {type_name}: {error}") from None
    return entry


def load_provider(type_name: str) -> type[CatalogueProvider]:
    """The provider of one catalogue entry, its definition checked."""
    path = importlib.resources.files("exporter") / "catalogue" / f"{type_name}.yml"
    return provider_for(type_name, load_entry(type_name, path.read_text(encoding="utf-8")))


def answers_of(type_name: str) -> dict[str, Any]:
    """The documented answers of a catalogue service (for the simulator and the tests)."""
    path = importlib.resources.files("exporter") / "catalogue" / "answers" / f"{type_name}.yml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data
