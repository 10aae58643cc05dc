"""How many requests one client may send: per bearer token, or per address without one.

The count is the ``limits`` package's sliding window counter in this process's memory: two
counters per client and limit, whatever the rate, where a moving window keeps a time stamp
per request. A request over the rate is refused before it is read or authenticated, so it
costs the database nothing.

A token is counted as itself once the server has accepted it, and its first request
counts as soon as it is accepted. Tokens the server refused (401) count against the client's
address, and an address over the rate with them is refused before its next unknown token is
looked up. So made-up tokens open no counts of their own: the counts, whose upkeep in
``limits`` grows with their number, are bounded by the tokens remembered (KNOWN_TOKENS) and
the addresses (an IPv6 client by its /64 network, which one client usually holds whole).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from ipaddress import IPv6Address, ip_address, ip_network

import limits
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse

from mailflow.api.errors import error_body
from mailflow.store.tokens import token_hash

RATE_LIMITED = "RATE_LIMITED"
KNOWN_TOKENS = 10_000
"""Accepted tokens remembered, the least recently used forgotten first."""


class RateLimit:
    """The rate of the settings (``20/second;600/minute``), counted per client."""

    def __init__(self, rate: str) -> None:
        self.rate = rate
        self.items = limits.parse_many(rate)
        self.limiter = SlidingWindowCounterRateLimiter(MemoryStorage())
        self.known: OrderedDict[str, None] = OrderedDict()

    async def admit(self, request: HTTPConnection) -> JSONResponse | None:
        """None when the request may be answered, else its refusal (HTTP 429).

        A request without a token, or with a known one, is counted here.
        """
        token = bearer_hash(request)
        if token is None:
            wait = await self._hit("address:" + address_of(request))
        elif token in self.known:
            self.known.move_to_end(token)
            wait = await self._hit("token:" + token)
        else:
            wait = await self._spent("refused:" + address_of(request))
            if wait is not None:
                return refusal(
                    f"too many requests with tokens this server refused (401) from this "
                    f"address: the limit is {self.rate}; retry in {wait} s", wait)
        if wait is None:
            return None
        return refusal(
            f"too many requests: the limit is {self.rate} per token (per client address "
            f"without one); retry in {wait} s", wait)

    async def settle(self, request: HTTPConnection, status: int) -> None:
        """Learn from the answer: a token accepted (any status but 401) is remembered and its
        first request counted; a refused one is forgotten and counted against the address."""
        token = bearer_hash(request)
        if token is None:
            return
        if status == 401:
            self.known.pop(token, None)
            await self._hit("refused:" + address_of(request))
            return
        if token not in self.known:
            await self._hit("token:" + token)
        self.known[token] = None
        self.known.move_to_end(token)
        if len(self.known) > KNOWN_TOKENS:
            self.known.popitem(last=False)

    async def admit_client(self, key: str) -> int | None:
        """Count a request of ``client_key``'s client; None when within the rate, else the
        seconds to wait. For a WebSocket's subscriptions, whose token is already accepted."""
        return await self._hit(key)

    async def _hit(self, key: str) -> int | None:
        """Count a request for ``key``; None when within the rate, else the seconds to wait."""
        for item in self.items:
            if not await self.limiter.hit(item, key):
                return await self._wait(item, key)
        return None

    async def _spent(self, key: str) -> int | None:
        """Like ``_hit`` without counting: whether ``key`` has room for one more."""
        for item in self.items:
            if not await self.limiter.test(item, key):
                return await self._wait(item, key)
        return None

    async def _wait(self, item: limits.RateLimitItem, key: str) -> int:
        window = await self.limiter.get_window_stats(item, key)
        return max(1, math.ceil(window.reset_time - time.time()))

def refusal(message: str, retry_after: int) -> JSONResponse:
    """HTTP 429 with ``Retry-After`` and a GraphQL-shaped body."""
    return JSONResponse(
        error_body(message, RATE_LIMITED, retryAfter=retry_after),
        status_code=429,
        headers={"Retry-After": str(retry_after)},
    )


def client_key(authorization: str | None, connection: HTTPConnection) -> str:
    """The key a client is counted by: its bearer token in ``authorization``, else its
    address."""
    token = None if authorization is None else header_hash(authorization)
    return "address:" + address_of(connection) if token is None else "token:" + token


def bearer_hash(request: HTTPConnection) -> str | None:
    """The hash of the request's one bearer token, or None."""
    headers = request.headers.getlist("authorization")
    if len(headers) != 1:
        return None
    return header_hash(headers[0])


def header_hash(header: str) -> str | None:
    """The hash of the bearer token of an Authorization value, or None."""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token_hash(token.strip()).hex()


def address_of(request: HTTPConnection) -> str:
    """The client's address; for IPv6 its /64 network."""
    host = request.client.host if request.client else "unknown"
    try:
        address = ip_address(host)
    except ValueError:
        return host
    if isinstance(address, IPv6Address):
        return str(ip_network(f"{address}/64", strict=False))
    return str(address)
