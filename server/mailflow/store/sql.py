"""Load the project's plain-SQL files by name."""

from __future__ import annotations

from functools import cache
from pathlib import Path


def sql_dir() -> Path:
    """The ``sql/`` folder: beside the package in a checkout, inside it when installed."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package.parents[1] / "sql", package / "sql"):
        if (candidate / "migrations").is_dir():
            return candidate
    raise FileNotFoundError(f"mailflow's sql/ folder is missing next to {package}")


@cache
def query(name: str) -> str:
    """The text of ``sql/queries/<name>.sql``."""
    return (sql_dir() / "queries" / f"{name}.sql").read_text(encoding="utf-8")
