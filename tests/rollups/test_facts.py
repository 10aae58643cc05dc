"""Storing message facts: idempotent, partitioned by month, strict about time zones."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from datetime import date, datetime, timedelta, timezone

import asyncpg
import pytest

from mailflow.domain import MessageFact
from mailflow.store.facts import (
    InvalidMessageFactError,
    NotInTransactionError,
    StoreResult,
    store_facts,
)

MakeFact = Callable[..., MessageFact]
NewOrganization = Callable[[], Awaitable[int]]


async def store(
    pool: asyncpg.Pool, organization_id: int, facts: Sequence[MessageFact]
) -> StoreResult:
    async with pool.acquire() as connection, connection.transaction():
        return await store_facts(connection, organization_id, facts)


async def count_facts(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM message_facts")
    return count


async def test_storing_the_same_facts_twice_inserts_nothing_the_second_time(
    pool: asyncpg.Pool, new_organization: NewOrganization, make_fact: MakeFact
) -> None:
    organization_id = await new_organization()
    facts = [make_fact(f"key-{n}", f"2026-03-0{n}T12:00:00") for n in range(1, 4)]

    first = await store(pool, organization_id, facts)
    second = await store(pool, organization_id, facts)

    days = {date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3)}
    assert first == StoreResult(inserted=3, duplicates=0, touched_days=days)
    assert second == StoreResult(inserted=0, duplicates=3, touched_days=set())
    assert await count_facts(pool) == 3


async def test_a_fact_repeated_within_one_batch_is_stored_once_and_counted_as_duplicate(
    pool: asyncpg.Pool, new_organization: NewOrganization, make_fact: MakeFact
) -> None:
    organization_id = await new_organization()
    repeated = make_fact("key-1", "2026-03-01T12:00:00")

    result = await store(pool, organization_id, [repeated, repeated, repeated])

    assert (result.inserted, result.duplicates) == (1, 2)
    assert await count_facts(pool) == 1


async def test_the_same_source_key_at_another_time_is_another_fact(
    pool: asyncpg.Pool, new_organization: NewOrganization, make_fact: MakeFact
) -> None:
    organization_id = await new_organization()
    facts = [make_fact("key-1", "2026-03-01T12:00:00"), make_fact("key-1", "2026-03-02T12:00:00")]

    result = await store(pool, organization_id, facts)

    assert result.inserted == 2


async def test_the_same_fact_in_two_organizations_is_stored_for_each(
    pool: asyncpg.Pool, new_organization: NewOrganization, make_fact: MakeFact
) -> None:
    facts = [make_fact("key-1", "2026-03-01T12:00:00")]

    results = [await store(pool, await new_organization(), facts) for _ in range(2)]

    assert [result.inserted for result in results] == [1, 1]


async def test_touched_days_are_the_utc_days_of_the_facts_actually_inserted(
    pool: asyncpg.Pool, new_organization: NewOrganization, make_fact: MakeFact
) -> None:
    organization_id = await new_organization()
    late_evening_in_new_york = datetime(2026, 3, 1, 21, 30, tzinfo=timezone(timedelta(hours=-5)))
    await store(pool, organization_id, [make_fact("old", "2026-03-05T08:00:00")])

    result = await store(pool, organization_id, [
        make_fact("evening", late_evening_in_new_york),
        make_fact("old", "2026-03-05T08:00:00"),
    ])

    assert result.touched_days == {date(2026, 3, 2)}


async def test_a_batch_spanning_two_months_creates_both_partitions_and_fills_each(
    pool: asyncpg.Pool, new_organization: NewOrganization, make_fact: MakeFact
) -> None:
    organization_id = await new_organization()
    facts = [
        make_fact("january", "2026-01-31T23:59:59"),
        make_fact("february", "2026-02-01T00:00:00"),
    ]

    await store(pool, organization_id, facts)

    rows = await pool.fetch(
        "SELECT tableoid::regclass::text AS partition, source_key FROM message_facts ORDER BY 2"
    )
    assert [(row["partition"], row["source_key"]) for row in rows] == [
        ("message_facts_202602", "february"),
        ("message_facts_202601", "january"),
    ]


async def test_a_naive_timestamp_is_rejected_naming_the_source_key_and_nothing_is_stored(
    pool: asyncpg.Pool, new_organization: NewOrganization, make_fact: MakeFact
) -> None:
    organization_id = await new_organization()
    facts = [
        make_fact("fine", "2026-03-01T12:00:00"),
        make_fact("naive-one", datetime(2026, 3, 1, 12, 0)),
    ]

    with pytest.raises(ValueError, match=r"'naive-one'.*naive occurred_at") as error:
        await store(pool, organization_id, facts)

    assert isinstance(error.value, InvalidMessageFactError)
    assert error.value.code == "INVALID_MESSAGE_FACT"
    assert await count_facts(pool) == 0


async def test_a_peer_ip_that_is_no_address_is_rejected_naming_the_source_key(
    pool: asyncpg.Pool, new_organization: NewOrganization, make_fact: MakeFact
) -> None:
    organization_id = await new_organization()
    bad = dataclasses.replace(make_fact("bad-ip", "2026-03-01T12:00:00"), peer_ip="mx1")

    with pytest.raises(ValueError, match=r"'bad-ip'.*'mx1'"):
        await store(pool, organization_id, [bad])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("recipients", 2**31),
        ("recipients", -1),
        ("size_bytes", 2**40 + 1),
        ("size_bytes", -1),
    ],
)
async def test_a_count_outside_its_column_is_rejected_naming_key_and_value_before_any_write(
    pool: asyncpg.Pool, new_organization: NewOrganization, make_fact: MakeFact,
    field: str, value: int,
) -> None:
    organization_id = await new_organization()
    fine = make_fact("fine", "2026-03-01T12:00:00")
    bad = dataclasses.replace(make_fact("absurd", "2026-03-01T12:00:00"), **{field: value})

    with pytest.raises(InvalidMessageFactError, match=rf"'absurd' has {field} {value}, outside"):
        await store(pool, organization_id, [fine, bad])

    assert await count_facts(pool) == 0


async def test_the_largest_counts_accepted_are_stored(
    pool: asyncpg.Pool, new_organization: NewOrganization, make_fact: MakeFact
) -> None:
    organization_id = await new_organization()
    largest = make_fact("largest", "2026-03-01T12:00:00", recipients=2**31 - 1,
                        size_bytes=2**40)

    assert (await store(pool, organization_id, [largest])).inserted == 1


@pytest.mark.parametrize("field", ["source_key", "tls_cipher", "peer_host", "sender_domain"])
async def test_a_nul_character_in_text_is_rejected_naming_the_field(
    pool: asyncpg.Pool, new_organization: NewOrganization, make_fact: MakeFact, field: str
) -> None:
    organization_id = await new_organization()
    bad = dataclasses.replace(make_fact("nul", "2026-03-01T12:00:00"), **{field: "a\x00b"})

    with pytest.raises(InvalidMessageFactError, match=rf"has {field} 'a\\x00b', with a NUL"):
        await store(pool, organization_id, [bad])


@pytest.mark.parametrize(("field", "named"), [
    ("recipient_domains", "recipient domain"), ("routes", "route"),
])
async def test_a_nul_character_in_a_recipient_domain_or_a_route_is_rejected(
    pool: asyncpg.Pool, new_organization: NewOrganization, make_fact: MakeFact,
    field: str, named: str,
) -> None:
    organization_id = await new_organization()
    bad = dataclasses.replace(
        make_fact("nul", "2026-03-01T12:00:00"), **{field: ("example.org", "a\x00b")}
    )

    with pytest.raises(InvalidMessageFactError, match=rf"'nul' has {named} 'a\\x00b'"):
        await store(pool, organization_id, [bad])


@pytest.mark.parametrize("values", [
    (), ("example.org",), ("a,b", "{c}", 'say "hi"', "back\\slash", "NULL", "", " spaced "),
    ('"', "\\", "\\\"", "übung.example", "tab\there"),
])
async def test_recipient_domains_and_routes_are_stored_exactly_as_given(
    pool: asyncpg.Pool, new_organization: NewOrganization, make_fact: MakeFact,
    values: tuple[str, ...],
) -> None:
    organization_id = await new_organization()
    message = dataclasses.replace(make_fact("arrays", "2026-03-01T12:00:00"),
                                  recipient_domains=values, routes=values)

    await store(pool, organization_id, [message])

    row = await pool.fetchrow("SELECT recipient_domains, routes FROM message_facts")
    assert row is not None
    assert tuple(row["recipient_domains"]) == values
    assert row["routes"] == (list(values) if values else None)


async def test_a_source_key_too_long_to_index_is_rejected_before_any_write(
    pool: asyncpg.Pool, new_organization: NewOrganization, make_fact: MakeFact
) -> None:
    organization_id = await new_organization()
    facts = [make_fact("fine", "2026-03-01T12:00:00"), make_fact("k" * 1025, "2026-03-01")]

    with pytest.raises(InvalidMessageFactError, match="source key of 1025 bytes, more than"):
        await store(pool, organization_id, facts)
    stored = await store(pool, organization_id, [make_fact("k" * 1024, "2026-03-01")])

    assert stored.inserted == 1
    assert await count_facts(pool) == 1


async def test_two_batches_can_be_stored_in_one_transaction(
    pool: asyncpg.Pool, new_organization: NewOrganization, make_fact: MakeFact
) -> None:
    organization_id = await new_organization()

    async with pool.acquire() as connection, connection.transaction():
        first = await store_facts(connection, organization_id, [make_fact("a", "2026-03-01")])
        second = await store_facts(connection, organization_id, [make_fact("b", "2026-03-01")])

    assert (first.inserted, second.inserted) == (1, 1)
    assert await count_facts(pool) == 2


async def test_an_empty_batch_stores_nothing(
    pool: asyncpg.Pool, new_organization: NewOrganization
) -> None:
    organization_id = await new_organization()

    assert await store(pool, organization_id, []) == StoreResult()


async def test_storing_outside_a_transaction_is_refused(
    pool: asyncpg.Pool, new_organization: NewOrganization, make_fact: MakeFact
) -> None:
    organization_id = await new_organization()

    async with pool.acquire() as connection:
        with pytest.raises(NotInTransactionError, match="inside a transaction"):
            await store_facts(connection, organization_id, [make_fact("a", "2026-03-01T00:00:00")])
