"""Ocean.io: GET `/v2/credits/balance` with the key in the `x-api-token` header.

The API also takes `?apiToken=`, but a key in a URL ends up in proxy and server logs, so
only the header is used. The answer (`GetCreditBalanceResponse` in the OpenAPI schema at
https://api.ocean.io/openapi.json) has one object per credit type, each with `oneTime` and
`recurrent` pools (numbers, possibly fractional), and the daily request limit:

    {"credits": {"oneTime": 100, "recurrent": 100}, "emailCredits": {...},
     "phoneCredits": {...}, "previewCredits": {...},
     "dailyLimitRateLeft": 10, "dailyLimitRateSecondsToReset": 3600}

Every `<type>Credits` object is read, not just the four the schema lists today, so a type
Ocean adds later is exported without a release: `credits` is `credit_type="standard"`, and
`<type>Credits` is `<type>` in snake_case (`emailCredits` -> `email`, `previewCredits` ->
`preview`, `fooBarCredits` -> `foo_bar`). A field of another shape under such a name is left
alone; the documented four must be objects.

Errors are `{"detail": ...}` with 400 (conflicting tokens), 402 (insufficient credits),
403 (token missing or unknown), 404 and 422 (validation).

The request limits (60 a minute; 1,000 a day on self-serve plans,
https://app.ocean.io/docs/getting-started/rate-limiting) are shared with the user's real
work, and the balance call counts against them. An account without its own `cache_ttl`
therefore asks at most every 15 minutes (96 requests a day), even when `global.cache_ttl`
is shorter.

    apibalance_credits{provider="ocean",account="data",credit_type="email",pool="one_time"} 100
    apibalance_daily_limit_remaining{provider="ocean",account="data"} 10
    apibalance_daily_limit_reset_seconds{provider="ocean",account="data"} 3600
"""

from __future__ import annotations

import re
from typing import Any

from exporter.model import CollectError, Credit, Reading, Reason, Reports, finite_number
from exporter.providers.base import Provider, require_object, status_error
from exporter.settings import AccountSettings
from exporter.upstream import AccountHttp, Answer

STANDARD_FIELD = "credits"
# The types the schema documents; these must be objects. Others are read when they are.
DOCUMENTED_TYPES = frozenset({"credits", "emailCredits", "phoneCredits", "previewCredits"})
# `<type>Credits`: a camelCase type name, short enough to be a label value.
CREDIT_FIELD_RE = re.compile(r"^([a-z][A-Za-z0-9]{0,47})Credits\Z")
# A bound on the label values one answer can create.
MAX_CREDIT_TYPES = 16
POOLS = (("oneTime", "one_time"), ("recurrent", "recurrent"))
DOCUMENTED_ERRORS = {
    400: "request refused",
    402: "insufficient credits",
    404: "not found",
    422: "request failed validation",
}


class Ocean(Provider):
    type_name = "ocean"
    service_names = ("Ocean.io",)
    default_base_url = "https://api.ocean.io"
    # Ocean.io's app, where the plan and its credits are managed: the app's root, since its
    # docs name no billing page.
    top_up_url = "https://app.ocean.io"
    default_cache_ttl_floor = 15 * 60.0

    @classmethod
    def reports(cls, settings: AccountSettings) -> Reports:
        pools = tuple(pool for _, pool in POOLS)
        documented = sorted(filter(None, map(credit_type_of, DOCUMENTED_TYPES)))
        return Reports(
            money=False,
            credits=tuple((credit_type, pool) for credit_type in documented for pool in pools),
            # Every `<type>Credits` object of an answer is exported, types added later too.
            pools_of_any_type=pools,
            daily_limit=True,
        )

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
        types = 0
        for field, pools in body.items():
            credit_type = credit_type_of(field)
            if credit_type is None or pools is None:
                continue
            if field not in DOCUMENTED_TYPES and not isinstance(pools, dict):
                continue
            pools = require_object(pools, field)
            types += 1
            if types > MAX_CREDIT_TYPES:
                raise CollectError(
                    Reason.INVALID_RESPONSE, f"more than {MAX_CREDIT_TYPES} credit types"
                )
            for key, pool in POOLS:
                value = finite_number(pools.get(key), f"{field}.{key}")
                found.append(Credit(credit_type, pool, value))
        return found

    @staticmethod
    def _optional(body: dict[str, Any], field: str) -> float | None:
        return None if body.get(field) is None else finite_number(body[field], field)


def credit_type_of(field: str) -> str | None:
    """The `credit_type` label of an answer field, or None if it is not a credit type."""
    if field == STANDARD_FIELD:
        return "standard"
    match = CREDIT_FIELD_RE.match(field)
    if match is None:
        return None
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", match.group(1)).lower()
