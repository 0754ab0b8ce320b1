"""Ocean.io: GET `/v2/credits/balance` with the key in the `x-api-token` header.

The API also takes `?apiToken=`, but a key in a URL ends up in proxy and server logs, so
only the header is used. The answer has three credit types, each with `oneTime` and
`recurrent` pools, and the daily request limit:

    {"credits": {"oneTime": 100, "recurrent": 100}, "emailCredits": {...},
     "phoneCredits": {...}, "dailyLimitRateLeft": 10, "dailyLimitRateSecondsToReset": 3600}

Errors are `{"detail": ...}` with 400 (conflicting tokens), 402 (insufficient credits),
403 (token missing or unknown), 404 and 422 (validation).

    apibalance_credits{provider="ocean",account="data",credit_type="email",pool="one_time"} 100
    apibalance_daily_limit_remaining{provider="ocean",account="data"} 10
    apibalance_daily_limit_reset_seconds{provider="ocean",account="data"} 3600
"""

from __future__ import annotations

from typing import Any

from exporter.model import CollectError, Credit, Reading, Reason, finite_number
from exporter.providers.base import Provider, require_object, status_error
from exporter.upstream import AccountHttp, Answer

# (answer field, credit_type label) and (answer field, pool label): fixed label sets.
CREDIT_TYPES = (("credits", "standard"), ("emailCredits", "email"), ("phoneCredits", "phone"))
POOLS = (("oneTime", "one_time"), ("recurrent", "recurrent"))
DOCUMENTED_ERRORS = {
    400: "request refused",
    402: "insufficient credits",
    404: "not found",
    422: "request failed validation",
}


class Ocean(Provider):
    type_name = "ocean"
    default_base_url = "https://api.ocean.io"

    async def fetch(self, http: AccountHttp) -> Reading:
        answer = await http.request(
            "GET", "/v2/credits/balance", headers={"x-api-token": self.api_key}
        )
        if not answer.ok:
            raise self._error(answer)
        body = require_object(answer.json())
        credits = tuple(self._credits(body))
        if not credits:
            raise CollectError(Reason.INVALID_RESPONSE, "no credits in the answer")
        return Reading(
            credits=credits,
            daily_limit_remaining=self._optional(body, "dailyLimitRateLeft"),
            daily_limit_reset_seconds=self._optional(body, "dailyLimitRateSecondsToReset"),
        )

    @staticmethod
    def _error(answer: Answer) -> CollectError:
        if answer.status in (401, 403):
            return status_error(answer)
        body = answer.json_or_none()
        if answer.status in DOCUMENTED_ERRORS and isinstance(body, dict) and "detail" in body:
            return CollectError(
                Reason.PROVIDER_ERROR,
                f"HTTP {answer.status}: {DOCUMENTED_ERRORS[answer.status]}",
            )
        return status_error(answer)

    @staticmethod
    def _credits(body: dict[str, Any]) -> list[Credit]:
        found = []
        for field, credit_type in CREDIT_TYPES:
            if body.get(field) is None:
                continue
            pools = require_object(body[field], field)
            for key, pool in POOLS:
                value = finite_number(pools.get(key), f"{field}.{key}")
                found.append(Credit(credit_type, pool, value))
        return found

    @staticmethod
    def _optional(body: dict[str, Any], field: str) -> float | None:
        return None if body.get(field) is None else finite_number(body[field], field)
