"""Who is asking: the organization of the bearer token, or the demo organization without one."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from mailflow.api.errors import error_body
from mailflow.errors import MailflowError
from mailflow.store.connection import Connection
from mailflow.store.tokens import authenticate

MISSING_TOKEN = "Bearer"
INVALID_TOKEN = 'Bearer error="invalid_token"'


class UnauthenticatedError(MailflowError):
    """The request carries no usable bearer token."""

    code = "UNAUTHENTICATED"

    def __init__(self, message: str, *, challenge: str = MISSING_TOKEN) -> None:
        super().__init__(message)
        self.challenge = challenge


async def organization_of(
    request: Request, connection: Connection, *, demo_organization_id: int | None
) -> int:
    """The id of the organization the request is scoped to; UnauthenticatedError if none.

    A request without an Authorization header reads the demo organization when there is
    one; a header that is present must hold a valid token, demo or not.
    """
    header = request.headers.get("authorization")
    if header is None:
        if demo_organization_id is not None:
            return demo_organization_id
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

    organization_id = await authenticate(connection, token)
    if organization_id is None:
        raise UnauthenticatedError(
            "the bearer token is unknown, expired or revoked; create a new one with "
            "'mailflow token create'",
            challenge=INVALID_TOKEN,
        )
    return organization_id


def unauthenticated_response(error: UnauthenticatedError) -> JSONResponse:
    """HTTP 401 with a GraphQL-shaped body and the Bearer challenge."""
    return JSONResponse(
        error_body(str(error), error.code),
        status_code=401,
        headers={"WWW-Authenticate": error.challenge},
    )
