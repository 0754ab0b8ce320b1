"""DeCaptcha: `GET /decaptcha/api/balance` with `x-api-key`, the balance as a formatted string
inside its `{isSuccess, statusCode, errorMessage, data}` envelope."""

from __future__ import annotations

from aiohttp import web

from exporter.demo.server import FakeServer


def install(server: FakeServer) -> None:
    async def balance(request: web.Request) -> web.StreamResponse:
        key = request.headers.get("x-api-key", "")
        override = await server.seen(request, "decaptcha", key)
        if override is not None:
            return override
        account = server.account("decaptcha", key)
        if account is None:
            return web.json_response(
                {
                    "isSuccess": False,
                    "statusCode": 401,
                    "errorMessage": "Invalid API key",
                    "data": None,
                },
                status=401,
            )
        return web.json_response(
            {
                "isSuccess": True,
                "statusCode": 200,
                "errorMessage": None,
                "data": f"{server.balance_of(account):,.2f}",
            }
        )

    server.route("GET", "/decaptcha/api/balance", balance)
