"""Answers of queries, kept per organization until its report version changes.

A query's answer depends on the organization's data, the request (document, variables,
operation name, content type), the role it is read with and today's date (default ranges end
today). The report version (``mailflow.store.report_versions``) grows in the transaction that
changes any of that data, so an answer stored under one version stays right while the version
stays; a request that sees a newer version drops every answer of that organization, and no
other. The cache lives in the server process's memory and is bounded in bytes, the least
recently used answer going first.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date

from mailflow.store.tokens import TokenRole


@dataclass(frozen=True, slots=True)
class AnswerKey:
    """Which answer: the organization, the report version it was read at, and a digest of the
    rest (role, today, the request)."""

    organization_id: int
    version: int
    digest: bytes


def answer_key(
    organization_id: int,
    version: int,
    *,
    role: TokenRole,
    today: date,
    method: str,
    content_type: str,
    request: bytes,
) -> AnswerKey:
    """The key of the answer to ``request`` (a POST's body, or a GET's query string)."""
    digest = hashlib.blake2b(digest_size=16)
    for part in (role.value, today.isoformat(), method, content_type):
        digest.update(part.encode())
        digest.update(b"\0")
    digest.update(request)
    return AnswerKey(organization_id, version, digest.digest())


class ResponseCache:
    """Answer bodies by key, at most ``max_bytes`` of them (bodies and digests counted)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self.hits = 0
        self.misses = 0
        # (organization, digest) -> (body, the name of the operation it answers)
        self._answers: OrderedDict[tuple[int, bytes], tuple[bytes, str | None]] = OrderedDict()
        self._by_organization: dict[int, set[bytes]] = {}
        self._versions: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._answers)

    def get(self, key: AnswerKey) -> bytes | None:
        """The stored answer for ``key``, or None."""
        current = self._current(key)
        answer = self._answers.get((key.organization_id, key.digest)) if current else None
        if answer is None:
            self.misses += 1
            return None
        self._answers.move_to_end((key.organization_id, key.digest))
        self.hits += 1
        return answer[0]

    def operation_of(self, key: AnswerKey) -> str | None:
        """The name of the operation whose answer is kept for ``key``, if it has one."""
        answer = self._answers.get((key.organization_id, key.digest))
        return None if answer is None else answer[1]

    def put(self, key: AnswerKey, body: bytes, operation: str | None = None) -> None:
        """Keep ``body`` as the answer for ``key`` (of the operation named ``operation``),
        unless it alone would fill the cache or a newer version of the organization is known."""
        cost = _cost(body)
        if cost > self.max_bytes or not self._current(key):
            return
        self._drop(key.organization_id, key.digest)
        self._answers[(key.organization_id, key.digest)] = (body, operation)
        self._by_organization.setdefault(key.organization_id, set()).add(key.digest)
        self.size += cost
        while self.size > self.max_bytes:
            (organization_id, digest), _ = next(iter(self._answers.items()))
            self._drop(organization_id, digest)

    def _current(self, key: AnswerKey) -> bool:
        """Whether ``key``'s version is the newest known for its organization; a newer one
        than known drops the organization's answers and becomes the known one."""
        known = self._versions.get(key.organization_id)
        if known is None or key.version > known:
            for digest in list(self._by_organization.get(key.organization_id, ())):
                self._drop(key.organization_id, digest)
            self._versions[key.organization_id] = key.version
            return True
        return key.version == known

    def _drop(self, organization_id: int, digest: bytes) -> None:
        answer = self._answers.pop((organization_id, digest), None)
        if answer is None:
            return
        self.size -= _cost(answer[0])
        digests = self._by_organization[organization_id]
        digests.discard(digest)
        if not digests:
            del self._by_organization[organization_id]


def _cost(body: bytes) -> int:
    """Bytes an answer is counted for: its body and its key's digest."""
    return len(body) + 16
