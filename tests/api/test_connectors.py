from __future__ import annotations

import base64
from datetime import date

import pytest

from mailflow.domain import ConnectorKind, Direction, TlsVersion

from .conftest import Api, Seed, global_connector_id

CONNECTOR = """
query Connector($id: ID!) {
    connector(id: $id) {
        id name direction kind requireTls
        senderDomains recipientDomains clientIps smartHosts tlsCertNames routes
    }
}
"""


async def test_connectors_are_listed_by_name_and_filtered_by_direction(
    api: Api, seed: Seed, organization_id: int
) -> None:
    await seed.connector(organization_id, "zeta", Direction.OUTBOUND)
    await seed.connector(organization_id, "Alpha", Direction.INBOUND)
    await seed.connector(organization_id, "beta", Direction.OUTBOUND)

    query = "query($d: Direction) { connectors(direction: $d) { name direction } }"
    everything = (await api.data(query))["connectors"]
    outbound = (await api.data(query, {"d": "OUTBOUND"}))["connectors"]

    assert [connector["name"] for connector in everything] == ["Alpha", "beta", "zeta"]
    assert [connector["name"] for connector in outbound] == ["beta", "zeta"]


async def test_a_connector_is_found_by_its_global_id_with_all_its_fields(
    api: Api, seed: Seed, organization_id: int
) -> None:
    connector_id = await seed.connector(
        organization_id, "Partner", Direction.INBOUND, ConnectorKind.ON_PREMISES, require_tls=True
    )
    await seed.pool.execute(
        "UPDATE connectors SET client_ips = '{192.0.2.0/24}', "
        "tls_cert_names = '{mx.partner.example}', routes = '{partner_in}'"
    )

    connector = (await api.data(CONNECTOR, {"id": global_connector_id(connector_id)}))["connector"]

    assert connector == {
        "id": global_connector_id(connector_id),
        "name": "Partner",
        "direction": "INBOUND",
        "kind": "ON_PREMISES",
        "requireTls": True,
        "senderDomains": ["partner.example"],
        "recipientDomains": [],
        "clientIps": ["192.0.2.0/24"],
        "smartHosts": [],
        "tlsCertNames": ["mx.partner.example"],
        "routes": ["partner_in"],
    }
    assert base64.b64decode(connector["id"]) == f"Connector:{connector_id}".encode()


async def test_an_unknown_connector_id_is_not_found(api: Api) -> None:
    response = await api.post(CONNECTOR, {"id": global_connector_id(987654)})
    body = response.json()

    assert body["data"] == {"connector": None}
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "CONNECTOR_NOT_FOUND"
    assert global_connector_id(987654) in error["message"]
    assert error["path"] == ["connector"]


@pytest.mark.parametrize(
    "bad_id",
    [
        "not base64!",
        base64.b64encode(b"Organization:1").decode(),
        base64.b64encode(b"Connector:abc").decode(),
        base64.b64encode(b"Connector:007").decode(),
        base64.b64encode(b"Connector:0").decode(),
        base64.b64encode("Connector:\u0661".encode()).decode(),  # an Arabic-Indic digit one
        "",
    ],
)
async def test_a_malformed_connector_id_is_a_bad_id(api: Api, bad_id: str) -> None:
    error = await api.error(CONNECTOR, {"id": bad_id})

    assert error["extensions"]["code"] == "BAD_ID"
    assert error["message"] == (
        f"{bad_id!r} is not a Connector id; pass the id field of a Connector exactly as this "
        "API returned it"
    )


async def test_a_malformed_connector_id_in_a_filter_is_a_bad_id(api: Api) -> None:
    error = await api.error('{ mailFlow(connectorId: "nope") { date } }')

    assert error["extensions"]["code"] == "BAD_ID"


async def test_each_connector_reports_its_volume_and_tls_breakdown(
    api: Api, seed: Seed, organization_id: int
) -> None:
    partner = await seed.connector(organization_id, "Partner")
    other = await seed.connector(organization_id, "Other")
    await seed.rollup(organization_id, date(2025, 1, 2), TlsVersion.TLS1_3, 3, connector_id=partner)
    await seed.rollup(organization_id, date(2025, 1, 2), TlsVersion.NONE, 1, connector_id=partner)
    await seed.rollup(organization_id, date(2025, 1, 2), TlsVersion.NONE, 50, connector_id=other)
    await seed.rollup(organization_id, date(2025, 1, 2), TlsVersion.NONE, 70)

    data = await api.data(
        """query($id: ID!) {
            connector(id: $id) {
                volume(start: "2025-01-01", end: "2025-01-03") { date messages }
                tlsBreakdown(start: "2025-01-01", end: "2025-01-03") {
                    total versions { version percent }
                }
            }
        }""",
        {"id": global_connector_id(partner)},
    )

    connector = data["connector"]
    assert [point["messages"] for point in connector["volume"]] == [0, 4, 0]
    assert connector["tlsBreakdown"]["total"] == 4
    assert {share["version"]: share["percent"]
            for share in connector["tlsBreakdown"]["versions"]}["TLS1_3"] == 75.0
