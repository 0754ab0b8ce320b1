"""VastCap: `POST /vastcap/getBalance {"clientKey"}` answers `{"balance"}`, a 401 for a key it
does not know."""

from __future__ import annotations

from aiohttp import web

from exporter.demo.server import FakeServer, client_key


def install(server: FakeServer) -> None:
    async def balance(request: web.Request) -> web.StreamResponse:
        key = await client_key(request)
        override = await server.seen(request, "vastcap", key)
        if override is not None:
            return override
        account = server.account("vastcap", key)
        if account is None:
            return web.json_response(
                {
                    "error": {
                        "errorId": 1,
                        "errorCode": "ERROR_KEY_DOES_NOT_EXIST",
                        "errorDescription": "Invalid API key",
                    }
                },
                status=401,
            )
        return web.json_response({"balance": server.balance_of(account)})

    server.route("POST", "/vastcap/getBalance", balance)
