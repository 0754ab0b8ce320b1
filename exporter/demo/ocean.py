"""Ocean.io: `GET /ocean/v2/credits/balance` with the token in `x-api-token` or `apiToken`,
credit pools and the daily request limit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from exporter.demo.server import FakeServer, SimAccount


@dataclass
class OceanAccount(SimAccount):
    # credit field -> {"oneTime": n, "recurrent": n}
    credits: dict[str, dict[str, float]] | None = None
    daily_limit: int = 1000


DEFAULT_CREDITS: dict[str, dict[str, float]] = {
    "credits": {"oneTime": 5000, "recurrent": 20000},
    "emailCredits": {"oneTime": 800, "recurrent": 2000},
    "phoneCredits": {"oneTime": 50, "recurrent": 100},
    "previewCredits": {"oneTime": 0, "recurrent": 300},
}


def install(server: FakeServer) -> None:
    def answer(account: SimAccount) -> dict[str, Any]:
        if not isinstance(account, OceanAccount):
            account = OceanAccount(account.key, burn_per_hour=account.burn_per_hour)
        used = int(server.hours_elapsed() * account.burn_per_hour)
        body: dict[str, Any] = {
            name: {
                pool: max(0, value - (used if name == "credits" else 0))
                for pool, value in pools.items()
            }
            for name, pools in (account.credits or DEFAULT_CREDITS).items()
        }
        body["dailyLimitRateLeft"] = max(
            0, account.daily_limit - server.calls[("ocean", account.key)]
        )
        body["dailyLimitRateSecondsToReset"] = int(86400 - server.clock() % 86400)
        return body

    async def balance(request: web.Request) -> web.StreamResponse:
        header = request.headers.get("x-api-token")
        query = request.query.get("apiToken")
        key = header or query or ""
        override = await server.seen(request, "ocean", key)
        if override is not None:
            return override
        if header and query and header != query:
            return web.json_response(
                {"detail": "Conflicting API tokens provided in query parameters and headers"},
                status=400,
            )
        if not key:
            return web.json_response(
                {"detail": "API token should be provided in headers or query parameters"},
                status=403,
            )
        account = server.account("ocean", key)
        if account is None:
            return web.json_response(
                {"detail": "Current API token is not registered in our database"}, status=403
            )
        return web.json_response(answer(account))

    server.route("GET", "/ocean/v2/credits/balance", balance)
