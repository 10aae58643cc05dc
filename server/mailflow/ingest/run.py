"""Run an ingest from the command line: read, parse, classify, store, refresh, summarise."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import asyncpg
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

from mailflow.ingest.classify import load_boundary_policy, load_classifier
from mailflow.ingest.pipeline import LoadResult, load_facts
from mailflow.ingest.postfix import parse_postfix
from mailflow.ingest.report import IngestReport
from mailflow.ingest.sources import input_size, newest_modification_time, read_lines
from mailflow.store.organizations import ensure_organization

log = logging.getLogger("mailflow.ingest")


async def ingest_postfix_files(
    pool: asyncpg.Pool, organization: str, files: Sequence[str], *,
    year: int | None, progress: bool,
) -> tuple[IngestReport, LoadResult]:
    """Load Postfix log files (read as one stream, in the order given) for an organization."""
    async with pool.acquire() as connection:
        organization_id = await ensure_organization(connection, organization)
        classifier = await load_classifier(connection, organization_id)
        policy = await load_boundary_policy(connection, organization_id)

    report = IngestReport()
    bar = Progress(
        "[progress.description]{task.description}", BarColumn(), DownloadColumn(),
        TimeRemainingColumn(), disable=not progress, transient=True,
    )
    with bar:
        task = bar.add_task("ingesting", total=input_size(files))
        lines = read_lines(files, advance=lambda n: bar.advance(task, n))
        facts = parse_postfix(
            lines, policy=policy, year=year,
            reference_time=newest_modification_time(files), report=report,
        )
        result = await load_facts(pool, organization_id, facts, classify=classifier.assign)

    log.info(
        "ingest finished",
        extra={"organization_id": organization_id, "lines": report.lines,
               "facts": report.facts, "inserted": result.inserted,
               "duplicates": result.duplicates},
    )
    print(_summary(organization, report, result), file=sys.stderr)
    return report, result


def _summary(organization: str, report: IngestReport, result: LoadResult) -> str:
    lines = [
        f"{organization}: read {report.lines} lines, found {report.facts} message facts: "
        f"{result.inserted} new, {result.duplicates} already loaded; "
        f"rollups refreshed for {len(result.touched_days)} day(s)",
    ]
    if report.skipped:
        lines.append(report.summary())
    return "\n".join(lines)
