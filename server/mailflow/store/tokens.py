"""API tokens: each scopes requests to one organization, with a role.

A ``viewer`` token reads reports, an ``admin`` token reads them too and manages the
organization, an ``ingest`` token only pushes message facts to ``POST /ingest``.

A token reads ``mf_<organization id>_<secret>``. Only the SHA-256 of the whole
token is stored, so a leaked table grants nothing; a request is authenticated
by looking up that hash under the organization id the token names, which is an
index lookup and needs no constant-time comparison of secrets. The lookup is the
database function ``authenticate_token``: it runs before a request's transaction names
its organization, and the service role may not read token hashes itself.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from mailflow.errors import MailflowError, UnknownOrganizationError
from mailflow.store.connection import Connection
from mailflow.store.sql import query

PREFIX = "mf_"
SECRET_BYTES = 32
SECRET_LENGTH = 43  # characters of secrets.token_urlsafe(SECRET_BYTES)
SECRET_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
MAX_ORGANIZATION_ID = 2**63 - 1
MAX_DESCRIPTION_LENGTH = 200
# Control characters (tab, newline, escape, ...) and line or paragraph separators: each would
# break the one line per token, tab-separated, that `token list` prints.
_REFUSED_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})


class InvalidTokenDescriptionError(MailflowError, ValueError):
    """A token description is too long or holds a character that would break a listing."""

    code = "INVALID_TOKEN_DESCRIPTION"


class TokenRole(enum.Enum):
    """What a token may do."""

    VIEWER = "viewer"
    ADMIN = "admin"
    INGEST = "ingest"

    @property
    def reads_reports(self) -> bool:
        return self is not TokenRole.INGEST


@dataclass(frozen=True, slots=True)
class Grant:
    """What a valid token grants: an organization and a role."""

    organization_id: int
    role: TokenRole


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What is known about a token without its secret."""

    id: int
    role: TokenRole
    description: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


def token_hash(token: str) -> bytes:
    """The SHA-256 of a whole token, as stored."""
    return hashlib.sha256(token.encode("utf-8")).digest()


async def create_token(
    connection: Connection, organization_id: int, *,
    description: str = "", expires_at: datetime | None = None,
    role: TokenRole = TokenRole.VIEWER,
) -> str:
    """A new token for the organization; it is shown once and only its hash is kept.

    Raises InvalidTokenDescriptionError for a description longer than 200 characters or
    holding a control character (see :func:`check_token_description`).
    """
    check_token_description(description)
    if expires_at is not None and expires_at.tzinfo is None:
        raise ValueError(f"expires_at must carry a time zone, got {expires_at.isoformat()}")
    token = f"{PREFIX}{organization_id}_{secrets.token_urlsafe(SECRET_BYTES)}"
    try:
        await connection.execute(
            query("token_create"), organization_id, token_hash(token), description, expires_at,
            role.value,
        )
    except asyncpg.ForeignKeyViolationError:
        raise UnknownOrganizationError(
            f"no organization has the id {organization_id}; a token needs an existing organization"
        ) from None
    return token


def check_token_description(description: str) -> None:
    """Raise InvalidTokenDescriptionError unless ``description`` is at most 200 characters
    on one line, without tabs or other control characters."""
    if len(description) > MAX_DESCRIPTION_LENGTH:
        raise InvalidTokenDescriptionError(
            f"the token description is {len(description)} characters long; "
            f"use at most {MAX_DESCRIPTION_LENGTH} characters"
        )
    for position, character in enumerate(description, start=1):
        if unicodedata.category(character) in _REFUSED_CATEGORIES:
            raise InvalidTokenDescriptionError(
                f"the token description holds {character!r} at position {position}, a control "
                "character or line break; use printable characters and spaces on one line "
                "(no tabs or line breaks)"
            )


async def authenticate(connection: Connection, token: str) -> Grant | None:
    """What a valid, unexpired, unrevoked token grants, else None (never raises for a
    malformed token). Records when the token was last used, at most once a minute."""
    organization_id = organization_of(token)
    if organization_id is None:
        return None
    row = await connection.fetchrow(
        query("token_authenticate"), organization_id, token_hash(token)
    )
    if row is None:
        return None
    return Grant(row["organization_id"], TokenRole(row["role"]))


def organization_of(token: str) -> int | None:
    """The organization id a well-formed token names, or None when it is malformed."""
    if not token.startswith(PREFIX):
        return None
    digits, separator, secret = token[len(PREFIX):].partition("_")
    if (
        not separator
        or not digits.isascii()
        or not digits.isdigit()
        or len(digits) > 19
        or digits.startswith("0")
        or len(secret) != SECRET_LENGTH
        or not SECRET_ALPHABET.issuperset(secret)
    ):
        return None
    organization_id = int(digits)
    return organization_id if organization_id <= MAX_ORGANIZATION_ID else None


async def list_tokens(connection: Connection, organization_id: int) -> list[TokenInfo]:
    """The organization's tokens, oldest first, revoked and expired ones included."""
    rows = await connection.fetch(query("token_list"), organization_id)
    return [TokenInfo(**{**dict(row), "role": TokenRole(row["role"])}) for row in rows]


async def revoke_token(connection: Connection, organization_id: int, token_id: int) -> bool:
    """Revoke a token from now on; False when the organization has no such unrevoked token."""
    revoked: int | None = await connection.fetchval(
        query("token_revoke"), organization_id, token_id
    )
    return revoked is not None
