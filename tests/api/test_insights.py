from __future__ import annotations

from datetime import date

from mailflow.domain import Direction, TlsVersion

from .conftest import Api, Seed

INSIGHTS = """
query Insights($noTls: Float = 25, $tls10: Float = 50) {
    insights(
        start: "2025-01-01", end: "2025-01-07",
        noTlsThreshold: $noTls, tls10Threshold: $tls10
    ) {
        kind
        connector { name }
        value
        threshold
        messages
        start
        end
    }
}
"""


async def seed_mail(seed: Seed, organization_id: int, name: str, **messages: int) -> None:
    connector_id = await seed.connector(organization_id, name, Direction.OUTBOUND)
    for version, count in messages.items():
        await seed.rollup(organization_id, date(2025, 1, 2), TlsVersion[version], count,
                          connector_id=connector_id, direction=Direction.OUTBOUND)


async def test_insights_fire_strictly_above_the_default_thresholds(
    api: Api, seed: Seed, organization_id: int
) -> None:
    await seed_mail(seed, organization_id, "At thresholds", NONE=1, TLS1_2=3)  # 25% no TLS
    await seed_mail(seed, organization_id, "Half TLS 1.0", TLS1_0=2, TLS1_3=2)  # 50% TLS 1.0
    await seed_mail(seed, organization_id, "Plaintext", NONE=13, TLS1_0=1, TLS1_2=26)
    await seed_mail(seed, organization_id, "Legacy", TLS1_0=3, TLS1_2=1)

    insights = (await api.data(INSIGHTS))["insights"]

    assert insights == [
        {
            "kind": "TLS1_0_OVER_THRESHOLD", "connector": {"name": "Legacy"}, "value": 75.0,
            "threshold": 50.0, "messages": 4, "start": "2025-01-01", "end": "2025-01-07",
        },
        {
            "kind": "NO_TLS_OVER_THRESHOLD", "connector": {"name": "Plaintext"}, "value": 32.5,
            "threshold": 25.0, "messages": 40, "start": "2025-01-01", "end": "2025-01-07",
        },
    ]


async def test_custom_thresholds_change_what_fires(
    api: Api, seed: Seed, organization_id: int
) -> None:
    await seed_mail(seed, organization_id, "Mixed", NONE=1, TLS1_0=1, TLS1_2=8)

    assert (await api.data(INSIGHTS))["insights"] == []
    insights = (await api.data(INSIGHTS, {"noTls": 9.9, "tls10": 0}))["insights"]

    assert [(insight["kind"], insight["value"], insight["threshold"]) for insight in insights] == [
        ("NO_TLS_OVER_THRESHOLD", 10.0, 9.9),
        ("TLS1_0_OVER_THRESHOLD", 10.0, 0.0),
    ]


async def test_connectors_without_mail_in_the_window_have_no_insights(
    api: Api, seed: Seed, organization_id: int
) -> None:
    await seed.connector(organization_id, "Quiet")

    insights = (await api.data(INSIGHTS, {"noTls": 0, "tls10": 0}))["insights"]

    assert insights == []


async def test_a_connector_lists_its_own_insights(
    api: Api, seed: Seed, organization_id: int
) -> None:
    await seed_mail(seed, organization_id, "Plaintext", NONE=1)
    await seed_mail(seed, organization_id, "Legacy", TLS1_0=1)

    connectors = (await api.data("""{
        connectors {
            name
            insights(start: "2025-01-01", end: "2025-01-07", tls10Threshold: 99.5) {
                kind value
            }
        }
    }"""))["connectors"]

    assert connectors == [
        {"name": "Legacy", "insights": [{"kind": "TLS1_0_OVER_THRESHOLD", "value": 100.0}]},
        {"name": "Plaintext", "insights": [{"kind": "NO_TLS_OVER_THRESHOLD", "value": 100.0}]},
    ]


async def test_a_threshold_outside_zero_to_a_hundred_is_refused_by_name(api: Api) -> None:
    error = await api.error(INSIGHTS, {"tls10": 120})

    assert error["extensions"]["code"] == "INVALID_THRESHOLD"
    assert error["message"] == "tls10Threshold 120.0 is not a percent; pass a number from 0 to 100"

    error = await api.error(INSIGHTS, {"noTls": -1})
    assert error["extensions"]["code"] == "INVALID_THRESHOLD"
    assert error["message"].startswith("noTlsThreshold -1.0 is not a percent")
