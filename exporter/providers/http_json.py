"""Any JSON balance API, by config: `request` says how to ask, `values` where to read.

    - name: sms
      provider: http_json
      api_key_env: SMS_KEY
      request:
        url: https://api.example.com/v1/balance
        method: POST
        headers: {Authorization: "Bearer {api_key}"}
        json: {key: "{api_key}"}
      values:
        balance_usd: data.balance
        credits:
          - {credit_type: sms, pool: one_time, path: credits.sms}
      error: error.message

`{api_key}` is replaced by the account's key in header values and in the string values of
the JSON body, nowhere else: never in the URL, so the key cannot end up in a request line or
an access log. `values` and `error` are JMESPath expressions, compiled and checked when the
config loads. A value may be a JSON number or a numeric string (`"1,250.75"`); a configured
value that is null or missing, not a number, NaN or infinite is `invalid_response`.
`balance_usd` may be negative (postpaid accounts do go below zero, and that is what the alert
is for); credits and daily limits may not.

Money in another currency is `balance` (in the account's `currency`, default USD), or
`balance` with `currency`: where the answer says which currency it is. A currency read from
the answer must be three letters and must not change from one collection to the next (the
engine checks that); anything else is `invalid_response`, never a number in the wrong unit.

Failures map to the same reasons as the built-in providers: 401/403 `auth`, 429
`rate_limited` (honouring Retry-After), a status outside `ok_status` (default: any 2xx) `http`,
or `provider_error` when a 4xx answer or an ok answer has the `error` expression not null.
The provider's error text never reaches logs or labels: the cause only says the field is set.

    apibalance_balance_usd{provider="http_json",account="sms"} 1250.75
    apibalance_credits{provider="http_json",account="sms",credit_type="sms",pool="one_time"} 830
"""

from __future__ import annotations

import re
import urllib.parse
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Self

import jmespath
from jmespath import exceptions as jmespath_errors
from jmespath.functions import Functions
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

from exporter.model import CollectError, Credit, Reading, Reason, finite_number, numeric_string
from exporter.providers.base import Provider, status_error
from exporter.settings import USD, AccountSettings, LabelValue, Strict
from exporter.upstream import AccountHttp, Answer

if TYPE_CHECKING:
    from jmespath.visitor import _TreeNode

PLACEHOLDER = "{api_key}"
MAX_EXPRESSION_CHARS = 1000
MAX_CREDITS = 50
# Statuses the HTTP layer answers itself (redirects refused, 429 rate_limited, 502-504 retried)
# and the ones that always mean a rejected key: listing them as "ok" could never take effect.
NEVER_OK = frozenset({401, 403, 429, 502, 503, 504})
# The request framing is the HTTP client's job; a configured one would fight it.
RESERVED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
_TOKEN_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")
_HEADER_VALUE_RE = re.compile(r"^[\x20-\x7e\t]*$")
_CURRENCY_IN_ANSWER_RE = re.compile(r"[A-Za-z]{3}")
_FUNCTIONS: dict[str, Any] = Functions.FUNCTION_TABLE
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


# -- request ----------------------------------------------------------------------------


def check_request_url(value: str) -> str:
    """The whole URL of the balance call: http(s), a host, no credentials, no `{api_key}`.

    A static query string is allowed (`?currency=USD`): the key is never substituted there,
    and a key typed into it literally is refused by the loader like any key in a URL.
    """
    if PLACEHOLDER in value or PLACEHOLDER in urllib.parse.unquote(value):
        raise ValueError(
            f"must not contain {PLACEHOLDER}: the key goes only in headers or the json body"
        )
    try:
        url = URL(value)
    except ValueError:
        raise ValueError("not a URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("must be an http:// or https:// URL with a host")
    if url.user is not None or url.password is not None:
        raise ValueError("must not carry credentials; use api_key_file or api_key_env")
    if url.fragment:
        raise ValueError("must not have a fragment")
    return value


def _check_header_value(value: str) -> str:
    # A line break would start a new header; other bytes the HTTP client may refuse to encode.
    if not _HEADER_VALUE_RE.match(value):
        raise ValueError("a header value must be printable ASCII on one line")
    return value


HeaderValue = Annotated[str, Field(max_length=8192), AfterValidator(_check_header_value)]


def _has_placeholder(value: JsonValue) -> bool:
    if isinstance(value, str):
        return PLACEHOLDER in value
    if isinstance(value, list):
        return any(_has_placeholder(item) for item in value)
    if isinstance(value, dict):
        return any(_has_placeholder(item) for item in value.values())
    return False


def fill_key(value: JsonValue, key: str) -> JsonValue:
    """`value` with `{api_key}` replaced by the key in every string value (keys stay as they are)."""
    if isinstance(value, str):
        return value.replace(PLACEHOLDER, key)
    if isinstance(value, list):
        return [fill_key(item, key) for item in value]
    if isinstance(value, dict):
        return {name: fill_key(item, key) for name, item in value.items()}
    return value


class RequestSettings(Strict):
    url: Annotated[str, Field(max_length=2048), AfterValidator(check_request_url)]
    # Without `method`: POST when there is a json body, else GET.
    method: Literal["GET", "POST"] | None = None
    headers: dict[str, HeaderValue] = Field(default_factory=dict, max_length=50)
    json_body: JsonValue = Field(default=None, alias="json")

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
        if self.json_body is not None:
            if self.method == "GET":
                raise ValueError("json is a request body: use method POST (or leave method out)")
            if any(name.lower() == "content-type" for name in self.headers):
                raise ValueError("with json, Content-Type is application/json; remove the header")
        if not any(PLACEHOLDER in value for value in self.headers.values()) and not (
            _has_placeholder(self.json_body)
        ):
            raise ValueError(
                f"the key would never be sent: put {PLACEHOLDER} in a header value "
                "or a string of the json body"
            )
        return self

    @property
    def effective_method(self) -> str:
        if self.method is not None:
            return self.method
        return "GET" if self.json_body is None else "POST"


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
                f"{status} cannot be ok: 401/403 always mean auth, 429 rate_limited, "
                "502/503/504 are retried and then http"
            )
    if len(set(statuses)) != len(statuses):
        raise ValueError("statuses must not repeat")
    return statuses


class HttpJsonSettings(AccountSettings):
    request: RequestSettings
    values: ValueSettings
    error: Expression | None = None
    ok_status: (
        Annotated[list[int], Field(min_length=1, max_length=50), AfterValidator(_check_ok_status)]
        | None
    ) = None

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


# -- the provider -----------------------------------------------------------------------


class HttpJson(Provider):
    """Any JSON balance API: asks `request.url` as configured, reads `values` by JMESPath."""

    type_name = "http_json"
    default_base_url = None
    settings_model = HttpJsonSettings
    url_setting = ("request", "url")

    def __init__(self, settings: AccountSettings, api_key: SecretStr) -> None:
        super().__init__(settings, api_key)
        assert isinstance(settings, HttpJsonSettings)
        self.config = settings
        values = settings.values
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
        self._error = None if settings.error is None else compile_expression(settings.error)
        self._currency = None if values.currency is None else compile_expression(values.currency)
        self._configured_currency = settings.known_currency()

    @classmethod
    def upstream_url(cls, settings: AccountSettings) -> str | None:
        assert isinstance(settings, HttpJsonSettings)
        return settings.request.url

    async def fetch(self, http: AccountHttp) -> Reading:
        request = self.config.request
        # AccountHttp appends the path to the account's URL; here that URL is already whole.
        answer = await http.request(
            request.effective_method,
            "",
            headers={
                name: value.replace(PLACEHOLDER, self.api_key)
                for name, value in request.headers.items()
            },
            json_body=fill_key(request.json_body, self.api_key),
        )
        if answer.status in (401, 403):
            raise status_error(answer)
        if not self._ok(answer.status):
            raise self._refusal(answer)
        body = answer.json()
        budget = Budget()
        if self._error is not None and _search(self._error, body, "error", budget) is not None:
            raise CollectError(Reason.PROVIDER_ERROR, "error field set")
        return self._read(body, budget)

    def _ok(self, status: int) -> bool:
        if self.config.ok_status is None:
            return 200 <= status < 300
        return status in self.config.ok_status

    def _refusal(self, answer: Answer) -> CollectError:
        """A client error that says so in its `error` field is the provider's; others, HTTP's."""
        if self._error is not None and 400 <= answer.status < 500:
            body = answer.json_or_none()
            try:
                flagged = (
                    body is not None and _search(self._error, body, "error", Budget()) is not None
                )
            except CollectError:
                flagged = False
            if flagged:
                return CollectError(Reason.PROVIDER_ERROR, f"HTTP {answer.status}, error field set")
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
        super().__init__()
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
