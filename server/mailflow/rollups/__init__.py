"""Daily rollups: message facts counted per organization, day, direction, connector, TLS version."""

from mailflow.rollups.refresh import (
    RollupIsolationError,
    add_to_rollups,
    rebuild_rollups,
    refresh_rollups,
)

__all__ = ["RollupIsolationError", "add_to_rollups", "rebuild_rollups", "refresh_rollups"]
