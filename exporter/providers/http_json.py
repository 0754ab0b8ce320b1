"""Any balance API, by config: `request` says how to ask, `values` where to read.

    - name: sms
      provider: http_json
      api_key_env: SMS_KEY
      secrets: {account_id: {env: SMS_ACCOUNT}}
      request:
        url: https://api.example.com/v1/accounts/{account_id}/balance
        method: POST
        headers: {Authorization: "Bearer {api_key}"}
        query: {format: json}
        json: {key: "{api_key}"}
      values:
        balance_usd: data.balance
        credits:
          - {credit_type: sms, pool: one_time, path: "subtract(credits.limit, credits.used)"}
      error: error.code
      error_reasons: {auth: [invalid_key]}

Placeholders, `{api_key}`, `{<secret name>}` and (after a `login` call) `{token}`, are
filled in the path of `request.url`, header values, `query` values, the string values of the
`json` body, `form` values and `basic_auth`; any other `{...}` is sent as it is. The host, a
static query string and everything the exporter prints about a request never carry one.
`values` and `error` are JMESPath expressions (with the arithmetic functions of
`exporter.providers.arithmetic`), compiled and checked when the config loads; a plain-text
answer (`response: {format: text, pattern: ...}`) is read through the named groups of a
regular expression. A value may be a JSON number or a numeric string (`"1,250.75"`); a
configured value that is null or missing, not a number, NaN or infinite is `invalid_response`.
`balance_usd` may be negative (postpaid accounts do go below zero, and that is what the alert
is for); credits and daily limits may not.

Money in another currency is `balance` (in the account's `currency`, default USD), or
`balance` with `currency`: where the answer says which currency it is. A currency read from
the answer must be three letters and must not change from one collection to the next (the
engine checks that); anything else is `invalid_response`, never a number in the wrong unit.

Failures map to the same reasons as the built-in providers: 401/403 `auth`, 429
`rate_limited` (honouring Retry-After), a status outside `ok_status` (default: any 2xx) `http`,
or, when a 4xx answer or an ok answer has the `error` expression not null, the reason
`error_reasons` gives its value (default `provider_error`). A service whose statuses mean
something else says so in `status_reasons` (`{403: rate_limited}`), which comes first. The
provider's error text never reaches logs or labels: the cause names only a value the config
listed.

    apibalance_balance_usd{provider="http_json",account="sms"} 1250.75
    apibalance_credits{provider="http_json",account="sms",credit_type="sms",pool="one_time"} 830
"""

from __future__ import annotations

import asyncio
import base64
import math
import re
import urllib.parse
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Self

import jmespath
from jmespath import exceptions as jmespath_errors
from jmespath.parser import ParsedResult
from jmespath.visitor import TreeInterpreter
from pydantic import (
    AfterValidator,
    Field,
    JsonValue,
    SecretStr,
    field_validator,
    model_validator,
)
from yarl import URL

from exporter import logs
from exporter.model import CollectError, Credit, Reading, Reason, finite_number, numeric_string
from exporter.providers.arithmetic import FUNCTION_TABLE, FUNCTIONS
from exporter.providers.base import Provider, status_error
from exporter.settings import (
    USD,
    AccountSettings,
    LabelValue,
    NamesSecrets,
    PositiveDuration,
    SecretName,
    SecretSource,
    Strict,
)
from exporter.upstream import AccountHttp, Answer

if TYPE_CHECKING:
    from jmespath.visitor import _TreeNode

PLACEHOLDER = "{api_key}"
KEY_NAME = "api_key"
TOKEN_NAME = "token"  # noqa: S105 (the placeholder's name, not a token)
MAX_EXPRESSION_CHARS = 1000
MAX_CREDITS = 50
MAX_SECRETS = 10
# A plain-text balance answer is a line; a longer body is a page that is not the answer.
MAX_TEXT_CHARS = 64 * 1024
# A login token is renewed this long before the expiry the service announced.
TOKEN_RENEW_MARGIN = 30.0
# Statuses the HTTP layer answers itself (429 rate_limited, 502-504 retried; redirects are
# refused): a definition's `ok_status` or `status_reasons` for them could never take effect.
ANSWERED_BY_HTTP = frozenset({429, 502, 503, 504})
# Nor can 401/403 be ok: they are a rejected key, or what `status_reasons` says they are.
NEVER_OK = ANSWERED_BY_HTTP | {401, 403}
# The request framing is the HTTP client's job; a configured one would fight it.
RESERVED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
_TOKEN_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")
_HEADER_VALUE_RE = re.compile(r"^[\x20-\x7e\t]*$")
_CURRENCY_IN_ANSWER_RE = re.compile(r"[A-Za-z]{3}")
_PLACEHOLDER_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_FUNCTIONS: dict[str, Any] = FUNCTION_TABLE
_SEARCH_OPTIONS = jmespath.Options(custom_functions=FUNCTIONS)
# `[a, b]` and `{x: a, y: b}` copy their input once per item; nested or chained, the copies
# multiply (`[@,@][]` twenty times over is a million values from one). An expression whose
# items multiply past this is refused at load.
MAX_FAN_OUT = 1000
# Work the expressions may do on one answer, in steps (a node visited, or a value put into a
# new list, object or string), so that no answer and config together can hold the event loop
# for long: some 50 ms at most, where reading a balance takes a few hundred steps.
MAX_EVALUATION_STEPS = 100_000


# -- JMESPath ---------------------------------------------------------------------------


def compile_expression(text: str) -> ParsedResult:
    """Compile a JMESPath expression, or raise ValueError saying what is wrong and where.

    Unknown functions and wrong argument counts are only found by jmespath when an answer is
    searched; they are checked here so they are config errors, not failed scrapes.
    """
    try:
        parsed = jmespath.compile(text)
    except jmespath_errors.EmptyExpressionError:
        raise ValueError("empty JMESPath expression") from None
    except jmespath_errors.IncompleteExpressionError:
        raise ValueError("incomplete JMESPath expression") from None
    except jmespath_errors.LexerError as error:
        raise ValueError(
            f"not a valid JMESPath expression: {error.message} at column {error.lexer_position}"
        ) from None
    except jmespath_errors.ParseError as error:
        token = (
            "end of expression" if error.token_type.lower() == "eof" else repr(error.token_value)
        )
        raise ValueError(
            f"not a valid JMESPath expression: unexpected {token} at column {error.lex_position}"
        ) from None
    except jmespath_errors.JMESPathError:
        raise ValueError("not a valid JMESPath expression") from None
    _check_functions(parsed.parsed)
    fan_out = _fan_out(parsed.parsed)
    if fan_out > MAX_FAN_OUT:
        raise ValueError(
            f"the multi-selects ([a, b] or {{x: a, y: b}}) multiply each value up to {fan_out} "
            f"times; at most {MAX_FAN_OUT} is allowed"
        )
    return parsed


def _fan_out(node: Any) -> int:
    """How many times over, at most, the expression's multi-selects repeat a value."""
    if not isinstance(node, dict):
        return 1
    fan_outs = [_fan_out(child) for child in node.get("children") or []]
    if node.get("type") in _SEQUENCES:
        # Each step works on every value the step before made.
        product = 1
        for fan_out in fan_outs:
            product *= fan_out
        return product
    # A multi-select makes one copy per item, a function one result from its arguments.
    return max(sum(fan_outs), 1)


# Nodes whose children run one after the other, each on the previous one's output.
_SEQUENCES = frozenset(
    {
        "subexpression",
        "pipe",
        "projection",
        "value_projection",
        "filter_projection",
        "flatten",
        "index_expression",
    }
)


def _check_functions(node: Any) -> None:
    if not isinstance(node, dict):
        return
    children = node.get("children") or []
    if node.get("type") == "function_expression":
        name = node.get("value")
        entry = _FUNCTIONS.get(name) if isinstance(name, str) else None
        if entry is None:
            raise ValueError(f"unknown JMESPath function {name}()")
        signature = entry["signature"]
        variadic = bool(signature) and signature[-1].get("variadic", False)
        if len(children) < len(signature) or (not variadic and len(children) > len(signature)):
            expected = f"{len(signature)}{' or more' if variadic else ''}"
            raise ValueError(
                f"JMESPath function {name}() takes {expected} argument(s), not {len(children)}"
            )
    for child in children:
        _check_functions(child)


def _checked_expression(text: str) -> str:
    compile_expression(text)
    return text


Expression = Annotated[
    str,
    Field(min_length=1, max_length=MAX_EXPRESSION_CHARS),
    AfterValidator(_checked_expression),
]


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


def _quote_path_segment(value: str) -> str:
    return urllib.parse.quote(value, safe="")


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
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("must be an http:// or https:// URL with a host")
    if url.user is not None or url.password is not None:
        raise ValueError("must not carry credentials; use basic_auth with placeholders")
    if url.fragment:
        raise ValueError("must not have a fragment")
    return value


def _check_header_value(value: str) -> str:
    # A line break would start a new header; other bytes the HTTP client may refuse to encode.
    if not _HEADER_VALUE_RE.match(value):
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
        try:
            compiled = re.compile(self.pattern)
        except re.error as error:
            raise ValueError(
                f"pattern is not a valid regular expression: {error.msg} at position {error.pos}"
            ) from None
        if not compiled.groupindex:
            raise ValueError("pattern needs at least one named group, like (?P<balance>[0-9.]+)")
        if "text" in compiled.groupindex:
            raise ValueError("a group cannot be named text: that name holds an unmatched answer")
        return self


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

    @model_validator(mode="after")
    def _one_lifetime(self) -> Self:
        if self.expires_in is not None and self.lifetime is not None:
            raise ValueError("give expires_in (read from the answer) or lifetime, not both")
        return self


# -- values -----------------------------------------------------------------------------


class CreditPath(Strict):
    credit_type: LabelValue
    pool: LabelValue
    path: Expression


class ValueSettings(Strict):
    # Money left in the account's currency; `balance_usd` is its older name, for USD only.
    balance: Expression | None = None
    balance_usd: Expression | None = None
    # Where the answer says which currency `balance` is in.
    currency: Expression | None = None
    daily_limit_remaining: Expression | None = None
    daily_limit_reset_seconds: Expression | None = None
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


# -- the provider -----------------------------------------------------------------------


class HttpJson(Provider):
    """Any balance API: asks `request.url` as configured, reads `values` by JMESPath."""

    type_name = "http_json"
    default_base_url = None
    settings_model: ClassVar[type[AccountSettings]] = HttpJsonSettings
    url_setting: ClassVar[tuple[str, ...]] = ("request", "url")

    def __init__(
        self,
        settings: AccountSettings,
        api_key: SecretStr,
        secrets: Mapping[str, SecretStr] | None = None,
    ) -> None:
        super().__init__(settings, api_key, secrets)
        config = self.definition_of(settings)
        self.config = config
        values = config.values
        self._scalars = [
            (name, compile_expression(text), minimum)
            for name, text, minimum in (
                ("balance", values.balance, None),
                ("balance_usd", values.balance_usd, None),
                ("daily_limit_remaining", values.daily_limit_remaining, 0.0),
                ("daily_limit_reset_seconds", values.daily_limit_reset_seconds, 0.0),
            )
            if text is not None
        ]
        self._credits = [
            (credit.credit_type, credit.pool, compile_expression(credit.path))
            for credit in values.credits
        ]
        self._error = None if config.error is None else compile_expression(config.error)
        self._currency = None if values.currency is None else compile_expression(values.currency)
        self._configured_currency = config.known_currency()
        # Looked up on every failed collection: built once, here.
        self._error_reasons = (config.error_reasons or ErrorReasons()).by_value()
        self._status_reasons = {
            status: Reason(name) for status, name in config.status_reasons.items()
        }
        response = config.response
        self._pattern = None if response.pattern is None else re.compile(response.pattern)
        login = config.login
        self._token_expression = None if login is None else compile_expression(login.token)
        self._expires_in = (
            None
            if login is None or login.expires_in is None
            else compile_expression(login.expires_in)
        )
        self._token: str | None = None
        self._token_expires = 0.0

    @classmethod
    def definition_of(cls, settings: AccountSettings) -> HttpJsonSettings:
        """How an account is asked and read: an http_json account's own settings."""
        assert isinstance(settings, HttpJsonSettings)
        return settings

    @classmethod
    def upstream_url(cls, settings: AccountSettings) -> str | None:
        return cls.definition_of(settings).request.url

    @classmethod
    def secret_sources(cls, settings: AccountSettings) -> Mapping[str, SecretSource]:
        assert isinstance(settings, NamesSecrets)
        return settings.secrets

    def placeholder_values(self) -> dict[str, str]:
        return {**self.secrets, KEY_NAME: self.api_key}

    async def fetch(self, http: AccountHttp) -> Reading:
        values = self.placeholder_values()
        if self.config.login is None:
            answer = await self._send(http, self.config.request, values)
        else:
            answer = await self._send_with_token(http, values)
        if answer.status in self._status_reasons or answer.status in (401, 403):
            raise self._status_error(answer)
        if not self._ok(answer.status):
            raise self._refusal(answer)
        document = self._document(answer)
        budget = Budget()
        if self._error is not None:
            flagged = _search(self._error, document, "error", budget)
            if flagged is not None:
                raise self._error_for(flagged, "")
        return self._read(document, budget)

    async def _send(
        self, http: AccountHttp, request: RequestSettings, values: Mapping[str, str]
    ) -> Answer:
        url = urllib.parse.urlsplit(request.url)
        target = fill(url.path, values, _quote_path_segment) or "/"
        query = [(name, fill(value, values)) for name, value in request.query.items()]
        static = url.query
        if static or query:
            target += "?" + "&".join(
                part for part in (static, urllib.parse.urlencode(query)) if part
            )
        headers = {name: fill(value, values) for name, value in request.headers.items()}
        if request.basic_auth is not None:
            pair = f"{fill(request.basic_auth.username, values)}:{fill(request.basic_auth.password, values)}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        form = None
        if request.form is not None:
            form = {name: fill(value, values) for name, value in request.form.items()}
        # The account's URL is this request's URL: only its origin is kept, so the filled path
        # goes to the configured host and nowhere else.
        return await http.request(
            request.effective_method,
            target,
            headers=headers,
            json_body=fill_json(request.json_body, values),
            form=form,
            from_origin=True,
        )

    async def _send_with_token(self, http: AccountHttp, values: dict[str, str]) -> Answer:
        now = asyncio.get_running_loop().time()
        reused = self._token is not None and now < self._token_expires
        token = (
            self._token if reused and self._token is not None else await self._log_in(http, values)
        )
        answer = await self._send(http, self.config.request, {**values, TOKEN_NAME: token})
        if answer.status == 401 and reused:
            # The service may end a session before its announced expiry: log in once more.
            self._token = None
            token = await self._log_in(http, values)
            answer = await self._send(http, self.config.request, {**values, TOKEN_NAME: token})
        return answer

    async def _log_in(self, http: AccountHttp, values: Mapping[str, str]) -> str:
        login = self.config.login
        assert login is not None
        assert self._token_expression is not None
        self._token = None
        answer = await self._send(http, login.request, values)
        if not answer.ok:
            error = self._status_error(answer)
            raise CollectError(error.reason, f"login: {error.cause}")
        document = answer.json()
        budget = Budget()
        token = _search(self._token_expression, document, "login.token", budget)
        if not isinstance(token, str) or not token or not _HEADER_VALUE_RE.match(token):
            raise CollectError(Reason.INVALID_RESPONSE, "login.token is not a printable string")
        logs.register_secret(token)
        lifetime = math.inf
        if self._expires_in is not None:
            found = _search(self._expires_in, document, "login.expires_in", budget)
            lifetime = read_number(found, "login.expires_in", 0.0)
        elif login.lifetime is not None:
            lifetime = login.lifetime
        now = asyncio.get_running_loop().time()
        self._token = token
        self._token_expires = now + lifetime - min(TOKEN_RENEW_MARGIN, lifetime / 10)
        return token

    def _status_error(self, answer: Answer) -> CollectError:
        """A status the definition gives a meaning (`status_reasons`) means that, body unread."""
        reason = self._status_reasons.get(answer.status)
        if reason is None:
            return status_error(answer)
        return CollectError(reason, f"HTTP {answer.status}")

    def _ok(self, status: int) -> bool:
        if self.config.ok_status is None:
            return 200 <= status < 300
        return status in self.config.ok_status

    def _document(self, answer: Answer) -> Any:
        """The answer as the document `values` and `error` read."""
        if self._pattern is None:
            return answer.json()
        try:
            text = answer.body.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise CollectError(
                Reason.INVALID_RESPONSE, f"HTTP {answer.status} body is not UTF-8 text"
            ) from None
        if len(text) > MAX_TEXT_CHARS:
            raise CollectError(Reason.INVALID_RESPONSE, "text answer longer than 64 KiB")
        match = self._pattern.search(text)
        # An answer the pattern does not read is offered whole as `text`, for `error`.
        return match.groupdict() if match is not None else {"text": text}

    def _error_for(self, value: object, prefix: str) -> CollectError:
        if isinstance(value, bool) or not isinstance(value, str | int):
            reason = None
        else:
            reason = self._error_reasons.get(str(value))
        if reason is None:
            return CollectError(Reason.PROVIDER_ERROR, f"{prefix}error field set")
        # Only a value the config lists is named: the provider's own text never is.
        return CollectError(reason, f"{prefix}error {value}")

    def _refusal(self, answer: Answer) -> CollectError:
        """A client error that says so in its `error` field is the provider's; others, HTTP's."""
        if self._error is not None and 400 <= answer.status < 500:
            try:
                flagged = _search(self._error, self._document(answer), "error", Budget())
            except CollectError:
                flagged = None
            if flagged is not None:
                return self._error_for(flagged, f"HTTP {answer.status}, ")
        return status_error(answer)

    def _read(self, body: Any, budget: Budget) -> Reading:
        found: dict[str, float] = {}
        for name, expression, minimum in self._scalars:
            what = f"values.{name}"
            found[name] = read_number(_search(expression, body, what, budget), what, minimum)
        credits = tuple(
            Credit(
                credit_type,
                pool,
                read_number(
                    _search(expression, body, f"values.credits[{i}]", budget),
                    f"values.credits[{i}]",
                    0.0,
                ),
            )
            for i, (credit_type, pool, expression) in enumerate(self._credits)
        )
        if self._currency is None:
            currency = self._configured_currency
        else:
            currency = read_currency(_search(self._currency, body, "values.currency", budget))
        money = found.get("balance", found.get("balance_usd"))
        in_usd = currency == USD
        return Reading(
            balance_usd=money if in_usd else None,
            balance=None if in_usd else money,
            # A USD account by config reads as every built-in's does.
            currency=None if in_usd and self._currency is None else currency,
            credits=credits,
            daily_limit_remaining=found.get("daily_limit_remaining"),
            daily_limit_reset_seconds=found.get("daily_limit_reset_seconds"),
        )


class _OverBudget(Exception):
    pass


class Budget:
    """The evaluation steps left for one answer, shared by all of its expressions."""

    def __init__(self, steps: int = MAX_EVALUATION_STEPS) -> None:
        self.steps_left = steps

    def spend(self, steps: int) -> None:
        self.steps_left -= steps
        if self.steps_left < 0:
            raise _OverBudget


class _BudgetedInterpreter(TreeInterpreter):
    """jmespath's interpreter, counting its work against a `Budget`.

    Evaluation runs on the event loop: without a bound, an answer large enough could keep
    every endpoint (`/-/healthy` too) waiting past the account's timeout.
    """

    def __init__(self, budget: Budget) -> None:
        super().__init__(_SEARCH_OPTIONS)
        self._budget = budget

    def visit(self, node: _TreeNode, *args: Any, **kwargs: Any) -> Any:
        self._budget.spend(1)
        result = super().visit(node, *args, **kwargs)
        if node["type"] in _BUILDING_NODES and isinstance(result, list | dict | str):
            self._budget.spend(len(result))
        return result


# The nodes that make a new list, object or string, whose size is work done.
_BUILDING_NODES = frozenset(
    {
        "flatten",
        "projection",
        "value_projection",
        "filter_projection",
        "multi_select_list",
        "multi_select_dict",
        "function_expression",
        "slice",
    }
)


def _search(expression: ParsedResult, body: Any, what: str, budget: Budget) -> Any:
    try:
        return _BudgetedInterpreter(budget).visit(expression.parsed, body)
    except jmespath_errors.JMESPathError:
        # The message would quote the answer; say only which expression failed.
        raise CollectError(
            Reason.INVALID_RESPONSE, f"{what}: the expression does not apply to this answer"
        ) from None
    except _OverBudget:
        raise CollectError(
            Reason.INVALID_RESPONSE,
            f"{what}: reading this answer takes more than {MAX_EVALUATION_STEPS} steps",
        ) from None


def read_currency(value: Any) -> str:
    """A currency code from the answer: three letters (`"usd"` is taken as USD)."""
    if value is None:
        raise CollectError(Reason.INVALID_RESPONSE, "values.currency is null or missing")
    if not isinstance(value, str) or not _CURRENCY_IN_ANSWER_RE.fullmatch(value):
        raise CollectError(
            Reason.INVALID_RESPONSE, "values.currency is not a three-letter currency code"
        )
    return value.upper()


def read_number(value: Any, what: str, minimum: float | None) -> float:
    """A JSON number or a numeric string; null, missing and everything else are invalid."""
    if value is None:
        raise CollectError(Reason.INVALID_RESPONSE, f"{what} is null or missing")
    if isinstance(value, str):
        return numeric_string(value, what, minimum=minimum)
    return finite_number(value, what, minimum=minimum)
