"""What a GraphQL request over HTTP may carry, read before any GraphQL runs.

A POST carries one JSON object, ``{"query": ..., "variables": ..., "operationName": ...}``,
as ``application/json``; a GET carries the same fields as query-string parameters, with
``variables`` and ``extensions`` as URL-encoded JSON. A request whose
``extensions.persistedQuery`` names its query by hash may leave ``query`` out. A body is
read up to the size limit and no further.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from starlette.datastructures import QueryParams
from starlette.requests import ClientDisconnect, Request
from starlette.types import Message
from strawberry.http import GraphQLRequestData

from mailflow.errors import MailflowError

EXAMPLE = '{"query": "{ connectors { name } }"}'
SHAPE = f'the body must be a JSON object with a "query" string, such as {EXAMPLE}'
# A JSON \uXXXX escape of half a surrogate pair decodes to a string that is no Unicode text:
# it could not be encoded for the database, nor for the answer that quotes it.
UNPAIRED_SURROGATE = re.compile("[\ud800-\udfff]")
GET_PARAMETERS = ("query", "variables", "operationName", "extensions")
ACCEPTED = (
    'send a POST with "Content-Type: application/json" and a JSON object body, or a GET '
    'with the query in the "query" parameter; form and multipart bodies are not supported'
)


class RequestError(MailflowError):
    """A request refused before GraphQL sees it, with the HTTP status it is answered with."""

    code = "BAD_REQUEST"
    status_code = 400


class UnsupportedContentTypeError(RequestError):
    """A POST body in a format other than JSON."""

    status_code = 415


class RequestTooLargeError(RequestError):
    """A body or query string over the size limit."""

    code = "REQUEST_TOO_LARGE"
    status_code = 413


async def bounded(request: Request, limit: int) -> Request:
    """``request`` with its body read into memory; RequestTooLargeError past ``limit`` bytes.

    A declared Content-Length over the limit is refused before a byte of the body is read.
    """
    if request.method == "GET":
        size = len(request.scope.get("query_string", b""))
        if size > limit:
            raise RequestTooLargeError(f"the query string is {size} bytes; {_limit(limit)}")
        return request

    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RequestTooLargeError(f"the request body is {int(declared)} bytes; {_limit(limit)}")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise RequestTooLargeError(
                    f"the request body is more than {limit} bytes; {_limit(limit)}"
                )
    except ClientDisconnect:
        raise RequestError("the client went away before it sent the whole body") from None
    return _replaying(request, bytes(body))


def from_json_body(body: bytes) -> GraphQLRequestData:
    """The GraphQL request a POST body holds."""
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise RequestError(
            f"the request body is not UTF-8: byte {error.start} cannot be decoded; {SHAPE}"
        ) from None
    except RecursionError:
        raise RequestError(f"the request body nests JSON too deeply; {SHAPE}") from None
    except ValueError as error:
        raise RequestError(f"the request body is not valid JSON ({error}); {SHAPE}") from None

    if isinstance(data, list):
        raise RequestError(
            "the request body is a JSON array, but batched requests are not supported: "
            f"send one operation per request; {SHAPE}"
        )
    if not isinstance(data, dict):
        raise RequestError(f"the request body is JSON but {_kind(data)}, not an object; {SHAPE}")
    return request_data(data, "field", SHAPE)


def from_query_string(params: Mapping[str, Any]) -> GraphQLRequestData:
    """The GraphQL request a GET's query-string parameters hold."""
    data = {name: params.get(name) for name in ("query", "operationName")}
    for name in ("variables", "extensions"):
        text = params.get(name)
        if not text:
            continue
        try:
            data[name] = json.loads(text)
        except (ValueError, RecursionError):
            raise RequestError(
                f'the "{name}" query parameter is not valid JSON: pass a JSON object, '
                'URL-encoded, such as variables=%7B%22start%22%3A%222025-01-01%22%7D'
            ) from None
    return request_data(data, "parameter", 'pass the GraphQL document in "query"')


def refuse_unread_parameters(params: QueryParams) -> None:
    """Raise RequestError for a GET parameter that is not one of GET_PARAMETERS, or is one
    given more than once: either would be dropped unseen."""
    unknown = sorted(set(params) - set(GET_PARAMETERS))
    if unknown:
        raise RequestError(
            f'unknown query parameter "{unknown[0][:40]}": GET /graphql reads '
            f"{', '.join(GET_PARAMETERS[:-1])} and {GET_PARAMETERS[-1]}"
        )
    for name in GET_PARAMETERS:
        count = len(params.getlist(name))
        if count > 1:
            raise RequestError(f'the "{name}" query parameter is given {count} times; give it once')


def unsupported_content_type(content_type: str) -> UnsupportedContentTypeError:
    """The error for a POST whose Content-Type is not JSON."""
    given = f'content type "{content_type}"' if content_type else "a request without Content-Type"
    return UnsupportedContentTypeError(f"unsupported {given}: {ACCEPTED}")


def request_data(
    data: Mapping[str, Any], noun: str, guidance: str, *, persisted: bool = True
) -> GraphQLRequestData:
    """The operation ``data`` names; RequestError for a field of the wrong JSON type.

    With ``persisted``, a query named by hash in ``extensions.persistedQuery`` may be left out.
    """
    query = data.get("query")
    extensions = data.get("extensions")
    by_hash = persisted and isinstance(extensions, dict) \
        and extensions.get("persistedQuery") is not None
    if not (query is None and by_hash) and (not isinstance(query, str) or not query.strip()):
        raise RequestError(f'the "query" {noun} is missing or not a non-empty string; {guidance}')
    for name, kind in {"variables": dict, "extensions": dict, "operationName": str}.items():
        value = data.get(name)
        if value is not None and not isinstance(value, kind):
            wanted = "a JSON object" if kind is dict else "a string"
            raise RequestError(f'the "{name}" {noun} must be {wanted} or null, not {_kind(value)}')
    _refuse_unpaired_surrogates(data)
    return GraphQLRequestData(
        query=query,
        variables=data.get("variables"),
        operation_name=data.get("operationName"),
        extensions=data.get("extensions"),
    )


def _refuse_unpaired_surrogates(data: Mapping[str, Any]) -> None:
    """Raise RequestError when a string of ``data``, or of what it nests, is not Unicode text."""
    pending: list[Any] = [data]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            pending += [*value.keys(), *value.values()]
        elif isinstance(value, list):
            pending += value
        elif isinstance(value, str) and (found := UNPAIRED_SURROGATE.search(value)):
            raise RequestError(
                "the request holds a string with an unpaired surrogate "
                f"(\\u{ord(found[0]):04x}), which is no Unicode character: escape a character "
                "outside the Basic Multilingual Plane as its surrogate pair, such as "
                "\\ud83d\\ude00"
            )


def _replaying(request: Request, body: bytes) -> Request:
    """A request like ``request`` whose body is ``body``, already read."""
    delivered = False

    async def receive() -> Message:
        nonlocal delivered
        if delivered:
            return await request.receive()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(request.scope, receive)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _limit(limit: int) -> str:
    return f"the limit is {limit} bytes (MAILFLOW_MAX_REQUEST_BYTES)"
