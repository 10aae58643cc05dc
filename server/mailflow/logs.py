"""Where log lines go and how they read: text for a person at a terminal, otherwise one JSON
object a line, with the request id of the request being answered."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TextIO

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JSON_FIELDS = ("asctime", "levelname", "name", "message")
JSON_NAMES = {"asctime": "time", "levelname": "level", "name": "logger"}
UNLOGGED_KEYS = ("color_message",)  # uvicorn's message again, with terminal colours

_request_id: ContextVar[str | None] = ContextVar("mailflow_request_id", default=None)


class RequestIdFilter(logging.Filter):
    """Gives a record made while a request is answered that request's id, unless it has one."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = _request_id.get()
        if request_id is not None and getattr(record, "request_id", None) is None:
            record.request_id = request_id
        return True


@contextlib.contextmanager
def request_logged_as(request_id: str) -> Iterator[None]:
    """Log lines made inside carry ``request_id``."""
    reset = _request_id.set(request_id)
    try:
        yield
    finally:
        _request_id.reset(reset)


def uses_json(log_format: str, stream: TextIO) -> bool:
    """Whether ``log_format`` (auto, json or text) means JSON on ``stream``."""
    if log_format == "auto":
        return not stream.isatty()
    return log_format == "json"


def configure_logging(level: str, log_format: str, stream: TextIO) -> None:
    """Send the process's log records to ``stream`` from ``level`` up, in ``log_format``."""
    logging.basicConfig(level=level, handlers=[log_handler(log_format, stream)])


def log_handler(log_format: str, stream: TextIO) -> logging.Handler:
    """A handler that writes to ``stream`` in ``log_format`` (auto, json or text)."""
    handler = logging.StreamHandler(stream)
    if uses_json(log_format, stream):
        handler.setFormatter(JsonFormatter(
            list(JSON_FIELDS), rename_fields=JSON_NAMES, json_ensure_ascii=False,
            reserved_attrs=[*RESERVED_ATTRS, *UNLOGGED_KEYS],
        ))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RequestIdFilter())
    return handler
