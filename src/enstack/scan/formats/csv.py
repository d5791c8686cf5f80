"""One row per finding (learned and known, `kind` telling them apart) and one per file with
lines that were not scored. Columns are only ever added at the end."""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING

from enstack.scan.formats.common import printable

if TYPE_CHECKING:
    from enstack.scan.api import ScanReport


def render(report: ScanReport) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    labels = report.model.labels if report.model else []
    writer.writerow(
        [
            "path",
            "function",
            "start_line",
            "end_line",
            "class",
            "level",
            "p_vulnerable",
            "top_lines",
            "suppressed",
        ]
        + [f"p_{printable(label)}" for label in labels]
        + ["damaged", "unscored_lines"]  # added last, so readers by position keep working
        + ["kind", "vulnerability"]  # learned or known; the known one's CVE id
    )
    for s in report.findings:
        writer.writerow(
            [
                printable(s.function.path),
                printable(s.function.name),
                s.function.start_line,
                s.function.end_line,
                printable(s.label),
                s.level,
                "" if s.p_vulnerable is None else f"{s.p_vulnerable:.6f}",
                " ".join(str(line) for line, _ in s.lines),
                "" if s.suppression is None else s.suppression.kind,
            ]
            + [f"{p:.6f}" for p in s.probs]
            + ["true" if s.function.damaged else "false", "", "learned", ""]
        )
    for k in report.known.findings if report.known else []:
        writer.writerow(
            [
                printable(k.function.path),
                printable(k.function.name),
                k.function.start_line,
                k.function.end_line,
                printable(k.entry.cwe),
                k.level,
                "",
                " ".join(map(str, k.lines)),
                "" if k.suppression is None else k.suppression.kind,
            ]
            + [""] * len(labels)
            + ["true" if k.function.damaged else "false", "", "known", printable(k.entry.vuln_id)]
        )
    # a row per file with lines no function could be cut from: level `unscored`
    for path, lost in sorted(report.unscored.items()):
        where = [printable(path), "", "", "", "", "unscored", "", "", ""]
        writer.writerow(where + [""] * len(labels) + ["", lost.lines, "", ""])
    return buffer.getvalue()
