"""The terminal table: learned findings, then known vulnerabilities with what their fixes
changed, then the lines no function could be cut from."""

from __future__ import annotations

from typing import TYPE_CHECKING

from enstack.log import count_of
from enstack.scan.card import FIVE_CLASS_WARNING
from enstack.scan.formats.common import aligned, lines_text, printable

if TYPE_CHECKING:
    from enstack.known.match import KnownFinding
    from enstack.scan.api import ScanReport


def render(report: ScanReport) -> str:
    out = _learned_text(report) if report.model is not None else []
    out += _known_text(report)
    out += _unscored_text(report)
    return "\n".join(out) + "\n"


def _learned_text(report: ScanReport) -> list[str]:
    rows = sorted(
        report.unsuppressed, key=lambda s: (-s.confidence, s.function.path, s.function.start_line)
    )
    header = (
        "location",
        "function",
        "class",
        "level",
        "P(vuln)" if report.detects else "P(class)",
        f"top lines ({report.localise})",  # which method ranked them, as JSON and SARIF say
        "damaged",  # the function overlaps C the parser could not read: its cut may be wrong
    )
    table = [
        (
            f"{printable(s.function.path)}:{s.function.start_line}",
            printable(s.function.name),
            printable(s.label),
            s.level,
            f"{s.confidence:.3f}",
            lines_text(s),
            "yes" if s.function.damaged else "",
        )
        for s in rows
    ]
    out = []
    if not report.detects:
        out.append(f"note: {FIVE_CLASS_WARNING}")
    if table:
        out += aligned(header, table)
    else:
        out.append(f"no findings at P(vulnerable) >= {report.threshold}")
    suppressed = len(report.findings) - len(rows)
    if suppressed:
        out.append(f"({suppressed} suppressed findings not shown: see --format json or sarif)")
    return out


def _known_text(report: ScanReport) -> list[str]:
    """Known vulnerabilities, apart from the model's findings: the CVE and what its fix did."""
    if report.known is None:
        return []
    rows = sorted(
        report.known.unsuppressed,
        key=lambda k: (k.level != "error", k.function.path, k.function.start_line),
    )
    base = printable(report.known.base)
    if not rows:
        return [f"no known vulnerability from {base} matched"]
    header = ("location", "function", "known vulnerability", "CWE", "level", "match", "lines")
    table = [
        (
            f"{printable(k.function.path)}:{k.function.start_line}",
            printable(k.function.name),
            printable(k.entry.vuln_id),
            printable(k.entry.cwe) or "-",
            k.level,
            k.how,
            ", ".join(map(str, k.lines)),
        )
        for k in rows
    ]
    out = [f"known vulnerabilities (from {base}):", *aligned(header, table)]
    out += _fixes_text(rows)
    hidden = len(report.known.findings) - len(rows)
    if hidden:
        out.append(f"({hidden} suppressed known findings not shown: see --format json or sarif)")
    return out


def _fixes_text(rows: list[KnownFinding]) -> list[str]:
    """What each vulnerability's fix changed, once per CVE (a large fix changed many functions:
    its findings share one line), in the order the table first names them."""
    by_id: dict[str, list[KnownFinding]] = {}
    for k in rows:
        by_id.setdefault(k.entry.vuln_id, []).append(k)
    out = ["what each fix changed:"]
    for vuln_id, found in by_id.items():
        first = found[0]
        where = printable(first.entry.name or first.function.name)
        more = f"; and in {count_of(len(found) - 1, 'more function')}" if len(found) > 1 else ""
        out.append(
            f"  {printable(vuln_id)}: in {where} the fix {printable(first.entry.change)}{more}"
        )
    return out


def _unscored_text(report: ScanReport) -> list[str]:
    """Each file's lines the parser could not read: no function there was scored."""
    if not report.unscored:
        return []
    out = ["not scored (C the parser could not read; no function there has a score):"]
    for path, lost in sorted(report.unscored.items()):
        bodies = f", about {lost.functions} functions" if lost.functions else ""
        out.append(f"  {printable(path)}: {lost.lines} lines{bodies}")
    return out
