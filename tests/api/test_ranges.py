from __future__ import annotations

import pytest

from mailflow.settings import Settings

from .conftest import Api, Seed


@pytest.mark.parametrize("field", ["mailFlow", "tlsBreakdown", "insights"])
async def test_an_end_before_the_start_is_an_invalid_date_range(api: Api, field: str) -> None:
    error = await api.error(
        f'{{ {field}(start: "2025-02-10", end: "2025-02-01") {{ __typename }} }}'
    )

    assert error["extensions"]["code"] == "INVALID_DATE_RANGE"
    assert error["message"] == (
        "end 2025-02-01 is before start 2025-02-10; pass an end on or after 2025-02-10"
    )


async def test_a_range_longer_than_the_setting_is_too_long(api: Api) -> None:
    error = await api.error('{ mailFlow(start: "2025-01-01", end: "2025-04-01") { date } }')

    assert error["extensions"]["code"] == "RANGE_TOO_LONG"
    assert error["message"] == (
        "the range 2025-01-01 to 2025-04-01 spans 91 days, but the longest allowed range is "
        "90 days; with start 2025-01-01 pass an end on or before 2025-03-31"
    )


async def test_a_range_of_exactly_the_longest_length_is_served(api: Api) -> None:
    points = (await api.data('{ mailFlow(start: "2025-01-01", end: "2025-03-31") { date } }'))
    assert len(points["mailFlow"]) == 90


@pytest.mark.parametrize("settings", [Settings(max_range_days=30)])
async def test_the_longest_range_follows_the_setting(api: Api) -> None:
    error = await api.error('{ mailFlow(start: "2025-01-01", end: "2025-01-31") { date } }')

    assert error["extensions"]["code"] == "RANGE_TOO_LONG"
    assert "longest allowed range is 30 days" in error["message"]


async def test_connector_fields_check_their_ranges_too(
    api: Api, seed: Seed, organization_id: int
) -> None:
    await seed.connector(organization_id, "Partner")

    body = (await api.post(
        '{ connectors { volume(start: "2025-01-02", end: "2025-01-01") { date } } }'
    )).json()

    (error,) = body["errors"]
    assert error["extensions"]["code"] == "INVALID_DATE_RANGE"
    assert error["path"] == ["connectors", 0, "volume"]


@pytest.mark.parametrize("settings", [Settings(max_request_bytes=1_000_000)])
async def test_a_long_bad_date_is_echoed_only_in_part(api: Api) -> None:
    bad = "2025-" + "9" * 50_000
    literal = await api.error(f'{{ mailFlow(start: "{bad}") {{ date }} }}')
    variable = await api.error(
        "query ($start: Date) { mailFlow(start: $start) { date } }", {"start": bad}
    )

    for error in (literal, variable):
        assert "2025-9999" in error["message"]
        assert "YYYY-MM-DD" in error["message"]
        assert len(error["message"]) < 200
