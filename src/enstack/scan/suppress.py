"""Findings a user has already judged: an `enstack-ignore` comment in the code, or a baseline
(an earlier scan's SARIF). A suppressed finding is still reported, marked with its kind and
justification as SARIF's `suppressions` says (`inSource`, `external`), and `--fail-on` does not
count it.

Inline, in the function or on the line just above it:

    // enstack-ignore: CWE-476 the pointer is checked by every caller
    /* enstack-ignore: reviewed in #123 */        (no class named: every class)

A baseline matches on the fingerprint each SARIF result carries
(`partialFingerprints.primaryLocationLineHash`): the function's name, class and text, so a
finding stays suppressed when the function moves and comes back when its text changes.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from enstack.errors import UserError
from enstack.fsutil import read_untrusted_json

MARK = re.compile(r"enstack-ignore\b:?[ \t]*([^\r\n]*)", re.IGNORECASE)
COMMENT_END = re.compile(r"\s*\*/.*$")
ANY_CLASS = {"*", "all"}
IDS = ("CWE-", "CVE-")  # a mark may name a CWE or (for a known vulnerability) a CVE
FINGERPRINT = "primaryLocationLineHash"
MAX_BASELINE_BYTES = 256 << 20


@dataclass(frozen=True)
class Suppression:
    kind: str  # SARIF's: "inSource" (a comment) or "external" (a baseline)
    justification: str

    def as_sarif(self) -> dict:
        """SARIF's suppression; the justification escaped, since viewers render it as
        Markdown (a link or an `<img>` in a reason stays text)."""
        shown = MARKUP.sub(lambda m: "\\" + m.group(), clean_reason(self.justification))
        return {"kind": self.kind, "status": "accepted", "justification": shown}

    def as_json(self) -> dict:
        return {"kind": self.kind, "status": "accepted",
                "justification": clean_reason(self.justification)}  # fmt: skip


def fingerprint(name: str, label: str, code: str) -> str:
    """Stable while the function's own text, name and class are: moving it changes nothing."""
    text = " ".join(code.split())
    digest = hashlib.sha256(f"{name}\0{label}\0{text}".encode()).hexdigest()
    return f"{digest[:16]}:1"


@dataclass(frozen=True)
class InlineMark:
    classes: frozenset[str]  # upper-cased; empty: every class
    reason: str

    def covers(self, label: str) -> bool:
        return not self.classes or label.upper() in self.classes


MAX_REASON_CHARS = 300
ANSI_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|.)")
MARKUP = re.compile(r"[\\`*_\[\]<>!|]")  # what makes a link, an image, HTML or emphasis


def clean_reason(text: str) -> str:
    """A reason as a reader may see it: ANSI escapes, control characters and invisible
    formatting (a right-to-left override, zero-width joiners) removed; at most 300
    characters. Markup is escaped where a format renders it (`as_sarif`)."""
    text = ANSI_ESCAPE.sub("", text)
    text = "".join(c for c in text if unicodedata.category(c) not in ("Cc", "Cf", "Cs", "Co"))
    return text.strip()[:MAX_REASON_CHARS]


def is_comment_line(line: str) -> bool:
    """A line that holds only a comment: a mark there is about what follows. A trailing
    `} // enstack-ignore` belongs to the function it ends, not the next one."""
    return line.lstrip().startswith(("//", "/*", "*"))


def inline_marks(
    code: str, line_above: str, labels: list[str], after_end: str = ""
) -> list[InlineMark]:
    """`enstack-ignore` comments in a function's text, on the comment line just above it, or
    after its closing brace on its last line (`after_end`). The first word after the colon is
    a class when it names one of the model's classes (any case), a CWE or CVE id, `*` or
    `all`; otherwise it begins the reason and every class is covered."""
    known = {label.upper() for label in labels}
    marks = []
    for text in (line_above if is_comment_line(line_above) else "", code, after_end):
        for match in MARK.finditer(text):
            rest = COMMENT_END.sub("", match.group(1)).strip()
            first, _, reason = rest.partition(" ")
            named = {c.strip().upper() for c in first.split(",") if c.strip()}
            if named and (named <= known | ANY_CLASS or all(c.startswith(IDS) for c in named)):
                classes = frozenset() if named & ANY_CLASS else frozenset(named)
                marks.append(InlineMark(classes, clean_reason(reason)))
            else:
                marks.append(InlineMark(frozenset(), clean_reason(rest)))
    return marks


def inline_suppression(marks: list[InlineMark], label: str, *aliases: str) -> Suppression | None:
    """The first mark covering `label` (a class, or a known finding's CVE id) or an alias of
    it (a known finding's CWE ids)."""
    for mark in marks:
        if any(mark.covers(name) for name in (label, *aliases)):
            return Suppression("inSource", mark.reason or "enstack-ignore comment")
    return None


@dataclass(frozen=True)
class Baseline:
    path: Path
    fingerprints: frozenset[str]

    def suppression(self, key: str) -> Suppression | None:
        if key in self.fingerprints:
            return Suppression("external", f"in the baseline {self.path.name}")
        return None


def load_baseline(path: Path) -> Baseline:
    """The fingerprints of every result in a SARIF file (any tool's runs are skipped: only
    enstack's fingerprints can match)."""
    sarif = read_untrusted_json(path, MAX_BASELINE_BYTES, f"--baseline {path}", "not SARIF")
    runs = sarif.get("runs") if isinstance(sarif, dict) else None
    if not isinstance(runs, list) or not str(sarif.get("version", "")).startswith("2."):
        raise UserError(f"--baseline {path}: not a SARIF 2.x file (no version and runs)")
    found = set()
    for run in runs:
        results = run.get("results") if isinstance(run, dict) else None
        for result in results if isinstance(results, list) else []:
            prints = result.get("partialFingerprints") if isinstance(result, dict) else None
            value = prints.get(FINGERPRINT) if isinstance(prints, dict) else None
            if isinstance(value, str):
                found.add(value)
    return Baseline(path, frozenset(found))
