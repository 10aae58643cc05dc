"""Opaque global ids: base64 of "<type>:<database id>", the encoding Relay's node(id) expects."""

from __future__ import annotations

import base64
import binascii

from mailflow.errors import MailflowError
from mailflow.reports.errors import BadIdError

CONNECTOR = "Connector"
LONGEST_SHOWN_ID = 60


class TooManyIdsError(MailflowError):
    """A request names more objects by id than one field looks up."""

    code = "TOO_MANY_IDS"


def encode_global_id(type_name: str, database_id: int) -> str:
    """The global id of the ``type_name`` object with ``database_id``."""
    return base64.b64encode(f"{type_name}:{database_id}".encode()).decode("ascii")


def decode_global_id(type_name: str, global_id: str) -> int:
    """The database id inside ``global_id``; BadIdError unless it is a ``type_name`` id."""
    decoded = _decoded(global_id, type_name)
    prefix, _, number = decoded.partition(":")
    if prefix != type_name or not number.isascii() or not number.isdigit():
        raise _bad_id(type_name, global_id)
    database_id = int(number)
    if decoded != f"{type_name}:{database_id}" or not 0 < database_id < 2**63:
        raise _bad_id(type_name, global_id)
    return database_id


def global_id_type(global_id: str, known: tuple[str, ...]) -> str:
    """The type name ``global_id`` carries; BadIdError unless it is one of ``known``."""
    type_name = _decoded(global_id, " or ".join(known)).partition(":")[0]
    if type_name not in known:
        raise _bad_id(" or ".join(known), global_id)
    return type_name


def shown_id(global_id: str) -> str:
    """``global_id`` quoted for a message, cut short when it is long."""
    if len(global_id) <= LONGEST_SHOWN_ID:
        return repr(global_id)
    return repr(global_id[:LONGEST_SHOWN_ID] + "…")


def _decoded(global_id: str, expected: str) -> str:
    try:
        return base64.b64decode(global_id.encode("ascii"), validate=True).decode("ascii")
    except (UnicodeError, binascii.Error):
        raise _bad_id(expected, global_id) from None


def _bad_id(type_name: str, global_id: str) -> BadIdError:
    return BadIdError(
        f"{shown_id(global_id)} is not a {type_name} id; pass the id field of a {type_name} "
        "exactly as this API returned it"
    )
