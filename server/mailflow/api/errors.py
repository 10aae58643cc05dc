"""The one boundary where errors become what a client sees: a message and ``extensions.code``.

Domain errors (MailflowError) keep their text and code. graphql-core's own errors keep their
text: GRAPHQL_PARSE_FAILED for syntax, GRAPHQL_VALIDATION_FAILED for a document that does not
fit the schema, BAD_USER_INPUT for variables and arguments that do not fit their types.
A database that cannot be reached is DATABASE_UNAVAILABLE, answered with HTTP 503 and
Retry-After. Anything else is a bug: the client gets "Internal server error" and a request
id, the log gets the exception. No stack trace, SQL or data of another organization ever
reaches a client.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import GraphQLError, GraphQLSyntaxError
from graphql import InitialIncrementalExecutionResult as InitialIncrementalResult
from graphql.validation.validate import ValidationAbortedError
from starlette.responses import JSONResponse
from strawberry.extensions import SchemaExtension
from strawberry.types.execution import ExecutionResult, StreamExecutionResult

from mailflow.errors import MailflowError
from mailflow.store.availability import is_database_unavailable

log = logging.getLogger("mailflow.api")

INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"
INTERNAL_MESSAGE = "Internal server error"
PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
BAD_USER_INPUT = "BAD_USER_INPUT"
BAD_REQUEST = "BAD_REQUEST"
DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"
DATABASE_UNAVAILABLE_MESSAGE = "The database is unavailable; retry in a few seconds"
DATABASE_RETRY_AFTER_SECONDS = 2
VALIDATION_ABORTED_MESSAGE = (
    "Validation aborted: the document gives the same selection too many fields to compare "
    "them all; ask for each field once"
)


class ErrorBoundary(SchemaExtension):
    """Rewrite every error of an operation into one a client may see (one instance per request)."""

    def __init__(self) -> None:
        self._executing = False

    def on_execute(self) -> Iterator[None]:
        self._executing = True
        yield

    def on_operation(self) -> Iterator[None]:
        yield
        self._code(self.execution_context.result)

    def on_stream_result(self, result: StreamExecutionResult) -> Iterator[None]:
        """Code each answer of a WebSocket operation before it is sent: those pass by
        ``on_operation``, which ends only with the stream."""
        if isinstance(result, ExecutionResult):
            self._code(result)
        yield

    def _code(
        self, result: ExecutionResult | GraphQLExecutionResult | InitialIncrementalResult | None
    ) -> None:
        if result is None or not result.errors:
            return
        request_id = getattr(self.execution_context.context, "request_id", None)
        result.errors = [
            error if has_code(error) else
            client_error(error, executing=self._executing, request_id=request_id)
            for error in result.errors
        ]


def client_error(error: GraphQLError, *, executing: bool, request_id: str | None) -> GraphQLError:
    """``error`` as a client may see it, with ``extensions.code``.

    Before execution every error is about the document; during execution an error without a
    field path is about the variables, and one with a path that is no domain error is ours.
    """
    cause = error.original_error
    if is_database_unavailable(cause):
        return unavailable_error(error, request_id)
    if isinstance(cause, MailflowError):
        return _with_code(error, str(cause), cause.code)
    if isinstance(error, GraphQLSyntaxError):
        return _with_code(error, error.message, PARSE_FAILED)
    if isinstance(error, ValidationAbortedError):
        return _with_code(error, VALIDATION_ABORTED_MESSAGE, VALIDATION_FAILED)
    if not executing:
        return _with_code(error, error.message, VALIDATION_FAILED)
    if error.path is None or _is_argument_error(cause):
        return _with_code(error, error.message, BAD_USER_INPUT)
    return internal_error(error, request_id)


def _is_argument_error(cause: Exception | None) -> bool:
    """Whether graphql-core refused a field's argument, e.g. a null variable for a non-null
    one: its messages for that start "Argument '"; a value it could not serialize is ours."""
    return isinstance(cause, GraphQLError) and cause.message.startswith("Argument '")


def escaped_error(error: GraphQLError, request_id: str | None) -> GraphQLError:
    """An error raised where the boundary could not see it, from an extension's hook.

    QueryLimits parses inside its hook, so a syntax error, a document over the token limit
    and a missing operation name arrive here; anything else is ours.
    """
    cause = error.original_error
    if is_database_unavailable(cause):
        return unavailable_error(error, request_id)
    if isinstance(cause, MailflowError):
        return _with_code(error, str(cause), cause.code)
    if isinstance(error, GraphQLSyntaxError):
        return _with_code(error, error.message, PARSE_FAILED)
    return internal_error(error, request_id)


def internal_error(error: GraphQLError, request_id: str | None) -> GraphQLError:
    """The masked form of an unexpected error, which is logged here with its cause."""
    cause = error.original_error or error
    log.error(
        "%s failed with %s in request %s; the client saw only 'Internal server error' and the "
        "request id",
        _path(error), type(cause).__name__, request_id,
        exc_info=(type(cause), cause, cause.__traceback__),
        extra={"request_id": request_id, "graphql_path": error.path},
    )
    return GraphQLError(
        INTERNAL_MESSAGE,
        nodes=error.nodes,
        path=error.path,
        extensions={"code": INTERNAL_SERVER_ERROR, "requestId": request_id},
    )


def unavailable_error(error: GraphQLError, request_id: str | None) -> GraphQLError:
    """DATABASE_UNAVAILABLE in place of a driver error that says where the database is."""
    return GraphQLError(
        DATABASE_UNAVAILABLE_MESSAGE,
        nodes=error.nodes,
        path=error.path,
        extensions={"code": DATABASE_UNAVAILABLE, "requestId": request_id},
    )


def is_unavailable(error: GraphQLError) -> bool:
    """Whether ``error`` passed the boundary as DATABASE_UNAVAILABLE."""
    return bool(error.extensions and error.extensions.get("code") == DATABASE_UNAVAILABLE)


def unavailable_response(request_id: str, **fields: Any) -> JSONResponse:
    """HTTP 503 with ``Retry-After``, for a request the database could not answer."""
    body = error_body(DATABASE_UNAVAILABLE_MESSAGE, DATABASE_UNAVAILABLE, requestId=request_id)
    return JSONResponse(
        {**body, **fields},
        status_code=503,
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
    )


def log_unavailable(request_id: str, reason: str) -> None:
    """One warning per request the database could not answer; no traceback, it is no bug."""
    log.warning(
        "request %s answered 503: the database is unavailable (%s); each request tries "
        "again, so nothing needs restarting once PostgreSQL is back",
        request_id, reason,
        extra={"request_id": request_id},
    )


def has_code(error: GraphQLError) -> bool:
    """Whether ``error`` already passed the boundary."""
    return bool(error.extensions and "code" in error.extensions)


def error_body(message: str, code: str, **extensions: Any) -> dict[str, Any]:
    """A GraphQL-shaped response body with one error, for answers given outside execution."""
    return {"errors": [{"message": message, "extensions": {"code": code, **extensions}}]}


def _with_code(error: GraphQLError, message: str, code: str) -> GraphQLError:
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions={**(error.extensions or {}), "code": code},
    )


def _path(error: GraphQLError) -> str:
    if not error.path:
        return "the operation"
    return "field " + ".".join(str(part) for part in error.path)
