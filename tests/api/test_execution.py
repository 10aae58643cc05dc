"""Lists of scalars completed in one pass answer as graphql-core's own completion does."""

from __future__ import annotations

import datetime

import pytest
import strawberry
from strawberry.schema.config import StrawberryConfig

from mailflow.api.execution import ExecutionContext
from mailflow.api.scalars import DATE_SCALAR, LONG_SCALAR, Long

NUMBERS: dict[str, list[int]] = {
    "counts": [0, 7, 2**40],
    "too_large": [1, 2**63, 3],
    "not_numbers": [1, "two", 3],  # type: ignore[list-item]
}


@strawberry.type
class Query:
    @strawberry.field
    def numbers(self, name: str) -> list[Long] | None:
        return [Long(number) for number in NUMBERS[name]]

    @strawberry.field
    def days(self) -> list[datetime.date]:
        return [datetime.date(2025, 1, 1), datetime.date(2025, 1, 2)]

    @strawberry.field
    def names(self) -> list[str | None]:
        return ["a", None]


def schema(execution_context_class: type | None) -> strawberry.Schema:
    return strawberry.Schema(
        query=Query,
        config=StrawberryConfig(scalar_map={Long: LONG_SCALAR, datetime.date: DATE_SCALAR}),
        execution_context_class=execution_context_class,
    )


@pytest.mark.parametrize("name", sorted(NUMBERS))
def test_a_list_of_scalars_answers_as_graphql_core_completes_it(name: str) -> None:
    query = f'{{ numbers(name: "{name}") days names }}'

    fast = schema(ExecutionContext).execute_sync(query)
    usual = schema(None).execute_sync(query)

    assert fast.data == usual.data
    assert [(error.message, error.path) for error in fast.errors or []] == [
        (error.message, error.path) for error in usual.errors or []
    ]
    if name != "counts":
        assert fast.errors
        assert fast.errors[0].path == ["numbers", 1]
