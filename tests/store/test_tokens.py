from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from mailflow.errors import MailflowError, UnknownOrganizationError
from mailflow.store.organizations import ensure_organization
from mailflow.store.tokens import (
    Grant,
    InvalidTokenDescriptionError,
    TokenRole,
    authenticate,
    create_token,
    list_tokens,
    revoke_token,
)


async def test_a_created_token_authenticates_as_its_organization_and_only_its_hash_is_stored(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as connection:
        contoso = await ensure_organization(connection, "contoso")
        token = await create_token(connection, contoso, description="dashboard")
        organization_id = await authenticate(connection, token)
        row = await connection.fetchrow("SELECT * FROM api_tokens")

    assert organization_id == Grant(contoso, TokenRole.VIEWER)
    assert token.startswith(f"mf_{contoso}_")
    assert len(token) == len(f"mf_{contoso}_") + 43
    assert row is not None
    assert bytes(row["token_hash"]) == hashlib.sha256(token.encode()).digest()
    assert token.encode() not in b"".join(str(value).encode() for value in row.values())
    assert row["description"] == "dashboard"
    assert row["last_used_at"] is not None


async def test_two_tokens_of_one_organization_are_different(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as connection:
        contoso = await ensure_organization(connection, "contoso")
        first = await create_token(connection, contoso)
        second = await create_token(connection, contoso)

        assert first != second
        assert await authenticate(connection, first) == Grant(contoso, TokenRole.VIEWER)
        assert await authenticate(connection, second) == Grant(contoso, TokenRole.VIEWER)


async def test_an_expired_token_is_refused(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as connection:
        contoso = await ensure_organization(connection, "contoso")
        expired = await create_token(
            connection, contoso, expires_at=datetime.now(UTC) - timedelta(seconds=1))
        valid = await create_token(
            connection, contoso, expires_at=datetime.now(UTC) + timedelta(days=1))

        assert await authenticate(connection, expired) is None
        assert await authenticate(connection, valid) == Grant(contoso, TokenRole.VIEWER)


async def test_a_revoked_token_is_refused_and_revoking_twice_reports_nothing_to_do(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as connection:
        contoso = await ensure_organization(connection, "contoso")
        token = await create_token(connection, contoso)
        [info] = await list_tokens(connection, contoso)

        assert await revoke_token(connection, contoso, info.id)
        assert not await revoke_token(connection, contoso, info.id)
        assert await authenticate(connection, token) is None
        [revoked] = await list_tokens(connection, contoso)
    assert revoked.revoked_at is not None


async def test_an_organization_cannot_revoke_another_organizations_token(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as connection:
        contoso = await ensure_organization(connection, "contoso")
        fabrikam = await ensure_organization(connection, "fabrikam")
        token = await create_token(connection, contoso)
        [info] = await list_tokens(connection, contoso)

        assert not await revoke_token(connection, fabrikam, info.id)
        assert await authenticate(connection, token) == Grant(contoso, TokenRole.VIEWER)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "mf_",
        "mf_1",
        "mf_1_",
        "Bearer mf_1_" + "a" * 43,
        "mf_1_" + "a" * 42,
        "mf_1_" + "a" * 44,
        "mf_1_" + "a" * 42 + "!",
        "mf_01_" + "a" * 43,
        "mf_x_" + "a" * 43,
        "mf_-1_" + "a" * 43,
        "mf_\u0661_" + "a" * 43,  # an Arabic-Indic digit one
        "mf_99999999999999999999_" + "a" * 43,
        "mf_9223372036854775808_" + "a" * 43,
        "mf_1_" + "a" * 42 + "\x00",
    ],
)
async def test_a_malformed_token_is_refused_without_raising(
    pool: asyncpg.Pool, token: str
) -> None:
    async with pool.acquire() as connection:
        await ensure_organization(connection, "contoso")
        assert await authenticate(connection, token) is None


async def test_a_token_presented_under_another_organizations_id_is_refused(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as connection:
        contoso = await ensure_organization(connection, "contoso")
        fabrikam = await ensure_organization(connection, "fabrikam")
        token = await create_token(connection, contoso)
        secret = token.removeprefix(f"mf_{contoso}_")

        assert await authenticate(connection, f"mf_{fabrikam}_{secret}") is None
        assert await authenticate(connection, token) == Grant(contoso, TokenRole.VIEWER)


async def test_last_use_is_recorded_at_most_once_a_minute(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as connection:
        contoso = await ensure_organization(connection, "contoso")
        token = await create_token(connection, contoso)
        [unused] = await list_tokens(connection, contoso)
        await authenticate(connection, token)
        ago_30s = await connection.fetchval(
            "UPDATE api_tokens SET last_used_at = now() - interval '30 seconds' "
            "RETURNING last_used_at")
        await authenticate(connection, token)
        [within_a_minute] = await list_tokens(connection, contoso)
        await connection.execute(
            "UPDATE api_tokens SET last_used_at = now() - interval '2 minutes'")
        await authenticate(connection, token)
        [after_a_minute] = await list_tokens(connection, contoso)

    assert unused.last_used_at is None
    assert within_a_minute.last_used_at == ago_30s
    assert after_a_minute.last_used_at is not None
    assert after_a_minute.last_used_at > ago_30s


async def test_a_refused_token_records_no_use(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as connection:
        contoso = await ensure_organization(connection, "contoso")
        token = await create_token(
            connection, contoso, expires_at=datetime.now(UTC) - timedelta(seconds=1))
        await authenticate(connection, token)
        [info] = await list_tokens(connection, contoso)

    assert info.last_used_at is None


async def test_a_token_for_a_missing_organization_is_a_clear_error(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as connection:
        with pytest.raises(UnknownOrganizationError, match="no organization has the id 42"):
            await create_token(connection, 42)


async def test_an_expiry_without_a_time_zone_is_refused(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as connection:
        contoso = await ensure_organization(connection, "contoso")
        with pytest.raises(ValueError, match="time zone"):
            await create_token(connection, contoso, expires_at=datetime(2030, 1, 1))
        assert await list_tokens(connection, contoso) == []


@pytest.mark.parametrize(
    ("description", "problem"),
    [
        ("x" * 201, "is 201 characters long; use at most 200 characters"),
        ("x" * 100_000, "is 100000 characters long; use at most 200 characters"),
        ("nightly\texport", r"holds '\\t' at position 8, a control character or line break"),
        ("line one\nline two", r"holds '\\n' at position 9"),
        ("carriage\r", r"holds '\\r' at position 9"),
        ("escape \x1b[31m", r"holds '\\x1b' at position 8"),
        ("delete \x7f", r"holds '\\x7f'"),
        ("next line \x85", r"holds '\\x85'"),
        ("separator \u2028", r"holds '\\u2028'"),
    ],
)
async def test_a_description_too_long_or_with_control_characters_is_refused(
    pool: asyncpg.Pool, description: str, problem: str
) -> None:
    async with pool.acquire() as connection:
        contoso = await ensure_organization(connection, "contoso")
        with pytest.raises(InvalidTokenDescriptionError, match=problem) as caught:
            await create_token(connection, contoso, description=description)
        assert await list_tokens(connection, contoso) == []

    assert isinstance(caught.value, MailflowError)
    assert caught.value.code == "INVALID_TOKEN_DESCRIPTION"
    assert "use at most 200 characters" in str(caught.value) or (
        "printable characters and spaces on one line" in str(caught.value))


@pytest.mark.parametrize("description", ["", "x" * 200, "Grafana — équipe réseau 📈", "a b  c"])
async def test_a_description_of_up_to_200_printable_characters_is_kept(
    pool: asyncpg.Pool, description: str
) -> None:
    async with pool.acquire() as connection:
        contoso = await ensure_organization(connection, "contoso")
        await create_token(connection, contoso, description=description)
        [info] = await list_tokens(connection, contoso)

    assert info.description == description


@pytest.mark.parametrize("role", list(TokenRole))
async def test_a_token_grants_the_role_it_was_created_with_and_lists_it(
    pool: asyncpg.Pool, role: TokenRole,
) -> None:
    async with pool.acquire() as connection:
        contoso = await ensure_organization(connection, "contoso")
        token = await create_token(connection, contoso, role=role)

        assert await authenticate(connection, token) == Grant(contoso, role)
        assert [info.role for info in await list_tokens(connection, contoso)] == [role]


async def test_the_database_refuses_a_role_it_does_not_know(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as connection:
        contoso = await ensure_organization(connection, "contoso")
        with pytest.raises(asyncpg.CheckViolationError):
            await connection.execute(
                "INSERT INTO api_tokens (organization_id, token_hash, role) "
                "VALUES ($1, 'x', 'owner')", contoso)
