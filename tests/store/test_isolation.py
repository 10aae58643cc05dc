"""Row-level security: the service role sees and writes one named organization's rows, or none."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import pytest
from tests.conftest import as_user

from mailflow.domain import (
    DeliveryStatus,
    Direction,
    MessageFact,
    TlsFailureDetail,
    TlsPolicy,
    TlsPolicyType,
    TlsReport,
    TlsVersion,
)
from mailflow.ingest.classify import load_classifier
from mailflow.ingest.pipeline import load_facts
from mailflow.store.isolation import (
    SERVICE_ROLE,
    OrganizationConflictError,
    ServiceRoleError,
    check_service_role,
    enter_organization,
    organization_transaction,
    owner_transaction,
    service_transaction,
)
from mailflow.store.organizations import OrganizationConfig, apply_organization
from mailflow.store.positions import FollowPosition, save_position
from mailflow.store.tls_reports import store_tls_report
from mailflow.store.tokens import create_token

# Relations of mailflow's schema with an organization_id column: tables and partitions alike.
ORGANIZATION_TABLES = """
    SELECT
        relation.relname AS name,
        relation.relrowsecurity,
        relation.relforcerowsecurity,
        relation.relispartition
    FROM pg_class AS relation
    JOIN pg_attribute AS attribute ON attribute.attrelid = relation.oid
    WHERE relation.relnamespace = current_schema()::regnamespace
        AND relation.relkind IN ('r', 'p')
        AND attribute.attname = 'organization_id'
        AND NOT attribute.attisdropped
    ORDER BY relation.relname
"""
POLICY_EXPRESSION = "(organization_id = current_organization_id())"


async def seed_every_table(pool: asyncpg.Pool, name: str) -> int:
    """An organization with rows in every organization-owned table, stored the normal way."""
    config = OrganizationConfig.model_validate({
        "organization": name,
        "accepted_domains": [f"{name}.example"],
        "internal_networks": ["192.0.2.0/24"],
        "connectors": [{"name": f"{name} partner", "direction": "inbound", "kind": "partner",
                        "sender_domains": [f"partner-of-{name}.example"]}],
    })
    async with pool.acquire() as connection:
        organization_id = (await apply_organization(connection, config)).organization_id
        async with owner_transaction(connection, organization_id):
            classifier = await load_classifier(connection, organization_id)
            await create_token(connection, organization_id, description=f"{name} token")
            await store_tls_report(connection, organization_id, tls_report(name))
            await save_position(connection, organization_id, f"/var/log/{name}.log",
                                FollowPosition(1, 2, 3, b"fingerprint", 11, {}))
    facts = [message_fact(name, number) for number in range(3)]
    await load_facts(pool, organization_id, facts, classify=classifier.assign)
    return organization_id


def message_fact(name: str, number: int) -> MessageFact:
    return MessageFact(
        source_key=f"{name}-{number}", occurred_at=datetime(2025, 3, 1 + number, 12, tzinfo=UTC),
        direction=Direction.INBOUND, tls_version=TlsVersion.TLS1_3, tls_cipher=None,
        peer_host=None, peer_ip="203.0.113.9", sender_domain=f"partner-of-{name}.example",
        recipient_domains=(f"{name}.example",), recipients=1, size_bytes=1000,
        status=DeliveryStatus.RECEIVED,
    )


def tls_report(name: str) -> TlsReport:
    policy = TlsPolicy(TlsPolicyType.STS, f"{name}.example", 10, 1,
                       failure_details=(TlsFailureDetail("certificate-expired", 1),))
    return TlsReport(f"{name}-report", "reporter.example", None,
                     datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 3, 2, tzinfo=UTC),
                     (policy,))


@pytest.fixture
async def organizations(pool: asyncpg.Pool) -> tuple[int, int]:
    return await seed_every_table(pool, "alpha"), await seed_every_table(pool, "beta")


async def organization_tables(connection: asyncpg.Connection) -> list[asyncpg.Record]:
    return list(await connection.fetch(ORGANIZATION_TABLES))


async def service_tables(connection: asyncpg.Connection) -> list[str]:
    """The organization-owned tables the service role uses: all but partitions, which it may
    not name (it reaches them through message_facts, whose policy then applies)."""
    tables = await organization_tables(connection)
    for table in tables:
        if table["relispartition"]:
            assert not await connection.fetchval(
                "SELECT has_table_privilege($1, $2, 'SELECT, INSERT, UPDATE, DELETE')",
                SERVICE_ROLE, table["name"]), f"the service role may name {table['name']}"
    return [table["name"] for table in tables if not table["relispartition"]]


async def rows_by_organization(pool: asyncpg.Pool, table: str) -> dict[int, int]:
    """As the superuser, which passes by row security: each organization's rows in ``table``."""
    rows = await pool.fetch(
        f"SELECT organization_id, count(*) FROM {table} GROUP BY organization_id")
    return {row["organization_id"]: row["count"] for row in rows}


async def test_every_table_with_an_organization_id_has_forced_row_level_security(
    pool: asyncpg.Pool, organizations: tuple[int, int],
) -> None:
    async with pool.acquire() as connection:
        tables = await organization_tables(connection)
        policies = {
            (row["tablename"], row["policyname"]): row
            for row in await connection.fetch(
                "SELECT * FROM pg_policies WHERE schemaname = current_schema()")
        }
    names = [table["name"] for table in tables]

    assert {"message_facts", "message_facts_202503", "daily_rollups", "connectors",
            "api_tokens", "tls_report_failures", "follow_positions"} <= set(names)
    for table in tables:
        assert table["relrowsecurity"], f"{table['name']} has no row-level security"
        assert table["relforcerowsecurity"], f"{table['name']} lets its owner pass by"
        on_table = [policy for (name, _), policy in policies.items() if name == table["name"]]
        assert len(on_table) == 1, f"{table['name']} has {len(on_table)} policies, not one"
        (policy,) = on_table
        assert (policy["cmd"], policy["permissive"], policy["roles"]) == (
            "ALL", "PERMISSIVE", ["public"])
        assert policy["qual"] == POLICY_EXPRESSION
        assert policy["with_check"] == POLICY_EXPRESSION


async def test_the_service_role_cannot_pass_by_row_security_or_empty_a_table(
    pool: asyncpg.Pool, organizations: tuple[int, int],
) -> None:
    async with pool.acquire() as connection:
        role = await connection.fetchrow(
            "SELECT rolsuper, rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname = $1",
            SERVICE_ROLE)
        owned = await connection.fetchval(
            "SELECT count(*) FROM pg_class WHERE relowner = $1::regrole", SERVICE_ROLE)
        tables = [table["name"] for table in await organization_tables(connection)]
        truncatable = [
            table for table in [*tables, "organizations"]
            if await connection.fetchval(
                "SELECT has_table_privilege($1, $2, 'TRUNCATE')", SERVICE_ROLE, table)
        ]
        reads_hashes = await connection.fetchval(
            "SELECT has_column_privilege($1, 'api_tokens', 'token_hash', 'SELECT')",
            SERVICE_ROLE)

    assert role is not None
    assert dict(role) == {"rolsuper": False, "rolbypassrls": False, "rolcanlogin": False}
    assert owned == 0
    assert truncatable == []
    assert not reads_hashes


async def test_a_service_transaction_that_names_no_organization_sees_and_writes_nothing(
    pool: asyncpg.Pool, service_pool: asyncpg.Pool, organizations: tuple[int, int],
) -> None:
    alpha, beta = organizations
    async with pool.acquire() as connection:
        tables = await service_tables(connection)
    for table in [*tables, "organizations"]:
        column = "id" if table == "organizations" else "organization_id"
        seeded = await pool.fetchval(f"SELECT count(DISTINCT {column}) FROM {table}")
        assert seeded == 2, f"the test seeds no rows of both organizations in {table}"

    async with service_pool.acquire() as connection:
        for table in [*tables, "organizations"]:
            async with service_transaction(connection):
                assert await connection.fetchval(f"SELECT count(*) FROM {table}") == 0, table
        async with service_transaction(connection):
            assert await connection.execute("DELETE FROM daily_rollups") == "DELETE 0"
            assert await connection.execute(
                "UPDATE connectors SET name = 'taken'") == "UPDATE 0"
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            async with service_transaction(connection):
                await connection.execute(
                    "INSERT INTO accepted_domains (organization_id, domain) "
                    "VALUES ($1, 'x.example')", alpha)
    assert await rows_by_organization(pool, "accepted_domains") == {alpha: 1, beta: 1}


async def test_a_transaction_of_one_organization_sees_only_its_rows_and_cannot_write_others(
    pool: asyncpg.Pool, service_pool: asyncpg.Pool, organizations: tuple[int, int],
) -> None:
    alpha, beta = organizations
    async with pool.acquire() as connection:
        tables = await service_tables(connection)
        beta_connector = await connection.fetchval(
            "SELECT id FROM connectors WHERE organization_id = $1", beta)

    async with service_pool.acquire() as connection:
        for table in tables:
            expected = (await rows_by_organization(pool, table)).get(alpha, 0)
            async with organization_transaction(connection, alpha):
                seen = await connection.fetch(f"SELECT DISTINCT organization_id FROM {table}")
                count = await connection.fetchval(f"SELECT count(*) FROM {table}")
            assert [row["organization_id"] for row in seen] == ([alpha] if expected else [])
            assert count == expected, table
        async with organization_transaction(connection, alpha):
            assert await connection.fetchval("SELECT array_agg(id) FROM organizations") == [alpha]
            assert await connection.execute(
                "DELETE FROM connectors WHERE id = $1", beta_connector) == "DELETE 0"
            assert await connection.execute(
                "UPDATE daily_rollups SET messages = 0 WHERE organization_id = $1",
                beta) == "UPDATE 0"

        refused = [
            ("INSERT INTO accepted_domains (organization_id, domain) VALUES ($1, 'x.example')",
             beta),
            ("UPDATE connectors SET organization_id = $1", beta),
            ("INSERT INTO api_tokens (organization_id, token_hash) VALUES ($1, '\\x00')", beta),
        ]
        for statement, argument in refused:
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
                async with organization_transaction(connection, alpha):
                    await connection.execute(statement, argument)

    assert await rows_by_organization(pool, "accepted_domains") == {alpha: 1, beta: 1}
    assert await rows_by_organization(pool, "connectors") == {alpha: 1, beta: 1}
    assert await rows_by_organization(pool, "api_tokens") == {alpha: 1, beta: 1}


async def test_a_transaction_that_names_an_organization_cannot_name_another(
    service_pool: asyncpg.Pool, organizations: tuple[int, int],
) -> None:
    alpha, beta = organizations
    async with service_pool.acquire() as connection, service_transaction(connection):
        await enter_organization(connection, alpha)
        await enter_organization(connection, alpha)
        with pytest.raises(OrganizationConflictError):
            await enter_organization(connection, beta)


async def test_authenticating_a_token_leaves_the_transaction_naming_no_organization(
    service_pool: asyncpg.Pool, organizations: tuple[int, int],
) -> None:
    alpha, _ = organizations
    async with service_pool.acquire() as connection:
        async with service_transaction(connection):
            await connection.fetch("SELECT * FROM authenticate_token($1, '\\x00')", alpha)
            assert await connection.fetchval("SELECT count(*) FROM api_tokens") == 0
            assert await connection.fetchval("SELECT current_organization_id()") is None
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with organization_transaction(connection, alpha):
                await connection.fetch("SELECT token_hash FROM api_tokens")


async def test_nothing_of_a_transaction_carries_over_to_the_next_on_its_connection(
    service_pool: asyncpg.Pool, organizations: tuple[int, int],
) -> None:
    alpha, _ = organizations
    async with service_pool.acquire() as connection:
        async with organization_transaction(connection, alpha):
            assert await connection.fetchval("SELECT count(*) FROM connectors") == 1
        assert await connection.fetchval("SELECT current_user") != SERVICE_ROLE
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await connection.fetchval("SELECT count(*) FROM connectors")
        async with service_transaction(connection):
            assert await connection.fetchval("SELECT count(*) FROM connectors") == 0


async def test_a_login_that_may_not_switch_to_the_service_role_is_told_what_to_grant(
    pool: asyncpg.Pool, database_url: str,
) -> None:
    await pool.execute("CREATE ROLE mailflow_test_outsider LOGIN")
    try:
        connection = await asyncpg.connect(as_user(database_url, "mailflow_test_outsider"))
        try:
            with pytest.raises(ServiceRoleError,
                               match="GRANT mailflow_app TO mailflow_test_outsider"):
                await check_service_role(connection)
        finally:
            await connection.close()
    finally:
        await pool.execute("DROP ROLE mailflow_test_outsider")


async def test_a_service_role_that_bypasses_row_security_is_refused(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as connection:
        await check_service_role(connection)
        await connection.execute(f"ALTER ROLE {SERVICE_ROLE} BYPASSRLS")
        try:
            with pytest.raises(ServiceRoleError, match="bypasses row-level security"):
                await check_service_role(connection)
        finally:
            await connection.execute(f"ALTER ROLE {SERVICE_ROLE} NOBYPASSRLS")
