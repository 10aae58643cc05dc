"""The published SDL in schema/ is the schema the code serves."""

from __future__ import annotations

from pathlib import Path

from mailflow.api.schema import schema

PUBLISHED = Path(__file__).resolve().parents[2] / "schema" / "schema.graphql"


def test_the_published_schema_matches_the_code() -> None:
    published = PUBLISHED.read_text(encoding="utf-8")
    assert published == str(schema) + "\n", (
        "schema/schema.graphql is out of date: run 'mailflow export-schema > schema/schema.graphql'"
    )
