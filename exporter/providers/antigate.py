"""The anti-captcha protocol, spoken by several services.

POST `{base_url}/getBalance` with `{"clientKey": KEY}`. The answer has `errorId` (0 is
success; anything else comes with `errorCode` and `errorDescription`) and `balance` in USD.
Some services answer errors with HTTP 200, others with 4xx; both are read the same way.

The balance may be negative: tasks in flight are charged after the money has run out, and
Anti-Captcha documents `ERROR_ZERO_BALANCE` as "zero or negative balance"
(https://anti-captcha.com/apidoc/errors). An overdrawn account is exactly the one to show.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from exporter.model import CollectError, Reading, Reason, finite_number
from exporter.providers.base import Provider, require_object, safe_code, status_error
from exporter.upstream import AccountHttp, Answer

# Error codes that mean the key itself is not accepted (unknown, revoked, wrong IP, disabled):
# a person must act, so these back off and page rather than retry.
AUTH_ERROR_CODES = frozenset(
    {
        "ERROR_KEY_DOES_NOT_EXIST",
        "ERROR_WRONG_USER_KEY",
        "ERROR_KEY_DENIED_ACCESS",
        "ERROR_IP_NOT_ALLOWED",
        "ERROR_ACCOUNT_SUSPENDED",
        "ERROR_ACCOUNT_DISABLED",
        "ERROR_ACCOUNT_BANNED",
        "ERROR_USER_BANNED",
        "ERROR_INVALID_KEY",
    }
)
RATE_LIMIT_ERROR_CODES = frozenset(
    {"ERROR_IP_BLOCKED", "ERROR_IP_BANNED", "ERROR_TOO_MUCH_REQUESTS", "ERROR_RATE_LIMIT"}
)


# A service's codes for "blocked for a while" -> seconds until it lifts. Asking again before
# then is answered with the same code and, by the services' own rules, prolongs the block.
TemporaryBlocks = Mapping[str, float]
NO_TEMPORARY_BLOCKS: TemporaryBlocks = MappingProxyType({})


def error_for_code(code: object, blocks: TemporaryBlocks = NO_TEMPORARY_BLOCKS) -> CollectError:
    text = safe_code(code)
    if text in blocks:
        return CollectError(
            Reason.RATE_LIMITED, f"blocked temporarily: {text}", retry_after=blocks[text]
        )
    if text in AUTH_ERROR_CODES:
        return CollectError(Reason.AUTH, f"key rejected: {text}")
    if text in RATE_LIMIT_ERROR_CODES:
        return CollectError(Reason.RATE_LIMITED, f"rate limited: {text}")
    return CollectError(Reason.PROVIDER_ERROR, f"provider error: {text}")


def read_antigate_answer(
    answer: Answer, blocks: TemporaryBlocks = NO_TEMPORARY_BLOCKS
) -> dict[str, Any]:
    """The body of a successful call, or the error it documents."""
    if not answer.ok:
        data = answer.json_or_none()
        has_code = isinstance(data, dict) and data.get("errorId") not in (None, 0)
        code = data.get("errorCode") if isinstance(data, dict) else None
        # A temporary block must back off for its documented time whatever the status says;
        # otherwise 401/403 alone means the key is not accepted.
        if has_code and (safe_code(code) in blocks or answer.status not in (401, 403)):
            raise error_for_code(code, blocks)
        raise status_error(answer)
    data = require_object(answer.json())
    error_id = data.get("errorId", 0)
    if isinstance(error_id, bool) or not isinstance(error_id, int):
        raise CollectError(Reason.INVALID_RESPONSE, "errorId is not an integer")
    if error_id != 0:
        raise error_for_code(data.get("errorCode"), blocks)
    return data


class AntigateProvider(Provider):
    """Base for services that speak the anti-captcha protocol."""

    # The service's documented "blocked for a while" codes and how long each lasts.
    temporary_blocks: ClassVar[TemporaryBlocks] = NO_TEMPORARY_BLOCKS

    async def call(self, http: AccountHttp, method: str, **params: Any) -> dict[str, Any]:
        answer = await http.request(
            "POST", f"/{method}", json_body={"clientKey": self.api_key, **params}
        )
        return read_antigate_answer(answer, self.temporary_blocks)

    async def fetch(self, http: AccountHttp) -> Reading:
        data = await self.call(http, "getBalance")
        return self.read_balance(data)

    def read_balance(self, data: dict[str, Any]) -> Reading:
        if "balance" not in data:
            raise CollectError(Reason.INVALID_RESPONSE, "no balance in the answer")
        return Reading(balance_usd=finite_number(data["balance"], "balance", minimum=None))
