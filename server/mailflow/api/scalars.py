"""Custom scalars of the schema."""

from __future__ import annotations

import datetime
import json
import math
import re
from typing import Any, NewType

import strawberry
from graphql import GraphQLError, IntValueNode, StringValueNode, ValueNode, print_ast
from strawberry.types.scalar import ScalarDefinition

Long = NewType("Long", int)

LONG_MIN = -(2**63)
LONG_MAX = 2**63 - 1

CALENDAR_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
LONGEST_SHOWN_VALUE = 40  # a bad value is echoed in errors only this far
DATE_FORM = 'write a day as YYYY-MM-DD, such as "2025-01-31"'


def serialize_long(value: object) -> int:
    """A count as a JSON number; refuses what is not a 64-bit integer."""
    if type(value) is int and LONG_MIN <= value <= LONG_MAX:
        return value  # every count of an answer: checked without building its error text
    if isinstance(value, bool) or not isinstance(value, int):
        raise GraphQLError(f"Long cannot represent a non-integer value: {value!r}")
    return _in_range(value, repr(value))


def parse_long_value(value: object) -> int:
    """A Long from a variable: an integer, or a float without a fractional part, in int64 range."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise GraphQLError(
            f"Long cannot represent a non-integer value: {value!r}; pass a whole number"
        )
    return _in_range(value, repr(value))


def parse_long_literal(node: ValueNode, _variables: dict[str, Any] | None = None) -> int:
    """A Long written in the query text: an integer literal in int64 range."""
    if not isinstance(node, IntValueNode):
        raise GraphQLError(
            f"Long cannot represent a non-integer value: {print_ast(node)}; pass a whole number",
            node,
        )
    return _in_range(int(node.value), node.value)


def _in_range(value: int, shown: str) -> int:
    if not LONG_MIN <= value <= LONG_MAX:
        raise GraphQLError(
            f"Long cannot represent {shown}: it is outside the 64-bit range "
            f"{LONG_MIN} to {LONG_MAX}"
        )
    return value


LONG_SCALAR: ScalarDefinition = strawberry.scalar(
    name="Long",
    description=(
        "A 64-bit signed integer, serialized as a JSON number. Counts of messages, "
        "recipients and bytes use it because they can exceed the 32-bit Int. "
        "JavaScript numbers are exact up to 2^53; beyond that, parse it as a BigInt."
    ),
    serialize=serialize_long,
    parse_value=parse_long_value,
    parse_literal=parse_long_literal,
)


def serialize_date(value: object) -> str:
    """A day as YYYY-MM-DD."""
    if not isinstance(value, datetime.date):
        raise GraphQLError(f"Date cannot represent a non-date value: {value!r}")
    return value.isoformat()


def parse_date(value: object) -> datetime.date:
    """A Date from a variable: a string YYYY-MM-DD that names a calendar day."""
    shown = json.dumps(value) if isinstance(value, str | int | float | bool) else repr(value)
    if len(shown) > LONGEST_SHOWN_VALUE:
        shown = shown[:LONGEST_SHOWN_VALUE] + "…"
    if not isinstance(value, str) or not CALENDAR_DAY.fullmatch(value):
        raise GraphQLError(f"Date cannot represent {shown}: {DATE_FORM}")
    try:
        return datetime.date.fromisoformat(value)
    except ValueError as error:
        raise GraphQLError(f"Date cannot represent {shown}: {error}; {DATE_FORM}") from None


def parse_date_literal(node: ValueNode, _variables: dict[str, Any] | None = None) -> datetime.date:
    """A Date written in the query text: a string literal YYYY-MM-DD."""
    if not isinstance(node, StringValueNode):
        shown = print_ast(node)
        if len(shown) > LONGEST_SHOWN_VALUE:
            shown = shown[:LONGEST_SHOWN_VALUE] + "…"
        raise GraphQLError(f"Date cannot represent {shown}: {DATE_FORM}", node)
    try:
        return parse_date(node.value)
    except GraphQLError as error:
        raise GraphQLError(error.message, node) from None


DATE_SCALAR: ScalarDefinition = strawberry.scalar(
    name="Date",
    description=(
        "A UTC calendar day written YYYY-MM-DD (ISO 8601), such as \"2025-01-31\"."
    ),
    serialize=serialize_date,
    parse_value=parse_date,
    parse_literal=parse_date_literal,
)
