"""The published SDL in schema/ is the schema the code serves; its deprecations are listed."""

from __future__ import annotations

import re
from pathlib import Path

from graphql import GraphQLInterfaceType, GraphQLObjectType

from mailflow.api.schema import schema

PUBLISHED = Path(__file__).resolve().parents[2] / "schema" / "schema.graphql"


def test_the_published_schema_matches_the_code() -> None:
    published = PUBLISHED.read_text(encoding="utf-8")
    assert published == str(schema) + "\n", (
        "schema/schema.graphql is out of date: run 'mailflow export-schema > schema/schema.graphql'"
    )


CHANGELOG = Path(__file__).resolve().parents[2] / "CHANGELOG.md"


def deprecated_fields() -> dict[str, str]:
    """Each deprecated field as ``Type.field``, with its reason."""
    return {
        f"{name}.{field_name}": field.deprecation_reason
        for name, named in schema._schema.type_map.items()
        if isinstance(named, GraphQLObjectType | GraphQLInterfaceType)
        for field_name, field in named.fields.items()
        if field.deprecation_reason
    }


def test_every_deprecated_field_names_a_replacement_and_is_in_the_changelog() -> None:
    schema_changes = CHANGELOG.read_text(encoding="utf-8").split("### Schema", 1)[1]
    schema_changes = schema_changes.split("\n## ", 1)[0]

    deprecated = deprecated_fields()

    assert deprecated, "the schema has deprecated fields to check"
    for qualified, reason in deprecated.items():
        type_name, _ = qualified.split(".")
        replacement = re.match(r"Use (\w+)", reason)
        assert replacement, f"{qualified}: the reason should start with 'Use <field>'"
        named = schema._schema.type_map[type_name]
        assert isinstance(named, GraphQLObjectType)
        assert replacement[1] in named.fields, f"{qualified}: {replacement[1]} does not exist"
        assert f"`{qualified}`" in schema_changes, f"CHANGELOG.md's Schema part lacks {qualified}"
