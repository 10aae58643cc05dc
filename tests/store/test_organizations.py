from __future__ import annotations

import ipaddress
from datetime import UTC, date, datetime
from pathlib import Path

import asyncpg
import pytest

from mailflow.domain import ConnectorKind, Direction
from mailflow.errors import InvalidOrganizationNameError, OrganizationFileError
from mailflow.ingest.classify import load_boundary_policy
from mailflow.ingest.network import DEFAULT_INTERNAL_NETWORKS
from mailflow.rollups.refresh import refresh_rollups
from mailflow.store.organizations import (
    apply_organization,
    ensure_organization,
    find_organization,
    load_accepted_domains,
    load_connectors,
    load_organization_file,
    parse_organization,
)

FIXTURES = Path(__file__).parent / "fixtures"
CONTOSO = FIXTURES / "contoso.yaml"
CONTOSO_EDITED = FIXTURES / "contoso_edited.yaml"


async def insert_fact(
    connection: asyncpg.pool.PoolConnectionProxy, organization_id: int, source_key: str,
    occurred_at: datetime, direction: str, connector_id: int | None, tls_version: str,
    recipients: int = 1, size_bytes: int = 1000,
) -> None:
    await connection.execute("SELECT ensure_message_fact_partition($1::date)", occurred_at.date())
    await connection.execute(
        """
        INSERT INTO message_facts (organization_id, occurred_at, source_key, direction,
                                   connector_id, tls_version, recipients, size_bytes, status)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'RECEIVED')
        """,
        organization_id, occurred_at, source_key, direction, connector_id, tls_version,
        recipients, size_bytes,
    )


async def rollups_and_facts(
    connection: asyncpg.pool.PoolConnectionProxy, organization_id: int
) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    rollups = await connection.fetch(
        """
        SELECT day, direction, connector_id, tls_version, messages, recipients, bytes
        FROM daily_rollups WHERE organization_id = $1
        ORDER BY day, direction, connector_id NULLS FIRST, tls_version
        """,
        organization_id,
    )
    facts = await connection.fetch(
        """
        SELECT (occurred_at AT TIME ZONE 'UTC')::date AS day, direction, connector_id,
               tls_version, count(*) AS messages, sum(recipients) AS recipients,
               sum(size_bytes) AS bytes
        FROM message_facts WHERE organization_id = $1
        GROUP BY 1, 2, 3, 4
        ORDER BY day, direction, connector_id NULLS FIRST, tls_version
        """,
        organization_id,
    )
    return [tuple(row) for row in rollups], [tuple(row) for row in facts]


async def test_applying_a_file_creates_the_organization_domains_networks_and_connectors(
    pool: asyncpg.Pool,
) -> None:
    config = load_organization_file(CONTOSO)
    async with pool.acquire() as connection:
        result = await apply_organization(connection, config)
        connectors = await load_connectors(connection, result.organization_id)
        domains = await load_accepted_domains(connection, result.organization_id)
        assert await find_organization(connection, "contoso") == result.organization_id

    assert result.organization_created
    assert sorted(result.created) == ["Fabrikam outbound", "Fabrikam partner", "On-premises relay"]
    assert domains == ["contoso.com", "contoso.net"]
    assert [connector.name for connector in connectors] == [
        "Fabrikam outbound", "Fabrikam partner", "On-premises relay",
    ]
    outbound, partner, relay = connectors
    assert outbound.direction is Direction.OUTBOUND
    assert outbound.smart_hosts == ("192.0.2.80", "smtp.fabrikam.com")
    assert partner.sender_domains == ("*.fabrikam.com", "fabrikam.com")
    assert partner.tls_cert_names == ("mail.fabrikam.com",)
    assert partner.require_tls
    assert relay.kind is ConnectorKind.ON_PREMISES
    assert relay.client_ips == ("192.0.2.25/32", "2001:db8:2::/48", "203.0.113.0/24")


async def test_applying_the_same_file_twice_changes_nothing_the_second_time(
    pool: asyncpg.Pool,
) -> None:
    config = load_organization_file(CONTOSO)
    async with pool.acquire() as connection:
        first = await apply_organization(connection, config)
        before = await connection.fetch("SELECT * FROM connectors ORDER BY id")
        second = await apply_organization(connection, config)
        after = await connection.fetch("SELECT * FROM connectors ORDER BY id")

    assert second.organization_id == first.organization_id
    assert not second.changed
    assert (second.created, second.updated, second.removed) == ([], [], [])
    assert sorted(second.unchanged) == sorted(first.created)
    assert [dict(row) for row in after] == [dict(row) for row in before]


async def test_editing_the_file_updates_creates_and_removes_connectors_by_name(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as connection:
        first = await apply_organization(connection, load_organization_file(CONTOSO))
        before = await load_connectors(connection, first.organization_id)
        result = await apply_organization(connection, load_organization_file(CONTOSO_EDITED))
        connectors = {c.name: c for c in await load_connectors(connection, result.organization_id)}
        domains = await load_accepted_domains(connection, result.organization_id)
        policy = await load_boundary_policy(connection, result.organization_id)

    assert result.created == ["Tailspin outbound"]
    assert result.updated == ["Fabrikam partner"]
    assert result.unchanged == ["Fabrikam outbound"]
    assert result.removed == ["On-premises relay"]
    assert result.accepted_domains_changed
    assert result.internal_networks_changed
    assert set(connectors) == {"Fabrikam partner", "Fabrikam outbound", "Tailspin outbound"}
    partner = connectors["Fabrikam partner"]
    assert partner.id == next(c.id for c in before if c.name == "Fabrikam partner")
    assert partner.sender_domains == ("fabrikam.com",)
    assert partner.tls_cert_names == ()
    assert not partner.require_tls
    assert domains == ["contoso.com"]
    assert not policy.is_internal("2001:db8:1::5")
    assert policy.is_internal("198.51.100.7")


async def test_removing_a_connector_turns_its_facts_into_no_connector_and_rollups_equal_facts(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as connection:
        applied = await apply_organization(connection, load_organization_file(CONTOSO))
        organization_id = applied.organization_id
        ids = {c.name: c.id for c in await load_connectors(connection, organization_id)}
        relay, partner = ids["On-premises relay"], ids["Fabrikam partner"]
        facts = [
            ("a", datetime(2025, 3, 31, 23, 59, tzinfo=UTC), "INBOUND", relay, "TLS1_2", 2),
            ("b", datetime(2025, 4, 1, 0, 0, tzinfo=UTC), "INBOUND", relay, "NONE", 1),
            ("c", datetime(2025, 4, 1, 8, 0, tzinfo=UTC), "INBOUND", None, "NONE", 3),
            ("d", datetime(2025, 4, 1, 9, 0, tzinfo=UTC), "INBOUND", partner, "TLS1_3", 1),
            ("e", datetime(2025, 4, 2, 9, 0, tzinfo=UTC), "INBOUND", partner, "TLS1_2", 1),
        ]
        async with connection.transaction():
            for key, occurred_at, direction, connector_id, tls, recipients in facts:
                await insert_fact(connection, organization_id, key, occurred_at, direction,
                                  connector_id, tls, recipients)
            await refresh_rollups(connection, organization_id,
                                  [date(2025, 3, 31), date(2025, 4, 1), date(2025, 4, 2)])

        result = await apply_organization(connection, load_organization_file(CONTOSO_EDITED))
        rollups, grouped = await rollups_and_facts(connection, organization_id)
        orphans = await connection.fetchval(
            "SELECT count(*) FROM message_facts WHERE connector_id = $1", relay)
        no_connector = await connection.fetchval(
            "SELECT sum(messages) FROM daily_rollups WHERE connector_id IS NULL")
        kept = await connection.fetchval(
            "SELECT sum(messages) FROM daily_rollups WHERE connector_id = $1", partner)

    assert result.removed == ["On-premises relay"]
    assert orphans == 0
    assert no_connector == 3
    assert kept == 2
    assert rollups == grouped
    assert all(row[2] != relay for row in rollups)


def net162(name: str, *, sender_domain: str = "net162.example") -> str:
    return (
        "organization: contoso\n"
        "connectors:\n"
        f"  - {{name: {name}, direction: inbound, kind: partner,"
        f" sender_domains: [{sender_domain}]}}\n"
    )


async def test_changing_only_the_case_of_a_connector_name_renames_it_in_place(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as connection:
        applied = await apply_organization(connection, parse_organization(net162("Net162")))
        organization_id = applied.organization_id
        [before] = await load_connectors(connection, organization_id)
        async with connection.transaction():
            await insert_fact(connection, organization_id, "a",
                              datetime(2025, 4, 1, 8, 0, tzinfo=UTC), "INBOUND", before.id,
                              "TLS1_2")
            await refresh_rollups(connection, organization_id, [date(2025, 4, 1)])

        renamed = await apply_organization(connection, parse_organization(net162("NET162")))
        [after] = await load_connectors(connection, organization_id)
        again = await apply_organization(connection, parse_organization(net162("NET162")))
        both = await apply_organization(connection, parse_organization(
            net162("net162", sender_domain="net162.example.org")))
        [last] = await load_connectors(connection, organization_id)
        rollups, grouped = await rollups_and_facts(connection, organization_id)

    assert (renamed.created, renamed.updated, renamed.removed) == ([], ["NET162"], [])
    assert (after.id, after.name) == (before.id, "NET162")
    assert again.unchanged == ["NET162"]
    assert not again.changed
    assert (both.created, both.updated, both.removed) == ([], ["net162"], [])
    assert (last.id, last.name, last.sender_domains) == (
        before.id, "net162", ("net162.example.org",))
    assert rollups == grouped == [
        (date(2025, 4, 1), "INBOUND", before.id, "TLS1_2", 1, 1, 1000),
    ]


async def test_an_exact_name_is_matched_before_one_differing_only_in_case(
    pool: asyncpg.Pool,
) -> None:
    # Names that differ only in case cannot come from one file, but may be in the database
    # (written before names were matched without regard to case).
    async with pool.acquire() as connection:
        applied = await apply_organization(connection, parse_organization(net162("x")))
        organization_id = applied.organization_id
        upper = await connection.fetchval(
            "INSERT INTO connectors (organization_id, name, direction, kind, sender_domains) "
            "VALUES ($1, 'X', 'INBOUND', 'PARTNER', '{net162.example}') RETURNING id",
            organization_id,
        )
        result = await apply_organization(connection, parse_organization(net162("X")))
        connectors = await load_connectors(connection, organization_id)

    assert (result.unchanged, result.removed) == (["X"], ["x"])
    assert [(c.id, c.name) for c in connectors] == [(upper, "X")]


async def test_applying_a_file_leaves_other_organizations_alone(pool: asyncpg.Pool) -> None:
    other = parse_organization(
        "organization: fabrikam\n"
        "accepted_domains: [fabrikam.com]\n"
        "connectors:\n"
        "  - {name: Fabrikam partner, direction: outbound, kind: partner,"
        " recipient_domains: [contoso.com]}\n"
    )
    async with pool.acquire() as connection:
        fabrikam = await apply_organization(connection, other)
        await apply_organization(connection, load_organization_file(CONTOSO))
        await apply_organization(connection, load_organization_file(CONTOSO_EDITED))
        connectors = await load_connectors(connection, fabrikam.organization_id)
        domains = await load_accepted_domains(connection, fabrikam.organization_id)

    assert [(c.name, c.recipient_domains) for c in connectors] == [
        ("Fabrikam partner", ("contoso.com",)),
    ]
    assert domains == ["fabrikam.com"]


async def test_the_boundary_policy_adds_declared_networks_to_the_defaults(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as connection:
        applied = await apply_organization(connection, load_organization_file(CONTOSO))
        policy = await load_boundary_policy(connection, applied.organization_id)

    assert set(DEFAULT_INTERNAL_NETWORKS) <= set(policy.internal_networks)
    assert ipaddress.ip_network("2001:db8:1::/48") in policy.internal_networks
    assert policy.is_internal("127.0.0.1")
    assert policy.is_internal("198.51.100.200")
    assert policy.is_internal("2001:db8:1:ffff::1")
    assert not policy.is_internal("203.0.113.9")


async def test_ensure_organization_creates_once_and_find_returns_its_id(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as connection:
        assert await find_organization(connection, "northwind") is None
        created = await ensure_organization(connection, "northwind")
        again = await ensure_organization(connection, "northwind")
        found = await find_organization(connection, "northwind")
        count = await connection.fetchval("SELECT count(*) FROM organizations")

    assert created == again == found
    assert count == 1


@pytest.mark.parametrize("name", ["", "-leading-dash", "has space", "x" * 64, "ünicode"])
async def test_ensure_organization_refuses_a_bad_name_naming_it(
    pool: asyncpg.Pool, name: str
) -> None:
    async with pool.acquire() as connection:
        with pytest.raises(InvalidOrganizationNameError, match="letters, digits") as caught:
            await ensure_organization(connection, name)
        assert await connection.fetchval("SELECT count(*) FROM organizations") == 0
    assert repr(name) in str(caught.value)
    assert caught.value.code == "INVALID_ORGANIZATION_NAME"


BAD_FILES = [
    pytest.param(
        "organization: acme\nconnectors:\n"
        "  - {name: a, direction: inbound, kind: partner, sender_domains: [a.com]}\n"
        "  - {name: b, direction: inbound, kind: partner, sender_domains: [b.com]}\n"
        "  - {name: c, direction: sideways, kind: partner}\n",
        ["connectors[2].direction: 'sideways' is not one of inbound, outbound"],
        id="direction",
    ),
    pytest.param(
        "organization: acme\nconnectors:\n"
        "  - {name: a, direction: inbound, kind: friend, sender_domains: [a.com]}\n",
        ["connectors[0].kind: 'friend' is not one of partner, on_premises"],
        id="kind",
    ),
    pytest.param(
        "organization: acme\ncolour: red\n",
        ["colour: unknown key; expected one of organization, accepted_domains"],
        id="unknown top-level key",
    ),
    pytest.param(
        "organization: acme\nconnectors:\n"
        "  - {name: a, direction: inbound, kind: partner, sender_domain: [a.com]}\n",
        ["connectors[0].sender_domain: unknown key; expected one of name, direction, kind,"
         " sender_domains"],
        id="unknown connector key",
    ),
    pytest.param(
        "organization: 'acme corp'\n",
        ["organization: 'acme corp' is not a valid organization name"],
        id="organization name",
    ),
    pytest.param(
        "accepted_domains: [acme.com]\n",
        ["organization: is required"],
        id="missing organization",
    ),
    pytest.param(
        "organization: acme\naccepted_domains: [acme.com, 'mail.*.acme.com', 'a b.com']\n",
        ["accepted_domains[1]: 'mail.*.acme.com' is not a domain",
         "accepted_domains[2]: 'a b.com' is not a domain"],
        id="wildcard not leading",
    ),
    pytest.param(
        "organization: acme\ninternal_networks: [10.0.0.0/8, 10.1.2.3/16, lan]\n",
        ["internal_networks[1]: '10.1.2.3/16' has host bits set; did you mean '10.1.0.0/16'?",
         "internal_networks[2]: 'lan' is not an IP address or CIDR range"],
        id="networks",
    ),
    pytest.param(
        "organization: acme\nconnectors:\n"
        "  - {name: a, direction: inbound, kind: partner, sender_domains: [a.com],"
        " smart_hosts: [mx.a.com]}\n",
        ["connectors[0].smart_hosts: an inbound connector cannot have smart_hosts"],
        id="inbound with smart hosts",
    ),
    pytest.param(
        "organization: acme\nconnectors:\n"
        "  - {name: a, direction: outbound, kind: partner, recipient_domains: [a.com],"
        " client_ips: [192.0.2.0/24]}\n",
        ["connectors[0].client_ips: an outbound connector cannot have client_ips"],
        id="outbound with client ips",
    ),
    pytest.param(
        "organization: acme\nconnectors:\n"
        "  - {name: a, direction: outbound, kind: partner}\n",
        ["connectors[0]: an outbound connector needs at least one of recipient_domains,"
         " smart_hosts or routes"],
        id="connector without rules",
    ),
    pytest.param(
        "organization: acme\nconnectors:\n"
        "  - {name: Partner, direction: outbound, kind: partner, recipient_domains: [a.com]}\n"
        "  - {name: partner, direction: outbound, kind: partner, recipient_domains: [b.com]}\n",
        ["connectors[1].name: 'partner' is already the name of connectors[0]"],
        id="duplicate names",
    ),
    pytest.param(
        "organization: acme\nconnectors:\n"
        "  - {name: a, direction: outbound, kind: partner, recipient_domains: a.com,"
        " require_tls: maybe}\n",
        ["connectors[0].recipient_domains: 'a.com' is not a list",
         "connectors[0].require_tls: 'maybe' is not true or false"],
        id="wrong types",
    ),
    pytest.param(
        "organization: acme\nconnectors:\n"
        "  - {name: a, direction: outbound, kind: partner, smart_hosts: ['mx.a.com:25']}\n",
        ["connectors[0].smart_hosts[0]: 'mx.a.com:25' is not a host name or IP address"],
        id="smart host with port",
    ),
    pytest.param(
        "organization: acme\norganization: acme2\n",
        ["line 2, column 1", "the key 'organization' appears twice"],
        id="duplicate key",
    ),
    pytest.param(
        "organization: acme\nconnectors:\n"
        "  - {name: a, direction: outbound, kind: partner, routes: [remote_smtp, '  ', 25]}\n",
        ["connectors[0].routes[1]: '  ' is not a route name; expected the name the mail server",
         "connectors[0].routes[2]: 25 is not a string"],
        id="bad routes",
    ),
    pytest.param(
        "organization: acme\nconnectors:\n"
        "  - {name: a, direction: outbound, kind: partner, routes: remote_smtp}\n",
        ["connectors[0].routes: 'remote_smtp' is not a list"],
        id="routes not a list",
    ),
    pytest.param("", ["the file is empty"], id="empty"),
    pytest.param("- acme\n", ["expected a mapping", "found list"], id="not a mapping"),
]


@pytest.mark.parametrize(("text", "expected"), BAD_FILES)
def test_a_bad_organization_file_is_refused_with_an_error_naming_the_bad_value(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    path = tmp_path / "acme.yaml"
    path.write_text(text, encoding="utf-8")

    with pytest.raises(OrganizationFileError) as caught:
        load_organization_file(path)

    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    for fragment in expected:
        assert fragment in message
    assert caught.value.code == "INVALID_ORGANIZATION_FILE"


def test_a_yaml_syntax_error_names_the_file_and_line() -> None:
    with pytest.raises(OrganizationFileError, match=r"broken_syntax\.yaml: line 5, column 10"):
        load_organization_file(FIXTURES / "broken_syntax.yaml")


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(OrganizationFileError, match="cannot read the organization file"):
        load_organization_file(tmp_path / "absent.yaml")


def test_domains_are_lowercased_deduplicated_and_ip_rules_normalized() -> None:
    config = parse_organization(
        "organization: acme\n"
        "accepted_domains: [Acme.COM, acme.com., '*.Acme.com']\n"
        "connectors:\n"
        "  - name: relay\n"
        "    direction: inbound\n"
        "    kind: on_premises\n"
        "    client_ips: [192.0.2.7, '::ffff:192.0.2.0/120', '2001:DB8::/32']\n"
        "  - name: out\n"
        "    direction: outbound\n"
        "    kind: partner\n"
        "    smart_hosts: ['[2001:DB8::1]', MX.Example.com.]\n"
    )

    assert config.accepted_domains == ("*.acme.com", "acme.com")
    relay, out = config.connectors
    assert [str(network) for network in relay.client_ips] == [
        "192.0.2.0/24", "192.0.2.7/32", "2001:db8::/32",
    ]
    assert out.smart_hosts == ("2001:db8::1", "mx.example.com")


async def test_routes_are_stored_compared_without_case_and_changed_by_a_new_apply(
    pool: asyncpg.Pool,
) -> None:
    text = ("organization: acme\nconnectors:\n"
            "  - {name: VPN, direction: outbound, kind: on_premises,"
            " routes: [' remote_smtp_smarthost ', dnslookup_vpn, DNSLookup_VPN]}\n")
    async with pool.acquire() as connection:
        first = await apply_organization(connection, parse_organization(text))
        again = await apply_organization(connection, parse_organization(text))
        edited = await apply_organization(
            connection, parse_organization(text.replace("dnslookup_vpn, DNSLookup_VPN", "vpn")))
        [vpn] = await load_connectors(connection, first.organization_id)

    assert parse_organization(text).connectors[0].routes == (
        "dnslookup_vpn", "remote_smtp_smarthost")
    assert first.created == ["VPN"]
    assert not again.changed
    assert edited.updated == ["VPN"]
    assert vpn.routes == ("remote_smtp_smarthost", "vpn")


def test_the_readme_example_organization_file_is_valid() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    example = readme.split("```yaml\n", 1)[1].split("```", 1)[0]

    config = parse_organization(example)

    assert config.connectors[-1].routes == ("dnslookup_vpn", "remote_smtp_smarthost")


def test_yaml_aliases_are_refused_before_they_expand() -> None:
    laughs = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for name, previous in zip("bcdefghi", "abcdefgh", strict=True):
        laughs.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]")
    text = "organization: acme\nx:\n" + "\n".join(f"  {line}" for line in laughs)
    text += "\naccepted_domains: *i\n"

    with pytest.raises(OrganizationFileError) as raised:
        parse_organization(text)

    message = str(raised.value)
    assert "alias *a is not accepted" in message
    assert "line 4" in message
    assert len(message) < 300


def test_a_long_bad_value_is_shown_shortened_with_its_length() -> None:
    name = "x" * 1000

    with pytest.raises(OrganizationFileError) as raised:
        parse_organization(f"organization: acme\nconnectors:\n  - name: {name}\n"
                           "    direction: sideways\n    kind: partner\n")

    message = str(raised.value)
    assert "(1000 characters)" in message
    assert "sideways" in message
    assert len(message) < 600


def test_an_organization_file_of_over_a_million_characters_is_refused() -> None:
    text = "organization: acme\n# " + "x" * 1_000_000 + "\n"

    with pytest.raises(OrganizationFileError, match="at most 1000000 are accepted"):
        parse_organization(text)
