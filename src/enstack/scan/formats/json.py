"""The report as JSON: every score, class, ranked line and suppression; known vulnerabilities
under `known`."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

from enstack import __version__
from enstack.scan.card import FIVE_CLASS_WARNING
from enstack.scan.formats.common import by_label, labels_of
from enstack.scan.formats.document import check_document

if TYPE_CHECKING:
    from enstack.known.match import KnownFinding
    from enstack.scan.api import ScanReport, Scored


def render(report: ScanReport) -> str:
    document = as_json(report)
    if os.environ.get("ENSTACK_CHECK_DOCUMENTS"):  # the tests set it: a user's scan never
        check_document(document)  # stops over a key the schema has not caught up with
    return json.dumps(document, indent=2) + "\n"


def _finding_json(report: ScanReport, s: Scored) -> dict:
    return {
        "path": s.function.path,
        "function": s.function.name,
        "start_line": s.function.start_line,
        "end_line": s.function.end_line,
        "class": s.label,
        "level": s.level,
        "p_vulnerable": s.p_vulnerable,
        "class_probability": float(s.probs[labels_of(report).index(s.label)]),
        "probabilities": by_label(report, s.probs),
        "models": {name: by_label(report, p) for name, p in s.per_model.items()},
        "top_lines": [{"line": line, "score": round(score, 4)} for line, score in s.lines],
        "damaged": s.function.damaged,
        "fingerprint": s.fingerprint,
        "suppressed": None if s.suppression is None else s.suppression.as_json(),
    }


def _known_json(report: ScanReport, k: KnownFinding) -> dict:
    return {
        "kind": "known",
        "path": k.function.path,
        "function": k.function.name,
        "start_line": k.function.start_line,
        "end_line": k.function.end_line,
        "vulnerability": k.entry.vuln_id,
        "cwe": k.entry.cwe.split(",") if k.entry.cwe else [],
        "class": k.entry.label,
        "level": k.level,
        "match": k.how,
        "containment": round(k.containment, 4),
        "lines": k.lines,
        "known_function": k.entry.name,
        "fix": k.entry.change,
        "learned_from": k.entry.source,
        "damaged": k.function.damaged,
        "fingerprint": k.fingerprint,
        "suppressed": None if k.suppression is None else k.suppression.as_json(),
    }


def _known_section(report: ScanReport) -> dict | None:
    known = report.known
    if known is None:
        return None
    return {
        "base": known.base,
        "about": known.about,
        "entries": known.entries,
        "functions_checked": known.checked,
        "findings": [_known_json(report, k) for k in known.findings],
    }


def as_json(report: ScanReport) -> dict:
    """The report as one JSON object (also what the HTML page is built from)."""
    model = report.model
    return {
        "tool": {"name": "enstack", "version": __version__},
        "model": model.source.name if model else None,  # a name, never a local path
        "model_card": model.describe() if model else None,
        "labels": model.labels if model else [],
        "benign_label": model.benign_label if model else None,
        "threshold": report.threshold,
        "localisation": report.localise,
        "localisation_note": report.localisation_note,
        "summary": {
            "files": report.tally.files,
            "functions": report.functions,
            "damaged_functions": report.damaged_functions,
            "skipped_files": report.tally.skipped,
            "excluded_files": report.tally.excluded,  # by --exclude and ignore files
            "ignored_files": report.tally.ignored,  # of those, by an ignore file
            "unchanged_files": report.tally.unchanged,  # out of --changed-since's scope
            "non_utf8_files": report.tally.non_utf8,
            "findings": len(report.unsuppressed),
            "suppressed": len(report.findings) - len(report.unsuppressed),
            "changed_since": report.changed_since,
            "functions_in_changed_files": report.functions_seen,
            "unscored_lines": sum(u.lines for u in report.unscored.values()),
            "known_findings": len(report.known.unsuppressed) if report.known else None,
        },
        "unscored_files": [
            {"path": path, "lines": u.lines, "functions_estimate": u.functions}
            for path, u in report.unscored.items()
        ],
        "warning": None if report.detects else FIVE_CLASS_WARNING,
        "warnings": model.warnings() if model else [],  # about the model: synthetic data, ...
        "findings": [_finding_json(report, s) for s in report.findings],
        "known": _known_section(report),  # known vulnerabilities (--known), apart
    }
