"""How many requests one client may send: per bearer token, or per address without one.

The count is the ``limits`` package's sliding window counter in this process's memory: two
counters per client and limit, whatever the rate, where a moving window keeps a time stamp
per request. A request over the rate is refused before it is read or authenticated, so it
costs the database nothing. A token is counted by its hash whether it is valid or not; made-up
tokens are each counted on their own, and only the database's token lookup turns them away.
"""

from __future__ import annotations

import math
import time

import limits
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from starlette.requests import Request
from starlette.responses import JSONResponse

from mailflow.api.errors import error_body
from mailflow.store.tokens import token_hash

RATE_LIMITED = "RATE_LIMITED"


class RateLimit:
    """The rate of the settings (``20/second;600/minute``), counted per client."""

    def __init__(self, rate: str) -> None:
        self.rate = rate
        self.items = limits.parse_many(rate)
        self.limiter = SlidingWindowCounterRateLimiter(MemoryStorage())

    async def retry_after(self, request: Request) -> int | None:
        """Count the request; None when it is within the rate, else the seconds to wait."""
        key = client_key(request)
        for item in self.items:
            if not await self.limiter.hit(item, key):
                window = await self.limiter.get_window_stats(item, key)
                return max(1, math.ceil(window.reset_time - time.time()))
        return None

    def refusal(self, retry_after: int) -> JSONResponse:
        """HTTP 429 with ``Retry-After`` and a GraphQL-shaped body."""
        message = (
            f"too many requests: the limit is {self.rate} per token (per client address "
            f"without one); retry in {retry_after} s"
        )
        return JSONResponse(
            error_body(message, RATE_LIMITED, retryAfter=retry_after),
            status_code=429,
            headers={"Retry-After": str(retry_after)},
        )


def client_key(request: Request) -> str:
    """Whom a request is counted for: its bearer token's hash, else the client's address."""
    headers = request.headers.getlist("authorization")
    if len(headers) == 1:
        scheme, _, token = headers[0].strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return "token:" + token_hash(token.strip()).hex()
    address = request.client.host if request.client else "unknown"
    return "address:" + address
