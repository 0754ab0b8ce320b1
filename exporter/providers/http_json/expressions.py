"""The expressions of `values`, `error` and `login`: JMESPath, checked at load, run on a budget.

Besides JMESPath's own, an expression has the functions balance APIs need for arithmetic:
limit minus used, cents to dollars.

    values:
      credits:
        - {credit_type: requests, pool: monthly, path: "subtract(requestLimit, requestCount)"}
      balance_usd: "divide(balance_cents, `100`)"

Arguments are JSON numbers or numeric strings (`"1,250.75"`, as `values` accepts them). A
missing or non-numeric argument, or a division by zero, makes the value `invalid_response`.
`header('Name')` is a response header's value (the name is case-insensitive; null when the
answer has no such header), for services that report quota only in headers. Unknown
functions, wrong argument counts, a `header()` of anything but one quoted header name and multi-selects that multiply past `MAX_FAN_OUT`
are config errors; the work one answer's expressions may do is bounded by a `Budget`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any

import jmespath
from jmespath import exceptions as jmespath_errors
from jmespath import functions
from jmespath.parser import ParsedResult
from jmespath.visitor import TreeInterpreter
from pydantic import AfterValidator, Field

from exporter.model import CollectError, Reason, numeric_string
from exporter.trace import TRACE

if TYPE_CHECKING:
    from jmespath.functions import _Signature
    from jmespath.visitor import _TreeNode

MAX_EXPRESSION_CHARS = 1000
# Reads a response header; not a jmespath function, because its value is the answer's, not
# the document's: the interpreter answers it.
HEADER_FUNCTION = "header"
HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}\Z")
NO_HEADERS: Mapping[str, str] = {}
# `[a, b]` and `{x: a, y: b}` copy their input once per item; nested or chained, the copies
# multiply (`[@,@][]` twenty times over is a million values from one). An expression whose
# items multiply past this is refused at load.
MAX_FAN_OUT = 1000
# Work the expressions may do on one answer, in steps (a node visited, or a value put into a
# new list, object or string), so that no answer and config together can hold the event loop
# for long: some 50 ms at most, where reading a balance takes a few hundred steps.
MAX_EVALUATION_STEPS = 100_000
# Comparing or copying a string is a memcmp or memcpy: a step is this many characters of it.
STRING_CHARS_PER_STEP = 1024


# -- arithmetic -------------------------------------------------------------------------

_NUMBER: _Signature = {"types": ["number", "string"]}


def _number(value: Any) -> float:
    if isinstance(value, str):
        try:
            return numeric_string(value, "an arithmetic argument", minimum=None)
        except CollectError:
            raise jmespath_errors.JMESPathError("not a number") from None
    try:
        return float(value)
    except OverflowError:
        # An integer of hundreds of digits: as `values` reads one, too large to be finite; the
        # value read is then refused as not finite, like 1e999.
        return math.inf if value > 0 else -math.inf


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
_SEARCH_OPTIONS = jmespath.Options(custom_functions=FUNCTIONS)


# -- compilation ------------------------------------------------------------------------


def compile_expression(text: str) -> ParsedResult:
    """Compile a JMESPath expression, or raise ValueError saying what is wrong and where.

    Unknown functions and wrong argument counts are only found by jmespath when an answer is
    searched; they are checked here so they are config errors, not failed scrapes.
    """
    try:
        parsed = jmespath.compile(text)
    except jmespath_errors.EmptyExpressionError:
        raise ValueError("empty JMESPath expression") from None
    except jmespath_errors.IncompleteExpressionError:
        raise ValueError("incomplete JMESPath expression") from None
    except jmespath_errors.LexerError as error:
        raise ValueError(
            f"not a valid JMESPath expression: {error.message} at column {error.lexer_position}"
        ) from None
    except jmespath_errors.ParseError as error:
        token = (
            "end of expression" if error.token_type.lower() == "eof" else repr(error.token_value)
        )
        raise ValueError(
            f"not a valid JMESPath expression: unexpected {token} at column {error.lex_position}"
        ) from None
    except jmespath_errors.JMESPathError:
        raise ValueError("not a valid JMESPath expression") from None
    _check_functions(parsed.parsed)
    fan_out = _fan_out(parsed.parsed)
    if fan_out > MAX_FAN_OUT:
        raise ValueError(
            f"the multi-selects ([a, b] or {{x: a, y: b}}) multiply each value up to {fan_out} "
            f"times; at most {MAX_FAN_OUT} is allowed"
        )
    return parsed


def _fan_out(node: Any) -> int:
    """How many times over, at most, the expression's multi-selects repeat a value."""
    if not isinstance(node, dict):
        return 1
    fan_outs = [_fan_out(child) for child in node.get("children") or []]
    if node.get("type") in _SEQUENCES:
        # Each step works on every value the step before made.
        product = 1
        for fan_out in fan_outs:
            product *= fan_out
        return product
    # A multi-select makes one copy per item, a function one result from its arguments.
    return max(sum(fan_outs), 1)


# Nodes whose children run one after the other, each on the previous one's output.
_SEQUENCES = frozenset(
    {
        "subexpression",
        "pipe",
        "projection",
        "value_projection",
        "filter_projection",
        "flatten",
        "index_expression",
    }
)


def _check_functions(node: Any) -> None:
    if not isinstance(node, dict):
        return
    children = node.get("children") or []
    if node.get("type") == "function_expression" and node.get("value") == HEADER_FUNCTION:
        _check_header_call(children)
        return
    if node.get("type") == "function_expression":
        name = node.get("value")
        entry = FUNCTION_TABLE.get(name) if isinstance(name, str) else None
        if entry is None:
            raise ValueError(f"unknown JMESPath function {name}()")
        signature = entry["signature"]
        variadic = bool(signature) and signature[-1].get("variadic", False)
        if len(children) < len(signature) or (not variadic and len(children) > len(signature)):
            expected = f"{len(signature)}{' or more' if variadic else ''}"
            raise ValueError(
                f"JMESPath function {name}() takes {expected} argument(s), not {len(children)}"
            )
    for child in children:
        _check_functions(child)


def _check_header_call(arguments: list[Any]) -> None:
    # The name is fixed in the config, so a typo is found at load and not at every scrape.
    [name] = arguments if len(arguments) == 1 else [None]
    value = name.get("value") if isinstance(name, dict) and name.get("type") == "literal" else None
    if not isinstance(value, str) or not HEADER_NAME_RE.match(value):
        raise ValueError("header() takes one header name in quotes, like header('X-Credits-Left')")


def header_name(node: Any) -> str:
    """The header a checked `header(...)` call reads."""
    name: str = node["children"][0]["value"]
    return name


def _checked_expression(text: str) -> str:
    compile_expression(text)
    return text


Expression = Annotated[
    str,
    Field(min_length=1, max_length=MAX_EXPRESSION_CHARS),
    AfterValidator(_checked_expression),
]


# -- evaluation -------------------------------------------------------------------------


class _OverBudget(Exception):
    pass


class Budget:
    """The evaluation steps left for one answer, shared by all of its expressions."""

    def __init__(self, steps: int = MAX_EVALUATION_STEPS) -> None:
        self.steps_left = steps

    def spend(self, steps: int) -> None:
        self.steps_left -= steps
        if self.steps_left < 0:
            raise _OverBudget


class _BudgetedInterpreter(TreeInterpreter):
    """jmespath's interpreter, counting its work against a `Budget`.

    Evaluation runs on the event loop: without a bound, an answer large enough could keep
    every endpoint (`/-/healthy` too) waiting past the account's timeout.
    """

    def __init__(self, budget: Budget, headers: Mapping[str, str]) -> None:
        super().__init__(_SEARCH_OPTIONS)
        self._budget = budget
        self._headers = headers

    def visit_comparator(self, node: _TreeNode, value: Any) -> Any:
        """jmespath's comparison, charged by what it compares: Python's == walks two equal
        subtrees whole in what is one step of the tree walk."""
        operator = node["value"]
        left = self.visit(node["children"][0], value)
        right = self.visit(node["children"][1], value)
        if operator in _EQUALITY and type(left) is type(right) and _length(left) == _length(right):
            charge_size(self._budget, left)
        elif isinstance(left, str) and isinstance(right, str):
            self._budget.spend(min(len(left), len(right)) // STRING_CHARS_PER_STEP)
        compare = self.COMPARATOR_FUNC[operator]
        if operator in _EQUALITY:
            return compare(left, right)
        # Ordering is for numbers and strings only; anything else compares as null.
        return compare(left, right) if _ordered(left) and _ordered(right) else None

    def visit_function_expression(self, node: _TreeNode, value: Any) -> Any:
        name = node["value"]
        if name == HEADER_FUNCTION:
            return self._headers.get(header_name(node))
        arguments = [self.visit(child, value) for child in node["children"]]
        for argument in arguments:
            # contains() compares its subject with every item, to_string() writes it out.
            if name in _DEEP_FUNCTIONS:
                charge_size(self._budget, argument)
            elif isinstance(argument, list | dict):
                self._budget.spend(len(argument))
            elif isinstance(argument, str):
                self._budget.spend(len(argument) // STRING_CHARS_PER_STEP)
        return FUNCTIONS.call_function(name, arguments)

    def visit(self, node: _TreeNode, *args: Any, **kwargs: Any) -> Any:
        self._budget.spend(1)
        result = super().visit(node, *args, **kwargs)
        if node["type"] in _BUILDING_NODES and isinstance(result, list | dict | str):
            self._budget.spend(len(result))
        return result


# Functions whose work is the whole of their argument, however deeply nested.
_DEEP_FUNCTIONS = frozenset({"contains", "to_string"})


_EQUALITY = frozenset({"eq", "ne"})


def _ordered(value: Any) -> bool:
    return isinstance(value, int | float | str) and not isinstance(value, bool)


def _length(value: Any) -> int | None:
    return len(value) if isinstance(value, list | dict | str) else None


def charge_size(budget: Budget, value: Any) -> None:
    """Spend a step per value inside `value`, however deep, and one per STRING_CHARS_PER_STEP
    characters of each string: what comparing it or writing it out costs. The walk stops
    where the budget does, so it costs no more than the budget either."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            budget.spend(len(item))
            stack.extend(v for v in item.values() if isinstance(v, list | dict | str))
        elif isinstance(item, list):
            budget.spend(len(item))
            stack.extend(v for v in item if isinstance(v, list | dict | str))
        elif isinstance(item, str):
            budget.spend(len(item) // STRING_CHARS_PER_STEP)
        else:
            budget.spend(1)


# The nodes that make a new list, object or string, whose size is work done.
_BUILDING_NODES = frozenset(
    {
        "flatten",
        "projection",
        "value_projection",
        "filter_projection",
        "multi_select_list",
        "multi_select_dict",
        "function_expression",
        "slice",
    }
)


def is_true(value: Any) -> bool:
    """JMESPath's truth: null, false and empty strings, lists and objects are false; 0 is true."""
    return value is not None and value is not False and value not in ("", [], {})


def search(
    expression: ParsedResult,
    body: Any,
    what: str,
    budget: Budget,
    headers: Mapping[str, str] = NO_HEADERS,
) -> Any:
    """What `expression` finds in `body` (and, with `header()`, in the answer's `headers`)."""
    trace = TRACE.get()
    if trace is None:
        return _search(expression, body, what, budget, headers)
    try:
        result = _search(expression, body, what, budget, headers)
    except CollectError as error:
        trace.read(what, expression.expression, error=error.cause)
        raise
    trace.read(what, expression.expression, result)
    return result


def _search(
    expression: ParsedResult,
    body: Any,
    what: str,
    budget: Budget,
    headers: Mapping[str, str],
) -> Any:
    try:
        return _BudgetedInterpreter(budget, headers).visit(expression.parsed, body)
    except jmespath_errors.JMESPathError:
        # The message would quote the answer; say only which expression failed.
        raise CollectError(
            Reason.INVALID_RESPONSE, f"{what}: the expression does not apply to this answer"
        ) from None
    except OverflowError:
        # JMESPath's own avg() or sum() of integers of hundreds of digits.
        raise CollectError(
            Reason.INVALID_RESPONSE, f"{what}: a number in this answer is too large to compute"
        ) from None
    except _OverBudget:
        raise CollectError(
            Reason.INVALID_RESPONSE,
            f"{what}: reading this answer takes more than {MAX_EVALUATION_STEPS} steps",
        ) from None
