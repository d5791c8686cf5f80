"""Scanned functions against a knowledge base: each one still vulnerable to a known CVE is a
finding that names it."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from enstack.csyntax.functions import Function
from enstack.known.base import KnownBase, describe
from enstack.known.normalise import normalise
from enstack.known.signature import Entry, judge
from enstack.log import count_of
from enstack.scan.suppress import Suppression, fingerprint

LEVEL_OF = {"clone": "error", "signature": "warning"}  # a copy of it, or still its signature


@dataclass
class KnownFinding:
    """A function that a known vulnerability's entry matches."""

    function: Function
    entry: Entry
    how: str  # clone or signature
    lines: list[int]  # file lines of the statements that matched (the signature), in order
    containment: float  # share of the known vulnerable function's statements found here
    suppression: Suppression | None = None

    @property
    def label(self) -> str:
        """What suppressions and baselines name: the CVE id."""
        return self.entry.vuln_id

    @property
    def level(self) -> str:
        return LEVEL_OF[self.how]

    @cached_property
    def fingerprint(self) -> str:
        return fingerprint(self.function.name, self.entry.vuln_id, self.function.code)

    @property
    def message(self) -> str:
        what = (
            "is a copy (after normalisation) of"
            if self.how == "clone"
            else f"holds the vulnerable statements of (and {self.containment:.0%} of the text of)"
        )
        return (
            f"Function {self.function.name} (lines {self.function.start_line}-"
            f"{self.function.end_line}) {what} {self.entry.name or 'a function'}, vulnerable to "
            f"{self.entry.vuln_id}, and lacks its fix. The fix {self.entry.change}."
        )


@dataclass
class KnownReport:
    """What the knowledge base found in a scan."""

    base: str  # the base's directory name
    about: str  # one line: entries and their sources
    entries: int
    checked: int = 0  # functions compared with the base
    findings: list[KnownFinding] = field(default_factory=list)

    @property
    def unsuppressed(self) -> list[KnownFinding]:
        return [f for f in self.findings if f.suppression is None]

    def summary(self) -> str:
        matched = len({id(f.function) for f in self.findings})
        open_ = self.unsuppressed
        cves = len({f.entry.vuln_id for f in open_})
        suppressed = len(self.findings) - len(open_)
        return (
            f"known vulnerabilities: {self.checked} functions checked against {self.entries} "
            f"entries of {self.base}, {matched} matched ({count_of(len(open_), 'finding')} of "
            f"{count_of(cves, 'vulnerability', 'vulnerabilities')}"
            + (f", {suppressed} suppressed" if suppressed else "")
            + ")"
        )


class KnownMatcher:
    def __init__(self, base: KnownBase) -> None:
        self.base = base

    def report(self) -> KnownReport:
        return KnownReport(self.base.name, describe(self.base.manifest), self.base.entries_count)

    def match(self, function: Function) -> list[KnownFinding]:
        """Every known vulnerability `function` still holds: one finding per CVE id, the
        strongest (a clone before a signature, then the closest)."""
        return self.findings(function, self.verdicts(function.code, function.name)) or []

    def verdicts(self, code: str, name: str) -> list[tuple]:
        """[(entry row, how, lines relative to the function, containment)] for each entry
        the code is still vulnerable to: what a scan cache keeps."""
        normal = normalise(code)
        if not normal.looks_like_a_function:
            return []
        found = []
        for entry in self.base.candidates(normal, name):
            verdict = judge(normal, name, entry)
            if verdict is None:
                continue
            marks = set(verdict.marks)
            lines = sorted({u.first_line for u in normal.units if u.key in marks})
            found.append((entry.row, verdict.how, lines, verdict.containment))
        return found

    def findings(self, function: Function, verdicts: list[tuple]) -> list[KnownFinding] | None:
        """The findings `verdicts` make of `function`; None where one names an entry the
        base lacks (a scan cache's stale row: the caller judges the function again)."""
        best: dict[str, KnownFinding] = {}
        for row, how, lines, containment in verdicts:
            entry = self.base.entry(row)
            if entry is None:
                return None
            at = [function.start_line + line - 1 for line in lines]
            found = KnownFinding(function, entry, how, at, containment)
            held = best.get(entry.vuln_id)
            if held is None or _strength(found) > _strength(held):
                best[entry.vuln_id] = found
        return sorted(best.values(), key=lambda f: (-_strength(f)[0], f.entry.vuln_id))


def _strength(finding: KnownFinding) -> tuple[int, float]:
    return (finding.how == "clone", finding.containment)
