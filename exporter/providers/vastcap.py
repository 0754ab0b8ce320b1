"""VastCap: POST `/getBalance` `{"clientKey"}` under captcha.vast.sh/api/solver.

Success is `{"balance": 10.25}` with no `errorId`; errors are nested:
`{"error": {"errorId", "errorCode", "errorDescription"}}`, with HTTP 401 for a bad key.
The balance may be negative (an overdrawn account), as with every anti-captcha-style service.

    apibalance_balance_usd{provider="vastcap",account="main"} 10.25
"""

from __future__ import annotations

from exporter.model import CollectError, Reading, Reason, finite_number
from exporter.providers.antigate import error_for_code
from exporter.providers.base import Provider, require_object, status_error
from exporter.upstream import AccountHttp


class VastCap(Provider):
    type_name = "vastcap"
    service_names = ("VastCap",)
    default_base_url = "https://captcha.vast.sh/api/solver"
    # The way to "the VastCap Dashboard", where its docs say the balance is topped up
    # (https://docs.vast.sh/api-reference/account/get-balance).
    top_up_url = "https://vast.sh"

    async def fetch(self, http: AccountHttp) -> Reading:
        answer = await http.request("POST", "/getBalance", json_body={"clientKey": self.api_key})
        if answer.status in (401, 403):
            raise status_error(answer)
        if not answer.ok:
            raise nested_error(answer.json_or_none()) or status_error(answer)
        body = require_object(answer.json())
        error = nested_error(body)
        if error is not None:
            raise error
        if "balance" not in body:
            raise CollectError(Reason.INVALID_RESPONSE, "no balance in the answer")
        return Reading(balance_usd=finite_number(body["balance"], "balance", minimum=None))


def nested_error(body: object) -> CollectError | None:
    """The error documented as `{"error": {"errorCode": ...}}`, if the body is one."""
    if not isinstance(body, dict) or body.get("error") is None:
        return None
    return error_for_code(require_object(body["error"], "error").get("errorCode"))
