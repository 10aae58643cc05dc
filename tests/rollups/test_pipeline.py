"""Loading streams of message facts: batches that keep rollups equal to facts at every commit."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailflow.domain import DeliveryStatus, Direction, MessageFact, TlsVersion
from mailflow.ingest.pipeline import LoadResult, load_batch, load_facts
from mailflow.store.facts import InvalidMessageFactError, StoreResult

MakeFact = Callable[..., MessageFact]
NewOrganization = Callable[[], Awaitable[int]]
NewConnector = Callable[[int, Direction], Awaitable[int]]
RollupRows = Callable[[], Awaitable[set[tuple[object, ...]]]]

FIRST_DAY = datetime(2026, 1, 29, tzinfo=UTC)  # six days from here cross into February
ZONES = (UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8)))


@dataclasses.dataclass(frozen=True)
class GeneratedFact:
    """A fact for the organization and connector at these positions, once they exist."""

    organization: int
    connector: int | None
    fact: MessageFact


@dataclasses.dataclass(frozen=True)
class Scenario:
    """Facts loaded twice: ``facts[:first_end]``, then the overlapping ``facts[second_start:]``."""

    facts: list[GeneratedFact]
    first_end: int
    second_start: int
    batch_size: int


@st.composite
def generated_facts(draw: st.DrawFn) -> GeneratedFact:
    instant = FIRST_DAY + timedelta(
        days=draw(st.integers(0, 5)), minutes=draw(st.sampled_from([0, 1, 720, 1439]))
    )
    fact = MessageFact(
        source_key=f"key-{draw(st.integers(0, 12))}",
        occurred_at=instant.astimezone(draw(st.sampled_from(ZONES))),
        direction=draw(st.sampled_from(Direction)),
        tls_version=draw(st.sampled_from(TlsVersion)),
        tls_cipher=None,
        peer_host=None,
        peer_ip=draw(st.sampled_from([None, "192.0.2.7", "2001:db8::25"])),
        sender_domain="example.net",
        recipient_domains=("example.org",),
        recipients=draw(st.integers(0, 5)),
        size_bytes=draw(st.integers(0, 10**9)),
        status=DeliveryStatus.RECEIVED,
    )
    return GeneratedFact(
        organization=draw(st.integers(0, 2)),
        connector=draw(st.sampled_from([None, 0, 1])),
        fact=fact,
    )


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    facts = draw(st.lists(generated_facts(), max_size=40))
    first_end = draw(st.integers(0, len(facts)))
    return Scenario(
        facts=facts,
        first_end=first_end,
        second_start=draw(st.integers(0, first_end)),
        batch_size=draw(st.integers(1, 8)),
    )


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(scenario=scenarios())
async def test_rollups_equal_a_group_by_over_facts_after_overlapping_loads(
    pool: asyncpg.Pool,
    new_organization: NewOrganization,
    new_connector: NewConnector,
    stored_rollups: RollupRows,
    expected_rollups: RollupRows,
    scenario: Scenario,
) -> None:
    """Every daily_rollups row equals a GROUP BY over message_facts, with none missing or extra.

    pytest-asyncio runs each Hypothesis example of this async test on the session's event
    loop. The function-scoped ``pool`` (and its database) is made once for all examples, so
    each example starts by emptying the tables; that is why the health check is suppressed.
    Organizations load concurrently; both loads of one organization run in order.
    """
    await pool.execute("TRUNCATE organizations, message_facts, daily_rollups CASCADE")
    organizations = [await new_organization() for _ in range(3)]
    connectors = [
        [await new_connector(organization, direction) for direction in Direction]
        for organization in organizations
    ]

    async def load(generated: list[GeneratedFact]) -> list[LoadResult]:
        return await asyncio.gather(*(
            load_facts(pool, organization_id, [
                dataclasses.replace(item.fact, connector_id=(
                    None if item.connector is None else connectors[position][item.connector]
                ))
                for item in generated if item.organization == position
            ], batch_size=scenario.batch_size)
            for position, organization_id in enumerate(organizations)
        ))

    first = await load(scenario.facts[: scenario.first_end])
    assert await stored_rollups() == await expected_rollups()
    second = await load(scenario.facts[scenario.second_start :])
    assert await stored_rollups() == await expected_rollups()

    distinct = {
        (item.organization, item.fact.source_key, item.fact.occurred_at)
        for item in scenario.facts
    }
    loaded = first + second
    assert sum(result.inserted for result in loaded) == len(distinct)
    assert await pool.fetchval("SELECT count(*) FROM message_facts") == len(distinct)
    given_twice = scenario.first_end - scenario.second_start
    assert sum(result.duplicates for result in loaded) == len(scenario.facts) + given_twice - len(
        distinct
    )


def ten_facts(make_fact: MakeFact) -> list[MessageFact]:
    """Ten facts over three UTC days around a month's end, mixed in direction and TLS version."""
    start = datetime(2026, 1, 30, 20, tzinfo=UTC)
    return [
        make_fact(
            f"key-{n}",
            start + timedelta(hours=7 * n),
            direction=Direction.OUTBOUND if n % 3 == 0 else Direction.INBOUND,
            tls_version=TlsVersion.TLS1_0 if n % 4 == 0 else TlsVersion.TLS1_3,
            recipients=n,
            size_bytes=1_000 * n,
        )
        for n in range(10)
    ]


async def counts(pool: asyncpg.Pool) -> tuple[int, int, int]:
    row = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM message_facts), "
        "(SELECT count(*) FROM daily_rollups), (SELECT sum(messages) FROM daily_rollups)"
    )
    assert row is not None
    return row[0], row[1], row[2]


async def test_loading_the_same_facts_twice_changes_no_count(
    pool: asyncpg.Pool, new_organization: NewOrganization, make_fact: MakeFact
) -> None:
    organization_id = await new_organization()
    facts = ten_facts(make_fact)
    first = await load_facts(pool, organization_id, facts)
    after_first = await counts(pool)

    second = await load_facts(pool, organization_id, facts)

    assert (first.inserted, first.duplicates, len(first.touched_days)) == (10, 0, 4)
    assert second == LoadResult(inserted=0, duplicates=10, touched_days=set())
    assert await counts(pool) == after_first == (10, after_first[1], 10)


async def test_loading_new_facts_refreshes_only_the_days_they_touch(
    pool: asyncpg.Pool,
    new_organization: NewOrganization,
    make_fact: MakeFact,
) -> None:
    """A rollup of an untouched day, tampered with, stays tampered: refresh is incremental."""
    organization_id = await new_organization()
    old = make_fact("old", "2026-03-01T12:00:00")
    await load_facts(pool, organization_id, [old])
    await pool.execute("UPDATE daily_rollups SET messages = 99 WHERE day = '2026-03-01'")

    result = await load_facts(pool, organization_id, [old, make_fact("new", "2026-03-02T12:00")])

    assert result.touched_days == {date(2026, 3, 2)}
    messages = await pool.fetch("SELECT day, messages FROM daily_rollups ORDER BY day")
    assert [tuple(row.values()) for row in messages] == [
        (date(2026, 3, 1), 99),
        (date(2026, 3, 2), 1),
    ]


async def test_a_load_spanning_two_months_creates_both_partitions(
    pool: asyncpg.Pool, new_organization: NewOrganization, make_fact: MakeFact
) -> None:
    organization_id = await new_organization()

    await load_facts(pool, organization_id, [
        make_fact("a", "2026-04-30T23:59:59"), make_fact("b", "2026-05-01T00:00:00"),
    ])

    partitions = await pool.fetch(
        "SELECT inhrelid::regclass::text AS name FROM pg_inherits "
        "WHERE inhparent = 'message_facts'::regclass ORDER BY 1"
    )
    assert [row["name"] for row in partitions] == ["message_facts_202604", "message_facts_202605"]


async def test_batch_size_does_not_change_the_rollups(
    pool: asyncpg.Pool,
    new_organization: NewOrganization,
    make_fact: MakeFact,
    stored_rollups: RollupRows,
    expected_rollups: RollupRows,
) -> None:
    organization_id = await new_organization()
    facts = ten_facts(make_fact)
    batches: list[StoreResult] = []

    await load_facts(pool, organization_id, facts, batch_size=3, on_batch=batches.append)
    in_small_batches = await stored_rollups()
    await pool.execute("TRUNCATE message_facts, daily_rollups")
    await load_facts(pool, organization_id, facts, batch_size=1000)

    assert [batch.inserted for batch in batches] == [3, 3, 3, 1]
    assert in_small_batches == await stored_rollups() == await expected_rollups()


async def test_loading_one_organization_leaves_another_organizations_rollups_alone(
    pool: asyncpg.Pool, new_organization: NewOrganization, make_fact: MakeFact
) -> None:
    ours, theirs = await new_organization(), await new_organization()
    facts = ten_facts(make_fact)
    await load_facts(pool, theirs, facts)
    await pool.execute("UPDATE daily_rollups SET messages = 99 WHERE organization_id = $1", theirs)
    their_rollups = await pool.fetch("SELECT * FROM daily_rollups ORDER BY 2, 3, 4, 5")

    result = await load_facts(pool, ours, facts)

    assert result.inserted == 10
    assert await pool.fetch(
        "SELECT * FROM daily_rollups WHERE organization_id = $1 ORDER BY 2, 3, 4, 5", theirs
    ) == their_rollups


async def test_classify_assigns_the_connector_that_rollups_count_under(
    pool: asyncpg.Pool,
    new_organization: NewOrganization,
    new_connector: NewConnector,
    make_fact: MakeFact,
) -> None:
    organization_id = await new_organization()
    partner = await new_connector(organization_id, Direction.INBOUND)

    def classify(fact: MessageFact) -> MessageFact:
        return dataclasses.replace(fact, connector_id=partner if fact.recipients > 4 else None)

    await load_facts(pool, organization_id, ten_facts(make_fact), classify=classify)

    rows = await pool.fetch(
        "SELECT connector_id, sum(messages)::int AS messages FROM daily_rollups "
        "GROUP BY connector_id ORDER BY connector_id NULLS FIRST"
    )
    assert [tuple(row.values()) for row in rows] == [(None, 5), (partner, 5)]


async def test_load_reads_the_input_one_batch_at_a_time(
    pool: asyncpg.Pool, new_organization: NewOrganization, make_fact: MakeFact
) -> None:
    organization_id = await new_organization()
    read = 0

    def stream() -> Iterator[MessageFact]:
        nonlocal read
        for fact in ten_facts(make_fact):
            read += 1
            yield fact

    read_when_stored: list[int] = []
    await load_facts(
        pool, organization_id, stream(), batch_size=4,
        on_batch=lambda _: read_when_stored.append(read),
    )

    assert read_when_stored == [4, 8, 10]


async def test_an_interrupted_load_keeps_rollups_equal_to_facts_and_a_rerun_converges(
    pool: asyncpg.Pool,
    new_organization: NewOrganization,
    make_fact: MakeFact,
    stored_rollups: RollupRows,
    expected_rollups: RollupRows,
) -> None:
    organization_id = await new_organization()
    facts = ten_facts(make_fact)
    broken = [*facts[:5], dataclasses.replace(facts[5], occurred_at=datetime(2026, 2, 1)), *facts]

    with pytest.raises(ValueError, match="naive occurred_at"):
        await load_facts(pool, organization_id, broken, batch_size=3)
    after_interruption = await counts(pool)
    assert await stored_rollups() == await expected_rollups()
    rerun = await load_facts(pool, organization_id, facts, batch_size=3)

    assert after_interruption[0] == 3
    assert (rerun.inserted, rerun.duplicates) == (7, 3)
    assert await stored_rollups() == await expected_rollups()
    assert await counts(pool) == (10, len(await expected_rollups()), 10)


async def test_an_absurd_count_in_a_later_batch_loses_only_that_batch(
    pool: asyncpg.Pool,
    new_organization: NewOrganization,
    make_fact: MakeFact,
    stored_rollups: RollupRows,
    expected_rollups: RollupRows,
) -> None:
    organization_id = await new_organization()
    facts = ten_facts(make_fact)
    facts[7] = dataclasses.replace(facts[7], recipients=99_999_999_999)
    committed: list[StoreResult] = []

    with pytest.raises(InvalidMessageFactError, match="'key-7' has recipients 99999999999"):
        await load_facts(pool, organization_id, facts, batch_size=3, on_batch=committed.append)

    assert [batch.inserted for batch in committed] == [3, 3]
    assert (await counts(pool))[0] == 6
    assert await stored_rollups() == await expected_rollups()


async def test_a_batch_size_below_one_is_rejected(
    pool: asyncpg.Pool, new_organization: NewOrganization
) -> None:
    organization_id = await new_organization()

    with pytest.raises(ValueError, match="batch_size must be at least 1, not 0"):
        await load_facts(pool, organization_id, [], batch_size=0)


async def test_a_batch_whose_last_step_fails_stores_no_fact_and_no_rollup(
    pool: asyncpg.Pool, new_organization: NewOrganization, make_fact: MakeFact
) -> None:
    organization_id = await new_organization()

    async def fail(connection: object) -> None:
        raise RuntimeError("the follow position could not be saved")

    async with pool.acquire() as connection:
        with pytest.raises(RuntimeError, match="could not be saved"):
            await load_batch(connection, organization_id,
                             [make_fact("lost", "2026-03-01T12:00:00")], then=fail)

    assert await pool.fetchval("SELECT count(*) FROM message_facts") == 0
    assert await pool.fetchval("SELECT count(*) FROM daily_rollups") == 0


async def test_concurrent_overlapping_loads_of_one_organization_count_each_fact_once(
    pool: asyncpg.Pool,
    new_organization: NewOrganization,
    make_fact: MakeFact,
    stored_rollups: RollupRows,
    expected_rollups: RollupRows,
) -> None:
    """Rollups grow by the facts each load stored: a fact both loads offer is added once."""
    organization_id = await new_organization()
    tls = list(TlsVersion)
    facts = [
        make_fact(f"key-{number}", f"2026-03-0{1 + number % 3}T{number % 24:02}:00:00",
                  direction=list(Direction)[number % 2], tls_version=tls[number % len(tls)],
                  recipients=1 + number % 4, size_bytes=1_000 + number)
        for number in range(600)
    ]

    results = await asyncio.gather(
        load_facts(pool, organization_id, facts[:400], batch_size=37),
        load_facts(pool, organization_id, facts[200:], batch_size=41),
        load_facts(pool, organization_id, facts[100:500], batch_size=53),
    )

    assert sum(result.inserted for result in results) == 600
    assert await stored_rollups() == await expected_rollups()
    assert await pool.fetchval("SELECT sum(messages) FROM daily_rollups") == 600
