"""The anti-captcha protocol family (Anti-Captcha, DataLabs, 2Captcha, CapSolver, CapMonster
Cloud): `POST /<type>/getBalance {"clientKey"}`, and Anti-Captcha's `getSpendingStats`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from exporter.demo.server import FakeServer, Fault, SimAccount, client_key, respond

ANTIGATE_TYPES = ("anticaptcha", "datalabs", "twocaptcha", "capsolver", "capmonster")
# CapMonster Cloud labels its JSON text/plain; the others say what it is.
CONTENT_TYPE = dict.fromkeys(ANTIGATE_TYPES, "application/json") | {"capmonster": "text/plain"}


@dataclass
class AntigateAccount(SimAccount):
    # anticaptcha
    captcha_credits: int | None = None
    spending: list[dict[str, Any]] | None = None  # fixed getSpendingStats records
    # Anti-Captcha's records are rolling hours, not clock hours: each starts this many seconds
    # past the hour (the documented example starts at :45:00; :57:30 is seen too).
    spending_phase: int = 45 * 60
    queue_shares: dict[str, float] = field(default_factory=dict)
    # capsolver
    packages: list[dict[str, Any]] | None = None


def install(server: FakeServer) -> None:
    fake = AntigateFake(server)
    for provider in ANTIGATE_TYPES:
        server.route("POST", f"/{provider}/getBalance", fake.balance)
    server.route("POST", "/anticaptcha/getSpendingStats", fake.spending_stats)


class AntigateFake:
    def __init__(self, server: FakeServer) -> None:
        self.server = server

    async def balance(self, request: web.Request) -> web.StreamResponse:
        provider = request.path.split("/")[1]
        key = await client_key(request)
        override = await self.server.seen(request, provider, key)
        if override is not None:
            return override
        status, body = balance_answer(self.server, provider, key)
        return web.json_response(body, status=status, content_type=CONTENT_TYPE[provider])

    async def spending_stats(self, request: web.Request) -> web.StreamResponse:
        key = await client_key(request)
        override = await self.server.seen(request, "anticaptcha", key)
        if override is not None:
            return override
        account = self.server.account("anticaptcha", key)
        if account is None:
            return web.json_response(BAD_KEY)
        payload = json.loads(await request.read())
        queue = payload.get("queue") if isinstance(payload, dict) else None
        return web.json_response({"errorId": 0, "data": self.spending_of(account, queue)})

    def spending_of(self, account: SimAccount, queue: str | None) -> list[dict[str, Any]]:
        if not isinstance(account, AntigateAccount):
            account = AntigateAccount(account.key, burn_per_hour=account.burn_per_hour)
        if account.spending is not None:
            return account.spending
        share = 1.0 if queue is None else account.queue_shares.get(queue, 0.0)
        now = int(self.server.clock())
        phase = account.spending_phase % 3600
        this_hour = now - (now - phase) % 3600
        records = []
        # 23 complete hours and the current one, which has not ended yet.
        for start in range(this_hour - 23 * 3600, this_hour + 1, 3600):
            wobble = 0.75 + 0.5 * ((start // 3600) * 7919 % 100) / 100
            money = round(account.burn_per_hour * share * wobble, 6)
            records.append(
                {
                    "dateFrom": start,
                    "dateTill": start + 3599,
                    "volume": int(money / 0.0015),
                    # An idle hour is the integer 0 in the real answers, not 0.0.
                    "money": money or 0,
                }
            )
        return records


def balance_answer(server: FakeServer, provider: str, key: str) -> tuple[int, dict[str, Any]]:
    """The status and JSON body `getBalance` answers this key (sent as `CONTENT_TYPE`)."""
    account = server.account(provider, key)
    if account is None:
        if provider == "capsolver":
            # CapSolver: 401 for a key it does not know, 400 for every other error
            # (https://docs.capsolver.com/en/guide/api-error/).
            return 401, {
                "errorId": 1,
                "errorCode": "ERROR_KEY_DENIED_ACCESS",
                "errorDescription": "Wrong account key",
            }
        return 200, BAD_KEY
    body: dict[str, Any] = {"errorId": 0, "balance": server.balance_of(account)}
    extra = account if isinstance(account, AntigateAccount) else AntigateAccount(key)
    if provider == "anticaptcha" and extra.captcha_credits is not None:
        body["captchaCredits"] = extra.captcha_credits
    if provider == "capsolver":
        body["packages"] = extra.packages or []
    return 200, body


BAD_KEY = {
    "errorId": 1,
    "errorCode": "ERROR_KEY_DOES_NOT_EXIST",
    "errorDescription": "Account authorization key not found in the system",
}


def capsolver_error(code: str, description: str, status: int = 400) -> Fault:
    """CapSolver's error answer: `errorId` 1 and the code, with HTTP 400 (or as given)."""
    return respond(status, {"errorId": 1, "errorCode": code, "errorDescription": description})


def capsolver_rate_limited() -> Fault:
    """CapSolver over its request rate: HTTP 429 with its JSON error body, no Retry-After."""
    return capsolver_error("ERROR_RATE_LIMIT", "Request frequency/rate limit", status=429)


def capsolver_key_temp_blocked() -> Fault:
    """CapSolver's temporary block after too many bad requests (lifted after 5 minutes)."""
    return capsolver_error(
        "ERROR_KEY_TEMP_BLOCKED",
        "Due to too many error requests, you have been blocked temporarily, "
        "and will be automatically unblocked in 5 minutes",
    )
