from __future__ import annotations

from datetime import date

from mailflow.domain import Direction, TlsVersion

from .conftest import Api, Seed, global_connector_id

TLS_BREAKDOWN = """
query Breakdown($connectorId: ID, $noConnector: Boolean, $direction: Direction) {
    tlsBreakdown(
        start: "2025-01-01", end: "2025-01-07",
        connectorId: $connectorId, noConnector: $noConnector, direction: $direction
    ) {
        total
        versions { version messages percent }
    }
}
"""


async def test_percentages_add_up_to_exactly_a_hundred(
    api: Api, seed: Seed, organization_id: int
) -> None:
    for version in (TlsVersion.NONE, TlsVersion.TLS1_2, TlsVersion.TLS1_3):
        await seed.rollup(organization_id, date(2025, 1, 3), version, 1)

    breakdown = (await api.data(TLS_BREAKDOWN))["tlsBreakdown"]

    assert breakdown["total"] == 3
    percents = [share["percent"] for share in breakdown["versions"]]
    assert percents == [33.4, 0.0, 0.0, 33.3, 33.3, 0.0]
    assert sum(round(percent * 10) for percent in percents) == 1000


async def test_every_version_is_listed_with_its_messages(
    api: Api, seed: Seed, organization_id: int
) -> None:
    await seed.rollup(organization_id, date(2025, 1, 1), TlsVersion.UNKNOWN, 1)
    await seed.rollup(organization_id, date(2025, 1, 7), TlsVersion.TLS1_1, 6)
    await seed.rollup(organization_id, date(2025, 1, 8), TlsVersion.TLS1_1, 50)

    breakdown = (await api.data(TLS_BREAKDOWN))["tlsBreakdown"]

    assert [(share["version"], share["messages"]) for share in breakdown["versions"]] == [
        ("NONE", 0), ("TLS1_0", 0), ("TLS1_1", 6), ("TLS1_2", 0), ("TLS1_3", 0), ("UNKNOWN", 1),
    ]
    assert [share["percent"] for share in breakdown["versions"]] == [
        0.0, 0.0, 85.7, 0.0, 0.0, 14.3,
    ]


async def test_percentages_are_null_when_there_is_no_mail(api: Api) -> None:
    breakdown = (await api.data(TLS_BREAKDOWN))["tlsBreakdown"]

    assert breakdown["total"] == 0
    assert len(breakdown["versions"]) == 6
    assert {share["percent"] for share in breakdown["versions"]} == {None}


async def test_the_breakdown_follows_the_same_filters_as_the_mail_flow(
    api: Api, seed: Seed, organization_id: int
) -> None:
    partner = await seed.connector(organization_id, "Partner")
    await seed.rollup(organization_id, date(2025, 1, 2), TlsVersion.TLS1_0, 2,
                      connector_id=partner)
    await seed.rollup(organization_id, date(2025, 1, 2), TlsVersion.NONE, 5)
    await seed.rollup(organization_id, date(2025, 1, 2), TlsVersion.TLS1_3, 9,
                      direction=Direction.OUTBOUND)

    async def total(**filters: object) -> int:
        found: int = (await api.data(TLS_BREAKDOWN, filters))["tlsBreakdown"]["total"]
        return found

    assert await total() == 16
    assert await total(connectorId=global_connector_id(partner)) == 2
    assert await total(noConnector=True) == 14
    assert await total(noConnector=True, direction="INBOUND") == 5


async def test_a_connector_id_together_with_no_connector_is_a_conflict(
    api: Api, seed: Seed, organization_id: int
) -> None:
    partner = await seed.connector(organization_id, "Partner")

    error = await api.error(
        TLS_BREAKDOWN, {"connectorId": global_connector_id(partner), "noConnector": True}
    )

    assert error["extensions"]["code"] == "CONFLICTING_FILTERS"
