"""Thresholds on credits and daily limits, and which of them an account can ever be compared
with.

    low_credits:
      searches: 500              # all pools of the type together: pool="all"
      standard.recurrent: 1000   # one pool

A key names a credit type, or a type and one of its pools after a dot; credit types may hold
dots themselves, so a key is read against what the account's definition reports
(`Reports`), never split blindly. A threshold on something the account never reports would
never fire: the loader refuses it with a hint to the key that would.
"""

from __future__ import annotations

from dataclasses import dataclass

from exporter.hints import did_you_mean
from exporter.model import Reports

# The `pool` label of a threshold on every pool of a credit type together.
ALL_POOLS = "all"


@dataclass(frozen=True, slots=True)
class CreditThreshold:
    credit_type: str
    pool: str  # ALL_POOLS: the pools of the type added up
    below: float


def credit_series(key: str, reports: Reports) -> tuple[str, str] | None:
    """The (credit_type, pool) a `low_credits` key means for an account reporting this, or
    None if it means nothing the account reports."""
    if key in reports.credit_types:
        return key, ALL_POOLS
    credit_type, dot, pool = key.rpartition(".")
    if dot and (credit_type, pool) in reports.credits:
        return credit_type, pool
    if reports.pools_of_any_type:
        if not dot:
            return key, ALL_POOLS
        if pool in reports.pools_of_any_type and credit_type:
            return credit_type, pool
    return None


def unknown_credit_key(key: str, reports: Reports) -> str:
    """Why a `low_credits` key matches nothing the account reports, with what it does."""
    if not reports.any_credits:
        other = "low_balance" if reports.money else "low_daily_limit"
        return f"this account reports no credits; use {other} (it reports {reports.in_words()})"
    choices = [*reports.credit_types, *(f"{kind}.{pool}" for kind, pool in reports.credits)]
    if reports.pools_of_any_type:
        pools = ", ".join(reports.pools_of_any_type)
        return (
            f"no credit type or pool {key!r}{did_you_mean(key, choices)}: write a credit type, "
            f"or a type and one of its pools ({pools}) after a dot"
        )
    return (
        f"this account reports no credit type or pool {key!r}{did_you_mean(key, choices)}: "
        "write a credit type for all its pools together, or <credit_type>.<pool> (it reports "
        f"{reports.in_words()})"
    )


def money_threshold_problem(reports: Reports) -> str | None:
    """Why a threshold on money can never apply to an account reporting this, if it cannot."""
    if reports.money:
        return None
    if reports.any_credits:
        return (
            "this account reports credits, not money; use low_credits "
            f"(it reports {reports.in_words()})"
        )
    return f"this account reports no money; use low_daily_limit (it reports {reports.in_words()})"


def daily_limit_threshold_problem(reports: Reports) -> str | None:
    if reports.daily_limit:
        return None
    other = "low_credits" if reports.any_credits else "low_balance"
    return f"this account reports no daily limit; use {other} (it reports {reports.in_words()})"
