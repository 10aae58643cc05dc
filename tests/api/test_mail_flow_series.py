"""mailFlowSeries and a connector's volumeSeries: the daily series as a list per figure."""

from __future__ import annotations

from datetime import date
from typing import Any

from mailflow.domain import Direction, TlsVersion

from .conftest import Api, Seed

FIGURES = "date messages recipients bytes byTls { version messages }"
SERIES_FIGURES = "dates messages recipients bytes byTls { version messages }"
JANUARY = 'start: "2025-01-01", end: "2025-01-05"'


def as_series(points: list[dict[str, Any]]) -> dict[str, Any]:
    """A list of MailFlowPoint as the series of the same days reads."""
    return {
        "dates": [point["date"] for point in points],
        "messages": [point["messages"] for point in points],
        "recipients": [point["recipients"] for point in points],
        "bytes": [point["bytes"] for point in points],
        "byTls": [
            {"version": count["version"],
             "messages": [point["byTls"][index]["messages"] for point in points]}
            for index, count in enumerate(points[0]["byTls"])
        ],
    }


async def test_the_series_holds_the_figures_of_the_points_day_by_day(
    api: Api, seed: Seed, organization_id: int
) -> None:
    partner = await seed.connector(organization_id, "Fabrikam")
    await seed.rollup(organization_id, date(2025, 1, 2), TlsVersion.TLS1_2, 7,
                      recipients=9, size=7000, connector_id=partner)
    await seed.rollup(organization_id, date(2025, 1, 4), TlsVersion.NONE, 3,
                      direction=Direction.OUTBOUND)

    data = await api.data(f"""{{
        mailFlow({JANUARY}, direction: INBOUND) {{ {FIGURES} }}
        mailFlowSeries({JANUARY}, direction: INBOUND) {{ {SERIES_FIGURES} }}
        all: mailFlowSeries({JANUARY}) {{ messages }}
        connectors {{
            volume({JANUARY}) {{ {FIGURES} }}
            volumeSeries({JANUARY}) {{ {SERIES_FIGURES} }}
        }}
    }}""")

    assert data["mailFlowSeries"] == as_series(data["mailFlow"])
    assert data["mailFlowSeries"]["messages"] == [0, 7, 0, 0, 0]
    assert data["all"]["messages"] == [0, 7, 0, 3, 0]
    connector = data["connectors"][0]
    assert connector["volumeSeries"] == as_series(connector["volume"])
    assert [tls["version"] for tls in connector["volumeSeries"]["byTls"]] == [
        "NONE", "TLS1_0", "TLS1_1", "TLS1_2", "TLS1_3", "UNKNOWN",
    ]
    assert connector["volumeSeries"]["byTls"][3]["messages"] == [0, 7, 0, 0, 0]


async def test_a_series_costs_about_a_point_per_value_it_holds(api: Api) -> None:
    ninety_days = 'start: "2025-01-01", end: "2025-03-31"'
    error = await api.error(
        "{ " + " ".join(f'a{n}: mailFlowSeries({ninety_days}) {{ {SERIES_FIGURES} }}'
                        for n in range(30)) + " }"
    )

    assert error["extensions"]["code"] == "QUERY_TOO_COSTLY"
