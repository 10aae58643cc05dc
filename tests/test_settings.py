from __future__ import annotations

from pathlib import Path

import pytest

from mailflow.settings import Settings


def test_an_empty_data_directory_means_the_default_not_the_current_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # so no .env file of the checkout is read
    monkeypatch.delenv("MAILFLOW_DATA_DIR", raising=False)
    default = Settings().data_dir

    monkeypatch.setenv("MAILFLOW_DATA_DIR", "")

    assert Settings().data_dir == default
    assert Settings().data_dir != Path()
