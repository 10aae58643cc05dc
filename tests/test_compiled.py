"""The modules mypyc compiles: the list the code knows is the build's, and stale ones are seen."""

from __future__ import annotations

import importlib.machinery
import os
import tomllib
from pathlib import Path

import pytest

from mailflow import compiled
from mailflow.compiled import COMPILED_MODULES, compiled_modules, stale_modules, stale_warning

REPO = Path(__file__).resolve().parents[1]


def test_the_compiled_modules_are_the_files_the_build_compiles() -> None:
    hook = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["hatch"]["build"][
        "targets"]["wheel"]["hooks"]["mypyc"]
    files = sorted(path.removeprefix("/server/").removesuffix(".py").replace("/", ".")
                   for path in hook["include"])
    assert files == sorted(COMPILED_MODULES)
    for name in COMPILED_MODULES:
        assert (REPO / "server" / (name.replace(".", "/") + ".py")).is_file()


def test_a_source_edited_after_compiling_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A package with a compiled module beside its source (found by name, never imported).
    package = tmp_path / "mailflow_fake"
    package.mkdir()
    (package / "__init__.py").write_text("")
    built = package / ("parser" + importlib.machinery.EXTENSION_SUFFIXES[0])
    built.write_bytes(b"")
    source = package / "parser.py"
    source.write_text("# the source\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(compiled, "COMPILED_MODULES", ("mailflow_fake.parser",))

    os.utime(source, (1_000_000, 1_000_000))  # compiled after the source was written
    assert stale_modules() == []
    assert stale_warning() is None

    os.utime(source, (built.stat().st_mtime + 60,) * 2)  # the source was edited since
    assert stale_modules() == ["mailflow_fake.parser"]
    assert "mailflow_fake.parser is older than the source" in (stale_warning() or "")
    assert "pip install -e ." in (stale_warning() or "")


def test_the_installed_modules_are_compiled_unless_hooks_were_off() -> None:
    if os.environ.get("HATCH_BUILD_NO_HOOKS", "").lower() in ("1", "true"):
        pytest.skip("installed with HATCH_BUILD_NO_HOOKS: plain Python")
    assert compiled_modules() == list(COMPILED_MODULES)

