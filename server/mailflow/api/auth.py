"""Who is asking: the organization and role of the bearer token, or the demo organization."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from mailflow.api.errors import error_body
from mailflow.errors import MailflowError
from mailflow.store.connection import Connection
from mailflow.store.tokens import Grant, TokenRole, authenticate

MISSING_TOKEN = "Bearer"
INVALID_TOKEN = 'Bearer error="invalid_token"'
INVALID_REQUEST = 'Bearer error="invalid_request"'


class UnauthenticatedError(MailflowError):
    """The request carries no usable bearer token."""

    code = "UNAUTHENTICATED"
    status_code = 401

    def __init__(self, message: str, *, challenge: str = MISSING_TOKEN) -> None:
        super().__init__(message)
        self.challenge = challenge


class ForbiddenError(MailflowError):
    """A valid token whose role does not allow what the request asks."""

    code = "FORBIDDEN"
    status_code = 403


class RepeatedAuthorizationError(UnauthenticatedError):
    """The request carries several Authorization headers, so whose request it is is unclear."""

    code = "BAD_REQUEST"
    status_code = 400


async def reader_of(
    request: Request, connection: Connection, *, demo_organization_id: int | None
) -> Grant:
    """The organization whose reports the request reads, and the request's role;
    UnauthenticatedError if none, ForbiddenError for a token that may not read reports (an
    ingest token)."""
    return require_reader(
        await grant_of(request, connection, demo_organization_id=demo_organization_id)
    )


def require_reader(grant: Grant) -> Grant:
    """``grant``, unless its role may not read reports (ForbiddenError)."""
    if not grant.role.reads_reports:
        raise ForbiddenError(
            f"this token has the {grant.role.value} role, which only pushes message facts to "
            "POST /ingest; read reports with a viewer or admin token "
            "('mailflow token create --role viewer')"
        )
    return grant


async def grant_of(
    request: Request, connection: Connection, *, demo_organization_id: int | None
) -> Grant:
    """What the request's token grants; UnauthenticatedError if it has no valid one.

    A request without an Authorization header reads the demo organization (as a viewer) when
    there is one; a header that is present must hold a valid token, demo or not, and be the
    only one.
    """
    headers = request.headers.getlist("authorization")
    if len(headers) > 1:
        raise RepeatedAuthorizationError(
            f"the request has {len(headers)} Authorization headers; send exactly one, "
            "'Authorization: Bearer <token>'",
            challenge=INVALID_REQUEST,
        )
    return await grant_of_header(
        headers[0] if headers else None, connection, demo_organization_id=demo_organization_id
    )


async def grant_of_header(
    header: str | None, connection: Connection, *, demo_organization_id: int | None
) -> Grant:
    """What the Authorization value ``header`` grants (the demo organization when None and
    there is one); UnauthenticatedError if it grants nothing."""
    if header is None:
        if demo_organization_id is not None:
            return Grant(demo_organization_id, TokenRole.VIEWER)
        raise UnauthenticatedError(
            "authentication required: send the header 'Authorization: Bearer <token>' "
            "with a token from 'mailflow token create'"
        )

    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise UnauthenticatedError(
            "the Authorization header must read 'Bearer <token>'", challenge=INVALID_TOKEN
        )

    grant = await authenticate(connection, token)
    if grant is None:
        raise UnauthenticatedError(
            "the bearer token is unknown, expired or revoked; create a new one with "
            "'mailflow token create'",
            challenge=INVALID_TOKEN,
        )
    return grant


def forbidden_response(error: ForbiddenError) -> JSONResponse:
    """HTTP 403 with a GraphQL-shaped body."""
    return JSONResponse(error_body(str(error), error.code), status_code=error.status_code)


def unauthenticated_response(error: UnauthenticatedError) -> JSONResponse:
    """HTTP 401 (400 for a malformed header) with a GraphQL-shaped body and the challenge."""
    return JSONResponse(
        error_body(str(error), error.code),
        status_code=error.status_code,
        headers={"WWW-Authenticate": error.challenge},
    )
