from __future__ import annotations

import datetime

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLError,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    IntValueNode,
    StringValueNode,
    parse_value,
)

from mailflow.api.scalars import (
    parse_date,
    parse_long_literal,
    parse_long_value,
    serialize_long,
)
from mailflow.api.schema import schema


def undescribed_parts_of_the_schema() -> list[str]:
    missing = []
    for name, graphql_type in schema._schema.type_map.items():
        if name.startswith("__"):
            continue
        if not graphql_type.description:
            missing.append(name)
        if isinstance(graphql_type, GraphQLEnumType):
            missing += [f"{name}.{value_name}" for value_name, value in graphql_type.values.items()
                        if not value.description]
        if isinstance(graphql_type, GraphQLObjectType | GraphQLInterfaceType):
            for field_name, field in graphql_type.fields.items():
                if not field.description:
                    missing.append(f"{name}.{field_name}")
                missing += [f"{name}.{field_name}({arg_name})"
                            for arg_name, arg in field.args.items() if not arg.description]
        if isinstance(graphql_type, GraphQLInputObjectType):
            missing += [f"{name}.{field_name}" for field_name, field in graphql_type.fields.items()
                        if not field.description]
    return missing


def test_every_type_field_argument_and_enum_value_has_a_description() -> None:
    assert undescribed_parts_of_the_schema() == []


def test_the_schema_has_the_query_fields_front_ends_use() -> None:
    query = schema._schema.query_type
    assert query is not None
    assert list(query.fields) == [
        "node", "nodes", "allConnectors", "connectors", "connector", "mailFlow", "mailFlowSeries",
        "tlsBreakdown", "insights", "tlsSessions", "allTlsFailures", "tlsFailures",
        "acceptedDomains", "internalNetworks",
    ]
    deprecated = {name: field.deprecation_reason for name, field in query.fields.items()
                  if field.deprecation_reason}
    assert deprecated == {
        "connectors": "Use allConnectors, a cursor connection of the same connectors.",
        "tlsFailures": "Use allTlsFailures, a cursor connection of the same failure details: "
                       "their number grows with the reports received.",
    }
    assert list(schema._schema.type_map["Connector"].fields) == [  # type: ignore[union-attr]
        "id", "name", "direction", "kind", "requireTls", "senderDomains", "recipientDomains",
        "clientIps", "smartHosts", "tlsCertNames", "routes", "volume", "volumeSeries",
        "tlsBreakdown", "insights",
    ]


def test_the_schema_has_mutations_for_connectors_accepted_domains_and_internal_networks() -> None:
    mutation = schema._schema.mutation_type
    assert mutation is not None
    assert list(mutation.fields) == [
        "createConnector", "updateConnector", "deleteConnector",
        "addAcceptedDomains", "removeAcceptedDomains",
        "addInternalNetworks", "removeInternalNetworks",
    ]
    # A refused mutation is null beside the others that ran, not the whole answer.
    assert all(not str(field.type).endswith("!") for field in mutation.fields.values())


def test_the_sdl_prints_the_long_scalar_and_the_enums() -> None:
    sdl = str(schema)

    assert "scalar Long" in sdl
    assert "enum TlsVersion {" in sdl
    assert "noTlsThreshold: Float! = 25" in sdl
    assert "tls10Threshold: Float! = 50" in sdl


@pytest.mark.parametrize("value", [0, -(2**63), 2**63 - 1, 12.0])
def test_long_accepts_whole_numbers_in_the_64_bit_range(value: float) -> None:
    assert parse_long_value(value) == int(value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (2**63, "outside the 64-bit range"),
        (-(2**63) - 1, "outside the 64-bit range"),
        (1.5, r"non-integer value: 1\.5"),
        ("12", "non-integer value: '12'"),
        (True, "non-integer value: True"),
        (float("inf"), "non-integer value: inf"),
    ],
)
def test_long_refuses_other_values_with_a_clear_message(value: object, message: str) -> None:
    with pytest.raises(GraphQLError, match=message):
        parse_long_value(value)


def test_long_literals_must_be_integers_in_range() -> None:
    assert parse_long_literal(IntValueNode(value="9223372036854775807")) == 2**63 - 1
    with pytest.raises(GraphQLError, match="outside the 64-bit range"):
        parse_long_literal(IntValueNode(value="9223372036854775808"))
    with pytest.raises(GraphQLError, match=r"non-integer value: 1\.5"):
        parse_long_literal(parse_value("1.5"))
    with pytest.raises(GraphQLError, match='non-integer value: "7"'):
        parse_long_literal(StringValueNode(value="7"))


def test_long_serializes_counts_as_json_numbers_and_refuses_what_is_not_one() -> None:
    assert serialize_long(2**62) == 2**62
    with pytest.raises(GraphQLError):
        serialize_long(2**63)
    with pytest.raises(GraphQLError):
        serialize_long("3")


def test_a_date_is_a_calendar_day_written_yyyy_mm_dd() -> None:
    assert parse_date("2024-02-29") == datetime.date(2024, 2, 29)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2021-13-45", 'Date cannot represent "2021-13-45": month must be in 1..12; '),
        ("2023-02-29", 'Date cannot represent "2023-02-29": day is out of range for month; '),
        ("20250131", 'Date cannot represent "20250131": write a day as YYYY-MM-DD'),
        ("2025-W05-5", 'Date cannot represent "2025-W05-5": write a day as YYYY-MM-DD'),
        ("2025-01-31T00:00", 'Date cannot represent "2025-01-31T00:00": write a day as'),
        (20250131, "Date cannot represent 20250131: write a day as YYYY-MM-DD"),
    ],
)
def test_a_date_in_another_form_is_refused_naming_the_value_and_the_form(
    value: object, message: str
) -> None:
    with pytest.raises(GraphQLError) as raised:
        parse_date(value)

    assert raised.value.message.startswith(message)
    assert raised.value.message.endswith('write a day as YYYY-MM-DD, such as "2025-01-31"')
