"""Automatic persisted queries, as Apollo's clients speak them.

A client sends ``extensions.persistedQuery = {"version": 1, "sha256Hash": ...}`` without the
query; the server answers PERSISTED_QUERY_NOT_FOUND unless it knows the hash, and the client
sends the query again with the hash, which the server checks and keeps. GET and POST alike.
Queries are kept in memory per server process, the least recently used dropped first once
the store holds ``max_bytes`` of query text; a server that forgot one just asks for it again.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from dataclasses import replace
from typing import Any

from strawberry.http import GraphQLRequestData

from mailflow.api.body import RequestError

PERSISTED_QUERY = "persistedQuery"
SUPPORTED_VERSION = 1
SHA256_HEX = re.compile(r"^[0-9a-fA-F]{64}$")


class PersistedQueryNotFoundError(RequestError):
    """The server does not know the hash: the client sends the query with it (HTTP 200, as
    Apollo's clients expect)."""

    code = "PERSISTED_QUERY_NOT_FOUND"
    status_code = 200


class PersistedQueryNotSupportedError(RequestError):
    """Persisted queries are switched off: the client sends whole queries (HTTP 200)."""

    code = "PERSISTED_QUERY_NOT_SUPPORTED"
    status_code = 200


class PersistedQueryHashMismatchError(RequestError):
    """The query sent is not the one the hash names."""

    code = "PERSISTED_QUERY_HASH_MISMATCH"


class PersistedQueryInvalidError(RequestError):
    """The persistedQuery extension is not of the shape version 1 has."""

    code = "BAD_REQUEST"


class PersistedQueries:
    """The queries clients persisted, keyed by their SHA-256, within ``max_bytes`` of text."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._queries: OrderedDict[str, str] = OrderedDict()
        self._bytes = 0

    def resolve(self, request: GraphQLRequestData) -> GraphQLRequestData:
        """``request`` with the query its hash names; it is kept when the request sent it."""
        extension = persisted_extension(request.extensions)
        if extension is None:
            return request
        sha256 = _checked_hash(extension)
        if request.query is None:
            return replace(request, query=self._known(sha256))
        actual = hashlib.sha256(request.query.encode()).hexdigest()
        if actual != sha256:
            raise PersistedQueryHashMismatchError(
                f"persistedQuery.sha256Hash is {sha256}, but the query's SHA-256 is {actual}: "
                "hash the query's text exactly as sent, UTF-8 encoded, in lower-case hex"
            )
        self._keep(sha256, request.query)
        return request

    def __len__(self) -> int:
        return len(self._queries)

    def _known(self, sha256: str) -> str:
        query = self._queries.get(sha256)
        if query is None:
            raise PersistedQueryNotFoundError(
                f"no persisted query has the hash {sha256}: send the query again with its "
                "hash, and later requests may leave it out"
            )
        self._queries.move_to_end(sha256)
        return query

    def _keep(self, sha256: str, query: str) -> None:
        size = len(query.encode())
        if sha256 in self._queries or size > self.max_bytes:
            return
        self._queries[sha256] = query
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, dropped = self._queries.popitem(last=False)
            self._bytes -= len(dropped.encode())


def persisted_extension(extensions: dict[str, Any] | None) -> object | None:
    """The request's persistedQuery extension, if it has one."""
    return None if extensions is None else extensions.get(PERSISTED_QUERY)


def refuse_persisted(request: GraphQLRequestData) -> GraphQLRequestData:
    """``request`` as it is, or PERSISTED_QUERY_NOT_SUPPORTED when it names a hash."""
    if persisted_extension(request.extensions) is not None:
        raise PersistedQueryNotSupportedError(
            "persisted queries are switched off on this server (MAILFLOW_PERSISTED_QUERIES): "
            "send the whole query in every request"
        )
    return request


def _checked_hash(extension: object) -> str:
    if not isinstance(extension, dict):
        raise PersistedQueryInvalidError(
            'extensions.persistedQuery must be an object such as {"version": 1, '
            '"sha256Hash": "<64 hex digits>"}'
        )
    version = extension.get("version")
    if version != SUPPORTED_VERSION or isinstance(version, bool):
        raise PersistedQueryInvalidError(
            f"persistedQuery version {version!r} is not supported: the server speaks version "
            f"{SUPPORTED_VERSION}"
        )
    sha256 = extension.get("sha256Hash")
    if not isinstance(sha256, str) or not SHA256_HEX.match(sha256):
        shown = repr(sha256)[:80]
        raise PersistedQueryInvalidError(
            f"persistedQuery.sha256Hash {shown} is not a SHA-256: pass the 64 hex digits of "
            "the query's SHA-256"
        )
    return sha256.lower()
