"""What every provider module implements, and helpers for reading answers."""

from __future__ import annotations

import asyncio
import re
from abc import ABC, abstractmethod
from collections.abc import Coroutine, Mapping
from typing import Any, ClassVar, TypeVar

from pydantic import SecretStr

from exporter.model import CollectError, Reading, Reason, Reports
from exporter.settings import AccountSettings, SecretSource
from exporter.upstream import AccountHttp, Answer

T = TypeVar("T")

_ERROR_CODE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")


class Provider(ABC):
    """One provider type: how to ask for the balance and how to read the answer.

    A subclass sets `type_name` (the config's `provider` and the `provider` label),
    `default_base_url` (None when the user must give one) and, when it has keys of its own,
    `settings_model`. Instances are per account and hold that account's key.
    """

    type_name: ClassVar[str]
    # The service's own names, as someone may write them for `provider` ("did you mean").
    service_names: ClassVar[tuple[str, ...]] = ()
    default_base_url: ClassVar[str | None] = None
    # The service's page where its users pay or top up (an account's `top_up_url` overrides
    # it); None when the type cannot know it (http_json, a self-hosted decaptcha).
    top_up_url: ClassVar[str | None] = None
    settings_model: ClassVar[type[AccountSettings]] = AccountSettings
    # Whatever cache_ttl says, the upstream is not asked more often than this (seconds);
    # within it, the last result, success or failure, is reused.
    min_interval: ClassVar[float] = 0.0
    # An account without a cache_ttl of its own reuses a success for at least this long,
    # whatever global.cache_ttl says (an upstream whose request limit is shared with the
    # user's real work); the account's own cache_ttl still wins, shorter or longer.
    default_cache_ttl_floor: ClassVar[float] = 0.0
    # Where in an account's config the upstream URL is set, for error messages.
    url_setting: ClassVar[tuple[str, ...]] = ("base_url",)

    def __init__(
        self,
        settings: AccountSettings,
        api_key: SecretStr,
        secrets: Mapping[str, SecretStr] | None = None,
    ) -> None:
        self.settings = settings
        self._api_key = api_key
        self._secrets = dict(secrets or {})

    @classmethod
    def secret_sources(cls, settings: AccountSettings) -> Mapping[str, SecretSource]:
        """Secrets the account names besides its key (`secrets:`), read by the loader."""
        return {}

    @classmethod
    def upstream_url(cls, settings: AccountSettings) -> str | None:
        """The URL every request of the account is relative to (its paths are appended).

        None when the config gives none and the type has no default; the loader refuses that.
        """
        return settings.base_url or cls.default_base_url

    @classmethod
    def service(cls, settings: AccountSettings) -> str:
        """What the account is an account of, in words (the `service` label)."""
        return cls.service_names[0] if cls.service_names else cls.type_name

    @classmethod
    def top_up_url_of(cls, settings: AccountSettings) -> str | None:
        """Where the account's money is paid in, as the type knows it (None: unknown)."""
        return cls.top_up_url

    @classmethod
    def reports(cls, settings: AccountSettings) -> Reports:
        """What the account's answers can hold: money, unless the type says more or else."""
        return Reports()

    @property
    def api_key(self) -> str:
        return self._api_key.get_secret_value()

    @property
    def secrets(self) -> dict[str, str]:
        return {name: value.get_secret_value() for name, value in self._secrets.items()}

    @abstractmethod
    async def fetch(self, http: AccountHttp) -> Reading:
        """Ask the upstream and return what it reported, or raise `CollectError`."""


def safe_code(value: object) -> str:
    """A provider's error code, if it looks like one, for the log line; never free text."""
    if isinstance(value, str) and _ERROR_CODE_RE.match(value):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return "unrecognised error code"


def require_object(data: Any, what: str = "body") -> dict[str, Any]:
    if not isinstance(data, dict):
        raise CollectError(Reason.INVALID_RESPONSE, f"{what} is not a JSON object")
    return data


def status_error(answer: Answer) -> CollectError:
    """The error for a non-2xx answer that carries nothing more specific."""
    if answer.status in (401, 403):
        return CollectError(Reason.AUTH, f"HTTP {answer.status}: key rejected")
    if answer.status == 404:
        # The documented path is added to base_url: one with a path of its own misses.
        return CollectError(
            Reason.HTTP, "HTTP 404: no such path; base_url is what comes before the documented path"
        )
    return CollectError(Reason.HTTP, f"HTTP {answer.status}")


def json_object(answer: Answer) -> dict[str, Any]:
    """The JSON object of a 2xx answer; any other status is an error by status alone."""
    if not answer.ok:
        raise status_error(answer)
    return require_object(answer.json())


async def all_or_nothing(*calls: Coroutine[Any, Any, T]) -> list[T]:
    """Run calls of one collection together; the first failure cancels the rest and is raised.

    `asyncio.gather` would leave the other requests running after the collection has failed.
    """
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(call) for call in calls]
    except BaseExceptionGroup as failures:
        raise failures.exceptions[0] from None
    return [task.result() for task in tasks]
