"""How graphql-core completes the values of an answer, with a shorter way for lists of scalars.

A series holds one number per day of its range, each of which graphql-core would complete on
its own (a path, a check of its type, a coercion). A list of non-null scalars is coerced here in
one pass instead; when any item fails to coerce, the list is completed the usual way, so the
error and its path are graphql-core's own.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable
from typing import Any

from graphql import (
    GraphQLList,
    GraphQLNonNull,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLScalarType,
    Undefined,
)
from graphql.execution.collect_fields import FieldDetailsList
from graphql.pyutils import AwaitableOrValue, Path
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext


class ExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """strawberry's execution context, with lists of non-null scalars coerced in one pass."""

    def complete_list_value(
        self,
        return_type: GraphQLList[GraphQLOutputType],
        field_details_list: FieldDetailsList,
        info: GraphQLResolveInfo[Any],
        path: Path,
        result: AsyncIterable[Any] | Iterable[Any],
        position_context: Any,
    ) -> AwaitableOrValue[list[Any]]:
        item_type = return_type.of_type
        if (
            isinstance(result, list)
            and isinstance(item_type, GraphQLNonNull)
            and isinstance(item_type.of_type, GraphQLScalarType)
        ):
            completed = _coerced(item_type.of_type, result)
            if completed is not None:
                return completed
        return super().complete_list_value(
            return_type, field_details_list, info, path, result, position_context
        )


def _coerced(scalar: GraphQLScalarType, items: list[Any]) -> list[Any] | None:
    """Every item coerced by ``scalar``; None when one cannot be."""
    coerce = scalar.coerce_output_value
    try:
        completed = [coerce(item) for item in items]
    except Exception:
        return None
    if any(value is None or value is Undefined for value in completed):
        return None
    return completed
