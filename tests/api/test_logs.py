from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator

import httpx
import pytest

from mailflow.logs import log_handler, request_logged_as, uses_json
from mailflow.store.tokens import TokenRole

from .conftest import Seed


@pytest.fixture
def api_log() -> Iterator[io.StringIO]:
    """What the API logs, through a handler in the default (auto) format on a pipe-like
    stream."""
    stream = io.StringIO()
    handler = log_handler("auto", stream)
    logger = logging.getLogger("mailflow.api")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_auto_means_text_on_a_terminal_and_json_elsewhere() -> None:
    leader, follower = os.openpty()
    try:
        with os.fdopen(follower, "w") as terminal:
            assert not uses_json("auto", terminal)
            assert uses_json("json", terminal)
    finally:
        os.close(leader)
    assert uses_json("auto", io.StringIO())
    assert not uses_json("text", io.StringIO())


def test_a_json_line_has_time_level_logger_message_and_extra_keys() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("mailflow.test_logs")
    logger.addHandler(log_handler("json", stream))
    logger.propagate = False
    try:
        with request_logged_as("req-12345678"):
            logger.warning("stored %d facts", 3,
                           extra={"accepted": 3, "color_message": "\x1b[1mstored\x1b[0m"})
        logger.warning("outside a request")
    finally:
        logger.handlers.clear()
        logger.propagate = True

    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert inside["message"] == "stored 3 facts"
    assert inside["level"] == "WARNING"
    assert inside["logger"] == "mailflow.test_logs"
    assert inside["request_id"] == "req-12345678"
    assert inside["accepted"] == 3
    assert "time" in inside
    assert "color_message" not in inside, "uvicorn's coloured copy of the message is left out"
    assert "request_id" not in outside


def test_text_lines_are_for_people() -> None:
    stream = io.StringIO()
    handler = log_handler("text", stream)
    handler.handle(logging.makeLogRecord({"name": "mailflow.x", "levelname": "INFO",
                                          "levelno": logging.INFO, "msg": "hello"}))

    assert stream.getvalue().rstrip().endswith("INFO mailflow.x: hello")


async def test_an_ingest_request_logs_one_json_line_with_its_request_id_and_counts(
    client: httpx.AsyncClient, seed: Seed, organization_id: int, api_log: io.StringIO
) -> None:
    token = await seed.token(organization_id, role=TokenRole.INGEST)
    record = {"source_key": "k1", "occurred_at": "2025-01-01T10:00:00Z",
              "direction": "INBOUND", "tls_version": "TLS1_2",
              "sender_domain": "partner.example", "recipient_domains": ["acme.example"]}

    answer = await client.post("/ingest", content=json.dumps(record).encode(), headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson",
        "X-Request-ID": "push-0001-abcd"})

    lines = [json.loads(line) for line in api_log.getvalue().splitlines()]
    assert answer.status_code == 200
    stored = next(line for line in lines if line["message"] == "ingest request stored")
    assert stored["request_id"] == "push-0001-abcd"
    assert stored["accepted"] == 1
    assert "partner.example" not in api_log.getvalue(), "no addresses or domains at info"
