"""For the follow tests: synthetic inbound messages over TLS, and waiting for the database."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")
TIMEOUT = 8.0  # seconds a fact may take to show: a batch closes after about one


async def eventually(probe: Callable[[], Awaitable[T]], done: Callable[[T], bool]) -> T:
    """Poll ``probe()`` until ``done`` holds for its value; fail with the value after TIMEOUT."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        value = await probe()
        if done(value) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert done(value), value
    return value


def tls_message(n: int, *, version: str = "TLSv1.3") -> list[str]:
    """Five lines of one inbound message: connect, TLS, client=, queued, removed.

    Every message has its own smtpd pid, so its TLS handshake can only come from its own
    session; ``n`` up to 3599 keeps the time stamps within one hour of 27 Jan.
    """
    stamp = f"Jan 27 10:{n // 60:02d}:{n % 60:02d}"
    smtpd = f"mx1 postfix/smtpd[{1000 + n}]"
    queue_id = f"F{n:07d}"
    return [
        f"{stamp} {smtpd}: connect from mx.example.net[203.0.113.5]\n",
        f"{stamp} {smtpd}: Anonymous TLS connection established from "
        f"mx.example.net[203.0.113.5]: {version} with cipher TLS_AES_256_GCM_SHA384 "
        "(256/256 bits)\n",
        f"{stamp} {smtpd}: {queue_id}: client=mx.example.net[203.0.113.5]\n",
        f"{stamp} mx1 postfix/qmgr[50]: {queue_id}: from=<a@example.net>, size=1000, "
        "nrcpt=1 (queue active)\n",
        f"{stamp} mx1 postfix/qmgr[50]: {queue_id}: removed\n",
    ]


def tls_messages(start: int, count: int) -> str:
    return "".join(line for n in range(start, start + count) for line in tls_message(n))
