"""Every provider against the simulator: the documented success shape, each documented error
shape, and the answers no document promises (HTML, wrong types, NaN, timeouts)."""

from __future__ import annotations

import gzip
import json
import time
import zlib
from typing import Any

import aiohttp
import pytest

from exporter.config import build_config
from exporter.demo import Fault, SimAccount, Simulator, delay, respond
from exporter.demo.antigate import (
    AntigateAccount,
    capsolver_key_temp_blocked,
    capsolver_rate_limited,
)
from exporter.engine import Engine, Snapshot
from exporter.model import Credit, Reason, Spend
from exporter.upstream import Upstream
from tests.faults import hang
from tests.helpers import FrozenClock, account

ANTIGATE = ("anticaptcha", "datalabs", "twocaptcha", "capsolver", "capmonster")
KEY = "sim-key-0123456789"


async def collect(
    simulator: Simulator,
    upstream: Upstream,
    provider: str,
    *faults: Fault,
    sim: SimAccount | None = None,
    key: str = KEY,
    **settings: Any,
) -> Snapshot:
    """One collection of one account of `provider`, after scripting `faults` for it."""
    simulated = sim or SimAccount(KEY, balance=12.5)
    simulator.add(provider, simulated.then(*faults))
    settings.setdefault("timeout", "2s")
    config = build_config(
        {"accounts": [account("acct", provider, key, simulator.base_url(provider), **settings)]},
        source="test",
    )
    [snapshot] = await Engine(config, upstream).collect()
    return snapshot


def reason_of(snapshot: Snapshot) -> Reason | None:
    return snapshot.outcome.reason


def raw(status: int, text: str, content_type: str = "application/json") -> Fault:
    return respond(status, text.encode(), content_type=content_type)


# -- the anti-captcha protocol ----------------------------------------------------------


@pytest.mark.parametrize("provider", ANTIGATE)
async def test_antigate_balance(simulator: Simulator, upstream: Upstream, provider: str) -> None:
    snapshot = await collect(simulator, upstream, provider)
    assert snapshot.outcome.ok
    assert snapshot.outcome.reading is not None
    assert snapshot.outcome.reading.balance_usd == 12.5
    [seen] = simulator.requests
    assert seen.method == "POST"
    assert seen.path == f"/{provider}/getBalance"
    assert json.loads(seen.body) == {"clientKey": KEY}
    assert KEY not in seen.query


@pytest.mark.parametrize("provider", ANTIGATE)
async def test_antigate_unknown_key_is_auth(
    simulator: Simulator, upstream: Upstream, provider: str
) -> None:
    snapshot = await collect(simulator, upstream, provider, key="not-a-known-key-000")
    assert reason_of(snapshot) is Reason.AUTH
    assert snapshot.outcome.reading is None
    assert snapshot.errors[Reason.AUTH] == 1


def antigate_error(code: str, status: int = 200) -> Fault:
    return respond(
        status, {"errorId": 1, "errorCode": code, "errorDescription": f"{code} happened"}
    )


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (antigate_error("ERROR_KEY_DOES_NOT_EXIST"), Reason.AUTH),
        (antigate_error("ERROR_IP_NOT_ALLOWED"), Reason.AUTH),
        (antigate_error("ERROR_KEY_DENIED_ACCESS", status=400), Reason.AUTH),
        (antigate_error("ERROR_IP_BLOCKED"), Reason.RATE_LIMITED),
        (antigate_error("ERROR_IP_BANNED", status=403), Reason.RATE_LIMITED),
        (antigate_error("ERROR_KEY_DOES_NOT_EXIST", status=401), Reason.AUTH),
        (antigate_error("ERROR_NO_SUCH_METHOD"), Reason.PROVIDER_ERROR),
        (antigate_error("ERROR_SERVICE_UNAVAILABLE", status=400), Reason.PROVIDER_ERROR),
        (respond(401, {"errorId": 1}), Reason.AUTH),
        (respond(403, "<html>Forbidden</html>"), Reason.AUTH),
        (respond(429, "slow down", headers={"Retry-After": "30"}), Reason.RATE_LIMITED),
        (respond(500, "<html><body>Internal Server Error</body></html>"), Reason.HTTP),
        (respond(404, "<html>Not Found</html>"), Reason.HTTP),
        (respond(200, "<html><body>maintenance</body></html>"), Reason.INVALID_RESPONSE),
        (raw(200, '{"errorId": 0, "balance": NaN}'), Reason.INVALID_RESPONSE),
        (raw(200, '{"errorId": 0, "balance": Infinity}'), Reason.INVALID_RESPONSE),
        (raw(200, '{"errorId": 0, "balance": 1e999}'), Reason.INVALID_RESPONSE),
        (respond(200, {"errorId": 0, "balance": "12.5"}), Reason.INVALID_RESPONSE),
        (respond(200, {"errorId": 0, "balance": True}), Reason.INVALID_RESPONSE),
        (respond(200, {"errorId": 0, "balance": None}), Reason.INVALID_RESPONSE),
        (respond(200, {"errorId": 0}), Reason.INVALID_RESPONSE),
        (respond(200, {"errorId": "0", "balance": 1}), Reason.INVALID_RESPONSE),
        (respond(200, [1, 2, 3]), Reason.INVALID_RESPONSE),
        (raw(200, ""), Reason.INVALID_RESPONSE),
        (raw(200, '{"errorId": 0, "balance": 1'), Reason.INVALID_RESPONSE),
    ],
)
async def test_antigate_errors(
    simulator: Simulator, upstream: Upstream, fault: Fault, reason: Reason
) -> None:
    snapshot = await collect(simulator, upstream, "capmonster", fault)
    assert reason_of(snapshot) is reason
    assert snapshot.outcome.reading is None
    assert snapshot.errors[reason] == 1
    assert sum(snapshot.errors.values()) == 1


# -- overdrawn accounts ----------------------------------------------------------------

MONEY_PROVIDERS = (*ANTIGATE, "vastcap", "decaptcha")


@pytest.mark.parametrize("provider", MONEY_PROVIDERS)
async def test_overdrawn_balance_is_exported(
    simulator: Simulator, upstream: Upstream, provider: str
) -> None:
    # Tasks in flight are charged after the money has run out; the account is overdrawn and
    # is exactly the one the low-balance alert must keep seeing.
    sim = SimAccount(KEY, balance=-0.0352)
    snapshot = await collect(simulator, upstream, provider, sim=sim)
    assert snapshot.outcome.ok, snapshot.outcome.error
    assert snapshot.outcome.reading is not None
    # DeCaptcha writes its balance as a string with two decimals ("-0.04").
    expected = -0.04 if provider == "decaptcha" else -0.0352
    assert snapshot.outcome.reading.balance_usd == expected


async def test_overdrawn_anticaptcha_answer_as_reported(
    simulator: Simulator, upstream: Upstream
) -> None:
    fault = raw(200, '{"errorId":0,"balance":-0.0352}')
    snapshot = await collect(simulator, upstream, "anticaptcha", fault)
    assert snapshot.outcome.reading is not None
    assert snapshot.outcome.reading.balance_usd == -0.0352


@pytest.mark.parametrize(
    ("provider", "fault"),
    [
        ("anticaptcha", respond(200, {"errorId": 0, "balance": 1.0, "captchaCredits": -1})),
        (
            "capsolver",
            respond(
                200,
                {"errorId": 0, "balance": 1.0, "packages": [{"numberOfCalls": -5, "status": 1}]},
            ),
        ),
        (
            "ocean",
            respond(200, {"credits": {"oneTime": -1, "recurrent": 1}, "dailyLimitRateLeft": 1}),
        ),
        (
            "ocean",
            respond(200, {"credits": {"oneTime": 1, "recurrent": 1}, "dailyLimitRateLeft": -1}),
        ),
    ],
)
async def test_negative_credits_and_limits_stay_invalid(
    simulator: Simulator, upstream: Upstream, provider: str, fault: Fault
) -> None:
    snapshot = await collect(simulator, upstream, provider, fault)
    assert reason_of(snapshot) is Reason.INVALID_RESPONSE


# -- temporary blocks -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "fault", "wait"),
    [
        ("capsolver", capsolver_key_temp_blocked(), 300.0),
        ("capsolver", antigate_error("ERROR_IP_BANNED", status=400), 600.0),
        ("capmonster", antigate_error("ERROR_IP_BANNED"), 600.0),
    ],
)
async def test_temporary_block_waits_for_its_documented_time(
    simulator: Simulator, upstream: Upstream, provider: str, fault: Fault, wait: float
) -> None:
    snapshot = await collect(simulator, upstream, provider, fault)
    assert reason_of(snapshot) is Reason.RATE_LIMITED
    assert snapshot.outcome.error is not None
    assert snapshot.outcome.error.retry_after == wait


async def test_temporarily_blocked_key_is_not_asked_again_for_five_minutes(
    simulator: Simulator, upstream: Upstream
) -> None:
    # Every request during the block extends it: a retry on each scrape would keep the key
    # blocked for as long as the exporter runs.
    clock = FrozenClock()
    simulator.add("capsolver", SimAccount(KEY, balance=3.0).then(capsolver_key_temp_blocked()))
    config = build_config(
        {
            "accounts": [
                account("acct", "capsolver", KEY, simulator.base_url("capsolver"), cache_ttl="0s")
            ]
        },
        source="test",
    )
    engine = Engine(config, upstream, clock)
    for step in (0, 60, 60, 60, 60, 59):
        clock.advance(step)
        [snapshot] = await engine.collect()
        assert reason_of(snapshot) is Reason.RATE_LIMITED
    assert simulator.calls[("capsolver", KEY)] == 1
    clock.advance(2)
    [snapshot] = await engine.collect()
    assert snapshot.outcome.ok
    assert simulator.calls[("capsolver", KEY)] == 2


async def test_capsolver_rate_limit_is_429_with_a_json_body(
    simulator: Simulator, upstream: Upstream
) -> None:
    snapshot = await collect(simulator, upstream, "capsolver", capsolver_rate_limited())
    assert reason_of(snapshot) is Reason.RATE_LIMITED


async def test_transient_failure_is_retried_within_the_budget(
    simulator: Simulator, upstream: Upstream
) -> None:
    snapshot = await collect(
        simulator, upstream, "datalabs", respond(503, "busy"), respond(502, "<html>bad</html>")
    )
    assert snapshot.outcome.ok
    assert simulator.calls[("datalabs", KEY)] == 3


async def test_persistent_503_is_http_after_retries(
    simulator: Simulator, upstream: Upstream
) -> None:
    snapshot = await collect(simulator, upstream, "datalabs", *[respond(503, "busy")] * 5)
    assert reason_of(snapshot) is Reason.HTTP
    assert simulator.calls[("datalabs", KEY)] == 3


async def test_hang_is_timeout(simulator: Simulator, upstream: Upstream) -> None:
    snapshot = await collect(simulator, upstream, "twocaptcha", hang(), timeout="300ms")
    assert reason_of(snapshot) is Reason.TIMEOUT


async def test_slow_but_in_time_is_fine(simulator: Simulator, upstream: Upstream) -> None:
    snapshot = await collect(simulator, upstream, "twocaptcha", delay(0.2), timeout="2s")
    assert snapshot.outcome.ok


async def test_connection_refused(upstream: Upstream) -> None:
    config = build_config(
        {"accounts": [account("acct", "datalabs", KEY, "http://127.0.0.1:9", timeout="2s")]},
        source="test",
    )
    [snapshot] = await Engine(config, upstream).collect()
    assert reason_of(snapshot) is Reason.CONNECTION


ANSWER = b'{"errorId": 0, "balance": 3.25}'


def _raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        pytest.param("gzip", gzip.compress(ANSWER), id="gzip"),
        pytest.param("x-gzip", gzip.compress(ANSWER), id="x-gzip"),
        # RFC 1952: a gzip body may be several members, one after the other.
        pytest.param("gzip", gzip.compress(ANSWER[:10]) + gzip.compress(ANSWER[10:]), id="members"),
        pytest.param("deflate", zlib.compress(ANSWER), id="deflate"),
        pytest.param("deflate", _raw_deflate(ANSWER), id="raw deflate"),
        pytest.param("identity", ANSWER, id="identity"),
    ],
)
async def test_a_compressed_answer_is_read(
    simulator: Simulator, upstream: Upstream, encoding: str, body: bytes
) -> None:
    answer = respond(200, body, headers={"Content-Encoding": encoding})
    snapshot = await collect(simulator, upstream, "datalabs", answer)
    assert snapshot.outcome.ok, snapshot.outcome.error
    assert snapshot.outcome.reading is not None
    assert snapshot.outcome.reading.balance_usd == 3.25


@pytest.mark.parametrize(
    ("encoding", "body", "detail"),
    [
        ("gzip", gzip.compress(ANSWER)[:-12], "gzip body ends before its stream does"),
        ("gzip", b"not gzip at all", "body is not valid gzip"),
        ("zstd", b"(\xb5/\xfd", "body in an encoding not asked for: zstd"),
        ("gzip, br", gzip.compress(ANSWER), "body in an encoding not asked for: gzip, br"),
    ],
)
async def test_a_broken_or_unasked_encoding_is_invalid(
    simulator: Simulator, upstream: Upstream, encoding: str, body: bytes, detail: str
) -> None:
    answer = respond(200, body, headers={"Content-Encoding": encoding})
    snapshot = await collect(simulator, upstream, "datalabs", answer)
    assert reason_of(snapshot) is Reason.INVALID_RESPONSE
    assert snapshot.outcome.error is not None
    assert snapshot.outcome.error.cause == detail


# -- anticaptcha ------------------------------------------------------------------------


async def test_anticaptcha_captcha_credits(simulator: Simulator, upstream: Upstream) -> None:
    sim = AntigateAccount(KEY, balance=12.3456, captcha_credits=85000)
    snapshot = await collect(simulator, upstream, "anticaptcha", sim=sim)
    reading = snapshot.outcome.reading
    assert reading is not None
    assert reading.balance_usd == 12.3456
    assert reading.credits == (Credit("captcha", "subscription", 85000.0),)
    assert reading.spend == ()
    assert [r.path for r in simulator.requests] == ["/anticaptcha/getBalance"]


async def test_anticaptcha_without_credits_exports_none(
    simulator: Simulator, upstream: Upstream
) -> None:
    snapshot = await collect(simulator, upstream, "anticaptcha")
    assert snapshot.outcome.reading is not None
    assert snapshot.outcome.reading.credits == ()


def hour_records(*moneys: float, last_till: int = 1_600_000_000) -> list[dict[str, Any]]:
    count = len(moneys)
    return [
        {
            "dateFrom": last_till - (count - i) * 3600 + 1,
            "dateTill": last_till - (count - 1 - i) * 3600,
            "volume": int(money * 100),
            "money": money,
        }
        for i, money in enumerate(moneys)
    ]


async def test_anticaptcha_spending_stats_total_and_queues(
    simulator: Simulator, upstream: Upstream
) -> None:
    # 26 complete hours (only the newest 24 count) and one hour still running.
    records = hour_records(*([1.0] * 2 + [0.5] * 23 + [2.25]))
    future = {"dateFrom": 4_000_000_000, "dateTill": 4_000_003_599, "volume": 99, "money": 99.0}
    sim = AntigateAccount(KEY, balance=5.0, spending=[future, *records])
    snapshot = await collect(
        simulator,
        upstream,
        "anticaptcha",
        sim=sim,
        spending_stats={"queues": ["Recaptcha Proxyless"]},
    )
    reading = snapshot.outcome.reading
    assert reading is not None
    expected = {
        "hourly_spend_usd": 2.25,
        "hourly_tasks": 225.0,
        "daily_spend_usd": 13.75,
        "daily_tasks": 1375.0,
    }
    assert reading.spend == (
        Spend("all", **expected),
        Spend("Recaptcha Proxyless", **expected),
    )
    bodies = [json.loads(r.body) for r in simulator.requests if r.path.endswith("SpendingStats")]
    assert {b.get("queue") for b in bodies} == {None, "Recaptcha Proxyless"}
    assert all(b["clientKey"] == KEY for b in bodies)


async def test_anticaptcha_spending_stats_true_is_total_only(
    simulator: Simulator, upstream: Upstream
) -> None:
    sim = AntigateAccount(KEY, balance=5.0, spending=[])
    snapshot = await collect(simulator, upstream, "anticaptcha", sim=sim, spending_stats=True)
    assert snapshot.outcome.reading is not None
    assert snapshot.outcome.reading.spend == (Spend("all", 0.0, 0.0, 0.0, 0.0),)


@pytest.mark.parametrize(
    "payload",
    [
        {"errorId": 0, "data": "nope"},
        {"errorId": 0, "data": [{"dateTill": 1, "volume": 1}]},
        {"errorId": 0, "data": [{"dateTill": 1, "volume": 1, "money": "1.0"}]},
        {"errorId": 0, "data": [7]},
    ],
)
async def test_anticaptcha_bad_spending_stats_fail_the_collection(
    simulator: Simulator, upstream: Upstream, payload: dict[str, Any]
) -> None:
    sim = SimAccount(KEY, balance=5.0)
    simulator.add("anticaptcha", sim)

    async def stats_only(request: Any) -> Any:
        return await respond(200, payload)(request) if request.path.endswith("Stats") else None

    sim.chaos.append((1.0, stats_only))
    snapshot = await collect(simulator, upstream, "anticaptcha", sim=sim, spending_stats=True)
    assert reason_of(snapshot) is Reason.INVALID_RESPONSE
    assert snapshot.outcome.reading is None


# -- capsolver --------------------------------------------------------------------------


async def test_capsolver_packages(simulator: Simulator, upstream: Upstream) -> None:
    packages = [
        {
            "packageId": "a",
            "type": 2,
            "title": "v2 500K",
            "numberOfCalls": 1000,
            "status": 1,
            "token": "CAP-SECRET-A",
            "expireTime": 4102444800,
        },
        {
            "packageId": "b",
            "type": 1,
            "title": "expired",
            "numberOfCalls": 500,
            "status": 1,
            "token": "CAP-SECRET-B",
            "expireTime": 1702896511,
        },
        {
            "packageId": "c",
            "type": 1,
            "title": "inactive",
            "numberOfCalls": 700,
            "status": 0,
            "token": "CAP-SECRET-C",
            "expireTime": 4102444800,
        },
        {"packageId": "d", "type": 1, "title": "no expiry", "numberOfCalls": 250, "status": 1},
    ]
    sim = AntigateAccount(KEY, balance=71.5, packages=packages)
    snapshot = await collect(simulator, upstream, "capsolver", sim=sim)
    reading = snapshot.outcome.reading
    assert reading is not None
    assert reading.balance_usd == 71.5
    assert reading.credits == (Credit("captcha", "package", 1250.0),)


async def test_capsolver_without_packages_exports_no_credits(
    simulator: Simulator, upstream: Upstream
) -> None:
    snapshot = await collect(simulator, upstream, "capsolver")
    assert snapshot.outcome.reading is not None
    assert snapshot.outcome.reading.credits == ()


@pytest.mark.parametrize(
    "packages",
    ["none", [{"numberOfCalls": "10", "status": 1}], [{"numberOfCalls": float("nan")}], [3]],
)
async def test_capsolver_bad_packages(
    simulator: Simulator, upstream: Upstream, packages: object
) -> None:
    text = json.dumps({"errorId": 0, "balance": 1.0, "packages": packages})
    snapshot = await collect(simulator, upstream, "capsolver", raw(200, text))
    assert reason_of(snapshot) is Reason.INVALID_RESPONSE


# -- vastcap ----------------------------------------------------------------------------


async def test_vastcap_balance(simulator: Simulator, upstream: Upstream) -> None:
    snapshot = await collect(simulator, upstream, "vastcap", sim=SimAccount(KEY, balance=10.25))
    assert snapshot.outcome.reading is not None
    assert snapshot.outcome.reading.balance_usd == 10.25
    [seen] = simulator.requests
    assert (seen.method, seen.path) == ("POST", "/vastcap/getBalance")
    assert json.loads(seen.body) == {"clientKey": KEY}


def vast_error(code: str, status: int) -> Fault:
    return respond(
        status, {"error": {"errorId": 1, "errorCode": code, "errorDescription": "described"}}
    )


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (vast_error("ERROR_KEY_DOES_NOT_EXIST", 401), Reason.AUTH),
        (vast_error("ERROR_KEY_DOES_NOT_EXIST", 200), Reason.AUTH),
        (vast_error("ERROR_ACCOUNT_DISABLED", 400), Reason.AUTH),
        (vast_error("ERROR_SOMETHING_ELSE", 400), Reason.PROVIDER_ERROR),
        (vast_error("ERROR_SOMETHING_ELSE", 200), Reason.PROVIDER_ERROR),
        (respond(200, {"error": "flat string"}), Reason.INVALID_RESPONSE),
        (respond(200, {"balance": "10.25"}), Reason.INVALID_RESPONSE),
        (respond(200, {"credit": 10.25}), Reason.INVALID_RESPONSE),
        (respond(500, "<html>oops</html>"), Reason.HTTP),
        (respond(401, "<html>who?</html>"), Reason.AUTH),
    ],
)
async def test_vastcap_errors(
    simulator: Simulator, upstream: Upstream, fault: Fault, reason: Reason
) -> None:
    snapshot = await collect(simulator, upstream, "vastcap", fault)
    assert reason_of(snapshot) is reason


async def test_vastcap_unknown_key(simulator: Simulator, upstream: Upstream) -> None:
    snapshot = await collect(simulator, upstream, "vastcap", key="unknown-key-000000")
    assert reason_of(snapshot) is Reason.AUTH


# -- decaptcha --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "balance"),
    [("1250.75", 1250.75), ("1,250.75", 1250.75), ("12,345,678.5", 12345678.5), ("0", 0.0)],
)
async def test_decaptcha_balance_strings(
    simulator: Simulator, upstream: Upstream, data: str, balance: float
) -> None:
    ok = {"isSuccess": True, "statusCode": 200, "errorMessage": None, "data": data}
    snapshot = await collect(simulator, upstream, "decaptcha", respond(200, ok))
    assert snapshot.outcome.reading is not None
    assert snapshot.outcome.reading.balance_usd == balance


async def test_decaptcha_sends_the_key_in_a_header(
    simulator: Simulator, upstream: Upstream
) -> None:
    snapshot = await collect(simulator, upstream, "decaptcha", sim=SimAccount(KEY, balance=1250.75))
    assert snapshot.outcome.reading is not None
    assert snapshot.outcome.reading.balance_usd == 1250.75
    [seen] = simulator.requests
    assert (seen.method, seen.path, seen.query) == ("GET", "/decaptcha/api/balance", "")
    assert seen.headers["x-api-key"] == KEY
    assert seen.body == b""


def decaptcha(status: int, **body: Any) -> Fault:
    base = {"isSuccess": False, "statusCode": status, "errorMessage": "failed", "data": None}
    return respond(status, {**base, **body})


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (decaptcha(401, errorMessage="Invalid API key"), Reason.AUTH),
        (decaptcha(200, statusCode=401), Reason.AUTH),
        (decaptcha(500, errorMessage="Internal server error"), Reason.PROVIDER_ERROR),
        (decaptcha(200, statusCode=429), Reason.RATE_LIMITED),
        (decaptcha(200, isSuccess=True, data="abc"), Reason.INVALID_RESPONSE),
        (decaptcha(200, isSuccess=True, data="NaN"), Reason.INVALID_RESPONSE),
        (decaptcha(200, isSuccess=True, data="inf"), Reason.INVALID_RESPONSE),
        (decaptcha(200, isSuccess=True, data=None), Reason.INVALID_RESPONSE),
        (decaptcha(200, isSuccess=True, data=12.5), Reason.INVALID_RESPONSE),
        (decaptcha(200, isSuccess="yes", data="1"), Reason.INVALID_RESPONSE),
        (respond(200, {"data": "1"}), Reason.INVALID_RESPONSE),
        (respond(500, "<html>Internal Server Error</html>"), Reason.HTTP),
        (respond(200, "<!DOCTYPE html><html></html>"), Reason.INVALID_RESPONSE),
    ],
)
async def test_decaptcha_errors(
    simulator: Simulator, upstream: Upstream, fault: Fault, reason: Reason
) -> None:
    snapshot = await collect(simulator, upstream, "decaptcha", fault)
    assert reason_of(snapshot) is reason


async def test_decaptcha_unknown_key(simulator: Simulator, upstream: Upstream) -> None:
    snapshot = await collect(simulator, upstream, "decaptcha", key="unknown-key-000000")
    assert reason_of(snapshot) is Reason.AUTH


# -- ocean ------------------------------------------------------------------------------

OCEAN_OK = {
    "credits": {"oneTime": 100, "recurrent": 200},
    "emailCredits": {"oneTime": 30, "recurrent": 40},
    "phoneCredits": {"oneTime": 5, "recurrent": 6},
    "dailyLimitRateLeft": 10,
    "dailyLimitRateSecondsToReset": 3600,
}


async def test_ocean_credits_and_daily_limit(simulator: Simulator, upstream: Upstream) -> None:
    snapshot = await collect(simulator, upstream, "ocean", respond(200, OCEAN_OK))
    reading = snapshot.outcome.reading
    assert reading is not None
    assert reading.balance_usd is None
    assert reading.credits == (
        Credit("standard", "one_time", 100.0),
        Credit("standard", "recurrent", 200.0),
        Credit("email", "one_time", 30.0),
        Credit("email", "recurrent", 40.0),
        Credit("phone", "one_time", 5.0),
        Credit("phone", "recurrent", 6.0),
    )
    assert reading.daily_limit_remaining == 10.0
    assert reading.daily_limit_reset_seconds == 3600.0


async def test_ocean_preview_credits(simulator: Simulator, upstream: Upstream) -> None:
    # The fourth type of the current schema, in the simulator's default answer too.
    snapshot = await collect(simulator, upstream, "ocean", sim=SimAccount(KEY))
    reading = snapshot.outcome.reading
    assert reading is not None
    assert [c for c in reading.credits if c.credit_type == "preview"] == [
        Credit("preview", "one_time", 0.0),
        Credit("preview", "recurrent", 300.0),
    ]


async def test_ocean_reads_every_credit_type_generically(
    simulator: Simulator, upstream: Upstream
) -> None:
    body = {
        **OCEAN_OK,
        "previewCredits": {"oneTime": 12.5, "recurrent": 0.25},
        "fooBarCredits": {"oneTime": 1, "recurrent": 2.75},
        "xCredits": {"oneTime": 0, "recurrent": 9},
        # Not credit objects: left alone rather than failing the account.
        "totalCredits": 1234,
        "Credits": {"oneTime": 1, "recurrent": 1},
        "creditsUsed": {"oneTime": 1, "recurrent": 1},
        "lateCredits": None,
    }
    snapshot = await collect(simulator, upstream, "ocean", respond(200, body))
    reading = snapshot.outcome.reading
    assert reading is not None
    assert [(c.credit_type, c.pool, c.value) for c in reading.credits[6:]] == [
        ("preview", "one_time", 12.5),
        ("preview", "recurrent", 0.25),
        ("foo_bar", "one_time", 1.0),
        ("foo_bar", "recurrent", 2.75),
        ("x", "one_time", 0.0),
        ("x", "recurrent", 9.0),
    ]


@pytest.mark.parametrize(
    "body",
    [
        {**OCEAN_OK, "previewCredits": [1, 2]},
        {**OCEAN_OK, "previewCredits": {"oneTime": "1", "recurrent": 2}},
        {**OCEAN_OK, "newCredits": {"oneTime": 1}},
        {**OCEAN_OK, "newCredits": {"oneTime": -1, "recurrent": 1}},
        {f"type{i}Credits": {"oneTime": 1, "recurrent": 1} for i in range(17)},
    ],
    ids=["documented type not an object", "string", "pool missing", "negative", "17 types"],
)
async def test_ocean_bad_credit_types(
    simulator: Simulator, upstream: Upstream, body: dict[str, Any]
) -> None:
    snapshot = await collect(simulator, upstream, "ocean", respond(200, body))
    assert reason_of(snapshot) is Reason.INVALID_RESPONSE


@pytest.mark.parametrize(
    ("global_ttl", "account_ttl", "expected"),
    [
        (None, None, 900.0),  # the built-in 60 s would be 1,440 requests a day
        ("60s", None, 900.0),  # a blanket global value does not apply below the floor
        ("1h", None, 3600.0),  # a longer global value is kept
        (None, "0s", 0.0),  # the account's own value wins, even shorter
        ("1h", "2m", 120.0),
    ],
)
def test_ocean_default_cache_ttl(
    global_ttl: str | None, account_ttl: str | None, expected: float
) -> None:
    settings = {} if account_ttl is None else {"cache_ttl": account_ttl}
    config = build_config(
        {
            "global": {} if global_ttl is None else {"cache_ttl": global_ttl},
            "accounts": [
                account("data", "ocean", KEY, "http://127.0.0.1:9", **settings),
                account("solver", "capmonster", KEY, "http://127.0.0.1:9", **settings),
            ],
        },
        source="test",
    )
    ocean, capmonster = config.accounts
    assert ocean.cache_ttl == expected
    # Other providers keep the plain rule: the account's value, else the global one.
    plain = {None: 60.0, "60s": 60.0, "1h": 3600.0}[global_ttl]
    assert capmonster.cache_ttl == (expected if account_ttl is not None else plain)


async def test_ocean_key_only_in_the_header(simulator: Simulator, upstream: Upstream) -> None:
    snapshot = await collect(simulator, upstream, "ocean", sim=SimAccount(KEY))
    assert snapshot.outcome.ok
    [seen] = simulator.requests
    assert (seen.method, seen.path, seen.query) == ("GET", "/ocean/v2/credits/balance", "")
    assert seen.headers["x-api-token"] == KEY
    assert "apiToken" not in seen.query


async def test_ocean_missing_daily_fields_are_not_invented(
    simulator: Simulator, upstream: Upstream
) -> None:
    body = {"credits": {"oneTime": 1, "recurrent": 2}, "dailyLimitRateLeft": None}
    snapshot = await collect(simulator, upstream, "ocean", respond(200, body))
    reading = snapshot.outcome.reading
    assert reading is not None
    assert reading.daily_limit_remaining is None
    assert reading.daily_limit_reset_seconds is None
    assert len(reading.credits) == 2


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (
            respond(403, {"detail": "Current API token is not registered in our database"}),
            Reason.AUTH,
        ),
        (
            respond(403, {"detail": "API token should be provided in headers or query parameters"}),
            Reason.AUTH,
        ),
        (
            respond(
                400, {"detail": "Conflicting API tokens provided in query parameters and headers"}
            ),
            Reason.PROVIDER_ERROR,
        ),
        (respond(402, {"detail": "Insufficient email credits"}), Reason.PROVIDER_ERROR),
        (
            respond(422, {"detail": [{"loc": ["header"], "msg": "bad", "type": "value_error"}]}),
            Reason.PROVIDER_ERROR,
        ),
        (respond(404, b""), Reason.HTTP),
        (respond(401, {"detail": "no"}), Reason.AUTH),
        (respond(500, "<html>error</html>"), Reason.HTTP),
        (respond(200, {"dailyLimitRateLeft": 3}), Reason.INVALID_RESPONSE),
        (
            respond(200, {**OCEAN_OK, "credits": {"oneTime": "100", "recurrent": 1}}),
            Reason.INVALID_RESPONSE,
        ),
        (respond(200, {**OCEAN_OK, "credits": [100, 200]}), Reason.INVALID_RESPONSE),
        (respond(200, {**OCEAN_OK, "dailyLimitRateLeft": "ten"}), Reason.INVALID_RESPONSE),
        (raw(200, json.dumps(OCEAN_OK).replace("3600", "NaN")), Reason.INVALID_RESPONSE),
        (respond(429, {"detail": "slow"}, headers={"Retry-After": "5"}), Reason.RATE_LIMITED),
    ],
)
async def test_ocean_errors(
    simulator: Simulator, upstream: Upstream, fault: Fault, reason: Reason
) -> None:
    snapshot = await collect(simulator, upstream, "ocean", fault)
    assert reason_of(snapshot) is reason


async def test_ocean_unknown_token(simulator: Simulator, upstream: Upstream) -> None:
    snapshot = await collect(simulator, upstream, "ocean", key="unknown-token-0000")
    assert reason_of(snapshot) is Reason.AUTH


# -- the simulator answers as the services do -------------------------------------------


async def post_json(url: str, body: dict[str, Any]) -> tuple[int, str, Any]:
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as response:
        return response.status, response.content_type, json.loads(await response.read())


async def test_simulated_capsolver_rejects_a_bad_key_with_401(simulator: Simulator) -> None:
    status, _, body = await post_json(
        simulator.base_url("capsolver") + "/getBalance", {"clientKey": "unknown-key-000000"}
    )
    assert status == 401
    assert body["errorId"] == 1
    assert body["errorCode"] == "ERROR_KEY_DENIED_ACCESS"


async def test_simulated_capmonster_labels_its_json_text_plain(
    simulator: Simulator, upstream: Upstream
) -> None:
    simulator.add("capmonster", SimAccount(KEY, balance=4.5))
    status, content_type, body = await post_json(
        simulator.base_url("capmonster") + "/getBalance", {"clientKey": KEY}
    )
    assert (status, content_type, body) == (200, "text/plain", {"errorId": 0, "balance": 4.5})
    snapshot = await collect(simulator, upstream, "capmonster", sim=SimAccount(KEY, balance=4.5))
    assert snapshot.outcome.reading is not None
    assert snapshot.outcome.reading.balance_usd == 4.5


@pytest.mark.parametrize(("phase", "offset"), [(45 * 60, 2700), (57 * 60 + 30, 3450)])
async def test_simulated_spending_records_are_rolling_hours(phase: int, offset: int) -> None:
    now = 1_700_000_000.0  # 22:13:20 UTC
    simulator = Simulator(clock=lambda: now)
    await simulator.start()
    try:
        simulator.add("anticaptcha", AntigateAccount(KEY, spending_phase=phase))
        idle = AntigateAccount("idle-key-00000000", spending_phase=phase)
        simulator.add("anticaptcha", idle)
        url = simulator.base_url("anticaptcha") + "/getSpendingStats"
        _, _, busy_body = await post_json(url, {"clientKey": KEY})
        _, _, idle_body = await post_json(url, {"clientKey": idle.key})
    finally:
        await simulator.stop()
    records = busy_body["data"]
    assert len(records) == 24
    assert all(r["dateFrom"] % 3600 == offset for r in records)
    assert all(r["dateTill"] == r["dateFrom"] + 3599 for r in records)
    assert records[-1]["dateFrom"] <= now < records[-1]["dateTill"]
    # No burn: every hour spent nothing, written as the integer 0.
    assert all(type(r["money"]) is int and r["money"] == 0 for r in idle_body["data"])


async def test_anticaptcha_reads_rolling_hours_and_integer_money(
    simulator: Simulator, upstream: Upstream
) -> None:
    # The provider compares dateTill with the wall clock.
    now = int(time.time())
    records = [
        {"dateFrom": start, "dateTill": start + 3599, "volume": volume, "money": money}
        for start, volume, money in [
            (now - 2 * 3600 - 150, 0, 0),
            (now - 3600 - 150, 3, 0.0045),
            (now - 150, 7, 0.0105),  # still running
        ]
    ]
    sim = AntigateAccount(KEY, balance=1.0, spending=records)
    simulator.add("anticaptcha", sim)
    config = build_config(
        {
            "accounts": [
                account(
                    "acct",
                    "anticaptcha",
                    KEY,
                    simulator.base_url("anticaptcha"),
                    spending_stats=True,
                )
            ]
        },
        source="test",
    )
    [snapshot] = await Engine(config, upstream).collect()
    assert snapshot.outcome.reading is not None
    assert snapshot.outcome.reading.spend == (Spend("all", 0.0045, 3.0, 0.0045, 3.0),)
