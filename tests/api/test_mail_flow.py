from __future__ import annotations

from datetime import date

from mailflow.domain import Direction, TlsVersion

from .conftest import Api, Seed, global_connector_id

MAIL_FLOW = """
query MailFlow(
    $start: Date, $end: Date, $direction: Direction, $connectorId: ID, $noConnector: Boolean
) {
    mailFlow(
        start: $start, end: $end, direction: $direction,
        connectorId: $connectorId, noConnector: $noConnector
    ) {
        date
        messages
        recipients
        bytes
        byTls { version messages }
    }
}
"""

JANUARY = {"start": "2025-01-01", "end": "2025-01-05"}


async def test_the_series_has_one_point_per_day_with_zeros_included(
    api: Api, seed: Seed, organization_id: int
) -> None:
    await seed.rollup(organization_id, date(2025, 1, 2), TlsVersion.TLS1_2, 7,
                      recipients=9, size=7000)
    await seed.rollup(organization_id, date(2025, 1, 4), TlsVersion.NONE, 3)

    points = (await api.data(MAIL_FLOW, JANUARY))["mailFlow"]

    assert [point["date"] for point in points] == [
        "2025-01-01", "2025-01-02", "2025-01-03", "2025-01-04", "2025-01-05",
    ]
    assert [point["messages"] for point in points] == [0, 7, 0, 3, 0]
    assert points[1]["recipients"] == 9
    assert points[1]["bytes"] == 7000
    assert points[0]["bytes"] == 0


async def test_every_point_lists_all_six_tls_versions_in_enum_order(
    api: Api, seed: Seed, organization_id: int
) -> None:
    await seed.rollup(organization_id, date(2025, 1, 2), TlsVersion.TLS1_3, 4)
    await seed.rollup(organization_id, date(2025, 1, 2), TlsVersion.TLS1_0, 1)

    points = (await api.data(MAIL_FLOW, JANUARY))["mailFlow"]

    for point in points:
        assert [count["version"] for count in point["byTls"]] == [
            "NONE", "TLS1_0", "TLS1_1", "TLS1_2", "TLS1_3", "UNKNOWN",
        ]
    assert [count["messages"] for count in points[1]["byTls"]] == [0, 1, 0, 0, 4, 0]


async def test_counts_beyond_32_bits_come_back_exactly(
    api: Api, seed: Seed, organization_id: int
) -> None:
    await seed.rollup(organization_id, date(2025, 1, 1), TlsVersion.TLS1_3, 3,
                      size=2**62)
    await seed.rollup(organization_id, date(2025, 1, 1), TlsVersion.TLS1_2, 3,
                      size=2**62 - 1, direction=Direction.OUTBOUND)

    points = (await api.data(MAIL_FLOW, {**JANUARY, "direction": "INBOUND"}))["mailFlow"]

    assert points[0]["bytes"] == 2**62


async def test_direction_connector_and_no_connector_filters_select_the_mail(
    api: Api, seed: Seed, organization_id: int
) -> None:
    day = date(2025, 1, 1)
    partner = await seed.connector(organization_id, "Partner", Direction.INBOUND)
    relay = await seed.connector(organization_id, "Relay", Direction.OUTBOUND)
    await seed.rollup(organization_id, day, TlsVersion.TLS1_2, 1, connector_id=partner)
    await seed.rollup(organization_id, day, TlsVersion.TLS1_2, 20,
                      connector_id=relay, direction=Direction.OUTBOUND)
    await seed.rollup(organization_id, day, TlsVersion.NONE, 300)
    await seed.rollup(organization_id, day, TlsVersion.NONE, 4000, direction=Direction.OUTBOUND)

    async def first_day(**filters: object) -> int:
        points = (await api.data(MAIL_FLOW, {**JANUARY, **filters}))["mailFlow"]
        messages: int = points[0]["messages"]
        return messages

    assert await first_day() == 4321
    assert await first_day(direction="INBOUND") == 301
    assert await first_day(direction="OUTBOUND") == 4020
    assert await first_day(connectorId=global_connector_id(partner)) == 1
    assert await first_day(connectorId=global_connector_id(relay)) == 20
    assert await first_day(noConnector=True) == 4300
    assert await first_day(noConnector=True, direction="OUTBOUND") == 4000
    assert await first_day(noConnector=False) == 4321
    assert await first_day(connectorId=global_connector_id(partner), noConnector=False) == 1


async def test_a_connector_id_together_with_no_connector_is_a_conflict(
    api: Api, seed: Seed, organization_id: int
) -> None:
    partner = await seed.connector(organization_id, "Partner")

    error = await api.error(
        MAIL_FLOW, {"connectorId": global_connector_id(partner), "noConnector": True}
    )

    assert error["extensions"]["code"] == "CONFLICTING_FILTERS"
    assert "connectorId and noConnector: true exclude each other" in error["message"]


async def test_without_dates_the_series_covers_the_last_seven_days_ending_today(
    api: Api,
) -> None:
    from mailflow.reports.ranges import utc_today

    points = (await api.data(MAIL_FLOW))["mailFlow"]

    assert len(points) == 7
    assert points[-1]["date"] == utc_today().isoformat()


async def test_with_only_a_start_the_series_covers_seven_days_from_it(api: Api) -> None:
    points = (await api.data(MAIL_FLOW, {"start": "2025-02-26"}))["mailFlow"]

    assert [point["date"] for point in points][::6] == ["2025-02-26", "2025-03-04"]
