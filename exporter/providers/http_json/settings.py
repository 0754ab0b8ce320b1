"""What an http_json account's config says: how to ask, how to read, what errors mean.

Everything here is checked when the config loads, so that a definition that could never
work is a config error naming its key, not a failed collection.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Annotated, Any, ClassVar, Literal, Self

import re2
from pydantic import (
    AfterValidator,
    Discriminator,
    Field,
    JsonValue,
    Tag,
    field_validator,
    model_validator,
)
from yarl import URL

from exporter.model import Reason
from exporter.providers.http_json.expressions import Expression
from exporter.settings import (
    MAPPING_FORM,
    STRING_FORM,
    USD,
    AccountSettings,
    LabelValue,
    PositiveDuration,
    SecretName,
    SecretSource,
    Strict,
    check_http_url,
)

PLACEHOLDER = "{api_key}"
KEY_NAME = "api_key"
TOKEN_NAME = "token"  # noqa: S105 (the placeholder's name, not a token)
MAX_CREDITS = 50
MAX_SECRETS = 10
# Statuses the HTTP layer answers itself (429 rate_limited, 502-504 retried; redirects are
# refused): a definition's `ok_status` or `status_reasons` for them could never take effect.
ANSWERED_BY_HTTP = frozenset({429, 502, 503, 504})
# Nor can 401/403 be ok: they are a rejected key, or what `status_reasons` says they are.
NEVER_OK = ANSWERED_BY_HTTP | {401, 403}
# The request framing is the HTTP client's job; a configured one would fight it. So are the
# encodings asked for: only those the client decodes within the body cap (gzip, deflate).
RESERVED_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "accept-encoding"}
)
_TOKEN_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}\Z")
HEADER_VALUE_RE = re.compile(r"^[\x20-\x7e\t]*\Z")
_PLACEHOLDER_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


# -- placeholders -----------------------------------------------------------------------


def placeholders_in(text: str) -> set[str]:
    return set(_PLACEHOLDER_RE.findall(text))


def fill(text: str, values: Mapping[str, str], quote: Callable[[str], str] | None = None) -> str:
    """`text` with each known `{name}` replaced, in one pass (a value is never filled again)."""

    def replace(match: re.Match[str]) -> str:
        value = values.get(match.group(1))
        if value is None:
            return match.group(0)
        return quote(value) if quote is not None else value

    return _PLACEHOLDER_RE.sub(replace, text)


def fill_json(value: JsonValue, values: Mapping[str, str]) -> JsonValue:
    """`value` with placeholders filled in every string value (keys stay as they are)."""
    if isinstance(value, str):
        return fill(value, values)
    if isinstance(value, list):
        return [fill_json(item, values) for item in value]
    if isinstance(value, dict):
        return {name: fill_json(item, values) for name, item in value.items()}
    return value


def _json_placeholders(value: JsonValue) -> set[str]:
    if isinstance(value, str):
        return placeholders_in(value)
    if isinstance(value, list):
        return set().union(*(_json_placeholders(item) for item in value))
    if isinstance(value, dict):
        return set().union(*(_json_placeholders(item) for item in value.values()))
    return set()


# -- request ----------------------------------------------------------------------------


def check_request_url(value: str) -> str:
    """The whole URL of a call: http(s), a host, no credentials; placeholders in the path only.

    A static query string is allowed (`?currency=USD`); secrets go in `query`, which is
    encoded properly, and a key typed into the URL literally is refused by the loader.
    """
    parts = urllib.parse.urlsplit(value)
    unquoted = urllib.parse.unquote(value)
    if placeholders_in(unquoted) - placeholders_in(value):
        raise ValueError("write placeholders as {name}, not percent-encoded")
    if placeholders_in(parts.netloc) or "{" in parts.netloc:
        raise ValueError("placeholders may only be in the path: the host is fixed")
    if placeholders_in(parts.query):
        raise ValueError("placeholders may only be in the path; put query parameters in query")
    try:
        url = URL(value)
    except ValueError:
        raise ValueError("not a URL") from None
    check_http_url(url, "must not carry credentials; use basic_auth with placeholders")
    if url.fragment:
        raise ValueError("must not have a fragment")
    return value


def _check_header_value(value: str) -> str:
    # A line break would start a new header; other bytes the HTTP client may refuse to encode.
    if not HEADER_VALUE_RE.match(value):
        raise ValueError("a header value must be printable ASCII on one line")
    return value


HeaderValue = Annotated[str, Field(max_length=8192), AfterValidator(_check_header_value)]
FieldValue = Annotated[str, Field(max_length=8192)]


class BasicAuth(Strict):
    username: FieldValue
    password: FieldValue


class RequestSettings(Strict):
    url: Annotated[str, Field(max_length=2048), AfterValidator(check_request_url)]
    # Without `method`: POST when there is a body (json or form), else GET.
    method: Literal["GET", "POST"] | None = None
    headers: dict[str, HeaderValue] = Field(default_factory=dict, max_length=50)
    query: dict[Annotated[str, Field(min_length=1, max_length=256)], FieldValue] = Field(
        default_factory=dict, max_length=50
    )
    json_body: JsonValue = Field(default=None, alias="json")
    form: dict[Annotated[str, Field(min_length=1, max_length=256)], FieldValue] | None = Field(
        default=None, max_length=50
    )
    basic_auth: BasicAuth | None = None

    @field_validator("headers")
    @classmethod
    def _header_names(cls, headers: dict[str, str]) -> dict[str, str]:
        seen: set[str] = set()
        for name in headers:
            if not _TOKEN_RE.match(name):
                raise ValueError(f"{name!r} is not a valid header name")
            if name.lower() in RESERVED_HEADERS:
                raise ValueError(f"{name} is set by the HTTP client and cannot be configured")
            if name.lower() in seen:
                raise ValueError(f"header {name} is given twice (header names ignore case)")
            seen.add(name.lower())
        return headers

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        header_names = {name.lower() for name in self.headers}
        if self.json_body is not None and self.form is not None:
            raise ValueError("json and form are both request bodies: give one of them")
        for body, kind in ((self.json_body, "json"), (self.form, "form")):
            if body is None:
                continue
            if self.method == "GET":
                raise ValueError(f"{kind} is a request body: use method POST (or leave method out)")
            if "content-type" in header_names:
                media = "application/json" if kind == "json" else "form-urlencoded"
                raise ValueError(f"with {kind}, Content-Type is {media}; remove the header")
        if self.basic_auth is not None and "authorization" in header_names:
            raise ValueError("basic_auth sets the Authorization header; remove the header")
        return self

    @property
    def effective_method(self) -> str:
        if self.method is not None:
            return self.method
        return "GET" if self.json_body is None and self.form is None else "POST"

    def placeholders(self) -> set[str]:
        """Every `{name}` the request would fill."""
        found = placeholders_in(urllib.parse.urlsplit(self.url).path)
        for text in (*self.headers.values(), *self.query.values(), *(self.form or {}).values()):
            found |= placeholders_in(text)
        if self.basic_auth is not None:
            found |= placeholders_in(self.basic_auth.username)
            found |= placeholders_in(self.basic_auth.password)
        return found | _json_placeholders(self.json_body)


# -- response and login -----------------------------------------------------------------


class ResponseSettings(Strict):
    """How the body is read: JSON, or text through the named groups of `pattern`."""

    format: Literal["json", "text"] = "json"
    pattern: Annotated[str, Field(min_length=1, max_length=1000)] | None = None

    @model_validator(mode="after")
    def _pattern_for_text(self) -> Self:
        if self.format == "json":
            if self.pattern is not None:
                raise ValueError("pattern is for format text; a JSON answer is read by values")
            return self
        if self.pattern is None:
            raise ValueError("format text needs a pattern with named groups, like (?P<balance>...)")
        compiled = compile_pattern(self.pattern)
        if not compiled.groupindex:
            raise ValueError("pattern needs at least one named group, like (?P<balance>[0-9.]+)")
        if "text" in compiled.groupindex:
            raise ValueError("a group cannot be named text: that name holds an unmatched answer")
        return self


def compile_pattern(pattern: str) -> Any:
    """The pattern compiled for RE2, or ValueError saying why it cannot be.

    RE2 (the engine Prometheus itself uses) matches in time linear in the answer: a pattern
    that backtracks, like `(?P<balance>[0-9.]+) USD` in Python's own engine, would take
    seconds of the event loop over a page of digits. What only a backtracking engine can run
    (backreferences, lookarounds) is refused here, with what Python's engine would have said
    of a pattern that is no regular expression at all.
    """
    try:
        re.compile(pattern)
    except re.error as error:
        raise ValueError(
            f"pattern is not a valid regular expression: {error.msg} at position {error.pos}"
        ) from None
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as error:
        why = error.args[0].decode("utf-8", "replace") if error.args else "unsupported syntax"
        raise ValueError(
            f"pattern uses what RE2 syntax (as in Prometheus) does not have ({why}): "
            "backreferences, lookaheads and lookbehinds cannot be matched in linear time"
        ) from None


_RE2_OPTIONS = re2.Options()
# RE2 writes its own line to stderr for each pattern it refuses; the config error says it.
_RE2_OPTIONS.log_errors = False


ErrorValue = Annotated[str, Field(min_length=1, max_length=256)] | int


class ErrorReasons(Strict):
    """Values of `error` that mean a rejected key or too many requests."""

    auth: list[ErrorValue] = Field(default_factory=list, max_length=100)
    rate_limited: list[ErrorValue] = Field(default_factory=list, max_length=100)

    @model_validator(mode="after")
    def _apart(self) -> Self:
        both = {str(v) for v in self.auth} & {str(v) for v in self.rate_limited}
        if both:
            raise ValueError(f"{sorted(both)[0]!r} is listed under both auth and rate_limited")
        return self

    def by_value(self) -> dict[str, Reason]:
        """Each listed value as text (`1015` in the config and "1015" in an answer are one)."""
        return {
            **{str(value): Reason.RATE_LIMITED for value in self.rate_limited},
            **{str(value): Reason.AUTH for value in self.auth},
        }


# What a refusal status may be said to mean. The others describe what the exporter itself saw
# (a timeout, a dropped connection, an answer it could not read), never a status.
StatusReason = Literal["auth", "rate_limited", "provider_error", "http"]


def _check_status_reasons(reasons: dict[int, StatusReason]) -> dict[int, StatusReason]:
    for status in reasons:
        if not 400 <= status <= 599:
            raise ValueError(f"{status} is not a refusal: give a status from 400 to 599")
        if status in ANSWERED_BY_HTTP:
            raise ValueError(
                f"{status} never reaches the definition: 429 is always rate_limited, "
                "502/503/504 are retried and then http"
            )
    return reasons


class LoginSettings(Strict):
    """A call that trades the key for a token, made before the balance call needs one."""

    request: RequestSettings
    token: Expression
    # Seconds the token lives, read from the login answer; or a fixed lifetime; with neither,
    # the token is used until the balance call answers 401.
    expires_in: Expression | None = None
    lifetime: PositiveDuration | None = None
    # As the balance call's: a token endpoint refuses in its own words (OAuth 2's
    # `{"error": "invalid_client"}` with a 400), which `error_reasons` says mean a wrong key.
    error: Expression | None = None
    error_reasons: ErrorReasons | None = None

    @model_validator(mode="after")
    def _one_lifetime(self) -> Self:
        if self.expires_in is not None and self.lifetime is not None:
            raise ValueError("give expires_in (read from the answer) or lifetime, not both")
        if self.error_reasons is not None and self.error is None:
            raise ValueError("error_reasons maps values of error: give error too")
        return self


# -- values -----------------------------------------------------------------------------


class ConditionalValue(Strict):
    """A value some answers hold and others do not: read only when `when` is true (JMESPath's
    truth: not null, false or empty), else absent from that collection, never a made-up zero.
    An account that answers in money or in credits (a `type` field) reads each under its
    condition; a field that may be null says so with itself as the condition."""

    path: Expression
    when: Expression


def _value_form(value: object) -> str:
    return MAPPING_FORM if isinstance(value, dict) else STRING_FORM


# Told apart by shape, so that a wrong value gets its own form's error and not both forms'.
ValueExpression = Annotated[
    Annotated[Expression, Tag(STRING_FORM)] | Annotated[ConditionalValue, Tag(MAPPING_FORM)],
    Discriminator(_value_form),
]


class CreditPath(Strict):
    credit_type: LabelValue
    pool: LabelValue
    path: Expression
    when: Expression | None = None
    # What the plan grants of this pool per period, where the answer says it (ScraperAPI's
    # `requestLimit`): apibalance_credits_allowance. Null in an answer: none granted.
    allowance: Expression | None = None


class ValueSettings(Strict):
    # Money left in the account's currency; `balance_usd` is its older name, for USD only.
    balance: ValueExpression | None = None
    balance_usd: ValueExpression | None = None
    # Where the answer says which currency `balance` is in.
    currency: Expression | None = None
    daily_limit_remaining: ValueExpression | None = None
    daily_limit_reset_seconds: ValueExpression | None = None
    credits: list[CreditPath] = Field(default_factory=list, max_length=MAX_CREDITS)

    @field_validator("credits")
    @classmethod
    def _distinct_series(cls, credits: list[CreditPath]) -> list[CreditPath]:
        seen: set[tuple[str, str]] = set()
        for credit in credits:
            series = (credit.credit_type, credit.pool)
            if series in seen:
                raise ValueError(
                    f"credit_type {credit.credit_type!r} with pool {credit.pool!r} is given "
                    "twice; each pair is one series"
                )
            seen.add(series)
        return credits

    @model_validator(mode="after")
    def _something_to_read(self) -> Self:
        if self.balance is not None and self.balance_usd is not None:
            raise ValueError(
                "give balance or balance_usd, not both (balance_usd is balance for a USD account)"
            )
        if self.currency is not None and self.balance_usd is not None:
            raise ValueError(
                "balance_usd is always USD; with currency read from the answer, use balance"
            )
        if self.currency is not None and self.balance is None:
            raise ValueError("currency says what balance is in: give balance too")
        if (
            self.balance is None
            and self.balance_usd is None
            and self.daily_limit_remaining is None
            and self.daily_limit_reset_seconds is None
            and not self.credits
        ):
            raise ValueError(
                "nothing to read: give at least one of balance, balance_usd, daily_limit_remaining, "
                "daily_limit_reset_seconds, credits"
            )
        return self


def _check_ok_status(statuses: list[int]) -> list[int]:
    for status in statuses:
        if not 200 <= status <= 599 or 300 <= status <= 399:
            raise ValueError(f"{status} is not a final, non-redirect HTTP status (200-599)")
        if status in NEVER_OK:
            raise ValueError(
                f"{status} cannot be ok: 401/403 are auth or their status_reasons, "
                "429 rate_limited, 502/503/504 are retried and then http"
            )
    if len(set(statuses)) != len(statuses):
        raise ValueError("statuses must not repeat")
    return statuses


class HttpJsonSettings(AccountSettings):
    request: RequestSettings
    values: ValueSettings
    secrets: dict[SecretName, SecretSource] = Field(default_factory=dict, max_length=MAX_SECRETS)
    response: ResponseSettings = Field(default_factory=ResponseSettings)
    login: LoginSettings | None = None
    error: Expression | None = None
    error_reasons: ErrorReasons | None = None
    ok_status: (
        Annotated[list[int], Field(min_length=1, max_length=50), AfterValidator(_check_ok_status)]
        | None
    ) = None
    status_reasons: Annotated[
        dict[int, StatusReason], Field(max_length=50), AfterValidator(_check_status_reasons)
    ] = Field(default_factory=dict)

    # The config says which currency the answer's money is in (`currency`, default USD), or
    # where the answer says it (`values.currency`).
    fixed_currency: ClassVar[str | None] = None

    @field_validator("base_url")
    @classmethod
    def _no_base_url(cls, value: str | None) -> str | None:
        if value is not None:
            raise ValueError("http_json has no base_url: request.url is the whole URL")
        return value

    @model_validator(mode="after")
    def _usd_only_in_usd(self) -> Self:
        if self.values.balance_usd is not None and self.known_currency() != USD:
            raise ValueError(
                f"values.balance_usd is for accounts in USD; {self.currency_description()}: "
                "read it with values.balance"
            )
        return self

    def known_currency(self) -> str | None:
        if self.currency is None and self.values.currency is not None:
            return None
        return super().known_currency()

    @field_validator("secrets")
    @classmethod
    def _free_names(cls, secrets: dict[str, SecretSource]) -> dict[str, SecretSource]:
        for name in secrets:
            if name in (KEY_NAME, TOKEN_NAME, "base_url"):
                raise ValueError(f"{name} is a placeholder of its own; name the secret otherwise")
        return secrets

    @model_validator(mode="after")
    def _every_secret_sent(self) -> Self:
        used = self.request.placeholders()
        if self.login is not None:
            login_used = self.login.request.placeholders()
            if TOKEN_NAME in login_used:
                raise ValueError("{token} is what login returns; the login request cannot use it")
            if TOKEN_NAME not in used:
                raise ValueError("the login token would never be sent: put {token} in the request")
            used |= login_used
        if KEY_NAME not in used:
            raise ValueError(
                f"the key would never be sent: put {PLACEHOLDER} in a header value, a query "
                "value, the URL path, a string of the json or form body, or basic_auth"
            )
        for name in self.secrets:
            if name not in used:
                raise ValueError(f"secrets.{name} would never be sent: use {{{name}}} somewhere")
        if self.error_reasons is not None and self.error is None:
            raise ValueError("error_reasons maps values of error: give error too")
        return self

    @model_validator(mode="after")
    def _ok_is_not_a_refusal(self) -> Self:
        both = set(self.status_reasons) & set(self.ok_status or ())
        if both:
            raise ValueError(
                f"{min(both)} is in both ok_status and status_reasons: an answer is a balance "
                "or a refusal"
            )
        return self
