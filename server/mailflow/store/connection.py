"""The connection type that store functions accept."""

from __future__ import annotations

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# A connection of its own or one borrowed from a pool: store functions accept both.
Connection = asyncpg.Connection | PoolConnectionProxy
