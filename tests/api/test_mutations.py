"""Mutations: admin tokens change connectors, accepted domains and internal networks."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from mailflow.api.app import create_app
from mailflow.domain import DeliveryStatus, Direction, MessageFact, TlsVersion
from mailflow.errors import OrganizationFileError
from mailflow.ingest.classify import load_classifier
from mailflow.ingest.pipeline import load_facts
from mailflow.ingest.reclassify import reclassify
from mailflow.settings import Settings
from mailflow.store.organizations import load_organization_file
from mailflow.store.tokens import TokenRole

from .conftest import Api, Seed, global_connector_id

DAY = date(2026, 3, 2)
RANGE = {"start": "2026-03-02", "end": "2026-03-02"}
CONNECTOR_FIELDS = """
    id name direction kind requireTls senderDomains recipientDomains clientIps smartHosts
    tlsCertNames routes
"""
CREATE = f"""
mutation Create($input: CreateConnectorInput!) {{
  createConnector(input: $input) {{ connector {{ {CONNECTOR_FIELDS} }} }}
}}
"""
UPDATE = f"""
mutation Update($id: ID!, $input: UpdateConnectorInput!) {{
  updateConnector(id: $id, input: $input) {{ connector {{ {CONNECTOR_FIELDS} }} }}
}}
"""
DELETE = """
mutation Delete($id: ID!) { deleteConnector(id: $id) { deletedConnectorId name } }
"""
ADD_DOMAINS = """
mutation Add($domains: [String!]!) {
  addAcceptedDomains(domains: $domains) { acceptedDomains added }
}
"""
REMOVE_DOMAINS = """
mutation Remove($domains: [String!]!) {
  removeAcceptedDomains(domains: $domains) { acceptedDomains removed }
}
"""
ADD_NETWORKS = """
mutation Add($networks: [String!]!) {
  addInternalNetworks(networks: $networks) { internalNetworks added }
}
"""
REMOVE_NETWORKS = """
mutation Remove($networks: [String!]!) {
  removeInternalNetworks(networks: $networks) { internalNetworks removed }
}
"""
CONNECTORS = f"{{ connectors {{ {CONNECTOR_FIELDS} }} }}"
PARTNER = {"name": "Fabrikam", "direction": "INBOUND", "kind": "PARTNER",
           "senderDomains": ["fabrikam.example"]}


@pytest.fixture
async def admin(client: httpx.AsyncClient, seed: Seed, organization_id: int) -> Api:
    return Api(client, await seed.token(organization_id, TokenRole.ADMIN))


def fact(number: int, sender_domain: str, *, hour: int = 9) -> MessageFact:
    return MessageFact(
        source_key=f"fact-{number}", occurred_at=datetime(2026, 3, 2, hour, number, tzinfo=UTC),
        direction=Direction.INBOUND, tls_version=TlsVersion.TLS1_2, tls_cipher=None,
        peer_host=None, peer_ip="203.0.113.9", sender_domain=sender_domain,
        recipient_domains=("acme.example",), recipients=1, size_bytes=1000,
        status=DeliveryStatus.RECEIVED,
    )


async def ingest(pool: asyncpg.Pool, organization_id: int, facts: list[MessageFact]) -> None:
    """Store facts as every ingest does: classified by the connectors as they are now."""
    async with pool.acquire() as connection:
        classifier = await load_classifier(connection, organization_id)
    await load_facts(pool, organization_id, facts, classify=classifier.assign)


async def messages_by_connector(api: Api) -> dict[str | None, int]:
    """Messages of DAY per connector name, and under None those of no connector."""
    data = await api.data(
        """
        query Counts($start: Date, $end: Date) {
          connectors { name volume(start: $start, end: $end) { messages } }
          mailFlow(start: $start, end: $end, noConnector: true) { messages }
        }
        """,
        RANGE,
    )
    counts: dict[str | None, int] = {
        connector["name"]: connector["volume"][0]["messages"] for connector in data["connectors"]
    }
    counts[None] = data["mailFlow"][0]["messages"]
    return counts


# Who may change what.


MUTATIONS = [
    pytest.param(CREATE, {"input": PARTNER}, id="createConnector"),
    pytest.param(UPDATE, {"id": "CONNECTOR", "input": {"requireTls": True}},
                 id="updateConnector"),
    pytest.param(DELETE, {"id": "CONNECTOR"}, id="deleteConnector"),
    pytest.param(ADD_DOMAINS, {"domains": ["acme.example"]}, id="addAcceptedDomains"),
    pytest.param(REMOVE_DOMAINS, {"domains": ["old.example"]}, id="removeAcceptedDomains"),
    pytest.param(ADD_NETWORKS, {"networks": ["192.0.2.0/24"]}, id="addInternalNetworks"),
    pytest.param(REMOVE_NETWORKS, {"networks": ["198.51.100.0/24"]},
                 id="removeInternalNetworks"),
]


async def settings_of(pool: asyncpg.Pool, organization_id: int) -> tuple[Any, ...]:
    """Everything the mutations can change, to show that a refused one changed nothing."""
    connectors = await pool.fetch(
        "SELECT id, name, require_tls, sender_domains FROM connectors WHERE organization_id = $1"
        " ORDER BY id", organization_id)
    domains = await pool.fetch(
        "SELECT domain FROM accepted_domains WHERE organization_id = $1 ORDER BY 1",
        organization_id)
    networks = await pool.fetch(
        "SELECT network FROM internal_networks WHERE organization_id = $1 ORDER BY 1",
        organization_id)
    return ([tuple(row) for row in connectors], [row[0] for row in domains],
            [row[0] for row in networks])


@pytest.fixture
async def managed(seed: Seed, organization_id: int) -> dict[str, str]:
    """An organization with a connector, an accepted domain and an internal network."""
    connector_id = await seed.connector(organization_id, "Contoso")
    await seed.pool.execute(
        "INSERT INTO accepted_domains VALUES ($1, 'old.example')", organization_id)
    await seed.pool.execute(
        "INSERT INTO internal_networks VALUES ($1, '198.51.100.0/24')", organization_id)
    return {"CONNECTOR": global_connector_id(connector_id)}


def with_ids(variables: dict[str, Any], ids: dict[str, str]) -> dict[str, Any]:
    return {key: ids.get(value, value) if isinstance(value, str) else value
            for key, value in variables.items()}


@pytest.mark.parametrize(("document", "variables"), MUTATIONS)
async def test_a_viewer_token_cannot_mutate(
    api: Api, seed: Seed, organization_id: int, managed: dict[str, str],
    document: str, variables: dict[str, Any],
) -> None:
    before = await settings_of(seed.pool, organization_id)

    response = await api.post(document, with_ids(variables, managed))

    body = response.json()
    assert response.status_code == 200
    assert list(body["data"].values()) == [None]
    [error] = body["errors"]
    assert error["extensions"]["code"] == "FORBIDDEN"
    assert "needs a token with the admin role; this request has the viewer role" in (
        error["message"])
    assert await settings_of(seed.pool, organization_id) == before


@pytest.mark.parametrize(("document", "variables"), MUTATIONS)
async def test_an_ingest_token_cannot_mutate(
    client: httpx.AsyncClient, seed: Seed, organization_id: int, managed: dict[str, str],
    document: str, variables: dict[str, Any],
) -> None:
    api = Api(client, await seed.token(organization_id, TokenRole.INGEST))
    before = await settings_of(seed.pool, organization_id)

    response = await api.post(document, with_ids(variables, managed))

    assert response.status_code == 403
    assert response.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert await settings_of(seed.pool, organization_id) == before


@pytest.mark.parametrize(("document", "variables"), MUTATIONS)
async def test_an_admin_token_can_mutate(
    admin: Api, seed: Seed, organization_id: int, managed: dict[str, str],
    document: str, variables: dict[str, Any],
) -> None:
    before = await settings_of(seed.pool, organization_id)

    data = await admin.data(document, with_ids(variables, managed))

    assert all(value is not None for value in data.values())
    assert await settings_of(seed.pool, organization_id) != before


async def test_the_demo_without_a_token_cannot_mutate(
    pool: asyncpg.Pool, settings: Settings, seed: Seed, organization_id: int,
) -> None:
    app = create_app(pool, settings, demo_organization_id=organization_id)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        response = await Api(client, None).post(CREATE, {"input": PARTNER})

    assert response.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert await pool.fetchval("SELECT count(*) FROM connectors") == 0


async def test_an_admin_changes_only_its_own_organization(
    admin: Api, seed: Seed, organization_id: int,
) -> None:
    other = await seed.organization("org-b")
    theirs = await seed.connector(other, "Theirs")
    await seed.pool.execute("INSERT INTO accepted_domains VALUES ($1, 'b.example')", other)

    update = await admin.error(UPDATE, {"id": global_connector_id(theirs),
                                        "input": {"name": "Mine now"}})
    delete = await admin.error(DELETE, {"id": global_connector_id(theirs)})
    removed = await admin.error(REMOVE_DOMAINS, {"domains": ["b.example"]})
    await admin.data(CREATE, {"input": {**PARTNER, "name": "Theirs"}})  # names are per org

    assert update["extensions"]["code"] == delete["extensions"]["code"] == "CONNECTOR_NOT_FOUND"
    assert removed["extensions"]["code"] == "ACCEPTED_DOMAIN_NOT_FOUND"
    assert "b.example" in removed["message"]
    assert await seed.pool.fetchval(
        "SELECT name FROM connectors WHERE organization_id = $1", other) == "Theirs"
    assert await seed.pool.fetchval(
        "SELECT count(*) FROM accepted_domains WHERE organization_id = $1", other) == 1
    assert await seed.pool.fetchval(
        "SELECT count(*) FROM connectors WHERE organization_id = $1", organization_id) == 1


async def test_a_mutation_by_get_is_refused(admin: Api) -> None:
    response = await admin.client.get(
        "/graphql", params={"query": CREATE, "variables": json.dumps({"input": PARTNER})},
        headers={"Authorization": f"Bearer {admin.token}"})

    assert response.status_code >= 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert "mutation" in response.json()["errors"][0]["message"].lower()


async def test_a_refused_mutation_is_null_beside_the_ones_that_ran(admin: Api) -> None:
    response = await admin.post(
        """
        mutation Both {
          bad: addAcceptedDomains(domains: ["not a domain"]) { added }
          good: addAcceptedDomains(domains: ["acme.example"]) { added }
        }
        """
    )

    body = response.json()
    assert body["data"] == {"bad": None, "good": {"added": ["acme.example"]}}
    assert body["errors"][0]["path"] == ["bad"]
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


# Connectors: create, update, delete.


async def test_a_created_connector_is_listed_with_its_rules_normalized(admin: Api) -> None:
    created = await admin.data(CREATE, {"input": {
        "name": "  Fabrikam  ", "direction": "INBOUND", "kind": "PARTNER",
        "senderDomains": ["Fabrikam.Example.", "*.fabrikam.example", "fabrikam.example"],
        "clientIps": ["192.0.2.7", "::ffff:198.51.100.0/120"], "requireTls": True,
    }})

    connector = created["createConnector"]["connector"]
    assert connector["name"] == "Fabrikam"
    assert connector["senderDomains"] == ["*.fabrikam.example", "fabrikam.example"]
    assert connector["clientIps"] == ["192.0.2.7/32", "198.51.100.0/24"]
    assert (connector["requireTls"], connector["routes"], connector["smartHosts"]) == (
        True, [], [])
    assert (await admin.data(CONNECTORS))["connectors"] == [connector]


async def test_a_name_another_connector_has_in_any_case_is_refused(admin: Api) -> None:
    await admin.data(CREATE, {"input": PARTNER})
    other = await admin.data(CREATE, {"input": {**PARTNER, "name": "Other"}})

    taken = await admin.error(CREATE, {"input": {**PARTNER, "name": "FABRIKAM"}})
    renamed = await admin.error(UPDATE, {
        "id": other["createConnector"]["connector"]["id"], "input": {"name": "fabrikam"}})

    for error in (taken, renamed):
        assert error["extensions"]["code"] == "CONNECTOR_NAME_TAKEN"
        assert "'Fabrikam'" in error["message"]
    assert [c["name"] for c in (await admin.data(CONNECTORS))["connectors"]] == [
        "Fabrikam", "Other"]


async def test_an_update_changes_the_fields_given_and_keeps_the_others(admin: Api) -> None:
    created = (await admin.data(CREATE, {"input": {**PARTNER, "routes": ["fab_in"]}}))
    connector_id = created["createConnector"]["connector"]["id"]

    updated = await admin.data(UPDATE, {"id": connector_id, "input": {
        "name": "Fabrikam inbound", "clientIps": ["192.0.2.0/24"], "routes": [],
        "kind": None,
    }})

    connector = updated["updateConnector"]["connector"]
    assert connector["id"] == connector_id
    assert connector["name"] == "Fabrikam inbound"
    assert connector["kind"] == "PARTNER"
    assert connector["senderDomains"] == ["fabrikam.example"]
    assert connector["clientIps"] == ["192.0.2.0/24"]
    assert connector["routes"] == []
    assert (await admin.data(CONNECTORS))["connectors"] == [connector]


async def test_a_renamed_connector_keeps_its_mail(
    admin: Api, pool: asyncpg.Pool, organization_id: int,
) -> None:
    created = await admin.data(CREATE, {"input": PARTNER})
    await ingest(pool, organization_id, [fact(1, "fabrikam.example")])

    await admin.data(UPDATE, {"id": created["createConnector"]["connector"]["id"],
                              "input": {"name": "Fabrikam (renamed)"}})

    assert await messages_by_connector(admin) == {"Fabrikam (renamed)": 1, None: 0}


async def test_an_update_of_an_unknown_or_malformed_id_is_refused(admin: Api) -> None:
    unknown = await admin.error(UPDATE, {"id": global_connector_id(999), "input": {}})
    malformed = await admin.error(DELETE, {"id": "not-an-id"})

    assert unknown["extensions"]["code"] == "CONNECTOR_NOT_FOUND"
    assert global_connector_id(999) in unknown["message"]
    assert malformed["extensions"]["code"] == "BAD_ID"


async def test_a_deleted_connector_s_mail_counts_under_no_connector_in_reports(
    admin: Api, pool: asyncpg.Pool, organization_id: int,
) -> None:
    fabrikam = (await admin.data(CREATE, {"input": PARTNER}))["createConnector"]["connector"]
    await admin.data(CREATE, {"input": {**PARTNER, "name": "Contoso",
                                        "senderDomains": ["contoso.example"]}})
    await ingest(pool, organization_id, [
        fact(1, "fabrikam.example"), fact(2, "fabrikam.example"), fact(3, "contoso.example"),
        fact(4, "other.example"),
    ])
    assert await messages_by_connector(admin) == {"Contoso": 1, "Fabrikam": 2, None: 1}

    deleted = await admin.data(DELETE, {"id": fabrikam["id"]})

    assert deleted["deleteConnector"] == {"deletedConnectorId": fabrikam["id"], "name": "Fabrikam"}
    assert await messages_by_connector(admin) == {"Contoso": 1, None: 3}
    assert await rollups_equal_facts(pool, organization_id)
    again = await admin.error(DELETE, {"id": fabrikam["id"]})
    assert again["extensions"]["code"] == "CONNECTOR_NOT_FOUND"


async def rollups_equal_facts(pool: asyncpg.Pool, organization_id: int) -> bool:
    rollups = await pool.fetch(
        """
        SELECT day, direction, connector_id, tls_version, messages, recipients, bytes
        FROM daily_rollups WHERE organization_id = $1 ORDER BY 1, 2, 3, 4
        """, organization_id)
    facts = await pool.fetch(
        """
        SELECT (occurred_at AT TIME ZONE 'UTC')::date, direction, connector_id, tls_version,
               count(*), sum(recipients), sum(size_bytes)
        FROM message_facts WHERE organization_id = $1 GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
        """, organization_id)
    return [tuple(row) for row in rollups] == [tuple(row) for row in facts]


async def test_a_changed_rule_applies_to_mail_ingested_afterwards(
    admin: Api, pool: asyncpg.Pool, organization_id: int,
) -> None:
    created = await admin.data(CREATE, {"input": PARTNER})
    await ingest(pool, organization_id, [fact(1, "fabrikam.example"), fact(2, "contoso.example")])

    await admin.data(UPDATE, {"id": created["createConnector"]["connector"]["id"],
                              "input": {"senderDomains": ["contoso.example"]}})
    await ingest(pool, organization_id, [fact(3, "fabrikam.example"), fact(4, "contoso.example")])

    # The facts loaded before keep their connector; the new ones follow the new rule.
    assert await messages_by_connector(admin) == {"Fabrikam": 2, None: 2}
    by_fact = dict(await pool.fetch(
        "SELECT source_key, connector_id IS NOT NULL FROM message_facts ORDER BY 1"))
    assert by_fact == {"fact-1": True, "fact-2": False, "fact-3": False, "fact-4": True}


async def test_reclassify_after_an_update_moves_mail_already_loaded_in_reports(
    admin: Api, pool: asyncpg.Pool, organization_id: int,
) -> None:
    created = await admin.data(CREATE, {"input": PARTNER})
    await ingest(pool, organization_id, [
        fact(1, "fabrikam.example"), fact(2, "contoso.example"), fact(3, "contoso.example")])
    await admin.data(UPDATE, {"id": created["createConnector"]["connector"]["id"],
                              "input": {"senderDomains": ["contoso.example"]}})
    assert await messages_by_connector(admin) == {"Fabrikam": 1, None: 2}

    await reclassify(pool, organization_id, DAY, DAY)

    assert await messages_by_connector(admin) == {"Fabrikam": 2, None: 1}
    tls = await admin.data(
        "query T($start: Date, $end: Date) { tlsBreakdown(start: $start, end: $end,"
        " noConnector: true) { total } }", RANGE)
    assert tls["tlsBreakdown"]["total"] == 1
    assert await rollups_equal_facts(pool, organization_id)


async def test_a_created_connector_takes_mail_pushed_afterwards(
    admin: Api, client: httpx.AsyncClient, seed: Seed, organization_id: int,
) -> None:
    ingest_token = await seed.token(organization_id, TokenRole.INGEST)

    async def push(key: str) -> None:
        line = json.dumps({"source_key": key, "occurred_at": "2026-03-02T10:00:00Z",
                           "direction": "INBOUND", "sender_domain": "fabrikam.example"})
        response = await client.post("/ingest", content=line.encode(), headers={
            "Content-Type": "application/x-ndjson", "Authorization": f"Bearer {ingest_token}"})
        assert response.json()["accepted"] == 1

    await push("before")
    await admin.data(CREATE, {"input": PARTNER})
    await push("after")

    assert await messages_by_connector(admin) == {"Fabrikam": 1, None: 1}


# The rules of the organization file, and its messages.


# Each: a connector of the organization file, the same as a mutation's input, and the message
# both must give after the path of the bad value.
SAME_RULES = [
    pytest.param(
        {"name": "a", "direction": "inbound", "kind": "partner", "sender_domains": ["a b.com"]},
        {**PARTNER, "senderDomains": ["a b.com"]},
        "senderDomains[0]",
        "'a b.com' is not a domain; expected a name such as 'example.com', or "
        "'*.example.com' for its subdomains",
        id="domain",
    ),
    pytest.param(
        {"name": "a", "direction": "inbound", "kind": "partner", "client_ips": ["10.1.2.3/16"]},
        {**PARTNER, "clientIps": ["10.1.2.3/16"]},
        "clientIps[0]",
        "'10.1.2.3/16' has host bits set; did you mean '10.1.0.0/16'?",
        id="host bits",
    ),
    pytest.param(
        {"name": "a", "direction": "outbound", "kind": "partner",
         "smart_hosts": ["mx.a.example:25"]},
        {**PARTNER, "direction": "OUTBOUND", "senderDomains": [],
         "smartHosts": ["mx.a.example:25"]},
        "smartHosts[0]",
        "'mx.a.example:25' is not a host name or IP address; expected for example "
        "'smtp.example.com' or '192.0.2.25' (no port, no wildcard)",
        id="smart host with port",
    ),
    pytest.param(
        {"name": "a", "direction": "inbound", "kind": "partner",
         "sender_domains": ["a.example"], "smart_hosts": ["mx.a.example"]},
        {**PARTNER, "smartHosts": ["mx.a.example"]},
        "smartHosts",
        "an inbound connector cannot have {smart_hosts}; inbound connectors match by "
        "{sender_domains}, {client_ips}, {tls_cert_names} or routes",
        id="rule of the other direction",
    ),
    pytest.param(
        {"name": "a", "direction": "outbound", "kind": "partner"},
        {**PARTNER, "direction": "OUTBOUND", "senderDomains": []},
        "",
        "an outbound connector needs at least one of {recipient_domains}, {smart_hosts} or "
        "routes, or it would match no mail",
        id="no rule",
    ),
    pytest.param(
        {"name": "a", "direction": "outbound", "kind": "partner", "routes": ["  "]},
        {**PARTNER, "direction": "OUTBOUND", "senderDomains": [], "routes": ["  "]},
        "routes[0]",
        "'  ' is not a route name; expected the name the mail server gives a route",
        id="route",
    ),
    pytest.param(
        {"name": " ", "direction": "inbound", "kind": "partner", "sender_domains": ["a.example"]},
        {**PARTNER, "name": " "},
        "name",
        "' ' is not a connector name; use 1 to 200 printable characters",
        id="name",
    ),
    pytest.param(
        {"name": "a\u0000b", "direction": "inbound", "kind": "partner",
         "sender_domains": ["a.example"]},
        {**PARTNER, "name": "a\u0000b"},
        "name",
        "'a\\x00b' is not a connector name; use 1 to 200 printable characters",
        id="name with NUL",
    ),
]
FILE_KEYS = {key: key for key in ("sender_domains", "client_ips", "tls_cert_names",
                                  "recipient_domains", "smart_hosts")}
API_KEYS = {"sender_domains": "senderDomains", "client_ips": "clientIps",
            "tls_cert_names": "tlsCertNames", "recipient_domains": "recipientDomains",
            "smart_hosts": "smartHosts"}


@pytest.mark.parametrize(("in_file", "in_input", "path", "message"), SAME_RULES)
async def test_a_mutation_refuses_what_the_organization_file_refuses_with_the_same_message(
    admin: Api, tmp_path: Path,
    in_file: dict[str, Any], in_input: dict[str, Any], path: str, message: str,
) -> None:
    organization_file = tmp_path / "acme.yaml"
    organization_file.write_text(json.dumps({"organization": "acme", "connectors": [in_file]}))
    with pytest.raises(OrganizationFileError) as refused:
        load_organization_file(organization_file)

    error = await admin.error(CREATE, {"input": in_input})

    file_path = path.replace("senderDomains", "sender_domains").replace(
        "clientIps", "client_ips").replace("smartHosts", "smart_hosts")
    assert f"connectors[0]{'.' if file_path else ''}{file_path}: " + message.format(
        **FILE_KEYS) in str(refused.value)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["message"].startswith(
        f"input{'.' if path else ''}{path}: " + message.format(**API_KEYS))
    assert (await admin.data(CONNECTORS))["connectors"] == []


async def test_an_update_is_checked_with_the_connector_s_other_values(admin: Api) -> None:
    created = await admin.data(CREATE, {"input": PARTNER})

    error = await admin.error(UPDATE, {"id": created["createConnector"]["connector"]["id"],
                                       "input": {"direction": "OUTBOUND"}})

    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["message"].startswith(
        "input.senderDomains: an outbound connector cannot have senderDomains")
    assert (await admin.data(CONNECTORS))["connectors"] == [
        created["createConnector"]["connector"]]


async def test_several_bad_values_are_named_together(admin: Api) -> None:
    error = await admin.error(CREATE, {"input": {
        **PARTNER, "senderDomains": ["ok.example", "bad domain"], "clientIps": ["lan"]}})

    assert error["message"].startswith("2 problems:")
    assert "input.senderDomains[1]: 'bad domain' is not a domain" in error["message"]
    assert "input.clientIps[0]: 'lan' is not an IP address or CIDR range" in error["message"]


# Accepted domains and internal networks.


async def test_accepted_domains_are_added_listed_and_removed(admin: Api) -> None:
    added = await admin.data(ADD_DOMAINS, {"domains": ["Acme.Example.", "*.acme.example"]})
    again = await admin.data(ADD_DOMAINS, {"domains": ["acme.example", "acme-mail.example"]})
    listed = await admin.data("{ acceptedDomains }")
    removed = await admin.data(REMOVE_DOMAINS, {"domains": ["*.acme.example"]})

    assert added["addAcceptedDomains"] == {
        "acceptedDomains": ["*.acme.example", "acme.example"],
        "added": ["*.acme.example", "acme.example"]}
    assert again["addAcceptedDomains"]["added"] == ["acme-mail.example"]
    assert listed["acceptedDomains"] == ["*.acme.example", "acme-mail.example", "acme.example"]
    assert removed["removeAcceptedDomains"] == {
        "acceptedDomains": ["acme-mail.example", "acme.example"], "removed": ["*.acme.example"]}
    assert (await admin.data("{ acceptedDomains }"))["acceptedDomains"] == [
        "acme-mail.example", "acme.example"]


async def test_a_bad_or_absent_accepted_domain_is_refused_and_nothing_changes(
    admin: Api,
) -> None:
    await admin.data(ADD_DOMAINS, {"domains": ["acme.example"]})

    bad = await admin.error(ADD_DOMAINS, {"domains": ["ok.example", "mail.*.acme.example"]})
    absent = await admin.error(REMOVE_DOMAINS, {"domains": ["acme.example", "acme.exmaple"]})

    assert bad["extensions"]["code"] == "BAD_USER_INPUT"
    assert bad["message"].startswith("domains[1]: 'mail.*.acme.example' is not a domain")
    assert absent["extensions"]["code"] == "ACCEPTED_DOMAIN_NOT_FOUND"
    assert absent["message"] == (
        "'acme.exmaple' is not among the organization's accepted domains ('acme.example'); "
        "nothing was removed")
    assert (await admin.data("{ acceptedDomains }"))["acceptedDomains"] == ["acme.example"]


async def test_internal_networks_are_added_listed_and_removed(admin: Api) -> None:
    added = await admin.data(ADD_NETWORKS, {"networks": ["2001:db8:20::/48", "10.20.0.0/16",
                                                         "192.0.2.9"]})
    removed = await admin.data(REMOVE_NETWORKS, {"networks": ["192.0.2.9/32"]})

    assert added["addInternalNetworks"] == {
        "internalNetworks": ["10.20.0.0/16", "192.0.2.9/32", "2001:db8:20::/48"],
        "added": ["10.20.0.0/16", "192.0.2.9/32", "2001:db8:20::/48"]}
    assert removed["removeInternalNetworks"] == {
        "internalNetworks": ["10.20.0.0/16", "2001:db8:20::/48"], "removed": ["192.0.2.9/32"]}
    assert (await admin.data("{ internalNetworks }"))["internalNetworks"] == [
        "10.20.0.0/16", "2001:db8:20::/48"]


@pytest.mark.parametrize(
    ("document", "networks", "code", "message"),
    [
        (ADD_NETWORKS, ["0.0.0.0/0"], "BAD_USER_INPUT",
         "networks[0]: '0.0.0.0/0' would make every address internal"),
        (ADD_NETWORKS, ["192.0.2.1/24"], "BAD_USER_INPUT",
         "networks[0]: '192.0.2.1/24' has host bits set; did you mean '192.0.2.0/24'?"),
        (REMOVE_NETWORKS, ["10.0.0.0/8"], "INTERNAL_NETWORK_NOT_FOUND",
         "'10.0.0.0/8' is not among the organization's declared internal networks"),
    ],
)
async def test_a_bad_or_undeclared_internal_network_is_refused(
    admin: Api, document: str, networks: list[str], code: str, message: str,
) -> None:
    error = await admin.error(document, {"networks": networks})

    assert error["extensions"]["code"] == code
    assert error["message"].startswith(message)
    assert (await admin.data("{ internalNetworks }"))["internalNetworks"] == []


async def test_the_mutations_results_match_what_an_organization_file_declares(
    admin: Api, pool: asyncpg.Pool, tmp_path: Path,
) -> None:
    """The same connector by mutation and by `org apply` is stored alike."""
    from mailflow.store.organizations import apply_organization

    organization_file = tmp_path / "twin.yaml"
    organization_file.write_text(json.dumps({"organization": "twin", "connectors": [{
        "name": "Fabrikam", "direction": "inbound", "kind": "partner",
        "sender_domains": ["Fabrikam.Example."], "client_ips": ["192.0.2.7"],
        "routes": ["B", "a", "b"]}]}))
    async with pool.acquire() as connection:
        await apply_organization(connection, load_organization_file(organization_file))

    await admin.data(CREATE, {"input": {**PARTNER, "senderDomains": ["Fabrikam.Example."],
                                        "clientIps": ["192.0.2.7"], "routes": ["B", "a", "b"]}})

    rows = await pool.fetch(
        "SELECT name, direction, kind, sender_domains, client_ips::text[], routes"
        " FROM connectors ORDER BY organization_id")
    assert len(rows) == 2
    assert tuple(rows[0]) == tuple(rows[1])


async def test_an_organization_has_at_most_a_hundred_connectors(
    admin: Api, pool: asyncpg.Pool, organization_id: int, tmp_path: Path,
) -> None:
    from mailflow.store.organizations import MAX_CONNECTORS

    many = [{"name": f"partner-{n}", "direction": "inbound", "kind": "partner",
             "sender_domains": [f"p{n}.example"]} for n in range(MAX_CONNECTORS + 1)]
    too_many = tmp_path / "too-many.yaml"
    too_many.write_text(json.dumps({"organization": "acme", "connectors": many}))
    with pytest.raises(OrganizationFileError, match="101 connectors is more than the 100"):
        load_organization_file(too_many)
    await pool.executemany(
        "INSERT INTO connectors (organization_id, name, direction, kind) "
        "VALUES ($1, $2, 'INBOUND', 'PARTNER')",
        [(organization_id, f"partner-{n}") for n in range(MAX_CONNECTORS)])

    error = await admin.error(CREATE, {"input": PARTNER})

    assert error["extensions"]["code"] == "TOO_MANY_CONNECTORS"
    assert "has 100 connectors" in error["message"]
    assert len((await admin.data(CONNECTORS))["connectors"]) == MAX_CONNECTORS
