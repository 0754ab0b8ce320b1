"""CapSolver: the anti-captcha protocol at api.capsolver.com, plus prepaid `packages`.

Errors (https://docs.capsolver.com/en/guide/api-error/) come with HTTP 400, a bad key with
401. `ERROR_KEY_TEMP_BLOCKED` (too many bad requests; "unblocked in 5 minutes") and
`ERROR_IP_BANNED` (the IP is blocked for 10 minutes) are waited out as `rate_limited`:
asking again meanwhile only extends the block.

Each package has `numberOfCalls` left, a `status` (1 is active) and an `expireTime` (unix
seconds). The calls left in active, unexpired packages are exported as captcha credits;
package titles and tokens are provider text and never become labels.

    apibalance_balance_usd{provider="capsolver",account="main"} 1071.5
    apibalance_credits{provider="capsolver",account="main",credit_type="captcha",pool="package"} 500000
"""

from __future__ import annotations

import time
from types import MappingProxyType
from typing import Any

from exporter.model import CollectError, Credit, Reading, Reason, Reports, finite_number
from exporter.providers.antigate import AntigateProvider
from exporter.providers.base import require_object
from exporter.settings import AccountSettings

ACTIVE_STATUS = 1


def package_calls_left(packages: object, now: float) -> float:
    if not isinstance(packages, list):
        raise CollectError(Reason.INVALID_RESPONSE, "packages is not a list")
    total = 0.0
    for item in packages:
        package = require_object(item, "package")
        calls = finite_number(package.get("numberOfCalls"), "package numberOfCalls")
        expires = package.get("expireTime")
        expired = expires is not None and finite_number(expires, "package expireTime") <= now
        if package.get("status") == ACTIVE_STATUS and not expired:
            total += calls
    return total


class CapSolver(AntigateProvider):
    type_name = "capsolver"
    service_names = ("CapSolver",)
    default_base_url = "https://api.capsolver.com"
    # CapSolver's dashboard, where the balance is recharged: its docs link the dashboard for
    # the account key (https://docs.capsolver.com/en/guide/api-getbalance) and name no
    # billing page.
    top_up_url = "https://dashboard.capsolver.com/dashboard/overview"
    temporary_blocks = MappingProxyType(
        {"ERROR_KEY_TEMP_BLOCKED": 5 * 60.0, "ERROR_IP_BANNED": 10 * 60.0}
    )

    @classmethod
    def reports(cls, settings: AccountSettings) -> Reports:
        return Reports(credits=(("captcha", "package"),))

    def read_balance(self, data: dict[str, Any]) -> Reading:
        reading = super().read_balance(data)
        packages = data.get("packages")
        # No packages bought is not "zero credits left": exporting 0 would page people who
        # never use packages.
        if not packages:
            return reading
        calls = package_calls_left(packages, time.time())
        return Reading(
            balance_usd=reading.balance_usd,
            credits=(Credit("captcha", "package", calls),),
        )
