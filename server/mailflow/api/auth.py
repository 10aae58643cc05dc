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
INVALID_REQUEST = 'Bearer error="invalid_request"'


class UnauthenticatedError(MailflowError):
    """The request carries no usable bearer token."""

    code = "UNAUTHENTICATED"
    status_code = 401

    def __init__(self, message: str, *, challenge: str = MISSING_TOKEN) -> None:
        super().__init__(message)
        self.challenge = challenge


class RepeatedAuthorizationError(UnauthenticatedError):
    """The request carries several Authorization headers, so whose request it is is unclear."""

    code = "BAD_REQUEST"
    status_code = 400


async def organization_of(
    request: Request, connection: Connection, *, demo_organization_id: int | None
) -> int:
    """The id of the organization the request is scoped to; UnauthenticatedError if none.

    A request without an Authorization header reads the demo organization when there is
    one; a header that is present must hold a valid token, demo or not, and be the only one.
    """
    headers = request.headers.getlist("authorization")
    if len(headers) > 1:
        raise RepeatedAuthorizationError(
            f"the request has {len(headers)} Authorization headers; send exactly one, "
            "'Authorization: Bearer <token>'",
            challenge=INVALID_REQUEST,
        )
    header = headers[0] if headers else None
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
    """HTTP 401 (400 for a malformed header) with a GraphQL-shaped body and the challenge."""
    return JSONResponse(
        error_body(str(error), error.code),
        status_code=error.status_code,
        headers={"WWW-Authenticate": error.challenge},
    )
