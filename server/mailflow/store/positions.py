"""Follow positions: how far a followed log file has been read, per organization and path."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mailflow.store.connection import Connection
from mailflow.store.facts import require_transaction
from mailflow.store.sql import query


@dataclass(frozen=True)
class FollowPosition:
    """A place in one file: which file (device, inode, a hash of its first bytes) and where.

    ``offset`` is the byte after the last line read; ``fingerprint`` is the SHA-256 of the
    file's first ``fingerprint_bytes`` bytes; ``parser_state`` the parser's open messages
    after that line.
    """

    device: int
    inode: int
    offset: int
    fingerprint: bytes
    fingerprint_bytes: int
    parser_state: dict[str, Any]


async def find_position(
    connection: Connection, organization_id: int, path: str
) -> FollowPosition | None:
    """The position saved for the organization in the file at ``path``, or None."""
    row = await connection.fetchrow(query("follow_position_find"), organization_id, path)
    if row is None:
        return None
    return FollowPosition(
        device=int(row["device"]),
        inode=int(row["inode"]),
        offset=row["byte_offset"],
        fingerprint=bytes(row["fingerprint"]),
        fingerprint_bytes=row["fingerprint_bytes"],
        parser_state=json.loads(row["parser_state"]),
    )


async def save_position(
    connection: Connection, organization_id: int, path: str, position: FollowPosition
) -> None:
    """Record the position, inside the transaction that stores the facts it covers."""
    require_transaction(connection, "save_position")
    await connection.execute(
        query("follow_position_save"), organization_id, path, position.device, position.inode,
        position.offset, position.fingerprint, position.fingerprint_bytes,
        json.dumps(position.parser_state, separators=(",", ":")),
    )
