from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from mailflow.settings import Settings, describe_errors


def test_an_empty_data_directory_means_the_default_not_the_current_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # so no .env file of the checkout is read
    monkeypatch.delenv("MAILFLOW_DATA_DIR", raising=False)
    default = Settings().data_dir

    monkeypatch.setenv("MAILFLOW_DATA_DIR", "")

    assert Settings().data_dir == default
    assert Settings().data_dir != Path()


def test_the_log_format_is_read_in_any_case_and_a_bad_one_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MAILFLOW_LOG_FORMAT", " JSON ")
    assert Settings().log_format == "json"

    monkeypatch.setenv("MAILFLOW_LOG_FORMAT", "xml")
    with pytest.raises(ValidationError) as raised:
        Settings()

    message = describe_errors(raised.value)
    assert message.startswith("MAILFLOW_LOG_FORMAT: 'xml'")
    assert "'auto', 'json' or 'text'" in message


def test_an_empty_metrics_token_means_none(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MAILFLOW_METRICS_TOKEN", "")
    assert Settings().metrics_token is None

    monkeypatch.setenv("MAILFLOW_METRICS_TOKEN", "scrape-me")
    token = Settings().metrics_token
    assert token is not None
    assert token.get_secret_value() == "scrape-me"
    assert "scrape-me" not in repr(Settings())
