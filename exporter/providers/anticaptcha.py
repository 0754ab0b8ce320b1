"""Anti-Captcha: getBalance, and getSpendingStats when `spending_stats` is on.

Anti-Captcha asks for no more than one balance call per 30 s, so `min_interval` holds the
last result (success or failure) for that long whatever `cache_ttl` says.

getSpendingStats returns up to 24 hourly records `{dateFrom, dateTill, volume, money}`. The
last *complete* hour is the record with the latest `dateTill` that has passed; the daily
figures sum the complete records. One call is made for the total (`queue="all"`) and one per
configured queue.

    apibalance_balance_usd{provider="anticaptcha",account="main"} 12.3456
    apibalance_credits{provider="anticaptcha",account="main",credit_type="captcha",pool="subscription"} 85000
    apibalance_hourly_spend_usd{provider="anticaptcha",account="main",queue="all"} 7.827058
    apibalance_daily_tasks{provider="anticaptcha",account="main",queue="Recaptcha Proxyless"} 51234
"""

from __future__ import annotations

import math
import time
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, field_validator

from exporter.model import CollectError, Credit, Reading, Reason, Reports, Spend, finite_number
from exporter.providers.antigate import AntigateProvider
from exporter.providers.base import all_or_nothing, require_object
from exporter.settings import AccountSettings, LabelValue, Strict
from exporter.upstream import AccountHttp

TOTAL_QUEUE = "all"
HOURS_PER_DAY = 24


class SpendingStatsSettings(Strict):
    queues: Annotated[list[LabelValue], Field(max_length=50)] = Field(default_factory=list)

    @field_validator("queues")
    @classmethod
    def _distinct_and_not_total(cls, queues: list[str]) -> list[str]:
        if TOTAL_QUEUE in queues:
            raise ValueError(f"'{TOTAL_QUEUE}' is the total and is always exported; remove it")
        if len(set(queues)) != len(queues):
            raise ValueError("queues must not repeat")
        return queues


def _spending_switch(value: object) -> object:
    """`true` is statistics for the total only, `false` none; a mapping chooses queues."""
    if value is True:
        return SpendingStatsSettings()
    if value is False or value is None:
        return None
    if not isinstance(value, dict | SpendingStatsSettings):
        raise ValueError("expected true, false or {queues: [...]}")
    return value


class AntiCaptchaSettings(AccountSettings):
    spending_stats: Annotated[SpendingStatsSettings | None, BeforeValidator(_spending_switch)] = (
        None
    )

    def spend_queues(self) -> list[str] | None:
        """Queues to ask statistics for (None when statistics are off); the total first."""
        if self.spending_stats is None:
            return None
        return [TOTAL_QUEUE, *self.spending_stats.queues]


def summarise_spending(queue: str, records: object, now: float) -> Spend:
    if not isinstance(records, list):
        raise CollectError(Reason.INVALID_RESPONSE, "spending stats data is not a list")
    complete: list[tuple[float, float, float]] = []
    for item in records:
        record = require_object(item, "spending record")
        till = finite_number(record.get("dateTill"), "dateTill")
        volume = finite_number(record.get("volume"), "volume")
        money = finite_number(record.get("money"), "money")
        if till <= now:
            complete.append((till, money, volume))
    complete.sort()
    day = complete[-HOURS_PER_DAY:]
    _, hour_money, hour_volume = day[-1] if day else (0.0, 0.0, 0.0)
    return Spend(
        queue=queue,
        hourly_spend_usd=hour_money,
        hourly_tasks=hour_volume,
        # fsum: a plain sum of 24 cent amounts shows float noise (14.723099999999999).
        daily_spend_usd=math.fsum(money for _, money, _ in day),
        daily_tasks=math.fsum(volume for _, _, volume in day),
    )


class AntiCaptcha(AntigateProvider):
    type_name = "anticaptcha"
    service_names = ("Anti-Captcha", "AntiCaptcha.com")
    default_base_url = "https://api.anti-captcha.com"
    # Anti-Captcha's "Add funds" page, in the client area its official clients send users to
    # to top up (https://github.com/anti-captcha/anticaptcha-npm); its docs give no address
    # for the page itself.
    top_up_url = "https://anti-captcha.com/clients/finance/refill"
    settings_model = AntiCaptchaSettings
    min_interval = 30.0

    @classmethod
    def reports(cls, settings: AccountSettings) -> Reports:
        return Reports(credits=(("captcha", "subscription"),))

    async def fetch(self, http: AccountHttp) -> Reading:
        assert isinstance(self.settings, AntiCaptchaSettings)
        queues = self.settings.spend_queues() or []
        balance, *stats = await all_or_nothing(
            self.call(http, "getBalance"),
            *(self.call(http, "getSpendingStats", **self._queue_filter(q)) for q in queues),
        )
        now = time.time()
        return Reading(
            balance_usd=self.read_balance(balance).balance_usd,
            credits=self._credits(balance),
            spend=tuple(
                summarise_spending(queue, answer.get("data"), now)
                for queue, answer in zip(queues, stats, strict=True)
            ),
        )

    @staticmethod
    def _queue_filter(queue: str) -> dict[str, Any]:
        return {} if queue == TOTAL_QUEUE else {"queue": queue}

    @staticmethod
    def _credits(data: dict[str, Any]) -> tuple[Credit, ...]:
        if data.get("captchaCredits") is None:
            return ()
        credits = finite_number(data["captchaCredits"], "captchaCredits")
        return (Credit("captcha", "subscription", credits),)
