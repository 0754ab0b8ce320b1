"""JMESPath functions for the arithmetic balance APIs need: limit minus used, cents to dollars.

    values:
      credits:
        - {credit_type: requests, pool: monthly, path: "subtract(requestLimit, requestCount)"}
      balance_usd: "divide(balance_cents, `100`)"

Arguments are JSON numbers or numeric strings (`"1,250.75"`, as `values` accepts them). A
missing or non-numeric argument, or a division by zero, makes the value `invalid_response`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jmespath import exceptions as jmespath_errors
from jmespath import functions

from exporter.model import CollectError, numeric_string

if TYPE_CHECKING:
    from jmespath.functions import _Signature

_NUMBER: _Signature = {"types": ["number", "string"]}


def _number(value: Any) -> float:
    if isinstance(value, str):
        try:
            return numeric_string(value, "an arithmetic argument", minimum=None)
        except CollectError:
            raise jmespath_errors.JMESPathError("not a number") from None
    return float(value)


class ArithmeticFunctions(functions.Functions):
    @functions.signature(_NUMBER, _NUMBER)
    def _func_add(self, left: Any, right: Any) -> float:
        return _number(left) + _number(right)

    @functions.signature(_NUMBER, _NUMBER)
    def _func_subtract(self, left: Any, right: Any) -> float:
        return _number(left) - _number(right)

    @functions.signature(_NUMBER, _NUMBER)
    def _func_multiply(self, left: Any, right: Any) -> float:
        return _number(left) * _number(right)

    @functions.signature(_NUMBER, _NUMBER)
    def _func_divide(self, left: Any, right: Any) -> float:
        divisor = _number(right)
        if divisor == 0:
            raise jmespath_errors.JMESPathError("division by zero")
        return _number(left) / divisor

    @functions.signature(_NUMBER)
    def _func_number(self, value: Any) -> float:
        """A numeric string (`"1,250.75"`) as a number, for use inside other expressions."""
        return _number(value)


FUNCTIONS = ArithmeticFunctions()
FUNCTION_TABLE: dict[str, Any] = FUNCTIONS.FUNCTION_TABLE
