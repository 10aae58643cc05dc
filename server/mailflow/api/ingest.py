"""POST /ingest: log shippers push message facts in mailflow's record format.

The body is NDJSON (``application/x-ndjson``, ``application/jsonl`` or ``application/json``
holding one object per line) or CSV (``text/csv``, a header line first), plain or with
``Content-Encoding: gzip``. It is read as it arrives and stored in batches, so its size is
not limited by memory. The answer counts the records accepted (newly stored), duplicate
(stored before) and rejected, with the line number and reason of each rejected one.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

import asyncpg
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from mailflow.api.auth import (
    ForbiddenError,
    UnauthenticatedError,
    forbidden_response,
    grant_of,
    unauthenticated_response,
)
from mailflow.api.body import RequestError, UnsupportedContentTypeError
from mailflow.api.errors import (
    INTERNAL_MESSAGE,
    INTERNAL_SERVER_ERROR,
    error_body,
    log_unavailable,
    unavailable_response,
)
from mailflow.ingest.push import BrokenStreamError, PushResult, gunzipped, load_pushed_records
from mailflow.store.availability import is_database_unavailable, pooled
from mailflow.store.isolation import service_transaction
from mailflow.store.tokens import TokenRole

log = logging.getLogger("mailflow.api")

RECORD_KINDS = {
    "application/x-ndjson": "ndjson",
    "application/jsonl": "ndjson",
    "application/json": "ndjson",
    "text/csv": "csv",
}


class IngestEndpoint:
    """Serves POST /ingest for tokens with the ingest role."""

    def __init__(
        self, pool: asyncpg.Pool, on_push: Callable[[PushResult], None] | None = None
    ) -> None:
        self.pool = pool
        self.on_push = on_push

    async def handle(self, request: Request) -> Response:
        """Store the pushed records; ``on_push`` learns what was committed, whatever the end."""
        result = PushResult()
        try:
            return await self._push(request, result)
        finally:
            if self.on_push is not None:
                self.on_push(result)

    async def _push(self, request: Request, result: PushResult) -> Response:
        request_id = request.state.request_id
        try:
            kind = record_kind(request)
            chunks = decoded_body(request)
            organization_id = await self._organization(request)
            await load_pushed_records(self.pool, organization_id, chunks, kind, result=result)
        except UnauthenticatedError as error:
            return unauthenticated_response(error)
        except ForbiddenError as error:
            return forbidden_response(error)
        except (RequestError, BrokenStreamError) as error:
            status = getattr(error, "status_code", 400)
            return JSONResponse({**error_body(str(error), error.code), **counts(result)},
                                status_code=status)
        except ClientDisconnect:
            log.info("an ingest client went away mid-body; what was committed is kept",
                     extra={"request_id": request_id, "accepted": result.accepted})
            return Response(status_code=400)
        except Exception as error:
            if is_database_unavailable(error):
                log_unavailable(request_id, f"{type(error).__name__}: {error}")
                return unavailable_response(request_id, **counts(result))
            log.exception("ingest request %s failed", request_id,
                          extra={"request_id": request_id})
            body = error_body(INTERNAL_MESSAGE, INTERNAL_SERVER_ERROR, requestId=request_id)
            return JSONResponse({**body, **counts(result)}, status_code=500)

        log.info("ingest request stored", extra={"request_id": request_id, **counts(result)})
        return JSONResponse({**counts(result), "rejections": [
            {"line": rejection.line, "reason": rejection.reason}
            for rejection in result.rejections
        ]})

    async def _organization(self, request: Request) -> int:
        async with pooled(self.pool) as connection, service_transaction(connection):
            grant = await grant_of(request, connection, demo_organization_id=None)
        if grant.role is not TokenRole.INGEST:
            raise ForbiddenError(
                f"this token has the {grant.role.value} role; pushing message facts takes a "
                "token with the ingest role ('mailflow token create --role ingest')"
            )
        return grant.organization_id


def counts(result: PushResult) -> dict[str, int]:
    """The counts of an answer, committed so far when the push broke off."""
    return {"accepted": result.accepted, "duplicates": result.duplicates,
            "rejected": result.rejected}


def record_kind(request: Request) -> str:
    """``ndjson`` or ``csv`` from the Content-Type; UnsupportedContentTypeError otherwise."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    kind = RECORD_KINDS.get(content_type)
    if kind is None:
        given = f'content type "{content_type[:60]}"' if content_type else "no Content-Type"
        raise UnsupportedContentTypeError(
            f"a push with {given} cannot be read: send records as "
            f"{', '.join(RECORD_KINDS)}, plain or with Content-Encoding: gzip"
        )
    return kind


def decoded_body(request: Request) -> AsyncIterator[bytes]:
    """The body's bytes as they arrive, decompressed; UnsupportedContentTypeError (415) for
    a Content-Encoding other than gzip or identity."""
    encodings = [
        encoding.strip().lower()
        for header in request.headers.getlist("content-encoding")
        for encoding in header.split(",")
        if encoding.strip() and encoding.strip().lower() != "identity"
    ]
    if not encodings:
        return request.stream()
    if encodings == ["gzip"] or encodings == ["x-gzip"]:
        return gunzipped(request.stream())
    raise UnsupportedContentTypeError(
        f'the Content-Encoding "{", ".join(encodings)[:60]}" is not supported: send the body '
        "plain or gzip-compressed with Content-Encoding: gzip"
    )
