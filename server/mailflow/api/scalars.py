"""Custom scalars of the schema."""

from __future__ import annotations

import math
from typing import Any, NewType

import strawberry
from graphql import GraphQLError, IntValueNode, ValueNode, print_ast
from strawberry.types.scalar import ScalarDefinition

Long = NewType("Long", int)

LONG_MIN = -(2**63)
LONG_MAX = 2**63 - 1


def serialize_long(value: object) -> int:
    """A count as a JSON number; refuses what is not a 64-bit integer."""
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
