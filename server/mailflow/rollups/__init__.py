"""Daily rollups: message facts counted per organization, day, direction, connector, TLS version."""

from mailflow.rollups.refresh import RollupIsolationError, rebuild_rollups, refresh_rollups

__all__ = ["RollupIsolationError", "rebuild_rollups", "refresh_rollups"]
