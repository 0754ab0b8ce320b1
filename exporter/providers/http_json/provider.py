"""The http_json provider: asks as its settings say, logs in when they say so, reads the answer."""

from __future__ import annotations

import asyncio
import base64
import math
import re
import urllib.parse
import weakref
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from jmespath.parser import ParsedResult
from pydantic import SecretStr

from exporter import logs
from exporter.model import (
    CollectError,
    Credit,
    Reading,
    Reason,
    Reports,
    finite_number,
    numeric_string,
)
from exporter.providers.base import Provider, status_error
from exporter.providers.http_json.expressions import Budget, compile_expression, is_true, search
from exporter.providers.http_json.settings import (
    KEY_NAME,
    TOKEN_NAME,
    ConditionalValue,
    ErrorReasons,
    HttpJsonSettings,
    RequestSettings,
    compile_pattern,
    fill,
    fill_json,
)
from exporter.settings import USD, AccountSettings, NamesSecrets, SecretSource
from exporter.upstream import AccountHttp, Answer

# A plain-text balance answer is a line; a longer body is a page that is not the answer.
MAX_TEXT_CHARS = 64 * 1024
# Not the service refusing: the URL names nothing there (a base_url with a path, a wrong host).
NOT_FOUND = 404
# A token is sent in a header: printable ASCII, no line break or other control character.
_TOKEN_VALUE_RE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")
# Tokens are a few hundred bytes (a JWT a few KiB); the login answer may be a MiB.
MAX_TOKEN_CHARS = 8192
# A login token is renewed this long before the expiry the service announced.
TOKEN_RENEW_MARGIN = 30.0
_CURRENCY_IN_ANSWER_RE = re.compile(r"[A-Za-z]{3}")


def _quote_path_segment(value: str) -> str:
    return urllib.parse.quote(value, safe="")


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
            (name, *_path_and_condition(value), minimum)
            for name, value, minimum in (
                ("balance", values.balance, None),
                ("balance_usd", values.balance_usd, None),
                ("daily_limit_remaining", values.daily_limit_remaining, 0.0),
                ("daily_limit_reset_seconds", values.daily_limit_reset_seconds, 0.0),
            )
            if value is not None
        ]
        self._credits = [
            (
                credit.credit_type,
                credit.pool,
                compile_expression(credit.path),
                None if credit.when is None else compile_expression(credit.when),
                None if credit.allowance is None else compile_expression(credit.allowance),
            )
            for credit in values.credits
        ]
        # Without conditions every value is read or the collection fails; with them, an
        # answer may hold none of them, which is no reading either.
        self._conditional = any(when is not None for *_, when, _ in self._credits) or any(
            when is not None for _, _, when, _ in self._scalars
        )
        self._error = None if config.error is None else compile_expression(config.error)
        self._currency = None if values.currency is None else compile_expression(values.currency)
        self._configured_currency = config.known_currency()
        # Looked up on every failed collection: built once, here.
        self._error_reasons = (config.error_reasons or ErrorReasons()).by_value()
        self._status_reasons = {
            status: Reason(name) for status, name in config.status_reasons.items()
        }
        # Statuses that mean what they mean whatever the body says.
        self._refused_unread = frozenset(self._status_reasons) | {401, 403}
        response = config.response
        self._pattern = None if response.pattern is None else compile_pattern(response.pattern)
        login = config.login
        self._token_expression = None if login is None else compile_expression(login.token)
        self._expires_in = (
            None
            if login is None or login.expires_in is None
            else compile_expression(login.expires_in)
        )
        self._login_error = (
            None if login is None or login.error is None else compile_expression(login.error)
        )
        self._login_error_reasons = (
            ErrorReasons() if login is None or login.error_reasons is None else login.error_reasons
        ).by_value()
        self._token: str | None = None
        self._token_expires = 0.0
        # Forgets the token with the log redactor: when it is replaced, or when a reload
        # drops this provider with the account's old definition.
        self._forget_token: weakref.finalize[[str], HttpJson] | None = None

    @classmethod
    def definition_of(cls, settings: AccountSettings) -> HttpJsonSettings:
        """How an account is asked and read: an http_json account's own settings."""
        assert isinstance(settings, HttpJsonSettings)
        return settings

    @classmethod
    def upstream_url(cls, settings: AccountSettings) -> str | None:
        return cls.definition_of(settings).request.url

    @classmethod
    def reports(cls, settings: AccountSettings) -> Reports:
        values = cls.definition_of(settings).values
        return Reports(
            money=values.balance is not None or values.balance_usd is not None,
            credits=tuple((credit.credit_type, credit.pool) for credit in values.credits),
            daily_limit=values.daily_limit_remaining is not None,
        )

    @classmethod
    def service(cls, settings: AccountSettings) -> str:
        # A configured API has no name of its own here: the host it asks says which it is.
        host = urllib.parse.urlsplit(cls.definition_of(settings).request.url).hostname
        return host or cls.type_name

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
        if answer.status in self._refused_unread:
            raise self._status_error(answer)
        if not self._ok(answer.status):
            # A text answer's `error` reads any text: a 404 says nothing of the service there.
            text_404 = self._pattern is not None and answer.status == NOT_FOUND
            read = None if text_404 else self._error
            refused = _refusal(answer, read, self._error_reasons, self._document)
            if answer.status == NOT_FOUND and refused.reason is Reason.HTTP:
                raise CollectError(Reason.HTTP, self.not_found(self.config.request))
            raise refused
        document = self._document(answer)
        budget = Budget()
        if self._error is not None:
            flagged = search(self._error, document, "error", budget, answer.headers)
            if flagged is not None:
                raise _error_for(flagged, self._error_reasons, "")
        return self._read(document, budget, answer.headers)

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
            self._drop_token()
            token = await self._log_in(http, values)
            answer = await self._send(http, self.config.request, {**values, TOKEN_NAME: token})
        return answer

    async def _log_in(self, http: AccountHttp, values: Mapping[str, str]) -> str:
        login = self.config.login
        assert login is not None
        assert self._token_expression is not None
        self._drop_token()
        answer = await self._send(http, login.request, values)
        if not answer.ok:
            if self._login_error is None or answer.status in self._refused_unread:
                error = self._status_error(answer)
            else:
                error = _refusal(answer, self._login_error, self._login_error_reasons, Answer.json)
            if answer.status == NOT_FOUND and error.reason is Reason.HTTP:
                error = CollectError(Reason.HTTP, self.not_found(login.request))
            raise CollectError(error.reason, f"login: {error.cause}")
        document = answer.json()
        budget = Budget()
        if self._login_error is not None:
            flagged = search(self._login_error, document, "login.error", budget, answer.headers)
            if flagged is not None:
                raise _error_for(flagged, self._login_error_reasons, "login: ")
        token = search(self._token_expression, document, "login.token", budget, answer.headers)
        token = _checked_token(token)
        lifetime = math.inf
        if self._expires_in is not None:
            found = search(self._expires_in, document, "login.expires_in", budget, answer.headers)
            lifetime = read_number(found, "login.expires_in", 0.0)
        elif login.lifetime is not None:
            lifetime = login.lifetime
        now = asyncio.get_running_loop().time()
        logs.register_token(token)
        self._forget_token = weakref.finalize(self, logs.forget_token, token)
        self._token = token
        self._token_expires = now + lifetime - min(TOKEN_RENEW_MARGIN, lifetime / 10)
        return token

    def not_found(self, request: RequestSettings) -> str:
        """Why a 404 is the config's: the path the request asked, never with a secret in it
        (placeholders stay as written)."""
        path = urllib.parse.urlsplit(request.url).path or "/"
        return f"HTTP 404 for {path}: the host has no such path; check the url"

    def _drop_token(self) -> None:
        if self._forget_token is not None:
            self._forget_token()  # now, and not again when this provider goes
        self._token = None

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
        if answer.is_html:
            # A web page where a text answer was expected: another host, or a proxy's page,
            # never the service speaking (its `error` would read the page as its error).
            raise CollectError(Reason.INVALID_RESPONSE, f"HTTP {answer.status} body is HTML")
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

    def _read(self, body: Any, budget: Budget, headers: Mapping[str, str]) -> Reading:
        found: dict[str, float] = {}
        for name, expression, when, minimum in self._scalars:
            what = f"values.{name}"
            if when is not None and not is_true(
                search(when, body, what + ".when", budget, headers)
            ):
                continue
            found[name] = read_number(
                search(expression, body, what, budget, headers), what, minimum
            )
        credits: list[Credit] = []
        for i, (credit_type, pool, expression, when, allowance) in enumerate(self._credits):
            what = f"values.credits[{i}]"
            if when is not None and not is_true(
                search(when, body, what + ".when", budget, headers)
            ):
                continue
            number = read_number(search(expression, body, what, budget, headers), what, 0.0)
            granted = None
            if allowance is not None:
                found_allowance = search(allowance, body, what + ".allowance", budget, headers)
                if found_allowance is not None:
                    granted = read_number(found_allowance, what + ".allowance", 0.0)
            credits.append(Credit(credit_type, pool, number, granted))
        if self._conditional and not found and not credits:
            raise CollectError(
                Reason.INVALID_RESPONSE, "values: the answer holds none of them (no when held)"
            )
        money = found.get("balance", found.get("balance_usd"))
        if money is None:
            # Which currency money would be in is no question when there is none.
            currency = None
        elif self._currency is None:
            currency = self._configured_currency
        else:
            found_currency = search(self._currency, body, "values.currency", budget, headers)
            currency = read_currency(found_currency)
        in_usd = currency == USD
        return Reading(
            balance_usd=money if in_usd else None,
            balance=None if in_usd else money,
            # A USD account by config reads as every built-in's does.
            currency=None if in_usd and self._currency is None else currency,
            credits=tuple(credits),
            daily_limit_remaining=found.get("daily_limit_remaining"),
            daily_limit_reset_seconds=found.get("daily_limit_reset_seconds"),
        )


def _path_and_condition(
    value: str | ConditionalValue,
) -> tuple[ParsedResult, ParsedResult | None]:
    if isinstance(value, ConditionalValue):
        return compile_expression(value.path), compile_expression(value.when)
    return compile_expression(value), None


def _refusal(
    answer: Answer,
    error: ParsedResult | None,
    reasons: Mapping[str, Reason],
    document: Callable[[Answer], Any],
) -> CollectError:
    """A client error that says so in its `error` field is the provider's; others, HTTP's.

    The balance call's and the login's answers each have their own `error` and reasons, and
    their own reading (a login's answer is JSON whatever `response` says)."""
    # An HTML page is a web server's or a proxy's, not the service's answer: never its error.
    if error is not None and 400 <= answer.status < 500 and not answer.is_html:
        try:
            flagged = search(error, document(answer), "error", Budget(), answer.headers)
        except CollectError:
            flagged = None
        if flagged is not None:
            return _error_for(flagged, reasons, f"HTTP {answer.status}, ")
    return status_error(answer)


def _error_for(value: object, reasons: Mapping[str, Reason], prefix: str) -> CollectError:
    if isinstance(value, bool) or not isinstance(value, str | int):
        reason = None
    else:
        reason = reasons.get(str(value))
    if reason is None:
        return CollectError(Reason.PROVIDER_ERROR, f"{prefix}error field set")
    # Only a value the config lists is named: the provider's own text never is.
    return CollectError(reason, f"{prefix}error {value}")


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


def _checked_token(token: object) -> str:
    """A token fit to send in a header, or invalid_response (the token itself never quoted)."""
    if not isinstance(token, str) or not token:
        raise CollectError(Reason.INVALID_RESPONSE, "login.token is not a string")
    if len(token) > MAX_TOKEN_CHARS:
        raise CollectError(
            Reason.INVALID_RESPONSE, f"login.token is longer than {MAX_TOKEN_CHARS} characters"
        )
    if not _TOKEN_VALUE_RE.fullmatch(token):
        raise CollectError(
            Reason.INVALID_RESPONSE,
            "login.token is not printable ASCII (a line break, control character or "
            "surrounding space)",
        )
    return token
