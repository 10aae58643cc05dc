"""What an ingest read: lines, facts, and the unusable lines counted by kind."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class IngestReport:
    """Counts kept while a parser reads a log.

    ``skipped`` counts lines that looked like mail events but could not be
    used, by a short kind name such as ``"unparseable timestamp"``. Lines that
    carry nothing for the reports (IMAP logins, anvil statistics, ...) are not
    counted there.
    """

    lines: int = 0
    facts: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def skip(self, kind: str) -> None:
        """Count one unusable line of the given kind."""
        self.skipped[kind] += 1

    def summary(self) -> str:
        """One line for people, e.g. ``"7534 lines, 180 message facts, 2 lines skipped: ..."``."""
        text = f"{self.lines} lines, {self.facts} message facts"
        total = sum(self.skipped.values())
        if not total:
            return f"{text}, no lines skipped"
        ranked = sorted(self.skipped.items(), key=lambda item: (-item[1], item[0]))
        kinds = ", ".join(f"{count} {kind}" for kind, count in ranked)
        return f"{text}, {total} {'line' if total == 1 else 'lines'} skipped: {kinds}"
