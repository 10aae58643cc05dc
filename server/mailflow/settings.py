"""Settings read from the environment (and a .env file), with their defaults."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit, urlunsplit

import limits
import platformdirs
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


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
    host: str = Field(default="127.0.0.1", description="Address `mailflow serve` listens on.")
    port: int = Field(default=8000, ge=1, le=65535,
                      description="Port `mailflow serve` listens on.")
    max_request_bytes: int = Field(
        default=100_000, ge=1_000, description="Largest GraphQL request body, in bytes."
    )
    max_query_tokens: int = Field(
        default=2_000, ge=200, description="Most tokens a GraphQL document may hold."
    )
    max_query_depth: int = Field(
        default=15, ge=5,
        description="Deepest nesting of fields; the standard introspection query needs 15.",
    )
    max_query_aliases: int = Field(
        default=30, ge=0, description="Most aliases in an operation, fragments expanded."
    )
    max_query_directives: int = Field(
        default=50, ge=0, description="Most directives in an operation, fragments expanded."
    )
    max_alias_length: int = Field(
        default=64, ge=1,
        description="Longest alias, in characters; the answer repeats it for every item.",
    )
    max_query_cost: int = Field(
        default=30_000, ge=100, description="Most cost points an operation may need (README)."
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Browser origins allowed to call the API, comma-separated; none by default.",
    )
    database_statement_cache: bool = Field(
        default=True,
        description=(
            "Whether each connection keeps its prepared statements by name; switch it off "
            "behind a pooler in transaction or statement mode, such as PgBouncer's."
        ),
    )
    rate_limit: str = Field(
        default="20/second;600/minute",
        description="Requests per token (per client address without one); 'off' for none.",
    )
    introspection: bool = Field(
        default=True, description="Whether the schema answers introspection queries."
    )
    graphiql: bool = Field(default=True, description="Whether browsers get GraphiQL at /graphql.")
    pool_min_size: int = Field(default=1, ge=0, description="Connections the pool keeps open.")
    pool_max_size: int = Field(default=10, ge=1, description="Most connections the pool opens.")
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR.")
    # Retention, applied by `mailflow partitions maintain`: facts go by whole months once the
    # month is older than the fact retention; rollups, kept at least as long, go by day.
    fact_retention_days: int = Field(
        default=400, ge=1, le=36_500,
        description="Days of message facts kept (whole monthly partitions are dropped).",
    )
    rollup_retention_days: int = Field(
        default=1_100, ge=1, le=36_500,
        description="Days of daily rollups kept; at least the fact retention.",
    )

    # The response cache: answers of queries kept per organization and report version.
    response_cache: bool = Field(
        default=True,
        description="Whether query answers are cached until the organization's reports change.",
    )
    response_cache_mb: int = Field(
        default=64, ge=1, description="Most megabytes of answers the response cache holds."
    )

    # Live updates: subscriptions over WebSocket, told of rollup changes by LISTEN/NOTIFY.
    listen_url: str | None = Field(
        default=None,
        description=(
            "PostgreSQL the server LISTENs on for rollup changes; DATABASE_URL (or the "
            "embedded database) when unset. It must reach PostgreSQL directly: PgBouncer in "
            "transaction mode cannot keep a LISTEN."
        ),
    )
    max_subscriptions_per_connection: int = Field(
        default=20, ge=1, description="Most subscriptions one WebSocket connection may hold."
    )

    # The GraphQL contract: federation subgraph mode and automatic persisted queries.
    federation: bool = Field(
        default=False,
        description="Whether /graphql serves an Apollo Federation 2 subgraph (_service, "
                    "_entities; connectors are entities keyed by id).",
    )
    persisted_queries: bool = Field(
        default=True, description="Whether clients may send queries by hash (Apollo's APQ)."
    )
    persisted_queries_max_bytes: int = Field(
        default=10_000_000, ge=100_000,
        description="Most query text the persisted query store keeps in memory, in bytes.",
    )

    # Operations: metrics, logs (tracing follows OpenTelemetry's own OTEL_* variables).
    metrics: bool = Field(default=True, description="Whether GET /metrics answers.")
    metrics_token: SecretStr | None = Field(
        default=None, description="A bearer token that GET /metrics requires; none by default."
    )
    log_format: Literal["auto", "json", "text"] = Field(
        default="auto",
        description="json: one JSON object a line; text: for people; auto: text on a terminal.",
    )

    @field_validator("database_url", "listen_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("postgresql://", "postgres://")):
            raise ValueError(
                f"{redact(value)!r} is not a PostgreSQL URL: use "
                "postgresql://USER:PASSWORD@HOST:PORT/DATABASE, or leave it unset "
                "for the embedded database"
            )
        return value

    @field_validator("metrics_token", mode="before")
    @classmethod
    def _no_token_when_empty(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _format_in_any_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("data_dir", mode="before")
    @classmethod
    def _default_when_empty(cls, value: object) -> object:
        # Like an empty DATABASE_URL, an empty MAILFLOW_DATA_DIR means "not set", not ".".
        return _default_data_dir() if value == "" else value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        origins = [origin.strip().rstrip("/") for origin in value.split(",") if origin.strip()]
        for origin in origins:
            parts = urlsplit(origin)
            if origin != "*" and (parts.scheme not in ("http", "https") or not parts.netloc
                                  or parts.path or parts.query):
                raise ValueError(
                    f"{origin!r} is not an origin: write scheme://host[:port], such as "
                    "https://portal.example.com, separated by commas, or * for any origin"
                )
        return origins

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, value: str) -> str:
        rate = value.strip().lower()
        if rate in RATE_LIMIT_OFF:
            return "off"
        try:
            items = limits.parse_many(rate)
        except ValueError:
            items = []
        if not items or any(item.amount < 1 for item in items):
            raise ValueError(
                f"{value!r} is not a rate: write AMOUNT/UNIT (AMOUNT 1 or more, UNIT second, "
                "minute, hour or day), several separated by ';' (such as 20/second;600/minute), "
                "or off"
            )
        return rate

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"{value!r} is not a log level: use one of {', '.join(LOG_LEVELS)}")
        return level

    @model_validator(mode="after")
    def _pool_bounds(self) -> Settings:
        if self.pool_min_size > self.pool_max_size:
            raise ValueError(
                f"MAILFLOW_POOL_MIN_SIZE ({self.pool_min_size}) is larger than "
                f"MAILFLOW_POOL_MAX_SIZE ({self.pool_max_size})"
            )
        if self.rollup_retention_days < self.fact_retention_days:
            raise ValueError(
                f"MAILFLOW_ROLLUP_RETENTION_DAYS ({self.rollup_retention_days}) is shorter than "
                f"MAILFLOW_FACT_RETENTION_DAYS ({self.fact_retention_days}): rollups must be kept "
                "at least as long as the facts they count"
            )
        return self


RATE_LIMIT_OFF = ("off", "none", "")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def redact(url: str) -> str:
    """A database URL without its password, fit for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def describe_errors(error: ValidationError) -> str:
    """One line per bad setting, naming its environment variable and the value given."""
    lines = []
    for problem in error.errors():
        field = str(problem["loc"][0]).lower() if problem["loc"] else ""
        variable = "DATABASE_URL" if field == "database_url" else f"MAILFLOW_{field.upper()}"
        message = problem["msg"]
        if message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")  # our validators name the value
        elif field != "database_url" and "input" in problem:
            message = f"{problem['input']!r}: {message}"
        lines.append(f"{variable}: {message}" if field else message)
    return "; ".join(lines)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
