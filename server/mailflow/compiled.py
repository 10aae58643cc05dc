"""The modules that mypyc compiles to C when mailflow is built or installed, and whether
their compiled form is older than their source (an edited checkout not installed again)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path

# The same files as the mypyc hook's `include` in pyproject.toml.
COMPILED_MODULES = (
    "mailflow.domain",
    "mailflow.ingest.canonical",
    "mailflow.ingest.classify",
    "mailflow.ingest.network",
    "mailflow.ingest.postfix",
    "mailflow.ingest.report",
    "mailflow.ingest.window",
    "mailflow.store.rows",
)


def compiled_modules() -> list[str]:
    """The modules of COMPILED_MODULES that import as compiled extensions."""
    return [name for name in COMPILED_MODULES if _extension(name) is not None]


def stale_modules() -> list[str]:
    """Compiled modules whose source beside them changed after they were compiled: Python
    would run the old compiled code, not the source."""
    stale = []
    for name in COMPILED_MODULES:
        extension = _extension(name)
        if extension is None:
            continue
        source = extension.with_name(name.rpartition(".")[2] + ".py")
        if source.exists() and source.stat().st_mtime > extension.stat().st_mtime:
            stale.append(name)
    return stale


def stale_warning() -> str | None:
    """A sentence for the user when compiled modules are stale, else None."""
    stale = stale_modules()
    if not stale:
        return None
    return (
        f"the compiled {', '.join(stale)} {'is' if len(stale) == 1 else 'are'} older than "
        "the source beside it, and Python runs the compiled code: install mailflow again "
        "(`pip install -e .`) to compile the source as it is now"
    )


def _extension(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    origin = spec.origin if spec is not None else None
    if origin is None or not origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
        return None
    return Path(origin)
