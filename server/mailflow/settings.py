"""Settings read from the environment (and a .env file), with their defaults."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import platformdirs
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    # As root the embedded server runs as the postgres user, which cannot reach /root.
    if os.geteuid() == 0:
        return Path("/var/lib/mailflow")
    return Path(platformdirs.user_data_dir("mailflow"))


class Settings(BaseSettings):
    """mailflow's settings; each one is also an environment variable."""

    model_config = SettingsConfigDict(env_prefix="MAILFLOW_", env_file=".env", extra="ignore")

    database_url: str | None = Field(
        default=None,
        validation_alias="DATABASE_URL",
        description="PostgreSQL to use; without it an embedded server is started.",
    )
    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Where the embedded PostgreSQL keeps its data.",
    )
    max_range_days: int = Field(
        default=90, ge=1, le=3660, description="Longest report range, in days."
    )
    pool_min_size: int = Field(default=1, ge=0)
    pool_max_size: int = Field(default=10, ge=1)
    log_level: str = Field(default="INFO")

    @field_validator("database_url")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
