"""The Postfix parser fed line by line, its state saved as JSON and taken up again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.conftest import realdata

from mailflow.domain import MessageFact, TlsVersion
from mailflow.errors import ParserStateError
from mailflow.ingest.network import BoundaryPolicy
from mailflow.ingest.postfix import PostfixParser, parse_postfix
from mailflow.ingest.report import IngestReport

FIXTURES = Path(__file__).parent / "fixtures"
POLICY = BoundaryPolicy()


def restarted_every(lines: list[str], every: int) -> tuple[list[MessageFact], PostfixParser]:
    """The facts of ``lines`` fed one by one to parsers restored from JSON every few lines."""
    report = IngestReport()
    parser = PostfixParser(policy=POLICY, year=2021, reference_time=None, report=report)
    facts: list[MessageFact] = []
    for number, line in enumerate(lines, 1):
        facts += parser.feed(line)
        if number % every == 0:
            saved = json.loads(json.dumps(parser.state()))
            # No year given: a restored parser takes the calendar from the state.
            parser = PostfixParser(policy=POLICY, year=None, reference_time=None, report=report,
                                   state=saved)
    return facts, parser


def described(facts: list[MessageFact]) -> list[tuple[object, ...]]:
    return sorted((fact.source_key, fact.occurred_at, fact.direction, fact.tls_version,
                   fact.tls_cipher, fact.sender_domain, fact.recipient_domains,
                   fact.recipients, fact.size_bytes) for fact in facts)


@pytest.mark.parametrize("name", ["amavis_reinjection.log", "deferred_then_sent.log",
                                  "tls_variants.log", "year_rollover.log", "queue_id_reuse.log"])
def test_a_parser_restored_after_any_line_gives_the_facts_of_one_read_through(name: str) -> None:
    lines = (FIXTURES / name).read_text().splitlines(keepends=True)
    whole = list(parse_postfix(lines, policy=POLICY, year=2021, reference_time=None,
                               report=IngestReport()))

    facts, parser = restarted_every(lines, 1)
    parser_end = list(parser._reader.stream((), finish=True))  # the end of input flushes

    assert whole
    assert described(facts + parser_end) == described(whole)


def test_a_message_open_across_a_restart_keeps_the_tls_of_its_session() -> None:
    lines = (FIXTURES / "amavis_reinjection.log").read_text().splitlines(keepends=True)
    client = next(n for n, line in enumerate(lines) if ": client=mx.example.net" in line)

    facts, parser = restarted_every(lines[: client + 1], client + 1)
    assert facts == []
    assert parser.open_messages == 1
    for line in lines[client + 1 :]:
        facts += parser.feed(line)

    [inbound] = [fact for fact in facts if fact.source_key.endswith(":in")]
    assert inbound.tls_version is TlsVersion.TLS1_3


@pytest.mark.realdata
def test_the_real_relay_log_restored_every_few_lines_gives_the_same_facts() -> None:
    lines = []
    for name in ("relay-2021-mail.log.1", "relay-2021-mail.log"):
        with realdata("postfix", name).open(encoding="utf-8", errors="replace") as file:
            lines += file.readlines()
    whole = list(parse_postfix(lines, policy=POLICY, year=2021, reference_time=None,
                               report=IngestReport()))

    facts, parser = restarted_every(lines, 37)

    # Every message of the two files is complete by their end: nothing is left open.
    assert parser.open_messages == 0
    assert described(facts) == described(whole)


def test_a_state_of_another_version_is_refused_with_the_versions_named() -> None:
    report = IngestReport()
    state = PostfixParser(policy=POLICY, year=2021, reference_time=None, report=report).state()

    with pytest.raises(ParserStateError, match="of version 99; this parser reads version 1"):
        PostfixParser(policy=POLICY, year=2021, reference_time=None, report=report,
                      state={**state, "version": 99})
    with pytest.raises(ParserStateError, match="unreadable"):
        PostfixParser(policy=POLICY, year=2021, reference_time=None, report=report,
                      state={**state, "messages": "garbage"})
