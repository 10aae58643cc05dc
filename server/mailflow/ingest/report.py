"""What an ingest read: lines, facts, the unusable lines counted by kind, and reading problems."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

from mailflow.ingest.window import in_window


@dataclass
class IngestReport:
    """Counts kept while a parser reads a log.

    ``lines`` counts the lines read, including those too long to be handed to the
    parser (counted by the reader, which skips them).
    ``skipped`` counts lines that looked like mail events but could not be
    used, by a short kind name such as ``"unparseable timestamp"``. Lines that
    carry nothing for the reports (IMAP logins, anvil statistics, ...) are not
    counted there. ``recognized_lines`` counts the lines a parser followed as
    its mail server's (for Postfix, those of smtpd, qmgr, smtp, ...), used or not.

    ``stored_as_zero`` counts lines with a value that could not be used (a size out of
    range, say) whose facts were stored all the same, with 0 for that value, by kind.

    ``first_fact_at`` and ``last_fact_at`` span the facts found, in UTC, leaving out times
    outside the plausible window (see mailflow.ingest.window), which are never stored.
    ``assumed_year`` is the year taken for time stamps that carry none when the
    caller gave no year. ``problems`` names files that could not be read to the
    end, and why; ``unrecognized_files`` those with lines but none recognized;
    ``rejections`` the records of mailflow's own format that were not loaded, and why;
    ``current_file`` the file being read and ``files_started`` its place in the list, when
    the lines of several files form one stream.
    """

    lines: int = 0
    facts: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    stored_as_zero: Counter[str] = field(default_factory=Counter)
    recognized_lines: int = 0
    first_fact_at: datetime | None = None
    last_fact_at: datetime | None = None
    assumed_year: int | None = None
    problems: list[str] = field(default_factory=list)
    unrecognized_files: list[str] = field(default_factory=list)
    rejections: list[str] = field(default_factory=list)
    current_file: str | None = None
    files_started: int = 0

    def skip(self, kind: str) -> None:
        """Count one unusable line of the given kind."""
        self.skipped[kind] += 1

    def store_as_zero(self, kind: str) -> None:
        """Count one line whose value of the given kind was unusable and stored as 0."""
        self.stored_as_zero[kind] += 1

    def found(self, at: datetime) -> None:
        """Count one fact that occurred at ``at`` (an aware time)."""
        self.facts += 1
        if not in_window(at):
            return
        at = at.astimezone(UTC)
        if self.first_fact_at is None or at < self.first_fact_at:
            self.first_fact_at = at
        if self.last_fact_at is None or at > self.last_fact_at:
            self.last_fact_at = at

    def summary(self) -> str:
        """One line for people, e.g. ``"7534 lines, 180 message facts, skipped lines: ..."``.

        Kinds are given as ``kind: count``, most frequent first:
        ``"skipped lines: malformed postfix line: 2, unparseable timestamp: 1"``, then those
        stored as 0: ``"; values stored as 0: size out of range: 1"``.
        """
        text = f"{plural(self.lines, 'line')}, {plural(self.facts, 'message fact')}"
        if sum(self.skipped.values()):
            text += f", skipped lines: {_by_kind(self.skipped)}"
        else:
            text += ", no lines skipped"
        if sum(self.stored_as_zero.values()):
            text += f"; values stored as 0: {_by_kind(self.stored_as_zero)}"
        return text


def _by_kind(counts: Counter[str]) -> str:
    """``"malformed postfix line: 2, unparseable timestamp: 1"``: most frequent first."""
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{kind}: {count}" for kind, count in ranked)


def plural(count: int, noun: str) -> str:
    """``"1 line"``, ``"2 lines"``: nouns whose plural takes an s."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
