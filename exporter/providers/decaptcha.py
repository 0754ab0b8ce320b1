"""DeCaptcha: GET `{base_url}/api/balance` with the key in `x-api-key`.

The answer is `{"isSuccess", "statusCode", "errorMessage", "data"}`; `data` is the balance
as a *string*, possibly with thousands separators (`"1,250.75"`) and, for an overdrawn
account, a minus sign (`"-3.50"`). `isSuccess: false` is an
error whose `statusCode` says which (401: invalid key). There is no public default host, so
`base_url` is required.

    apibalance_balance_usd{provider="decaptcha",account="main"} 1250.75
"""

from __future__ import annotations

from exporter.model import CollectError, Reading, Reason, numeric_string
from exporter.providers.base import Provider, require_object, status_error
from exporter.upstream import AccountHttp


class DeCaptcha(Provider):
    type_name = "decaptcha"
    service_names = ("DeCaptcha",)
    default_base_url = None
    # DeCaptcha's balance documentation: "to add funds ... contact our support team".
    top_up_url = "https://decaptcha.net/api/balance"

    async def fetch(self, http: AccountHttp) -> Reading:
        answer = await http.request("GET", "/api/balance", headers={"x-api-key": self.api_key})
        if answer.status in (401, 403):
            raise status_error(answer)
        body = answer.json_or_none() if not answer.ok else require_object(answer.json())
        if not isinstance(body, dict) or "isSuccess" not in body:
            if not answer.ok:
                raise status_error(answer)
            raise CollectError(Reason.INVALID_RESPONSE, "no isSuccess in the answer")
        if body["isSuccess"] is not True:
            if body["isSuccess"] is not False:
                raise CollectError(Reason.INVALID_RESPONSE, "isSuccess is not a boolean")
            code = body.get("statusCode")
            if code in (401, 403):
                raise CollectError(Reason.AUTH, f"key rejected (statusCode {code})")
            if code == 429:
                raise CollectError(Reason.RATE_LIMITED, "rate limited (statusCode 429)")
            shown = code if isinstance(code, int) and not isinstance(code, bool) else "unknown"
            raise CollectError(Reason.PROVIDER_ERROR, f"provider error (statusCode {shown})")
        if not answer.ok:
            raise status_error(answer)
        return Reading(balance_usd=numeric_string(body.get("data"), "data", minimum=None))
